"""Loan extensions (:mod:`api.extensions`): the lender proposes more time
(``/lender/loans/{loan_id}/extensions``), the borrower reads and accepts it
(``/me/loans/{loan_id}/extensions``), and the service relays ``extend_loan``
with both signatures, paying the gas.

The routes need a signed-in account with a credential that may act (401
without one, 403 for a read-only API token); the contract's parties decide the
rest: only the loan's lender proposes and withdraws, only its borrower accepts
(403 in words for anyone else).
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api import extensions
from api.deps import ChainDep, RelayerDep, SettingsDep, UserDep, UsersDep, relay_origin
from api.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotDeployed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamUnavailable,
    error_responses,
)
from api.lender import MAX_YEARLY_RATE_BPS
from api.relayer import Origin
from api.routers.relay import RELAY_ERRORS, accepted
from api.schemas import Address, RelayAccepted, SignatureHex, Uint256In, Uint256Out

router = APIRouter(tags=["lender"])

LoanIdPath = Annotated[Uint256In, Path(description="Decimal loan id (`sequence << 96 | token_id`).")]
NumberPath = Annotated[int, Path(ge=1, le=extensions.MAX_PER_LOAN,
                                 description="The proposal's number for this loan (1, 2, ...).")]
_ERRORS = (Unauthorized, Forbidden, NotFound, InvalidRequest, Conflict, UpstreamUnavailable, NotDeployed,
           ServiceUnavailable)


def get_extensions(request: Request) -> extensions.ExtensionBook:
    return cast(extensions.ExtensionBook, request.app.state.extensions)


ExtensionsDep = Annotated[extensions.ExtensionBook, Depends(get_extensions)]
RelayOriginDep = Annotated[Origin, Depends(relay_origin)]


class ExtensionIn(BaseModel):
    """More time for a loan, as its lender offers it."""

    model_config = ConfigDict(extra="forbid")

    due_at: Uint256In = Field(description="The new due date (unix time): later than today and than the loan's "
                              "current due date. The grace period keeps its length after it.")
    repayment: Uint256In | None = Field(default=None, description="The new repayment, in the stablecoin's "
                                        "smallest unit: at least the current one. Give this or `yearly_rate_bps`.")
    yearly_rate_bps: int | None = Field(default=None, ge=0, le=MAX_YEARLY_RATE_BPS, description=(
        "A simple yearly rate in basis points (500 = 5 %) for the added time: `repayment = current repayment + "
        "principal * rate * (due_at - current due date) / (10000 * 365 days)`, rounded up. Give this or "
        "`repayment`."))
    deadline: Uint256In = Field(description="Unix time after which the borrower can no longer accept.")
    lender_signature: SignatureHex | None = Field(default=None, description=(
        "The lender's own EIP-712 signature of the `LoanExtension` (typed data from "
        "`GET /relay/typed-data/loan-extension`): required for a wallet account, optional otherwise (by default "
        "the service signs with the account's key)."))


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    borrower_signature: SignatureHex | None = Field(default=None, description=(
        "The borrower's own EIP-712 signature of the proposal's `LoanExtension`: required for a wallet account, "
        "optional otherwise (by default the service signs with the account's key)."))


class ExtensionOut(BaseModel):
    """One proposal of more time. The lender's signature stays inside the service."""

    loan_id: Uint256Out
    n: int = Field(description="The proposal's number for this loan; a proposal never changes (new terms are a "
                   "new number, which withdraws the pending one).")
    lender: Address
    borrower: Address
    state: Literal["pending", "accepted", "withdrawn", "expired"] = Field(description=(
        "`pending` until the borrower accepts, the lender withdraws or replaces it, or its deadline passes "
        "(`expired`). `accepted` once relayed: the chain's loan shows the new terms when the relayed request "
        "is confirmed."))
    due_at: int = Field(description="The new due date offered (unix time).")
    repayment: Uint256Out = Field(description="The new repayment offered.")
    deadline: int = Field(description="Unix time after which it can no longer be accepted.")
    previous_due_at: int = Field(description="The loan's due date when it was offered.")
    previous_repayment: Uint256Out = Field(description="The loan's repayment when it was offered.")
    proposed_at: int
    decided_at: int | None
    request_id: str | None = Field(description="The relayed `extend_loan` request (`GET /relay/{request_id}`), "
                                   "once accepted.")


class ExtensionList(BaseModel):
    loan_id: Uint256Out
    block_timestamp: int = Field(description="The chain's time the states are judged at.")
    extensions: list[ExtensionOut] = Field(description="Newest first.")


class AcceptedExtension(BaseModel):
    extension: ExtensionOut
    relay: RelayAccepted


def _out(proposal: extensions.Proposal, now: int) -> ExtensionOut:
    return ExtensionOut(loan_id=proposal.loan_id, n=proposal.n, lender=proposal.lender, borrower=proposal.borrower,
                        state=proposal.shown_state(now), due_at=proposal.due_at,  # type: ignore[arg-type]
                        repayment=proposal.repayment, deadline=proposal.deadline,
                        previous_due_at=proposal.previous_due_at, previous_repayment=proposal.previous_repayment,
                        proposed_at=int(proposal.proposed_at),
                        decided_at=None if proposal.decided_at is None else int(proposal.decided_at),
                        request_id=proposal.request_id)


@router.post("/lender/loans/{loan_id}/extensions", status_code=status.HTTP_201_CREATED,
             response_model=ExtensionOut, summary="Offer the borrower of my loan more time",
             responses=error_responses(*_ERRORS))
def propose_extension(loan_id: LoanIdPath, body: ExtensionIn, user: UserDep, users: UsersDep, chain: ChainDep,
                      book: ExtensionsDep) -> ExtensionOut:
    """The loan's lender offers a later due date with a new repayment (or a yearly rate for the added time)
    until `deadline`. The service signs the `LoanExtension` with the account's key (or checks the lender's
    own `lender_signature`) and keeps it for the borrower, who accepts with
    `POST /me/loans/{loan_id}/extensions/{n}/accept`. The loan's pending proposal, if any, is withdrawn: the
    borrower can only accept the newest terms. The same terms again return the pending proposal.

    403 unless the account is the loan's lender; 404 for a loan that never existed; 409 for a loan repaid or
    foreclosed; 422 in words for a due date not later than today or than the current one, a repayment below
    the current one, a deadline already passed, both or neither of `repayment` and `yearly_rate_bps`, or a
    signature that is not the lender's."""
    terms = extensions.ExtensionTerms(due_at=body.due_at, deadline=body.deadline, repayment=body.repayment,
                                      yearly_rate_bps=body.yearly_rate_bps, lender_signature=body.lender_signature)
    proposal = extensions.propose(chain, book, users, user, loan_id, terms)
    return _out(proposal, 0)


@router.post("/lender/loans/{loan_id}/extensions/{n}/withdraw", response_model=ExtensionOut,
             summary="Withdraw my pending offer of more time", responses=error_responses(*_ERRORS))
def withdraw_extension(loan_id: LoanIdPath, n: NumberPath, user: UserDep, chain: ChainDep,
                       book: ExtensionsDep) -> ExtensionOut:
    """The borrower can no longer accept proposal `n` (the service never hands out the lender's signature,
    so no one can relay it). Withdrawing it again returns it. 403 unless the account is the loan's lender,
    404 for no such proposal, 409 once the borrower accepted it."""
    return _out(extensions.withdraw(chain, book, user, loan_id, n), 0)


@router.get("/me/loans/{loan_id}/extensions", response_model=ExtensionList,
            summary="The offers of more time for a loan of mine", responses=error_responses(*_ERRORS))
def list_extensions(loan_id: LoanIdPath, user: UserDep, chain: ChainDep, book: ExtensionsDep) -> ExtensionList:
    """The loan's proposals, newest first, for its lender or its borrower (403 for anyone else, 404 for a
    loan that never existed). At most one is `pending`."""
    _, now, proposals = extensions.for_loan(chain, book, user, loan_id)
    return ExtensionList(loan_id=loan_id, block_timestamp=now, extensions=[_out(p, now) for p in proposals])


@router.post("/me/loans/{loan_id}/extensions/{n}/accept", status_code=status.HTTP_202_ACCEPTED,
             response_model=AcceptedExtension, summary="Accept an offer of more time for my loan",
             responses=error_responses(*RELAY_ERRORS, NotFound, ServiceUnavailable))
def accept_extension(loan_id: LoanIdPath, n: NumberPath, user: UserDep, users: UsersDep, chain: ChainDep,
                     book: ExtensionsDep, relayer: RelayerDep, settings: SettingsDep, origin: RelayOriginDep,
                     body: AcceptIn | None = None) -> AcceptedExtension:
    """The loan's borrower accepts proposal `n` with exactly its terms: the service signs the same
    `LoanExtension` with the account's key (or checks the borrower's own `borrower_signature`) and relays
    `extend_loan` with both signatures; the relayer pays the gas. Poll `relay.status_url` until `confirmed`:
    the loan's due date and repayment are then the new ones (`GET /loans/{loan_id}`).

    403 unless the account is the loan's borrower; 404 for no such proposal; 409 for a proposal withdrawn or
    replaced by the lender, already accepted (a proposal is relayed once), expired, or made for terms the
    loan no longer has, and 409 `would_revert` with the contract's reason when the chain would refuse it
    (nothing sent; the proposal stays pending)."""
    signature = body.borrower_signature if body is not None else None
    proposal, record = extensions.accept(chain, book, users, relayer, user, loan_id, n, origin, signature)
    return AcceptedExtension(extension=_out(proposal, 0), relay=accepted(record, settings.public_base_url))
