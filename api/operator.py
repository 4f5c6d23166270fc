"""What the operator sees and what the operator's actions leave behind.

* :class:`AuditLog`: every operator write through the API (a quota set, and
  any admin write added later) as one row: who (a short hash of the operator
  credential, never the credential), what, on what, when, and the values
  before and after. Rows are only ever appended.
* Reads over the relayer's tables that ``/admin`` routes answer with: account
  ids as the identifiers people know them by, relayed requests that are stuck
  or failed, and the service's sponsored gas per day.

The relayer, the accounts and this log share one database (``app.state.db``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from api.outbox import FAILED, QUEUED, SENT, RelayRecord
from api.policy import GLOBAL
from api.users import normalize_identifier
from storage.db import Database

logger = logging.getLogger(__name__)
#: One line per operator action, beside the table (the same trail as :mod:`api.users`' audit lines).
audit = logging.getLogger("api.audit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_audit (
    id TEXT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX IF NOT EXISTS operator_audit_at ON operator_audit (at)
"""

#: The most rows one read of the audit log or of the requests returns.
MAX_ROWS = 200
#: What the request list shows: requests still open past the stuck delay, or failed ones.
RequestState = Literal["stuck", "failed"]


def operator_id(credential: str) -> str:
    """Who did it, as the audit log names the holder of ``credential``: a short
    SHA-256 of it (two operator tokens tell apart; the token cannot be read back)."""
    return "operator:" + hashlib.sha256(credential.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AuditEntry:
    id: str
    at: float
    who: str
    action: str
    subject: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class AuditLog:
    """The operator actions' table, appended to and read newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate(SCHEMA)

    def record(self, who: str, action: str, subject: str, old: dict[str, Any] | None,
               new: dict[str, Any] | None, tx: Any = None) -> AuditEntry:
        """Append one action; inside ``tx`` when given (the action's own transaction, so
        the action and its record commit together), else in a transaction of its own."""
        entry = AuditEntry(str(uuid.uuid4()), time.time(), who, action, subject, old, new)
        if tx is None:
            with self._db.transaction() as own:
                self._insert(own, entry)
        else:
            self._insert(tx, entry)
        audit.info("operator action: %s %s on %s: %s -> %s", who, action, subject, old, new)
        return entry

    @staticmethod
    def _insert(tx: Any, entry: AuditEntry) -> None:
        tx.execute("INSERT INTO operator_audit (id, at, who, action, subject, old_value, new_value)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (entry.id, entry.at, entry.who, entry.action, entry.subject,
                                                    _dump(entry.old), _dump(entry.new)))

    def latest(self, limit: int = 50) -> list[AuditEntry]:
        with self._db.read() as tx:
            rows = tx.all("SELECT * FROM operator_audit ORDER BY at DESC, id LIMIT ?", (min(limit, MAX_ROWS),))
        return [AuditEntry(r["id"], float(r["at"]), r["who"], r["action"], r["subject"], _load(r["old_value"]),
                           _load(r["new_value"])) for r in rows]


_AUDIT_LOCK = threading.Lock()


def audit_log(state: Any) -> AuditLog:
    """The app's audit log (``state``: ``app.state``), made on first use over its database."""
    with _AUDIT_LOCK:
        log: AuditLog | None = getattr(state, "operator_audit", None)
        if log is None:
            log = AuditLog(state.db)
            state.operator_audit = log
        return log


def _dump(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, sort_keys=True) if value is not None else None


def _load(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


# ------------------------------------------------------------------- reads


def identifiers(db: Database, account_ids: Iterable[str]) -> dict[str, str]:
    """The identifier of each custodial account id given (ids of no account are left out)."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    with db.read() as tx:
        rows = tx.all(f"SELECT id, identifier FROM users WHERE id IN ({', '.join('?' for _ in ids)})", ids)
    return {r["id"]: r["identifier"] for r in rows}


def account_id_of(db: Database, identifier: str) -> str | None:
    """The id of the account named ``identifier`` (as normalised at sign-up), or None."""
    try:
        key = normalize_identifier(identifier)
    except ValueError:
        return None
    with db.read() as tx:
        row = tx.one("SELECT id FROM users WHERE identifier = ?", (key,))
    return str(row["id"]) if row is not None else None


def troubled_requests(db: Database, state: RequestState, stuck_seconds: float, limit: int = 50) -> list[RelayRecord]:
    """Relayed requests newest first: ``stuck``, still queued or sent (no
    receipt) ``stuck_seconds`` after they were sent (or queued), or replaced
    at least once; ``failed``, reverted on chain or cancelled."""
    limit = min(limit, MAX_ROWS)
    with db.read() as tx:
        if state == "failed":
            rows = tx.all("SELECT * FROM relay_requests WHERE status = ? ORDER BY updated_at DESC LIMIT ?",
                          (FAILED, limit))
        else:
            since = time.time() - stuck_seconds
            rows = tx.all("SELECT * FROM relay_requests WHERE status IN (?, ?)"
                          " AND (COALESCE(sent_at, created_at) <= ? OR replacements > 0)"
                          " ORDER BY created_at DESC LIMIT ?", (QUEUED, SENT, since, limit))
    return [RelayRecord.from_row(row) for row in rows]


@dataclass(frozen=True)
class DayGas:
    day: str
    actions: int
    gas: int


def sponsored_per_day(db: Database, days: int, today: dt.date | None = None) -> list[DayGas]:
    """The service's relayed actions and gas (as charged to its quota) on each
    of the last ``days`` UTC days, oldest first, zero on days without any."""
    last = today or dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=days - 1)
    with db.read() as tx:
        rows = tx.all("SELECT day, actions, gas FROM relay_usage WHERE account = ? AND day >= ? AND day <= ?",
                      (GLOBAL, first.isoformat(), last.isoformat()))
    seen = {r["day"]: (int(r["actions"]), int(r["gas"])) for r in rows}
    out = []
    for offset in range(days):
        day = (first + dt.timedelta(days=offset)).isoformat()
        actions, gas = seen.get(day, (0, 0))
        out.append(DayGas(day, actions, gas))
    return out


__all__ = ["AuditEntry", "AuditLog", "DayGas", "account_id_of", "audit_log", "identifiers", "operator_id",
           "sponsored_per_day", "troubled_requests"]
