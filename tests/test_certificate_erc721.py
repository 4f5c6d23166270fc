"""The WineCertificate plugged into the ERC-721 conformance suite, plus the
ERC-721 behaviour that is the certificate's own: lot issuance (ERC-2309),
untouched tokens, the approval epoch, ERC-5192 locking by flags, ERC-4906,
pausing and re-entrancy through the receiver hook."""

from __future__ import annotations

from enum import IntEnum

import ape
import pytest
from conftest import BASE_URI, BOTTLING_DATE
from erc721_behaviour import (
    TRANSFERS,
    ZERO_ADDRESS,
    BehavesLikeERC721,
    BehavesLikeERC721Metadata,
    BehavesLikeNonPayableERC721,
    ReceiverBehaviour,
    SupportsERC721Interfaces,
    emitted,
)

from amphora.deploy import CertificateSettings

ERC5192_INTERFACE_ID = "0xb45a3c0e"
ERC4906_INTERFACE_ID = "0x49064906"



class Reentrant(IntEnum):
    """What ``MockReentrantReceiver`` does from inside its receiver hook."""

    REENTER_TRANSFER_FROM = 0
    REENTER_SAFE_TRANSFER_FROM = 1
    READ_OWNER = 2
    TRY_REENTER = 3


CERTIFICATE_ERRORS = {
    "balance_of_zero_address": "certificate: balance query for the zero address",
    "nonexistent_token": "certificate: token does not exist",
    "approval_to_current_owner": "certificate: approval to current owner",
    "approve_unauthorised": "certificate: caller is not token owner or approved for all",
    "approve_to_caller": "certificate: approve to caller",
    "transfer_unauthorised": "certificate: caller is not token owner or approved",
    "transfer_from_incorrect_owner": "certificate: transfer from incorrect owner",
    "transfer_to_zero_address": "certificate: transfer to the zero address",
    "non_receiver": "certificate: transfer to non-ERC721Receiver implementer",
}

# ------------------------------------------------ the suite's fixtures


@pytest.fixture
def suite_lot(create_lot):
    """A lot of three bottles for the conformance suite."""
    return create_lot(3)


@pytest.fixture(params=["sold", "unsold"])
def erc721_scenario(request):
    """The suite runs twice: on bottles sold to a holder (each has storage of
    its own) and on the winery's unsold stock (untouched: no storage at all)."""
    return request.param


@pytest.fixture
def erc721(cert):
    return cert


@pytest.fixture
def erc721_owner(erc721_scenario, holder, winery):
    return holder if erc721_scenario == "sold" else winery


@pytest.fixture
def erc721_owner_tokens(erc721_scenario, cert, suite_lot, winery, holder):
    tokens = [suite_lot.token(serial) for serial in (1, 2, 3)]
    if erc721_scenario == "unsold":
        return tokens
    for token_id in tokens[:2]:
        cert.transferFrom(winery, holder, token_id, sender=winery)
    return tokens[:2]


@pytest.fixture
def erc721_approved(relayer):
    """Stands in for a marketplace approved for one bottle; the relayer has no
    power of its own over tokens."""
    return relayer


@pytest.fixture
def erc721_operator(operator):
    return operator


@pytest.fixture
def erc721_recipient(recipient):
    return recipient


@pytest.fixture
def erc721_stranger(attacker):
    return attacker


@pytest.fixture
def erc721_nonexistent_token(suite_lot):
    """The serial just past the end of an issued lot."""
    return suite_lot.token(4)


@pytest.fixture
def erc721_errors():
    return CERTIFICATE_ERRORS


@pytest.fixture
def erc721_extra_interfaces():
    return [ERC5192_INTERFACE_ID, ERC4906_INTERFACE_ID]


@pytest.fixture
def erc721_name():
    return CertificateSettings().name


@pytest.fixture
def erc721_symbol():
    return CertificateSettings().symbol


@pytest.fixture
def erc721_token_uri():
    return lambda token_id: f"{BASE_URI}{token_id}"


class TestCertificateBehavesLikeERC721(BehavesLikeERC721):
    pass


class TestCertificateSupportsERC721Interfaces(SupportsERC721Interfaces):
    pass


class TestCertificateBehavesLikeERC721Metadata(BehavesLikeERC721Metadata):
    pass


class TestCertificateTransfersAreNonPayable(BehavesLikeNonPayableERC721):
    pass


# ------------------------------------------------ certificate-specific

MAX_UINT256 = 2**256 - 1
FLAGGED = 5
REASON_HASH = b"\x5a" * 32
NOT_OWNER = "ownable: caller is not the owner"
PAUSED = "pausable: contract is paused"
TOKEN_FLAGGED = "certificate: token is flagged"

#: Every state-changing function of the certificate. A new one must be added
#: here on purpose, after checking that it cannot move a token its caller
#: neither owns nor is approved for.
CERTIFICATE_STATE_CHANGING_FUNCTIONS = {
    # ERC-721
    "approve", "setApprovalForAll", "transferFrom", "safeTransferFrom",
    # holder (each also signed, for the relayer)
    "transfer_with_signature", "flag", "flag_with_signature",
    "create_gift", "create_gift_with_signature", "revoke_gift", "revoke_gift_with_signature",
    "request_redemption", "request_redemption_with_signature",
    # whoever holds a gift's claim key (the holder's own prior approval)
    "claim_gift",
    # the lot's custodian: burn on shipment, or hand back
    "confirm_redemption", "reject_redemption",
    # issuer (clear_flag: the lot's acting issuer, or the admin)
    "issue_lot", "clear_flag",
    # holder: void signatures not yet used, directly or signed (relayable)
    "invalidate_nonces", "invalidate_nonces_with_signature",
    # the lending contract (set once by the admin): lock a holder's certificate on its
    # accepted loan; release it to the holder (repaid) or the lender (foreclosed)
    "pledge", "release",
    # admin
    "set_lending", "set_base_uri", "grant_issuer", "revoke_issuer", "grant_custodian", "revoke_custodian",
    "move_custody", "name_successor_issuer", "pause", "unpause", "transfer_ownership", "accept_ownership",
}


def _issue(cert, issuer, custodian, count):
    return cert.issue_lot(
        custodian, count, 2019, 750, BOTTLING_DATE, b"\x01" * 32, b"\x02" * 32,
        "Domaine Test", "Cuvée Essai", "Pauillac AOC", "ipfs://bafylot", sender=issuer,
    )


@pytest.fixture
def deadline(chain):
    return chain.pending_timestamp + 3_600


@pytest.fixture
def other_issuer(cert, admin, other_winery):
    """A second registered winery, issuer of lots other than the test's."""
    cert.grant_issuer(other_winery, "Domaine Autre", sender=admin)
    return other_winery


@pytest.fixture
def deploy_reentrant(project, cert, attacker):
    """Builder: a ``MockReentrantReceiver`` that sends re-entered tokens to the attacker."""

    def _deploy(behaviour: Reentrant):
        return attacker.deploy(project.MockReentrantReceiver, cert, int(behaviour), attacker)

    return _deploy


@pytest.fixture
def flagged_token(cert, held_token, holder, relayer, operator):
    """``held_token`` approved to ``relayer``, ``operator`` set, then flagged by ``holder``."""
    cert.approve(relayer, held_token, sender=holder)
    cert.setApprovalForAll(operator, True, sender=holder)
    cert.flag(held_token, REASON_HASH, sender=holder)
    return held_token


# ------------------------------------------------ issuance (ERC-2309)


def test_issue_lot__emits_one_consecutive_transfer_over_the_lot(cert, winery, custodian):
    receipt = _issue(cert, winery, custodian, 12)

    lot_id = cert.lot_count()
    assert emitted(receipt, cert.ConsecutiveTransfer, cert) == [
        (lot_id << 32 | 1, lot_id << 32 | 12, ZERO_ADDRESS, winery.address)
    ]
    assert emitted(receipt, cert.Transfer, cert) == []


def test_issue_lot__single_bottle__consecutive_transfer_covers_one_token(cert, winery, custodian):
    receipt = _issue(cert, winery, custodian, 1)

    token_id = cert.lot_count() << 32 | 1
    assert emitted(receipt, cert.ConsecutiveTransfer, cert) == [
        (token_id, token_id, ZERO_ADDRESS, winery.address)
    ]


def test_issue_lot__grows_issuer_balance_and_supply_by_bottle_count(cert, winery, custodian):
    balance, supply = cert.balanceOf(winery), cert.totalSupply()

    _issue(cert, winery, custodian, 25)

    assert cert.balanceOf(winery) == balance + 25
    assert cert.totalSupply() == supply + 25


def test_issue_lot__by_non_issuer__reverts(cert, attacker, custodian):
    with ape.reverts("certificate: caller is not an issuer"):
        _issue(cert, attacker, custodian, 5)

    assert cert.balanceOf(attacker) == 0


# ------------------------------------------------ untouched tokens


@pytest.mark.parametrize("serial", [1, 5, 10])
def test_owner_of__untouched_token_of_fresh_lot__is_issuer(cert, lot, winery, serial):
    assert cert.ownerOf(lot.token(serial)) == winery
    assert cert.locked(lot.token(serial)) is False
    assert cert.getApproved(lot.token(serial)) == ZERO_ADDRESS


def test_owner_of__untouched_tokens_of_two_lots__is_each_lots_issuer(
    cert, lot, create_lot, winery, other_issuer
):
    other_lot = create_lot(3, issuer=other_issuer)

    assert cert.ownerOf(lot.token(10)) == winery
    assert cert.ownerOf(other_lot.token(1)) == other_issuer


@pytest.mark.parametrize(
    "lot_offset, serial", [(0, 0), (0, 11), (1, 1), (None, 1)],
    ids=["serial-zero", "serial-past-lot", "lot-not-issued", "lot-zero"],
)
def test_owner_of__id_outside_every_lot__reverts(cert, lot, lot_offset, serial):
    lot_id = 0 if lot_offset is None else lot.lot_id + lot_offset

    with ape.reverts("certificate: token does not exist"):
        cert.ownerOf(lot_id << 32 | serial)


def test_transfer__untouched_token__moves_it_and_leaves_neighbours_with_issuer(cert, lot, winery, holder):
    balance = cert.balanceOf(winery)

    receipt = cert.transferFrom(winery, holder, lot.token(10), sender=winery)

    assert cert.ownerOf(lot.token(10)) == holder
    assert cert.ownerOf(lot.token(9)) == winery
    assert cert.balanceOf(winery) == balance - 1
    assert cert.balanceOf(holder) == 1
    assert emitted(receipt, cert.Transfer, cert) == [(winery.address, holder.address, lot.token(10))]


def test_transfer__untouched_token_by_stranger__reverts(cert, lot, winery, attacker):
    with ape.reverts("certificate: caller is not token owner or approved"):
        cert.transferFrom(winery, attacker, lot.token(10), sender=attacker)

    assert cert.ownerOf(lot.token(10)) == winery


# ------------------------------------------------ metadata (ERC-721, ERC-4906)


def test_token_uri__is_base_uri_and_decimal_token_id(cert, lot):
    token_id = lot.token(7)

    assert cert.baseURI() == BASE_URI
    assert cert.tokenURI(token_id) == BASE_URI + str(token_id)


def test_set_base_uri__by_admin__changes_every_uri_and_emits_batch_metadata_update(
    cert, admin, lot, held_token
):
    new_base = "ipfs://bafynewbase/"

    receipt = cert.set_base_uri(new_base, sender=admin)

    assert cert.baseURI() == new_base
    assert cert.tokenURI(lot.token(1)) == new_base + str(lot.token(1))
    assert cert.tokenURI(held_token) == new_base + str(held_token)
    assert emitted(receipt, cert.BatchMetadataUpdate, cert) == [(0, MAX_UINT256)]
    assert emitted(receipt, cert.BaseURIUpdated, cert) == [(new_base,)]


@pytest.mark.parametrize("caller", ["winery", "holder", "attacker"])
def test_set_base_uri__by_non_admin__reverts(cert, request, caller):
    with ape.reverts(NOT_OWNER):
        cert.set_base_uri("https://evil.example/", sender=request.getfixturevalue(caller))

    assert cert.baseURI() == BASE_URI


@pytest.mark.parametrize(
    "interface_id", [ERC5192_INTERFACE_ID, ERC4906_INTERFACE_ID], ids=["ERC-5192", "ERC-4906"]
)
def test_supports_interface__lock_and_metadata_update_extensions__is_true(cert, interface_id):
    assert cert.supportsInterface(interface_id) is True


# ------------------------------------------------ re-entrancy through the receiver hook


@pytest.mark.parametrize(
    "behaviour", [Reentrant.REENTER_TRANSFER_FROM, Reentrant.REENTER_SAFE_TRANSFER_FROM],
    ids=["transferFrom", "safeTransferFrom"],
)
def test_safe_transfer__to_receiver_reentering_the_certificate__reverts_and_token_stays(
    cert, deploy_reentrant, held_token, holder, attacker, behaviour
):
    receiver = deploy_reentrant(behaviour)

    with ape.reverts():
        cert.safeTransferFrom(holder, receiver, held_token, sender=holder)

    assert cert.ownerOf(held_token) == holder
    assert cert.balanceOf(receiver) == 0
    assert cert.balanceOf(attacker) == 0


def test_safe_transfer__to_receiver_trying_to_reenter__completes_without_the_reentrant_move(
    cert, deploy_reentrant, held_token, holder, attacker
):
    receiver = deploy_reentrant(Reentrant.TRY_REENTER)

    receipt = cert.safeTransferFrom(holder, receiver, held_token, sender=holder)

    assert receiver.hook_ran() is True
    assert receiver.reentry_succeeded() is False
    assert cert.ownerOf(held_token) == receiver
    assert cert.balanceOf(attacker) == 0
    assert emitted(receipt, cert.Transfer, cert) == [(holder.address, receiver.address, held_token)]


def test_safe_transfer__to_receiver_reading_owner_in_hook__sees_itself_as_owner(
    cert, deploy_reentrant, held_token, holder
):
    receiver = deploy_reentrant(Reentrant.READ_OWNER)

    cert.safeTransferFrom(holder, receiver, held_token, sender=holder)

    assert receiver.owner_seen() == receiver
    assert receiver.balance_seen() == 1
    assert cert.ownerOf(held_token) == receiver


def test_signed_transfer__to_receiver_reentering_the_certificate__reverts_and_keeps_nonce(
    cert, deploy_reentrant, held_token, holder, relayer, sign_transfer, deadline
):
    receiver = deploy_reentrant(Reentrant.REENTER_TRANSFER_FROM)
    signature = sign_transfer(holder, holder.address, receiver.address, held_token, 0, deadline)

    with ape.reverts():
        cert.transfer_with_signature(holder, receiver, held_token, 0, deadline, signature, sender=relayer)

    assert cert.ownerOf(held_token) == holder
    assert cert.nonces(holder) == 0


# ------------------------------------------------ approvals across transfers (the epoch)


@pytest.mark.parametrize("token_fixture", ["held_token", "token"], ids=["sold", "unsold"])
def test_get_approved__after_token_returns_to_previous_owner__stays_cleared(
    cert, request, token_fixture, relayer, recipient
):
    token_id = request.getfixturevalue(token_fixture)
    owner = cert.ownerOf(token_id)
    cert.approve(relayer, token_id, sender=owner)
    cert.transferFrom(owner, recipient, token_id, sender=owner)

    cert.transferFrom(recipient, owner, token_id, sender=recipient)

    assert cert.ownerOf(token_id) == owner
    assert cert.getApproved(token_id) == ZERO_ADDRESS
    with ape.reverts("certificate: caller is not token owner or approved"):
        cert.transferFrom(owner, relayer, token_id, sender=relayer)


def test_approve__after_token_returns_to_previous_owner__approves_anew(
    cert, held_token, holder, relayer, recipient
):
    cert.approve(relayer, held_token, sender=holder)
    cert.transferFrom(holder, recipient, held_token, sender=holder)
    cert.transferFrom(recipient, holder, held_token, sender=recipient)

    cert.approve(relayer, held_token, sender=holder)
    cert.transferFrom(holder, relayer, held_token, sender=relayer)

    assert cert.ownerOf(held_token) == relayer


def test_set_approval_for_all__to_zero_address__reverts(cert, holder):
    with ape.reverts("certificate: operator is the zero address"):
        cert.setApprovalForAll(ZERO_ADDRESS, True, sender=holder)


# ------------------------------------------------ ERC-5192 locking by flags


def test_locked__active_tokens__is_false(cert, token, held_token):
    assert cert.locked(token) is False
    assert cert.locked(held_token) is False


def test_locked__nonexistent_token__reverts(cert, lot):
    with ape.reverts("certificate: token does not exist"):
        cert.locked(lot.token(11))


def test_flag__by_holder__locks_token_and_emits_events(cert, held_token, holder):
    receipt = cert.flag(held_token, REASON_HASH, sender=holder)

    assert cert.locked(held_token) is True
    assert cert.state_of(held_token) == FLAGGED
    assert cert.ownerOf(held_token) == holder
    assert emitted(receipt, cert.Locked, cert) == [(held_token,)]
    assert emitted(receipt, cert.CertificateFlagged, cert) == [(held_token, holder.address, REASON_HASH)]


def test_flag__by_issuer_of_a_sold_token__locks_token(cert, held_token, winery, holder):
    receipt = cert.flag(held_token, REASON_HASH, sender=winery)

    assert cert.locked(held_token) is True
    assert cert.ownerOf(held_token) == holder
    assert emitted(receipt, cert.CertificateFlagged, cert) == [(held_token, winery.address, REASON_HASH)]


def test_flag__untouched_token_by_issuer__locks_it_and_keeps_owner(cert, token, winery):
    receipt = cert.flag(token, REASON_HASH, sender=winery)

    assert cert.locked(token) is True
    assert cert.ownerOf(token) == winery
    assert emitted(receipt, cert.Locked, cert) == [(token,)]


@pytest.mark.parametrize("caller", ["attacker", "other_issuer", "relayer"])
def test_flag__by_neither_holder_nor_issuer__reverts(cert, request, held_token, holder, relayer, caller):
    cert.approve(relayer, held_token, sender=holder)

    with ape.reverts("certificate: caller is not the holder or the issuer"):
        cert.flag(held_token, REASON_HASH, sender=request.getfixturevalue(caller))

    assert cert.locked(held_token) is False


def test_flag__already_flagged__reverts(cert, flagged_token, winery):
    with ape.reverts(TOKEN_FLAGGED):
        cert.flag(flagged_token, REASON_HASH, sender=winery)


def test_flag__nonexistent_token__reverts(cert, lot, winery):
    with ape.reverts("certificate: token does not exist"):
        cert.flag(lot.token(11), REASON_HASH, sender=winery)


@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
@pytest.mark.parametrize("spender", ["holder", "relayer", "operator"], ids=["owner", "approved", "operator"])
def test_transfer__while_flagged__reverts(
    cert, request, flagged_token, holder, recipient, transfer_name, spender
):
    with ape.reverts(TOKEN_FLAGGED):
        TRANSFERS[transfer_name](cert, holder, recipient, flagged_token, request.getfixturevalue(spender))

    assert cert.ownerOf(flagged_token) == holder


def test_signed_transfer__while_flagged__reverts_and_keeps_nonce(
    cert, flagged_token, holder, recipient, relayer, sign_transfer, deadline
):
    signature = sign_transfer(holder, holder.address, recipient.address, flagged_token, 0, deadline)

    with ape.reverts(TOKEN_FLAGGED):
        cert.transfer_with_signature(holder, recipient, flagged_token, 0, deadline, signature, sender=relayer)

    assert cert.ownerOf(flagged_token) == holder
    assert cert.nonces(holder) == 0


def test_clear_flag__by_issuer__unlocks_token_and_emits_events(
    cert, flagged_token, winery, holder, recipient
):
    receipt = cert.clear_flag(flagged_token, sender=winery)

    assert cert.locked(flagged_token) is False
    assert emitted(receipt, cert.Unlocked, cert) == [(flagged_token,)]
    assert emitted(receipt, cert.FlagCleared, cert) == [(flagged_token, winery.address)]
    cert.transferFrom(holder, recipient, flagged_token, sender=holder)
    assert cert.ownerOf(flagged_token) == recipient


@pytest.mark.parametrize("caller", ["holder", "other_issuer", "attacker"])
def test_clear_flag__by_anyone_but_the_lots_issuer_or_the_admin__reverts(cert, request, flagged_token, caller):
    with ape.reverts("certificate: caller is not the issuer"):
        cert.clear_flag(flagged_token, sender=request.getfixturevalue(caller))

    assert cert.locked(flagged_token) is True


def test_clear_flag__token_not_flagged__reverts_naming_the_state(cert, held_token, winery):
    with ape.reverts("certificate: token is active"):
        cert.clear_flag(held_token, sender=winery)


# ------------------------------------------------ pause


def test_pause__by_admin__pauses_and_emits_paused(cert, admin):
    receipt = cert.pause(sender=admin)

    assert cert.paused() is True
    assert emitted(receipt, cert.Paused, cert) == [(admin.address,)]


@pytest.mark.parametrize("caller", ["winery", "holder", "attacker"])
def test_pause__by_non_admin__reverts(cert, request, caller):
    with ape.reverts(NOT_OWNER):
        cert.pause(sender=request.getfixturevalue(caller))

    assert cert.paused() is False


@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
def test_transfer__while_paused__reverts(cert, admin, held_token, holder, recipient, transfer_name):
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        TRANSFERS[transfer_name](cert, holder, recipient, held_token, holder)

    assert cert.ownerOf(held_token) == holder


def test_signed_transfer__while_paused__reverts(
    cert, admin, held_token, holder, recipient, relayer, sign_transfer, deadline
):
    signature = sign_transfer(holder, holder.address, recipient.address, held_token, 0, deadline)
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        cert.transfer_with_signature(holder, recipient, held_token, 0, deadline, signature, sender=relayer)

    assert cert.ownerOf(held_token) == holder
    assert cert.nonces(holder) == 0


def test_issue_lot__while_paused__reverts(cert, admin, winery, custodian):
    lots = cert.lot_count()
    cert.pause(sender=admin)

    with ape.reverts(PAUSED):
        _issue(cert, winery, custodian, 5)

    assert cert.lot_count() == lots


def test_flag__while_paused__locks_token(cert, admin, held_token, holder):
    cert.pause(sender=admin)

    receipt = cert.flag(held_token, REASON_HASH, sender=holder)

    assert cert.locked(held_token) is True
    assert emitted(receipt, cert.Locked, cert) == [(held_token,)]


def test_unpause__by_admin__resumes_transfers_and_issuance(
    cert, admin, winery, custodian, held_token, holder, recipient, relayer, sign_transfer, deadline
):
    cert.pause(sender=admin)

    receipt = cert.unpause(sender=admin)

    assert cert.paused() is False
    assert emitted(receipt, cert.Unpaused, cert) == [(admin.address,)]
    cert.safeTransferFrom(holder, recipient, held_token, sender=holder)
    signature = sign_transfer(recipient, recipient.address, holder.address, held_token, 0, deadline)
    cert.transfer_with_signature(recipient, holder, held_token, 0, deadline, signature, sender=relayer)
    assert cert.ownerOf(held_token) == holder
    _issue(cert, winery, custodian, 2)


@pytest.mark.parametrize("caller", ["winery", "attacker"])
def test_unpause__by_non_admin__reverts(cert, request, admin, caller):
    cert.pause(sender=admin)

    with ape.reverts(NOT_OWNER):
        cert.unpause(sender=request.getfixturevalue(caller))

    assert cert.paused() is True


# ------------------------------------------------ the admin cannot take a token


def test_abi__state_changing_functions__are_exactly_the_documented_ones(cert):
    names = {abi.name for abi in cert.contract_type.mutable_methods}

    assert names == CERTIFICATE_STATE_CHANGING_FUNCTIONS


def test_abi__no_function__accepts_ether(cert):
    payable = [
        abi.name for abi in cert.contract_type.abi if getattr(abi, "stateMutability", None) == "payable"
    ]

    assert payable == []


@pytest.mark.parametrize("transfer_name", list(TRANSFERS))
def test_transfer__by_admin_of_a_holders_token__reverts(cert, admin, held_token, holder, transfer_name):
    with ape.reverts("certificate: caller is not token owner or approved"):
        TRANSFERS[transfer_name](cert, holder, admin, held_token, admin)

    assert cert.ownerOf(held_token) == holder


# ------------------------------------------------ the test doubles themselves


def test_mocks__behaviour_numbers__match_the_python_enums(project, attacker, cert):
    receiver = attacker.deploy(project.MockERC721Receiver, 0)
    reentrant = attacker.deploy(project.MockReentrantReceiver, cert, 0, attacker)

    assert {b.name: getattr(receiver, b.name)() for b in ReceiverBehaviour} == {
        b.name: b.value for b in ReceiverBehaviour
    }
    assert {b.name: getattr(reentrant, b.name)() for b in Reentrant} == {b.name: b.value for b in Reentrant}
