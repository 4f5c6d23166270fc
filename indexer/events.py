"""Decoding the logs of the deployment's contracts into events.

A :class:`Decoder` is built from the deploy manifest: for every contract it
indexes (every Amphora contract; not an external stablecoin) it knows each
event's topic and argument layout. :meth:`Decoder.decode` turns one raw log of
``eth_getLogs`` into an :class:`Event` with named arguments; addresses come out
checksummed, integers as ``int``, fixed bytes as ``0x`` hex.

Static arguments (integers, addresses, booleans, fixed bytes) are read straight
from the hex of the log; only events with a dynamic argument (a string) go
through ``eth_abi``. At catch-up decoding is a large share of the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_utils import event_abi_to_log_topic, to_checksum_address

from amphora.manifest import Manifest

#: Manifest names of the contracts the read models understand.
CERTIFICATE = "WineCertificate"
CUSTODY = "CustodyRegistry"
LENDING = "PledgeLending"
POINTS = "PointsToken"
STABLECOIN = "Stablecoin"
UTILITY = "UtilityToken"
#: ``token_id >> SERIAL_BITS`` is a certificate's lot; the low bits its serial.
SERIAL_BITS = 32
SERIAL_MASK = (1 << SERIAL_BITS) - 1

_STATIC = ("uint", "int", "address", "bool", "bytes")


@dataclass(frozen=True)
class EventSpec:
    contract: str
    name: str
    inputs: tuple[tuple[str, str, bool], ...]  # (name, type, indexed)
    static: bool  # every non-indexed input is static
    #: (name, reader of the topic or None for a dynamic argument's hash), in topic order.
    topic_plan: tuple[tuple[str, Callable[[str], Any] | None], ...] = field(default=(), compare=False)
    #: (name, reader, first hex digit) of each data word, when every data argument is static.
    data_plan: tuple[tuple[str, Callable[[str], Any], int], ...] = field(default=(), compare=False)

    @property
    def data_types(self) -> list[str]:
        return [kind for _, kind, indexed in self.inputs if not indexed]


@dataclass
class Event:
    """One decoded log, where it is on the chain and what it says."""

    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    block_time: int | None
    log_index: int
    tx_hash: str
    address: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.block_hash, self.log_index)


@lru_cache(maxsize=65_536)
def _checksummed(address: str) -> str:
    """The EIP-55 form of a lower-case ``0x`` address, as ``to_checksum_address``
    gives it but without its input checks (which cost more than the hash: the
    node's hex is already valid), and remembered: a chain's logs name the same
    contracts and holders over and over."""
    digits = address[2:]
    digest = keccak(digits.encode()).hex()[:40]
    return "0x" + "".join(d.upper() if h >= "8" else d for d, h in zip(digits, digest, strict=True))


def _reader(kind: str) -> Callable[[str], Any]:
    """A function from one 32-byte ABI word (64 hex digits) to the value of static type ``kind``."""
    if kind == "address":
        return lambda word: _checksummed("0x" + word[24:].lower())
    if kind == "bool":
        return lambda word: int(word, 16) != 0
    if kind.startswith("uint"):
        return lambda word: int(word, 16)
    if kind.startswith("int"):
        return lambda word: _word(kind, word)
    size = int(kind[len("bytes"):]) * 2
    return lambda word: "0x" + word[:size]


def _is_static(kind: str) -> bool:
    return kind.startswith(_STATIC) and kind not in ("bytes",) and "[" not in kind


def _word(kind: str, word: str) -> Any:
    """One 32-byte ABI word (64 hex digits) of static type ``kind``."""
    if kind == "address":
        return _checksummed("0x" + word[24:].lower())
    if kind == "bool":
        return int(word, 16) != 0
    if kind.startswith("uint"):
        return int(word, 16)
    if kind.startswith("int"):
        value = int(word, 16)
        return value - (1 << 256) if value >= 1 << 255 else value
    size = int(kind[len("bytes"):])
    return "0x" + word[: size * 2]


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return _checksummed(value.lower())
    return value


class Decoder:
    """The events of the manifest's indexed contracts, by address and topic."""

    def __init__(self, manifest: Manifest) -> None:
        self.contracts: dict[str, str] = {}  # name -> checksummed address
        self.deploy_blocks: dict[str, int] = {}
        #: Lower-case address -> (checksummed address, its events by topic): one lookup per log.
        self._by_address: dict[str, tuple[str, dict[str, EventSpec]]] = {}
        for name, record in sorted(manifest.contracts.items()):
            if record.get("contract") == "external" or record.get("deploy_block") is None:
                continue  # not ours (an existing stablecoin): its history is not Amphora's
            address = to_checksum_address(record["address"])
            self.contracts[name] = address
            self.deploy_blocks[name] = int(record["deploy_block"])
            for item in record.get("abi", []):
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                inputs = tuple((i["name"], i["type"], bool(i.get("indexed"))) for i in item["inputs"])
                topic = "0x" + event_abi_to_log_topic(item).hex()
                static = all(_is_static(kind) for _, kind, indexed in inputs if not indexed)
                topic_plan = tuple((n, _reader(k) if _is_static(k) else None) for n, k, i in inputs if i)
                data = [(n, k) for n, k, i in inputs if not i]
                data_plan = tuple((n, _reader(k), offset * 64) for offset, (n, k) in enumerate(data)) if static else ()
                spec = EventSpec(name, item["name"], inputs, static, topic_plan, data_plan)
                self._by_address.setdefault(address.lower(), (address, {}))[1][topic] = spec

    @property
    def addresses(self) -> list[str]:
        return list(self.contracts.values())

    @property
    def start_block(self) -> int:
        """The first block any indexed contract can have a log in."""
        return min(self.deploy_blocks.values(), default=0)

    def address_of(self, name: str) -> str | None:
        return self.contracts.get(name)

    def decode(self, log: dict[str, Any]) -> Event | None:
        """``log`` (as ``eth_getLogs`` gives it) decoded; None for a log of an
        unknown event (an upgrade's new event, a removed log)."""
        if log.get("removed"):
            return None
        topics = log.get("topics") or []
        if not topics:
            return None
        known = self._by_address.get(log["address"]) or self._by_address.get(str(log["address"]).lower())
        if known is None:
            return None
        spec = known[1].get(topics[0])
        if spec is None:
            return None
        args: dict[str, Any] = {}
        for position, (name, read) in enumerate(spec.topic_plan, start=1):
            topic = topics[position]
            # A dynamic indexed argument is only its hash.
            args[name] = read(topic[2:]) if read is not None else topic
        data = str(log.get("data") or "0x")[2:]
        if spec.static:
            for name, read, start in spec.data_plan:
                args[name] = read(data[start:start + 64])
        else:
            data_inputs = [(name, kind) for name, kind, indexed in spec.inputs if not indexed]
            values = abi_decode([kind for _, kind in data_inputs], bytes.fromhex(data))
            for (name, _), value in zip(data_inputs, values, strict=True):
                args[name] = _json_value(value)
        block_time = log.get("blockTimestamp")
        return Event(
            contract=spec.contract, name=spec.name, args=args,
            block_number=int(log["blockNumber"], 16), block_hash=log["blockHash"],
            block_time=int(block_time, 16) if block_time else None,
            log_index=int(log["logIndex"], 16), tx_hash=log["transactionHash"],
            address=known[0],
        )
