"""A reusable EIP-3009 suite (transfer, receive and cancel with authorization),
run against every token that accepts EIP-3009: the reference stablecoin and the
points. After ``erc20_behaviour``: the class below holds the tests, and a test
module subclasses it and plugs its token in with these fixtures:

``eip3009_token``
    The token contract (an Ape contract instance).
``eip3009_fund``
    ``eip3009_fund(account, amount)`` gives ``account`` that many more tokens
    (smallest unit), however the token creates them.
``eip3009_unit``
    One whole token in the smallest unit.
``eip3009_other_token``
    A second deployment of the same token with the same EIP-712 name and
    version: only the verifying contract differs.

``holder`` and ``recipient`` (from ``tests/conftest.py``) each start with
``FUNDS_UNITS`` whole tokens, and ``holder`` signs. The EIP-712 domain is read
from the token's ``eip712Domain()``; authorizations are signed with
``amphora.eip712``, the project's one definition of the typed data.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from erc20_behaviour import malleable_twin
from eth_keys import keys

from amphora import eip712

#: What ``holder`` and ``recipient`` hold at the start, in whole tokens.
FUNDS_UNITS = 1_000
#: A time far in the future.
FAR = 2**40
TRANSFER_AUTH = "TransferWithAuthorization"
RECEIVE_AUTH = "ReceiveWithAuthorization"


def _key(signer) -> bytes | str:
    return signer if isinstance(signer, (bytes, str)) else signer.private_key


def _recover(digest: bytes, v: int, r: bytes, s: bytes) -> str:
    """What a bare ecrecover answers, high s or not."""
    signature = keys.Signature(vrs=(v - 27, int.from_bytes(r, "big"), int.from_bytes(s, "big")))
    return signature.recover_public_key_from_msg_hash(digest).to_checksum_address()


def _only_event(tx, event_type):
    events = list(tx.decode_logs(event_type))
    assert len(events) == 1, f"expected one {event_type.name}, got {len(events)}"
    return events[0]


@dataclass(frozen=True)
class Authorization:
    sender: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    v: int
    r: bytes
    s: bytes

    @property
    def args(self) -> tuple:
        return (self.sender, self.to, self.value, self.valid_after, self.valid_before, self.nonce,
                self.v, self.r, self.s)


def token_domain(token) -> tuple[str, str]:
    """The token's EIP-712 name and version, as its ``eip712Domain()`` reports them."""
    _, name, version, *_ = token.eip712Domain()
    return name, version


def authorization_signer(token, chain_id: int) -> Callable[..., Authorization]:
    """Builder: an EIP-3009 authorization on ``token`` signed by ``signer`` (an
    account or a raw key) for ``sender``'s funds; a fresh random nonce unless
    given. ``chain`` and ``contract`` sign for another domain (attack tests)."""
    domain = token_domain(token)

    def _sign(signer, sender, to, value: int, *, primary: str = TRANSFER_AUTH, valid_after: int = 0,
              valid_before: int = FAR, nonce: bytes | None = None, chain: int | None = None,
              contract=None) -> Authorization:
        nonce = nonce if nonce is not None else secrets.token_bytes(32)
        sender, to = str(sender), str(to)
        message = eip712.authorization_message(sender, to, value, valid_after, valid_before, nonce)
        data = eip712.typed_data(primary, message, chain if chain is not None else chain_id,
                                 str(contract or token.address), *domain)
        v, r, s = eip712.split_signature(eip712.sign(data, _key(signer)))
        return Authorization(sender, to, value, valid_after, valid_before, nonce, v, r, s)

    return _sign


def cancel_signer(token, chain_id: int) -> Callable[..., tuple[int, bytes, bytes]]:
    """Builder: the (v, r, s) of an EIP-3009 cancellation on ``token`` by ``signer``."""
    domain = token_domain(token)

    def _sign(signer, authorizer, nonce: bytes) -> tuple[int, bytes, bytes]:
        data = eip712.typed_data("CancelAuthorization", eip712.cancel_message(str(authorizer), nonce),
                                 chain_id, token.address, *domain)
        return eip712.split_signature(eip712.sign(data, _key(signer)))

    return _sign


class BehavesLikeEIP3009:
    """EIP-3009 as the EIP and USDC's FiatToken define it, with the attacks:
    replayed and reused nonces, canceled authorizations, a front-run
    ``receiveWithAuthorization``, the validity window's bounds, tampered
    fields, other chains and contracts, malleable and invalid signatures,
    ERC-1271 wallets; and the bitmap that stores used nonces."""

    @pytest.fixture
    def token(self, eip3009_token):
        return eip3009_token

    @pytest.fixture
    def other_token(self, eip3009_other_token):
        return eip3009_other_token

    @pytest.fixture
    def unit(self, eip3009_unit):
        return eip3009_unit

    @pytest.fixture
    def funds(self, eip3009_unit):
        return FUNDS_UNITS * eip3009_unit

    @pytest.fixture(autouse=True)
    def _funded(self, token, eip3009_fund, holder, recipient, funds):
        for account in (holder, recipient):
            missing = funds - token.balanceOf(account)
            if missing:
                eip3009_fund(account, missing)
            assert token.balanceOf(account) == funds

    @pytest.fixture
    def domain(self, token) -> tuple[str, str]:
        return token_domain(token)

    @pytest.fixture
    def wallet(self, project, holder, eip3009_fund, funds):
        """A smart-contract wallet (ERC-1271) owned by ``holder``, holding funds."""
        w = holder.deploy(project.MockERC1271Wallet, holder)
        eip3009_fund(w, funds)
        return w

    @pytest.fixture
    def sign_authorization(self, token, chain_id) -> Callable[..., Authorization]:
        return authorization_signer(token, chain_id)

    @pytest.fixture
    def sign_cancel(self, token, chain_id) -> Callable[..., tuple[int, bytes, bytes]]:
        return cancel_signer(token, chain_id)

    # ------------------------------------------------------------ the EIP


    def test_transfer_with_authorization__relayed__moves_funds_and_emits(self, token, holder, recipient, relayer,
                                                                         sign_authorization, unit, funds):
        auth = sign_authorization(holder, holder, recipient, 12 * unit)
        holder_eth = holder.balance

        tx = token.transferWithAuthorization(*auth.args, sender=relayer)

        assert token.balanceOf(holder) == funds - 12 * unit
        assert token.balanceOf(recipient) == funds + 12 * unit
        assert token.authorizationState(holder, auth.nonce)
        assert holder.balance == holder_eth, "the holder must not pay gas"
        used = _only_event(tx, token.AuthorizationUsed)
        assert (used.authorizer, used.nonce) == (holder, auth.nonce)
        transfer = _only_event(tx, token.Transfer)
        assert (transfer.sender, transfer.receiver, transfer.value) == (holder, recipient, 12 * unit)

    def test_receive_with_authorization__by_payee__moves_funds_and_emits(self, token, holder, recipient,
                                                                         sign_authorization, unit, funds):
        auth = sign_authorization(holder, holder, recipient, 12 * unit, primary=RECEIVE_AUTH)

        tx = token.receiveWithAuthorization(*auth.args, sender=recipient)

        assert token.balanceOf(recipient) == funds + 12 * unit
        used = _only_event(tx, token.AuthorizationUsed)
        assert (used.authorizer, used.nonce) == (holder, auth.nonce)
        transfer = _only_event(tx, token.Transfer)
        assert (transfer.sender, transfer.receiver, transfer.value) == (holder, recipient, 12 * unit)

    def test_transfer_with_authorization__replayed_nonce__reverts(self, token, holder, recipient, relayer,
                                                                  sign_authorization, unit, funds):
        auth = sign_authorization(holder, holder, recipient, unit)
        token.transferWithAuthorization(*auth.args, sender=relayer)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.transferWithAuthorization(*auth.args, sender=relayer)
        assert token.balanceOf(recipient) == funds + unit

    def test_transfer_with_authorization__nonce_reused_in_new_signature__reverts(
            self, token, holder, recipient, relayer, sign_authorization, unit,
    ):
        first = sign_authorization(holder, holder, recipient, unit)
        token.transferWithAuthorization(*first.args, sender=relayer)
        second = sign_authorization(holder, holder, recipient, 2 * unit, nonce=first.nonce)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.transferWithAuthorization(*second.args, sender=relayer)

    def test_authorization__used_by_the_other_function__reverts(self, token, holder, recipient, relayer,
                                                                sign_authorization, unit):
        # A ReceiveWithAuthorization lifted from the mempool cannot be pushed
        # through transferWithAuthorization: the typehashes differ.
        auth = sign_authorization(holder, holder, recipient, unit, primary=RECEIVE_AUTH)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_receive_with_authorization__front_run_by_non_payee__reverts_and_payee_still_can(self,
        token, holder, recipient, attacker, sign_authorization, unit, funds):
        auth = sign_authorization(holder, holder, recipient, unit, primary=RECEIVE_AUTH)
        with ape.reverts("eip3009: caller is not the payee"):
            token.receiveWithAuthorization(*auth.args, sender=attacker)
        assert not token.authorizationState(holder, auth.nonce)

        token.receiveWithAuthorization(*auth.args, sender=recipient)
        assert token.balanceOf(recipient) == funds + unit

    def test_receive_with_authorization__payee_redirected_to_caller__reverts(self, token, holder, recipient, attacker,
                                                                             sign_authorization, unit):
        auth = sign_authorization(holder, holder, recipient, unit, primary=RECEIVE_AUTH)
        with ape.reverts("eip3009: invalid signature"):
            token.receiveWithAuthorization(*replace(auth, to=attacker.address).args, sender=attacker)

    def test_cancel_authorization__marks_nonce_and_emits(self, token, holder, relayer, sign_cancel):
        nonce = secrets.token_bytes(32)
        tx = token.cancelAuthorization(holder, nonce, *sign_cancel(holder, holder, nonce), sender=relayer)
        assert token.authorizationState(holder, nonce)
        canceled = _only_event(tx, token.AuthorizationCanceled)
        assert (canceled.authorizer, canceled.nonce) == (holder, nonce)

    def test_transfer_with_authorization__after_cancel__reverts(self, token, holder, recipient, relayer,
                                                                sign_authorization, sign_cancel, unit, funds):
        auth = sign_authorization(holder, holder, recipient, unit)
        token.cancelAuthorization(holder, auth.nonce, *sign_cancel(holder, holder, auth.nonce), sender=relayer)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.transferWithAuthorization(*auth.args, sender=relayer)
        assert token.balanceOf(holder) == funds

    def test_cancel_authorization__after_use__reverts(self, token, holder, recipient, relayer, sign_authorization,
                                                      sign_cancel, unit):
        auth = sign_authorization(holder, holder, recipient, unit)
        token.transferWithAuthorization(*auth.args, sender=relayer)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.cancelAuthorization(holder, auth.nonce, *sign_cancel(holder, holder, auth.nonce), sender=relayer)

    def test_cancel_authorization__twice__reverts(self, token, holder, relayer, sign_cancel):
        nonce = secrets.token_bytes(32)
        v, r, s = sign_cancel(holder, holder, nonce)
        token.cancelAuthorization(holder, nonce, v, r, s, sender=relayer)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.cancelAuthorization(holder, nonce, v, r, s, sender=relayer)

    def test_cancel_authorization__signed_by_other__reverts(self, token, holder, recipient, attacker, relayer,
                                                            sign_authorization, sign_cancel, unit):
        # Griefing: an attacker must not be able to kill someone else's authorization.
        auth = sign_authorization(holder, holder, recipient, unit)
        with ape.reverts("eip3009: invalid signature"):
            token.cancelAuthorization(holder, auth.nonce, *sign_cancel(attacker, holder, auth.nonce), sender=attacker)
        token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_transfer_with_authorization__at_valid_after__reverts(self, token, chain, holder, recipient, relayer,
                                                                  sign_authorization, unit):
        valid_after = chain.pending_timestamp + 100
        auth = sign_authorization(holder, holder, recipient, unit, valid_after=valid_after,
                                  valid_before=valid_after + 100)
        chain.pending_timestamp = valid_after
        with ape.reverts("eip3009: authorization is not yet valid"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_transfer_with_authorization__at_valid_before__reverts(self, token, chain, holder, recipient, relayer,
                                                                   sign_authorization, unit):
        valid_before = chain.pending_timestamp + 100
        auth = sign_authorization(holder, holder, recipient, unit, valid_before=valid_before)
        chain.pending_timestamp = valid_before
        with ape.reverts("eip3009: authorization is expired"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    @pytest.mark.parametrize("offset", [1, 99])
    def test_transfer_with_authorization__inside_validity_window__succeeds(
            self, token, chain, holder, recipient, relayer, sign_authorization, offset, unit, funds,
    ):
        valid_after = chain.pending_timestamp + 100
        auth = sign_authorization(holder, holder, recipient, unit, valid_after=valid_after,
                                  valid_before=valid_after + 100)
        chain.pending_timestamp = valid_after + offset
        token.transferWithAuthorization(*auth.args, sender=relayer)
        assert token.balanceOf(recipient) == funds + unit

    @pytest.mark.parametrize("field", ["value", "to", "valid_before", "sender"])
    def test_transfer_with_authorization__tampered_field__reverts(self, token, holder, recipient, attacker, relayer,
                                                                  sign_authorization, field, unit, funds):
        auth = sign_authorization(holder, holder, recipient, unit)
        tampered = {
            "value": {"value": funds},
            "to": {"to": attacker.address},
            "valid_before": {"valid_before": FAR + 1},
            "sender": {"sender": recipient.address},
        }[field]
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*replace(auth, **tampered).args, sender=attacker)
        token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_transfer_with_authorization__signed_for_other_chain__reverts(self, token, chain_id, holder, recipient,
                                                                          relayer, sign_authorization, unit):
        auth = sign_authorization(holder, holder, recipient, unit, chain=chain_id + 1)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_transfer_with_authorization__signed_for_other_token__reverts(self, token, other_token, holder,
                                                                          recipient, relayer, sign_authorization, unit):
        other = other_token
        auth = sign_authorization(holder, holder, recipient, unit, contract=other.address)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    def test_transfer_with_authorization__signed_by_other__reverts(
            self, token, holder, attacker, sign_authorization, funds,
    ):
        auth = sign_authorization(attacker, holder, attacker, funds)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=attacker)

    def test_transfer_with_authorization__high_s_signature__reverts(self, token, chain_id, holder, recipient, relayer,
                                                                    sign_authorization, unit, domain):
        auth = sign_authorization(holder, holder, recipient, unit)
        v, r, s = malleable_twin(auth.v, auth.r, auth.s)
        message = eip712.authorization_message(holder.address, recipient.address, unit, 0, FAR, auth.nonce)
        digest = eip712.digest(eip712.typed_data(TRANSFER_AUTH, message, chain_id, token.address, *domain))
        assert _recover(digest, v, r, s) == holder.address, "the malleated signature is a real one"
        # The same signature in its other (high-s) form recovers the same signer
        # with the builtin ecrecover; EIP-2 forbids it and so does the token.
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*replace(auth, v=v, r=r, s=s).args, sender=relayer)
        assert not token.authorizationState(holder, auth.nonce)

    @pytest.mark.parametrize("v", [0, 1, 29])
    def test_transfer_with_authorization__invalid_v__reverts(
            self, token, holder, recipient, relayer, sign_authorization, v, unit,
    ):
        auth = sign_authorization(holder, holder, recipient, unit)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*replace(auth, v=v).args, sender=relayer)

    def test_transfer_with_authorization__from_zero_address__reverts(
            self, token, recipient, attacker, sign_authorization, unit,
    ):
        # ecrecover answers the zero address for garbage; that must never count
        # as the zero address having signed.
        auth = replace(sign_authorization(attacker, ZERO_ADDRESS, recipient, unit), v=0)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=attacker)

    def test_transfer_with_authorization__beyond_balance__reverts_and_nonce_stays_unused(self,
        token, holder, recipient, relayer, sign_authorization, funds):
        auth = sign_authorization(holder, holder, recipient, funds + 1)
        with ape.reverts("erc20: transfer amount exceeds balance"):
            token.transferWithAuthorization(*auth.args, sender=relayer)
        assert not token.authorizationState(holder, auth.nonce)

    def test_transfer_with_authorization__by_erc1271_wallet__moves_funds(
            self, token, wallet, holder, recipient, relayer, sign_authorization, unit, funds,
    ):
        # The wallet's owner key signs; the wallet's isValidSignature vouches.
        auth = sign_authorization(holder, wallet, recipient, 5 * unit)

        tx = token.transferWithAuthorization(*auth.args, sender=relayer)

        assert token.balanceOf(wallet) == funds - 5 * unit
        used = _only_event(tx, token.AuthorizationUsed)
        assert (used.authorizer, used.nonce) == (wallet.address, auth.nonce)
        transfer = _only_event(tx, token.Transfer)
        assert (transfer.sender, transfer.receiver) == (wallet.address, recipient)

    def test_transfer_with_authorization__erc1271_wallet_refuses__reverts(self, token, wallet, attacker,
                                                                          sign_authorization, funds):
        auth = sign_authorization(attacker, wallet, attacker, funds)
        with ape.reverts("eip3009: invalid signature"):
            token.transferWithAuthorization(*auth.args, sender=attacker)

    def test_cancel_authorization__by_erc1271_wallet__works(self, token, wallet, holder, recipient, relayer,
                                                            sign_authorization, sign_cancel, unit):
        auth = sign_authorization(holder, wallet, recipient, unit)
        token.cancelAuthorization(wallet, auth.nonce, *sign_cancel(holder, wallet, auth.nonce), sender=relayer)
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.transferWithAuthorization(*auth.args, sender=relayer)

    # ------------------------------------------------------- bitmap nonces

    def test_nonces_in_one_word__are_independent(self, token, holder, recipient, relayer, sign_authorization,
                                                 sign_cancel, unit):
        first, second = (sign_authorization(holder, holder, recipient, unit, nonce=n.to_bytes(32, "big"))
                         for n in (5, 6))
        token.transferWithAuthorization(*first.args, sender=relayer)

        assert token.authorizationState(holder, first.nonce)
        assert not token.authorizationState(holder, second.nonce)
        assert token.authorization_bitmap(holder, 0) == 1 << 5
        seven = (7).to_bytes(32, "big")
        token.cancelAuthorization(holder, seven, *sign_cancel(holder, holder, seven), sender=relayer)
        token.transferWithAuthorization(*second.args, sender=relayer)
        assert token.authorization_bitmap(holder, 0) == 0b111 << 5
        with ape.reverts("eip3009: authorization is used or canceled"):
            token.transferWithAuthorization(*first.args, sender=relayer)

    @pytest.mark.parametrize("nonce", [255, 256, 2**256 - 1])
    def test_nonce_at_a_word_edge__marks_only_its_own_bit(self, token, holder, recipient, relayer,
                                                          sign_authorization, unit, nonce):
        auth = sign_authorization(holder, holder, recipient, unit, nonce=nonce.to_bytes(32, "big"))

        token.transferWithAuthorization(*auth.args, sender=relayer)

        assert token.authorization_bitmap(holder, nonce >> 8) == 1 << (nonce & 255)
        for neighbour in (nonce - 1, (nonce + 1) % 2**256):
            assert not token.authorizationState(holder, neighbour.to_bytes(32, "big"))

    def test_nonce_of_one_payer__is_free_for_another(self, token, holder, recipient, relayer,
                                                     sign_authorization, unit):
        nonce = (1).to_bytes(32, "big")
        token.transferWithAuthorization(*sign_authorization(holder, holder, recipient, unit, nonce=nonce).args,
                                        sender=relayer)

        token.transferWithAuthorization(*sign_authorization(recipient, recipient, holder, unit, nonce=nonce).args,
                                        sender=relayer)

        assert token.authorization_bitmap(holder, 0) == token.authorization_bitmap(recipient, 0) == 0b10
