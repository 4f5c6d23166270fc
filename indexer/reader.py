"""Reading the index: what the API and the pages ask of it.

Every answer is read in one snapshot of the database and comes with the
index's :class:`IndexStatus` (how far it goes, the head it last saw), so a
caller can say "as of block N" and tell a stale index from a current one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from storage.db import Database, Transaction

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


class IndexReader:
    """Queries over the index in ``db`` for chain ``chain_id``."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
