"""Merkle trees of Amphora's contracts: bottle tag commitments (``TagTree``, as
``WineCertificate.verify_tag`` checks them) and custodians' proof-of-reserve
roots (``ReserveTree``, as ``CustodyRegistry.verify_reserve`` checks them).

Both use one construction. A tag leaf is
``keccak256(keccak256(abi.encode(uint256 serial, address tag)))``: the serial
binds a tag to its bottle. A reserve leaf is
``keccak256(keccak256(abi.encode(uint256 token_id)))``. The double hash keeps a
leaf preimage from ever being read as an inner node. Inner nodes hash the
sorted pair of their children (snekmate's ``merkle_proof_verification``). A
level with an odd number of nodes carries its last node up unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address


def leaf(serial: int, tag: str) -> bytes:
    """A tag tree's leaf for bottle ``serial`` with tag address ``tag``."""
    return keccak(keccak(encode(["uint256", "address"], [serial, to_checksum_address(tag)])))


def reserve_leaf(token_id: int) -> bytes:
    """A reserve tree's leaf for ``token_id``."""
    return keccak(keccak(encode(["uint256"], [token_id])))


def _hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def _levels(leaves: Sequence[bytes]) -> tuple[tuple[bytes, ...], ...]:
    """Every level of the tree over ``leaves``, the leaves first, the root last."""
    level = tuple(leaves)
    levels = [level]
    while len(level) > 1:
        nxt = [_hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = tuple(nxt)
        levels.append(level)
    return tuple(levels)


def _proof(levels: tuple[tuple[bytes, ...], ...], index: int) -> list[bytes]:
    """Sibling hashes from leaf ``index`` (from 0) up to the root."""
    path: list[bytes] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def _fold(node: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        node = _hash_pair(node, sibling)
    return node


@dataclass(frozen=True)
class TagTree:
    """A lot's tree: ``tags[i]`` is the tag address of serial ``i + 1``."""

    tags: tuple[str, ...]
    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, tags: Sequence[str], progress: Callable[[int], None] | None = None) -> TagTree:
        """The tree over ``tags``; ``progress(leaves_done)`` is called every 1,000 leaves (the slow part)."""
        if not tags:
            raise ValueError("a lot needs at least one bottle tag")
        leaves = []
        for i, t in enumerate(tags):
            leaves.append(leaf(i + 1, t))
            if progress is not None and (i + 1) % 1_000 == 0:
                progress(i + 1)
        levels = _levels(leaves)
        return cls(tuple(to_checksum_address(t) for t in tags), levels)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, serial: int) -> list[bytes]:
        """Sibling hashes from bottle ``serial``'s leaf up to the root."""
        if not 1 <= serial <= len(self.tags):
            raise ValueError(f"serial {serial} is not in this lot (1..{len(self.tags)})")
        return _proof(self.levels, serial - 1)


@dataclass(frozen=True)
class ReserveTree:
    """A custodian's proof of reserve: the token ids of every bottle it holds,
    in the order given (any order; each id once)."""

    token_ids: tuple[int, ...]
    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, token_ids: Sequence[int]) -> ReserveTree:
        ids = tuple(int(t) for t in token_ids)
        if not ids:
            raise ValueError("a reserve tree needs at least one token id")
        if len(set(ids)) != len(ids):
            raise ValueError("a reserve tree lists each token id once")
        return cls(ids, _levels([reserve_leaf(t) for t in ids]))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, token_id: int) -> list[bytes]:
        """Sibling hashes from ``token_id``'s leaf up to the root."""
        try:
            index = self.token_ids.index(int(token_id))
        except ValueError:
            raise ValueError(f"token {token_id} is not in this reserve tree") from None
        return _proof(self.levels, index)


def verify(root: bytes, serial: int, tag: str, proof: Sequence[bytes]) -> bool:
    """Off-chain twin of ``verify_tag``."""
    return _fold(leaf(serial, tag), proof) == root


def verify_reserve(root: bytes, token_id: int, proof: Sequence[bytes]) -> bool:
    """Off-chain twin of ``CustodyRegistry.verify_reserve``."""
    return _fold(reserve_leaf(token_id), proof) == root
