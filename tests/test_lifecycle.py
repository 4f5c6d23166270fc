"""The certificate's lifecycle: gifts by claim key, redemption, custody moves,
custodians' attestations and reserve roots, tag possession checks, flags, the
signed (relayable) form of every holder action, and re-entrancy through the
receiver hook during a claim.

Every allowed transition is checked with its events (ERC-5192 ``Locked`` /
``Unlocked`` included); every disallowed one must revert with a message that
names the certificate's current state."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

import ape
import pytest
from erc721_behaviour import TRANSFERS, ZERO_ADDRESS, ReceiverBehaviour, emitted
from eth_account import Account
from eth_utils import keccak

from amphora import eip712
from amphora.merkle import ReserveTree

ACTIVE, GIFT_PENDING, PLEDGED, REDEMPTION_REQUESTED, REDEEMED, FLAGGED = range(6)
STATE_NAMES = {ACTIVE: "active", GIFT_PENDING: "gift pending", REDEMPTION_REQUESTED: "redemption requested",
               FLAGGED: "flagged"}
ORDER_HASH = keccak(text="delivery order: 1 Rue du Vin, Paris")
REASON_HASH = keccak(text="police report 2024-117")
REJECTION_HASH = keccak(text="delivery address outside the service area")
DOCUMENT_HASH = keccak(text="cellar report 2024-Q3")
DOCUMENT_URI = "ipfs://bafycellarreport"
FAR = 2**40  # a signature deadline far in the future
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NOT_OWNER = "ownable: caller is not the owner"
PAUSED = "pausable: contract is paused"
NOT_HOLDER = "certificate: caller is not the holder"
NOT_CUSTODIAN = "certificate: caller is not the custodian"
NO_TOKEN = "certificate: token does not exist"
BAD_CLAIM = "certificate: invalid claim signature"


def state_error(state: int) -> str:
    return f"certificate: token is {STATE_NAMES[state]}"


class Reentrant(IntEnum):
    """What ``MockReentrantReceiver`` does from inside its receiver hook."""

    REENTER_TRANSFER_FROM = 0
    TRY_EVERY_CALL = 4


# ------------------------------------------------ fixtures


@pytest.fixture
def other_custodian(accounts, cert, admin):
    """A second registered cellar."""
    account = accounts[9]
    cert.grant_custodian(account, "Entrepôt Autre", sender=admin)
    return account


@pytest.fixture
def expiry(chain):
    return chain.pending_timestamp + 3_600


@pytest.fixture
def new_key() -> Callable[[], Account]:
    """Builder: a fresh claim key each call (the secret of one claim link)."""
    return lambda: Account.create()


@pytest.fixture
def claim_signature(cert, chain_id) -> Callable[..., bytes]:
    """Builder: the claim key's signature of a claim for ``recipient``."""

    def _sign(key, token_id: int, recipient, chain: int | None = None, contract: str | None = None) -> bytes:
        return eip712.sign_gift_claim(key.key, token_id, _address(recipient),
                                      chain if chain is not None else chain_id, contract or cert.address)

    return _sign


@pytest.fixture
def gifted(cert, held_token, holder, fresh_key, expiry):
    """``held_token`` gifted by ``holder`` to ``fresh_key``'s claim link."""
    cert.create_gift(held_token, fresh_key.address, expiry, sender=holder)
    return held_token


@pytest.fixture
def requested(cert, held_token, holder):
    """``held_token`` with a redemption requested by ``holder``."""
    cert.request_redemption(held_token, ORDER_HASH, sender=holder)
    return held_token


@pytest.fixture
def wallet(project, holder):
    """A one-owner contract wallet (ERC-1271) whose owner key is ``holder``'s."""
    return holder.deploy(project.MockERC1271Wallet, holder)


def _address(account) -> str:
    return account if isinstance(account, str) else account.address


def put_in_state(state: int, cert, token_id: int, holder, custodian, key) -> None:
    """Bring an active certificate held by ``holder`` into ``state``."""
    if state == GIFT_PENDING:
        cert.create_gift(token_id, key.address, 2**40, sender=holder)
    elif state == REDEMPTION_REQUESTED:
        cert.request_redemption(token_id, ORDER_HASH, sender=holder)
    elif state == FLAGGED:
        cert.flag(token_id, REASON_HASH, sender=holder)
    elif state == REDEEMED:
        cert.request_redemption(token_id, ORDER_HASH, sender=holder)
        cert.confirm_redemption(token_id, sender=custodian)


# ------------------------------------------------ the transition table


#: (action, state it is allowed from). Each action is run by the party entitled to it.
ALLOWED = {
    ("create_gift", ACTIVE), ("claim_gift", GIFT_PENDING), ("revoke_gift", GIFT_PENDING),
    ("request_redemption", ACTIVE), ("confirm_redemption", REDEMPTION_REQUESTED),
    ("reject_redemption", REDEMPTION_REQUESTED), ("flag", ACTIVE), ("clear_flag", FLAGGED),
}
ACTIONS = sorted({a for a, _ in ALLOWED})
LIVE_STATES = [ACTIVE, GIFT_PENDING, REDEMPTION_REQUESTED, FLAGGED]
DISALLOWED = [(a, s) for a in ACTIONS for s in LIVE_STATES if (a, s) not in ALLOWED]


def run_action(action: str, cert, token_id: int, *, holder, custodian, winery, recipient, new_key,
               claim_signature, claim_key=None):
    if action == "create_gift":
        return cert.create_gift(token_id, new_key().address, 2**40, sender=holder)
    if action == "claim_gift":
        key = claim_key or new_key()
        return cert.claim_gift(token_id, recipient, claim_signature(key, token_id, recipient), sender=recipient)
    if action == "revoke_gift":
        return cert.revoke_gift(token_id, sender=holder)
    if action == "request_redemption":
        return cert.request_redemption(token_id, ORDER_HASH, sender=holder)
    if action == "confirm_redemption":
        return cert.confirm_redemption(token_id, sender=custodian)
    if action == "reject_redemption":
        return cert.reject_redemption(token_id, REJECTION_HASH, sender=custodian)
    if action == "flag":
        return cert.flag(token_id, REASON_HASH, sender=holder)
    if action == "clear_flag":
        return cert.clear_flag(token_id, sender=winery)
    raise AssertionError(action)


@pytest.mark.parametrize("action, state", DISALLOWED, ids=[f"{a}-from-{STATE_NAMES[s]}" for a, s in DISALLOWED])
def test_transition__not_in_the_table__reverts_naming_the_current_state(
    cert, held_token, holder, custodian, winery, recipient, new_key, claim_signature, action, state
):
    key = new_key()
    put_in_state(state, cert, held_token, holder, custodian, key)

    with ape.reverts(state_error(state)):
        run_action(action, cert, held_token, holder=holder, custodian=custodian, winery=winery,
                   recipient=recipient, new_key=new_key, claim_signature=claim_signature, claim_key=key)

    assert cert.state_of(held_token) == state
    assert cert.ownerOf(held_token) == holder


@pytest.mark.parametrize("action", ACTIONS)
def test_transition__from_redeemed__reverts_token_does_not_exist(
    cert, held_token, holder, custodian, winery, recipient, new_key, claim_signature, action
):
    put_in_state(REDEEMED, cert, held_token, holder, custodian, None)

    with ape.reverts(NO_TOKEN):
        run_action(action, cert, held_token, holder=holder, custodian=custodian, winery=winery,
                   recipient=recipient, new_key=new_key, claim_signature=claim_signature)

    assert cert.state_of(held_token) == REDEEMED


LOCKED_STATES = [GIFT_PENDING, REDEMPTION_REQUESTED, FLAGGED]


@pytest.mark.parametrize("state", LOCKED_STATES, ids=[STATE_NAMES[s] for s in LOCKED_STATES])
@pytest.mark.parametrize("spender", ["holder", "relayer", "operator"], ids=["owner", "approved", "operator"])
@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
def test_transfer__while_locked__reverts_naming_the_state(
    cert, request, held_token, holder, recipient, relayer, operator, custodian, new_key, state, spender,
    transfer_name
):
    cert.approve(relayer, held_token, sender=holder)
    cert.setApprovalForAll(operator, True, sender=holder)
    put_in_state(state, cert, held_token, holder, custodian, new_key())

    with ape.reverts(state_error(state)):
        TRANSFERS[transfer_name](cert, holder, recipient, held_token, request.getfixturevalue(spender))

    assert cert.ownerOf(held_token) == holder
    assert cert.locked(held_token) is True


@pytest.mark.parametrize("state", LOCKED_STATES, ids=[STATE_NAMES[s] for s in LOCKED_STATES])
def test_signed_transfer__while_locked__reverts_and_keeps_nonce(
    cert, held_token, holder, recipient, relayer, custodian, new_key, sign_transfer, state
):
    put_in_state(state, cert, held_token, holder, custodian, new_key())
    signature = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)

    with ape.reverts(state_error(state)):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, signature, sender=relayer)

    assert cert.ownerOf(held_token) == holder
    assert cert.nonces(holder) == 0


# ------------------------------------------------ gifts: create


def test_create_gift__by_holder__locks_to_the_claim_key_and_emits_events(
    cert, held_token, holder, fresh_key, expiry
):
    receipt = cert.create_gift(held_token, fresh_key.address, expiry, sender=holder)

    assert cert.state_of(held_token) == GIFT_PENDING
    assert cert.locked(held_token) is True
    assert cert.ownerOf(held_token) == holder
    assert cert.claim_key_used(fresh_key.address) is True
    record = cert.certificate(held_token)
    assert (record.gift_claim_key, record.gift_expiry) == (fresh_key.address, expiry)
    assert emitted(receipt, cert.Locked, cert) == [(held_token,)]
    assert emitted(receipt, cert.GiftCreated, cert) == [(held_token, holder.address, fresh_key.address, expiry)]


def test_create_gift__untouched_stock_by_its_issuer__locks_it(cert, token, winery, fresh_key, expiry):
    cert.create_gift(token, fresh_key.address, expiry, sender=winery)

    assert cert.state_of(token) == GIFT_PENDING
    assert cert.ownerOf(token) == winery


@pytest.mark.parametrize("caller", ["attacker", "operator", "relayer", "winery"])
def test_create_gift__by_anyone_but_the_holder__reverts(
    cert, request, held_token, holder, operator, relayer, fresh_key, expiry, caller
):
    # Even an operator or an approved address may not lock the holder's certificate.
    cert.setApprovalForAll(operator, True, sender=holder)
    cert.approve(relayer, held_token, sender=holder)

    with ape.reverts(NOT_HOLDER):
        cert.create_gift(held_token, fresh_key.address, expiry, sender=request.getfixturevalue(caller))

    assert cert.state_of(held_token) == ACTIVE
    assert cert.claim_key_used(fresh_key.address) is False


def test_create_gift__claim_key_zero__reverts(cert, held_token, holder, expiry):
    with ape.reverts("certificate: claim key is the zero address"):
        cert.create_gift(held_token, ZERO_ADDRESS, expiry, sender=holder)


@pytest.mark.parametrize("offset", [0, -1, None], ids=["now", "past", "beyond-uint64"])
def test_create_gift__expiry_out_of_range__reverts(cert, chain, held_token, holder, fresh_key, offset):
    now = chain.pending_timestamp
    chain.pending_timestamp = now  # the next block's time, exactly
    expiry = 2**64 if offset is None else now + offset

    with ape.reverts("certificate: gift expiry out of range"):
        cert.create_gift(held_token, fresh_key.address, expiry, sender=holder)


def test_create_gift__key_already_given_to_another_gift__reverts(
    cert, lot, held_token, holder, winery, fresh_key, expiry
):
    cert.create_gift(lot.token(5), fresh_key.address, expiry, sender=winery)

    with ape.reverts("certificate: claim key already used"):
        cert.create_gift(held_token, fresh_key.address, expiry, sender=holder)


def test_create_gift__regifting_with_a_revoked_key__reverts(cert, gifted, holder, fresh_key, expiry):
    # The first recipient still holds the revoked key's secret: it must never claim again.
    cert.revoke_gift(gifted, sender=holder)

    with ape.reverts("certificate: claim key already used"):
        cert.create_gift(gifted, fresh_key.address, expiry, sender=holder)

    assert cert.state_of(gifted) == ACTIVE


def test_create_gift__while_paused__reverts(cert, admin, held_token, holder, fresh_key, expiry):
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        cert.create_gift(held_token, fresh_key.address, expiry, sender=holder)


# ------------------------------------------------ gifts: claim


def test_claim_gift__relayed_with_claim_key_signature__moves_to_recipient_and_unlocks(
    cert, gifted, holder, recipient, relayer, fresh_key, claim_signature
):
    balances = cert.balanceOf(holder), cert.balanceOf(recipient)
    recipient_eth = recipient.balance
    signature = claim_signature(fresh_key, gifted, recipient)

    receipt = cert.claim_gift(gifted, recipient, signature, sender=relayer)

    assert cert.ownerOf(gifted) == recipient
    assert cert.state_of(gifted) == ACTIVE and cert.locked(gifted) is False
    assert (cert.balanceOf(holder), cert.balanceOf(recipient)) == (balances[0] - 1, balances[1] + 1)
    assert recipient.balance == recipient_eth, "the recipient needs no gas"
    assert emitted(receipt, cert.Unlocked, cert) == [(gifted,)]
    assert emitted(receipt, cert.Transfer, cert) == [(holder.address, recipient.address, gifted)]
    assert emitted(receipt, cert.GiftClaimed, cert) == [
        (gifted, holder.address, recipient.address, fresh_key.address)]
    assert cert.certificate(gifted).gift_claim_key == ZERO_ADDRESS


def test_claim_gift__clears_approvals_like_a_transfer(
    cert, gifted, holder, recipient, relayer, fresh_key, claim_signature
):
    cert.approve(relayer, gifted, sender=holder)

    cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)

    assert cert.getApproved(gifted) == ZERO_ADDRESS
    with ape.reverts("certificate: caller is not token owner or approved"):
        cert.transferFrom(recipient, relayer, gifted, sender=relayer)


def test_claim_gift__by_front_runner__reverts(
    cert, gifted, holder, recipient, attacker, fresh_key, claim_signature
):
    # The attacker copies the claim signature from the mempool and names itself.
    signature = claim_signature(fresh_key, gifted, recipient)

    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(gifted, attacker, signature, sender=attacker)

    assert cert.ownerOf(gifted) == holder
    assert cert.state_of(gifted) == GIFT_PENDING
    cert.claim_gift(gifted, recipient, signature, sender=recipient)
    assert cert.ownerOf(gifted) == recipient


def test_claim_gift__front_runner_resubmitting_the_claim__delivers_to_the_recipient(
    cert, gifted, recipient, attacker, fresh_key, claim_signature
):
    signature = claim_signature(fresh_key, gifted, recipient)

    cert.claim_gift(gifted, recipient, signature, sender=attacker)

    assert cert.ownerOf(gifted) == recipient
    assert cert.balanceOf(attacker) == 0


def test_claim_gift__replayed__reverts(cert, gifted, recipient, relayer, fresh_key, claim_signature):
    signature = claim_signature(fresh_key, gifted, recipient)
    cert.claim_gift(gifted, recipient, signature, sender=relayer)

    with ape.reverts(state_error(ACTIVE)):
        cert.claim_gift(gifted, recipient, signature, sender=relayer)


def test_claim_gift__old_key_after_regift_with_a_new_key__reverts(
    cert, gifted, holder, recipient, attacker, fresh_key, new_key, claim_signature, expiry
):
    # Gift, revoke, gift again with a new key: the first key's holder gets nothing.
    cert.revoke_gift(gifted, sender=holder)
    cert.create_gift(gifted, new_key().address, expiry, sender=holder)

    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(gifted, attacker, claim_signature(fresh_key, gifted, attacker), sender=attacker)

    assert cert.ownerOf(gifted) == holder


def test_claim_gift__key_of_one_gift_on_another_gift__reverts(
    cert, lot, gifted, winery, recipient, fresh_key, new_key, claim_signature, expiry
):
    other = lot.token(7)
    cert.create_gift(other, new_key().address, expiry, sender=winery)

    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(other, recipient, claim_signature(fresh_key, other, recipient), sender=recipient)

    assert cert.ownerOf(other) == winery


def test_claim_gift__signature_for_another_token__reverts(
    cert, lot, gifted, winery, recipient, fresh_key, claim_signature, expiry
):
    # The same key signing a claim of another token id.
    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(gifted, recipient, claim_signature(fresh_key, lot.token(7), recipient), sender=recipient)


@pytest.mark.parametrize("domain", ["chain", "contract"])
def test_claim_gift__signature_for_another_domain__reverts(
    cert, gifted, recipient, fresh_key, claim_signature, chain_id, domain
):
    signature = (claim_signature(fresh_key, gifted, recipient, chain=chain_id + 1) if domain == "chain"
                 else claim_signature(fresh_key, gifted, recipient, contract="0x" + "11" * 20))

    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(gifted, recipient, signature, sender=recipient)


def test_claim_gift__high_s_twin_of_the_signature__reverts(cert, gifted, recipient, fresh_key, claim_signature):
    signature = claim_signature(fresh_key, gifted, recipient)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28

    with ape.reverts(BAD_CLAIM):
        cert.claim_gift(gifted, recipient, twin, sender=recipient)

    assert cert.state_of(gifted) == GIFT_PENDING


def test_claim_gift__after_expiry__reverts(cert, chain, gifted, recipient, fresh_key, claim_signature, expiry):
    chain.pending_timestamp = expiry + 1

    with ape.reverts("certificate: gift expired"):
        cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)

    assert cert.state_of(gifted) == GIFT_PENDING


def test_claim_gift__at_expiry__succeeds(cert, chain, gifted, recipient, fresh_key, claim_signature, expiry):
    chain.pending_timestamp = expiry

    cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)

    assert cert.ownerOf(gifted) == recipient


def test_claim_gift__to_zero_address__reverts(cert, gifted, fresh_key, claim_signature, relayer):
    with ape.reverts("certificate: transfer to the zero address"):
        cert.claim_gift(gifted, ZERO_ADDRESS, claim_signature(fresh_key, gifted, ZERO_ADDRESS), sender=relayer)


def test_claim_gift__while_paused__reverts(cert, admin, gifted, recipient, fresh_key, claim_signature):
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)


def test_claim_gift__to_accepting_contract__moves_it_and_calls_the_hook(
    project, cert, gifted, holder, attacker, fresh_key, claim_signature
):
    receiver = attacker.deploy(project.MockERC721Receiver, int(ReceiverBehaviour.ACCEPT))

    receipt = cert.claim_gift(gifted, receiver, claim_signature(fresh_key, gifted, receiver), sender=attacker)

    assert cert.ownerOf(gifted) == receiver
    hook = list(receipt.decode_logs(receiver.Received))
    assert len(hook) == 1 and hook[0].operator == holder and hook[0].sender == holder


@pytest.mark.parametrize("behaviour", [ReceiverBehaviour.WRONG_SELECTOR, ReceiverBehaviour.REVERT_WITHOUT_DATA])
def test_claim_gift__to_refusing_contract__reverts_and_gift_stays_claimable(
    project, cert, gifted, holder, recipient, attacker, fresh_key, claim_signature, behaviour
):
    receiver = attacker.deploy(project.MockERC721Receiver, int(behaviour))

    with ape.reverts("certificate: transfer to non-ERC721Receiver implementer"):
        cert.claim_gift(gifted, receiver, claim_signature(fresh_key, gifted, receiver), sender=attacker)

    assert cert.state_of(gifted) == GIFT_PENDING
    cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)
    assert cert.ownerOf(gifted) == recipient


def test_claim_gift__to_contract_without_receiver__reverts(
    project, cert, gifted, attacker, fresh_key, claim_signature
):
    receiver = attacker.deploy(project.MockNonReceiver, False)

    with ape.reverts("certificate: transfer to non-ERC721Receiver implementer"):
        cert.claim_gift(gifted, receiver, claim_signature(fresh_key, gifted, receiver), sender=attacker)


# ------------------------------------------------ gifts: revoke and expiry


def test_revoke_gift__by_holder__unlocks_and_keeps_owner(cert, gifted, holder, fresh_key):
    receipt = cert.revoke_gift(gifted, sender=holder)

    assert cert.state_of(gifted) == ACTIVE and cert.locked(gifted) is False
    assert cert.ownerOf(gifted) == holder
    assert cert.claim_key_used(fresh_key.address) is True
    assert emitted(receipt, cert.Unlocked, cert) == [(gifted,)]
    assert emitted(receipt, cert.GiftRevoked, cert) == [(gifted, holder.address, holder.address)]


@pytest.mark.parametrize("caller", ["attacker", "recipient", "winery", "operator"])
def test_revoke_gift__by_stranger_before_expiry__reverts(cert, request, gifted, holder, operator, caller):
    cert.setApprovalForAll(operator, True, sender=holder)

    with ape.reverts(NOT_HOLDER):
        cert.revoke_gift(gifted, sender=request.getfixturevalue(caller))

    assert cert.state_of(gifted) == GIFT_PENDING


def test_revoke_gift__by_stranger_after_expiry__unlocks_for_the_holder(
    cert, chain, gifted, holder, attacker, expiry
):
    chain.pending_timestamp = expiry + 1

    receipt = cert.revoke_gift(gifted, sender=attacker)

    assert cert.ownerOf(gifted) == holder
    assert cert.state_of(gifted) == ACTIVE
    assert emitted(receipt, cert.GiftRevoked, cert) == [(gifted, holder.address, attacker.address)]


def test_revoke_gift__by_stranger_at_expiry__reverts(cert, chain, gifted, attacker, expiry):
    # At `expiry` the gift can still be claimed, so it is not the stranger's to end.
    chain.pending_timestamp = expiry

    with ape.reverts(NOT_HOLDER):
        cert.revoke_gift(gifted, sender=attacker)


def test_revoke_gift__expired_then_claimed_with_old_link__reverts(
    cert, chain, gifted, holder, recipient, fresh_key, claim_signature, expiry
):
    chain.pending_timestamp = expiry + 1
    cert.revoke_gift(gifted, sender=holder)

    with ape.reverts(state_error(ACTIVE)):
        cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)


def test_revoke_gift__while_paused__unlocks(cert, admin, gifted, holder):
    cert.pause(sender=admin)

    cert.revoke_gift(gifted, sender=holder)

    assert cert.state_of(gifted) == ACTIVE


# ------------------------------------------------ redemption


def test_request_redemption__by_holder__locks_and_names_the_custodian(cert, held_token, holder, custodian):
    receipt = cert.request_redemption(held_token, ORDER_HASH, sender=holder)

    assert cert.state_of(held_token) == REDEMPTION_REQUESTED and cert.locked(held_token) is True
    assert cert.certificate(held_token).redemption_order_hash == ORDER_HASH
    assert emitted(receipt, cert.Locked, cert) == [(held_token,)]
    assert emitted(receipt, cert.RedemptionRequested, cert) == [
        (held_token, holder.address, custodian.address, ORDER_HASH)]


@pytest.mark.parametrize("caller", ["attacker", "custodian", "winery", "operator"])
def test_request_redemption__by_anyone_but_the_holder__reverts(cert, request, held_token, holder, operator, caller):
    cert.setApprovalForAll(operator, True, sender=holder)

    with ape.reverts(NOT_HOLDER):
        cert.request_redemption(held_token, ORDER_HASH, sender=request.getfixturevalue(caller))

    assert cert.state_of(held_token) == ACTIVE


def test_request_redemption__empty_order_hash__reverts(cert, held_token, holder):
    with ape.reverts("certificate: order hash is empty"):
        cert.request_redemption(held_token, b"\x00" * 32, sender=holder)


def test_request_redemption__while_paused__reverts(cert, admin, held_token, holder):
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        cert.request_redemption(held_token, ORDER_HASH, sender=holder)


@pytest.mark.parametrize("flagger", ["holder", "winery"])
def test_request_redemption__flagged__reverts(cert, request, held_token, holder, flagger):
    cert.flag(held_token, REASON_HASH, sender=request.getfixturevalue(flagger))

    with ape.reverts(state_error(FLAGGED)):
        cert.request_redemption(held_token, ORDER_HASH, sender=holder)


def test_confirm_redemption__by_custodian__burns_and_keeps_the_record(
    cert, chain, lot, requested, holder, custodian
):
    balance, supply = cert.balanceOf(holder), cert.totalSupply()

    receipt = cert.confirm_redemption(requested, sender=custodian)

    shipped_at = chain.blocks[receipt.block_number].timestamp
    assert cert.balanceOf(holder) == balance - 1
    assert cert.totalSupply() == supply - 1
    assert emitted(receipt, cert.Transfer, cert) == [(holder.address, ZERO_ADDRESS, requested)]
    assert emitted(receipt, cert.CertificateRedeemed, cert) == [(requested, holder.address, custodian.address)]
    assert emitted(receipt, cert.Unlocked, cert) == []
    with ape.reverts(NO_TOKEN):
        cert.ownerOf(requested)
    with ape.reverts(NO_TOKEN):
        cert.locked(requested)
    with ape.reverts(NO_TOKEN):
        cert.tokenURI(requested)
    assert cert.state_of(requested) == REDEEMED
    record = cert.certificate(requested)
    assert record.exists is False and record.state == REDEEMED and record.locked is True
    assert record.owner == ZERO_ADDRESS
    assert (record.redeemed_at, record.redeemed_by, record.redemption_order_hash) == (
        shipped_at, custodian.address, ORDER_HASH)
    assert record.lot_id == lot.lot_id and record.serial == 2
    # The bottle's tag still verifies: a copied QR code shows a redeemed bottle.
    assert cert.verify_tag(requested, lot.tree.tags[1], lot.tree.proof(2)) is True


def test_confirm_redemption__redeemed_token__cannot_move(cert, requested, holder, custodian, recipient):
    cert.confirm_redemption(requested, sender=custodian)

    with ape.reverts(NO_TOKEN):
        cert.transferFrom(holder, recipient, requested, sender=holder)
    with ape.reverts(NO_TOKEN):
        cert.approve(recipient, requested, sender=holder)


@pytest.mark.parametrize("caller", ["other_custodian", "attacker", "winery", "holder", "admin"])
def test_confirm_redemption__by_wrong_party__reverts(cert, request, requested, holder, caller):
    with ape.reverts(NOT_CUSTODIAN):
        cert.confirm_redemption(requested, sender=request.getfixturevalue(caller))

    assert cert.ownerOf(requested) == holder
    assert cert.state_of(requested) == REDEMPTION_REQUESTED


def test_confirm_redemption__custodian_role_revoked__reverts(cert, admin, requested, custodian):
    cert.revoke_custodian(custodian, sender=admin)

    with ape.reverts(NOT_CUSTODIAN):
        cert.confirm_redemption(requested, sender=custodian)


def test_confirm_redemption__while_paused__reverts(cert, admin, requested, custodian):
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        cert.confirm_redemption(requested, sender=custodian)


def test_reject_redemption__by_custodian__unlocks_for_the_holder(cert, requested, holder, custodian, recipient):
    receipt = cert.reject_redemption(requested, REJECTION_HASH, sender=custodian)

    assert cert.state_of(requested) == ACTIVE and cert.locked(requested) is False
    assert emitted(receipt, cert.Unlocked, cert) == [(requested,)]
    assert emitted(receipt, cert.RedemptionRejected, cert) == [(requested, custodian.address, REJECTION_HASH)]
    assert cert.certificate(requested).redemption_order_hash == b"\x00" * 32
    cert.transferFrom(holder, recipient, requested, sender=holder)
    assert cert.ownerOf(requested) == recipient


@pytest.mark.parametrize("caller", ["other_custodian", "attacker", "holder"])
def test_reject_redemption__by_wrong_party__reverts(cert, request, requested, caller):
    with ape.reverts(NOT_CUSTODIAN):
        cert.reject_redemption(requested, REJECTION_HASH, sender=request.getfixturevalue(caller))

    assert cert.state_of(requested) == REDEMPTION_REQUESTED


def test_reject_redemption__while_paused__unlocks(cert, admin, requested, custodian):
    cert.pause(sender=admin)

    cert.reject_redemption(requested, REJECTION_HASH, sender=custodian)

    assert cert.state_of(requested) == ACTIVE


def test_request_redemption__after_a_rejection__can_ask_again(cert, requested, holder, custodian):
    cert.reject_redemption(requested, REJECTION_HASH, sender=custodian)
    second = keccak(text="second delivery order")

    cert.request_redemption(requested, second, sender=holder)
    cert.confirm_redemption(requested, sender=custodian)

    assert cert.certificate(requested).redemption_order_hash == second


# ------------------------------------------------ custody moves


def test_move_custody__by_admin__names_the_new_custodian(cert, admin, lot, held_token, custodian, other_custodian):
    receipt = cert.move_custody(lot.lot_id, other_custodian, sender=admin)

    record = cert.certificate(held_token)
    assert (record.custodian, record.custodian_name) == (other_custodian.address, "Entrepôt Autre")
    assert cert.custodian_of(lot.token(10)) == other_custodian
    assert cert.lot(lot.lot_id).custodian == other_custodian
    assert emitted(receipt, cert.CustodyMoved, cert) == [(lot.lot_id, custodian.address, other_custodian.address)]


@pytest.mark.parametrize("caller", ["winery", "custodian", "other_custodian", "attacker"])
def test_move_custody__by_non_admin__reverts(cert, request, lot, custodian, other_custodian, caller):
    with ape.reverts(NOT_OWNER):
        cert.move_custody(lot.lot_id, other_custodian, sender=request.getfixturevalue(caller))

    assert cert.lot(lot.lot_id).custodian == custodian


@pytest.mark.parametrize("target", ["attacker", "winery"])
def test_move_custody__to_non_custodian__reverts(cert, request, admin, lot, target):
    with ape.reverts("certificate: custodian is not registered"):
        cert.move_custody(lot.lot_id, request.getfixturevalue(target), sender=admin)


def test_move_custody__to_a_revoked_custodian__reverts(cert, admin, lot, other_custodian):
    cert.revoke_custodian(other_custodian, sender=admin)

    with ape.reverts("certificate: custodian is not registered"):
        cert.move_custody(lot.lot_id, other_custodian, sender=admin)


def test_move_custody__unknown_lot__reverts(cert, admin, lot, other_custodian):
    with ape.reverts("certificate: lot does not exist"):
        cert.move_custody(lot.lot_id + 1, other_custodian, sender=admin)


def test_move_custody__to_the_same_custodian__reverts(cert, admin, lot, custodian):
    with ape.reverts("certificate: lot is already with this custodian"):
        cert.move_custody(lot.lot_id, custodian, sender=admin)


def test_move_custody__while_paused__moves(cert, admin, lot, other_custodian):
    cert.pause(sender=admin)

    cert.move_custody(lot.lot_id, other_custodian, sender=admin)

    assert cert.lot(lot.lot_id).custodian == other_custodian


def test_move_custody__pending_redemption__only_the_new_custodian_confirms(
    cert, admin, lot, requested, custodian, other_custodian
):
    cert.move_custody(lot.lot_id, other_custodian, sender=admin)

    with ape.reverts(NOT_CUSTODIAN):
        cert.confirm_redemption(requested, sender=custodian)
    cert.confirm_redemption(requested, sender=other_custodian)

    assert cert.certificate(requested).redeemed_by == other_custodian


def test_custodian_of__token_never_issued__is_zero(cert, lot):
    assert cert.custodian_of(lot.token(11)) == ZERO_ADDRESS
    assert cert.custodian_of(lot.token(0)) == ZERO_ADDRESS
    assert cert.custodian_of((lot.lot_id + 1) << 32 | 1) == ZERO_ADDRESS


# ------------------------------------------------ storage attestations (CustodyRegistry)


def test_attest_storage__by_the_lots_custodian__is_shown_for_its_bottles(
    registry, chain, lot, held_token, custodian
):
    receipt = registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)

    custody = registry.custody(held_token)
    assert custody.custodian == custodian
    assert custody.storage_document_hash == DOCUMENT_HASH
    assert custody.storage_attested_by == custodian
    assert custody.storage_attested_at == chain.blocks[receipt.block_number].timestamp
    assert emitted(receipt, registry.StorageAttested, registry) == [
        (lot.lot_id, custodian.address, DOCUMENT_HASH, DOCUMENT_URI)]


@pytest.mark.parametrize("caller", ["attacker", "winery", "other_custodian", "admin"])
def test_attest_storage__by_anyone_but_the_lots_custodian__reverts(registry, request, lot, caller):
    with ape.reverts("custody: caller is not the lot's custodian"):
        registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=request.getfixturevalue(caller))


def test_attest_storage__custodian_role_revoked__reverts(registry, cert, admin, lot, custodian):
    cert.revoke_custodian(custodian, sender=admin)

    with ape.reverts("custody: caller is not the lot's custodian"):
        registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)


def test_attest_storage__after_custody_move__only_the_new_custodian_attests(
    registry, cert, admin, lot, held_token, custodian, other_custodian
):
    registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)
    cert.move_custody(lot.lot_id, other_custodian, sender=admin)

    # The old attestation stays visible, with the custodian that made it.
    assert registry.custody(held_token).storage_attested_by == custodian
    with ape.reverts("custody: caller is not the lot's custodian"):
        registry.attest_storage(lot.lot_id, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)
    registry.attest_storage(lot.lot_id, keccak(text="new cellar"), "ipfs://new", sender=other_custodian)
    assert registry.custody(held_token).storage_attested_by == other_custodian


def test_attest_storage__unknown_lot__reverts(registry, lot, custodian):
    with ape.reverts("custody: lot does not exist"):
        registry.attest_storage(lot.lot_id + 1, DOCUMENT_HASH, DOCUMENT_URI, sender=custodian)


def test_attest_storage__empty_document_hash__reverts(registry, lot, custodian):
    with ape.reverts("custody: document hash is empty"):
        registry.attest_storage(lot.lot_id, b"\x00" * 32, DOCUMENT_URI, sender=custodian)


def test_custody__token_never_issued__is_empty_and_does_not_revert(registry, lot):
    custody = registry.custody(lot.token(11))

    assert custody.custodian == ZERO_ADDRESS and custody.reserve_root == b"\x00" * 32


def test_registry__follows_the_deployed_certificate(registry, cert):
    assert registry.CERTIFICATE() == cert.address


# ------------------------------------------------ proof of reserve (CustodyRegistry)


@pytest.fixture
def reserve(registry, create_lot, lot, custodian):
    """``custodian`` posts a root over serials 1-6 of ``lot`` and 1-3 of a second lot."""
    second = create_lot(3)
    tree = ReserveTree.build([lot.token(s) for s in range(1, 7)] + [second.token(s) for s in (1, 2, 3)])
    receipt = registry.post_reserve_root(tree.root, 9, "ipfs://bafyreserve", sender=custodian)
    return tree, receipt, second


def test_post_reserve_root__every_listed_bottle__verifies(registry, chain, custodian, reserve):
    tree, receipt, _ = reserve

    for token_id in tree.token_ids:
        assert registry.verify_reserve(token_id, tree.proof(token_id)) is True
    custody = registry.custody(tree.token_ids[0])
    assert (custody.reserve_root, custody.reserve_bottle_count) == (tree.root, 9)
    assert custody.reserve_posted_at == chain.blocks[receipt.block_number].timestamp
    assert emitted(receipt, registry.ReserveRootPosted, registry) == [
        (custodian.address, tree.root, 9, "ipfs://bafyreserve")]


def test_verify_reserve__bottle_not_listed__is_false(registry, lot, reserve):
    tree, _, _ = reserve
    unlisted = lot.token(7)

    # Neither with a listed bottle's proof nor with no proof.
    assert registry.verify_reserve(unlisted, tree.proof(lot.token(6))) is False
    assert registry.verify_reserve(unlisted, []) is False


def test_verify_reserve__proof_of_another_bottle__is_false(registry, lot, reserve):
    tree, _, _ = reserve

    assert registry.verify_reserve(lot.token(1), tree.proof(lot.token(2))) is False


def test_verify_reserve__token_never_issued__is_false(registry, lot, reserve):
    assert registry.verify_reserve(lot.token(11), []) is False


def test_verify_reserve__custodian_without_a_root__is_false(registry, cert, admin, lot, reserve, other_custodian):
    tree, _, _ = reserve
    cert.move_custody(lot.lot_id, other_custodian, sender=admin)

    # The bottle is now the other custodian's, which has attested nothing yet.
    assert registry.verify_reserve(lot.token(1), tree.proof(lot.token(1))) is False


def test_post_reserve_root__replaces_the_previous_root(registry, lot, custodian, reserve):
    tree, _, _ = reserve
    smaller = ReserveTree.build([lot.token(1), lot.token(2)])

    registry.post_reserve_root(smaller.root, 2, "ipfs://smaller", sender=custodian)

    assert registry.verify_reserve(lot.token(3), tree.proof(lot.token(3))) is False
    assert registry.verify_reserve(lot.token(2), smaller.proof(lot.token(2))) is True


@pytest.mark.parametrize("caller", ["attacker", "winery", "holder"])
def test_post_reserve_root__by_non_custodian__reverts(registry, request, caller):
    with ape.reverts("custody: caller is not a custodian"):
        registry.post_reserve_root(b"\x01" * 32, 1, "", sender=request.getfixturevalue(caller))


def test_reserve_tree__rejects_duplicates_and_unknown_ids():
    tree = ReserveTree.build([5, 6])
    with pytest.raises(ValueError, match="each token id once"):
        ReserveTree.build([5, 5])
    with pytest.raises(ValueError, match="not in this reserve tree"):
        tree.proof(7)


# ------------------------------------------------ tag possession (verify_tag_signature)


@pytest.fixture
def challenge(cert, chain, chain_id):
    """Builder: ``tag_key`` answers a challenge for ``token_id`` over block
    ``number`` (default: the newest block) with its hash (or ``block_hash``),
    in the domain of ``chain_id`` (or ``on_chain``). Returns (block number, signature)."""

    def _answer(tag_key, token_id: int, number: int | None = None, block_hash: bytes | None = None,
                on_chain: int | None = None) -> tuple[int, bytes]:
        number = chain.blocks.head.number if number is None else number
        block_hash = bytes(chain.blocks[number].hash) if block_hash is None else block_hash
        signature = eip712.sign_tag_challenge(tag_key, token_id, number, block_hash,
                                              chain_id if on_chain is None else on_chain, cert.address)
        return number, signature

    return _answer


def test_verify_tag_signature__genuine_tag__passes(cert, chain, lot, challenge):
    number, signature = challenge(lot.keys[0], lot.token(1))
    chain.mine(1)  # a block's hash is known from the next block on

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is True


def test_verify_tag_signature__at_the_edge_of_the_window__passes_then_goes_stale(cert, chain, lot, challenge):
    window = cert.TAG_CHALLENGE_WINDOW()
    number, signature = challenge(lot.keys[0], lot.token(1))
    # Views run against the newest block: block.number is its number.
    chain.mine(window)
    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is True

    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__challenge_for_the_current_block__fails(cert, chain, lot, challenge):
    number, signature = challenge(lot.keys[0], lot.token(1))

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__wrong_key__fails(cert, chain, lot, challenge, fresh_key):
    number, signature = challenge(fresh_key.key, lot.token(1))
    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__key_of_another_bottle_of_the_lot__fails(cert, chain, lot, challenge):
    # Bottle 2's genuine tag answering for bottle 1 (with either proof).
    number, signature = challenge(lot.keys[1], lot.token(1))
    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False
    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(2)) is False


def test_verify_tag_signature__challenge_for_another_token__fails(cert, chain, lot, challenge):
    # Bottle 2's tag answered a challenge for bottle 1; it is replayed for bottle 2.
    number, signature = challenge(lot.keys[1], lot.token(1))
    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(2), number, signature, lot.tree.proof(2)) is False


def test_verify_tag_signature__proof_for_another_lot__fails(cert, chain, lot, create_lot, challenge):
    # The same serial of another lot: its tag and proof are genuine there, not here.
    other = create_lot(10)
    number, signature = challenge(other.keys[0], lot.token(1))
    chain.mine(1)

    assert cert.verify_tag_signature(other.token(1), number, signature, other.tree.proof(1)) is False
    assert cert.verify_tag_signature(lot.token(1), number, signature, other.tree.proof(1)) is False


def test_verify_tag_signature__wrong_block_hash__fails(cert, chain, lot, challenge):
    head = chain.blocks.head.number
    number, signature = challenge(lot.keys[0], lot.token(1), head, keccak(text="not the block hash"))
    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__future_block__fails(cert, chain, lot, challenge):
    number, signature = challenge(lot.keys[0], lot.token(1), chain.blocks.head.number, b"\x00" * 32)

    assert cert.verify_tag_signature(lot.token(1), number + 5, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__another_chain__fails(cert, chain, chain_id, lot, challenge):
    number, signature = challenge(lot.keys[0], lot.token(1), on_chain=chain_id + 1)
    chain.mine(1)

    assert cert.verify_tag_signature(lot.token(1), number, signature, lot.tree.proof(1)) is False


def test_verify_tag_signature__redeemed_bottle__still_checks_its_tag(cert, chain, lot, holder, custodian,
                                                                     held_token, challenge):
    put_in_state(REDEEMED, cert, held_token, holder, custodian, None)
    number, signature = challenge(lot.keys[1], held_token)
    chain.mine(1)

    assert cert.verify_tag_signature(held_token, number, signature, lot.tree.proof(2)) is True


# ------------------------------------------------ flags


def test_flag__by_holder__records_the_reason_and_that_the_holder_raised_it(cert, held_token, holder):
    receipt = cert.flag(held_token, REASON_HASH, sender=holder)

    record = cert.certificate(held_token)
    assert (record.state, record.flag_reason_hash, record.flagged_by_issuer) == (FLAGGED, REASON_HASH, False)
    assert emitted(receipt, cert.CertificateFlagged, cert) == [(held_token, holder.address, REASON_HASH)]


def test_flag__by_issuer__records_that_the_issuer_raised_it(cert, held_token, winery):
    cert.flag(held_token, REASON_HASH, sender=winery)

    record = cert.certificate(held_token)
    assert (record.state, record.flag_reason_hash, record.flagged_by_issuer) == (FLAGGED, REASON_HASH, True)
    assert cert.state_of(held_token) == FLAGGED and cert.locked(held_token) is True


def test_clear_flag__after_issuer_flag__is_active_and_shows_no_flag(cert, held_token, holder, winery, recipient):
    cert.flag(held_token, REASON_HASH, sender=winery)

    cert.clear_flag(held_token, sender=winery)

    record = cert.certificate(held_token)
    assert (record.state, record.flag_reason_hash, record.flagged_by_issuer) == (ACTIVE, b"\x00" * 32, False)
    cert.transferFrom(holder, recipient, held_token, sender=holder)


def test_flag__gift_pending__reverts_until_revoked(cert, gifted, holder):
    with ape.reverts(state_error(GIFT_PENDING)):
        cert.flag(gifted, REASON_HASH, sender=holder)

    cert.revoke_gift(gifted, sender=holder)
    cert.flag(gifted, REASON_HASH, sender=holder)
    assert cert.state_of(gifted) == FLAGGED


# ------------------------------------------------ signed forms (relayer)


#: primary type -> (function name, extra message fields and call arguments)
SIGNED_ACTIONS = ["CreateGift", "RevokeGift", "RequestRedemption", "Flag"]


@pytest.fixture
def signed_action(cert, sign_typed, new_key):
    """Builder: (typed message, submit(relayer, signature)) for one signed holder
    action on ``token_id`` by ``holder`` with ``nonce``."""

    def _build(primary_type: str, holder, token_id: int, nonce: int, deadline: int = FAR):
        h = _address(holder)
        if primary_type == "CreateGift":
            key = new_key().address
            message = eip712.create_gift_message(h, token_id, key, 2**40, nonce, deadline)
            call = lambda sig, sender, **kw: cert.create_gift_with_signature(  # noqa: E731
                kw.get("holder", h), token_id, kw.get("claim_key", key), 2**40, nonce, deadline, sig, sender=sender)
        elif primary_type == "RevokeGift":
            message = eip712.revoke_gift_message(h, token_id, nonce, deadline)
            call = lambda sig, sender, **kw: cert.revoke_gift_with_signature(  # noqa: E731
                kw.get("holder", h), token_id, nonce, deadline, sig, sender=sender)
        elif primary_type == "RequestRedemption":
            message = eip712.request_redemption_message(h, token_id, ORDER_HASH, nonce, deadline)
            call = lambda sig, sender, **kw: cert.request_redemption_with_signature(  # noqa: E731
                kw.get("holder", h), token_id, ORDER_HASH, nonce, deadline, sig, sender=sender)
        else:
            message = eip712.flag_message(h, token_id, REASON_HASH, nonce, deadline)
            call = lambda sig, sender, **kw: cert.flag_with_signature(  # noqa: E731
                kw.get("holder", h), token_id, REASON_HASH, nonce, deadline, sig, sender=sender)
        return message, call

    return _build


#: The state each signed action starts from, and the state it leaves.
SIGNED_FROM_TO = {"CreateGift": (ACTIVE, GIFT_PENDING), "RevokeGift": (GIFT_PENDING, ACTIVE),
                  "RequestRedemption": (ACTIVE, REDEMPTION_REQUESTED), "Flag": (ACTIVE, FLAGGED)}
SIGNED_EVENTS = {"CreateGift": "GiftCreated", "RevokeGift": "GiftRevoked",
                 "RequestRedemption": "RedemptionRequested", "Flag": "CertificateFlagged"}


def _prepare(primary_type, cert, token_id, holder, new_key):
    if SIGNED_FROM_TO[primary_type][0] == GIFT_PENDING:
        cert.create_gift(token_id, new_key().address, 2**40, sender=holder)


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__relayed__holder_is_the_actor_and_nonce_advances(
    cert, held_token, holder, relayer, new_key, signed_action, sign_typed, primary_type
):
    _prepare(primary_type, cert, held_token, holder, new_key)
    message, submit = signed_action(primary_type, holder, held_token, 0)
    holder_eth = holder.balance

    receipt = submit(sign_typed(holder, primary_type, message), relayer)

    assert cert.state_of(held_token) == SIGNED_FROM_TO[primary_type][1]
    assert cert.nonces(holder) == 1
    assert holder.balance == holder_eth, "the holder pays no gas"
    events = list(receipt.decode_logs(getattr(cert, SIGNED_EVENTS[primary_type])))
    assert len(events) == 1 and holder.address in events[0].event_arguments.values()


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__signed_by_someone_else__reverts(
    cert, held_token, holder, attacker, relayer, new_key, signed_action, sign_typed, primary_type
):
    _prepare(primary_type, cert, held_token, holder, new_key)
    message, submit = signed_action(primary_type, holder, held_token, 0)

    with ape.reverts("certificate: invalid signature"):
        submit(sign_typed(attacker, primary_type, message), relayer)

    assert cert.state_of(held_token) == SIGNED_FROM_TO[primary_type][0]
    assert cert.nonces(holder) == 0


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__by_a_signer_who_is_not_the_holder__reverts(
    cert, held_token, holder, attacker, relayer, new_key, signed_action, sign_typed, primary_type
):
    # A valid signature of the attacker's own, for the holder's certificate.
    _prepare(primary_type, cert, held_token, holder, new_key)
    message, submit = signed_action(primary_type, attacker, held_token, 0)

    with ape.reverts(NOT_HOLDER if primary_type != "Flag" else "certificate: caller is not the holder or the issuer"):
        submit(sign_typed(attacker, primary_type, message), relayer)


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__replayed_nonce__reverts(
    cert, held_token, holder, relayer, winery, custodian, new_key, signed_action, sign_typed, primary_type
):
    _prepare(primary_type, cert, held_token, holder, new_key)
    message, submit = signed_action(primary_type, holder, held_token, 0)
    signature = sign_typed(holder, primary_type, message)
    submit(signature, relayer)
    # Back to the starting state, so only the nonce can refuse the replay.
    if primary_type == "CreateGift":
        cert.revoke_gift(held_token, sender=holder)
    elif primary_type == "RevokeGift":
        cert.create_gift(held_token, new_key().address, 2**40, sender=holder)
    elif primary_type == "RequestRedemption":
        cert.reject_redemption(held_token, REJECTION_HASH, sender=custodian)
    else:
        cert.clear_flag(held_token, sender=winery)

    with ape.reverts("certificate: invalid nonce"):
        submit(signature, relayer)


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__expired_deadline__reverts(
    cert, chain, held_token, holder, relayer, new_key, signed_action, sign_typed, primary_type
):
    _prepare(primary_type, cert, held_token, holder, new_key)
    deadline = chain.pending_timestamp + 10
    message, submit = signed_action(primary_type, holder, held_token, 0, deadline)
    signature = sign_typed(holder, primary_type, message)
    chain.pending_timestamp = deadline + 1

    with ape.reverts("certificate: signature expired"):
        submit(signature, relayer)


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__signed_with_the_transfer_nonce_already_used__reverts(
    cert, held_token, holder, recipient, relayer, new_key, signed_action, sign_typed, sign_transfer, lot,
    winery, primary_type
):
    # One nonce sequence per holder: a signed transfer consumes nonce 0 first.
    other = lot.token(3)
    cert.transferFrom(winery, holder, other, sender=winery)
    cert.transfer_with_signature(holder, recipient, other, 0, FAR,
                                 sign_transfer(holder, holder.address, recipient.address, other, 0, FAR),
                                 sender=relayer)
    _prepare(primary_type, cert, held_token, holder, new_key)
    message, submit = signed_action(primary_type, holder, held_token, 0)

    with ape.reverts("certificate: invalid nonce"):
        submit(sign_typed(holder, primary_type, message), relayer)


def test_create_gift_with_signature__relayer_swaps_the_claim_key__reverts(
    cert, held_token, holder, relayer, attacker, signed_action, sign_typed
):
    message, submit = signed_action("CreateGift", holder, held_token, 0)
    signature = sign_typed(holder, "CreateGift", message)

    with ape.reverts("certificate: invalid signature"):
        submit(signature, relayer, claim_key=attacker.address)


@pytest.mark.parametrize("primary_type", SIGNED_ACTIONS)
def test_signed_action__erc1271_contract_holder__relayed(
    cert, lot, winery, holder, attacker, relayer, wallet, new_key, signed_action, sign_typed, primary_type
):
    token_id = lot.token(4)
    cert.transferFrom(winery, wallet, token_id, sender=winery)
    if primary_type == "RevokeGift":
        create, submit_create = signed_action("CreateGift", wallet, token_id, 0)
        submit_create(sign_typed(holder, "CreateGift", create), relayer)
    nonce = cert.nonces(wallet)
    message, submit = signed_action(primary_type, wallet, token_id, nonce)

    # The wallet's owner key signs; a stranger's key is refused.
    with ape.reverts("certificate: invalid signature"):
        submit(sign_typed(attacker, primary_type, message), relayer)
    submit(sign_typed(holder, primary_type, message), relayer)

    assert cert.state_of(token_id) == SIGNED_FROM_TO[primary_type][1]
    assert cert.nonces(wallet) == nonce + 1


def test_signed_action__zero_address_holder__reverts(cert, lot, relayer, signed_action):
    message, submit = signed_action("Flag", ZERO_ADDRESS, lot.token(1), 0)

    with ape.reverts("certificate: signer is the zero address"):
        submit(b"\x00" * 65, relayer)


def test_create_gift_with_signature__while_paused__reverts_and_keeps_nonce(
    cert, admin, held_token, holder, relayer, signed_action, sign_typed
):
    message, submit = signed_action("CreateGift", holder, held_token, 0)
    signature = sign_typed(holder, "CreateGift", message)
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        submit(signature, relayer)

    assert cert.nonces(holder) == 0


def test_flag_with_signature__while_paused__flags(cert, admin, held_token, holder, relayer, signed_action,
                                                  sign_typed):
    message, submit = signed_action("Flag", holder, held_token, 0)
    cert.pause(sender=admin)

    submit(sign_typed(holder, "Flag", message), relayer)

    assert cert.state_of(held_token) == FLAGGED


# ------------------------------------------------ re-entrancy through the receiver hook


@pytest.fixture
def deploy_reentrant(project, cert, attacker):
    def _deploy(behaviour: Reentrant):
        return attacker.deploy(project.MockReentrantReceiver, cert, int(behaviour), attacker)

    return _deploy


def test_claim_gift__to_receiver_trying_every_call__gains_nothing(
    cert, lot, gifted, holder, winery, attacker, fresh_key, new_key, claim_signature, deploy_reentrant, expiry
):
    receiver = deploy_reentrant(Reentrant.TRY_EVERY_CALL)
    # A second pending gift whose claim for the attacker the hook also tries.
    second, second_key = lot.token(8), new_key()
    cert.create_gift(second, second_key.address, expiry, sender=winery)
    receiver.set_claim(second, claim_signature(second_key, second, attacker), sender=attacker)
    attacker_balance = cert.balanceOf(attacker)

    receipt = cert.claim_gift(gifted, receiver, claim_signature(fresh_key, gifted, receiver), sender=attacker)

    assert receiver.reentries_tried() == 9
    assert receiver.reentries_succeeded() == 0, "a re-entrant call went through"
    assert cert.ownerOf(gifted) == receiver and cert.state_of(gifted) == ACTIVE
    assert cert.ownerOf(second) == winery and cert.state_of(second) == GIFT_PENDING
    assert cert.balanceOf(attacker) == attacker_balance
    assert cert.getApproved(gifted) == ZERO_ADDRESS and not cert.isApprovedForAll(receiver, attacker)
    assert emitted(receipt, cert.Transfer, cert) == [(holder.address, receiver.address, gifted)]


def test_safe_transfer__to_receiver_trying_every_call__gains_nothing(
    cert, held_token, holder, attacker, deploy_reentrant
):
    receiver = deploy_reentrant(Reentrant.TRY_EVERY_CALL)

    cert.safeTransferFrom(holder, receiver, held_token, sender=holder)

    assert receiver.reentries_tried() == 9
    assert receiver.reentries_succeeded() == 0, "a re-entrant call went through"
    assert cert.ownerOf(held_token) == receiver and cert.state_of(held_token) == ACTIVE
    assert cert.balanceOf(attacker) == 0


def test_claim_gift__to_receiver_reentering__reverts_and_gift_stays_claimable(
    cert, gifted, holder, recipient, attacker, fresh_key, claim_signature, deploy_reentrant
):
    receiver = deploy_reentrant(Reentrant.REENTER_TRANSFER_FROM)

    with ape.reverts():
        cert.claim_gift(gifted, receiver, claim_signature(fresh_key, gifted, receiver), sender=attacker)

    assert cert.ownerOf(gifted) == holder and cert.state_of(gifted) == GIFT_PENDING
    cert.claim_gift(gifted, recipient, claim_signature(fresh_key, gifted, recipient), sender=recipient)
    assert cert.ownerOf(gifted) == recipient


# ------------------------------------------------ pledges: the lending contract's hooks
#
# A certificate of its own whose lending contract is an account we hold the key
# of (the "lending desk"), so that the hooks are exercised directly;
# `test_lending.py` exercises them through `PledgeLending`. The certificate
# names only a contract: the desk carries an EIP-7702 delegation designator,
# so it has code and still sends transactions.

NOT_LENDING = "certificate: caller is not the lending contract"
PLEDGED_ERROR = "certificate: token is pledged"


#: EIP-7702 delegation designator (0xef0100 + the delegate's address).
DELEGATION = bytes.fromhex("ef0100000000000000000000000000000000000000dead")


@pytest.fixture(scope="module")
def lending_desk(accounts, chain):
    """Stands in for the lending contract: an account with code."""
    desk = accounts[17]
    chain.provider.set_code(desk.address, DELEGATION)
    return desk


@pytest.fixture(scope="module")
def desk_cert(project, admin, winery, custodian, lending_desk):
    from amphora.deploy import CertificateSettings

    c = admin.deploy(project.WineCertificate, *CertificateSettings().constructor_args())
    c.grant_issuer(winery, "Domaine Test", sender=admin)
    c.grant_custodian(custodian, "Cave Test", sender=admin)
    c.set_lending(lending_desk, sender=admin)
    return c


@pytest.fixture
def desk_lot(desk_cert, winery, custodian, holder):
    """Bottles 1 and 2 of a fresh lot on ``desk_cert``, sold to ``holder``."""
    from amphora.lots import LotDescription, issue

    lot_id = issue(desk_cert, winery, LotDescription.from_mapping({
        "producer": "Domaine Test", "wine": "Cuvée Essai", "region": "Pauillac AOC", "bottle_count": 3,
        "volume_ml": 750, "bottling_date": 1_717_200_000, "custodian": custodian.address, "vintage": 2019,
    })).lot_id
    tokens = [(lot_id << 32) | s for s in (1, 2)]
    for t in tokens:
        desk_cert.transferFrom(winery, holder, t, sender=winery)
    return tokens


@pytest.fixture
def pledged(desk_cert, desk_lot, holder, lending_desk):
    desk_cert.pledge(desk_lot[0], holder, sender=lending_desk)
    return desk_lot[0]


def test_deployed_certificate__fits_the_eip170_code_limit(desk_cert, chain):
    size = len(chain.provider.get_code(desk_cert.address))
    assert size <= 24_576, f"{size} bytes"


def test_set_lending__second_time__reverts(desk_cert, admin, attacker):
    with ape.reverts("certificate: lending already set"):
        desk_cert.set_lending(attacker, sender=admin)
    assert desk_cert.lending() != attacker.address


def test_set_lending__by_non_admin__reverts(project, admin, attacker, registry):
    from amphora.deploy import CertificateSettings

    c = admin.deploy(project.WineCertificate, *CertificateSettings().constructor_args())
    with ape.reverts(NOT_OWNER):
        c.set_lending(registry, sender=attacker)
    receipt = c.set_lending(registry, sender=admin)
    assert c.lending() == registry.address
    assert emitted(receipt, c.LendingSet, c) == [(registry.address,)]


def test_pledge__by_the_lending_contract__locks_and_keeps_the_holder(desk_cert, desk_lot, holder, lending_desk):
    token_id = desk_lot[0]
    receipt = desk_cert.pledge(token_id, holder, sender=lending_desk)

    assert desk_cert.state_of(token_id) == PLEDGED
    assert desk_cert.locked(token_id) is True
    assert desk_cert.ownerOf(token_id) == holder
    assert desk_cert.balanceOf(holder) == 2
    assert desk_cert.certificate(token_id).locked is True
    assert emitted(receipt, desk_cert.Locked, desk_cert) == [(token_id,)]
    assert emitted(receipt, desk_cert.CertificatePledged, desk_cert) == [(token_id, holder.address)]


@pytest.mark.parametrize("caller", ["admin", "holder", "winery", "attacker"])
def test_pledge__by_anyone_but_the_lending_contract__reverts(desk_cert, request, desk_lot, holder, caller):
    with ape.reverts(NOT_LENDING):
        desk_cert.pledge(desk_lot[0], holder, sender=request.getfixturevalue(caller))
    assert desk_cert.state_of(desk_lot[0]) == ACTIVE


def test_pledge__borrower_is_not_the_holder__reverts(desk_cert, desk_lot, attacker, lending_desk):
    with ape.reverts("certificate: borrower is not the holder"):
        desk_cert.pledge(desk_lot[0], attacker, sender=lending_desk)
    assert desk_cert.state_of(desk_lot[0]) == ACTIVE


@pytest.mark.parametrize("state", [GIFT_PENDING, REDEMPTION_REQUESTED, FLAGGED, PLEDGED],
                         ids=["gift pending", "redemption requested", "flagged", "pledged"])
def test_pledge__not_in_good_standing__reverts_naming_the_state(
    desk_cert, desk_lot, holder, custodian, lending_desk, new_key, state
):
    token_id = desk_lot[0]
    if state == PLEDGED:
        desk_cert.pledge(token_id, holder, sender=lending_desk)
    else:
        put_in_state(state, desk_cert, token_id, holder, custodian, new_key())

    with ape.reverts(PLEDGED_ERROR if state == PLEDGED else state_error(state)):
        desk_cert.pledge(token_id, holder, sender=lending_desk)
    assert desk_cert.state_of(token_id) == state


def test_pledge__redeemed__reverts_token_does_not_exist(desk_cert, desk_lot, holder, custodian, lending_desk):
    put_in_state(REDEEMED, desk_cert, desk_lot[0], holder, custodian, None)
    with ape.reverts(NO_TOKEN):
        desk_cert.pledge(desk_lot[0], holder, sender=lending_desk)


def test_pledge__custodian_role_revoked__reverts(desk_cert, admin, desk_lot, holder, custodian, lending_desk):
    desk_cert.revoke_custodian(custodian, sender=admin)
    with ape.reverts("certificate: custodian is not registered"):
        desk_cert.pledge(desk_lot[0], holder, sender=lending_desk)


def test_pledge__while_paused__reverts(desk_cert, admin, desk_lot, holder, lending_desk):
    desk_cert.pause(sender=admin)
    with ape.reverts(PAUSED):
        desk_cert.pledge(desk_lot[0], holder, sender=lending_desk)


@pytest.mark.parametrize("spender", ["holder", "relayer", "operator"], ids=["owner", "approved", "operator"])
@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
def test_transfer__while_pledged__reverts(
    desk_cert, request, desk_lot, holder, recipient, relayer, operator, lending_desk, spender, transfer_name
):
    token_id = desk_lot[0]
    desk_cert.approve(relayer, token_id, sender=holder)
    desk_cert.setApprovalForAll(operator, True, sender=holder)
    desk_cert.pledge(token_id, holder, sender=lending_desk)

    with ape.reverts(PLEDGED_ERROR):
        TRANSFERS[transfer_name](desk_cert, holder, recipient, token_id, request.getfixturevalue(spender))
    assert desk_cert.ownerOf(token_id) == holder


def test_signed_transfer__while_pledged__reverts_and_keeps_nonce(
    desk_cert, pledged, holder, recipient, relayer, chain_id
):
    data = eip712.typed_data("Transfer", eip712.transfer_message(holder.address, recipient.address, pledged, 0, FAR),
                             chain_id, desk_cert.address)
    with ape.reverts(PLEDGED_ERROR):
        desk_cert.transfer_with_signature(holder, recipient, pledged, 0, FAR, eip712.sign(data, holder.private_key),
                                          sender=relayer)
    assert desk_cert.ownerOf(pledged) == holder
    assert desk_cert.nonces(holder) == 0


@pytest.mark.parametrize("action", ["create_gift", "request_redemption", "flag by holder", "flag by issuer",
                                    "clear_flag", "revoke_gift", "confirm_redemption", "reject_redemption"])
def test_lifecycle_action__while_pledged__reverts_naming_the_state(
    desk_cert, pledged, holder, winery, custodian, new_key, action
):
    """A pledged certificate cannot be gifted, redeemed or flagged (the lock
    already keeps it from moving; a flag would change the lender's collateral
    under it): every action reverts naming the pledge."""
    calls = {
        "create_gift": lambda: desk_cert.create_gift(pledged, new_key().address, FAR, sender=holder),
        "request_redemption": lambda: desk_cert.request_redemption(pledged, ORDER_HASH, sender=holder),
        "flag by holder": lambda: desk_cert.flag(pledged, REASON_HASH, sender=holder),
        "flag by issuer": lambda: desk_cert.flag(pledged, REASON_HASH, sender=winery),
        "clear_flag": lambda: desk_cert.clear_flag(pledged, sender=winery),
        "revoke_gift": lambda: desk_cert.revoke_gift(pledged, sender=holder),
        "confirm_redemption": lambda: desk_cert.confirm_redemption(pledged, sender=custodian),
        "reject_redemption": lambda: desk_cert.reject_redemption(pledged, REJECTION_HASH, sender=custodian),
    }
    with ape.reverts(PLEDGED_ERROR):
        calls[action]()
    assert desk_cert.state_of(pledged) == PLEDGED


def test_release__to_the_holder__unlocks_and_keeps_the_owner(desk_cert, pledged, holder, lending_desk):
    receipt = desk_cert.release(pledged, ZERO_ADDRESS, sender=lending_desk)

    assert desk_cert.state_of(pledged) == ACTIVE
    assert desk_cert.ownerOf(pledged) == holder
    assert receipt.return_value == holder.address
    assert emitted(receipt, desk_cert.Unlocked, desk_cert) == [(pledged,)]
    assert emitted(receipt, desk_cert.Transfer, desk_cert) == []
    assert emitted(receipt, desk_cert.CertificateReleased, desk_cert) == [(pledged, holder.address, holder.address)]


def test_release__to_the_lender__moves_it_unlocked_and_clears_approvals(
    desk_cert, desk_lot, holder, relayer, lender, recipient, lending_desk
):
    token_id = desk_lot[0]
    desk_cert.approve(relayer, token_id, sender=holder)
    desk_cert.pledge(token_id, holder, sender=lending_desk)
    receipt = desk_cert.release(token_id, lender, sender=lending_desk)

    assert desk_cert.ownerOf(token_id) == lender
    assert desk_cert.state_of(token_id) == ACTIVE
    assert (desk_cert.balanceOf(holder), desk_cert.balanceOf(lender)) == (1, 1)
    assert desk_cert.getApproved(token_id) == ZERO_ADDRESS
    assert emitted(receipt, desk_cert.Unlocked, desk_cert) == [(token_id,)]
    assert emitted(receipt, desk_cert.Transfer, desk_cert) == [(holder.address, lender.address, token_id)]
    assert emitted(receipt, desk_cert.CertificateReleased, desk_cert) == [
        (token_id, holder.address, lender.address)]
    desk_cert.transferFrom(lender, recipient, token_id, sender=lender)  # the lender's to sell
    assert desk_cert.ownerOf(token_id) == recipient


@pytest.mark.parametrize("caller", ["admin", "holder", "lender", "attacker"])
def test_release__by_anyone_but_the_lending_contract__reverts(desk_cert, request, pledged, caller):
    with ape.reverts(NOT_LENDING):
        desk_cert.release(pledged, request.getfixturevalue(caller), sender=request.getfixturevalue(caller))
    assert desk_cert.state_of(pledged) == PLEDGED


def test_release__not_pledged__reverts_naming_the_state(desk_cert, desk_lot, holder, lending_desk):
    desk_cert.flag(desk_lot[0], REASON_HASH, sender=holder)
    with ape.reverts(state_error(FLAGGED)):
        desk_cert.release(desk_lot[0], ZERO_ADDRESS, sender=lending_desk)
    with ape.reverts("certificate: token is active"):
        desk_cert.release(desk_lot[1], ZERO_ADDRESS, sender=lending_desk)


def test_release__while_paused__unlocks_for_the_holder_but_does_not_move(
    desk_cert, admin, pledged, holder, lender, lending_desk
):
    desk_cert.pause(sender=admin)
    with ape.reverts(PAUSED):
        desk_cert.release(pledged, lender, sender=lending_desk)
    desk_cert.release(pledged, holder, sender=lending_desk)
    assert desk_cert.state_of(pledged) == ACTIVE
    assert desk_cert.ownerOf(pledged) == holder
