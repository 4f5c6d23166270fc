"""An issuer's unsold stock as ranges (indexer.holdings), against the plain
definition: the serials of the lot without an ``ix_tokens`` row, on random
lots, with small batches so that batch edges and the bisection over sold-out
stretches are all reached. Runs on SQLite in memory, no chain needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import holdings
from indexer.follower import ensure_schema
from indexer.reader import decode_cursor
from storage.db import Database

CHAIN = 31337
ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HOLDER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


@pytest.fixture(scope="module")
def db() -> Iterator[Database]:
    database = Database()
    ensure_schema(database)
    yield database
    database.close()


def _lot(tx, lot_id: int, count: int) -> holdings.LotFacts:
    tx.execute("INSERT INTO ix_lots (chain_id, lot_id, issuer, custodian, successor, first_token_id, bottle_count, "
               "vintage, volume_ml, bottling_date, metadata_hash, tag_root, producer, wine, region, metadata_uri, "
               "issued_block, issued_at, issued_tx, block_number) VALUES (?, ?, ?, ?, NULL, ?, ?, 2019, 750, 0, "
               "'0x', '0x', 'P', 'W', 'R', 'u', 1, 0, '0x', 1)",
               (CHAIN, lot_id, ISSUER, ISSUER, str((lot_id << 32) | 1), count))
    facts = holdings.lot(tx, CHAIN, lot_id)
    assert facts is not None
    return facts


def _move(tx, lot_id: int, serials: set[int]) -> None:
    tx.execute_many("INSERT INTO ix_tokens (chain_id, token_id, lot_id, serial, owner, state, gift_expiry, "
                    "block_number) VALUES (?, ?, ?, ?, ?, 'active', NULL, 2)",
                    [(CHAIN, str((lot_id << 32) | s), lot_id, s, HOLDER) for s in sorted(serials)])


def _runs(serials: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for serial in serials:
        if runs and runs[-1][1] == serial - 1:
            runs[-1] = (runs[-1][0], serial)
        else:
            runs.append((serial, serial))
    return runs


class _Rollback(Exception):
    pass


@settings(max_examples=150, deadline=None)
@given(data=st.data(), count=st.integers(min_value=1, max_value=120), batch=st.integers(min_value=1, max_value=9))
def test_unsold_ranges__random_moves__the_unmoved_serials_exactly(db, data, count, batch):
    moved = data.draw(st.sets(st.integers(min_value=1, max_value=count), max_size=count))
    start = data.draw(st.integers(min_value=0, max_value=count + 1))
    try:
        with db.transaction() as tx:
            facts = _lot(tx, 1, count)
            _move(tx, 1, moved)
            found = [(r.first_serial, r.last_serial) for r in holdings.unsold_ranges(tx, CHAIN, facts, start, batch)]
            raise _Rollback(found)
    except _Rollback as done:
        found = done.args[0]
    expected = _runs([s for s in range(max(start, 1), count + 1) if s not in moved])
    assert found == expected


def test_unsold_ranges__sold_out_but_the_last__found_in_few_queries(db):
    statements: list[str] = []
    try:
        with db.transaction() as tx:
            facts = _lot(tx, 2, 100_000)
            _move(tx, 2, set(range(1, 100_000)))
            tx._cursor.connection.set_trace_callback(statements.append)
            found = [(r.first_serial, r.last_serial) for r in holdings.unsold_ranges(tx, CHAIN, facts, 0)]
            tx._cursor.connection.set_trace_callback(None)
            raise _Rollback(found)
    except _Rollback as done:
        found = done.args[0]
    assert found == [(100_000, 100_000)]
    assert len(statements) < 60  # a batch, then a bisection: not 100,000 / 256 batches


def test_holdings__pages_of_one__every_item_once_in_order(db):
    try:
        with db.transaction() as tx:
            _lot(tx, 3, 10)
            _lot(tx, 4, 3)
            _move(tx, 3, {2, 3, 7})
            _move(tx, 4, {1, 2, 3})
            tx.execute("UPDATE ix_tokens SET owner = ? WHERE lot_id = 3 AND serial = 7", (ISSUER,))
            seen, start = [], None
            while True:
                page = holdings.holdings(tx, CHAIN, ISSUER, start=start, limit=1)
                assert len(page.bottles) + len(page.ranges) == 1
                seen += [("bottle", b.lot_id, b.serial) for b in page.bottles]
                seen += [("range", r.lot.lot_id, r.first_serial, r.last_serial) for r in page.ranges]
                if page.next_cursor is None:
                    break
                position = decode_cursor(page.next_cursor, 2)
                assert position is not None
                start = (position[0], position[1])
            raise _Rollback(seen)
    except _Rollback as done:
        seen = done.args[0]
    assert seen == [("range", 3, 1, 1), ("range", 3, 4, 6), ("bottle", 3, 7), ("range", 3, 8, 10)]
