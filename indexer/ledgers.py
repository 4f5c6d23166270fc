"""Money in the index: loans (by lender, borrower, state; a lender's
portfolio), merchants' points ledgers, and the points clearing statement.

Amounts are integers here (the tables keep them as decimal text: they exceed
64 bits); the API sends them as decimal strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amphora.settlement import PointsMovement, Statement, settle
from indexer.events import POINTS
from indexer.history import CHAIN_ORDER
from indexer.reader import Page, encode_cursor
from storage.db import Transaction

ZERO = "0x0000000000000000000000000000000000000000"
#: Loan states as the index keeps them.
LOAN_STATES = ("active", "repaid", "foreclosed")
_AFTER = "(block_number > ? OR (block_number = ? AND log_index > ?))"


@dataclass(frozen=True)
class Loan:
    loan_id: int
    lender: str
    borrower: str
    token_id: int
    principal: int
    repayment: int
    due_at: int
    grace_period: int
    state: str
    late: bool
    started_block: int
    started_at: int | None
    block_number: int


def _loan(row: dict[str, Any]) -> Loan:
    return Loan(loan_id=int(row["loan_id"]), lender=str(row["lender"]), borrower=str(row["borrower"]),
                token_id=int(row["token_id"]), principal=int(row["principal"]), repayment=int(row["repayment"]),
                due_at=int(row["due_at"]), grace_period=int(row["grace_period"]), state=str(row["state"]),
                late=bool(row["late"]), started_block=int(row["started_block"]),
                started_at=int(row["started_at"]) if row["started_at"] is not None else None,
                block_number=int(row["block_number"]))


def loans(tx: Transaction, chain_id: int, *, after: int | None, limit: int, lender: str | None = None,
          borrower: str | None = None, state: str | None = None) -> Page[Loan]:
    """Loans in id order after loan ``after``, filtered by lender, borrower and state.

    Loan ids are decimal text: ordered by (length, text), which is numeric order."""
    sql = "SELECT * FROM ix_loans WHERE chain_id = ?"
    params: list[Any] = [chain_id]
    if after is not None:
        text = str(after)
        sql += " AND (LENGTH(loan_id) > ? OR (LENGTH(loan_id) = ? AND loan_id > ?))"
        params += [len(text), len(text), text]
    for column, value in (("lender", lender), ("borrower", borrower), ("state", state)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    rows = tx.all(sql + " ORDER BY LENGTH(loan_id), loan_id LIMIT ?", (*params, limit + 1))
    items = [_loan(row) for row in rows[:limit]]
    return Page(items, encode_cursor(items[-1].loan_id) if len(rows) > limit else None)


@dataclass(frozen=True)
class Portfolio:
    """A lender's loans in totals."""

    lender: str
    loans: dict[str, int]  # count by state
    principal_outstanding: int  # lent on loans still active
    repayment_due: int  # what repays the active loans in full
    principal_lent: int  # over every loan
    repaid_late: int  # loans repaid after their due date


def portfolio(tx: Transaction, chain_id: int, lender: str) -> Portfolio:
    counts = dict.fromkeys(LOAN_STATES, 0)
    outstanding = due = lent = late = 0
    for row in tx.all("SELECT state, principal, repayment, late FROM ix_loans WHERE chain_id = ? AND lender = ?",
                      (chain_id, lender)):
        state = str(row["state"])
        counts[state] = counts.get(state, 0) + 1
        lent += int(row["principal"])
        if state == "active":
            outstanding += int(row["principal"])
            due += int(row["repayment"])
        elif state == "repaid" and int(row["late"]):
            late += 1
    return Portfolio(lender, counts, outstanding, due, lent, late)


# ---------------------------------------------------------------- points


@dataclass(frozen=True)
class MerchantTotals:
    merchant: str
    name: str
    cap: int
    registered: bool
    points_issued: int
    points_redeemed: int
    points_accepted: int
    stablecoin_paid_in: int
    stablecoin_paid_out: int


def merchant_totals(tx: Transaction, chain_id: int, merchant: str) -> MerchantTotals | None:
    row = tx.one("SELECT * FROM ix_merchants WHERE chain_id = ? AND merchant = ?", (chain_id, merchant))
    if row is None:
        return None
    return MerchantTotals(merchant=str(row["merchant"]), name=str(row["name"]), cap=int(row["cap"]),
                          registered=bool(row["registered"]), points_issued=int(row["points_issued"]),
                          points_redeemed=int(row["points_redeemed"]), points_accepted=int(row["points_accepted"]),
                          stablecoin_paid_in=int(row["stablecoin_paid_in"]),
                          stablecoin_paid_out=int(row["stablecoin_paid_out"]))


@dataclass(frozen=True)
class LedgerEntry:
    """One line of a merchant's points ledger.

    ``kind``: ``issued`` (it issued ``points`` to ``counterparty`` for
    ``stablecoin`` paid into the reserve), ``redeemed`` (it redeemed ``points``
    for ``stablecoin`` out of the reserve), ``accepted`` (``counterparty`` paid
    it ``points`` while it was a registered merchant) or ``received`` (points
    sent to it while it was not registered: not in its totals)."""

    kind: str
    block_number: int
    log_index: int
    block_time: int | None
    tx_hash: str
    points: int
    stablecoin: int | None
    counterparty: str | None

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


def _registered_periods(tx: Transaction, chain_id: int, merchant: str) -> list[tuple[tuple[int, int], bool]]:
    rows = tx.all("SELECT block_number, log_index, event FROM ix_events WHERE chain_id = ? AND contract = ? "
                  f"AND party_a = ? AND event IN ('MerchantRegistered', 'MerchantRemoved') {CHAIN_ORDER}",
                  (chain_id, POINTS, merchant))
    return [((int(row["block_number"]), int(row["log_index"])), row["event"] == "MerchantRegistered")
            for row in rows]


def _registered_at(periods: list[tuple[tuple[int, int], bool]], position: tuple[int, int]) -> bool:
    registered = False
    for since, value in periods:
        if since > position:
            break
        registered = value
    return registered


def ledger(tx: Transaction, chain_id: int, merchant: str, *, after: tuple[int, int] | None,
           limit: int) -> Page[LedgerEntry]:
    """The merchant's issuances, redemptions and the points it accepted, in chain order after ``after``."""
    begin = after or (-1, -1)
    cut = (begin[0], begin[0], begin[1])
    columns = "block_number, log_index, block_time, tx_hash, event, party_a, args"
    own = tx.all(f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND contract = ? AND party_a = ? "
                 f"AND event IN ('PointsIssued', 'PointsRedeemed') AND {_AFTER} {CHAIN_ORDER} LIMIT ?",
                 (chain_id, POINTS, merchant, *cut, limit + 1))
    # A points event whose second address is the merchant is a transfer to it or an approval of it as
    # spender; "not an approval" (rather than "= 'Transfer'") lets the planner pick the party's index.
    received = [row for row in tx.all(
        f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND contract = ? AND party_b = ? "
        f"AND event <> 'Approval' AND party_a <> ? AND {_AFTER} {CHAIN_ORDER} LIMIT ?",
        (chain_id, POINTS, merchant, ZERO, *cut, limit + 1)) if row["event"] == "Transfer"]
    periods = _registered_periods(tx, chain_id, merchant) if received else []
    entries: list[LedgerEntry] = []
    for row in own + received:
        args = json.loads(row["args"])
        position = (int(row["block_number"]), int(row["log_index"]))
        block_time = int(row["block_time"]) if row["block_time"] is not None else None
        if row["event"] == "PointsIssued":
            kind, points, stablecoin, counterparty = ("issued", int(args["points"]), int(args["stablecoin_paid_in"]),
                                                      str(args["customer"]))
        elif row["event"] == "PointsRedeemed":
            kind, points, stablecoin, counterparty = ("redeemed", int(args["points"]),
                                                      int(args["stablecoin_paid_out"]), None)
        else:
            kind = "accepted" if _registered_at(periods, position) else "received"
            points, stablecoin, counterparty = int(args["value"]), None, str(row["party_a"])
        entries.append(LedgerEntry(kind, position[0], position[1], block_time, str(row["tx_hash"]), points,
                                   stablecoin, counterparty))
    entries.sort(key=lambda entry: entry.position)
    page = entries[:limit]
    return Page(page, encode_cursor(*page[-1].position) if len(entries) > limit else None)


def statement(tx: Transaction, chain_id: int, points: str, from_block: int, to_block: int,
              reserve_at: Callable[[int], int]) -> Statement:
    """The clearing statement of blocks ``from_block..to_block`` from the
    indexed ``PointsIssued`` / ``PointsRedeemed`` events, each merchant named as
    its latest ``MerchantRegistered`` by ``to_block`` named it; the reserve from
    ``reserve_at(block)`` (the chain). The caller checks that the index holds
    ``to_block``."""
    rows = tx.all("SELECT event, args FROM ix_events WHERE chain_id = ? AND contract = ? "
                  "AND event IN ('PointsIssued', 'PointsRedeemed') AND block_number >= ? AND block_number <= ? "
                  f"{CHAIN_ORDER}", (chain_id, POINTS, from_block, to_block))
    issued: list[PointsMovement] = []
    redeemed: list[PointsMovement] = []
    for row in rows:
        args = json.loads(row["args"])
        if row["event"] == "PointsIssued":
            issued.append(PointsMovement(args["merchant"], int(args["points"]), int(args["stablecoin_paid_in"])))
        else:
            redeemed.append(PointsMovement(args["merchant"], int(args["points"]), int(args["stablecoin_paid_out"])))

    def name_of(merchant: str) -> str:
        row = tx.one("SELECT args FROM ix_events WHERE chain_id = ? AND contract = ? AND party_a = ? "
                     "AND event = 'MerchantRegistered' AND block_number <= ? "
                     "ORDER BY block_number + 0 DESC, log_index DESC LIMIT 1", (chain_id, POINTS, merchant, to_block))
        return str(json.loads(row["args"])["name"]) if row is not None else ""

    return settle(points, from_block, to_block, issued, redeemed, name_of, reserve_at(from_block - 1),
                  reserve_at(to_block))


@dataclass(frozen=True)
class PointsMove:
    """One movement of a holder's points: ``points`` in (positive) or out (negative)."""

    block_number: int
    log_index: int
    block_time: int | None
    tx_hash: str
    points: int
    #: The other side: the payer or the payee; None for points issued (minted) or redeemed (burnt).
    counterparty: str | None


def holder_points(tx: Transaction, chain_id: int, holder: str, limit: int,
                  before: tuple[int, int] | None = None) -> list[PointsMove]:
    """The latest ``limit`` transfers of points to or from ``holder``, newest first (issued
    to the holder: from the zero address; redeemed: to it); with ``before`` (a block number
    and log index), only those older than it."""
    columns = "block_number, log_index, block_time, tx_hash, party_a, party_b, args"
    order = "ORDER BY block_number DESC, log_index DESC LIMIT ?"
    older = " AND (block_number < ? OR (block_number = ? AND log_index < ?))" if before else ""
    after = (before[0], before[0], before[1]) if before else ()
    rows = [row for party in ("party_a", "party_b") for row in tx.all(
        f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND contract = ? AND {party} = ? "
        f"AND event = 'Transfer'{older} {order}", (chain_id, POINTS, holder, *after, limit))]
    moves: dict[tuple[int, int], PointsMove] = {}
    for row in rows:
        value = int(json.loads(row["args"])["value"])
        outgoing = row["party_a"] == holder
        other = str(row["party_b"] if outgoing else row["party_a"])
        position = (int(row["block_number"]), int(row["log_index"]))
        moves[position] = PointsMove(position[0], position[1],
                                     int(row["block_time"]) if row["block_time"] is not None else None,
                                     str(row["tx_hash"]), -value if outgoing else value,
                                     None if other == ZERO else other)
    return [moves[key] for key in sorted(moves, reverse=True)[:limit]]
