"""Response models of the index's read API (:mod:`api.routers.index`).

Every answer says how far the index goes (`indexed_block`), the node's head
when the follower last looked (`head_block`) and the difference (`lag`): an
answer is the chain as of `indexed_block`. Rows carry `confirmations` (blocks
on top of the block that last changed them, that block included) and `final`
(beyond the reorg window: no reorg the indexer follows can undo it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas import Address, Bytes32Hex, Int256Out, LoanState, Uint256Out


class IndexPosition(BaseModel):
    indexed_block: int | None = Field(description="The last block in the index (null: nothing indexed yet). "
                                      "The answer is the chain as of this block.")
    head_block: int | None = Field(description="The node's head when the follower last looked.")
    lag: int | None = Field(description="`head_block - indexed_block`: how many blocks the answer may miss.")


class Paged(IndexPosition):
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class HeldState(StrEnum):
    """A certificate's lifecycle state, as a filter."""

    active = "active"
    gift_pending = "gift_pending"
    pledged = "pledged"
    redemption_requested = "redemption_requested"
    redeemed = "redeemed"
    flagged = "flagged"


class Confirmed(BaseModel):
    block_number: int = Field(description="The block that last changed this row.")
    confirmations: int = Field(description="Blocks on top of `block_number`, itself included, up to `head_block`.")
    final: bool = Field(description="Whether `block_number` is beyond the reorg window (cannot be undone).")


class WineFacts(BaseModel):
    wine: str | None = Field(description="From the lot's `LotIssued`; null if the index does not hold the lot.")
    vintage: int | None = Field(description="Harvest year; 0 for a non-vintage wine.")
    producer: str | None


class HeldCertificate(WineFacts, Confirmed):
    """One bottle that moved or changed state since issuance."""

    token_id: Uint256Out
    lot_id: Uint256Out
    serial: int
    state: HeldState
    gift_expiry: int | None = Field(description="Unix time a pending gift expires; null unless `gift_pending`.")


class StockRange(WineFacts, Confirmed):
    """Bottles of a lot its issuer still holds since issuance, all active:
    token ids `first_token_id` to `last_token_id` (serials `first_serial` to `last_serial`)."""

    lot_id: Uint256Out
    first_token_id: Uint256Out
    last_token_id: Uint256Out
    first_serial: int
    last_serial: int
    count: int
    state: Literal["active"] = "active"


class CertificatePage(Paged):
    """A page of the certificates an address holds, in (lot, serial) order: single bottles, and an issuer's
    unsold stock as ranges (a range counts as one item of the page)."""

    address: Address
    certificates: list[HeldCertificate]
    ranges: list[StockRange]


class HistoryItem(BaseModel):
    """One event in a certificate's history."""

    block_number: int
    log_index: int
    block_time: int | None = Field(description="Unix time of the block.")
    block_time_iso: str | None = Field(description="The block's time as ISO 8601 (UTC).")
    tx_hash: Bytes32Hex
    contract: str = Field(description="The deploy manifest's name of the contract that emitted it.",
                          examples=["WineCertificate"])
    event: str = Field(description="The event's name, as the contract declares it.", examples=["GiftCreated"])
    args: dict[str, str] = Field(description="The event's arguments as strings (addresses checksummed, bytes "
                                 "as 0x hex, numbers as decimal).")
    summary: str = Field(description="The event in one plain English sentence.",
                         examples=["Gift created for claim until 2026-12-31"])
    confirmations: int
    final: bool


class HistoryPage(Paged):
    """A page of a certificate's history, oldest first: its own events and its lot's (issuance, custody moves,
    storage attestations, successor issuer, appraisals, reserve roots of the lot's custodian at the time)."""

    token_id: Uint256Out
    lot_id: Uint256Out
    history: list[HistoryItem]


class LotCountsOut(BaseModel):
    """Where a lot's bottles are."""

    in_stock: int = Field(description="With the issuer and active: never moved, or moved back.")
    held: int = Field(description="Active, with someone other than the issuer.")
    gift_pending: int
    pledged: int
    redemption_requested: int
    redeemed: int
    flagged: int
    holders: int = Field(description="Distinct addresses holding at least one bottle (the issuer included while "
                         "it holds any).")


class LotSummaryOut(Confirmed):
    lot_id: Uint256Out
    issuer: Address
    custodian: Address = Field(description="The custodian now (after any custody moves).")
    successor_issuer: Address | None = Field(description="The issuer named to act for the lot, if any.")
    first_token_id: Uint256Out
    last_token_id: Uint256Out
    bottle_count: int
    vintage: int
    volume_ml: int
    bottling_date: int
    metadata_hash: Bytes32Hex
    tag_root: Bytes32Hex
    producer: str
    wine: str
    region: str
    metadata_uri: str
    issued_block: int
    issued_at: int | None
    issued_tx: Bytes32Hex
    counts: LotCountsOut


class LotPage(Paged):
    lots: list[LotSummaryOut]


class LotAnswer(IndexPosition):
    lot: LotSummaryOut


class IndexedLoan(Confirmed):
    loan_id: Uint256Out
    token_id: Uint256Out
    lot_id: Uint256Out
    state: LoanState = Field(description="`open`, `repaid` or `foreclosed`.")
    lender: Address
    borrower: Address
    principal: Uint256Out = Field(description="Stablecoin lent, in its smallest unit.")
    repayment: Uint256Out = Field(description="Stablecoin that repays it in full.")
    due_at: int
    grace_period: int
    late: bool = Field(description="Repaid after its due date.")
    started_block: int
    started_at: int | None


class LoanPage(Paged):
    loans: list[IndexedLoan]


class LoanCounts(BaseModel):
    open: int
    repaid: int
    foreclosed: int


class LenderPortfolio(IndexPosition):
    lender: Address
    loans: LoanCounts
    principal_outstanding: Uint256Out = Field(description="Principal of the open loans (stablecoin units).")
    repayment_due: Uint256Out = Field(description="What repays the open loans in full.")
    principal_lent: Uint256Out = Field(description="Principal of every loan it made.")
    repaid_late: int = Field(description="Loans repaid after their due date.")


class LedgerKind(StrEnum):
    issued = "issued"
    redeemed = "redeemed"
    accepted = "accepted"
    received = "received"


class LedgerLine(BaseModel):
    kind: LedgerKind = Field(description="`issued`: points issued to `counterparty` for `stablecoin` paid into "
                             "the reserve; `redeemed`: points redeemed for `stablecoin` out of the reserve; "
                             "`accepted`: points `counterparty` paid it while it was a registered merchant; "
                             "`received`: points sent while it was not registered (not in its totals).")
    block_number: int
    log_index: int
    block_time: int | None
    block_time_iso: str | None
    tx_hash: Bytes32Hex
    points: Uint256Out
    stablecoin: Uint256Out | None = Field(description="Stablecoin paid in (issued) or out (redeemed).")
    counterparty: Address | None


class MerchantTotalsOut(BaseModel):
    name: str
    registered: bool
    cap: Uint256Out
    points_issued: Uint256Out
    points_redeemed: Uint256Out
    points_accepted: Uint256Out
    stablecoin_paid_in: Uint256Out
    stablecoin_paid_out: Uint256Out
    net_position: Int256Out = Field(description="`stablecoin_paid_in - stablecoin_paid_out`.")


class MerchantLedger(Paged):
    merchant: Address
    totals: MerchantTotalsOut | None = Field(description="Null for an address the points token never knew.")
    entries: list[LedgerLine]


class PointsMoveOut(BaseModel):
    """One movement of a holder's points."""

    block_number: int
    log_index: int
    block_time: int | None = Field(description="Unix time of the block.")
    block_time_iso: str | None
    tx_hash: Bytes32Hex
    points: Int256Out = Field(description="In the token's smallest units: positive received, negative sent.")
    counterparty: Address | None = Field(description="Who paid or was paid; null for points a shop issued "
                                         "(minted) or points redeemed (burnt).")
    confirmations: int
    final: bool


class PointsHistoryPage(Paged):
    """A page of an account's points movements, newest first."""

    address: Address
    moves: list[PointsMoveOut]
