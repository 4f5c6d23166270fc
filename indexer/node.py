"""The indexer's view of the node: plain JSON-RPC over one HTTP session.

The follower needs four things from a node: the head, block headers (hash,
parent hash, time), the logs of a block range or of one block by hash, and the
chain id. It asks for them directly (no web3 middleware, no ABI objects): at
catch-up the cost of every log is what bounds the ingestion rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

#: Seconds the follower waits for one answer of the node.
TIMEOUT = 60.0


class NodeError(RuntimeError):
    """The node answered with an error or not at all."""


class RangeTooLarge(NodeError):
    """The node refused a log query over too many blocks or results: ask for less."""


@dataclass(frozen=True)
class Header:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _header(block: dict[str, Any]) -> Header:
    return Header(int(block["number"], 16), block["hash"], block["parentHash"], int(block["timestamp"], 16))


class Node:
    """A JSON-RPC client of the node at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session = requests.Session()
        self._id = 0

    def close(self) -> None:
        self._session.close()

    def call(self, method: str, *params: Any) -> Any:
        return self.batch([(method, list(params))])[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The results of ``calls`` (method, params) sent as one JSON-RPC batch, in order."""
        if not calls:
            return []
        payload = []
        for method, params in calls:
            self._id += 1
            payload.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        try:
            response = self._session.post(self.url, json=payload if len(payload) > 1 else payload[0],
                                          timeout=TIMEOUT)
            response.raise_for_status()
            answer = response.json()
        except (requests.RequestException, ValueError) as err:
            raise NodeError(f"the node did not answer: {type(err).__name__}") from err
        answers = answer if isinstance(answer, list) else [answer]
        by_id = {item.get("id"): item for item in answers}
        results = []
        for request in payload:
            item = by_id.get(request["id"])
            if item is None:
                raise NodeError(f"the node gave no answer to {request['method']}")
            if "error" in item:
                message = str(item["error"].get("message", item["error"]))
                if request["method"] == "eth_getLogs" and _too_large(message):
                    raise RangeTooLarge(message)
                raise NodeError(f"{request['method']}: {message}")
            results.append(item["result"])
        return results

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def header(self, number: int) -> Header | None:
        block = self.call("eth_getBlockByNumber", hex(number), False)
        return _header(block) if block else None

    def headers(self, numbers: Sequence[int]) -> dict[int, Header]:
        """The headers of ``numbers`` the node has (one batch)."""
        blocks = self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {header.number: header for header in (_header(b) for b in blocks if b)}

    def logs(self, addresses: list[str], from_block: int, to_block: int) -> list[dict[str, Any]]:
        return list(self.call("eth_getLogs", {"address": addresses, "fromBlock": hex(from_block),
                                              "toBlock": hex(to_block)}))

    def logs_of_block(self, addresses: list[str], block_hash: str) -> list[dict[str, Any]]:
        """The logs of exactly the block ``block_hash`` (EIP-234): never another fork's."""
        return list(self.call("eth_getLogs", {"address": addresses, "blockHash": block_hash}))


def _too_large(message: str) -> bool:
    text = message.lower()
    return any(word in text for word in ("too many", "range", "limit", "exceed", "query returned more"))
