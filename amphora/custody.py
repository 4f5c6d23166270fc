"""What a custodian posts to ``CustodyRegistry``: storage attestations of a lot
and proof-of-reserve roots. ``ape run lifecycle`` and the demo both call these,
so a document is hashed and a reserve tree is built one way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_utils import keccak

from amphora.merkle import ReserveTree


def attest_storage(registry: Any, custodian: Any, lot_id: int, document: bytes, uri: str) -> bytes:
    """Attest how lot ``lot_id`` is stored by the keccak256 of ``document``,
    published at ``uri``. Returns the document hash."""
    document_hash = keccak(document)
    registry.attest_storage(lot_id, document_hash, uri, sender=custodian)
    return document_hash


def read_holdings(path: Path) -> list[int]:
    """Token ids from a holdings file: one decimal token id per line, blank
    lines ignored. Raises ``ValueError`` naming the line that is not one."""
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"line {number}: {text!r} is not a decimal token id")
        ids.append(int(text))
    return ids


def post_reserve_root(registry: Any, custodian: Any, tree: ReserveTree, uri: str) -> None:
    """Post the root of ``tree`` (``ReserveTree.build`` over the bottles
    ``custodian`` holds now) with the URI where the tree is published; each
    ``tree.proof(token_id)`` then answers ``verify_reserve``."""
    registry.post_reserve_root(tree.root, len(tree.token_ids), uri, sender=custodian)


def reserve_document(tree: ReserveTree) -> dict[str, Any]:
    """The tree as published for verifiers: its root and each token id's proof."""
    return {
        "root": "0x" + tree.root.hex(),
        "proofs": {str(t): ["0x" + p.hex() for p in tree.proof(t)] for t in tree.token_ids},
    }


def write_reserve_document(path: Path, tree: ReserveTree) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reserve_document(tree), indent=1) + "\n")
    return path
