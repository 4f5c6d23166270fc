"""Verification scans: every time a bottle's verification page is opened, the
API records it, and flags what looks wrong.

A genuine bottle is checked by a few people in its life: at purchase, at a
gift, at opening. A QR code copied onto many bottles is checked by many
different people. So the signal is the number of **distinct clients**, never
the number of requests, which one client could inflate alone:

* only the HTML verification page (``GET /verify/{token_id}``, what a phone
  opens from the QR code) is a scan; API/JSON reads are not recorded (they only
  read the summary);
* link-preview bots and scripted clients (by user agent, with the maintained
  ``crawlerdetect`` list) are not recorded;
* a client is a salted hash of its network prefix (IPv4 /24, IPv6 /48) and its
  user agent. The salt is random per UTC day and deleted the next day, so the
  hashes cannot be linked across days, and no raw address or user agent is
  ever stored. A client's repeated views within the window are stored once;
* at most ``clients_per_network`` clients count per network prefix, so one
  network rotating user agents counts as a couple of clients, not hundreds;
* scans older than the retention period are deleted.

Each answer carries the counts and these anomalies:

``burst``
    more than ``burst_threshold`` distinct clients within ``window_seconds``,
    or more than ``day_threshold`` within a day.
``redeemed``
    the certificate was redeemed: the code may have been copied onto a refill.
``flagged``
    the certificate is reported lost or stolen.

The log is kept in the relayer's PostgreSQL database when ``DATABASE_URL``
names one (every instance sees every scan and shares the day's salt), else in
SQLite: in memory by default, in a file when ``AMPHORA_SCAN_DB`` names one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from crawlerdetect import CrawlerDetect

from api.network import ip_prefix
from storage.db import Database, Store, Transaction

#: Anomaly codes, in the order they are reported.
BURST = "burst"
REDEEMED = "redeemed"
FLAGGED = "flagged"

DAY_SECONDS = 86_400
#: How often (seconds) one process deletes scans past the retention period.
_PRUNE_EVERY = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scan_views (
    token_id TEXT NOT NULL,
    network TEXT NOT NULL,
    client TEXT NOT NULL,
    scanned_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS scan_views_by_token ON scan_views (token_id, scanned_at);
CREATE INDEX IF NOT EXISTS scan_views_by_time ON scan_views (scanned_at);
CREATE TABLE IF NOT EXISTS scan_salts (
    day BIGINT PRIMARY KEY,
    salt TEXT NOT NULL
)
"""

_crawlers = CrawlerDetect()
_crawlers_lock = threading.Lock()


@dataclass(frozen=True)
class Client:
    """Who opened a page, as far as the scan log may know: the network prefix
    and the user agent. Held in memory for one request; only their salted
    hashes are stored."""

    network: str
    agent: str


def network_prefix(host: str | None) -> str:
    """The client's network: its IPv4 /24 or IPv6 /48 (an IPv4-mapped IPv6
    address as IPv4); anything else as given."""
    if not host:
        return "unknown"
    prefix = ip_prefix(host, 24, 48)
    return prefix if prefix is not None else host


def is_bot(user_agent: str | None) -> bool:
    """Whether ``user_agent`` is a crawler, a link-preview bot or a scripted
    client (curl, python-requests, ...); a missing user agent counts as one."""
    if not user_agent or not user_agent.strip():
        return True
    with _crawlers_lock:  # the detector keeps per-call state
        return bool(_crawlers.isCrawler(user_agent[:1000]))


def page_client(host: str | None, user_agent: str | None) -> Client | None:
    """The client of a page view, or ``None`` when the view must not count (a bot)."""
    if is_bot(user_agent):
        return None
    return Client(network=network_prefix(host), agent=(user_agent or "")[:1000])


@dataclass(frozen=True)
class ScanSummary:
    """What the scan log says about one certificate, this scan included."""

    total: int
    recent: int
    window_seconds: int
    day: int = 0
    anomalies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LotDayScans:
    """One bottle's scans on one UTC day (:meth:`ScanLog.lot_days`)."""

    token_id: int
    #: Days since 1970-01-01 (UTC).
    day: int
    scans: int
    networks: int


class ScanLog(Store):
    """Counts the distinct clients that verify each certificate."""

    def __init__(self, where: Database | Path | None, window_seconds: int, burst_threshold: int, *,
                 day_threshold: int = 100, clients_per_network: int = 2, retention_days: int = 30) -> None:
        super().__init__(where, _SCHEMA)
        self.window_seconds = window_seconds
        self.burst_threshold = burst_threshold
        self.day_threshold = day_threshold
        self.clients_per_network = clients_per_network
        self.retention_seconds = max(retention_days * DAY_SECONDS, DAY_SECONDS, window_seconds)
        self._pruned_at = float("-inf")

    def record(self, token_id: int, client: Client | None, *, redeemed: bool, flagged: bool,
               now: float | None = None) -> ScanSummary:
        """Record a view of ``token_id`` by ``client`` (``None``: a read that
        does not count, such as an API call or a bot) and summarise."""
        at = time.time() if now is None else now
        key = str(token_id)
        with self._db.transaction() as tx:
            if client is not None:
                salt = self._salt(tx, int(at // DAY_SECONDS))
                network = _hash(salt, "network", client.network)
                who = _hash(salt, "client", f"{client.network}\n{client.agent}")
                seen = tx.one("SELECT 1 AS seen FROM scan_views WHERE token_id = ? AND client = ? AND scanned_at > ?",
                              (key, who, at - self.window_seconds))
                if seen is None:
                    tx.execute("INSERT INTO scan_views (token_id, network, client, scanned_at) VALUES (?, ?, ?, ?)",
                               (key, network, who, at))
            if at - self._pruned_at >= _PRUNE_EVERY:
                self._prune(tx, at)
            total = tx.one("SELECT COUNT(*) AS n FROM scan_views WHERE token_id = ?", (key,))
            recent = self._clients(tx, key, at - self.window_seconds)
            day = self._clients(tx, key, at - DAY_SECONDS)
        anomalies = []
        if recent > self.burst_threshold or day > self.day_threshold:
            anomalies.append(BURST)
        if redeemed:
            anomalies.append(REDEEMED)
        if flagged:
            anomalies.append(FLAGGED)
        return ScanSummary(int(total["n"]) if total else 0, recent, self.window_seconds, day, anomalies)

    def lot_days(self, lot_id: int, days: int, now: float | None = None) -> list[LotDayScans]:
        """The recorded scans of lot ``lot_id``'s bottles over the last ``days`` UTC days (today included), per
        bottle and day, with the distinct networks it was scanned from that day (their hashes are salted per
        day, so they are countable within a day only). Counts, no client data."""
        at = time.time() if now is None else now
        since = (int(at // DAY_SECONDS) - days + 1) * DAY_SECONDS
        # SQLite's CAST truncates; PostgreSQL's rounds, so it floors first.
        day = ("CAST(FLOOR(scanned_at / 86400) AS BIGINT)" if self._db.postgres
               else "CAST(scanned_at / 86400 AS INTEGER)")
        with self._db.transaction() as tx:
            rows = tx.all(f"SELECT token_id, {day} AS day, COUNT(*) AS scans, COUNT(DISTINCT network) AS networks "
                          f"FROM scan_views WHERE scanned_at >= ? GROUP BY token_id, {day}", (since,))
        found = [LotDayScans(int(row["token_id"]), int(row["day"]), int(row["scans"]), int(row["networks"]))
                 for row in rows]
        return sorted((row for row in found if row.token_id >> 32 == lot_id), key=lambda r: (r.day, r.token_id))

    def _clients(self, tx: Transaction, key: str, since: float) -> int:
        """Distinct clients since ``since``, at most ``clients_per_network`` per network."""
        row = tx.one(
            "SELECT COALESCE(SUM(CASE WHEN per_network.n > ? THEN ? ELSE per_network.n END), 0) AS clients FROM "
            "(SELECT network, COUNT(DISTINCT client) AS n FROM scan_views WHERE token_id = ? AND scanned_at > ?"
            " GROUP BY network) per_network",
            (self.clients_per_network, self.clients_per_network, key, since))
        return int(row["clients"]) if row else 0

    def _salt(self, tx: Transaction, day: int) -> bytes:
        """The day's random salt, created by the first scan of the day (shared by every instance)."""
        tx.execute("INSERT INTO scan_salts (day, salt) VALUES (?, ?) ON CONFLICT (day) DO NOTHING",
                   (day, secrets.token_hex(32)))
        row = tx.one("SELECT salt FROM scan_salts WHERE day = ?", (day,))
        assert row is not None
        return bytes.fromhex(row["salt"])

    def _prune(self, tx: Transaction, at: float) -> None:
        """Delete scans past the retention period and the salts of past days
        (so yesterday's hashes can no longer be recomputed from a guess)."""
        tx.execute("DELETE FROM scan_views WHERE scanned_at < ?", (at - self.retention_seconds,))
        tx.execute("DELETE FROM scan_salts WHERE day < ?", (int(at // DAY_SECONDS),))
        self._pruned_at = at


def _hash(salt: bytes, kind: str, value: str) -> str:
    return hmac.new(salt, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]
