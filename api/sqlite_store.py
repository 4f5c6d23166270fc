"""The one way the API keeps a small SQLite table: a file shared by workers
(WAL) or, without a path, an in-memory database per process; one lock around
every statement, since FastAPI runs sync routes in a thread pool."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class SqliteStore:
    """An SQLite connection opened on ``path`` (``None``: in memory) with ``schema`` applied."""

    def __init__(self, path: Path | None, schema: str) -> None:
        self._lock = threading.Lock()
        target = str(path) if path is not None else ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()
