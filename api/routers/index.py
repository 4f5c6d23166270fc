"""Reads from the index (the chain follower's tables), in milliseconds and
without a node round trip per event: an address's certificates, a
certificate's history, lots, loans, a lender's portfolio, a merchant's points
ledger, a holder's points movements.

Every answer carries `indexed_block`, `head_block` and `lag`, read in the
same database snapshot as the rows: it is the chain as of `indexed_block`.
Lists are paginated with an opaque `cursor` (the `next_cursor` of the page
before); a page stays consistent while new rows arrive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.chain import POINTS
from api.deps import ChainDep, IndexDep, UserDep
from api.errors import InvalidRequest, NotDeployed, NotFound, Unauthorized, UpstreamUnavailable, error_responses
from api.index_schemas import (
    CertificatePage,
    HeldCertificate,
    HeldState,
    HistoryItem,
    HistoryPage,
    IndexedLoan,
    LedgerKind,
    LedgerLine,
    LenderPortfolio,
    LoanCounts,
    LoanPage,
    LotAnswer,
    LotCountsOut,
    LotPage,
    LotSummaryOut,
    MerchantLedger,
    MerchantTotalsOut,
    PointsHistoryPage,
    PointsMoveOut,
    StockRange,
)
from api.schemas import ADDRESS_PATTERN, LoanState, Uint256In, checksum_address
from indexer import history as histories
from indexer import holdings, ledgers
from indexer.events import SERIAL_BITS
from indexer.reader import MAX_PAGE, BadCursor, IndexReader, IndexStatus, decode_cursor, encode_cursor

router = APIRouter()  # each route carries the tag of its resource

#: Most lots a page of `GET /lots` counts (each count reads the index entries of the lot's moved bottles).
MAX_LOTS_PAGE = 50
#: Lot ids the index can hold (signed 64-bit columns); the contract counts lots from 1.
MAX_LOT_ID = 2**63 - 1
_ERRORS = (InvalidRequest, UpstreamUnavailable, NotDeployed)
#: Loan states as the API names them => as the index keeps them.
_LOAN_STATE = {LoanState.open: "active", LoanState.repaid: "repaid", LoanState.foreclosed: "foreclosed"}
_API_LOAN_STATE = {value: key for key, value in _LOAN_STATE.items()}

AddressPath = Annotated[
    str, Path(pattern=ADDRESS_PATTERN, description="0x and 40 hex digits (lower, upper or EIP-55 case)."),
]
CursorQuery = Annotated[
    str | None, Query(max_length=200, description="The `next_cursor` of the page before; omit for the first page."),
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}.")]


def _address(value: str, name: str = "address") -> str:
    try:
        return checksum_address(value)
    except ValueError as err:
        raise InvalidRequest(f"{name}: {err}") from err


def _cursor(cursor: str | None, parts: int) -> tuple[int, ...] | None:
    try:
        return decode_cursor(cursor, parts)
    except BadCursor as err:
        raise InvalidRequest(str(err)) from err


def _lot(lot_id: int | None) -> int | None:
    if lot_id is not None and lot_id > MAX_LOT_ID:
        raise InvalidRequest(f"lot: {lot_id} is beyond the largest lot id ({MAX_LOT_ID})")
    return lot_id


def position(status: IndexStatus) -> dict[str, Any]:
    """The `indexed_block`, `head_block` and `lag` fields of an answer."""
    return {"indexed_block": status.indexed_block, "head_block": status.head_block, "lag": status.lag}


def confirmed(status: IndexStatus, block_number: int) -> dict[str, Any]:
    """The `block_number`, `confirmations` and `final` fields of a row."""
    return {"block_number": block_number, "confirmations": status.confirmations(block_number),
            "final": status.final(block_number)}


def iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def arg_text(value: Any) -> str:
    """An event argument as the API shows it: booleans as `true`/`false`, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def history_item(status: IndexStatus, entry: histories.HistoryEntry) -> HistoryItem:
    return HistoryItem(
        block_number=entry.block_number, log_index=entry.log_index, block_time=entry.block_time,
        block_time_iso=iso(entry.block_time), tx_hash=entry.tx_hash, contract=entry.contract, event=entry.event,
        args={key: arg_text(value) for key, value in entry.args.items()}, summary=entry.summary,
        confirmations=status.confirmations(entry.block_number), final=status.final(entry.block_number))


def _wine(lot: holdings.LotFacts | None) -> dict[str, Any]:
    return {"wine": lot.wine if lot else None, "vintage": lot.vintage if lot else None,
            "producer": lot.producer if lot else None}


async def certificate_page(index: IndexReader, chain_id: int, owner: str, cursor: str | None, limit: int,
                     state: HeldState | None, lot_id: int | None) -> CertificatePage:
    start = _cursor(cursor, 2)

    def query(tx: Any, status: IndexStatus) -> CertificatePage:
        found = holdings.holdings(tx, chain_id, owner, start=(start[0], start[1]) if start else None, limit=limit,
                                  state=state.value if state else None, lot_id=lot_id)
        return CertificatePage(
            **position(status), next_cursor=found.next_cursor, address=owner,
            certificates=[HeldCertificate(
                token_id=b.token_id, lot_id=b.lot_id, serial=b.serial, state=HeldState(b.state),
                gift_expiry=b.gift_expiry, **_wine(b.lot), **confirmed(status, b.block_number))
                for b in found.bottles],
            ranges=[StockRange(
                lot_id=r.lot.lot_id, first_token_id=r.first_token_id, last_token_id=r.last_token_id,
                first_serial=r.first_serial, last_serial=r.last_serial, count=r.count, **_wine(r.lot),
                **confirmed(status, r.lot.block_number)) for r in found.ranges],
        )

    # An issuer's unsold stock walks its lots' moved bottles (milliseconds on a
    # lot with thousands sold): off the event loop, so holders' pages go on meanwhile.
    heavy = state in (None, HeldState.active) and index.db.reads_beside_writer and index.issues_lots(chain_id, owner)
    return (await index.answer_async(chain_id, query, heavy=heavy)).value


_CERTIFICATES_DOC = """Single bottles (those that moved or changed state since issuance) with their wine,
vintage, producer, lot, serial and state, and, for an issuer, its unsold stock as ranges of token ids (a lot of
a million bottles is one range until bottles move; each range counts as one item of a page). In (lot, serial)
order, `limit` items a page. `state` and `lot` filter (ranges are all `active`; a redeemed bottle has no
holder). 422 for a malformed address, state, lot or cursor."""


@router.get(
    "/accounts/{address}/certificates",
    response_model=CertificatePage,
    summary="The certificates an address holds",
    description=_CERTIFICATES_DOC,
    tags=["accounts"],
    responses=error_responses(*_ERRORS),
)
async def account_certificates(
    address: AddressPath, chain: ChainDep, index: IndexDep, cursor: CursorQuery = None, limit: LimitQuery = 50,
    state: Annotated[HeldState | None, Query(description="Only bottles in this state.")] = None,
    lot: Annotated[Uint256In | None, Query(description="Only bottles of this lot.")] = None,
) -> CertificatePage:
    return await certificate_page(index, chain.chain_id, _address(address), cursor, limit, state, _lot(lot))


@router.get(
    "/me/certificates",
    response_model=CertificatePage,
    summary="The certificates the signed-in custodial account holds",
    description="`GET /accounts/{address}/certificates` for the account's own address. " + _CERTIFICATES_DOC
    + " 401 without valid credentials.",
    tags=["custodial"],
    responses=error_responses(Unauthorized, *_ERRORS),
)
async def my_certificates(
    user: UserDep, chain: ChainDep, index: IndexDep, cursor: CursorQuery = None, limit: LimitQuery = 50,
    state: Annotated[HeldState | None, Query(description="Only bottles in this state.")] = None,
    lot: Annotated[Uint256In | None, Query(description="Only bottles of this lot.")] = None,
) -> CertificatePage:
    owner = checksum_address(user.address)
    return await certificate_page(index, chain.chain_id, owner, cursor, limit, state, _lot(lot))


async def points_history_page(index: IndexReader, chain_id: int, holder: str, cursor: str | None,
                              limit: int) -> PointsHistoryPage:
    """A page of ``holder``'s points movements, newest first (what ``GET /me/points/history`` answers)."""
    before = _cursor(cursor, 2)

    def query(tx: Any, status: IndexStatus) -> PointsHistoryPage:
        found = ledgers.holder_points(tx, chain_id, holder, limit + 1,
                                      before=(before[0], before[1]) if before else None)
        page = found[:limit]
        return PointsHistoryPage(
            **position(status), address=holder,
            next_cursor=encode_cursor(page[-1].block_number, page[-1].log_index) if len(found) > limit else None,
            moves=[PointsMoveOut(block_number=move.block_number, log_index=move.log_index,
                                 block_time=move.block_time, block_time_iso=iso(move.block_time),
                                 tx_hash=move.tx_hash, points=move.points, counterparty=move.counterparty,
                                 confirmations=status.confirmations(move.block_number),
                                 final=status.final(move.block_number)) for move in page])

    return (await index.answer_async(chain_id, query)).value


@router.get(
    "/me/points/history",
    response_model=PointsHistoryPage,
    summary="The signed-in custodial account's points movements",
    tags=["custodial"],
    responses=error_responses(Unauthorized, *_ERRORS),
)
async def my_points_history(
    user: UserDep, chain: ChainDep, index: IndexDep, cursor: CursorQuery = None, limit: LimitQuery = 50,
) -> PointsHistoryPage:
    """Every transfer of points to or from the account, newest first: points a shop issued to it
    (`counterparty` null, `points` positive), points received from or sent to another address, points
    redeemed (`counterparty` null, `points` negative). Amounts in the token's smallest units (the
    PointsToken's `decimals()`). 401 without valid credentials; 422 for a malformed cursor;
    503 when this deployment has no points token."""
    chain.require_contract(POINTS)
    return await points_history_page(index, chain.chain_id, checksum_address(user.address), cursor, limit)


@router.get(
    "/certificates/{token_id}/history",
    response_model=HistoryPage,
    summary="A certificate's history, in words",
    tags=["certificates"],
    responses=error_responses(NotFound, *_ERRORS),
)
async def certificate_history(
    token_id: Annotated[Uint256In, Path(description="Decimal token id: `lot_id << 32 | serial`, serials from 1.")],
    chain: ChainDep, index: IndexDep, cursor: CursorQuery = None, limit: LimitQuery = 50,
) -> HistoryPage:
    """Every event that touched the bottle, oldest first: its transfers, gift, redemption, flags, approvals,
    pledges and loans, and its lot's issuance, custody moves, storage attestations, successor issuer,
    appraisals and the proof-of-reserve roots its custodian posted while it held the lot. Each with block,
    time, transaction and a `summary` in plain words. An empty history with `indexed_block` below the
    certificate's issuance means the index has not reached it yet. 404 for a serial beyond its lot's
    bottles (when the index holds the lot); 422 for a malformed token id or cursor."""
    chain_id, after = chain.chain_id, _cursor(cursor, 2)
    lot_id = token_id >> SERIAL_BITS
    if lot_id == 0 or lot_id > MAX_LOT_ID:
        raise NotFound(f"certificate {token_id} was never issued (no lot {lot_id})")

    def query(tx: Any, status: IndexStatus) -> HistoryPage:
        facts = holdings.lot(tx, chain_id, lot_id)
        if facts is not None and not facts.first_token_id <= token_id <= facts.first_token_id + facts.bottle_count - 1:
            raise NotFound(f"certificate {token_id} was never issued: lot {lot_id} has {facts.bottle_count} bottles")
        page = histories.history(tx, chain_id, token_id, after=(after[0], after[1]) if after else None, limit=limit)
        return HistoryPage(**position(status), next_cursor=page.next_cursor, token_id=token_id, lot_id=lot_id,
                           history=[history_item(status, entry) for entry in page.items])

    return (await index.answer_async(chain_id, query)).value


def _lot_out(status: IndexStatus, summary: holdings.LotSummary) -> LotSummaryOut:
    facts, counts = summary.facts, summary.counts
    return LotSummaryOut(
        lot_id=facts.lot_id, issuer=facts.issuer, custodian=facts.custodian, successor_issuer=facts.successor
        if facts.successor and int(facts.successor, 16) else None, first_token_id=facts.first_token_id,
        last_token_id=facts.first_token_id + facts.bottle_count - 1, bottle_count=facts.bottle_count,
        vintage=facts.vintage, volume_ml=facts.volume_ml, bottling_date=facts.bottling_date,
        metadata_hash=facts.metadata_hash, tag_root=facts.tag_root, producer=facts.producer, wine=facts.wine,
        region=facts.region, metadata_uri=facts.metadata_uri, issued_block=facts.issued_block,
        issued_at=facts.issued_at, issued_tx=facts.issued_tx,
        counts=LotCountsOut(in_stock=counts.in_stock, held=counts.held, gift_pending=counts.gift_pending,
                            pledged=counts.pledged, redemption_requested=counts.redemption_requested,
                            redeemed=counts.redeemed, flagged=counts.flagged, holders=counts.holders),
        **confirmed(status, facts.block_number))


@router.get(
    "/lots",
    response_model=LotPage,
    summary="Lots, with where their bottles are",
    tags=["lots"],
    responses=error_responses(*_ERRORS),
)
async def list_lots(
    chain: ChainDep, index: IndexDep, cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LOTS_PAGE, description=f"Lots per page, 1 to {MAX_LOTS_PAGE} "
                                "(each is counted by state).")] = 20,
    issuer: Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="Only this issuer's lots.")] = None,
    custodian: Annotated[str | None, Query(pattern=ADDRESS_PATTERN,
                                           description="Only lots this custodian keeps now.")] = None,
) -> LotPage:
    """Lots in id order with their facts (from `LotIssued`, the custodian after custody moves) and their
    bottles counted by where they are: in stock with the issuer, held, gift pending, pledged, redemption
    requested, redeemed, flagged, and the number of distinct holders. 422 for a malformed filter or cursor."""
    chain_id, after = chain.chain_id, _cursor(cursor, 1)
    issuer_address = _address(issuer, "issuer") if issuer else None
    custodian_address = _address(custodian, "custodian") if custodian else None

    def query(tx: Any, status: IndexStatus) -> LotPage:
        page = holdings.lots(tx, chain_id, after=after[0] if after else None, limit=limit, issuer=issuer_address,
                             custodian=custodian_address)
        return LotPage(**position(status), next_cursor=page.next_cursor,
                       lots=[_lot_out(status, summary) for summary in page.items])

    return (await index.answer_async(chain_id, query)).value


@router.get(
    "/lots/{lot_id}",
    response_model=LotAnswer,
    summary="One lot, with where its bottles are",
    tags=["lots"],
    responses=error_responses(NotFound, *_ERRORS),
)
async def get_lot(lot_id: Annotated[Uint256In, Path(description="Decimal lot id.")], chain: ChainDep,
            index: IndexDep) -> LotAnswer:
    """The lot's facts and its bottles counted by where they are (see `GET /lots`). 404 for a lot the index
    does not hold (never issued, or issued after `indexed_block`: compare with the answer's fields of a
    `GET /lots`)."""
    chain_id = chain.chain_id

    def query(tx: Any, status: IndexStatus) -> LotAnswer:
        summary = holdings.lot_summary(tx, chain_id, lot_id) if lot_id <= MAX_LOT_ID else None
        if summary is None:
            raise NotFound(f"lot {lot_id} is not in the index (indexed to block {status.indexed_block})")
        return LotAnswer(**position(status), lot=_lot_out(status, summary))

    return (await index.answer_async(chain_id, query)).value


def _loan_out(status: IndexStatus, loan: ledgers.Loan) -> IndexedLoan:
    return IndexedLoan(
        loan_id=loan.loan_id, token_id=loan.token_id, lot_id=loan.token_id >> SERIAL_BITS,
        state=_API_LOAN_STATE.get(loan.state, LoanState.unknown), lender=loan.lender, borrower=loan.borrower,
        principal=loan.principal, repayment=loan.repayment, due_at=loan.due_at, grace_period=loan.grace_period,
        late=loan.late, started_block=loan.started_block, started_at=loan.started_at,
        **confirmed(status, loan.block_number))


@router.get(
    "/loans",
    response_model=LoanPage,
    summary="Loans, by lender, borrower and state",
    tags=["lending"],
    responses=error_responses(*_ERRORS),
)
async def list_loans(
    chain: ChainDep, index: IndexDep, cursor: CursorQuery = None, limit: LimitQuery = 50,
    lender: Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="Only this lender's loans.")] = None,
    borrower: Annotated[str | None, Query(pattern=ADDRESS_PATTERN,
                                          description="Only this borrower's loans.")] = None,
    state: Annotated[LoanState | None, Query(description="Only loans in this state (`open`, `repaid`, "
                                             "`foreclosed`).")] = None,
) -> LoanPage:
    """Loans in id order, with amounts as decimal strings in the stablecoin's smallest unit. 422 for a
    malformed filter or cursor."""
    chain_id, after = chain.chain_id, _cursor(cursor, 1)
    lender_address = _address(lender, "lender") if lender else None
    borrower_address = _address(borrower, "borrower") if borrower else None
    if state is LoanState.unknown:
        raise InvalidRequest("state: must be open, repaid or foreclosed")

    def query(tx: Any, status: IndexStatus) -> LoanPage:
        page = ledgers.loans(tx, chain_id, after=after[0] if after else None, limit=limit, lender=lender_address,
                             borrower=borrower_address, state=_LOAN_STATE[state] if state else None)
        return LoanPage(**position(status), next_cursor=page.next_cursor,
                        loans=[_loan_out(status, loan) for loan in page.items])

    return (await index.answer_async(chain_id, query)).value


@router.get(
    "/lenders/{address}/portfolio",
    response_model=LenderPortfolio,
    summary="A lender's loans in totals",
    tags=["lending"],
    responses=error_responses(*_ERRORS),
)
async def lender_portfolio(address: AddressPath, chain: ChainDep, index: IndexDep) -> LenderPortfolio:
    """How many loans the lender has by state, the principal still out on open loans and what repays them,
    the principal it ever lent, and how many loans were repaid late. An address that never lent answers
    zeros. 422 for a malformed address."""
    chain_id, lender = chain.chain_id, _address(address)

    def query(tx: Any, status: IndexStatus) -> LenderPortfolio:
        found = ledgers.portfolio(tx, chain_id, lender)
        return LenderPortfolio(
            **position(status), lender=lender,
            loans=LoanCounts(open=found.loans.get("active", 0), repaid=found.loans.get("repaid", 0),
                             foreclosed=found.loans.get("foreclosed", 0)),
            principal_outstanding=found.principal_outstanding, repayment_due=found.repayment_due,
            principal_lent=found.principal_lent, repaid_late=found.repaid_late)

    return (await index.answer_async(chain_id, query)).value


@router.get(
    "/merchants/{address}/ledger",
    response_model=MerchantLedger,
    summary="A merchant's points ledger",
    tags=["points"],
    responses=error_responses(*_ERRORS),
)
async def merchant_ledger(address: AddressPath, chain: ChainDep, index: IndexDep, cursor: CursorQuery = None,
                    limit: LimitQuery = 50) -> MerchantLedger:
    """The points the merchant issued (to whom, for how much stablecoin into the reserve), redeemed (for how
    much out of it) and accepted from customers, in chain order, with its totals since registration. 422 for
    a malformed address or cursor."""
    chain_id, merchant, after = chain.chain_id, _address(address), _cursor(cursor, 2)

    def query(tx: Any, status: IndexStatus) -> MerchantLedger:
        page = ledgers.ledger(tx, chain_id, merchant, after=(after[0], after[1]) if after else None, limit=limit)
        totals = ledgers.merchant_totals(tx, chain_id, merchant)
        return MerchantLedger(
            **position(status), next_cursor=page.next_cursor, merchant=merchant,
            totals=MerchantTotalsOut(
                name=totals.name, registered=totals.registered, cap=totals.cap, points_issued=totals.points_issued,
                points_redeemed=totals.points_redeemed, points_accepted=totals.points_accepted,
                stablecoin_paid_in=totals.stablecoin_paid_in, stablecoin_paid_out=totals.stablecoin_paid_out,
                net_position=totals.stablecoin_paid_in - totals.stablecoin_paid_out) if totals else None,
            entries=[LedgerLine(kind=LedgerKind(e.kind), block_number=e.block_number, log_index=e.log_index,
                                block_time=e.block_time, block_time_iso=iso(e.block_time), tx_hash=e.tx_hash,
                                points=e.points, stablecoin=e.stablecoin, counterparty=e.counterparty)
                     for e in page.items])

    return (await index.answer_async(chain_id, query)).value
