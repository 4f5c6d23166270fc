"""Who holds what: the certificates of an address, and lots with their counts.

A bottle that never moved and never changed state has no ``ix_tokens`` row: it
is with its lot's issuer, active. So an issuer's unsold stock is its lots'
serial ranges minus the serials that have rows, and is listed as ranges
(:class:`StockRange`), found by paging through those rows in serial order
(``WHERE lot_id = ? AND serial >= ? ORDER BY serial LIMIT k``): the work
depends on the bottles that moved, never on the size of the lot.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from indexer.events import SERIAL_BITS
from indexer.projections import ACTIVE, FLAGGED, GIFT_PENDING, PLEDGED, REDEEMED, REDEMPTION_REQUESTED
from indexer.reader import Page, encode_cursor
from storage.db import Transaction

#: Rows of ``ix_tokens`` read at a time while walking a lot's unsold ranges.
_RANGE_BATCH = 256
#: Lots of an issuer read at a time.
_LOT_BATCH = 50


@dataclass(frozen=True)
class LotFacts:
    """One ``ix_lots`` row: a lot as its ``LotIssued`` event (and later custody moves) describe it."""

    lot_id: int
    issuer: str
    custodian: str
    successor: str | None
    first_token_id: int
    bottle_count: int
    vintage: int
    volume_ml: int
    bottling_date: int
    metadata_hash: str
    tag_root: str
    producer: str
    wine: str
    region: str
    metadata_uri: str
    issued_block: int
    issued_at: int | None
    issued_tx: str
    block_number: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LotFacts:
        return cls(
            lot_id=int(row["lot_id"]), issuer=str(row["issuer"]), custodian=str(row["custodian"]),
            successor=row["successor"], first_token_id=int(row["first_token_id"]),
            bottle_count=int(row["bottle_count"]), vintage=int(row["vintage"]), volume_ml=int(row["volume_ml"]),
            bottling_date=int(row["bottling_date"]), metadata_hash=str(row["metadata_hash"]),
            tag_root=str(row["tag_root"]), producer=str(row["producer"]), wine=str(row["wine"]),
            region=str(row["region"]), metadata_uri=str(row["metadata_uri"]), issued_block=int(row["issued_block"]),
            issued_at=int(row["issued_at"]) if row["issued_at"] is not None else None,
            issued_tx=str(row["issued_tx"]), block_number=int(row["block_number"]))

    @property
    def first_serial(self) -> int:
        return self.first_token_id - (self.lot_id << SERIAL_BITS)

    @property
    def last_serial(self) -> int:
        return self.first_serial + self.bottle_count - 1


@dataclass(frozen=True)
class Bottle:
    """A certificate with an ``ix_tokens`` row (it moved or changed state)."""

    token_id: int
    lot_id: int
    serial: int
    owner: str | None
    state: str
    gift_expiry: int | None
    block_number: int
    lot: LotFacts | None


@dataclass(frozen=True)
class StockRange:
    """Consecutive bottles of a lot that never left its issuer (active)."""

    lot: LotFacts
    first_serial: int
    last_serial: int

    @property
    def count(self) -> int:
        return self.last_serial - self.first_serial + 1

    @property
    def first_token_id(self) -> int:
        return (self.lot.lot_id << SERIAL_BITS) | self.first_serial

    @property
    def last_token_id(self) -> int:
        return (self.lot.lot_id << SERIAL_BITS) | self.last_serial


@dataclass(frozen=True)
class Holdings:
    """One page of an address's certificates: single bottles and unsold ranges, each in (lot, serial) order."""

    bottles: list[Bottle]
    ranges: list[StockRange]
    next_cursor: str | None


def lot(tx: Transaction, chain_id: int, lot_id: int) -> LotFacts | None:
    row = tx.one("SELECT * FROM ix_lots WHERE chain_id = ? AND lot_id = ?", (chain_id, lot_id))
    return LotFacts.from_row(row) if row is not None else None


class _Lots:
    """Lot facts read once per query."""

    def __init__(self, tx: Transaction, chain_id: int) -> None:
        self.tx, self.chain_id = tx, chain_id
        self._seen: dict[int, LotFacts | None] = {}

    def get(self, lot_id: int) -> LotFacts | None:
        if lot_id not in self._seen:
            self._seen[lot_id] = lot(self.tx, self.chain_id, lot_id)
        return self._seen[lot_id]

    def remember(self, facts: LotFacts) -> None:
        self._seen[facts.lot_id] = facts


def _moved_between(tx: Transaction, chain_id: int, lot_id: int, first: int, last: int) -> int:
    row = tx.one("SELECT COUNT(*) AS n FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND serial >= ? "
                 "AND serial <= ?", (chain_id, lot_id, first, last))
    return int(row["n"]) if row else 0


def _first_unmoved(tx: Transaction, chain_id: int, lot_id: int, first: int, last: int) -> int | None:
    """The lowest serial in ``first..last`` without a row (None: every one moved), by
    bisection on counts: a long run of sold bottles costs a few index counts, not a
    round trip per batch of rows."""
    if _moved_between(tx, chain_id, lot_id, first, last) == last - first + 1:
        return None
    low, high = first, last
    while low < high:
        middle = (low + high) // 2
        if _moved_between(tx, chain_id, lot_id, low, middle) == middle - low + 1:
            low = middle + 1
        else:
            high = middle
    return low


def unsold_ranges(tx: Transaction, chain_id: int, facts: LotFacts, from_serial: int,
                  batch: int = _RANGE_BATCH) -> Iterator[StockRange]:
    """The lot's bottles without a row (still with the issuer, active) from
    serial ``from_serial`` on, as ranges in serial order: the lot's rows read
    ``batch`` at a time in serial order, the gaps between them answered; a
    whole batch without a gap (a sold-out stretch) is skipped by bisection."""
    current = max(from_serial, facts.first_serial)
    while current <= facts.last_serial:
        serials = [int(row["serial"]) for row in tx.all(
            "SELECT serial FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND serial >= ? ORDER BY serial LIMIT ?",
            (chain_id, facts.lot_id, current, batch))]
        if len(serials) == batch and serials[0] == current and serials[-1] - current == batch - 1:
            gap = _first_unmoved(tx, chain_id, facts.lot_id, current, facts.last_serial)
            if gap is None:
                return
            current = gap
            continue
        for serial in serials:
            if serial > current:
                yield StockRange(facts, current, min(serial - 1, facts.last_serial))
            current = max(current, serial + 1)
            if current > facts.last_serial:
                return
        if len(serials) < batch:
            if current <= facts.last_serial:
                yield StockRange(facts, current, facts.last_serial)
            return


def _issuer_ranges(tx: Transaction, chain_id: int, issuer: str, start: tuple[int, int], lot_id: int | None,
                   lots: _Lots) -> Iterator[StockRange]:
    after_lot = start[0] - 1
    while True:
        if lot_id is not None:
            rows = tx.all("SELECT * FROM ix_lots WHERE chain_id = ? AND issuer = ? AND lot_id = ? AND lot_id > ?",
                          (chain_id, issuer, lot_id, after_lot))
        else:
            rows = tx.all("SELECT * FROM ix_lots WHERE chain_id = ? AND issuer = ? AND lot_id > ? ORDER BY lot_id "
                          "LIMIT ?", (chain_id, issuer, after_lot, _LOT_BATCH))
        for row in rows:
            facts = LotFacts.from_row(row)
            lots.remember(facts)
            yield from unsold_ranges(tx, chain_id, facts, start[1] if facts.lot_id == start[0] else 0)
            after_lot = facts.lot_id
        if lot_id is not None or len(rows) < _LOT_BATCH:
            return


def _bottles(tx: Transaction, chain_id: int, owner: str, start: tuple[int, int], limit: int, state: str | None,
             lot_id: int | None, lots: _Lots) -> list[Bottle]:
    sql = ("SELECT token_id, lot_id, serial, owner, state, gift_expiry, block_number FROM ix_tokens "
           "WHERE chain_id = ? AND owner = ? AND (lot_id > ? OR (lot_id = ? AND serial >= ?))")
    params: list[Any] = [chain_id, owner, start[0], start[0], start[1]]
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    if lot_id is not None:
        sql += " AND lot_id = ?"
        params.append(lot_id)
    rows = tx.all(sql + " ORDER BY lot_id, serial LIMIT ?", (*params, limit))
    return [Bottle(token_id=int(row["token_id"]), lot_id=int(row["lot_id"]), serial=int(row["serial"]),
                   owner=row["owner"], state=str(row["state"]),
                   gift_expiry=int(row["gift_expiry"]) if row["gift_expiry"] is not None else None,
                   block_number=int(row["block_number"]), lot=lots.get(int(row["lot_id"]))) for row in rows]


def holdings(tx: Transaction, chain_id: int, owner: str, *, start: tuple[int, int] | None, limit: int,
             state: str | None = None, lot_id: int | None = None) -> Holdings:
    """The certificates ``owner`` (checksummed) holds, from position ``start``
    (lot, serial; None: the beginning): its bottles with rows, and, where it
    issued lots, their unsold ranges, ``limit`` items (a range counts as one)
    in (lot, serial) order. ``state`` and ``lot_id`` filter; ranges are all
    ``active``."""
    begin = start or (0, 0)
    lots = _Lots(tx, chain_id)
    bottles = _bottles(tx, chain_id, owner, begin, limit + 1, state, lot_id, lots)
    ranges = _issuer_ranges(tx, chain_id, owner, begin, lot_id, lots) if state in (None, ACTIVE) else iter(())
    # Lazily: the ranges are walked only as far as the page needs.
    items: list[Iterator[Bottle | StockRange]] = [iter(bottles), ranges]
    merged = list(islice(heapq.merge(*items, key=_position), limit + 1))
    page = merged[:limit]
    return Holdings([item for item in page if isinstance(item, Bottle)],
                    [item for item in page if isinstance(item, StockRange)],
                    encode_cursor(*_position(merged[limit])) if len(merged) > limit else None)


def _position(item: Bottle | StockRange) -> tuple[int, int]:
    """Where an item of an address's holdings sorts: (lot, first serial)."""
    return (item.lot.lot_id, item.first_serial) if isinstance(item, StockRange) else (item.lot_id, item.serial)


# ------------------------------------------------------------------ lots


@dataclass(frozen=True)
class LotCounts:
    """A lot's bottles by where they are and what state they are in."""

    in_stock: int  # with the issuer, active: never moved, or moved back
    held: int  # active, with someone other than the issuer
    gift_pending: int
    pledged: int
    redemption_requested: int
    redeemed: int
    flagged: int
    holders: int  # distinct addresses holding at least one bottle (the issuer included)


@dataclass(frozen=True)
class LotSummary:
    facts: LotFacts
    counts: LotCounts


def lot_counts(tx: Transaction, chain_id: int, facts: LotFacts) -> LotCounts:
    by_state = {str(row["state"]): int(row["n"]) for row in tx.all(
        "SELECT state, COUNT(*) AS n FROM ix_tokens WHERE chain_id = ? AND lot_id = ? GROUP BY state",
        (chain_id, facts.lot_id))}
    issuers = {str(row["state"]): int(row["n"]) for row in tx.all(
        "SELECT state, COUNT(*) AS n FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND owner = ? GROUP BY state",
        (chain_id, facts.lot_id, facts.issuer))}
    moved, with_issuer, active_with_issuer = sum(by_state.values()), sum(issuers.values()), issuers.get(ACTIVE, 0)
    unmoved = facts.bottle_count - moved
    # COUNT(DISTINCT) leaves out the redeemed (no owner). Every count here is read off ix_tokens_lot_state.
    owners = tx.one("SELECT COUNT(DISTINCT owner) AS n FROM ix_tokens WHERE chain_id = ? AND lot_id = ?",
                    (chain_id, facts.lot_id))
    holders = int(owners["n"]) if owners else 0
    if unmoved > 0 and with_issuer == 0:
        holders += 1  # the issuer holds the unsold stock and no bottle with a row
    return LotCounts(
        in_stock=unmoved + active_with_issuer, held=by_state.get(ACTIVE, 0) - active_with_issuer,
        gift_pending=by_state.get(GIFT_PENDING, 0), pledged=by_state.get(PLEDGED, 0),
        redemption_requested=by_state.get(REDEMPTION_REQUESTED, 0), redeemed=by_state.get(REDEEMED, 0),
        flagged=by_state.get(FLAGGED, 0), holders=holders)


def lot_summary(tx: Transaction, chain_id: int, lot_id: int) -> LotSummary | None:
    facts = lot(tx, chain_id, lot_id)
    return LotSummary(facts, lot_counts(tx, chain_id, facts)) if facts is not None else None


def lots(tx: Transaction, chain_id: int, *, after: int | None, limit: int, issuer: str | None = None,
         custodian: str | None = None) -> Page[LotSummary]:
    """Lots in id order after lot ``after``, optionally of one issuer or custodian, with their counts."""
    sql = "SELECT * FROM ix_lots WHERE chain_id = ? AND lot_id > ?"
    params: list[Any] = [chain_id, -1 if after is None else after]
    if issuer is not None:
        sql += " AND issuer = ?"
        params.append(issuer)
    if custodian is not None:
        sql += " AND custodian = ?"
        params.append(custodian)
    rows = tx.all(sql + " ORDER BY lot_id LIMIT ?", (*params, limit + 1))
    items = [LotFacts.from_row(row) for row in rows[:limit]]
    return Page([LotSummary(facts, lot_counts(tx, chain_id, facts)) for facts in items],
                encode_cursor(items[-1].lot_id) if len(rows) > limit else None)
