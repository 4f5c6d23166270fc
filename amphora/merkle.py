"""Merkle trees of bottle tag commitments, as ``WineCertificate.verify_tag`` checks them.

A leaf is ``keccak256(keccak256(abi.encode(uint256 serial, address tag)))``: the
serial binds a tag to its bottle, and the double hash keeps a 64-byte leaf
preimage from ever being read as an inner node. Inner nodes hash the sorted
pair of their children (snekmate's ``merkle_proof_verification``). A level with
an odd number of nodes carries its last node up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address


def leaf(serial: int, tag: str) -> bytes:
    return keccak(keccak(encode(["uint256", "address"], [serial, to_checksum_address(tag)])))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class TagTree:
    """A lot's tree: ``tags[i]`` is the tag address of serial ``i + 1``."""

    tags: tuple[str, ...]
    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, tags: Sequence[str]) -> TagTree:
        if not tags:
            raise ValueError("a lot needs at least one bottle tag")
        level = tuple(leaf(i + 1, t) for i, t in enumerate(tags))
        levels = [level]
        while len(level) > 1:
            nxt = [_hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = tuple(nxt)
            levels.append(level)
        return cls(tuple(to_checksum_address(t) for t in tags), tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, serial: int) -> list[bytes]:
        """Sibling hashes from bottle ``serial``'s leaf up to the root."""
        if not 1 <= serial <= len(self.tags):
            raise ValueError(f"serial {serial} is not in this lot (1..{len(self.tags)})")
        index = serial - 1
        path: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        return path


def verify(root: bytes, serial: int, tag: str, proof: Sequence[bytes]) -> bool:
    """Off-chain twin of ``verify_tag``."""
    node = leaf(serial, tag)
    for sibling in proof:
        node = _hash_pair(node, sibling)
    return node == root
