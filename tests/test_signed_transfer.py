"""Signed (EIP-712) transfers: the relayer submits, the holder stays the actor,
and every way to misuse a signature is refused."""

from __future__ import annotations

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eth_utils import to_checksum_address

from amphora import eip712

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FAR = 2**40  # a deadline far in the future


def test_signed_transfer__relayed__moves_token_and_holder_is_the_actor(
    cert, held_token, holder, recipient, relayer, sign_transfer
):
    holder_eth = holder.balance
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)

    tx = cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)

    assert cert.ownerOf(held_token) == recipient
    assert cert.nonces(holder) == 1
    assert holder.balance == holder_eth, "the holder must not pay gas"
    events = list(tx.decode_logs(cert.Transfer))
    assert len(events) == 1
    assert events[0].sender == holder and events[0].receiver == recipient
    assert events[0].token_id == held_token


def test_signed_transfer__same_signature_twice__reverts(cert, held_token, holder, recipient, relayer,
                                                        sign_transfer):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)
    cert.transferFrom(recipient, holder, held_token, sender=recipient)

    with ape.reverts("certificate: invalid nonce"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)
    assert cert.ownerOf(held_token) == holder


def test_signed_transfer__future_nonce__reverts(cert, held_token, holder, recipient, relayer, sign_transfer):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 1, FAR)
    with ape.reverts("certificate: invalid nonce"):
        cert.transfer_with_signature(holder, recipient, held_token, 1, FAR, sig, sender=relayer)


def test_signed_transfer__nonce_field_tampered__reverts(cert, held_token, holder, recipient, relayer,
                                                        sign_transfer):
    # Signed for nonce 5, submitted as the current nonce 0.
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 5, FAR)
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__expired__reverts(cert, chain, held_token, holder, recipient, relayer, sign_transfer):
    deadline = chain.pending_timestamp + 10
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, deadline)
    chain.pending_timestamp = deadline + 1
    with ape.reverts("certificate: signature expired"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, deadline, sig, sender=relayer)


def test_signed_transfer__at_deadline__succeeds(cert, chain, held_token, holder, recipient, relayer,
                                                sign_transfer):
    deadline = chain.pending_timestamp + 10
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, deadline)
    chain.pending_timestamp = deadline
    cert.transfer_with_signature(holder, recipient, held_token, 0, deadline, sig, sender=relayer)
    assert cert.ownerOf(held_token) == recipient


@pytest.mark.parametrize("field", ["to", "token", "deadline"])
def test_signed_transfer__tampered_field__reverts(cert, lot, held_token, holder, recipient, attacker, relayer,
                                                  sign_transfer, winery, field):
    other_token = lot.token(3)
    cert.transferFrom(winery, holder, other_token, sender=winery)
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    to, token, deadline = recipient, held_token, FAR
    if field == "to":
        to = attacker
    elif field == "token":
        token = other_token
    else:
        deadline = FAR + 1
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, to, token, 0, deadline, sig, sender=relayer)
    assert cert.ownerOf(held_token) == holder and cert.ownerOf(other_token) == holder


def test_signed_transfer__other_chain_id__reverts(cert, held_token, holder, recipient, relayer, sign_transfer,
                                                  chain_id):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR, chain=chain_id + 1)
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__other_contract__reverts(cert, held_token, holder, recipient, relayer, sign_transfer,
                                                  winery):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR,
                        contract=to_checksum_address(winery.address))
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__after_fork_to_new_chain_id__old_signature_reverts_new_one_works(
    cert, chain, held_token, holder, recipient, relayer, sign_transfer, chain_id
):
    """A chain split that changes the chain id must void signatures made for
    the old chain, and the domain separator must follow the new id."""
    old_sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    web3 = chain.provider.web3
    new_id = chain_id + 1000
    chain.provider.make_request("anvil_setChainId", [new_id])
    try:
        assert web3.eth.chain_id == new_id
        contract = web3.eth.contract(address=cert.address, abi=[
            a.model_dump(mode="json", by_alias=True) for a in cert.contract_type.abi])
        fn = contract.functions.transfer_with_signature
        # Old-chain signature: simulation reverts.
        with pytest.raises(Exception, match="certificate: invalid signature"):
            fn(holder.address, recipient.address, held_token, 0, FAR, old_sig).call({"from": relayer.address})
        assert contract.functions.DOMAIN_SEPARATOR().call() == eip712.domain_separator(new_id, cert.address)
        assert eip712.domain_separator(new_id, cert.address) != eip712.domain_separator(chain_id, cert.address)
        new_sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR, chain=new_id)
        fn(holder.address, recipient.address, held_token, 0, FAR, new_sig).call({"from": relayer.address})
    finally:
        chain.provider.make_request("anvil_setChainId", [chain_id])
    assert web3.eth.chain_id == chain_id


def test_signed_transfer__signed_by_someone_else__reverts(cert, held_token, holder, recipient, attacker,
                                                         relayer, sign_transfer):
    sig = sign_transfer(attacker, holder.address, attacker.address, held_token, 0, FAR)
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, attacker, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__signer_does_not_own_token__reverts(cert, token, holder, recipient, relayer,
                                                            sign_transfer):
    sig = sign_transfer(holder, holder.address, recipient.address, token, 0, FAR)
    with ape.reverts("certificate: transfer from incorrect owner"):
        cert.transfer_with_signature(holder, recipient, token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__high_s__reverts(cert, held_token, holder, recipient, relayer, sign_transfer):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    malleable = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, malleable, sender=relayer)
    assert cert.ownerOf(held_token) == holder


@pytest.mark.parametrize("mangle", ["empty", "short", "bad_v", "zero_r"])
def test_signed_transfer__malformed_signature__reverts(cert, held_token, holder, recipient, relayer,
                                                       sign_transfer, mangle):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    bad = {
        "empty": b"",
        "short": sig[:63],
        "bad_v": sig[:64] + bytes([29]),
        "zero_r": bytes(32) + sig[32:],
    }[mangle]
    with ape.reverts("certificate: invalid signature"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, bad, sender=relayer)
    assert cert.ownerOf(held_token) == holder
    assert cert.nonces(holder) == 0


def test_signed_transfer__compact_signature__accepted_once(cert, held_token, holder, recipient, relayer,
                                                           sign_transfer):
    """EIP-2098 64-byte form is accepted; re-submitting the other form of the
    same signature cannot replay because the nonce is spent."""
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    compact = r + ((v - 27) << 255 | s).to_bytes(32, "big")
    cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, compact, sender=relayer)
    assert cert.ownerOf(held_token) == recipient
    cert.transferFrom(recipient, holder, held_token, sender=recipient)
    with ape.reverts("certificate: invalid nonce"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__from_zero_address__reverts(cert, held_token, recipient, relayer):
    zero = ZERO_ADDRESS
    with ape.reverts("certificate: signer is the zero address"):
        cert.transfer_with_signature(zero, recipient, held_token, 0, FAR, b"\x00" * 65, sender=relayer)


def test_signed_transfer__to_zero_address__reverts(cert, held_token, holder, relayer, sign_transfer):
    zero = ZERO_ADDRESS
    sig = sign_transfer(holder, holder.address, zero, held_token, 0, FAR)
    with ape.reverts("certificate: transfer to the zero address"):
        cert.transfer_with_signature(holder, zero, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__front_run_by_attacker__still_goes_to_signed_recipient(
    cert, held_token, holder, recipient, attacker, relayer, sign_transfer
):
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    # The attacker copies the relayer's pending transaction and submits it first.
    cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=attacker)
    assert cert.ownerOf(held_token) == recipient
    with ape.reverts("certificate: invalid nonce"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__while_flagged__reverts(cert, held_token, holder, recipient, relayer, sign_transfer):
    cert.flag(held_token, b"\x01" * 32, sender=holder)
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    with ape.reverts("certificate: token is flagged"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)
    assert cert.nonces(holder) == 0


def test_signed_transfer__while_paused__reverts(cert, admin, held_token, holder, recipient, relayer,
                                                sign_transfer):
    cert.pause(sender=admin)
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    with ape.reverts("pausable: contract is paused"):
        cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)


def test_signed_transfer__to_contract_without_receiver_hook__reverts(cert, project, admin, held_token, holder,
                                                                    relayer, sign_transfer):
    """A relayed transfer cannot strand a certificate in a contract that cannot
    handle it: the certificate contract itself has no onERC721Received; the
    wallet double has one and is the control case."""
    sink = admin.deploy(project.MockERC1271Wallet, admin.address)
    sig = sign_transfer(holder, holder.address, cert.address, held_token, 0, FAR)
    with ape.reverts("certificate: transfer to non-ERC721Receiver implementer"):
        cert.transfer_with_signature(holder, cert.address, held_token, 0, FAR, sig, sender=relayer)
    sig = sign_transfer(holder, holder.address, sink.address, held_token, 0, FAR)
    cert.transfer_with_signature(holder, sink, held_token, 0, FAR, sig, sender=relayer)
    assert cert.ownerOf(held_token) == sink


def test_signed_transfer__clears_single_token_approval(cert, held_token, holder, recipient, attacker, relayer,
                                                       sign_transfer):
    cert.approve(attacker, held_token, sender=holder)
    sig = sign_transfer(holder, holder.address, recipient.address, held_token, 0, FAR)
    cert.transfer_with_signature(holder, recipient, held_token, 0, FAR, sig, sender=relayer)
    assert cert.getApproved(held_token) == ZERO_ADDRESS
    with ape.reverts("certificate: caller is not token owner or approved"):
        cert.transferFrom(recipient, attacker, held_token, sender=attacker)


class TestContractHolder:
    """A smart-contract wallet holds a certificate and signs through ERC-1271."""

    @pytest.fixture
    def wallet(self, project, holder):
        return holder.deploy(project.MockERC1271Wallet, holder.address)

    @pytest.fixture
    def wallet_token(self, cert, lot, winery, wallet):
        token_id = lot.token(4)
        cert.safeTransferFrom(winery, wallet, token_id, sender=winery)
        return token_id

    def test_owner_key_signature__accepted(self, cert, wallet, wallet_token, holder, recipient, relayer,
                                           sign_transfer):
        sig = sign_transfer(holder, wallet.address, recipient.address, wallet_token, 0, FAR)
        cert.transfer_with_signature(wallet, recipient, wallet_token, 0, FAR, sig, sender=relayer)
        assert cert.ownerOf(wallet_token) == recipient
        assert cert.nonces(wallet) == 1

    def test_other_key_signature__reverts(self, cert, wallet, wallet_token, attacker, recipient, relayer,
                                          sign_transfer):
        sig = sign_transfer(attacker, wallet.address, attacker.address, wallet_token, 0, FAR)
        with ape.reverts("certificate: invalid signature"):
            cert.transfer_with_signature(wallet, attacker, wallet_token, 0, FAR, sig, sender=relayer)
        assert cert.ownerOf(wallet_token) == wallet
