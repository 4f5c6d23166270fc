"""PledgeLending: stablecoin loans against certificates, on anvil with the
chain's clock moved forward.

The whole life of a loan (accept directly or through the relayer, repay on
time, repay in the grace period, default and foreclose), every rejection of an
offer, extensions signed by both parties, appraisals, the credit record, the
lender's collateral view, shutdown, and attacks: replayed, forged, malleable
and front-run signatures, privilege escalation, a stablecoin that re-enters
the lending contract on every transfer, and contract lenders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ape
import pytest
from eip3009_behaviour import RECEIVE_AUTH, authorization_signer
from erc721_behaviour import TRANSFERS, ZERO_ADDRESS, emitted
from eth_utils import keccak

from amphora import eip712
from amphora.deploy import grant_appraiser

ACTIVE, GIFT_PENDING, PLEDGED, REDEMPTION_REQUESTED, REDEEMED, FLAGGED = range(6)
LOAN_NONE, LOAN_OPEN, LOAN_REPAID, LOAN_FORECLOSED = range(4)
USD = 10**6
PRINCIPAL = 1_000 * USD
REPAYMENT = 1_050 * USD
DAY = 24 * 3600
DURATION = 30 * DAY
GRACE = 7 * DAY
FAR = 2**40
MAX_AGE = 30 * DAY  # the deploy's default max appraisal age
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PAUSED = "pausable: contract is paused"
NOT_OWNER = "ownable: caller is not the owner"
ORDER_HASH = keccak(text="delivery order")
REASON_HASH = keccak(text="police report")


# ------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture(scope="session")
def stable(project, manifest):
    return project.ReferenceStablecoin.at(manifest.address("Stablecoin"))


@pytest.fixture(scope="session")
def funded(manifest, lending, stable, admin, minter, lender, borrower, appraiser):
    """The lender and the borrower hold stablecoin and let the lending
    contract spend it; ``appraiser`` may post appraisals."""
    stable.configureMinter(minter, 10**15, sender=admin)
    for account in (lender, borrower):
        stable.mint(account, 1_000_000 * USD, sender=minter)
        stable.approve(lending, 2**256 - 1, sender=account)
    grant_appraiser(manifest, admin, appraiser.address, "Test Appraiser")
    return True


@pytest.fixture
def bottles(funded, create_lot, cert, winery, borrower):
    """A lot of 5; bottles 1 to 3 sold to ``borrower``."""
    lot = create_lot(5)
    for s in (1, 2, 3):
        cert.transferFrom(winery, borrower, lot.token(s), sender=winery)
    return lot


@dataclass
class Offer:
    message: dict
    signature: bytes

    @property
    def args(self) -> tuple:
        return eip712.loan_offer_args(self.message)


@pytest.fixture
def make_offer(lending, stable, lender, chain, chain_id) -> Callable[..., Offer]:
    """Builder: an offer by ``lender`` (or ``signer``) with these terms."""

    def _make(lot_id: int, token_id: int = 0, *, principal=PRINCIPAL, repayment=REPAYMENT, duration=DURATION,
              grace=GRACE, max_ltv_bps=0, expiry=None, nonce=0, by=None, signer=None, currency=None,
              contract=None) -> Offer:
        who = by or lender
        message = eip712.loan_offer_message(
            who if isinstance(who, str) else who.address, currency or stable.address, lot_id, token_id, principal,
            repayment, duration, grace, max_ltv_bps, expiry if expiry is not None else chain.pending_timestamp + DAY,
            nonce)
        key = (signer or who).private_key
        return Offer(message, eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain_id,
                                                                   contract or lending.address), key))

    return _make


@pytest.fixture
def sign_lending(lending, chain_id) -> Callable[..., bytes]:
    def _sign(signer, primary_type: str, message: dict) -> bytes:
        return eip712.sign(eip712.lending_typed_data(primary_type, message, chain_id, lending.address),
                           signer.private_key)

    return _sign


@pytest.fixture
def loan(lending, bottles, make_offer, borrower):
    """A loan on bottle 1: (loan id, token id, receipt)."""
    token_id = bottles.token(1)
    offer = make_offer(bottles.lot_id, token_id)
    receipt = lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower)
    return receipt.return_value, token_id, receipt


def credit(lending, account) -> tuple:
    r = lending.credit_record(account)
    return (r.loans_taken, r.repaid_on_time, r.repaid_late, r.defaulted, r.open_loans, r.principal_borrowed,
            r.principal_repaid)


def balances(stable, *accounts) -> list[int]:
    return [stable.balanceOf(a) for a in accounts]


# ------------------------------------------------ wiring and typehashes


def test_deploy__certificate_trusts_the_lending_contract(cert, lending, registry, stable):
    assert cert.lending() == lending.address
    assert (lending.CERTIFICATE(), lending.REGISTRY(), lending.STABLECOIN()) == (
        cert.address, registry.address, stable.address)
    assert lending.max_appraisal_age() == MAX_AGE


# ------------------------------------------------ the lifecycle


def test_accept__direct__pledges_and_pays_the_principal_in_one_transaction(
    lending, cert, stable, bottles, make_offer, lender, borrower, chain
):
    token_id = bottles.token(1)
    offer = make_offer(bottles.lot_id, token_id)
    before = balances(stable, lender, borrower, lending)

    receipt = lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower)

    loan_id = receipt.return_value
    assert loan_id == (1 << 96) | token_id
    assert balances(stable, lender, borrower, lending) == [before[0] - PRINCIPAL, before[1] + PRINCIPAL, 0]
    assert cert.state_of(token_id) == PLEDGED
    assert cert.ownerOf(token_id) == borrower
    loan = lending.loan(loan_id)
    started = chain.blocks.head.timestamp
    assert (loan.state, loan.lender, loan.borrower, loan.principal, loan.repayment) == (
        LOAN_OPEN, lender.address, borrower.address, PRINCIPAL, REPAYMENT)
    assert (loan.started_at, loan.due_at, loan.grace_ends_at) == (started, started + DURATION,
                                                                  started + DURATION + GRACE)
    assert lending.loan_id_of(token_id) == loan_id
    assert lending.nonce_used(lender, 0) is True
    assert credit(lending, borrower) == (1, 0, 0, 0, 1, PRINCIPAL, 0)
    offer_hash = lending.offer_hash(offer.args)
    assert offer_hash == eip712.digest(eip712.lending_typed_data("LoanOffer", offer.message, chain.chain_id,
                                                                 lending.address))
    assert emitted(receipt, lending.LoanStarted, lending) == [
        (loan_id, lender.address, borrower.address, token_id, PRINCIPAL, REPAYMENT, started + DURATION, GRACE,
         offer_hash)]
    assert emitted(receipt, cert.CertificatePledged, cert) == [(token_id, borrower.address)]
    assert emitted(receipt, stable.Transfer, stable) == [(lender.address, borrower.address, PRINCIPAL)]


def test_accept__relayed_with_signed_acceptance__pays_the_borrower_not_the_relayer(
    lending, cert, stable, bottles, make_offer, sign_lending, borrower, relayer
):
    token_id = bottles.token(2)
    offer = make_offer(bottles.lot_id, token_id)
    offer_hash = lending.offer_hash(offer.args)
    acceptance = sign_lending(borrower, "AcceptOffer",
                              eip712.accept_offer_message(offer_hash, token_id, borrower.address, FAR))
    before = balances(stable, borrower, relayer)

    receipt = lending.accept_offer_with_signature(offer.args, offer.signature, token_id, borrower, FAR, acceptance,
                                                  sender=relayer)

    assert balances(stable, borrower, relayer) == [before[0] + PRINCIPAL, before[1]]
    assert cert.state_of(token_id) == PLEDGED
    assert lending.loan(receipt.return_value).borrower == borrower


def test_accept__lot_wide_offer__takes_any_bottle_of_the_lot_once(lending, cert, bottles, make_offer, borrower):
    offer = make_offer(bottles.lot_id, 0)

    lending.accept_offer(offer.args, offer.signature, bottles.token(3), sender=borrower)

    assert cert.state_of(bottles.token(3)) == PLEDGED
    with ape.reverts("lending: offer used or cancelled"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(2), sender=borrower)


def test_repay__on_time__pays_the_lender_and_unlocks_for_the_borrower(
    lending, cert, stable, loan, lender, borrower, chain
):
    loan_id, token_id, _ = loan
    chain.pending_timestamp = lending.loan(loan_id).due_at  # the due date itself is on time
    before = balances(stable, lender, borrower, lending)

    receipt = lending.repay(loan_id, sender=borrower)

    assert balances(stable, lender, borrower, lending) == [before[0] + REPAYMENT, before[1] - REPAYMENT, 0]
    assert cert.state_of(token_id) == ACTIVE
    assert cert.ownerOf(token_id) == borrower
    assert lending.loan(loan_id).state == LOAN_REPAID
    assert credit(lending, borrower) == (1, 1, 0, 0, 0, PRINCIPAL, PRINCIPAL)
    assert emitted(receipt, lending.LoanRepaid, lending) == [
        (loan_id, borrower.address, borrower.address, REPAYMENT, False)]
    assert emitted(receipt, cert.CertificateReleased, cert) == [(token_id, borrower.address, borrower.address)]
    cert.transferFrom(borrower, lender, token_id, sender=borrower)  # unlocked: the borrower's to move


def test_repay__in_grace__counts_late(lending, cert, loan, borrower, chain):
    loan_id, token_id, _ = loan
    record = lending.loan(loan_id)
    chain.pending_timestamp = record.due_at + 1

    receipt = lending.repay(loan_id, sender=borrower)

    assert credit(lending, borrower) == (1, 0, 1, 0, 0, PRINCIPAL, PRINCIPAL)
    assert emitted(receipt, lending.LoanRepaid, lending)[0][-1]  # late
    assert cert.state_of(token_id) == ACTIVE


def test_repay__at_the_last_second_of_grace__succeeds_late(lending, loan, borrower, chain):
    loan_id = loan[0]
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at
    lending.repay(loan_id, sender=borrower)
    assert credit(lending, borrower)[2] == 1


def test_repay__after_grace__reverts(lending, cert, loan, borrower, chain):
    loan_id, token_id, _ = loan
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + 1
    with ape.reverts("lending: loan is past its grace period"):
        lending.repay(loan_id, sender=borrower)
    assert cert.state_of(token_id) == PLEDGED


def test_repay__by_a_stranger__allowed_and_the_certificate_goes_to_the_borrower(
    lending, cert, stable, minter, loan, lender, borrower, attacker
):
    """Who may repay: anyone. The payer's money goes to the lender; the
    certificate and the credit record stay the borrower's."""
    loan_id, token_id, _ = loan
    stable.mint(attacker, REPAYMENT, sender=minter)
    stable.approve(lending, REPAYMENT, sender=attacker)
    lender_before, borrower_before = balances(stable, lender, borrower)

    receipt = lending.repay(loan_id, sender=attacker)

    assert balances(stable, lender, borrower, attacker) == [lender_before + REPAYMENT, borrower_before, 0]
    assert cert.ownerOf(token_id) == borrower
    assert cert.state_of(token_id) == ACTIVE
    assert credit(lending, borrower)[1] == 1 and credit(lending, attacker)[0] == 0
    assert emitted(receipt, lending.LoanRepaid, lending)[0][:3] == (loan_id, borrower.address, attacker.address)


def test_repay__twice__reverts(lending, loan, borrower):
    lending.repay(loan[0], sender=borrower)
    with ape.reverts("lending: loan is not open"):
        lending.repay(loan[0], sender=borrower)


def test_repay__without_allowance__reverts_and_keeps_the_pledge(lending, cert, stable, loan, borrower):
    stable.approve(lending, 0, sender=borrower)
    with ape.reverts():
        lending.repay(loan[0], sender=borrower)
    assert cert.state_of(loan[1]) == PLEDGED
    assert lending.loan(loan[0]).state == LOAN_OPEN


# ------------------------------------------------ repayment with an EIP-3009 authorization (no gas, no allowance)


@pytest.fixture
def authorize(stable, lending, chain_id):
    """Builder: ``payer``'s ReceiveWithAuthorization of ``value`` to the lending
    contract, by default with the nonce bound to ``loan_id``."""
    sign = authorization_signer(stable, chain_id)

    def _authorize(payer, loan_id: int, value: int = REPAYMENT, **kwargs):
        kwargs.setdefault("nonce", bytes(lending.repayment_nonce(loan_id)))
        kwargs.setdefault("primary", RECEIVE_AUTH)
        return sign(payer, payer, lending, value, **kwargs)

    return _authorize


def repay_by_authorization(lending, loan_id, auth, sender):
    return lending.repay_with_authorization(loan_id, auth.sender, auth.valid_after, auth.valid_before,
                                            auth.v, auth.r, auth.s, sender=sender)


def test_repay_with_authorization__relayed__pays_the_lender_without_allowance_or_gas(
    lending, cert, stable, loan, lender, borrower, relayer, authorize
):
    loan_id, token_id, _ = loan
    stable.approve(lending, 0, sender=borrower)  # no allowance needed
    before = balances(stable, lender, borrower, relayer)
    borrower_eth = borrower.balance

    receipt = repay_by_authorization(lending, loan_id, authorize(borrower, loan_id), relayer)

    assert balances(stable, lender, borrower, relayer, lending) == [
        before[0] + REPAYMENT, before[1] - REPAYMENT, before[2], 0]
    assert borrower.balance == borrower_eth, "the borrower paid no gas"
    assert cert.state_of(token_id) == ACTIVE and cert.ownerOf(token_id) == borrower
    assert credit(lending, borrower) == (1, 1, 0, 0, 0, PRINCIPAL, PRINCIPAL)
    assert emitted(receipt, lending.LoanRepaid, lending) == [
        (loan_id, borrower.address, borrower.address, REPAYMENT, False)]
    assert stable.authorizationState(borrower, lending.repayment_nonce(loan_id))


def test_repay_with_authorization__replayed__reverts(lending, loan, borrower, relayer, authorize):
    auth = authorize(borrower, loan[0])
    repay_by_authorization(lending, loan[0], auth, relayer)
    with ape.reverts("lending: loan is not open"):
        repay_by_authorization(lending, loan[0], auth, relayer)


def test_repay_with_authorization__nonce_not_bound_to_the_loan__reverts(
    lending, cert, loan, borrower, relayer, authorize
):
    with ape.reverts():
        repay_by_authorization(lending, loan[0], authorize(borrower, loan[0], nonce=b"\x07" * 32), relayer)
    assert cert.state_of(loan[1]) == PLEDGED


def test_repay_with_authorization__for_another_loan__reverts(
    lending, cert, bottles, make_offer, loan, borrower, relayer, authorize
):
    """Two loans with the same repayment: an authorization for one cannot repay the other."""
    other_token = bottles.token(2)
    offer = make_offer(bottles.lot_id, other_token, nonce=1)
    other_loan = lending.accept_offer(offer.args, offer.signature, other_token, sender=borrower).return_value
    with ape.reverts():
        repay_by_authorization(lending, other_loan, authorize(borrower, loan[0]), relayer)
    assert cert.state_of(other_token) == PLEDGED
    assert lending.loan(other_loan).state == LOAN_OPEN


def test_repay_with_authorization__value_other_than_the_repayment__reverts(
    lending, cert, loan, borrower, relayer, authorize
):
    with ape.reverts():
        repay_by_authorization(lending, loan[0], authorize(borrower, loan[0], value=REPAYMENT - 1), relayer)
    assert cert.state_of(loan[1]) == PLEDGED


def test_repay_with_authorization__signed_by_someone_else__reverts(
    lending, cert, loan, borrower, attacker, relayer, stable, chain_id
):
    sign = authorization_signer(stable, chain_id)
    forged = sign(attacker, borrower, lending, REPAYMENT, primary=RECEIVE_AUTH,
                  nonce=bytes(lending.repayment_nonce(loan[0])))
    with ape.reverts():
        repay_by_authorization(lending, loan[0], forged, relayer)
    assert cert.state_of(loan[1]) == PLEDGED


def test_repay_with_authorization__front_runner_cannot_spend_it_elsewhere(
    lending, stable, loan, lender, borrower, attacker, relayer, authorize
):
    """The authorization is a ReceiveWithAuthorization to the lending contract:
    only the lending contract can submit it, so a front-runner cannot turn it
    into a plain transfer that leaves the loan open."""
    auth = authorize(borrower, loan[0])
    with ape.reverts():
        stable.receiveWithAuthorization(*auth.args, sender=attacker)
    # As a TransferWithAuthorization the same fields are another signature: it does not verify.
    with ape.reverts():
        stable.transferWithAuthorization(*auth.args, sender=attacker)
    repay_by_authorization(lending, loan[0], auth, relayer)
    assert lending.loan(loan[0]).state == LOAN_REPAID


def test_repay_with_authorization__after_grace__reverts_and_the_nonce_stays_unused(
    lending, stable, loan, borrower, relayer, authorize, chain
):
    chain.pending_timestamp = lending.loan(loan[0]).grace_ends_at + 1
    with ape.reverts("lending: loan is past its grace period"):
        repay_by_authorization(lending, loan[0], authorize(borrower, loan[0]), relayer)
    assert not stable.authorizationState(borrower, lending.repayment_nonce(loan[0]))


def test_repayment_nonce__differs_per_loan_and_matches_its_definition(lending, loan):
    from eth_abi import encode

    assert bytes(lending.repayment_nonce(loan[0])) == keccak(encode(["address", "uint256"],
                                                                     [lending.address, loan[0]]))
    assert lending.repayment_nonce(loan[0]) != lending.repayment_nonce(loan[0] + 1)


def test_foreclose__after_grace__moves_the_certificate_to_the_lender_unlocked(
    lending, cert, stable, loan, lender, borrower, recipient, chain
):
    loan_id, token_id, _ = loan
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + 1
    before = balances(stable, lender, borrower)

    receipt = lending.foreclose(loan_id, sender=lender)

    assert cert.ownerOf(token_id) == lender
    assert cert.state_of(token_id) == ACTIVE
    assert balances(stable, lender, borrower) == before
    assert lending.loan(loan_id).state == LOAN_FORECLOSED
    assert lending.loan(loan_id).borrower == borrower
    assert credit(lending, borrower) == (1, 0, 0, 1, 0, PRINCIPAL, 0)
    assert emitted(receipt, lending.LoanForeclosed, lending) == [(loan_id, lender.address, borrower.address)]
    assert emitted(receipt, cert.Transfer, cert) == [(borrower.address, lender.address, token_id)]
    cert.transferFrom(lender, recipient, token_id, sender=lender)


def test_foreclose__one_second_early__reverts(lending, cert, loan, lender, chain):
    loan_id, token_id, _ = loan
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at
    with ape.reverts("lending: grace period has not ended"):
        lending.foreclose(loan_id, sender=lender)
    assert cert.ownerOf(token_id) != lender


@pytest.mark.parametrize("caller", ["borrower", "attacker", "admin"])
def test_foreclose__by_anyone_but_the_lender__reverts(lending, request, loan, chain, caller):
    chain.pending_timestamp = lending.loan(loan[0]).grace_ends_at + 1
    with ape.reverts("lending: caller is not the lender"):
        lending.foreclose(loan[0], sender=request.getfixturevalue(caller))


def test_foreclose__repaid_loan__reverts(lending, loan, lender, borrower, chain):
    lending.repay(loan[0], sender=borrower)
    chain.pending_timestamp = lending.loan(loan[0]).grace_ends_at + 1
    with ape.reverts("lending: loan is not open"):
        lending.foreclose(loan[0], sender=lender)


def test_reborrow__same_token__new_loan_id_and_the_old_one_is_gone(lending, loan, make_offer, borrower):
    loan_id, token_id, _ = loan
    lending.repay(loan_id, sender=borrower)
    offer = make_offer(token_id >> 32, token_id, nonce=1)
    second = lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower).return_value
    assert second == (2 << 96) | token_id
    assert lending.loan_id_of(token_id) == second
    with ape.reverts("lending: unknown loan"):
        lending.loan(loan_id)
    with ape.reverts("lending: loan is not open"):
        lending.repay(loan_id, sender=borrower)
    assert credit(lending, borrower)[:5] == (2, 1, 0, 0, 1)


# ------------------------------------------------ pledged certificates cannot move


@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
def test_transfer__pledged_through_lending__reverts(cert, loan, borrower, recipient, transfer_name):
    with ape.reverts("certificate: token is pledged"):
        TRANSFERS[transfer_name](cert, borrower, recipient, loan[1], borrower)


def test_gift_and_redeem__pledged_through_lending__revert(cert, loan, borrower):
    with ape.reverts("certificate: token is pledged"):
        cert.create_gift(loan[1], "0x" + "77" * 20, FAR, sender=borrower)
    with ape.reverts("certificate: token is pledged"):
        cert.request_redemption(loan[1], ORDER_HASH, sender=borrower)


def test_pledge_hooks__called_directly_by_anyone_but_lending__revert(cert, loan, borrower, attacker):
    with ape.reverts("certificate: caller is not the lending contract"):
        cert.release(loan[1], attacker, sender=attacker)
    with ape.reverts("certificate: caller is not the lending contract"):
        cert.pledge(loan[1] + 1, borrower, sender=borrower)


# ------------------------------------------------ rejections of an offer


def test_accept__expired_offer__reverts(lending, bottles, make_offer, borrower, chain):
    offer = make_offer(bottles.lot_id, bottles.token(1), expiry=chain.pending_timestamp + 100)
    chain.pending_timestamp += 101
    with ape.reverts("lending: offer expired"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__at_expiry__succeeds(lending, bottles, make_offer, borrower, chain):
    expiry = chain.pending_timestamp + 100
    offer = make_offer(bottles.lot_id, bottles.token(1), expiry=expiry)
    chain.pending_timestamp = expiry
    lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__cancelled_nonce__reverts(lending, bottles, make_offer, lender, borrower):
    offer = make_offer(bottles.lot_id, bottles.token(1), nonce=7)
    receipt = lending.cancel_offer(7, sender=lender)
    assert emitted(receipt, lending.OfferCancelled, lending) == [(lender.address, 7)]
    assert lending.nonce_used(lender, 7) and not lending.nonce_used(lender, 6)
    with ape.reverts("lending: offer used or cancelled"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__nonce_below_the_cancelled_floor__reverts(lending, bottles, make_offer, lender, borrower):
    old, kept = make_offer(bottles.lot_id, 0, nonce=99), make_offer(bottles.lot_id, 0, nonce=100)
    receipt = lending.cancel_offers_below(100, sender=lender)
    assert emitted(receipt, lending.OffersCancelledBelow, lending) == [(lender.address, 100)]
    with ape.reverts("lending: offer cancelled"):
        lending.accept_offer(old.args, old.signature, bottles.token(1), sender=borrower)
    lending.accept_offer(kept.args, kept.signature, bottles.token(1), sender=borrower)
    with ape.reverts("lending: nonce floor can only rise"):
        lending.cancel_offers_below(100, sender=lender)


def test_accept__reused_offer__reverts(lending, loan, make_offer, bottles, borrower):
    loan_id, token_id, _ = loan
    lending.repay(loan_id, sender=borrower)
    offer = make_offer(bottles.lot_id, token_id)  # the same terms and nonce as `loan`'s offer
    with ape.reverts("lending: offer used or cancelled"):
        lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower)


@pytest.mark.parametrize("case", ["other bottle", "other lot", "lot-wide offer, bottle of another lot"])
def test_accept__wrong_collateral__reverts(lending, create_lot, cert, winery, bottles, make_offer, borrower, case):
    other = create_lot(2)
    cert.transferFrom(winery, borrower, other.token(1), sender=winery)
    offer, token_id = {
        "other bottle": (make_offer(bottles.lot_id, bottles.token(1)), bottles.token(2)),
        "other lot": (make_offer(bottles.lot_id, bottles.token(1)), other.token(1)),
        "lot-wide offer, bottle of another lot": (make_offer(bottles.lot_id, 0), other.token(1)),
    }[case]
    with ape.reverts("lending: token is not the offer's collateral"):
        lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower)


def test_accept__someone_elses_certificate__reverts(lending, bottles, make_offer, cert, attacker):
    offer = make_offer(bottles.lot_id, bottles.token(1))
    with ape.reverts("certificate: borrower is not the holder"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=attacker)
    assert cert.state_of(bottles.token(1)) == ACTIVE


@pytest.mark.parametrize("state", ["flagged", "redemption requested", "gift pending", "pledged",
                                   "custodian revoked", "redeemed"])
def test_accept__collateral_not_in_good_standing__reverts(
    lending, cert, admin, custodian, bottles, make_offer, borrower, state
):
    token_id = bottles.token(1)
    expected = f"certificate: token is {state}"
    if state == "flagged":
        cert.flag(token_id, REASON_HASH, sender=borrower)
    elif state == "redemption requested":
        cert.request_redemption(token_id, ORDER_HASH, sender=borrower)
    elif state == "gift pending":
        cert.create_gift(token_id, "0x" + "77" * 20, FAR, sender=borrower)
    elif state == "pledged":
        first = make_offer(bottles.lot_id, token_id, nonce=1)
        lending.accept_offer(first.args, first.signature, token_id, sender=borrower)
    elif state == "custodian revoked":
        cert.revoke_custodian(custodian, sender=admin)
        expected = "certificate: custodian is not registered"
    else:
        cert.request_redemption(token_id, ORDER_HASH, sender=borrower)
        cert.confirm_redemption(token_id, sender=custodian)
        expected = "certificate: token does not exist"
    offer = make_offer(bottles.lot_id, token_id)
    with ape.reverts(expected):
        lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower)


def test_accept__ltv_offer_without_appraisal__reverts(lending, bottles, make_offer, borrower):
    offer = make_offer(bottles.lot_id, 0, max_ltv_bps=5_000)
    with ape.reverts("lending: lot has no appraisal"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__stale_appraisal__reverts(lending, bottles, make_offer, appraiser, borrower, chain):
    at = chain.pending_timestamp
    lending.post_appraisal(bottles.lot_id, 4_000 * USD, at, sender=appraiser)
    offer = make_offer(bottles.lot_id, 0, max_ltv_bps=5_000, expiry=FAR)
    chain.pending_timestamp = at + MAX_AGE + 1
    with ape.reverts("lending: appraisal is stale"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)
    assert lending.appraisal(bottles.lot_id).stale is True


def test_accept__appraisal_exactly_max_age__succeeds(lending, bottles, make_offer, appraiser, borrower, chain):
    at = chain.pending_timestamp
    lending.post_appraisal(bottles.lot_id, 4_000 * USD, at, sender=appraiser)
    offer = make_offer(bottles.lot_id, 0, max_ltv_bps=5_000, expiry=FAR)
    chain.pending_timestamp = at + MAX_AGE
    lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__ltv_above_the_limit__reverts_and_at_the_limit_succeeds(
    lending, bottles, make_offer, appraiser, borrower, chain
):
    lending.post_appraisal(bottles.lot_id, 2_000 * USD, chain.pending_timestamp, sender=appraiser)
    above = make_offer(bottles.lot_id, 0, max_ltv_bps=4_999, nonce=1)  # 1,000 / 2,000 = 50.00 %
    with ape.reverts("lending: loan-to-value above the offer's limit"):
        lending.accept_offer(above.args, above.signature, bottles.token(1), sender=borrower)
    at_limit = make_offer(bottles.lot_id, 0, max_ltv_bps=5_000, nonce=2)
    lending.accept_offer(at_limit.args, at_limit.signature, bottles.token(1), sender=borrower)


def test_accept__offer_in_another_currency__reverts(lending, bottles, make_offer, borrower, cert):
    offer = make_offer(bottles.lot_id, 0, currency=cert.address)
    with ape.reverts("lending: offer is in another currency"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


@pytest.mark.parametrize("terms, reason", [
    ({"principal": 0, "repayment": 0}, "lending: amounts out of range"),
    ({"repayment": PRINCIPAL - 1}, "lending: amounts out of range"),
    ({"duration": 0}, "lending: duration out of range"),
    ({"grace": 2**32}, "lending: grace period out of range"),
])
def test_accept__terms_out_of_range__reverts(lending, bottles, make_offer, borrower, terms, reason):
    offer = make_offer(bottles.lot_id, 0, **terms)
    with ape.reverts(reason):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__lender_lacks_funds_or_allowance__reverts_and_nothing_is_pledged(
    lending, cert, stable, bottles, make_offer, lender, borrower
):
    stable.approve(lending, PRINCIPAL - 1, sender=lender)
    offer = make_offer(bottles.lot_id, bottles.token(1))
    with ape.reverts():
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)
    assert cert.state_of(bottles.token(1)) == ACTIVE
    assert lending.nonce_used(lender, 0) is False


def test_accept__borrower_is_the_lender__reverts(lending, cert, bottles, make_offer, borrower):
    offer = make_offer(bottles.lot_id, 0, by=borrower)
    with ape.reverts("lending: borrower is the lender"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


# ------------------------------------------------ signatures: forgery, replay, malleability, front-running


def test_accept__offer_signed_by_someone_else__reverts(lending, bottles, make_offer, attacker, borrower):
    offer = make_offer(bottles.lot_id, 0, signer=attacker)
    with ape.reverts("lending: invalid lender signature"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__terms_changed_after_signing__reverts(lending, bottles, make_offer, borrower):
    offer = make_offer(bottles.lot_id, 0)
    args = list(offer.args)
    args[4] = PRINCIPAL * 2  # principal
    args[5] = REPAYMENT * 2
    with ape.reverts("lending: invalid lender signature"):
        lending.accept_offer(tuple(args), offer.signature, bottles.token(1), sender=borrower)


def test_accept__offer_signed_for_another_domain__reverts(lending, cert, bottles, make_offer, borrower):
    """An offer signed for another contract (here: the certificate's address)
    does not verify here: the domain binds the contract and chain."""
    offer = make_offer(bottles.lot_id, 0, contract=cert.address)
    with ape.reverts("lending: invalid lender signature"):
        lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower)


def test_accept__high_s_twin_of_the_lender_signature__reverts(lending, bottles, make_offer, borrower):
    offer = make_offer(bottles.lot_id, 0)
    r, s, v = offer.signature[:32], int.from_bytes(offer.signature[32:64], "big"), offer.signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("lending: invalid lender signature"):
        lending.accept_offer(offer.args, twin, bottles.token(1), sender=borrower)


@pytest.mark.parametrize("tamper", ["borrower", "token", "deadline"])
def test_accept_relayed__front_runner_changes_the_acceptance__reverts(
    lending, cert, bottles, make_offer, sign_lending, borrower, attacker, tamper
):
    offer = make_offer(bottles.lot_id, 0)
    offer_hash = lending.offer_hash(offer.args)
    token_id = bottles.token(1)
    acceptance = sign_lending(borrower, "AcceptOffer",
                              eip712.accept_offer_message(offer_hash, token_id, borrower.address, FAR))
    who, tid, deadline = borrower, token_id, FAR
    if tamper == "borrower":
        who = attacker
    elif tamper == "token":
        tid = bottles.token(2)
    else:
        deadline = FAR + 1
    with ape.reverts("lending: invalid borrower signature"):
        lending.accept_offer_with_signature(offer.args, offer.signature, tid, who, deadline, acceptance,
                                            sender=attacker)
    # Submitted as signed, by anyone, it pays the borrower.
    lending.accept_offer_with_signature(offer.args, offer.signature, token_id, borrower, FAR, acceptance,
                                        sender=attacker)
    assert cert.state_of(token_id) == PLEDGED
    with ape.reverts("lending: offer used or cancelled"):
        lending.accept_offer_with_signature(offer.args, offer.signature, token_id, borrower, FAR, acceptance,
                                            sender=attacker)


def test_accept_relayed__expired_acceptance__reverts(lending, bottles, make_offer, sign_lending, borrower, chain):
    offer = make_offer(bottles.lot_id, 0)
    deadline = chain.pending_timestamp + 10
    acceptance = sign_lending(borrower, "AcceptOffer", eip712.accept_offer_message(
        lending.offer_hash(offer.args), bottles.token(1), borrower.address, deadline))
    chain.pending_timestamp = deadline + 1
    with ape.reverts("lending: acceptance expired"):
        lending.accept_offer_with_signature(offer.args, offer.signature, bottles.token(1), borrower, deadline,
                                            acceptance, sender=borrower)


# ------------------------------------------------ extensions


def extension(sign_lending, lender, borrower, loan_id, due_at, repayment, deadline=FAR):
    message = eip712.loan_extension_message(loan_id, due_at, repayment, deadline)
    return sign_lending(lender, "LoanExtension", message), sign_lending(borrower, "LoanExtension", message)


def test_extend__both_signed__moves_the_due_date_and_repayment(
    lending, loan, sign_lending, lender, borrower, relayer, chain
):
    loan_id = loan[0]
    record = lending.loan(loan_id)
    new_due, new_repayment = record.due_at + 10 * DAY, REPAYMENT + 20 * USD
    sig_l, sig_b = extension(sign_lending, lender, borrower, loan_id, new_due, new_repayment)

    receipt = lending.extend_loan(loan_id, new_due, new_repayment, FAR, sig_l, sig_b, sender=relayer)

    after = lending.loan(loan_id)
    assert (after.due_at, after.repayment, after.grace_ends_at) == (new_due, new_repayment, new_due + GRACE)
    assert emitted(receipt, lending.LoanExtended, lending) == [(loan_id, new_due, new_repayment)]
    # Repaid after the old due date but by the new one: on time.
    chain.pending_timestamp = record.due_at + DAY
    lending.repay(loan_id, sender=borrower)
    assert credit(lending, borrower)[1:3] == (1, 0)
    with ape.reverts("lending: loan is not open"):
        lending.extend_loan(loan_id, new_due, new_repayment, FAR, sig_l, sig_b, sender=relayer)


@pytest.mark.parametrize("forged", ["lender", "borrower"])
def test_extend__one_party_did_not_sign__reverts(lending, loan, sign_lending, lender, borrower, attacker, forged):
    loan_id = loan[0]
    new_due = lending.loan(loan_id).due_at + DAY
    sig_l, sig_b = extension(sign_lending, attacker if forged == "lender" else lender,
                             attacker if forged == "borrower" else borrower, loan_id, new_due, REPAYMENT)
    with ape.reverts(f"lending: invalid {forged} signature"):
        lending.extend_loan(loan_id, new_due, REPAYMENT, FAR, sig_l, sig_b, sender=attacker)


def test_extend__replayed_or_older_after_newer__reverts(lending, loan, sign_lending, lender, borrower):
    loan_id = loan[0]
    due = lending.loan(loan_id).due_at
    first = extension(sign_lending, lender, borrower, loan_id, due + DAY, REPAYMENT)
    second = extension(sign_lending, lender, borrower, loan_id, due + 2 * DAY, REPAYMENT)
    lending.extend_loan(loan_id, due + 2 * DAY, REPAYMENT, FAR, *second, sender=borrower)
    with ape.reverts("lending: due date is not later"):
        lending.extend_loan(loan_id, due + 2 * DAY, REPAYMENT, FAR, *second, sender=borrower)
    with ape.reverts("lending: due date is not later"):
        lending.extend_loan(loan_id, due + DAY, REPAYMENT, FAR, *first, sender=borrower)


def test_extend__repayment_below_principal__reverts(lending, loan, sign_lending, lender, borrower):
    loan_id = loan[0]
    due = lending.loan(loan_id).due_at + DAY
    sigs = extension(sign_lending, lender, borrower, loan_id, due, PRINCIPAL - 1)
    with ape.reverts("lending: repayment out of range"):
        lending.extend_loan(loan_id, due, PRINCIPAL - 1, FAR, *sigs, sender=borrower)


# ------------------------------------------------ appraisals and privileges


def test_post_appraisal__by_appraiser__is_read_with_its_age(lending, bottles, appraiser, chain):
    at = chain.pending_timestamp - 100
    receipt = lending.post_appraisal(bottles.lot_id, 3_000 * USD, at, sender=appraiser)
    assert emitted(receipt, lending.AppraisalPosted, lending) == [
        (bottles.lot_id, appraiser.address, 3_000 * USD, at)]
    a = lending.appraisal(bottles.lot_id)
    assert (a.value_per_bottle, a.appraised_at, a.stale) == (3_000 * USD, at, False)
    assert a.age == chain.blocks.head.timestamp - at


@pytest.mark.parametrize("caller", ["admin", "lender", "attacker"])
def test_post_appraisal__by_non_appraiser__reverts(lending, request, bottles, chain, caller):
    with ape.reverts("lending: caller is not an appraiser"):
        lending.post_appraisal(bottles.lot_id, 1, chain.pending_timestamp, sender=request.getfixturevalue(caller))


def test_post_appraisal__future_older_or_unknown_lot__reverts(lending, bottles, appraiser, chain):
    now = chain.pending_timestamp
    with ape.reverts("lending: appraisal dated in the future"):
        lending.post_appraisal(bottles.lot_id, USD, now + 100, sender=appraiser)
    lending.post_appraisal(bottles.lot_id, USD, now - 10, sender=appraiser)
    with ape.reverts("lending: appraisal older than the lot's latest"):
        lending.post_appraisal(bottles.lot_id, USD, now - 10, sender=appraiser)
    with ape.reverts("lending: lot does not exist"):
        lending.post_appraisal(bottles.lot_id + 1_000, USD, now - 10, sender=appraiser)
    with ape.reverts("lending: value out of range"):
        lending.post_appraisal(bottles.lot_id, 0, now, sender=appraiser)


def test_set_appraiser__revoked__can_no_longer_post(lending, bottles, admin, appraiser, chain):
    receipt = lending.set_appraiser(appraiser, False, sender=admin)
    assert emitted(receipt, lending.AppraiserSet, lending) == [(appraiser.address, False)]
    with ape.reverts("lending: caller is not an appraiser"):
        lending.post_appraisal(bottles.lot_id, USD, chain.pending_timestamp, sender=appraiser)


@pytest.mark.parametrize("call", ["set_appraiser", "set_max_appraisal_age", "pause", "unpause"])
def test_admin_functions__by_non_admin__revert(lending, attacker, appraiser, call):
    calls = {
        "set_appraiser": lambda: lending.set_appraiser(attacker, True, sender=attacker),
        "set_max_appraisal_age": lambda: lending.set_max_appraisal_age(2**64, sender=attacker),
        "pause": lambda: lending.pause(sender=attacker),
        "unpause": lambda: lending.unpause(sender=attacker),
    }
    with ape.reverts(NOT_OWNER):
        calls[call]()
    assert not lending.is_appraiser(attacker)


# ------------------------------------------------ shutdown


def test_shutdown__stops_new_loans_but_repay_and_foreclose_work(
    lending, cert, loan, bottles, make_offer, sign_lending, admin, lender, borrower, chain
):
    second = make_offer(bottles.lot_id, bottles.token(2), nonce=1)
    lending.accept_offer(second.args, second.signature, bottles.token(2), sender=borrower)
    lending.pause(sender=admin)
    offer = make_offer(bottles.lot_id, bottles.token(3), nonce=2, expiry=FAR)
    with ape.reverts(PAUSED):
        lending.accept_offer(offer.args, offer.signature, bottles.token(3), sender=borrower)
    acceptance = sign_lending(borrower, "AcceptOffer", eip712.accept_offer_message(
        lending.offer_hash(offer.args), bottles.token(3), borrower.address, FAR))
    with ape.reverts(PAUSED):
        lending.accept_offer_with_signature(offer.args, offer.signature, bottles.token(3), borrower, FAR,
                                            acceptance, sender=borrower)

    lending.repay(loan[0], sender=borrower)
    chain.pending_timestamp = lending.loan((1 << 96) | bottles.token(2)).grace_ends_at + 1
    lending.foreclose((1 << 96) | bottles.token(2), sender=lender)

    assert cert.ownerOf(loan[1]) == borrower and cert.ownerOf(bottles.token(2)) == lender
    lending.unpause(sender=admin)
    lending.accept_offer(offer.args, offer.signature, bottles.token(3), sender=borrower)


def test_certificate_paused__repay_works_but_foreclose_waits(lending, cert, admin, loan, lender, borrower, chain):
    cert.pause(sender=admin)
    chain.pending_timestamp = lending.loan(loan[0]).grace_ends_at + 1
    with ape.reverts(PAUSED):
        lending.foreclose(loan[0], sender=lender)
    cert.unpause(sender=admin)
    lending.foreclose(loan[0], sender=lender)
    assert cert.ownerOf(loan[1]) == lender


# ------------------------------------------------ the lender's collateral view


def test_collateral__one_call_returns_loan_certificate_custody_appraisal_and_credit(
    lending, registry, cert, bottles, make_offer, appraiser, custodian, borrower, lender, chain
):
    token_id = bottles.token(1)
    doc = keccak(text="cellar report")
    registry.attest_storage(bottles.lot_id, doc, "ipfs://report", sender=custodian)
    root = keccak(text="reserve root")
    registry.post_reserve_root(root, 5, "ipfs://tree", sender=custodian)
    appraised_at = chain.pending_timestamp - 1_000
    lending.post_appraisal(bottles.lot_id, 4_000 * USD, appraised_at, sender=appraiser)
    offer = make_offer(bottles.lot_id, token_id, max_ltv_bps=3_000)
    loan_id = lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower).return_value
    chain.mine(1, timestamp=chain.blocks.head.timestamp + DAY)
    now = chain.blocks.head.timestamp

    view = lending.collateral(token_id)

    loan = view.loan
    assert (loan.loan_id, loan.token_id, loan.lot_id, loan.state, loan.lender, loan.borrower) == (
        loan_id, token_id, bottles.lot_id, LOAN_OPEN, lender.address, borrower.address)
    assert view.seconds_to_due == loan.due_at - now
    assert view.seconds_to_grace_end == loan.grace_ends_at - now
    assert (view.certificate_exists, view.certificate_state, view.certificate_owner, view.flagged) == (
        True, PLEDGED, borrower.address, False)
    assert (view.custodian, view.custodian_active) == (custodian.address, True)
    assert (view.storage_document_hash, view.storage_attested_by) == (doc, custodian.address)
    assert view.storage_attested_at > 0 and view.reserve_posted_at > 0
    assert view.reserve_root == root
    assert (view.appraisal.value_per_bottle, view.appraisal.appraised_at, view.appraisal.age) == (
        4_000 * USD, appraised_at, now - appraised_at)
    assert view.ltv_bps == 2_500  # 1,000 / 4,000
    assert view.borrower_credit.loans_taken == 1 and view.borrower_credit.open_loans == 1


def test_collateral__never_pledged_or_never_issued__empty_and_no_revert(lending, bottles, custodian):
    view = lending.collateral(bottles.token(4))
    assert view.loan.state == LOAN_NONE and view.loan.loan_id == 0
    assert view.certificate_exists is True and view.custodian == custodian.address
    assert view.appraisal.stale is True and view.ltv_bps == 0
    nothing = lending.collateral((10**6 << 32) | 1)
    assert nothing.certificate_exists is False and nothing.custodian == ZERO_ADDRESS


def test_collateral__after_grace__counts_zero_seconds_left(lending, loan, chain):
    chain.mine(1, timestamp=lending.loan(loan[0]).grace_ends_at + 5)
    view = lending.collateral(loan[1])
    assert (view.seconds_to_due, view.seconds_to_grace_end) == (0, 0)


# ------------------------------------------------ contract parties and a malicious stablecoin


def test_contract_lender__signs_by_erc1271_and_forecloses_without_receiver_hook(
    project, lending, cert, stable, minter, bottles, make_offer, lender, borrower, chain
):
    """A lender contract (a one-owner wallet) signs with ERC-1271; foreclosure
    hands it the certificate without calling its receiver hook."""
    wallet = lender.deploy(project.MockERC1271Wallet, lender)
    stable.mint(wallet, PRINCIPAL, sender=minter)
    wallet.execute(stable, stable.approve.encode_input(lending, PRINCIPAL), sender=lender)
    offer = make_offer(bottles.lot_id, 0, by=wallet.address, signer=lender)
    loan_id = lending.accept_offer(offer.args, offer.signature, bottles.token(1), sender=borrower).return_value
    assert stable.balanceOf(wallet) == 0
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + 1
    with ape.reverts("lending: caller is not the lender"):
        lending.foreclose(loan_id, sender=lender)
    wallet.execute(lending, lending.foreclose.encode_input(loan_id), sender=lender)
    assert cert.ownerOf(bottles.token(1)) == wallet.address


@pytest.fixture
def hostile(project, admin, winery, custodian, lender, borrower, attacker):
    """A whole deployment whose stablecoin re-enters the lending contract
    (a fresh certificate: the session one trusts its lending contract for good)."""
    from amphora.deploy import CertificateSettings
    from amphora.lots import LotDescription, issue

    c = admin.deploy(project.WineCertificate, *CertificateSettings().constructor_args())
    r = admin.deploy(project.CustodyRegistry, c)
    token = attacker.deploy(project.MockReentrantToken)
    lend = admin.deploy(project.PledgeLending, c, r, token, MAX_AGE, eip712.LENDING_DOMAIN_NAME,
                        eip712.LENDING_DOMAIN_VERSION)
    c.set_lending(lend, sender=admin)
    c.grant_issuer(winery, "Domaine Test", sender=admin)
    c.grant_custodian(custodian, "Cave Test", sender=admin)
    lot_id = issue(c, winery, LotDescription.from_mapping({
        "producer": "P", "wine": "W", "region": "R", "bottle_count": 3, "volume_ml": 750,
        "bottling_date": 1_717_200_000, "custodian": custodian.address, "vintage": 2019})).lot_id
    for s in (1, 2):
        c.transferFrom(winery, borrower, (lot_id << 32) | s, sender=winery)
    for account in (lender, borrower):
        token.mint(account, 10 * REPAYMENT, sender=account)
        token.approve(lend, 2**256 - 1, sender=account)
    return c, lend, token, lot_id


@pytest.mark.parametrize("reentry", ["accept again", "repay", "foreclose", "extend", "cancel"])
def test_malicious_stablecoin__reenters_on_every_transfer__gains_nothing(
    hostile, chain, lender, borrower, attacker, reentry
):
    c, lend, token, lot_id = hostile
    t1, t2 = (lot_id << 32) | 1, (lot_id << 32) | 2
    second = eip712.loan_offer_message(lender.address, token.address, lot_id, t2, PRINCIPAL, REPAYMENT, DURATION,
                                       GRACE, 0, FAR, 1)
    second_sig = eip712.sign(eip712.lending_typed_data("LoanOffer", second, chain.chain_id, lend.address),
                             lender.private_key)
    first = eip712.loan_offer_message(lender.address, token.address, lot_id, t1, PRINCIPAL, REPAYMENT, DURATION,
                                      GRACE, 0, FAR, 0)
    first_sig = eip712.sign(eip712.lending_typed_data("LoanOffer", first, chain.chain_id, lend.address),
                            lender.private_key)
    loan_id = (1 << 96) | t1
    payloads = {
        "accept again": lend.accept_offer.encode_input(eip712.loan_offer_args(second), second_sig, t2),
        "repay": lend.repay.encode_input(loan_id),
        "foreclose": lend.foreclose.encode_input(loan_id),
        "extend": lend.extend_loan.encode_input(loan_id, FAR, REPAYMENT, FAR, b"", b""),
        "cancel": lend.cancel_offer.encode_input(1),
    }
    token.set_attack(lend, payloads[reentry], sender=attacker)
    supply = token.totalSupply()

    lend.accept_offer(eip712.loan_offer_args(first), first_sig, t1, sender=borrower)
    lend.repay(loan_id, sender=borrower)

    assert token.reentries_tried() == 2  # once in the principal's transfer, once in the repayment's
    assert token.reentries_succeeded() == 0
    assert [token.balanceOf(a) for a in (lender, borrower, lend)] == [
        10 * REPAYMENT + REPAYMENT - PRINCIPAL, 10 * REPAYMENT - REPAYMENT + PRINCIPAL, 0]
    assert token.totalSupply() == supply
    assert (c.state_of(t1), c.ownerOf(t1)) == (ACTIVE, borrower.address)
    assert (c.state_of(t2), lend.nonce_used(lender, 1)) == (ACTIVE, False)
    assert lend.credit_record(borrower).loans_taken == 1


# ------------------------------------------------ the stablecoin refuses the repayment (issue 12, item 20)

CLOCK_STOPPED = "lending: the currency refused the repayment; the loan's clock is stopped"
ALREADY_STOPPED = "lending: the currency refused the repayment; the loan's clock is already stopped"
STILL_HALTED = "lending: the currency still refuses transfers"
BLACKLISTED = "stablecoin: account is blacklisted"
HALTS = ["currency paused", "lending contract blacklisted"]


def halt(stable, lending, admin, how: str, on: bool = True):
    """Make the stablecoin refuse every repayment through ``lending`` (or lift it)."""
    if how == "currency paused":
        (stable.pause if on else stable.unpause)(sender=admin)
    else:
        (stable.blacklist if on else stable.unBlacklist)(lending, sender=admin)


@pytest.mark.parametrize("how", HALTS)
def test_repay__currency_refuses_every_transfer__stops_the_clock_and_nobody_forecloses(
    lending, cert, stable, admin, loan, lender, borrower, attacker, chain, how
):
    loan_id, token_id, _ = loan
    halt(stable, lending, admin, how)
    chain.pending_timestamp = lending.loan(loan_id).due_at - DAY

    receipt = lending.repay(loan_id, sender=borrower)

    stopped_at = chain.blocks[receipt.block_number].timestamp
    assert receipt.return_value is False
    assert emitted(receipt, lending.RepaymentRefused, lending) == [(loan_id, borrower.address)]
    assert lending.clock_stopped_at(loan_id) == stopped_at
    assert (lending.loan(loan_id).state, cert.state_of(token_id), cert.ownerOf(token_id)) == (
        LOAN_OPEN, PLEDGED, borrower.address)
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + lending.OPEN_FORECLOSURE_DELAY() + 1
    for caller in (lender, attacker):
        with ape.reverts(CLOCK_STOPPED):
            lending.foreclose(loan_id, sender=caller)
    assert cert.ownerOf(token_id) == borrower


@pytest.mark.parametrize("how", HALTS)
def test_restart_clock__after_the_halt__shifts_the_due_date_by_the_stop_and_the_borrower_repays_on_time(
    lending, cert, stable, admin, loan, lender, borrower, chain, how
):
    loan_id, token_id, _ = loan
    due_at = lending.loan(loan_id).due_at
    halt(stable, lending, admin, how)
    chain.pending_timestamp = due_at - DAY
    stopped_at = chain.blocks[lending.repay(loan_id, sender=borrower).block_number].timestamp
    chain.pending_timestamp = due_at + GRACE + 40 * DAY
    with ape.reverts(STILL_HALTED):
        lending.restart_clock(loan_id, sender=lender)
    halt(stable, lending, admin, how, on=False)

    receipt = lending.restart_clock(loan_id, sender=lender)

    stopped_for = chain.blocks[receipt.block_number].timestamp - stopped_at
    assert lending.loan(loan_id).due_at == due_at + stopped_for
    assert emitted(receipt, lending.LoanClockRestarted, lending) == [(loan_id, due_at + stopped_for, stopped_for)]
    assert lending.clock_stopped_at(loan_id) == 0
    with ape.reverts("lending: grace period has not ended"):
        lending.foreclose(loan_id, sender=lender)
    with ape.reverts("lending: the loan's clock is running"):
        lending.restart_clock(loan_id, sender=lender)
    assert lending.repay(loan_id, sender=borrower).return_value is True
    assert (cert.ownerOf(token_id), cert.state_of(token_id)) == (borrower.address, ACTIVE)
    assert credit(lending, borrower) == (1, 1, 0, 0, 0, PRINCIPAL, PRINCIPAL)


def test_restart_clock__refused_at_the_last_second_of_grace__leaves_the_restart_window(
    lending, cert, stable, admin, loan, lender, borrower, chain
):
    loan_id, token_id, _ = loan
    stable.pause(sender=admin)
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at
    lending.repay(loan_id, sender=borrower)
    stable.unpause(sender=admin)

    restarted = chain.blocks[lending.restart_clock(loan_id, sender=lender).block_number].timestamp

    assert lending.RESTART_WINDOW() == 3 * DAY
    assert lending.loan(loan_id).grace_ends_at == restarted + 3 * DAY
    chain.pending_timestamp = restarted + 3 * DAY
    with ape.reverts("lending: grace period has not ended"):
        lending.foreclose(loan_id, sender=lender)
    chain.pending_timestamp = restarted + 3 * DAY + 1
    lending.foreclose(loan_id, sender=lender)
    assert cert.ownerOf(token_id) == lender


def test_repay__clock_stopped_then_currency_works__repays_after_the_old_grace_without_a_restart(
    lending, cert, stable, admin, loan, borrower, lender, chain
):
    loan_id, token_id, _ = loan
    stable.pause(sender=admin)
    lending.repay(loan_id, sender=borrower)
    stable.unpause(sender=admin)
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + 10 * DAY
    before = balances(stable, lender, borrower)

    assert lending.repay(loan_id, sender=borrower).return_value is True

    assert balances(stable, lender, borrower) == [before[0] + REPAYMENT, before[1] - REPAYMENT]
    assert cert.ownerOf(token_id) == borrower and cert.state_of(token_id) == ACTIVE
    assert credit(lending, borrower)[1:3] == (1, 0), "on time: it was on time when the currency refused it"


def test_repay__currency_halted_but_the_payer_cannot_pay__reverts_and_the_clock_runs(
    lending, stable, admin, loan, borrower, attacker
):
    stable.pause(sender=admin)
    for payer in (attacker, borrower):  # no funds; funds but no allowance
        if payer == borrower:
            stable.unpause(sender=admin)
            stable.approve(lending, 0, sender=borrower)
            stable.pause(sender=admin)
        with ape.reverts(PAUSED):
            lending.repay(loan[0], sender=payer)
    assert lending.clock_stopped_at(loan[0]) == 0


def test_repay__refused_again_while_stopped__reverts(lending, stable, admin, loan, borrower):
    stable.pause(sender=admin)
    lending.repay(loan[0], sender=borrower)
    with ape.reverts(ALREADY_STOPPED):
        lending.repay(loan[0], sender=borrower)


def test_repay__currency_works_but_the_payer_is_blacklisted__reverts_with_the_currency_reason(
    lending, stable, admin, loan, borrower
):
    stable.blacklist(borrower, sender=admin)
    with ape.reverts(BLACKLISTED):
        lending.repay(loan[0], sender=borrower)
    assert lending.clock_stopped_at(loan[0]) == 0


def test_repay__lender_blacklisted__held_for_the_lender_and_the_certificate_unlocks(
    lending, cert, stable, admin, loan, lender, borrower
):
    loan_id, token_id, _ = loan
    stable.blacklist(lender, sender=admin)
    before = balances(stable, lender, borrower, lending)

    receipt = lending.repay(loan_id, sender=borrower)

    assert receipt.return_value is True
    assert balances(stable, lender, borrower, lending) == [before[0], before[1] - REPAYMENT, REPAYMENT]
    assert (lending.repayments_held(lender), lending.total_repayments_held()) == (REPAYMENT, REPAYMENT)
    assert emitted(receipt, lending.RepaymentHeld, lending) == [(loan_id, lender.address, REPAYMENT)]
    assert lending.loan(loan_id).state == LOAN_REPAID
    assert (cert.ownerOf(token_id), cert.state_of(token_id)) == (borrower.address, ACTIVE)
    assert credit(lending, borrower) == (1, 1, 0, 0, 0, PRINCIPAL, PRINCIPAL)
    with ape.reverts(BLACKLISTED):
        lending.withdraw_repayments(sender=lender)
    assert lending.repayments_held(lender) == REPAYMENT

    stable.unBlacklist(lender, sender=admin)
    receipt = lending.withdraw_repayments(sender=lender)

    assert receipt.return_value == REPAYMENT
    assert balances(stable, lender, lending) == [before[0] + REPAYMENT, 0]
    assert (lending.repayments_held(lender), lending.total_repayments_held()) == (0, 0)
    assert emitted(receipt, lending.RepaymentsWithdrawn, lending) == [(lender.address, REPAYMENT)]
    with ape.reverts("lending: no repayments held for the caller"):
        lending.withdraw_repayments(sender=lender)


def test_withdraw_repayments__by_anyone_else__takes_nothing(lending, stable, admin, loan, lender, borrower, attacker):
    stable.blacklist(lender, sender=admin)
    lending.repay(loan[0], sender=borrower)
    for caller in (attacker, borrower, admin):
        with ape.reverts("lending: no repayments held for the caller"):
            lending.withdraw_repayments(sender=caller)
    assert stable.balanceOf(lending) == REPAYMENT


def test_repay_with_authorization__lender_blacklisted__held_for_the_lender(
    lending, cert, stable, admin, loan, lender, borrower, relayer, authorize
):
    loan_id, token_id, _ = loan
    stable.blacklist(lender, sender=admin)
    receipt = repay_by_authorization(lending, loan_id, authorize(borrower, loan_id), relayer)
    assert receipt.return_value is True
    assert lending.repayments_held(lender) == stable.balanceOf(lending) == REPAYMENT
    assert cert.ownerOf(token_id) == borrower and cert.state_of(token_id) == ACTIVE


@pytest.mark.parametrize("how", HALTS)
def test_repay_with_authorization__currency_halted__stops_the_clock(
    lending, cert, stable, admin, loan, lender, borrower, relayer, authorize, chain, how
):
    loan_id, token_id, _ = loan
    auth = authorize(borrower, loan_id)
    halt(stable, lending, admin, how)

    receipt = repay_by_authorization(lending, loan_id, auth, relayer)

    assert receipt.return_value is False
    assert emitted(receipt, lending.RepaymentRefused, lending) == [(loan_id, borrower.address)]
    chain.pending_timestamp = lending.loan(loan_id).grace_ends_at + 1
    with ape.reverts(CLOCK_STOPPED):
        lending.foreclose(loan_id, sender=lender)
    halt(stable, lending, admin, how, on=False)
    assert repay_by_authorization(lending, loan_id, auth, relayer).return_value is True
    assert cert.ownerOf(token_id) == borrower and not stable.balanceOf(lending)


def test_repay_with_authorization__bad_signature_while_the_currency_works__reverts_with_its_reason(
    lending, loan, borrower, attacker, relayer, authorize
):
    auth = authorize(attacker, loan[0])  # signed by someone else for the borrower's money
    with ape.reverts():
        lending.repay_with_authorization(loan[0], borrower, auth.valid_after, auth.valid_before, auth.v, auth.r,
                                         auth.s, sender=relayer)
    assert lending.clock_stopped_at(loan[0]) == 0


# ------------------------------------------------ a lender that lost its key (issue 12, item 25)


def test_foreclose__by_anyone_after_the_open_foreclosure_delay__the_certificate_goes_to_the_lender(
    lending, cert, loan, lender, borrower, attacker, chain
):
    loan_id, token_id, _ = loan
    opens_at = lending.loan(loan_id).grace_ends_at + 30 * DAY  # OPEN_FORECLOSURE_DELAY, checked below
    chain.pending_timestamp = opens_at
    with ape.reverts("lending: caller is not the lender"):
        lending.foreclose(loan_id, sender=attacker)
    chain.pending_timestamp = opens_at + 1

    receipt = lending.foreclose(loan_id, sender=attacker)

    assert (cert.ownerOf(token_id), cert.state_of(token_id)) == (lender.address, ACTIVE)
    assert emitted(receipt, lending.LoanForeclosed, lending) == [(loan_id, lender.address, borrower.address)]
    assert credit(lending, borrower)[3] == 1
    assert lending.OPEN_FORECLOSURE_DELAY() == 30 * DAY


# ------------------------------------------------ EIP-7702 delegated accounts sign with their key (issue 12, item 27)


def delegate(chain, account, target: str, sponsor) -> None:
    """Give ``account`` an EIP-7702 delegation to ``target`` with a real
    type-4 transaction (sent and paid by ``sponsor``)."""
    from eth_account import Account

    w3 = chain.provider.web3
    auth = Account.sign_authorization(
        {"chainId": chain.chain_id, "address": target, "nonce": w3.eth.get_transaction_count(account.address)},
        account.private_key)
    fee = 2 * w3.eth.gas_price + 10**9
    tx = {"type": 4, "chainId": chain.chain_id, "nonce": w3.eth.get_transaction_count(sponsor.address),
          "to": sponsor.address, "value": 0, "gas": 100_000, "maxFeePerGas": fee, "maxPriorityFeePerGas": 10**9,
          "data": b"", "accessList": [], "authorizationList": [auth]}
    signed = Account.sign_transaction(tx, sponsor.private_key)
    assert w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction)).status == 1
    assert bytes(w3.eth.get_code(account.address)) == b"\xef\x01\x00" + bytes.fromhex(target[2:])


@pytest.fixture
def wallet_code(project, relayer):
    """A smart-wallet implementation to delegate to; its ERC-1271 check answers
    for its own owner only, which a delegating EOA never set."""
    return relayer.deploy(project.MockERC1271Wallet, relayer).address


def test_accept__lender_is_an_eip7702_delegated_eoa__its_ecdsa_offer_is_accepted(
    lending, cert, stable, bottles, make_offer, lender, borrower, relayer, wallet_code, chain
):
    delegate(chain, lender, wallet_code, relayer)
    token_id = bottles.token(1)
    offer = make_offer(bottles.lot_id, token_id)
    before = balances(stable, lender, borrower)

    loan_id = lending.accept_offer(offer.args, offer.signature, token_id, sender=borrower).return_value

    assert lending.loan(loan_id).lender == lender.address
    assert balances(stable, lender, borrower) == [before[0] - PRINCIPAL, before[1] + PRINCIPAL]
    assert cert.state_of(token_id) == PLEDGED


def test_accept_relayed__borrower_is_an_eip7702_delegated_eoa__its_ecdsa_acceptance_is_accepted(
    lending, cert, bottles, make_offer, sign_lending, borrower, relayer, wallet_code, chain
):
    delegate(chain, borrower, wallet_code, relayer)
    token_id = bottles.token(2)
    offer = make_offer(bottles.lot_id, token_id)
    acceptance = sign_lending(borrower, "AcceptOffer", eip712.accept_offer_message(
        lending.offer_hash(offer.args), token_id, borrower.address, FAR))

    lending.accept_offer_with_signature(offer.args, offer.signature, token_id, borrower, FAR, acceptance,
                                        sender=relayer)

    assert cert.state_of(token_id) == PLEDGED


def test_accept__delegated_eoa_high_s_twin__still_refused(lending, bottles, make_offer, lender, borrower, relayer,
                                                          wallet_code, chain):
    delegate(chain, lender, wallet_code, relayer)
    offer = make_offer(bottles.lot_id, bottles.token(1))
    r, s, v = offer.signature[:32], int.from_bytes(offer.signature[32:64], "big"), offer.signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    with ape.reverts("lending: invalid lender signature"):
        lending.accept_offer(offer.args, twin, bottles.token(1), sender=borrower)
