"""What a cellar (custodian) publishes beside its transactions: the storage
reports it attests and the proof-of-reserve trees it posts.

``CustodyRegistry.attest_storage(lot_id, document_hash, uri)`` records the
keccak256 of a report and where it can be fetched; ``post_reserve_root(root,
count, uri)`` the Merkle root over the token ids the cellar holds and where the
tree is. This store keeps both, in the service's database, so the URIs the
events carry are served by the API itself (``GET /custodian/documents/{hash}``,
``GET /custodian/reserve-trees/{root}``): a verifier fetches the report and
hashes it, or reads the tree's token ids and asks for a bottle's proof.

A report is kept by its hash (the same report twice is one row); a tree by its
custodian and root. Both are written *before* the transaction is sent, so the
URI an event names is never missing, and dropped again when the contract
refused the call before anything was sent (:meth:`forget_document`,
:meth:`forget_tree`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from amphora.merkle import ReserveTree
from api.errors import NotFound
from indexer.projections import REDEEMED, REDEMPTION_REQUESTED
from storage.db import Database, Transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS cellar_documents (
    hash TEXT PRIMARY KEY,
    lot_id TEXT NOT NULL,
    custodian TEXT NOT NULL,
    media_type TEXT NOT NULL,
    body TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS cellar_reserve_trees (
    root TEXT NOT NULL,
    custodian TEXT NOT NULL,
    token_ids TEXT NOT NULL,
    bottle_count BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (custodian, root)
);
CREATE TABLE IF NOT EXISTS console_once (
    account TEXT NOT NULL,
    once TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, once)
)
"""

#: The most bottles one proof-of-reserve tree lists (the tree is built in memory and published whole).
MAX_RESERVE_BOTTLES = 100_000
#: A stored report is served as a PDF only when it starts like one; anything else as bytes to download.
PDF = "application/pdf"
OCTET_STREAM = "application/octet-stream"


def document_hash(document: bytes) -> str:
    """keccak256 of a report, as ``attest_storage`` records it (``amphora.custody.attest_storage``)."""
    return "0x" + keccak(document).hex()


def media_type_of(document: bytes) -> str:
    """What the report is served as: a PDF by its magic bytes, else an opaque download (never HTML)."""
    return PDF if document.startswith(b"%PDF-") else OCTET_STREAM


@dataclass(frozen=True)
class StoredDocument:
    hash: str
    lot_id: int
    custodian: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class StoredTree:
    root: str
    custodian: str
    token_ids: tuple[int, ...]
    created_at: float

    def tree(self) -> ReserveTree:
        return ReserveTree.build(self.token_ids)


class CellarStore:
    """The ``cellar_documents`` and ``cellar_reserve_trees`` tables."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(SCHEMA)

    def keep_document(self, lot_id: int, custodian: str, document: bytes) -> tuple[str, bool]:
        """Store a report; its hash and whether it is new."""
        hash_ = document_hash(document)
        with self._db.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO cellar_documents (hash, lot_id, custodian, media_type, body, size, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                (hash_, str(lot_id), custodian, media_type_of(document), base64.b64encode(document).decode(),
                 len(document), time.time()))
        return hash_, inserted == 1

    def forget_document(self, hash_: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM cellar_documents WHERE hash = ?", (hash_,))

    def document(self, hash_: str) -> StoredDocument:
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM cellar_documents WHERE hash = ?", (hash_.lower(),))
        if row is None:
            raise NotFound(f"no storage report has the hash {hash_}")
        return StoredDocument(hash=row["hash"], lot_id=int(row["lot_id"]), custodian=row["custodian"],
                              media_type=row["media_type"], body=base64.b64decode(row["body"]))

    def keep_tree(self, custodian: str, tree: ReserveTree) -> tuple[str, bool]:
        """Store a tree's token ids under its custodian and root; the root and whether it is new."""
        root = "0x" + tree.root.hex()
        with self._db.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO cellar_reserve_trees (root, custodian, token_ids, bottle_count, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (custodian, root) DO NOTHING",
                (root, custodian, json.dumps([str(t) for t in tree.token_ids]), len(tree.token_ids), time.time()))
        return root, inserted == 1

    def forget_tree(self, custodian: str, root: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM cellar_reserve_trees WHERE custodian = ? AND root = ?", (custodian, root))

    def tree(self, custodian: str, root: str) -> StoredTree:
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM cellar_reserve_trees WHERE custodian = ? AND root = ?",
                         (custodian, root.lower()))
        if row is None:
            raise NotFound(f"{custodian} published no reserve tree with the root {root}")
        return StoredTree(root=row["root"], custodian=row["custodian"],
                          token_ids=tuple(int(t) for t in json.loads(row["token_ids"])),
                          created_at=float(row["created_at"]))


    def claim(self, account: str, once: str) -> bool:
        """Take a console form's one-time key for ``account``: False when it was
        taken already (the form sent again), so a double submit is one action."""
        with self._db.transaction() as tx:
            return tx.execute("INSERT INTO console_once (account, once, created_at) VALUES (?, ?, ?)"
                              " ON CONFLICT (account, once) DO NOTHING", (account, once, time.time())) == 1

    def release(self, account: str, once: str) -> None:
        """Give a key back when its action was refused before anything was sent (the form may be sent again)."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM console_once WHERE account = ? AND once = ?", (account, once))


def cellar_of(app_state: Any) -> CellarStore:
    """The app's cellar store, made on first use (on the service's database)."""
    store = getattr(app_state, "cellar", None)
    if store is None:
        store = app_state.cellar = CellarStore(app_state.db)
    return store  # type: ignore[no-any-return]


def held_token_ids(tx: Transaction, chain_id: int, custodian: str, limit: int = MAX_RESERVE_BOTTLES) -> list[int]:
    """The token ids of the bottles the index says ``custodian`` (checksummed)
    keeps: every bottle of the lots it is the custodian of now, but those
    redeemed (shipped and burned). A bottle asked for but not yet shipped is
    still in the cellar and listed. At most ``limit + 1`` ids (the caller
    refuses more than ``limit``)."""
    ids: list[int] = []
    for row in tx.all("SELECT lot_id, first_token_id, bottle_count FROM ix_lots WHERE chain_id = ? AND custodian = ?"
                      " ORDER BY lot_id", (chain_id, custodian)):
        first, count = int(row["first_token_id"]), int(row["bottle_count"])
        gone = {int(r["token_id"]) for r in tx.all(
            "SELECT token_id FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND state = ?",
            (chain_id, int(row["lot_id"]), REDEEMED))}
        ids.extend(t for t in range(first, first + min(count, limit + 1 - len(ids))) if t not in gone)
        if len(ids) > limit:
            break
    return ids


def requested_token_ids(tx: Transaction, chain_id: int, custodian: str, limit: int) -> list[int]:
    """The bottles of ``custodian``'s lots whose holder asked for delivery (per the index), oldest request first."""
    rows = tx.all(
        "SELECT t.token_id FROM ix_tokens t JOIN ix_lots l ON l.chain_id = t.chain_id AND l.lot_id = t.lot_id"
        " WHERE t.chain_id = ? AND l.custodian = ? AND t.state = ? ORDER BY t.block_number, t.lot_id, t.serial"
        " LIMIT ?", (chain_id, custodian, REDEMPTION_REQUESTED, limit))
    return [int(row["token_id"]) for row in rows]
