"""The index's read queries give the same answers on PostgreSQL as on SQLite.

The session's index (SQLite, filled by the follower from real transactions) is
copied row for row into a throwaway PostgreSQL database (``tests/pg.py``);
every query of :mod:`indexer.holdings`, :mod:`indexer.history` and
:mod:`indexer.ledgers` then runs on both and must answer alike (the row-value
comparisons, ``LENGTH`` ordering, partial index and ``REPEATABLE READ``
snapshot included)."""

from __future__ import annotations

import pytest
from api_fixtures import SCALE, USD, wait_indexed
from test_api_lending import (  # noqa: F401 (fixtures)
    appraised,
    bottles,
    deployed_lending,
    funded,
    make_offer,
    open_loan,
)

from indexer import history, holdings, ledgers
from indexer.follower import ensure_schema
from indexer.reader import IndexReader
from storage.db import Database

#: The API fixtures and the throwaway PostgreSQL server.
pytest_plugins = ["api_fixtures", "pg"]

TABLES = ("ix_cursor", "ix_blocks", "ix_events", "ix_lots", "ix_tokens", "ix_loans", "ix_merchants")


@pytest.fixture
def both(client, postgres_url):
    """(the session's SQLite index, a PostgreSQL copy of it made when called)."""
    sqlite = IndexReader(client.app.state.index.db)
    opened: list[Database] = []

    def _copy() -> tuple[IndexReader, IndexReader]:
        target = Database(url=postgres_url)
        opened.append(target)
        ensure_schema(target)
        with sqlite.db.snapshot() as source, target.transaction() as tx:
            for table in TABLES:
                rows = source.all(f"SELECT * FROM {table}")
                if rows:
                    columns = list(rows[0])
                    tx.execute_many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                    f"({', '.join('?' for _ in columns)})", [[row[c] for c in columns] for row in rows])
        return sqlite, IndexReader(target)

    yield _copy
    for database in opened:
        database.close()


def test_queries__same_answers_on_postgresql_as_on_sqlite(
        both, client, w3, chain, cert, create_lot, winery, holder, recipient, open_loan, lender, borrower,  # noqa: F811
        deployed_points, issue_points, customer, merchant, other_merchant, registry, custodian):
    lot = create_lot(6)
    for serial in (2, 4):
        cert.transferFrom(winery, holder, lot.token(serial), sender=winery)
    cert.flag(lot.token(4), b"\x01" * 32, sender=holder)
    cert.create_gift(lot.token(2), recipient, chain.pending_timestamp + 3_600, sender=holder)
    registry.post_reserve_root(b"\x07" * 32, 6, "ipfs://reserve", sender=custodian)
    first = chain.blocks.head.number + 1
    issue_points(customer, 5 * USD, issuer=merchant)
    deployed_points.transfer(other_merchant, 2 * USD * SCALE, sender=customer)
    deployed_points.redeem(2 * USD * SCALE, sender=other_merchant)
    last = chain.blocks.head.number
    wait_indexed(w3, client)
    lite, pg = both()
    chain_id = chain.chain_id
    loan_id, loan_token = open_loan
    queries = {
        "issuer holdings": lambda tx, _: holdings.holdings(tx, chain_id, winery.address, start=None, limit=3),
        "issuer holdings, second page": lambda tx, _: holdings.holdings(tx, chain_id, winery.address,
                                                                         start=(lot.lot_id, 3), limit=3),
        "holder holdings": lambda tx, _: holdings.holdings(tx, chain_id, holder.address, start=None, limit=50,
                                                           lot_id=lot.lot_id),
        "flagged only": lambda tx, _: holdings.holdings(tx, chain_id, holder.address, start=None, limit=50,
                                                        state="flagged"),
        "lot": lambda tx, _: holdings.lot_summary(tx, chain_id, lot.lot_id),
        "lots": lambda tx, _: holdings.lots(tx, chain_id, after=None, limit=2, issuer=winery.address),
        "history": lambda tx, _: history.history(tx, chain_id, lot.token(2), after=None, limit=50),
        "history, later page": lambda tx, _: history.history(tx, chain_id, lot.token(2), after=(first - 1, 0),
                                                             limit=2),
        "loan history": lambda tx, _: history.history(tx, chain_id, loan_token, after=None, limit=50),
        "loans": lambda tx, _: ledgers.loans(tx, chain_id, after=None, limit=5, lender=lender.address,
                                             state="active"),
        "loans after": lambda tx, _: ledgers.loans(tx, chain_id, after=loan_id - 1, limit=5,
                                                   borrower=borrower.address),
        "portfolio": lambda tx, _: ledgers.portfolio(tx, chain_id, lender.address),
        "ledger": lambda tx, _: ledgers.ledger(tx, chain_id, other_merchant.address, after=None, limit=50),
        "totals": lambda tx, _: ledgers.merchant_totals(tx, chain_id, merchant.address),
        "statement": lambda tx, _: ledgers.statement(tx, chain_id, deployed_points.address, first, last,
                                                     lambda block: block),
    }

    for name, query in queries.items():
        on_sqlite, on_pg = lite.answer(chain_id, query), pg.answer(chain_id, query)
        assert on_pg.value == on_sqlite.value, name
        assert on_pg.status.indexed_block == on_sqlite.status.indexed_block
    assert [e.event for e in lite.answer(chain_id, queries["history"]).value.items][-2:] == [
        "GiftCreated", "ReserveRootPosted"]
    assert lite.answer(chain_id, queries["statement"]).value.lines  # the comparison was not of empty answers
