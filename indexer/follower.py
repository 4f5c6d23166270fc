"""The chain follower: every event of the deployment into the database, in
step with the node, through reorgs.

One :meth:`Indexer.step` brings the index up to the node's head:

* **Far behind the head** (more than ``reorg_window`` blocks), where a reorg
  is not expected, it pages ``eth_getLogs`` over block ranges (the range
  adapts to the number of logs; the next page is fetched while this one is
  written) and stores the header of each page's last block. The header is read
  before and after the logs: the same hash both times means the logs are of
  that chain.
* **Near the head** it goes block by block: the header, whose parent hash must
  be the hash of the block indexed before it, then that block's logs by block
  hash (EIP-234), so they can only be that block's.
* Before each step it compares the hash of the last indexed block with the
  node's. On a mismatch (or a head below it) it walks back the stored blocks
  to the fork point, deletes the events above it and rolls the read models
  back with the undo journal (or, past the journal, replays them from the
  stored events), then goes on from there.

Each page or block is one database transaction: its events, the read models,
the blocks and the cursor commit together. Killed at any moment, the indexer
restarts from the cursor, which names exactly the blocks whose rows exist:
every event is ingested once, keyed by (chain id, block hash, log index).

Only the holder of the lease indexes (``ix_lease``, one row per chain); every
write transaction checks it still holds it, so an instance that stalled past
its lease cannot write over its successor. The others only read. The lease
expires ``lease_seconds`` after its holder last renewed it (a dead holder is
replaced within that time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from amphora.manifest import Manifest
from indexer.events import Decoder, Event
from indexer.node import Header, Node, NodeError, RangeTooLarge
from indexer.projections import Models, apply, columns, prefetch, roll_back
from indexer.schema import MODELS, SCHEMA
from storage.db import Database, Transaction

logger = logging.getLogger(__name__)
#: The ``args`` column's JSON (one encoder for every row: ``json.dumps`` with
#: options builds a new one per call).
_ARGS_JSON = json.JSONEncoder(separators=(",", ":"))


class LeaseLost(RuntimeError):
    """Another instance holds the indexing lease: this one must not write."""


@dataclass
class IndexConfig:
    #: Blocks below the head a reorg may reach; rows newer than this are "latest", older ones "final".
    reorg_window: int = 64
    #: Seconds between polls when the index is at the head.
    poll_seconds: float = 1.0
    #: The first page's block range at catch-up; it adapts to the logs per page
    #: (doubling while pages are light). Small, so that on a busy chain the first
    #: page is not every log at once: the next page is fetched while one is written.
    page_blocks: int = 100
    #: Aim for at most this many logs per page.
    page_logs: int = 10_000
    #: Seconds a lease lasts without renewal.
    lease_seconds: float = 15.0
    #: This instance's name in the lease and the status.
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")


@dataclass(frozen=True)
class Cursor:
    number: int
    hash: str | None
    final_block: int


def manifest_id(decoder: Decoder) -> str:
    """A fingerprint of the contracts indexed: another deployment on the same chain id starts afresh."""
    text = json.dumps(sorted((name, address, decoder.deploy_blocks[name])
                             for name, address in decoder.contracts.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_schema(db: Database) -> None:
    db.migrate(SCHEMA)
    # ix_cursor gained a column after its first release: add it where missing (two instances starting
    # together on PostgreSQL once both saw it missing, and the second ALTER failed: "already exists").
    db.add_column("ix_cursor", "manifest_id", "TEXT")


class Indexer:
    """Follows the node at ``node`` for the contracts of ``manifest`` into ``db``."""

    def __init__(self, db: Database, node: Node, manifest: Manifest, config: IndexConfig | None = None) -> None:
        self.db = db
        self.node = node
        self.config = config or IndexConfig()
        self.decoder = Decoder(manifest)
        self.chain_id = manifest.chain_id
        self.manifest_id = manifest_id(self.decoder)
        self._lease_name = f"indexer:{self.chain_id}"
        self._span = self.config.page_blocks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        ensure_schema(db)

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Follow the chain in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="amphora-indexer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.release_lease()

    def run(self) -> None:
        """Step until :meth:`stop`; a failure (the node away, the database busy) is
        logged and retried with a growing pause."""
        self.run_with(self._stop)

    def run_with(self, stop: threading.Event) -> None:
        """:meth:`run`, also ending when ``stop`` is set."""
        self._stop = stop
        pause = self.config.poll_seconds
        while not self._stop.is_set():
            try:
                self.step()
                self.last_error = None
                pause = self.config.poll_seconds
            except LeaseLost:
                pause = self.config.poll_seconds
            except Exception as err:  # noqa: BLE001 (the loop must survive anything and say what)
                self.last_error = f"{type(err).__name__}: {err}"
                logger.warning("indexer step failed (retrying in %.1f s): %s", pause, self.last_error)
                pause = min(pause * 2, 30.0)
            self._stop.wait(pause)

    def run_until_synced(self, timeout: float = 60.0) -> int:
        """Step until the index reaches the node's head (for commands and tests); the indexed block."""
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            cursor = self.cursor()
            head = self.node.head()
            if cursor.number >= head:
                return cursor.number
            if time.monotonic() > deadline:
                raise TimeoutError(f"the index reached block {cursor.number} of {head} in {timeout:g} s")

    # ------------------------------------------------------------ one step

    def step(self) -> bool:
        """Bring the index up to the head once; False when another instance holds the lease."""
        if not self.hold_lease():
            return False
        head = self.node.head()
        cursor = self.cursor()
        if cursor.hash is not None:
            at_node = self.node.header(cursor.number) if cursor.number <= head else None
            if at_node is None or at_node.hash != cursor.hash:
                self._reorg(head)
                cursor = self.cursor()
        safe = head - self.config.reorg_window
        if cursor.number < safe:
            self._catch_up(cursor, safe, head)
            cursor = self.cursor()
        if cursor.number < head and not self._stop.is_set():
            self._follow(cursor, head)
        self._touch(head)
        return True

    def _catch_up(self, cursor: Cursor, safe: int, head: int) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="amphora-indexer-fetch") as pool:
            future: Future[tuple[int, int, list[dict[str, Any]], Header]] | None = pool.submit(
                self._fetch, cursor.number + 1, min(safe, cursor.number + self._span))
            while future is not None:
                start, end, logs, header = future.result()
                if len(logs) > self.config.page_logs:
                    self._span = max(1, self._span // 2)
                elif len(logs) < self.config.page_logs // 4:
                    self._span = min(self._span * 2, 1_000_000)
                future = None
                if end < safe and not self._stop.is_set():
                    future = pool.submit(self._fetch, end + 1, min(safe, end + self._span))
                self._ingest(self._decode(logs), [header], header, head)

    def _fetch(self, start: int, end: int) -> tuple[int, int, list[dict[str, Any]], Header]:
        """The logs of blocks ``start``..``end`` (or fewer blocks, if the node
        refuses so many) and the last block's header, all of one chain."""
        while True:
            try:
                before = self.node.header(end)
                logs = self.node.logs(self.decoder.addresses, start, end)
                after = self.node.header(end)
            except RangeTooLarge:
                if end == start:
                    raise
                end = start + (end - start) // 2
                self._span = max(1, (end - start) + 1)
                continue
            if before is None or after is None:
                raise NodeError(f"the node has no block {end}")
            if before.hash == after.hash:
                return start, end, logs, after

    def _follow(self, cursor: Cursor, head: int) -> None:
        number, parent = cursor.number, cursor.hash
        while number < head and not self._stop.is_set():
            header = self.node.header(number + 1)
            if header is None:
                return
            if parent is not None and header.parent_hash != parent:
                self._reorg(head)
                return
            logs = self.node.logs_of_block(self.decoder.addresses, header.hash)
            self._ingest(self._decode(logs), [header], header, head)
            number, parent = header.number, header.hash

    def _decode(self, logs: Iterable[dict[str, Any]]) -> list[Event]:
        events = [event for event in (self.decoder.decode(log) for log in logs) if event is not None]
        missing = sorted({event.block_number for event in events if event.block_time is None})
        if missing:  # a node whose logs lack blockTimestamp
            times = {}
            for offset in range(0, len(missing), 100):
                times.update({n: h.timestamp for n, h in self.node.headers(missing[offset:offset + 100]).items()})
            for event in events:
                if event.block_time is None:
                    event.block_time = times.get(event.block_number)
        events.sort(key=lambda event: (event.block_number, event.log_index))
        return events

    # ------------------------------------------------------------ writing

    def _ingest(self, events: list[Event], headers: list[Header], tip: Header, head: int) -> None:
        journal_from = head - self.config.reorg_window + 1
        with self.db.transaction() as tx:
            self._fence(tx)
            cursor = self._cursor(tx)
            if tip.number <= cursor.number:
                return  # already ingested (a retried page): nothing twice
            models = Models(tx, self.chain_id, journal_from)
            prefetch(events, models)
            rows = []
            for event in events:
                token, lot, loan, party_a, party_b = columns(event, models)
                apply(event, models)
                rows.append((self.chain_id, event.block_hash, event.log_index, event.block_number, event.block_time,
                             event.tx_hash, event.contract, event.name, token, lot, loan, party_a, party_b,
                             _ARGS_JSON.encode(event.args)))
            tx.execute_many(
                "INSERT INTO ix_events (chain_id, block_hash, log_index, block_number, block_time, tx_hash, "
                "contract, event, token_id, lot_id, loan_id, party_a, party_b, args) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (chain_id, block_hash, log_index) DO NOTHING", rows)
            models.flush()
            blocks: dict[int, tuple[str, str | None, int | None]] = {
                event.block_number: (event.block_hash, None, event.block_time) for event in events}
            blocks.update({h.number: (h.hash, h.parent_hash, h.timestamp) for h in headers})
            tx.execute_many(
                "INSERT INTO ix_blocks (chain_id, number, hash, parent_hash, timestamp) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (chain_id, number) DO UPDATE SET hash = excluded.hash, "
                "parent_hash = excluded.parent_hash, timestamp = excluded.timestamp",
                [(self.chain_id, n, h, p, t) for n, (h, p, t) in sorted(blocks.items())])
            final_block = max(cursor.final_block, min(tip.number, journal_from - 1))
            if final_block > cursor.final_block:
                tx.execute("DELETE FROM ix_undo WHERE chain_id = ? AND block_number <= ?",
                           (self.chain_id, final_block))
            self._write_cursor(tx, tip.number, tip.hash, head, final_block)

    def _reorg(self, head: int) -> None:
        """Roll the index back to the last block it shares with the node."""
        fork = self._fork_point()
        with self.db.transaction() as tx:
            self._fence(tx)
            cursor = self._cursor(tx)
            logger.warning("reorg: block %s (%s) is no longer the node's; back to block %s",
                           cursor.number, cursor.hash, fork.number if fork else "none")
            if fork is None:
                self._clear(tx)
                return
            if fork.number >= cursor.final_block:
                roll_back(tx, self.chain_id, fork.number)
                self._delete_above(tx, fork.number)
                self._write_cursor(tx, fork.number, fork.hash, head, cursor.final_block)
            else:
                self._replay(tx, fork.number, fork.hash, head)

    def _fork_point(self) -> Header | None:
        """The highest stored block the node still has (same number, same hash)."""
        below: int | None = None
        while True:
            with self.db.read() as tx:
                rows = tx.all("SELECT number, hash FROM ix_blocks WHERE chain_id = ?"
                              + (" AND number < ?" if below is not None else "")
                              + " ORDER BY number DESC LIMIT 64",
                              (self.chain_id, below) if below is not None else (self.chain_id,))
            if not rows:
                return None
            at_node = self.node.headers([int(row["number"]) for row in rows])
            for row in rows:
                header = at_node.get(int(row["number"]))
                if header is not None and header.hash == row["hash"]:
                    return header
            below = int(rows[-1]["number"])

    def _delete_above(self, tx: Transaction, number: int) -> None:
        tx.execute("DELETE FROM ix_events WHERE chain_id = ? AND block_number > ?", (self.chain_id, number))
        tx.execute("DELETE FROM ix_blocks WHERE chain_id = ? AND number > ?", (self.chain_id, number))

    def _replay(self, tx: Transaction, number: int, block_hash: str | None, head: int) -> None:
        """The read models rebuilt from the stored events up to block ``number``."""
        self._delete_above(tx, number)
        for table in MODELS:
            tx.execute(f"DELETE FROM {table} WHERE chain_id = ?", (self.chain_id,))
        tx.execute("DELETE FROM ix_undo WHERE chain_id = ?", (self.chain_id,))
        models = Models(tx, self.chain_id, journal_from=number + 1)
        for row in tx.all("SELECT * FROM ix_events WHERE chain_id = ? ORDER BY block_number, log_index",
                          (self.chain_id,)):
            apply(stored_event(row), models)
        models.flush()
        self._write_cursor(tx, number, block_hash, head, number)

    def _clear(self, tx: Transaction) -> None:
        """Nothing of this chain left: the index starts again from the deploy blocks."""
        for table in (*MODELS, "ix_undo", "ix_events", "ix_blocks", "ix_cursor"):
            tx.execute(f"DELETE FROM {table} WHERE chain_id = ?", (self.chain_id,))

    def rebuild(self, from_block: int) -> None:
        """Forget every event from block ``from_block`` on and index them again
        (the read models replayed from the events before it)."""
        self.hold_lease(wait=True)
        start = max(from_block, self.decoder.start_block)
        with self.db.transaction() as tx:
            self._fence(tx)
            # Past the indexed block there is nothing to forget: the cursor must
            # not jump ahead over blocks never ingested.
            start = min(start, self._cursor(tx).number + 1)
            if start <= self.decoder.start_block:
                self._clear(tx)
                return
            row = tx.one("SELECT hash FROM ix_blocks WHERE chain_id = ? AND number = ?",
                         (self.chain_id, start - 1))
            block_hash = str(row["hash"]) if row else None
            if block_hash is None:
                header = self.node.header(start - 1)
                block_hash = header.hash if header else None
            self._replay(tx, start - 1, block_hash, self.node.head())

    # ------------------------------------------------------------ cursor and lease

    def cursor(self) -> Cursor:
        with self.db.read() as tx:
            return self._cursor(tx)

    def _cursor(self, tx: Transaction) -> Cursor:
        row = tx.one("SELECT block_number, block_hash, final_block, manifest_id FROM ix_cursor WHERE chain_id = ?",
                     (self.chain_id,))
        if row is None or row["manifest_id"] != self.manifest_id:
            return Cursor(self.decoder.start_block - 1, None, self.decoder.start_block - 1)
        return Cursor(int(row["block_number"]), row["block_hash"], int(row["final_block"]))

    def _write_cursor(self, tx: Transaction, number: int, block_hash: str | None, head: int,
                      final_block: int) -> None:
        tx.execute(
            "INSERT INTO ix_cursor (chain_id, block_number, block_hash, head_block, final_block, updated_at, "
            "holder, manifest_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chain_id) DO UPDATE SET "
            "block_number = excluded.block_number, block_hash = excluded.block_hash, "
            "head_block = excluded.head_block, final_block = excluded.final_block, "
            "updated_at = excluded.updated_at, holder = excluded.holder, manifest_id = excluded.manifest_id",
            (self.chain_id, number, block_hash, head, final_block, time.time(), self.config.instance,
             self.manifest_id))

    def _touch(self, head: int) -> None:
        """Record that the follower is alive and the head it saw."""
        with self.db.transaction() as tx:
            self._fence(tx)
            cursor = self._cursor(tx)
            self._write_cursor(tx, cursor.number, cursor.hash, head, cursor.final_block)

    def hold_lease(self, wait: bool = False) -> bool:
        """Take or renew the indexing lease; False when another live instance holds it."""
        while True:
            now = time.time()
            with self.db.transaction() as tx:
                row = tx.one("SELECT holder, expires_at FROM ix_lease WHERE name = ?" + self.db.for_update,
                             (self._lease_name,))
                if row is None:
                    # Another instance may insert it first (no row to lock): only the insert that counted holds.
                    held = tx.execute("INSERT INTO ix_lease (name, holder, expires_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT (name) DO NOTHING",
                                      (self._lease_name, self.config.instance, now + self.config.lease_seconds)) == 1
                elif row["holder"] == self.config.instance or float(row["expires_at"]) < now:
                    tx.execute("UPDATE ix_lease SET holder = ?, expires_at = ? WHERE name = ?",
                               (self.config.instance, now + self.config.lease_seconds, self._lease_name))
                    held = True
                else:
                    held = False
                if held and self._manifest_changed(tx):
                    self._clear(tx)  # another deployment under the same chain id: start afresh
            if held or not wait:
                return held
            time.sleep(min(1.0, self.config.lease_seconds / 4))

    def lease_holder(self) -> str | None:
        """The instance named in the lease (live or expired), if any."""
        with self.db.read() as tx:
            row = tx.one("SELECT holder FROM ix_lease WHERE name = ?", (self._lease_name,))
        return str(row["holder"]) if row else None

    def take_lease(self) -> None:
        """Take the lease from whoever holds it (an operator's rebuild): the
        holder's next write fails with :class:`LeaseLost` and it waits."""
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO ix_lease (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                       (self._lease_name, self.config.instance, time.time() + self.config.lease_seconds))

    def _manifest_changed(self, tx: Transaction) -> bool:
        row = tx.one("SELECT manifest_id FROM ix_cursor WHERE chain_id = ?", (self.chain_id,))
        return row is not None and row["manifest_id"] != self.manifest_id

    def release_lease(self) -> None:
        """Give the lease up (a clean stop): another instance takes over at once."""
        try:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM ix_lease WHERE name = ? AND holder = ?",
                           (self._lease_name, self.config.instance))
        except Exception:  # noqa: BLE001 (closing down: the lease expires anyway)
            logger.debug("could not release the indexing lease", exc_info=True)

    def _fence(self, tx: Transaction) -> None:
        row = tx.one("SELECT holder, expires_at FROM ix_lease WHERE name = ?" + self.db.for_update,
                     (self._lease_name,))
        now = time.time()
        if row is None or row["holder"] != self.config.instance or float(row["expires_at"]) < now:
            raise LeaseLost(f"{self.config.instance} no longer holds {self._lease_name}")
        # Every write renews the lease: a holder busy with a catch-up longer
        # than the lease keeps it (it would otherwise lose it to a waiting instance).
        tx.execute("UPDATE ix_lease SET expires_at = ? WHERE name = ?",
                   (now + self.config.lease_seconds, self._lease_name))


def stored_event(row: dict[str, Any]) -> Event:
    """An ``ix_events`` row as the :class:`Event` it was made from."""
    return Event(contract=str(row["contract"]), name=str(row["event"]), args=json.loads(row["args"]),
                 block_number=int(row["block_number"]), block_hash=str(row["block_hash"]),
                 block_time=row["block_time"], log_index=int(row["log_index"]), tx_hash=str(row["tx_hash"]),
                 address="")
