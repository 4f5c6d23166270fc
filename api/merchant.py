"""The merchant's side of the points: issue points to a customer, redeem the
points it accepted, read its cap and the reserve, and the clearing statement
between merchants over a date range, with amounts as money.

A merchant's account is custodial: :class:`api.business.BusinessSender` signs
``approve`` + ``PointsToken.issue`` and ``PointsToken.redeem`` with the
account's own key. What the contract would refuse for a reason a person can
act on (an amount above the stablecoin balance, above the room under the cap,
above the points held) is checked first and refused in words (422), nothing
sent; the sender's simulation guards the rest (409 ``would_revert``).

Money is written as people write it: ``"12.50"``, a decimal point and at most
as many decimals as the stablecoin has. One point is worth one stablecoin
(the contract mints ``SCALE`` point units per stablecoin unit), so points read
as the same figure.

Dates to blocks: a statement "from 1 to 6 December" covers the blocks whose
timestamp falls on or after 1 December 00:00 UTC and before 7 December 00:00
UTC (:func:`blocks_between`, a binary search over block timestamps, which
never decrease).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from eth_utils import to_checksum_address
from hexbytes import HexBytes

from amphora.settlement import Statement
from api.business import BusinessSender, Sent
from api.chain import POINTS, STABLECOIN, ChainService, Token, contract_label, node_errors
from api.errors import Conflict, InvalidRequest, NotDeployed
from api.users import User

#: A cap this large is no cap (the contract's check saturates).
UNLIMITED = 2**256 - 1
#: Answers kept for replayed Idempotency-Keys (the oldest are forgotten first).
REMEMBERED_ACTIONS = 10_000
#: Money as typed: digits, maybe a point (or a comma) and more digits.
_MONEY_CHARS = frozenset("0123456789.,")

T = TypeVar("T")


class Refused(InvalidRequest):
    """Bad input to a merchant action, in words (``detail``) and as a ``reason`` the console's pages
    put beside the field: ``money`` (not an amount), ``decimals``, ``balance``, ``cap``, ``held``
    (more points than held), ``customer`` (names nobody), ``zero`` (the zero address)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def money(units: int, decimals: int) -> str:
    """``units`` of a token with ``decimals`` as money: at least two decimals, more only when needed
    (``12500000``, 6 -> ``"12.50"``; ``1``, 6 -> ``"0.000001"``; negative with a leading ``-``)."""
    text = format(Decimal(units).scaleb(-decimals).normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def parse_money(text: str, decimals: int, symbol: str, name: str = "amount") -> int:
    """``text`` (``"12.50"``) in the token's smallest unit; :class:`InvalidRequest` naming ``name``
    unless it is a positive amount with at most ``decimals`` decimals."""
    cleaned = text.strip().replace(",", ".")
    if (not cleaned or not set(cleaned) <= _MONEY_CHARS or cleaned.count(".") > 1 or cleaned.startswith(".")
            or cleaned.endswith(".") or len(cleaned) > 60):
        raise Refused("money", f"{name}: {text!r} is not an amount of money: write it like 12.50")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as err:  # pragma: no cover - the characters were checked
        raise Refused("money", f"{name}: {text!r} is not an amount of money: write it like 12.50") from err
    if value <= 0:
        raise Refused("money", f"{name}: must be more than 0")
    units = value.scaleb(decimals)
    if units != units.to_integral_value():
        raise Refused("decimals", f"{name}: {symbol} has {decimals} decimals, {text} has more")
    return int(units)


# ---------------------------------------------------------------- the merchant's state


@dataclass(frozen=True)
class Tokens:
    points: Token
    stablecoin: Token
    #: Point units per stablecoin unit.
    scale: int


def tokens(chain: ChainService) -> Tokens:
    """The deployment's points token, stablecoin and their scale; :class:`NotDeployed` without them."""
    points, stablecoin = chain.token(POINTS), chain.token(STABLECOIN)
    if points is None or stablecoin is None:
        raise NotDeployed("the deploy manifest records no PointsToken or Stablecoin: deploy them with `ape run deploy`")
    return Tokens(points, stablecoin, 10 ** (points.decimals - stablecoin.decimals))


@dataclass(frozen=True)
class MerchantState:
    address: str
    name: str
    block_number: int
    #: In point units; None when unlimited.
    cap: int | None
    issued: int
    redeemed: int
    #: Point units it may still issue (None: no limit).
    room: int | None
    stablecoin_balance: int
    points_balance: int
    #: Stablecoin units behind every outstanding point (all merchants').
    reserve: int
    tokens: Tokens = field(repr=False)


def merchant_state(chain: ChainService, address: str) -> MerchantState:
    """The merchant's registration, balances and the reserve, read at one block."""
    found = tokens(chain)
    account = to_checksum_address(address)
    block = chain.latest_block_ref()
    at = HexBytes(block.hash)
    contract = found.points.contract
    with node_errors(contract_label(POINTS)):
        name, _active, cap, issued, redeemed, _paid_in, _paid_out = contract.functions.merchants(account).call(
            block_identifier=at)
        reserve = int(contract.functions.reserve().call(block_identifier=at))
    limit = None if int(cap) == UNLIMITED or int(redeemed) > UNLIMITED - int(cap) else int(cap) + int(redeemed)
    room = None if limit is None else max(0, limit - int(issued))
    return MerchantState(
        address=account, name=str(name), block_number=block.number, cap=None if int(cap) == UNLIMITED else int(cap),
        issued=int(issued), redeemed=int(redeemed), room=room,
        stablecoin_balance=chain.token_balance(found.stablecoin, account, at),
        points_balance=chain.token_balance(found.points, account, at), reserve=reserve, tokens=found)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Issued:
    customer: str
    stablecoin_units: int
    points_units: int
    approve_tx_hash: str | None
    sent: Sent


@dataclass(frozen=True)
class Redeemed:
    stablecoin_units: int
    points_units: int
    sent: Sent


#: One action at a time per merchant in this process: an issuance's ``approve`` and ``issue`` are two
#: transactions, and another action between them could replace the allowance the first one set.
_ACTION_LOCKS: dict[str, threading.Lock] = {}
_ACTION_LOCKS_GUARD = threading.Lock()


def _action_lock(address: str) -> threading.Lock:
    with _ACTION_LOCKS_GUARD:
        return _ACTION_LOCKS.setdefault(address.lower(), threading.Lock())


def issue(chain: ChainService, business: BusinessSender, user: User, customer: str, units: int) -> Issued:
    """Pay ``units`` of stablecoin into the reserve and issue the points to ``customer``: ``approve`` (when
    the allowance falls short) then ``issue``, both from the merchant's own address."""
    with _action_lock(user.address):
        return _issue(chain, business, user, customer, units)


def _issue(chain: ChainService, business: BusinessSender, user: User, customer: str, units: int) -> Issued:
    state = merchant_state(chain, user.address)
    found, scale = state.tokens, state.tokens.scale
    symbol, decimals = found.stablecoin.symbol, found.stablecoin.decimals
    if int(customer, 16) == 0:
        raise Refused("zero", "customer: the zero address holds no points: name an account")
    points_units = units * scale
    if state.room is not None and points_units > state.room:
        raise Refused("cap", f"amount: {money(units, decimals)} is above your cap: you may issue "
                             f"{money(state.room, found.points.decimals)} more points now")
    if units > state.stablecoin_balance:
        raise Refused("balance", f"amount: {money(units, decimals)} is more than your {symbol} balance of "
                             f"{money(state.stablecoin_balance, decimals)}")
    points = found.points.contract
    stablecoin = found.stablecoin.contract
    with node_errors(contract_label(STABLECOIN)):
        allowance = int(stablecoin.functions.allowance(state.address, points.address).call())
    approve_hash = None
    if allowance < units:
        approve_hash = business.send(user, stablecoin.functions.approve(points.address, units),
                                     contract_label(STABLECOIN)).tx_hash
    sent = business.send(user, points.functions.issue(to_checksum_address(customer), units), contract_label(POINTS))
    return Issued(to_checksum_address(customer), units, points_units, approve_hash, sent)


def redeem(chain: ChainService, business: BusinessSender, user: User, units: int) -> Redeemed:
    """Redeem the points worth ``units`` of stablecoin, paid out of the reserve to the merchant."""
    with _action_lock(user.address):
        return _redeem(chain, business, user, units)


def _redeem(chain: ChainService, business: BusinessSender, user: User, units: int) -> Redeemed:
    state = merchant_state(chain, user.address)
    found = state.tokens
    points_units = units * found.scale
    if points_units > state.points_balance:
        raise Refused("held", f"amount: {money(units, found.stablecoin.decimals)} is more than the "
                             f"{money(state.points_balance, found.points.decimals)} points you hold")
    sent = business.send(user, found.points.contract.functions.redeem(points_units), contract_label(POINTS))
    return Redeemed(units, points_units, sent)


class ActionLog:
    """The answers of actions by account and ``Idempotency-Key``, in this process: the same key
    again returns the first answer (waiting for it while it runs) instead of acting twice; the
    same key with another request is :class:`Conflict`. An action that failed is not kept, so a
    retry acts (nothing was done, or the chain refuses what was)."""

    @dataclass
    class _Entry:
        fingerprint: tuple[Any, ...]
        lock: threading.Lock = field(default_factory=threading.Lock)
        answer: Any = None

    def __init__(self, size: int = REMEMBERED_ACTIONS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], ActionLog._Entry] = OrderedDict()

    def run(self, account: str, key: str, fingerprint: tuple[Any, ...], action: Callable[[], T]) -> T:
        with self._lock:
            entry = self._entries.get((account, key))
            if entry is None:
                entry = self._entries[(account, key)] = ActionLog._Entry(fingerprint)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        if entry.fingerprint != fingerprint:
            raise Conflict(f"the Idempotency-Key {key!r} was used for another request: use a new key per action")
        with entry.lock:
            if entry.answer is None:
                entry.answer = action()
            answer: T = entry.answer
            return answer


def action_log(state: Any) -> ActionLog:
    """The app's :class:`ActionLog` (``app.state.merchant_actions``), made on first use."""
    log = getattr(state, "merchant_actions", None)
    if log is None:
        log = state.merchant_actions = ActionLog()
    return log


# ---------------------------------------------------------------- statements


def blocks_between(chain: ChainService, first_day: date, last_day: date) -> tuple[int, int] | None:
    """The first and last block of the points token's life stamped from ``first_day`` 00:00 UTC to
    before ``last_day`` + 1 day 00:00 UTC, by binary search over block timestamps; None when no block
    falls in those days."""
    start = int(datetime.combine(first_day, datetime.min.time(), UTC).timestamp())
    end = (int(datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC).timestamp())
           if last_day < date.max else 2**63)
    low, head = chain.deploy_block_of(POINTS), chain.latest_block()
    stamps: dict[int, int] = {}

    def stamp(number: int) -> int:
        if number not in stamps:
            with node_errors():
                stamps[number] = int(chain.w3.eth.get_block(number)["timestamp"])
        return stamps[number]

    def first_at_or_after(moment: int) -> int:
        """The lowest block in low..head+1 stamped at or after ``moment`` (head + 1: none)."""
        lo, hi = low, head + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if stamp(mid) >= moment:
                hi = mid
            else:
                lo = mid + 1
        return lo

    first, after = first_at_or_after(start), first_at_or_after(end)
    return (first, after - 1) if first < after else None


@dataclass(frozen=True)
class MoneyStatement:
    """A clearing statement of days, its figures as money."""

    first_day: date
    last_day: date
    symbol: str
    decimals: int
    points_decimals: int
    statement: Statement

    def amount(self, units: int) -> str:
        return money(units, self.decimals)

    def rows(self) -> list[dict[str, str]]:
        """One row per merchant, then the totals (``merchant`` = ``TOTAL``), amounts as money."""
        data = self.statement.to_json()
        rows = []
        for line in [*data["merchants"], {"merchant": "TOTAL", "name": "", **data["totals"]}]:
            rows.append({
                "merchant": line["merchant"], "name": line["name"],
                "points_issued": money(int(line["points_issued"]), self.points_decimals),
                "points_redeemed": money(int(line["points_redeemed"]), self.points_decimals),
                "paid_in": self.amount(int(line["stablecoin_paid_in"])),
                "paid_out": self.amount(int(line["stablecoin_paid_out"])),
                "net": self.amount(int(line["net_position"])),
            })
        return rows


def money_statement(statement: Statement, first_day: date, last_day: date, found: Tokens) -> MoneyStatement:
    return MoneyStatement(first_day, last_day, found.stablecoin.symbol, found.stablecoin.decimals,
                          found.points.decimals, statement)


CSV_COLUMNS = ("merchant", "name", "points_issued", "points_redeemed", "paid_in", "paid_out", "net")


def statement_csv(result: MoneyStatement) -> str:
    import csv

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(result.rows())
    return out.getvalue()


def statement_pdf(result: MoneyStatement) -> bytes:
    """The statement as an A4 PDF: the period and blocks, the table with its totals, the reserve and
    whether it reconciles (words in English: the PDF is a record to file)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    statement = result.statement
    styles = getSampleStyleSheet()
    out = io.BytesIO()
    document = SimpleDocTemplate(out, pagesize=landscape(A4), leftMargin=15 * mm, rightMargin=15 * mm,
                                 topMargin=15 * mm, bottomMargin=15 * mm, title="Points clearing statement",
                                 author="Amphora")
    rows = result.rows()
    header = ["Merchant", "Name", "Points issued", "Points redeemed", f"Paid in ({result.symbol})",
              f"Paid out ({result.symbol})", f"Net ({result.symbol})"]
    table = Table([header, *[[row[c] for c in CSV_COLUMNS] for row in rows]], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold"), ("FONT", (0, -1), (-1, -1), "Helvetica-Bold"),
        ("FONTSIZE", (0, 0), (-1, -1), 8), ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black), ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.black),
    ]))
    reconciled = ("Reconciled: paid in minus paid out equals the reserve's movement on chain." if statement.reconciled
                  else "NOT reconciled: " + "; ".join(statement.discrepancies))
    story = [
        Paragraph("Points clearing statement", styles["Title"]),
        Paragraph(f"From {result.first_day.isoformat()} to {result.last_day.isoformat()} (UTC): blocks "
                  f"{statement.from_block} to {statement.to_block}. Points token {statement.points}.",
                  styles["Normal"]),
        Spacer(1, 6 * mm), table, Spacer(1, 6 * mm),
        Paragraph(f"Reserve before: {result.amount(statement.reserve_before)} {result.symbol}. Reserve after: "
                  f"{result.amount(statement.reserve_after)} {result.symbol}. Movement: "
                  f"{result.amount(statement.reserve_movement)} {result.symbol}.", styles["Normal"]),
        Paragraph(reconciled, styles["Normal"]),
    ]
    document.build(story)
    return out.getvalue()
