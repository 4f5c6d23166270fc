"""Issue 12, the certificate's part: a revoked issuer loses its flag powers
(the admin or a successor issuer clears flags), only a contract can be named
the lending contract, ERC-4906 metadata events on every state change, holders
invalidate their signature nonces, signatures that do not recover answer
false or refuse cleanly (never an ECDSA library revert), an EIP-7702-delegated
account signs with its key, and the deployed certificate keeps room to grow."""

from __future__ import annotations

import ape
import pytest
from erc721_behaviour import ZERO_ADDRESS, emitted
from eth_account import Account
from eth_utils import keccak

from amphora import eip712

FAR = 2**40
REASON_HASH = keccak(text="police report 2024-117")
ORDER_HASH = keccak(text="delivery order: 1 Rue du Vin, Paris")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ACTIVE, GIFT_PENDING, PLEDGED, REDEMPTION_REQUESTED, REDEEMED, FLAGGED = range(6)
NOT_ISSUER = "certificate: caller is not the issuer"
NOT_HOLDER_OR_ISSUER = "certificate: caller is not the holder or the issuer"
NOT_OWNER = "ownable: caller is not the owner"
#: EIP-7702 delegation designator: 0xef0100 followed by the delegate's address.
DELEGATE = bytes.fromhex("ef0100") + bytes.fromhex("000000000000000000000000000000000000dead")
#: EIP-170 limit, and the headroom the certificate keeps below it for the next features.
CODE_LIMIT, HEADROOM = 24_576, 2_048


def high_s_twin(signature: bytes) -> bytes:
    """The other valid ECDSA encoding of ``signature`` (s -> n - s, v flipped)."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


@pytest.fixture
def other_issuer(cert, admin, other_winery):
    cert.grant_issuer(other_winery, "Domaine Successeur", sender=admin)
    return other_winery


@pytest.fixture
def flagged(cert, held_token, winery):
    """``held_token`` flagged by its lot's issuer."""
    cert.flag(held_token, REASON_HASH, sender=winery)
    return held_token


# ------------------------------------------------ item 21: flags after an issuer's revocation


def test_flag__by_revoked_issuer__reverts_and_token_stays_active(cert, admin, held_token, winery):
    cert.revoke_issuer(winery, sender=admin)

    with ape.reverts(NOT_HOLDER_OR_ISSUER):
        cert.flag(held_token, REASON_HASH, sender=winery)

    assert cert.state_of(held_token) == ACTIVE


def test_clear_flag__by_revoked_issuer__reverts_and_flag_stays(cert, admin, flagged, winery):
    cert.revoke_issuer(winery, sender=admin)

    with ape.reverts(NOT_ISSUER):
        cert.clear_flag(flagged, sender=winery)

    assert cert.state_of(flagged) == FLAGGED


def test_clear_flag__by_admin__unlocks_with_events(cert, admin, flagged, winery):
    cert.revoke_issuer(winery, sender=admin)

    receipt = cert.clear_flag(flagged, sender=admin)

    assert cert.state_of(flagged) == ACTIVE
    assert emitted(receipt, cert.FlagCleared, cert) == [(flagged, admin.address)]
    assert emitted(receipt, cert.Unlocked, cert) == [(flagged,)]


def test_clear_flag__by_stranger__reverts(cert, flagged, attacker):
    with ape.reverts(NOT_ISSUER):
        cert.clear_flag(flagged, sender=attacker)
    assert cert.state_of(flagged) == FLAGGED


def test_name_successor_issuer__successor_flags_and_clears_and_the_old_issuer_cannot(
    cert, admin, lot, held_token, winery, other_issuer
):
    cert.flag(held_token, REASON_HASH, sender=winery)
    receipt = cert.name_successor_issuer(lot.lot_id, other_issuer, sender=admin)
    assert emitted(receipt, cert.SuccessorIssuerNamed, cert) == [(lot.lot_id, other_issuer.address)]
    assert cert.successor_issuer(lot.lot_id) == other_issuer.address

    with ape.reverts(NOT_ISSUER):
        cert.clear_flag(held_token, sender=winery)
    cert.clear_flag(held_token, sender=other_issuer)
    with ape.reverts(NOT_HOLDER_OR_ISSUER):
        cert.flag(held_token, REASON_HASH, sender=winery)
    cert.flag(held_token, REASON_HASH, sender=other_issuer)

    record = cert.certificate(held_token)
    assert (record.state, record.flagged_by_issuer, record.issuer) == (FLAGGED, True, winery.address)


def test_name_successor_issuer__withdrawn__gives_the_power_back_to_the_lot_issuer(
    cert, admin, lot, held_token, winery, other_issuer
):
    cert.name_successor_issuer(lot.lot_id, other_issuer, sender=admin)
    cert.name_successor_issuer(lot.lot_id, ZERO_ADDRESS, sender=admin)

    cert.flag(held_token, REASON_HASH, sender=winery)
    with ape.reverts(NOT_ISSUER):
        cert.clear_flag(held_token, sender=other_issuer)


def test_name_successor_issuer__revoked_successor__loses_the_power(
    cert, admin, lot, flagged, other_issuer
):
    cert.name_successor_issuer(lot.lot_id, other_issuer, sender=admin)
    cert.revoke_issuer(other_issuer, sender=admin)

    with ape.reverts(NOT_ISSUER):
        cert.clear_flag(flagged, sender=other_issuer)


@pytest.mark.parametrize("case", ["not an issuer", "no such lot", "not the admin"])
def test_name_successor_issuer__bad_input__reverts_and_changes_nothing(
    cert, admin, lot, attacker, other_issuer, case
):
    lot_id, successor, sender, reason = lot.lot_id, other_issuer, admin, None
    if case == "not an issuer":
        successor, reason = attacker, "certificate: successor is not an issuer"
    elif case == "no such lot":
        lot_id, reason = lot.lot_id + 1, "certificate: lot does not exist"
    else:
        sender, reason = attacker, NOT_OWNER

    with ape.reverts(reason):
        cert.name_successor_issuer(lot_id, successor, sender=sender)

    assert cert.successor_issuer(lot_id) == ZERO_ADDRESS


# ------------------------------------------------ item 22: only a contract is the lending contract


def test_set_lending__account_without_code__reverts(project, admin):
    from amphora.deploy import CertificateSettings

    c = admin.deploy(project.WineCertificate, *CertificateSettings().constructor_args())

    with ape.reverts("certificate: lending is not a contract"):
        c.set_lending(admin, sender=admin)

    assert c.lending() == ZERO_ADDRESS


def test_deploy__wires_the_lending_contract_in_the_same_deployment(project, cert, manifest, chain):
    lending = manifest.address("PledgeLending")

    assert cert.lending() == lending
    assert len(chain.provider.get_code(lending)) > 0
    assert project.PledgeLending.at(lending).CERTIFICATE() == cert.address


# ------------------------------------------------ item 24: ERC-4906 on every state change


def _metadata_updates(receipt, cert) -> list[int]:
    return [values[0] for values in emitted(receipt, cert.MetadataUpdate, cert)]


def test_lifecycle__every_state_change__emits_metadata_update(
    cert, held_token, holder, winery, custodian, recipient, chain
):
    key = Account.create()
    expiry = chain.pending_timestamp + 3_600
    steps = [
        lambda: cert.create_gift(held_token, key.address, expiry, sender=holder),
        lambda: cert.revoke_gift(held_token, sender=holder),
        lambda: cert.flag(held_token, REASON_HASH, sender=holder),
        lambda: cert.clear_flag(held_token, sender=winery),
        lambda: cert.request_redemption(held_token, ORDER_HASH, sender=holder),
        lambda: cert.reject_redemption(held_token, REASON_HASH, sender=custodian),
        lambda: cert.request_redemption(held_token, ORDER_HASH, sender=holder),
        lambda: cert.confirm_redemption(held_token, sender=custodian),
    ]
    for step in steps:
        assert _metadata_updates(step(), cert) == [held_token]


def test_gift_claim__emits_metadata_update(cert, held_token, holder, recipient, chain):
    key = Account.create()
    cert.create_gift(held_token, key.address, chain.pending_timestamp + 3_600, sender=holder)
    signature = eip712.sign_gift_claim(key.key, held_token, recipient.address, chain.chain_id, cert.address)

    receipt = cert.claim_gift(held_token, recipient, signature, sender=recipient)

    assert _metadata_updates(receipt, cert) == [held_token]


def test_move_custody__emits_batch_metadata_update_over_the_lot(cert, admin, lot, accounts):
    cellar = accounts[9]
    cert.grant_custodian(cellar, "Entrepôt Autre", sender=admin)

    receipt = cert.move_custody(lot.lot_id, cellar, sender=admin)

    assert emitted(receipt, cert.BatchMetadataUpdate, cert) == [(lot.token(1), lot.token(10))]


def test_transfer__emits_no_metadata_update(cert, held_token, holder, recipient):
    receipt = cert.transferFrom(holder, recipient, held_token, sender=holder)
    assert _metadata_updates(receipt, cert) == []


# ------------------------------------------------ item 26: holders invalidate their nonces


def test_invalidate_nonces__reverted_signed_flag__cannot_be_replayed_later(
    cert, held_token, holder, relayer, chain, sign_typed
):
    # A signed flag that reverts (the bottle is in a gift) consumes no nonce...
    key = Account.create()
    cert.create_gift(held_token, key.address, chain.pending_timestamp + 3_600, sender=holder)
    signature = sign_typed(holder, "Flag", eip712.flag_message(holder.address, held_token, REASON_HASH, 0, FAR))
    with ape.reverts("certificate: token is gift pending"):
        cert.flag_with_signature(holder, held_token, REASON_HASH, 0, FAR, signature, sender=relayer)
    cert.revoke_gift(held_token, sender=holder)

    # ...so the holder voids it before anyone replays it.
    receipt = cert.invalidate_nonces(1, sender=holder)

    assert emitted(receipt, cert.NoncesInvalidated, cert) == [(holder.address, 1)]
    assert cert.nonces(holder) == 1
    with ape.reverts("certificate: invalid nonce"):
        cert.flag_with_signature(holder, held_token, REASON_HASH, 0, FAR, signature, sender=relayer)
    assert cert.state_of(held_token) == ACTIVE


def test_invalidate_nonces_with_signature__voids_every_nonce_below_the_new_one(
    cert, held_token, holder, recipient, relayer, sign_typed, sign_transfer
):
    pending = [sign_transfer(holder, holder.address, recipient.address, held_token, n, FAR) for n in range(3)]
    signature = sign_typed(holder, "InvalidateNonces", eip712.invalidate_nonces_message(holder.address, 0, 3, FAR))
    balance = cert.balanceOf(holder)

    receipt = cert.invalidate_nonces_with_signature(holder, 0, 3, FAR, signature, sender=relayer)

    assert emitted(receipt, cert.NoncesInvalidated, cert) == [(holder.address, 3)]
    assert cert.nonces(holder) == 3 and cert.balanceOf(holder) == balance
    for nonce, transfer in enumerate(pending):
        with ape.reverts("certificate: invalid nonce"):
            cert.transfer_with_signature(holder, recipient, held_token, nonce, FAR, transfer, sender=relayer)
    assert cert.ownerOf(held_token) == holder


def test_invalidate_nonces_with_signature__replayed__reverts(cert, holder, relayer, sign_typed):
    signature = sign_typed(holder, "InvalidateNonces", eip712.invalidate_nonces_message(holder.address, 0, 1, FAR))
    cert.invalidate_nonces_with_signature(holder, 0, 1, FAR, signature, sender=relayer)

    with ape.reverts("certificate: invalid nonce"):
        cert.invalidate_nonces_with_signature(holder, 0, 1, FAR, signature, sender=relayer)
    assert cert.nonces(holder) == 1


def test_invalidate_nonces_with_signature__by_someone_else__reverts(cert, holder, attacker, relayer, sign_typed):
    signature = sign_typed(attacker, "InvalidateNonces",
                           eip712.invalidate_nonces_message(holder.address, 0, 5, FAR))
    with ape.reverts("certificate: invalid signature"):
        cert.invalidate_nonces_with_signature(holder, 0, 5, FAR, signature, sender=relayer)
    assert cert.nonces(holder) == 0


@pytest.mark.parametrize("new_nonce", [0, 2**64], ids=["not above the current", "above 2**64 - 1"])
def test_invalidate_nonces__out_of_range__reverts_and_changes_nothing(cert, holder, new_nonce):
    with ape.reverts("certificate: nonce out of range"):
        cert.invalidate_nonces(new_nonce, sender=holder)
    assert cert.nonces(holder) == 0


def test_invalidate_nonces_with_signature__new_nonce_not_above_signed__reverts(cert, holder, relayer, sign_typed):
    signature = sign_typed(holder, "InvalidateNonces", eip712.invalidate_nonces_message(holder.address, 0, 0, FAR))
    with ape.reverts("certificate: nonce out of range"):
        cert.invalidate_nonces_with_signature(holder, 0, 0, FAR, signature, sender=relayer)
    assert cert.nonces(holder) == 0


# ------------------------------------------------ item 27: signatures that do not recover; EIP-7702


@pytest.fixture
def tag_answer(cert, chain, create_lot):
    """A lot whose bottle 1 tag signed a fresh challenge: (token, block, signature, proof)."""
    tag = Account.create()
    lot = create_lot(3, tags=[tag.address, Account.create().address, Account.create().address])
    chain.mine()
    number = chain.blocks.head.number - 1
    signature = eip712.sign_tag_challenge(tag.key, lot.token(1), number, chain.blocks[number].hash,
                                          chain.chain_id, cert.address)
    return lot.token(1), number, signature, lot.tree.proof(1)


def test_verify_tag_signature__genuine_answer__is_true(cert, tag_answer):
    token_id, number, signature, proof = tag_answer
    assert cert.verify_tag_signature(token_id, number, signature, proof) is True


@pytest.mark.parametrize("mangle", ["high s", "short", "empty", "bad v", "all zero"])
def test_verify_tag_signature__high_s_or_malformed__answers_false(cert, tag_answer, mangle):
    token_id, number, signature, proof = tag_answer
    bad = {
        "high s": high_s_twin(signature),
        "short": signature[:40],
        "empty": b"",
        "bad v": signature[:64] + bytes([29]),
        "all zero": bytes(65),
    }[mangle]

    assert cert.verify_tag_signature(token_id, number, bad, proof) is False


@pytest.fixture
def delegated(chain, cert, held_token, holder):
    """An EOA with an EIP-7702 delegation (code at its address) holding ``held_token``."""
    account = Account.create()
    chain.provider.set_code(account.address, DELEGATE)
    cert.transferFrom(holder, account.address, held_token, sender=holder)
    assert len(chain.provider.get_code(account.address)) > 0
    return account


def test_transfer_with_signature__eip7702_delegated_signer__moves_the_token(
    cert, held_token, delegated, recipient, relayer, sign_transfer
):
    signature = sign_transfer(delegated.key, delegated.address, recipient.address, held_token, 0, FAR)

    cert.transfer_with_signature(delegated.address, recipient, held_token, 0, FAR, signature, sender=relayer)

    assert cert.ownerOf(held_token) == recipient.address
    assert cert.nonces(delegated.address) == 1


def test_flag_with_signature__eip7702_delegated_signer__flags(cert, held_token, delegated, relayer, sign_typed):
    signature = sign_typed(delegated.key, "Flag",
                           eip712.flag_message(delegated.address, held_token, REASON_HASH, 0, FAR))

    cert.flag_with_signature(delegated.address, held_token, REASON_HASH, 0, FAR, signature, sender=relayer)

    assert cert.state_of(held_token) == FLAGGED


def test_transfer_with_signature__eip7702_delegated_signer_high_s__reverts(
    cert, held_token, delegated, recipient, relayer, sign_transfer
):
    signature = sign_transfer(delegated.key, delegated.address, recipient.address, held_token, 0, FAR)

    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(delegated.address, recipient, held_token, 0, FAR, high_s_twin(signature),
                                     sender=relayer)

    assert cert.ownerOf(held_token) == delegated.address


# ------------------------------------------------ room to grow


def test_deployed_certificate__keeps_2048_bytes_of_headroom_under_eip170(cert, chain):
    size = len(chain.provider.get_code(cert.address))
    assert size <= CODE_LIMIT - HEADROOM, f"{size} bytes, limit {CODE_LIMIT - HEADROOM}"
