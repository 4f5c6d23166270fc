"""The loan offer board: lenders post signed `LoanOffer`s, borrowers list the
ones that match a certificate.

An offer is only a signed message until a borrower accepts it on chain, so the
board keeps it as the lender signed it, keyed by its EIP-712 digest (posting
the same offer twice stores it once). Whether an offer is still acceptable
(expiry, nonce, appraisal, the lender's funds) changes with the chain, so the
listing checks against the chain at the time it is asked, one page at a time.
The board stays small: each lender has at most ``max_open`` unexpired offers on
it, and expired offers are deleted.

Kept in the relayer's PostgreSQL database when ``DATABASE_URL`` names one, else
in SQLite: in memory by default, in a file when ``AMPHORA_OFFER_DB`` names one,
so several workers and restarts share it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.errors import Conflict
from storage.db import Database, Row, Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS offers (
    offer_hash TEXT PRIMARY KEY,
    lender TEXT NOT NULL,
    lot_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    expiry BIGINT NOT NULL,
    offer TEXT NOT NULL,
    signature TEXT NOT NULL,
    posted_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS offers_by_lot ON offers (lot_id, expiry);
CREATE INDEX IF NOT EXISTS offers_by_lender ON offers (lender, expiry);
CREATE INDEX IF NOT EXISTS offers_by_expiry ON offers (expiry);
"""


@dataclass(frozen=True)
class StoredOffer:
    offer_hash: str
    #: The offer's fields by their API names (lender, currency, lot_id, ...), numbers as ints.
    offer: dict[str, Any]
    signature: str
    posted_at: float


class OfferBook(Store):
    """Signed loan offers."""

    def __init__(self, where: Database | Path | None) -> None:
        super().__init__(where, _SCHEMA)

    def add(self, offer_hash: str, offer: dict[str, Any], signature: str, now: float | None = None, *,
            max_open: int | None = None, not_expired_at: int = 0) -> StoredOffer:
        """Store ``offer`` (its fields by API name, ints); an offer already on the
        board is kept as first posted and returned. :class:`Conflict` when the
        lender already has ``max_open`` offers expiring at or after ``not_expired_at``."""
        at = time.time() if now is None else now
        # Numbers are uint256: stored as decimal text (SQLite integers are 64-bit),
        # except expiry, which is compared in SQL and clamped to fit.
        text = json.dumps({k: (str(v) if isinstance(v, int) else v) for k, v in offer.items()})
        with self._db.transaction() as tx:
            known = tx.one("SELECT offer_hash FROM offers WHERE offer_hash = ?" + self._db.for_update, (offer_hash,))
            if known is None and max_open is not None:
                if self._db.postgres:  # one lender's concurrent posts count one after another
                    tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"offers:{offer['lender']}",))
                row = tx.one("SELECT COUNT(*) AS n FROM offers WHERE lender = ? AND expiry >= ?",
                             (offer["lender"], min(not_expired_at, 2**63 - 1)))
                if row is not None and int(row["n"]) >= max_open:
                    raise Conflict(f"{offer['lender']} already has {row['n']} open offers on the board (at most "
                                   f"{max_open}): wait for one to expire, or cancel one on chain and post again "
                                   "after it expires")
            tx.execute(
                "INSERT INTO offers (offer_hash, lender, lot_id, token_id, expiry, offer, signature, "
                "posted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (offer_hash) DO NOTHING",
                (offer_hash, offer["lender"], str(offer["lot_id"]), str(offer["token_id"]),
                 min(int(offer["expiry"]), 2**63 - 1), text, signature, at))
            row = tx.one("SELECT offer_hash, offer, signature, posted_at FROM offers WHERE offer_hash = ?",
                         (offer_hash,))
        assert row is not None
        return _stored(row)

    def delete_expired(self, before: int) -> int:
        """Delete the offers whose expiry is before ``before``; how many."""
        with self._db.transaction() as tx:
            return tx.execute("DELETE FROM offers WHERE expiry < ?", (min(before, 2**63 - 1),))

    def for_certificate(self, lot_id: int, token_id: int, not_expired_at: int) -> list[StoredOffer]:
        """Offers against ``token_id`` itself or any certificate of ``lot_id``,
        whose expiry is at or after ``not_expired_at``, oldest first."""
        with self._db.transaction() as tx:
            rows = tx.all(
                "SELECT offer_hash, offer, signature, posted_at FROM offers WHERE lot_id = ? AND token_id IN (?, '0') "
                "AND expiry >= ? ORDER BY posted_at, offer_hash",
                (str(lot_id), str(token_id), min(not_expired_at, 2**63 - 1)))
        return [_stored(row) for row in rows]


    def for_lender(self, lender: str, not_expired_at: int) -> list[StoredOffer]:
        """``lender``'s offers whose expiry is at or after ``not_expired_at``, newest first."""
        with self._db.transaction() as tx:
            rows = tx.all(
                "SELECT offer_hash, offer, signature, posted_at FROM offers WHERE lender = ? AND expiry >= ? "
                "ORDER BY posted_at DESC, offer_hash", (lender, min(not_expired_at, 2**63 - 1)))
        return [_stored(row) for row in rows]


def _stored(row: Row) -> StoredOffer:
    offer_hash, text, signature, posted_at = row["offer_hash"], row["offer"], row["signature"], row["posted_at"]
    offer = {k: (int(v) if k not in ("lender", "currency") else v) for k, v in json.loads(text).items()}
    return StoredOffer(offer_hash, offer, signature, float(posted_at))
