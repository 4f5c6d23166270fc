"""The relayer's database: SQLite by default, PostgreSQL when a URL names one.

One small interface serves both, so the outbox, the accounts and the quotas are
written once:

* ``with db.transaction() as tx:`` runs its statements in one transaction,
  committed when the block ends and rolled back when it raises.
* ``tx.execute(sql, params)``, ``tx.one(...)``, ``tx.all(...)`` take SQL with
  ``?`` placeholders (translated to ``%s`` for PostgreSQL, where a literal
  ``%`` is doubled so that it means the same as on SQLite) and return rows as
  dicts.
* ``with db.lock(name):`` holds a named lock for the block, for every
  instance sharing the database (PostgreSQL: a transaction-scoped advisory
  lock on a connection of its own; SQLite, one instance: a lock in the
  process).
* ``db.skip_locked`` is ``" FOR UPDATE SKIP LOCKED"`` on PostgreSQL, where
  several relayer instances claim outbox rows side by side, and empty on
  SQLite, whose ``BEGIN IMMEDIATE`` already lets one writer in at a time.

SQLite is for one instance: one connection in WAL mode, one lock around each
transaction (FastAPI runs sync routes in a thread pool). Without a path it is
an in-memory database that ends with the process. PostgreSQL connections come
from a bounded pool.

Schemas are portable DDL: ``TEXT``, ``BIGINT``, ``DOUBLE PRECISION`` and
``INTEGER`` columns, text primary keys, no autoincrement. Amounts in wei or
token units, which exceed 64 bits, are decimal ``TEXT``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class LockBusy(TimeoutError):
    """A named lock of :meth:`Database.lock` was still held by another holder when the wait ran out."""


class Transaction:
    """Statements inside one transaction of :meth:`Database.transaction`."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self._cursor = cursor
        self._postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run ``sql``; returns the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return int(self._cursor.rowcount)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` once per parameter row (one round of the driver's batch API)."""
        if rows:
            self._cursor.executemany(self._sql(sql), [tuple(row) for row in rows])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row ``sql`` returns, or ``None``."""
        self._cursor.execute(self._sql(sql), tuple(params))
        row = self._cursor.fetchone()
        return _as_dict(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row ``sql`` returns."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return [_as_dict(row) for row in self._cursor.fetchall()]

    def _sql(self, sql: str) -> str:
        # psycopg reads every ``%`` as the start of a placeholder (``LIKE 'tx-%'``, ``a % b``).
        return sql.replace("%", "%%").replace("?", "%s") if self._postgres else sql


def _as_dict(row: Any) -> Row:
    return dict(row)


class Database:
    """SQLite at ``sqlite_path`` (``None``: in memory) or, when ``url`` is a
    ``postgresql://`` URL, that PostgreSQL database."""

    def __init__(self, url: str | None = None, sqlite_path: Path | None = None, pool_size: int = 10) -> None:
        self.postgres = bool(url) and str(url).startswith(("postgresql://", "postgres://"))
        if url and not self.postgres:
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        self.skip_locked = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        self.for_update = " FOR UPDATE" if self.postgres else ""
        self._local = threading.local()
        self._url = str(url) if url else None
        self._pool_size = pool_size
        self._lock_pool: Any = None
        self._named: dict[str, threading.Lock] = {}
        self._named_guard = threading.Lock()
        if self.postgres:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(str(url), min_size=1, max_size=pool_size, open=True,
                                        kwargs={"row_factory": dict_row, "autocommit": False})
            self._sqlite: sqlite3.Connection | None = None
        else:
            target = str(sqlite_path) if sqlite_path is not None else ":memory:"
            self._sqlite = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=30)
            self._sqlite.row_factory = sqlite3.Row
            if sqlite_path is not None:
                self._sqlite.execute("PRAGMA journal_mode=WAL")
                self._sqlite.execute("PRAGMA synchronous=NORMAL")
            self._lock = threading.RLock()
            # A file in WAL mode lets readers run beside the writer: each thread
            # reads on its own connection, without the write lock.
            self._read_path = str(sqlite_path) if sqlite_path is not None else None
            self._readers: list[sqlite3.Connection] = []

    @property
    def reads_beside_writer(self) -> bool:
        """Whether :meth:`read` runs on a connection of its own that never waits
        for a writer (a SQLite file in WAL mode): such reads are short enough to
        run on an event loop. On PostgreSQL a read is a network round trip, and
        in-memory SQLite shares the writer's lock."""
        return not self.postgres and self._read_path is not None

    @property
    def description(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction; a transaction opened inside another on the same
        thread joins it (commits with the outer one)."""
        current = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        if self.postgres:
            with self._pool.connection() as conn, conn.cursor() as cursor:
                tx = Transaction(cursor, postgres=True)
                self._local.tx = tx
                try:
                    yield tx
                finally:
                    self._local.tx = None
                # the pool's context commits on success and rolls back on error
            return
        assert self._sqlite is not None
        with self._lock:
            lite_cursor = self._sqlite.cursor()
            lite_cursor.execute("BEGIN IMMEDIATE")
            tx = Transaction(lite_cursor, postgres=False)
            self._local.tx = tx
            try:
                yield tx
            except BaseException:
                lite_cursor.execute("ROLLBACK")
                raise
            else:
                lite_cursor.execute("COMMIT")
            finally:
                self._local.tx = None
                lite_cursor.close()

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """Statements that only read. On a SQLite file they run on this
        thread's own connection, beside the writer (WAL), so reads never
        queue behind writes; elsewhere (PostgreSQL, in-memory SQLite, or
        inside a transaction) this is :meth:`transaction`."""
        if self.postgres or self._read_path is None or getattr(self._local, "tx", None) is not None:
            with self.transaction() as tx:
                yield tx
            return
        connection = getattr(self._local, "reader", None)
        if connection is None:
            connection = sqlite3.connect(self._read_path, isolation_level=None, timeout=30, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            self._local.reader = connection
            self._readers.append(connection)
        cursor = connection.cursor()
        try:
            yield Transaction(cursor, postgres=False)
        finally:
            cursor.close()

    @contextmanager
    def snapshot(self) -> Iterator[Transaction]:
        """:meth:`read`, every statement of the block seeing the same committed
        state (one read transaction on a SQLite file; ``REPEATABLE READ`` on
        PostgreSQL, whose default gives each statement its own snapshot), so
        that an answer and the index position it reports agree."""
        nested = getattr(self._local, "tx", None) is not None
        with self.read() as tx:
            if self.postgres:
                if not nested:  # the first statement of its transaction
                    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield tx
                return
            connection = tx._cursor.connection
            if connection.in_transaction:  # inside a write transaction: already one snapshot
                yield tx
                return
            tx.execute("BEGIN")
            try:
                yield tx
            finally:
                tx.execute("ROLLBACK")

    @contextmanager
    def lock(self, name: str, timeout: float = 30.0) -> Iterator[None]:
        """Hold the lock ``name`` for the block, against every instance sharing
        this database and every thread of this one; :class:`LockBusy`
        after ``timeout`` seconds of waiting.

        On PostgreSQL it is ``pg_advisory_xact_lock`` in a transaction on a
        connection from a pool of its own (so lock holders never wait for the
        connections their work needs), released when the block ends or the
        process dies. The block's own statements run in their own
        transactions, committed before the lock is released, so the next
        holder sees them. SQLite serves one instance: a lock in the process."""
        if self.postgres:
            from psycopg import errors

            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            with self._lock_connections().connection() as conn:
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                except errors.LockNotAvailable as err:
                    raise LockBusy(f"lock {name!r} still held after {timeout:g} s") from err
                yield
            return
        with self._named_guard:
            named = self._named.setdefault(name, threading.Lock())
        if not named.acquire(timeout=timeout):
            raise LockBusy(f"lock {name!r} still held after {timeout:g} s")
        try:
            yield
        finally:
            named.release()

    def _lock_connections(self) -> Any:
        with self._named_guard:
            if self._lock_pool is None:
                from psycopg_pool import ConnectionPool

                self._lock_pool = ConnectionPool(str(self._url), min_size=1, max_size=self._pool_size, open=True,
                                                 kwargs={"autocommit": False}, name="locks")
            return self._lock_pool

    def migrate(self, schema: str) -> None:
        """Apply ``schema`` (``;``-separated ``CREATE ... IF NOT EXISTS`` statements)."""
        statements = [s.strip() for s in schema.split(";") if s.strip()]
        with self.transaction() as tx:
            if self.postgres:
                # Instances starting together must not race on CREATE TABLE.
                tx.execute("SELECT pg_advisory_xact_lock(7311)")
            for statement in statements:
                tx.execute(statement)

    def add_column(self, table: str, column: str, sql_type: str) -> None:
        """Add ``column`` to ``table`` where it is missing: a table created before the column
        existed (``CREATE TABLE IF NOT EXISTS`` leaves it as it is). Safe for instances starting
        together: PostgreSQL checks and adds under the table's lock (``IF NOT EXISTS``); SQLite's
        transactions are serialised by the database's write lock."""
        with self.transaction() as tx:
            if self.postgres:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
            elif column not in {r["name"] for r in tx.all(f"PRAGMA table_info({table})")}:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        if self.postgres:
            self._pool.close()
            if self._lock_pool is not None:
                self._lock_pool.close()
        elif self._sqlite is not None:
            with self._lock:
                self._sqlite.close()
                for reader in self._readers:
                    reader.close()


class Store:
    """A table kept in a :class:`Database`: the shared one when given one (the
    relayer's, PostgreSQL across instances), else its own SQLite at a path
    (``None``: in memory), closed with the store."""

    def __init__(self, where: Database | Path | None, schema: str) -> None:
        self._owned = not isinstance(where, Database)
        self._db = where if isinstance(where, Database) else Database(sqlite_path=where)
        self._db.migrate(schema)

    def close(self) -> None:
        if self._owned:
            self._db.close()
