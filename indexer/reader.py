"""Reading the index: what the API and the pages ask of it.

Every answer is read in one snapshot of the database (:meth:`Database.snapshot`)
and comes with the index's :class:`IndexStatus` (how far it goes, the head it
last saw), so a caller can say "as of block N" and tell a stale index from a
current one. The queries themselves live by subject: :mod:`indexer.holdings`
(certificates of an address, lots), :mod:`indexer.history` (a certificate's
history in words), :mod:`indexer.ledgers` (loans, merchants' points, the
clearing statement).

Lists are paginated with opaque cursors (:func:`encode_cursor`): a position in
the list's order, never an offset, so a page stays right while rows are added.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from storage.db import Database, Transaction

T = TypeVar("T")

#: Most items one page may hold.
MAX_PAGE = 200
_CURSOR_PREFIX = "c1."

#: An index whose follower has not written for this many seconds is "stopped".
STALE_SECONDS = 60.0


@dataclass(frozen=True)
class IndexStatus:
    #: The last block ingested (None: nothing yet).
    indexed_block: int | None
    #: Its hash.
    indexed_hash: str | None
    #: The node's head when the follower last looked.
    head_block: int | None
    #: Blocks up to this one are final (beyond the reorg window).
    final_block: int | None
    #: Seconds since the follower last wrote (None: never).
    seconds_since_update: float | None
    #: Which instance indexes.
    holder: str | None

    @property
    def lag(self) -> int | None:
        if self.indexed_block is None or self.head_block is None:
            return None
        return max(0, self.head_block - self.indexed_block)

    @property
    def state(self) -> Literal["following", "behind", "stopped", "empty"]:
        """``following``, ``behind`` (lagging), ``stopped`` (no write for a while) or ``empty``."""
        if self.indexed_block is None:
            return "empty"
        if self.seconds_since_update is not None and self.seconds_since_update > STALE_SECONDS:
            return "stopped"
        return "behind" if (self.lag or 0) > 0 else "following"


    def confirmations(self, block_number: int) -> int:
        """Blocks on top of ``block_number``, itself included (0 if beyond the known head)."""
        return max(0, (self.head_block or 0) - block_number + 1)

    def final(self, block_number: int) -> bool:
        """Whether a row of ``block_number`` is beyond the reorg window."""
        return self.final_block is not None and block_number <= self.final_block


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A query's result with the index's status read in the same snapshot."""

    status: IndexStatus
    value: T


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, and the cursor of the next page (None: the last)."""

    items: list[T]
    next_cursor: str | None


class BadCursor(ValueError):
    """A cursor this service did not hand out (or one of another list)."""


def encode_cursor(*position: int) -> str:
    """An opaque cursor for ``position`` (a tuple of integers in the list's order)."""
    text = ".".join(str(int(part)) for part in position)
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, parts: int) -> tuple[int, ...] | None:
    """The position of ``cursor`` (None for None); :class:`BadCursor` if it is
    not a cursor of a list whose positions have ``parts`` integers."""
    if cursor is None:
        return None
    if not cursor.startswith(_CURSOR_PREFIX) or len(cursor) > 200:
        raise BadCursor("cursor: not a cursor this service handed out (pass `next_cursor` unchanged)")
    body = cursor[len(_CURSOR_PREFIX):]
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        position = tuple(int(part) for part in text.split("."))
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise BadCursor("cursor: not a cursor this service handed out (pass `next_cursor` unchanged)") from err
    if len(position) != parts or any(not 0 <= part < 2**63 for part in position):
        raise BadCursor("cursor: belongs to another list (pass the `next_cursor` of this list)")
    return position


class IndexReader:
    """Queries over the index in ``db``; every query names its chain."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def answer_async(self, chain_id: int, query: Callable[[Transaction, IndexStatus], T],
                           heavy: bool = False) -> Answer[T]:
        """:meth:`answer` for a coroutine: run where it is on a SQLite file (a
        read of an index page takes well under a millisecond and never waits for
        the follower), in a worker thread otherwise (PostgreSQL's round trips,
        or in-memory SQLite's shared lock, must not block the event loop), and
        in a worker thread too when the caller knows it is ``heavy`` (SQLite
        lets go of the interpreter while it steps, so the loop serves the light
        answers meanwhile)."""
        if self.db.reads_beside_writer and not heavy:
            return self.answer(chain_id, query)
        return await asyncio.to_thread(self.answer, chain_id, query)

    def answer(self, chain_id: int, query: Callable[[Transaction, IndexStatus], T]) -> Answer[T]:
        """``query(tx, status)`` run in one snapshot with the status read in it."""
        with self.db.snapshot() as tx:
            status = self.status(chain_id, tx)
            return Answer(status, query(tx, status))

    def wait_for(self, chain_id: int, block_number: int, timeout: float, max_gap: int = 20,
                 poll: float = 0.02) -> IndexStatus:
        """The status once the index holds ``block_number``, or after ``timeout``
        seconds whatever it holds (an answer that must include a block the
        caller just read from the node waits this long at most). An index that
        cannot get there soon (empty, stopped, or more than ``max_gap`` blocks
        behind) is not waited for: a request must not hold a worker for
        nothing while the follower is down."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(chain_id, None)
            if status.indexed_block is not None and status.indexed_block >= block_number:
                return status
            if (status.indexed_block is None or status.state == "stopped"
                    or block_number - status.indexed_block > max_gap or time.monotonic() >= deadline):
                return status
            time.sleep(poll)

    def issues_lots(self, chain_id: int, address: str) -> bool:
        """Whether ``address`` issued a lot the index holds (its holdings then
        include unsold stock, found by walking the lot's moved bottles)."""
        with self.db.read() as tx:
            return tx.one("SELECT 1 AS found FROM ix_lots WHERE chain_id = ? AND issuer = ? LIMIT 1",
                          (chain_id, address)) is not None

    def status(self, chain_id: int, tx: Transaction | None = None) -> IndexStatus:
        if tx is None:
            with self.db.read() as read:
                return self.status(chain_id, read)
        try:
            row = tx.one("SELECT block_number, block_hash, head_block, final_block, updated_at, holder FROM ix_cursor "
                         "WHERE chain_id = ?", (chain_id,))
        except Exception:  # noqa: BLE001 (no table yet: the follower has not started)
            row = None
        if row is None:
            return IndexStatus(None, None, None, None, None, None)
        return IndexStatus(int(row["block_number"]), row["block_hash"], int(row["head_block"]), int(row["final_block"]),
                           max(0.0, time.time() - float(row["updated_at"])), row["holder"])
