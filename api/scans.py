"""Verification scans: every time a certificate is looked up to verify a bottle,
the API records it, and flags what looks wrong.

A genuine bottle is scanned a few times in its life: at purchase, at a gift, at
opening. A QR code copied onto many bottles is scanned far more, and a code on a
bottle already redeemed (its certificate burned when the bottle was shipped) or
reported lost or stolen should not be scanned at all. So each answer carries the
count and these anomalies:

``burst``
    more than ``scan_burst_threshold`` scans within ``scan_window_seconds``.
``redeemed``
    the certificate was redeemed: the code may have been copied onto a refill.
``flagged``
    the certificate is reported lost or stolen.

The log is kept in the relayer's PostgreSQL database when ``DATABASE_URL``
names one (every instance sees every scan), else in SQLite: in memory by
default (counts start afresh with the process), in a file when
``AMPHORA_SCAN_DB`` names one, so several workers and restarts share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from api.db import Database, Store

#: Anomaly codes, in the order they are reported.
BURST = "burst"
REDEEMED = "redeemed"
FLAGGED = "flagged"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    token_id TEXT NOT NULL,
    scanned_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS scans_by_token ON scans (token_id, scanned_at);
"""


@dataclass(frozen=True)
class ScanSummary:
    """What the scan log says about one certificate, this scan included."""

    total: int
    recent: int
    window_seconds: int
    anomalies: list[str] = field(default_factory=list)


class ScanLog(Store):
    """Counts verification scans per certificate."""

    def __init__(self, where: Database | Path | None, window_seconds: int, burst_threshold: int) -> None:
        super().__init__(where, _SCHEMA)
        self.window_seconds = window_seconds
        self.burst_threshold = burst_threshold

    def record(self, token_id: int, *, redeemed: bool, flagged: bool, now: float | None = None) -> ScanSummary:
        """Record one scan of ``token_id`` and summarise its scans so far."""
        at = time.time() if now is None else now
        key = str(token_id)
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO scans (token_id, scanned_at) VALUES (?, ?)", (key, at))
            row = tx.one(
                "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN scanned_at > ? THEN 1 ELSE 0 END), 0) AS recent"
                " FROM scans WHERE token_id = ?",
                (at - self.window_seconds, key),
            )
        assert row is not None
        total, recent = int(row["total"]), int(row["recent"])
        anomalies = []
        if recent > self.burst_threshold:
            anomalies.append(BURST)
        if redeemed:
            anomalies.append(REDEEMED)
        if flagged:
            anomalies.append(FLAGGED)
        return ScanSummary(int(total), int(recent), self.window_seconds, anomalies)
