"""The lender's actions for a custodial account (the lender console's API):
offers signed by the service (``/me/offers``), cancelled on chain, the
stablecoin approved to the lending contract, and loans foreclosed.

Anyone may lend (no grant on chain), so these routes need only a signed-in
account with a credential that may act (401 without one, 403 for a read-only
API token). The service only ever signs and sends for the account's own
address. Amounts are in the stablecoin's smallest unit, as everywhere in the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from api import lender
from api.business import GasUnfunded, Sent, TransactionFailed
from api.business_wallet import WalletSendRequired
from api.deps import BusinessDep, ChainDep, OffersDep, SettingsDep, UserDep, UsersDep
from api.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotDeployed,
    NotFound,
    OfferUnusable,
    ServiceUnavailable,
    Unauthorized,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.schemas import Address, PostedOffer, Uint256In, Uint256Out

router = APIRouter(tags=["lender"])

_READ_ERRORS = (Unauthorized, UpstreamUnavailable, NotDeployed)
_SEND_ERRORS = (Unauthorized, Forbidden, InvalidRequest, Conflict, WouldRevert, GasUnfunded, WalletSendRequired,
                TransactionFailed, UpstreamUnavailable, NotDeployed, ServiceUnavailable)
_SEND_DOC = """

    Sent from the account's own address, which pays the gas (a business account funds its
    address; 409 `gas_unfunded` names it otherwise). The call is simulated first: 409
    `would_revert` with the contract's reason and nothing sent when it would fail."""


class OfferTermsIn(BaseModel):
    """A loan offer's terms, as the lender chooses them. The service adds the account's address as
    `lender`, the deployment's stablecoin as `currency`, and (unless given) a fresh `nonce`."""

    model_config = ConfigDict(extra="forbid")

    lot_id: Uint256In = Field(description="The lot whose bottles the offer lends against.")
    token_id: Uint256In = Field(default=0, description="One bottle of the lot, or 0 for any bottle of it.")
    principal: Uint256In = Field(description="Stablecoin lent, in its smallest unit.")
    repayment: Uint256In | None = Field(default=None, description="What repays the loan, at least `principal`. "
                                        "Give this or `yearly_rate_bps`.")
    yearly_rate_bps: int | None = Field(default=None, ge=0, le=lender.MAX_YEARLY_RATE_BPS, description=(
        "A simple yearly interest rate in basis points (500 = 5 %), turned into `repayment = principal + "
        "principal * rate * duration / (10000 * 365 days)`, rounded up. Give this or `repayment`."))
    duration: Uint256In = Field(description="Seconds from acceptance to the due date.")
    grace_period: Uint256In = Field(description="Seconds after the due date in which the borrower may still repay; "
                                    "after it the lender may foreclose.")
    expiry: Uint256In = Field(description="Unix time after which no one can accept the offer.")
    max_ltv_bps: Uint256In = Field(default=0, description="Highest principal / appraised value per bottle in basis "
                                   "points (at most 10000); 0 for no appraisal check.")
    nonce: Uint256In | None = Field(default=None, description="The offer's nonce; by default a fresh one above "
                                    "every nonce the lender used (the clock in microseconds).")


class MyOfferOut(BaseModel):
    posted: PostedOffer
    spent: bool = Field(description="The nonce is used by a loan or cancelled: no one can accept the offer now.")


class LenderOffersOut(BaseModel):
    """The signed-in lender's unexpired offers and what funds them, at one block."""

    lender: Address
    block_number: int
    block_timestamp: int
    balance: Uint256Out = Field(description="The lender's stablecoin balance.")
    allowance: Uint256Out = Field(description="What the lending contract may take from the lender (`allowance`): "
                                  "an offer is acceptable only while it covers the principal.")
    offers: list[MyOfferOut] = Field(description="Newest first.")


class AllowanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Uint256In = Field(description="The most the lending contract may take from the account, in the "
                              "stablecoin's smallest unit (replaces the previous allowance; 0 withdraws it).")


class BusinessTxOut(BaseModel):
    """A transaction the service sent from the account's address."""

    tx_hash: str
    block_number: int | None = Field(description="The block it landed in; null while still pending.")


def _sent(sent: Sent) -> BusinessTxOut:
    return BusinessTxOut(tx_hash=sent.tx_hash, block_number=sent.block_number)


@router.get("/me/offers", response_model=LenderOffersOut, summary="My loan offers on the board",
            responses=error_responses(*_READ_ERRORS))
def my_offers(user: UserDep, chain: ChainDep, offers: OffersDep) -> LenderOffersOut:
    """The account's unexpired offers on the board, newest first, each saying whether its nonce is
    spent (used by a loan or cancelled), with the account's stablecoin balance and allowance to
    the lending contract, read at one block."""
    mine = lender.my_offers(chain, offers, user.address)
    return LenderOffersOut(lender=user.address, block_number=mine.block_number,
                           block_timestamp=mine.block_timestamp, balance=mine.balance, allowance=mine.allowance,
                           offers=[MyOfferOut(posted=o.posted, spent=o.spent) for o in mine.offers])


@router.post("/me/offers", status_code=status.HTTP_201_CREATED, response_model=PostedOffer,
             summary="Offer a loan, signed by the service with my key",
             responses=error_responses(Unauthorized, Forbidden, InvalidRequest, OfferUnusable, Conflict,
                                       UpstreamUnavailable, NotDeployed, ServiceUnavailable))
def create_offer(body: OfferTermsIn, user: UserDep, users: UsersDep, chain: ChainDep, offers: OffersDep,
                 settings: SettingsDep) -> PostedOffer:
    """The service builds the `LoanOffer` with the account's address as lender, signs it with the
    account's key (EIP-712, PledgeLending's domain, as a wallet would) and posts it to the board
    with the checks of `POST /offers`: 422 for terms the contract never accepts (amounts, a lot or
    bottle that does not exist, both or neither of `repayment` and `yearly_rate_bps`), 409
    `offer_unusable` when the account does not hold the principal or has not approved it to the
    lending contract (`POST /me/lending-allowance`), or the offer has expired, 409 `conflict` at
    `AMPHORA_OFFER_MAX_OPEN_PER_LENDER` open offers or for a `nonce` another of the account's
    offers on the board uses. The same terms with the same `nonce` again return the offer as first
    posted (a retry is one offer)."""
    terms = lender.OfferTerms(**body.model_dump())
    return lender.create_offer(chain, offers, users, user, terms, max_open=settings.offer_max_open_per_lender)


@router.post("/me/offers/{nonce}/cancel", response_model=BusinessTxOut, summary="Cancel my offer on chain",
             responses=error_responses(*_SEND_ERRORS))
def cancel_offer(nonce: Annotated[Uint256In, Path(description="The offer's nonce.")], user: UserDep,
                 chain: ChainDep, business: BusinessDep) -> BusinessTxOut:
    return _sent(lender.cancel_offer(chain, business, user, nonce))


cancel_offer.__doc__ = """`cancel_offer(nonce)`: every offer of the account signed with this nonce can no
    longer be accepted (the board stops listing it). 409 `conflict` when the nonce is already used
    by a loan or cancelled.""" + _SEND_DOC


@router.post("/me/lending-allowance", response_model=BusinessTxOut,
             summary="Let the lending contract take my stablecoin for loans",
             responses=error_responses(*_SEND_ERRORS))
def set_lending_allowance(body: AllowanceIn, user: UserDep, chain: ChainDep, business: BusinessDep) -> BusinessTxOut:
    return _sent(lender.approve(chain, business, user, body.amount))


set_lending_allowance.__doc__ = """The stablecoin's `approve(lending contract, amount)`: an offer can be
    accepted only while the lender's allowance to the lending contract covers its principal, which
    the contract takes when a borrower accepts. Only ever to the lending contract.""" + _SEND_DOC


@router.post("/me/loans/{loan_id}/foreclose", response_model=BusinessTxOut,
             summary="Take the bottle of my loan not repaid in time",
             responses=error_responses(NotFound, *_SEND_ERRORS))
def foreclose(loan_id: Annotated[Uint256In, Path(description="Decimal loan id.")], user: UserDep, chain: ChainDep,
              business: BusinessDep) -> BusinessTxOut:
    return _sent(lender.foreclose(chain, business, user, loan_id))


foreclose.__doc__ = """`foreclose(loan_id)`: the certificate of a loan not repaid by the end of its
    grace period moves to the lender, unlocked. 404 for a loan that never existed (or a closed one
    whose bottle has had a newer loan), 403 for another lender's loan, 409 `conflict` for a loan
    that is not open or whose grace period has not ended (the detail says when it
    ends).""" + _SEND_DOC
