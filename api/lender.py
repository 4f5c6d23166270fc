"""The lender's side for a custodial account: offers signed in the service,
cancelled and foreclosed from the account's own address.

A lender with a wallet signs its ``LoanOffer`` itself and posts it to
``POST /offers``. A custodial lender has no wallet: :func:`create_offer` builds
the same ``LoanOffer`` with the account's address as ``lender`` (never one the
request names), signs it with the account's key (``UserStore.sign_typed_data``,
PledgeLending's EIP-712 domain) and posts it through the board's own checks
(:func:`api.lending.post_offer`). Cancelling (``cancel_offer(nonce)``),
approving the stablecoin to the lending contract and foreclosing
(``foreclose(loan_id)``) are calls the contracts accept only from the lender
itself: :class:`~api.business.BusinessSender` signs and sends them from the
account's address, which pays the gas.

What the contract would refuse for a reason a person understands (a nonce
already used, someone else's loan, a grace period not yet over) is refused
first, in words, with nothing sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from api import lending
from api.business import BusinessSender, Sent
from api.chain import LENDING, STABLECOIN, ChainService, contract_label, node_errors
from api.errors import Conflict, Forbidden, InvalidRequest, NotFound
from api.offers import OfferBook, StoredOffer
from api.schemas import CollateralSnapshot, LoanOfferIn, LoanState, OfferPost, PostedOffer
from api.users import User, UserStore

BPS = 10_000
YEAR = 365 * 24 * 3600
#: Highest yearly rate an offer may state, in basis points (1,000 %).
MAX_YEARLY_RATE_BPS = 100_000
#: Lot ids fit in the 224 bits above a token id's 32-bit serial.
MAX_LOT_ID = 2**224 - 1


def repayment_for_rate(principal: int, yearly_rate_bps: int, duration: int) -> int:
    """The repayment of ``principal`` lent for ``duration`` seconds at a simple yearly rate of
    ``yearly_rate_bps`` basis points, rounded up to the stablecoin's smallest unit (the lender
    never gets less than the rate)."""
    interest = -(-principal * yearly_rate_bps * duration // (BPS * YEAR))
    return principal + interest


@dataclass(frozen=True)
class OfferTerms:
    """What a lender chooses; the service fills in ``lender``, ``currency`` and (unless given) ``nonce``."""

    lot_id: int
    token_id: int
    principal: int
    repayment: int | None
    yearly_rate_bps: int | None
    duration: int
    grace_period: int
    expiry: int
    max_ltv_bps: int = 0
    nonce: int | None = None


def next_nonce(chain: ChainService, book: OfferBook, lender: str) -> int:
    """A nonce for the lender's next offer: the clock in microseconds, so nonces rise
    (``cancel_offers_below`` keeps its meaning) and a used one is never picked again; above
    the lender's nonce floor and every nonce of its offers on the board."""
    contract = chain.lending_contract("nonce_floor")
    with node_errors(contract_label(LENDING)):
        floor = int(contract.functions.nonce_floor(lender).call())
    board = [int(stored.offer["nonce"]) + 1 for stored in book.for_lender(lender, 0)]
    return max([time.time_ns() // 1000, floor, *board])


def offer_of(chain: ChainService, book: OfferBook, user: User, terms: OfferTerms) -> LoanOfferIn:
    """The ``LoanOffer`` of ``terms`` with the account as lender: :class:`InvalidRequest`
    (in words) for terms the contract or the board would never accept."""
    if terms.lot_id == 0 or terms.lot_id > MAX_LOT_ID:
        raise InvalidRequest("lot_id: not a lot number")
    if terms.token_id != 0 and terms.token_id >> 32 != terms.lot_id:
        raise InvalidRequest("token_id: not a bottle of this lot (0 offers against any bottle of the lot)")
    if (terms.repayment is None) == (terms.yearly_rate_bps is None):
        raise InvalidRequest("repayment, yearly_rate_bps: give exactly one of them")
    if terms.yearly_rate_bps is not None and not 0 <= terms.yearly_rate_bps <= MAX_YEARLY_RATE_BPS:
        raise InvalidRequest(f"yearly_rate_bps: from 0 to {MAX_YEARLY_RATE_BPS} (1,000 % a year)")
    if terms.max_ltv_bps > BPS:
        raise InvalidRequest("max_ltv_bps: at most 10000 (the whole appraised value)")
    repayment = terms.repayment if terms.repayment is not None else repayment_for_rate(
        terms.principal, terms.yearly_rate_bps or 0, terms.duration)
    # The bottle (or the lot's first bottle) must exist: an offer against nothing helps nobody.
    bottle = terms.token_id or (terms.lot_id << 32 | 1)
    try:
        lending.collateral_snapshot(chain, bottle)
    except NotFound as err:
        what = "token_id: no such bottle" if terms.token_id else "lot_id: no such lot"
        raise InvalidRequest(what) from err
    nonce = terms.nonce if terms.nonce is not None else next_nonce(chain, book, user.address)
    return LoanOfferIn(lender=user.address, currency=lending.stablecoin_address(chain), lot_id=terms.lot_id,
                       token_id=terms.token_id, principal=terms.principal, repayment=repayment,
                       duration=terms.duration, grace_period=terms.grace_period, max_ltv_bps=terms.max_ltv_bps,
                       expiry=terms.expiry, nonce=nonce)


def create_offer(chain: ChainService, book: OfferBook, users: UserStore, user: User, terms: OfferTerms,
                 max_open: int | None = None) -> PostedOffer:
    """Sign the account's offer of ``terms`` with its key and post it to the board (its checks:
    amounts, expiry, the nonce unused, the stablecoin held and approved)."""
    offer = offer_of(chain, book, user, terms)
    mine = [stored for stored in book.for_lender(user.address, 0) if int(stored.offer["nonce"]) == offer.nonce]
    if mine and mine[0].offer != offer.model_dump():
        raise Conflict(f"nonce {offer.nonce}: another of your offers on the board already uses it")
    signature = users.sign_typed_data(user, lending.lending_typed_data(chain, "LoanOffer", offer.message()))
    post = OfferPost.model_validate({"offer": offer, "signature": "0x" + signature.hex()})
    return lending.post_offer(chain, book, post, max_open=max_open)


@dataclass(frozen=True)
class MyOffer:
    posted: PostedOffer
    #: Used by a loan, cancelled, or below the lender's nonce floor: no borrower can accept it.
    spent: bool


@dataclass(frozen=True)
class MyOffers:
    block_number: int
    block_timestamp: int
    #: The lender's stablecoin balance and its allowance to the lending contract.
    balance: int
    allowance: int
    offers: list[MyOffer]


def my_offers(chain: ChainService, book: OfferBook, lender: str) -> MyOffers:
    """The lender's unexpired offers on the board, each with whether its nonce is spent, and its
    funds: one batch of node calls at the latest block."""
    block = chain.latest_block_ref()
    stored: list[StoredOffer] = book.for_lender(lender, block.timestamp + 1)
    fields = [{"lender": lender, "nonce": 0}, *[s.offer for s in stored]]  # the funds even without offers
    checks = lending.lender_checks(chain, fields, block.number)
    balance, allowance = checks.funds[lender]
    offers = [MyOffer(lending._posted(s), checks.nonce_used[(lender, int(s.offer["nonce"]))]) for s in stored]
    return MyOffers(block.number, block.timestamp, balance, allowance, offers)


def cancel_offer(chain: ChainService, sender: BusinessSender, user: User, nonce: int) -> Sent:
    """``cancel_offer(nonce)`` from the account's address; :class:`Conflict` when that nonce can
    no longer be accepted anyway (used by a loan, already cancelled)."""
    contract = chain.lending_contract("cancel_offer")
    with node_errors(contract_label(LENDING)):
        spent = bool(contract.functions.nonce_used(user.address, nonce).call(block_identifier="pending"))
    if spent:
        raise Conflict(f"nonce {nonce}: already used by a loan or cancelled; there is nothing to cancel")
    return sender.send(user, contract.functions.cancel_offer(nonce), contract_label(LENDING))


def approve(chain: ChainService, sender: BusinessSender, user: User, amount: int) -> Sent:
    """``approve(lending contract, amount)`` on the stablecoin from the account's address: the
    most the lending contract may take from it for loans its offers make. Only ever to the
    lending contract."""
    token = chain.require_contract(STABLECOIN)
    spender = chain.lending_contract("accept_offer").address
    return sender.send(user, token.functions.approve(spender, amount), contract_label(STABLECOIN))


def foreclosable(snapshot: CollateralSnapshot) -> bool:
    """Whether the snapshot's loan is open and its grace period over (the lender may take the bottle
    from the next block on)."""
    loan = snapshot.loan
    return loan is not None and loan.state == LoanState.open and snapshot.block_timestamp >= loan.grace_ends_at


def foreclose(chain: ChainService, sender: BusinessSender, user: User, loan_id: int) -> Sent:
    """``foreclose(loan_id)`` from the account's address. :class:`NotFound` for a loan that never
    existed, :class:`Forbidden` for another lender's loan, :class:`Conflict` for a loan that is not
    open or whose grace period has not ended (in words, with the time left)."""
    snapshot = lending.loan_snapshot(chain, loan_id)
    loan = snapshot.loan
    assert loan is not None
    if loan.lender.lower() != user.address.lower():
        raise Forbidden(f"loan {loan_id} is {loan.lender}'s, not yours: only its lender forecloses")
    if loan.state != LoanState.open:
        raise Conflict(f"loan {loan_id} is {loan.state.value}: only an open loan can be foreclosed")
    if not foreclosable(snapshot):
        raise Conflict(f"loan {loan_id}: the grace period ends at {loan.grace_ends_at} (unix time), in "
                       f"{loan.grace_ends_at - snapshot.block_timestamp} s; the borrower may still repay until then")
    contract = chain.lending_contract("foreclose")
    return sender.send(user, contract.functions.foreclose(loan_id), contract_label(LENDING))

