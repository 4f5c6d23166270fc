"""``storage.db``: one transaction interface over SQLite (in memory and in a file)
and PostgreSQL, and the row locks that let several relayer instances share one
PostgreSQL outbox. The PostgreSQL cases run on a throwaway server (``tests/pg.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage.db import Database

#: The throwaway PostgreSQL server (tests/pg.py).
pytest_plugins = ["pg"]

BACKENDS = ["sqlite-memory", "sqlite-file", "postgresql"]

OUTBOX = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    amount TEXT,
    gas BIGINT,
    fee DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status)
"""

#: How long a thread waits for the other before the test fails (a lock that
#: blocks instead of skipping shows up as a timeout, not a hang).
WAIT = 10


class Boom(Exception):
    """Raised inside a transaction to abort it."""


OpenDatabase = Callable[[], Database]


@pytest.fixture(params=BACKENDS)
def open_db(request, tmp_path) -> Iterator[OpenDatabase]:
    """Opens handles on one database, as separate relayer instances would (in
    memory there is only one: every call returns the same handle)."""
    opened: list[Database] = []
    postgres_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None

    def open_() -> Database:
        if request.param == "sqlite-memory":
            if not opened:
                opened.append(Database())
            return opened[0]
        if request.param == "sqlite-file":
            opened.append(Database(sqlite_path=tmp_path / "relayer.sqlite3"))
        else:
            opened.append(Database(url=postgres_url))
        return opened[-1]

    yield open_
    for db in opened:
        db.close()


@pytest.fixture
def db(open_db) -> Database:
    """A handle on a database holding an empty ``outbox``."""
    database = open_db()
    database.migrate(OUTBOX)
    return database


@pytest.fixture
def pg_db(postgres_url) -> Iterator[OpenDatabase]:
    """Opens relayer instances on one PostgreSQL database."""
    opened: list[Database] = []

    def open_() -> Database:
        opened.append(Database(url=postgres_url))
        return opened[-1]

    yield open_
    for database in opened:
        database.close()


def add(db: Database, *ids: str) -> None:
    with db.transaction() as tx:
        for id_ in ids:
            tx.execute("INSERT INTO outbox (id, status, attempts) VALUES (?, 'pending', 0)", (id_,))


def ids(db: Database) -> list[str]:
    with db.transaction() as tx:
        return [row["id"] for row in tx.all("SELECT id FROM outbox ORDER BY id")]


def test_database__postgresql_url__is_postgresql_with_row_locks(postgres_url):
    database = Database(url=postgres_url)
    try:
        assert (database.postgres, database.description) == (True, "postgresql")
        assert database.skip_locked == " FOR UPDATE SKIP LOCKED"
    finally:
        database.close()


def test_database__no_url__is_sqlite_without_row_locks():
    database = Database()
    try:
        assert (database.postgres, database.description, database.skip_locked) == (False, "sqlite", "")
    finally:
        database.close()


def test_database__url_not_postgresql__raises():
    with pytest.raises(ValueError, match="postgresql://"):
        Database(url="mysql://localhost/relayer")


def test_transaction__block_ends__commits(open_db, db):
    with db.transaction() as tx:
        changed = tx.execute("INSERT INTO outbox (id, status, attempts) VALUES (?, ?, ?)", ("a", "pending", 0))

    assert changed == 1
    assert ids(db) == ["a"]
    assert ids(open_db()) == ["a"]  # another instance sees it


def test_transaction__block_raises__rolls_back_everything(open_db, db):
    add(db, "a")

    with pytest.raises(Boom), db.transaction() as tx:
        tx.execute("INSERT INTO outbox (id, status, attempts) VALUES ('b', 'pending', 0)")
        tx.execute("UPDATE outbox SET status = 'sent' WHERE id = 'a'")
        assert len(tx.all("SELECT id FROM outbox")) == 2  # visible inside until it aborts
        raise Boom

    with open_db().transaction() as tx:
        assert tx.all("SELECT id, status FROM outbox") == [{"id": "a", "status": "pending"}]


def test_transaction__statement_fails__rolls_back_earlier_statements(db):
    add(db, "a")

    with pytest.raises(Exception, match="(?i)unique|duplicate"), db.transaction() as tx:
        tx.execute("INSERT INTO outbox (id, status, attempts) VALUES ('b', 'pending', 0)")
        tx.execute("INSERT INTO outbox (id, status, attempts) VALUES ('a', 'pending', 0)")

    assert ids(db) == ["a"]
    add(db, "b")  # the database is usable afterwards
    assert ids(db) == ["a", "b"]


def test_transaction__nested__joins_the_outer_one(db):
    with db.transaction() as outer:
        outer.execute("INSERT INTO outbox (id, status, attempts) VALUES ('a', 'pending', 0)")
        with db.transaction() as inner:
            assert inner is outer
            inner.execute("INSERT INTO outbox (id, status, attempts) VALUES ('b', 'pending', 0)")
        outer.execute("INSERT INTO outbox (id, status, attempts) VALUES ('c', 'pending', 0)")

    assert ids(db) == ["a", "b", "c"]


def test_transaction__outer_raises_after_nested__rolls_back_the_nested_writes(db):
    with pytest.raises(Boom), db.transaction() as outer:
        with db.transaction() as inner:
            inner.execute("INSERT INTO outbox (id, status, attempts) VALUES ('b', 'pending', 0)")
        outer.execute("INSERT INTO outbox (id, status, attempts) VALUES ('a', 'pending', 0)")
        raise Boom

    assert ids(db) == []


def test_one_and_all__rows__are_dicts_by_column_name(db):
    add(db, "a", "b")

    with db.transaction() as tx:
        first = tx.one("SELECT id, status, attempts FROM outbox ORDER BY id")
        missing = tx.one("SELECT id FROM outbox WHERE id = ?", ("zzz",))
        rows = tx.all("SELECT id, attempts FROM outbox ORDER BY id DESC")
        none = tx.all("SELECT id FROM outbox WHERE id = ?", ("zzz",))

    assert first == {"id": "a", "status": "pending", "attempts": 0}
    assert type(first) is dict
    assert missing is None
    assert rows == [{"id": "b", "attempts": 0}, {"id": "a", "attempts": 0}]
    assert all(type(row) is dict for row in rows)
    assert none == []


def test_placeholders__each_column_type__round_trips(db):
    wei = str(2**255 + 1)  # beyond 64 bits: stored as decimal text
    with db.transaction() as tx:
        tx.execute("INSERT INTO outbox (id, status, attempts, amount, gas, fee) VALUES (?, ?, ?, ?, ?, ?)",
                   ("tx-1", "it's ?", 3, wei, 2**62, 1.5))
        tx.execute("INSERT INTO outbox (id, status, attempts, amount, gas, fee) VALUES (?, ?, ?, ?, ?, ?)",
                   ("tx-2", "pending", -1, None, None, None))

    with db.transaction() as tx:
        rows = tx.all("SELECT id, status, attempts, amount, gas, fee FROM outbox WHERE id IN (?, ?) ORDER BY id",
                      ["tx-1", "tx-2"])
        by_null = tx.one("SELECT id FROM outbox WHERE amount IS NULL AND attempts < ?", (0,))

    assert rows == [
        {"id": "tx-1", "status": "it's ?", "attempts": 3, "amount": wei, "gas": 2**62, "fee": 1.5},
        {"id": "tx-2", "status": "pending", "attempts": -1, "amount": None, "gas": None, "fee": None},
    ]
    assert by_null == {"id": "tx-2"}


def test_execute__update__returns_the_rows_it_changed(db):
    add(db, "a", "b", "c")

    with db.transaction() as tx:
        changed = tx.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id <> ?", ("b",))
        unchanged = tx.execute("UPDATE outbox SET attempts = 9 WHERE id = ?", ("zzz",))

    assert (changed, unchanged) == (2, 0)


def test_sql__percent_sign__means_the_same_on_every_backend(db):
    add(db, "tx-1", "tx-2", "other")

    with db.transaction() as tx:
        like = tx.all("SELECT id FROM outbox WHERE id LIKE 'tx-%' ORDER BY id")
        like_param = tx.all("SELECT id FROM outbox WHERE id LIKE ? ORDER BY id", ("tx-%",))
        modulo = tx.one("SELECT 7 % 3 AS r")

    assert like == like_param == [{"id": "tx-1"}, {"id": "tx-2"}]
    assert modulo == {"r": 1}


def test_migrate__run_again__keeps_tables_and_rows(open_db, db):
    add(db, "a")

    db.migrate(OUTBOX)
    open_db().migrate(OUTBOX)  # another instance starting later

    assert ids(db) == ["a"]
    add(db, "b")
    assert ids(db) == ["a", "b"]


def test_skip_locked__two_instances_claim_at_once__get_different_rows(pg_db):
    """Each instance holds its claim (an open transaction) until both have
    claimed: with plain ``FOR UPDATE`` the second would block and time out,
    without it both would claim ``a``."""
    first, second = pg_db(), pg_db()
    first.migrate(OUTBOX)
    add(first, "a", "b", "c")
    both_claimed = threading.Barrier(2, timeout=WAIT)

    def claim(db: Database) -> str:
        with db.transaction() as tx:
            row = tx.one("SELECT id FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 1" + db.skip_locked)
            assert row is not None
            both_claimed.wait()
            tx.execute("UPDATE outbox SET status = 'sent' WHERE id = ?", (row["id"],))
            return str(row["id"])

    with ThreadPoolExecutor(2) as pool:
        claims = [f.result(timeout=WAIT) for f in [pool.submit(claim, first), pool.submit(claim, second)]]

    assert sorted(claims) == ["a", "b"]
    with second.transaction() as tx:
        assert tx.all("SELECT id FROM outbox WHERE status = 'pending'") == [{"id": "c"}]


def test_skip_locked__two_instances_drain_the_outbox__each_row_sent_once(pg_db):
    first, second = pg_db(), pg_db()
    first.migrate(OUTBOX)
    rows = [f"tx-{i:03}" for i in range(60)]
    add(first, *rows)
    start = threading.Barrier(2, timeout=WAIT)

    def drain(db: Database) -> list[str]:
        start.wait()
        sent: list[str] = []
        while True:
            with db.transaction() as tx:
                row = tx.one("SELECT id FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 1" + db.skip_locked)
                if row is None:
                    return sent
                tx.execute("UPDATE outbox SET status = 'sent', attempts = attempts + 1 WHERE id = ?", (row["id"],))
                sent.append(str(row["id"]))

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(drain, first), pool.submit(drain, second)]
        sent = [id_ for future in futures for id_ in future.result(timeout=60)]

    assert sorted(sent) == rows  # every row, none twice
    with first.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM outbox WHERE status <> 'sent' OR attempts <> 1") == {"n": 0}


@pytest.mark.parametrize("round_", range(3))
def test_migrate__two_instances_start_together__both_succeed(pg_db, round_):
    """Unserialized, concurrent ``CREATE TABLE IF NOT EXISTS`` can fail on
    PostgreSQL with a duplicate key in its catalog."""
    instances = [pg_db(), pg_db()]
    schema = OUTBOX + ";" + ";".join(
        f"CREATE TABLE IF NOT EXISTS extra_{i} (id TEXT PRIMARY KEY, n BIGINT)" for i in range(8))
    start = threading.Barrier(2, timeout=WAIT)

    def migrate(db: Database) -> None:
        start.wait()
        db.migrate(schema)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(migrate, db) for db in instances]:
            future.result(timeout=60)

    add(instances[0], "a")
    assert ids(instances[1]) == ["a"]
    with instances[1].transaction() as tx:
        tables = tx.one("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name LIKE 'extra_%'")
    assert tables == {"n": 8}


def test_snapshot__writer_commits_between_two_reads__both_reads_see_the_same_state(open_db, db):
    add(db, "a")
    writer = open_db()
    done = threading.Event()

    def write() -> None:
        add(writer, "b")
        done.set()

    with db.snapshot() as tx:
        first = [row["id"] for row in tx.all("SELECT id FROM outbox ORDER BY id")]
        thread = threading.Thread(target=write)
        thread.start()
        done.wait(1)  # committed (a file, PostgreSQL) or waiting for this transaction (in memory)
        second = [row["id"] for row in tx.all("SELECT id FROM outbox ORDER BY id")]
    thread.join(WAIT)

    assert first == second == ["a"]
    assert ids(db) == ["a", "b"]


def test_add_column__instances_starting_together__each_succeeds_and_the_column_is_added_once(open_db):
    """Several instances add a column a table gained after its release, at the same moment (the indexer's
    failover test once failed on PostgreSQL with "column already exists" when two did it by hand)."""
    handles = [open_db() for _ in range(4)]
    handles[0].migrate("CREATE TABLE IF NOT EXISTS grown (id TEXT PRIMARY KEY)")
    start = threading.Barrier(len(handles))
    failures: list[BaseException] = []

    def add_it(handle: Database) -> None:
        start.wait()
        try:
            handle.add_column("grown", "late", "TEXT")
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=add_it, args=(handle,)) for handle in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    handles[0].add_column("grown", "late", "TEXT")  # again, later: nothing to do

    assert failures == []
    with handles[0].transaction() as tx:
        tx.execute("INSERT INTO grown (id, late) VALUES (?, ?)", ("a", "kept"))
        assert tx.one("SELECT late FROM grown WHERE id = ?", ("a",))["late"] == "kept"
