"""Checking an index against the chain: a fresh index of the same blocks,
compared table by table, row by row.

:func:`fresh_index` indexes the chain from the deploy blocks up to a given
block into a database of its own (by default a temporary one in memory), with
the same follower as the live index, so it tells what the tables must hold
when nothing was lost, duplicated or left behind by a reorg.
:func:`compare` reads two indexes, each in one snapshot, and says every
difference in words: an event one has and the other has not, a lot, a
certificate, a loan or a merchant whose columns differ. ``python -m indexer
check`` uses both; the tests call them after reorgs and kills.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from amphora.manifest import Manifest
from indexer.events import SERIAL_BITS, SERIAL_MASK
from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from indexer.schema import MODELS
from storage.db import Database, Transaction


class CappedNode(Node):
    """A node whose head is never above ``cap``: a follower on it stops there."""

    def __init__(self, url: str, cap: int) -> None:
        super().__init__(url)
        self.cap = cap

    def head(self) -> int:
        return min(super().head(), self.cap)


@dataclass(frozen=True)
class Snapshot:
    """One index's rows for a chain, read in one snapshot of its database."""

    #: The last block indexed (None: nothing) and its hash.
    block: int | None
    block_hash: str | None
    #: ``ix_events`` rows up to the compared block, by (block hash, log index).
    events: dict[tuple[str, int], dict[str, Any]]
    #: Each read model's rows by key.
    models: dict[str, dict[str, dict[str, Any]]]


@contextmanager
def _snapshot(db: Database) -> Iterator[Transaction]:
    """A transaction that sees one state of ``db`` throughout, without holding
    up its writer where the database allows (PostgreSQL: REPEATABLE READ;
    a SQLite file: a read transaction on a reader connection, beside WAL)."""
    if db.postgres:
        with db.transaction() as tx:
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield tx
        return
    with db.read() as tx:
        try:
            tx.execute("BEGIN")
        except sqlite3.OperationalError:  # already in a transaction (in-memory SQLite: the writer's)
            yield tx
            return
        try:
            yield tx
        finally:
            tx.execute("COMMIT")


def read_index(db: Database, chain_id: int, up_to_block: int) -> Snapshot:
    """The events up to ``up_to_block`` and every read-model row of ``chain_id`` in ``db``."""
    with _snapshot(db) as tx:
        cursor = tx.one("SELECT block_number, block_hash FROM ix_cursor WHERE chain_id = ?", (chain_id,))
        events = {(str(row["block_hash"]), int(row["log_index"])): _plain(row) for row in tx.all(
            "SELECT * FROM ix_events WHERE chain_id = ? AND block_number <= ?", (chain_id, up_to_block))}
        models = {table: {str(row[key]): _plain(row) for row in tx.all(
            f"SELECT * FROM {table} WHERE chain_id = ?", (chain_id,))} for table, key in MODELS.items()}
    return Snapshot(int(cursor["block_number"]) if cursor else None, cursor["block_hash"] if cursor else None,
                    events, models)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row with values comparable across SQLite and PostgreSQL (integers as ``int``)."""
    return {name: int(value) if isinstance(value, bool) else value for name, value in row.items()}


def compare(db_a: Database, db_b: Database, chain_id: int, up_to_block: int,
            names: tuple[str, str] = ("the index", "a fresh scan")) -> list[str]:
    """Every difference between the indexes in ``db_a`` and ``db_b`` of chain
    ``chain_id``, both expected to end at block ``up_to_block``, in words
    (``names`` calls them); empty when they hold the same rows.

    Events are compared up to ``up_to_block``; the read models (their state at
    the index's last block) only mean the same when both indexes end there, so
    an index that ends elsewhere is reported first."""
    return compare_snapshots(read_index(db_a, chain_id, up_to_block), read_index(db_b, chain_id, up_to_block),
                             up_to_block, names)


def compare_snapshots(a: Snapshot, b: Snapshot, up_to_block: int,
                      names: tuple[str, str] = ("the index", "a fresh scan")) -> list[str]:
    """:func:`compare` of two indexes already read."""
    differences = []
    for snapshot, name in ((a, names[0]), (b, names[1])):
        if snapshot.block != up_to_block:
            differences.append(f"{name} ends at block {snapshot.block}, not {up_to_block}")
    if a.block == b.block and a.block_hash != b.block_hash:
        differences.append(f"block {a.block} is {a.block_hash} in {names[0]} but {b.block_hash} in {names[1]}")
    differences += _rows("ix_events", a.events, b.events, names)
    for table in MODELS:
        differences += _rows(table, a.models[table], b.models[table], names)
    return differences


def _rows(table: str, rows_a: dict[Any, dict[str, Any]], rows_b: dict[Any, dict[str, Any]],
          names: tuple[str, str]) -> list[str]:
    differences = []
    for key in sorted(rows_a.keys() | rows_b.keys(), key=_sort_key):
        row_a, row_b = rows_a.get(key), rows_b.get(key)
        if row_a is None or row_b is None:
            present, absent = (names[1], names[0]) if row_a is None else names
            differences.append(f"{describe(table, row_a or row_b or {})} is in {present} but not in {absent}")
            continue
        changed = [f"{column} is {row_a[column]!r} in {names[0]} but {row_b.get(column)!r} in {names[1]}"
                   for column in row_a if row_a[column] != row_b.get(column)]
        if changed:
            differences.append(f"{describe(table, row_a)}: {'; '.join(changed)}")
    return differences


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, tuple):
        return (0, key)
    return (0, int(key)) if str(key).isdigit() else (1, str(key))


def describe(table: str, row: dict[str, Any]) -> str:
    """A row as a person names it: "the Transfer event of WineCertificate in block 12 (log 3)"."""
    if table == "ix_events":
        return (f"the {row['event']} event of {row['contract']} in block {row['block_number']} "
                f"({row['block_hash']}, log {row['log_index']}, transaction {row['tx_hash']})")
    if table == "ix_lots":
        return f"lot {row['lot_id']}"
    if table == "ix_tokens":
        token = int(row["token_id"])
        return f"certificate {token} (lot {token >> SERIAL_BITS}, bottle {token & SERIAL_MASK})"
    if table == "ix_loans":
        return f"loan {row['loan_id']}"
    if table == "ix_merchants":
        return f"merchant {row['merchant']}"
    return f"{table} row {row}"


def fresh_index(rpc_url: str, manifest: Manifest, up_to_block: int, db: Database | None = None,
                reorg_window: int = 64, timeout: float = 600.0) -> Database:
    """An index of the chain at ``rpc_url`` from the deploy blocks to block
    ``up_to_block``, built in ``db`` (default: a new in-memory database)."""
    db = db or Database()
    extend_index(db, rpc_url, manifest, up_to_block, reorg_window, timeout)
    return db


def extend_index(db: Database, rpc_url: str, manifest: Manifest, up_to_block: int, reorg_window: int = 64,
                 timeout: float = 600.0) -> None:
    """Bring the index in ``db`` up to block ``up_to_block`` (no further)."""
    node = CappedNode(rpc_url, up_to_block)
    try:
        indexer = Indexer(db, node, manifest, IndexConfig(reorg_window=reorg_window, instance="amphora-check"))
        indexer.run_until_synced(timeout)
        indexer.release_lease()
    finally:
        node.close()
