"""Building a chain fast: contract calls ABI-encoded by hand and pre-signed raw
transactions, sent in JSON-RPC batches and mined into blocks of bounded gas
(the benchmarks' chains hold tens of thousands of transactions; through Ape
anvil takes about 20 a second, this way about 500).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

#: Raw transactions signed before they are sent and mined; per JSON-RPC batch.
BLOCK_TXS = 1_500
BATCH = 500


class Call:
    """One contract call's address and calldata (what signing needs)."""

    def __init__(self, address: str, data: str) -> None:
        self.address = address
        self.data = data


class Functions:
    """``contract.functions.name(*args)`` as :class:`Call`: ABI-encoded with
    eth_abi, without web3's per-call argument matching (the chain is tens of
    thousands of calls)."""

    def __init__(self, address: str, abi: list[dict[str, Any]]) -> None:
        from eth_utils import function_abi_to_4byte_selector

        self._address = address
        self._specs: dict[tuple[str, int], tuple[str, list[str]]] = {}
        for item in abi:
            if item.get("type") == "function":
                types = [i["type"] if i["type"] != "tuple" else "(" + ",".join(c["type"] for c in i["components"]) + ")"
                         for i in item["inputs"]]
                selector = "0x" + function_abi_to_4byte_selector(item).hex()  # type: ignore[arg-type]
                self._specs[(item["name"], len(types))] = (selector, types)

    def __getattr__(self, name: str) -> Any:
        from eth_abi import encode

        def call(*args: Any) -> Call:
            selector, types = self._specs[(name, len(args))]
            return Call(self._address, selector + encode(types, list(args)).hex())

        return call


class FastContract:
    def __init__(self, address: str, abi: list[dict[str, Any]]) -> None:
        self.address = address
        self.functions = Functions(address, abi)


class Builder:
    """Pre-signed transactions, sent in JSON-RPC batches and mined into blocks
    of at most ``block_gas`` gas (so a phase spreads over many blocks, as on a
    busy chain)."""

    def __init__(self, url: str, manifest_path: Path) -> None:
        self.url = url
        self.manifest = json.loads(manifest_path.read_text())
        self.http = httpx.Client(timeout=120.0)
        self.chain_id = int(self.rpc("eth_chainId"), 16)
        # Room for the base fee to move while thousands of transactions are mined.
        self.fees = {"maxFeePerGas": 1_000 * 10**9, "maxPriorityFeePerGas": 10**9}
        self.pending: list[str] = []
        self.sent = 0
        self.next_lot: int | None = None
        self._accounts: dict[str, Any] = {}
        self._nonces: dict[str, int] = {}

    def rpc(self, method: str, *params: Any) -> Any:
        answer = self.http.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                "params": list(params)}).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def contract(self, name: str) -> FastContract:
        entry = self.manifest["contracts"][name]
        return FastContract(entry["address"], entry["abi"])

    def add(self, call: Call, key: str, gas: int = 250_000) -> None:
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = Account.from_key(key)
            self._nonces[key] = int(self.rpc("eth_getTransactionCount", account.address, "pending"), 16)
        nonce = self._nonces[key]
        self._nonces[key] = nonce + 1
        tx = {"chainId": self.chain_id, "to": call.address, "data": call.data, "value": 0, "gas": gas,
              "nonce": nonce, "type": 2, **self.fees}
        self.pending.append("0x" + bytes(account.sign_transaction(tx).raw_transaction).hex())
        if len(self.pending) >= BLOCK_TXS:
            self.mine()

    def mine(self) -> None:
        """Send what is pending and mine blocks until the pool is empty; fail if any transaction reverted."""
        raws, self.pending = self.pending, []
        if not raws:
            return
        hashes = []
        for start in range(0, len(raws), BATCH):
            payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]}
                       for i, raw in enumerate(raws[start:start + BATCH])]
            for answer in sorted(self.http.post(self.url, json=payload).json(), key=lambda a: a["id"]):
                if "error" in answer:
                    raise RuntimeError(f"eth_sendRawTransaction: {answer['error']}")
                hashes.append(answer["result"])
        while pending := int(self.rpc("txpool_status")["pending"], 16):
            # About 25 transactions fit a block: no more empty blocks than that needs.
            self.rpc("anvil_mine", hex(min(20, 1 + pending // 25)))
        for start in range(0, len(hashes), BATCH):
            payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
                       for i, h in enumerate(hashes[start:start + BATCH])]
            for answer in self.http.post(self.url, json=payload).json():
                receipt = answer.get("result")
                if not receipt or int(receipt["status"], 16) != 1:
                    raise RuntimeError(f"transaction {hashes[start + answer['id']]} failed or was dropped: "
                                       f"{receipt and {k: receipt[k] for k in ('status', 'gasUsed', 'blockNumber')}}")
        self.sent += len(hashes)
