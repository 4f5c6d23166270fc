"""A reusable ERC-20 conformance suite, after OpenZeppelin's ``shouldBehaveLikeERC20``.

The classes below hold the tests; their names do not start with ``Test``, so
pytest collects them only where a test module subclasses them::

    from erc20_behaviour import BehavesLikeERC20, BehavesLikeERC20Metadata, BehavesLikeERC20Permit

    class TestMyTokenBehavesLikeERC20(BehavesLikeERC20):
        pass

The suite never creates tokens: how balances come to exist (minting, points
issued against a stablecoin reserve, ...) is the token's business. The module
that runs the suite plugs its token in by defining these fixtures:

``erc20``
    The token contract (an Ape contract instance).
``erc20_holder``
    An Ape test account (the suite signs with its ``private_key``) holding
    ``erc20_initial_balance`` tokens and no allowance from or to anyone.
``erc20_initial_balance``
    The balance of ``erc20_holder``, in the token's smallest unit: at least 10.
``erc20_recipient``, ``erc20_spender``, ``erc20_stranger``
    Three more distinct accounts, none of them ``erc20_holder``, with no
    allowance and no role in the token that lets them move anyone's tokens.
    They may hold tokens (the suite compares balances before and after).
    The suite sends tokens to the first, approves the second, and tries
    everything forbidden with the third, which must also be an Ape test
    account (it signs permits that must fail).
``erc20_errors``
    The token's revert reasons by key (see ``ERROR_KEYS``): anything
    ``ape.reverts`` accepts (a string, a compiled pattern, a custom error).
``erc20_name``, ``erc20_symbol``, ``erc20_decimals``
    The expected metadata.
``erc20_eip712_name``, ``erc20_eip712_version``
    The EIP-712 domain the token's ``permit`` signatures are bound to
    (``BehavesLikeERC20Permit`` only).

The chain id comes from the ``chain_id`` fixture of ``tests/conftest.py``.
Permits are signed with ``amphora.eip712``, the project's one definition of
the typed data, and submitted as ``permit(owner, spender, value, deadline, v,
r, s)``; a token whose ``permit`` takes other arguments overrides the
``submit_permit`` fixture in its test class. Events are compared by position,
not by field name, so a token may name the fields of ``Transfer`` and
``Approval`` as it likes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ape
import pytest
from erc721_behaviour import ZERO_ADDRESS, emitted

from amphora import eip712

#: The revert reasons of every token built on snekmate's ``erc20`` module, by
#: the suite's keys. snekmate spends the allowance before it moves tokens, and
#: the zero address can grant none, hence ``transfer_from_zero``.
SNEKMATE_ERC20_ERRORS = {
    "insufficient_balance": "erc20: transfer amount exceeds balance",
    "insufficient_allowance": "erc20: insufficient allowance",
    "transfer_to_zero": "erc20: transfer to the zero address",
    "transfer_from_zero": "erc20: approve from the zero address",
    "approve_to_zero": "erc20: approve to the zero address",
    "permit_expired": "erc20: expired deadline",
    "permit_invalid_signer": "erc20: invalid signature",
    "permit_malleable_signature": "ecdsa: invalid signature `s` value",
}

MAX_UINT256 = 2**256 - 1
#: The order of secp256k1: ``s`` and ``n - s`` both verify under ``ecrecover``.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: A contract address that is not the token: a permit bound to it must not work.
OTHER_CONTRACT = "0x" + "a1" * 20
#: How long a permit in these tests stays valid.
PERMIT_LIFETIME = 3_600

#: The keys ``erc20_errors`` maps to the token's revert reasons.
ERROR_KEYS = (
    "insufficient_balance",        # transfer or transferFrom of more than the balance
    "insufficient_allowance",      # transferFrom of more than the allowance
    "transfer_to_zero",            # transfer or transferFrom to the zero address
    "transfer_from_zero",          # transferFrom(0, to, 0): the reason the zero address cannot send
    "approve_to_zero",             # approve or permit for the zero address as spender
    "permit_expired",              # permit after its deadline
    "permit_invalid_signer",       # permit whose signature is not the owner's for these values
    "permit_malleable_signature",  # permit with a high-s (malleable) signature
)


def malleable_twin(v: int, r: bytes, s: bytes) -> tuple[int, bytes, bytes]:
    """The other signature of the same signer over the same hash: ``s`` mirrored
    into the upper half of the curve order and ``v`` flipped. ``ecrecover``
    accepts it; EIP-2 says a contract must not."""
    high_s = SECP256K1_N - int.from_bytes(s, "big")
    return (55 - v), r, high_s.to_bytes(32, "big")


def _address(account: Any) -> str:
    return account if isinstance(account, str) else account.address


def permit_unless_already_applied(
    token: Any, owner: Any, spender: Any, value: int, submit: Callable[[], Any]
) -> Any:
    """The pattern a dApp or relayer should follow before it pulls tokens on a
    permit. Anyone who sees the signature (in the mempool, say) can submit it
    first; the owner's own ``permit`` call then reverts, because the nonce has
    moved on, although the approval it wanted is in place. So check the
    allowance first and ``submit`` the permit only while it is still needed.
    Returns the permit's receipt, or ``None`` when it was already applied."""
    if token.allowance(owner, spender) >= value:
        return None
    return submit()


class _ERC20Fixtures:
    """Fixtures the behaviour classes share, derived from the plugged-in ones."""

    @pytest.fixture(autouse=True)
    def _holder_is_funded(self, erc20_holder):
        """Every test runs with the holder funded, whether it names it or not
        (its balance is part of ``totalSupply``)."""
        return erc20_holder

    @pytest.fixture
    def reason(self, erc20_errors):
        """``reason(key)``: the token's revert reason for a failure of kind ``key``."""

        def _reason(key: str) -> Any:
            assert key in ERROR_KEYS, f"unknown error key {key!r}"
            assert key in erc20_errors, f"erc20_errors gives no reason for {key!r}"
            return erc20_errors[key]

        return _reason

    @pytest.fixture
    def amount(self, erc20_initial_balance):
        """An amount the holder can send three times over."""
        assert erc20_initial_balance >= 10, "the suite needs erc20_initial_balance >= 10"
        return erc20_initial_balance // 4

    @pytest.fixture
    def balances(self, erc20):
        """``balances(*accounts)``: their balances, as a tuple."""
        return lambda *accounts: tuple(erc20.balanceOf(a) for a in accounts)


class BehavesLikeERC20Metadata(_ERC20Fixtures):
    """The optional ERC-20 metadata: name, symbol and decimals."""

    def test_name__is_the_token_name(self, erc20, erc20_name):
        assert erc20.name() == erc20_name

    def test_symbol__is_the_token_symbol(self, erc20, erc20_symbol):
        assert erc20.symbol() == erc20_symbol

    def test_decimals__is_the_token_decimals(self, erc20, erc20_decimals):
        assert erc20.decimals() == erc20_decimals


class BehavesLikeERC20(_ERC20Fixtures):
    """ERC-20 core: supply, balances, transfers, approvals and allowances."""

    # ---------------------------------------------------- supply and balances

    def test_total_supply__is_at_least_the_holders_balance(self, erc20, erc20_initial_balance):
        assert erc20.totalSupply() >= erc20_initial_balance

    def test_balance_of__holder__is_its_initial_balance(self, erc20, erc20_holder, erc20_initial_balance):
        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance

    def test_balance_of__zero_address__is_zero(self, erc20):
        assert erc20.balanceOf(ZERO_ADDRESS) == 0

    def test_allowance__never_approved__is_zero(self, erc20, erc20_holder, erc20_spender):
        assert erc20.allowance(erc20_holder, erc20_spender) == 0

    # ---------------------------------------------------------------- transfer

    def test_transfer__within_balance__moves_tokens_and_emits_transfer(
        self, erc20, erc20_holder, erc20_recipient, amount, balances
    ):
        before = balances(erc20_holder, erc20_recipient)
        supply = erc20.totalSupply()

        receipt = erc20.transfer(erc20_recipient, amount, sender=erc20_holder)

        assert balances(erc20_holder, erc20_recipient) == (before[0] - amount, before[1] + amount)
        assert erc20.totalSupply() == supply
        assert emitted(receipt, erc20.Transfer, erc20) == [
            (erc20_holder.address, erc20_recipient.address, amount)
        ]

    def test_transfer__whole_balance__empties_the_sender(
        self, erc20, erc20_holder, erc20_recipient, erc20_initial_balance, balances
    ):
        before = balances(erc20_recipient)[0]

        erc20.transfer(erc20_recipient, erc20_initial_balance, sender=erc20_holder)

        assert balances(erc20_holder, erc20_recipient) == (0, before + erc20_initial_balance)

    def test_transfer__returns_true(self, erc20, erc20_holder, erc20_recipient, amount):
        assert erc20.transfer.call(erc20_recipient, amount, sender=erc20_holder) is True

    def test_transfer__zero_amount__changes_nothing_and_emits_transfer(
        self, erc20, erc20_holder, erc20_recipient, balances
    ):
        before = balances(erc20_holder, erc20_recipient)

        receipt = erc20.transfer(erc20_recipient, 0, sender=erc20_holder)

        assert balances(erc20_holder, erc20_recipient) == before
        assert emitted(receipt, erc20.Transfer, erc20) == [(erc20_holder.address, erc20_recipient.address, 0)]

    def test_transfer__zero_amount_from_an_empty_account__emits_transfer(
        self, erc20, erc20_holder, erc20_recipient, erc20_initial_balance
    ):
        erc20.transfer(erc20_recipient, erc20_initial_balance, sender=erc20_holder)

        receipt = erc20.transfer(erc20_recipient, 0, sender=erc20_holder)

        assert emitted(receipt, erc20.Transfer, erc20) == [(erc20_holder.address, erc20_recipient.address, 0)]

    def test_transfer__to_self__keeps_the_balance_and_emits_transfer(
        self, erc20, erc20_holder, erc20_initial_balance, amount
    ):
        receipt = erc20.transfer(erc20_holder, amount, sender=erc20_holder)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance
        assert emitted(receipt, erc20.Transfer, erc20) == [(erc20_holder.address, erc20_holder.address, amount)]

    def test_transfer__more_than_balance__reverts_and_changes_nothing(
        self, erc20, erc20_holder, erc20_recipient, erc20_initial_balance, balances, reason
    ):
        before = balances(erc20_holder, erc20_recipient)

        with ape.reverts(reason("insufficient_balance")):
            erc20.transfer(erc20_recipient, erc20_initial_balance + 1, sender=erc20_holder)

        assert balances(erc20_holder, erc20_recipient) == before

    def test_transfer__from_an_account_without_tokens__reverts(
        self, erc20, erc20_holder, erc20_recipient, erc20_initial_balance, reason
    ):
        erc20.transfer(erc20_recipient, erc20_initial_balance, sender=erc20_holder)

        with ape.reverts(reason("insufficient_balance")):
            erc20.transfer(erc20_recipient, 1, sender=erc20_holder)

    def test_transfer__to_zero_address__reverts_and_changes_nothing(
        self, erc20, erc20_holder, erc20_initial_balance, amount, reason
    ):
        supply = erc20.totalSupply()

        with ape.reverts(reason("transfer_to_zero")):
            erc20.transfer(ZERO_ADDRESS, amount, sender=erc20_holder)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance
        assert erc20.totalSupply() == supply

    # ----------------------------------------------------------------- approve

    def test_approve__sets_allowance_and_emits_approval(self, erc20, erc20_holder, erc20_spender, amount):
        receipt = erc20.approve(erc20_spender, amount, sender=erc20_holder)

        assert erc20.allowance(erc20_holder, erc20_spender) == amount
        assert emitted(receipt, erc20.Approval, erc20) == [(erc20_holder.address, erc20_spender.address, amount)]

    def test_approve__returns_true(self, erc20, erc20_holder, erc20_spender, amount):
        assert erc20.approve.call(erc20_spender, amount, sender=erc20_holder) is True

    def test_approve__does_not_move_tokens(
        self, erc20, erc20_holder, erc20_spender, erc20_initial_balance, amount
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance

    def test_approve__again__overwrites_the_allowance(self, erc20, erc20_holder, erc20_spender, amount):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        receipt = erc20.approve(erc20_spender, amount - 1, sender=erc20_holder)

        assert erc20.allowance(erc20_holder, erc20_spender) == amount - 1
        assert emitted(receipt, erc20.Approval, erc20) == [
            (erc20_holder.address, erc20_spender.address, amount - 1)
        ]

    def test_approve__zero__clears_the_allowance(self, erc20, erc20_holder, erc20_spender, amount):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        receipt = erc20.approve(erc20_spender, 0, sender=erc20_holder)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert emitted(receipt, erc20.Approval, erc20) == [(erc20_holder.address, erc20_spender.address, 0)]

    def test_approve__more_than_balance__is_allowed(
        self, erc20, erc20_holder, erc20_spender, erc20_initial_balance
    ):
        erc20.approve(erc20_spender, erc20_initial_balance * 2, sender=erc20_holder)

        assert erc20.allowance(erc20_holder, erc20_spender) == erc20_initial_balance * 2

    def test_approve__one_spender__gives_another_nothing(
        self, erc20, erc20_holder, erc20_spender, erc20_stranger, amount
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        assert erc20.allowance(erc20_holder, erc20_stranger) == 0
        assert erc20.allowance(erc20_spender, erc20_holder) == 0

    def test_approve__to_zero_address__reverts(self, erc20, erc20_holder, amount, reason):
        with ape.reverts(reason("approve_to_zero")):
            erc20.approve(ZERO_ADDRESS, amount, sender=erc20_holder)

    # ------------------------------------------------------------ transferFrom

    def test_transfer_from__within_allowance__moves_tokens_and_decreases_allowance(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount, balances
    ):
        erc20.approve(erc20_spender, amount * 2, sender=erc20_holder)
        before = balances(erc20_holder, erc20_recipient, erc20_spender)

        receipt = erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert balances(erc20_holder, erc20_recipient, erc20_spender) == (
            before[0] - amount, before[1] + amount, before[2]
        )
        assert erc20.allowance(erc20_holder, erc20_spender) == amount
        assert emitted(receipt, erc20.Transfer, erc20) == [
            (erc20_holder.address, erc20_recipient.address, amount)
        ]

    def test_transfer_from__returns_true(self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        assert erc20.transferFrom.call(erc20_holder, erc20_recipient, amount, sender=erc20_spender) is True

    def test_transfer_from__whole_allowance__leaves_zero(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0

    def test_transfer_from__to_the_spender_itself__moves_tokens(
        self, erc20, erc20_holder, erc20_spender, amount, balances
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)
        before = balances(erc20_holder, erc20_spender)

        erc20.transferFrom(erc20_holder, erc20_spender, amount, sender=erc20_spender)

        assert balances(erc20_holder, erc20_spender) == (before[0] - amount, before[1] + amount)

    def test_transfer_from__with_infinite_allowance__does_not_decrease_it(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount
    ):
        erc20.approve(erc20_spender, MAX_UINT256, sender=erc20_holder)

        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)
        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == MAX_UINT256

    def test_transfer_from__beyond_allowance__reverts_and_changes_nothing(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount, balances, reason
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)
        before = balances(erc20_holder, erc20_recipient)

        with ape.reverts(reason("insufficient_allowance")):
            erc20.transferFrom(erc20_holder, erc20_recipient, amount + 1, sender=erc20_spender)

        assert balances(erc20_holder, erc20_recipient) == before
        assert erc20.allowance(erc20_holder, erc20_spender) == amount

    def test_transfer_from__after_allowance_spent__reverts(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, amount, reason
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)
        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        with ape.reverts(reason("insufficient_allowance")):
            erc20.transferFrom(erc20_holder, erc20_recipient, 1, sender=erc20_spender)

    def test_transfer_from__beyond_balance__reverts_and_changes_nothing(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, erc20_initial_balance, balances, reason
    ):
        erc20.approve(erc20_spender, erc20_initial_balance + 1, sender=erc20_holder)
        before = balances(erc20_holder, erc20_recipient)

        with ape.reverts(reason("insufficient_balance")):
            erc20.transferFrom(erc20_holder, erc20_recipient, erc20_initial_balance + 1, sender=erc20_spender)

        assert balances(erc20_holder, erc20_recipient) == before
        assert erc20.allowance(erc20_holder, erc20_spender) == erc20_initial_balance + 1

    def test_transfer_from__beyond_balance_with_infinite_allowance__reverts(
        self, erc20, erc20_holder, erc20_spender, erc20_recipient, erc20_initial_balance, reason
    ):
        erc20.approve(erc20_spender, MAX_UINT256, sender=erc20_holder)

        with ape.reverts(reason("insufficient_balance")):
            erc20.transferFrom(erc20_holder, erc20_recipient, erc20_initial_balance + 1, sender=erc20_spender)

    def test_transfer_from__to_zero_address__reverts_and_keeps_allowance(
        self, erc20, erc20_holder, erc20_spender, erc20_initial_balance, amount, reason
    ):
        erc20.approve(erc20_spender, amount, sender=erc20_holder)

        with ape.reverts(reason("transfer_to_zero")):
            erc20.transferFrom(erc20_holder, ZERO_ADDRESS, amount, sender=erc20_spender)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance
        assert erc20.allowance(erc20_holder, erc20_spender) == amount

    def test_transfer_from__from_zero_address__reverts(self, erc20, erc20_spender, erc20_recipient, reason):
        with ape.reverts(reason("transfer_from_zero")):
            erc20.transferFrom(ZERO_ADDRESS, erc20_recipient, 0, sender=erc20_spender)

    def test_transfer_from__by_stranger_without_allowance__reverts(
        self, erc20, erc20_holder, erc20_stranger, erc20_initial_balance, amount, reason
    ):
        with ape.reverts(reason("insufficient_allowance")):
            erc20.transferFrom(erc20_holder, erc20_stranger, amount, sender=erc20_stranger)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance

    def test_transfer_from__by_stranger_with_another_spenders_allowance__reverts(
        self, erc20, erc20_holder, erc20_spender, erc20_stranger, erc20_initial_balance, amount, reason
    ):
        erc20.approve(erc20_spender, MAX_UINT256, sender=erc20_holder)

        with ape.reverts(reason("insufficient_allowance")):
            erc20.transferFrom(erc20_holder, erc20_stranger, amount, sender=erc20_stranger)

        assert erc20.balanceOf(erc20_holder) == erc20_initial_balance

    def test_transfer_from__by_the_holder_itself_without_allowance__reverts(
        self, erc20, erc20_holder, erc20_recipient, amount, reason
    ):
        """An owner's own ``transferFrom`` needs an allowance like anyone's (as in OpenZeppelin's)."""
        with ape.reverts(reason("insufficient_allowance")):
            erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_holder)

    # ------------------------------------------------------ supply invariant

    def test_transfers__between_the_suites_accounts__keep_the_supply_and_the_sum_of_balances(
        self, erc20, erc20_holder, erc20_recipient, erc20_spender, erc20_stranger, amount, balances
    ):
        accounts = (erc20_holder, erc20_recipient, erc20_spender, erc20_stranger)
        supply = erc20.totalSupply()
        ours = sum(balances(*accounts))
        others = supply - ours

        erc20.transfer(erc20_recipient, amount, sender=erc20_holder)
        erc20.transfer(erc20_stranger, amount // 2, sender=erc20_recipient)
        erc20.approve(erc20_spender, amount, sender=erc20_holder)
        erc20.transferFrom(erc20_holder, erc20_spender, amount // 3, sender=erc20_spender)
        erc20.transferFrom(erc20_holder, erc20_stranger, amount - amount // 3, sender=erc20_spender)
        erc20.transfer(erc20_holder, amount // 2, sender=erc20_stranger)
        erc20.transfer(erc20_stranger, 0, sender=erc20_spender)

        assert erc20.totalSupply() == supply
        assert sum(balances(*accounts)) == ours
        assert sum(balances(*accounts)) + others == erc20.totalSupply()

    def test_failed_transfers__keep_the_supply_and_every_balance(
        self, erc20, erc20_holder, erc20_recipient, erc20_spender, erc20_stranger, erc20_initial_balance,
        balances,
    ):
        accounts = (erc20_holder, erc20_recipient, erc20_spender, erc20_stranger)
        supply = erc20.totalSupply()
        before = balances(*accounts)

        with ape.reverts():
            erc20.transfer(erc20_recipient, erc20_initial_balance + 1, sender=erc20_holder)
        with ape.reverts():
            erc20.transferFrom(erc20_holder, erc20_stranger, 1, sender=erc20_stranger)
        with ape.reverts():
            erc20.transfer(ZERO_ADDRESS, 1, sender=erc20_holder)

        assert erc20.totalSupply() == supply
        assert balances(*accounts) == before


class BehavesLikeERC20Permit(_ERC20Fixtures):
    """EIP-2612 ``permit`` with EIP-712 signatures, and the EIP-5267 domain."""

    @pytest.fixture
    def deadline(self, chain):
        return chain.blocks.head.timestamp + PERMIT_LIFETIME

    @pytest.fixture
    def sign_permit(self, erc20, chain_id, erc20_eip712_name, erc20_eip712_version):
        """Builder: ``(v, r, s)`` of a permit signed by ``signer`` (an Ape test account),
        bound to the token's domain unless ``chain``, ``contract``, ``name`` or
        ``version`` say otherwise."""

        def _sign(
            signer: Any, owner: Any, spender: Any, value: int, nonce: int, deadline: int, *,
            chain: int | None = None, contract: str | None = None, name: str | None = None,
            version: str | None = None,
        ) -> tuple[int, bytes, bytes]:
            data = eip712.typed_data(
                "Permit",
                eip712.permit_message(_address(owner), _address(spender), value, nonce, deadline),
                chain if chain is not None else chain_id,
                contract or erc20.address,
                name=erc20_eip712_name if name is None else name,
                version=erc20_eip712_version if version is None else version,
            )
            return eip712.split_signature(eip712.sign(data, signer.private_key))

        return _sign

    @pytest.fixture
    def submit_permit(self, erc20) -> Callable[..., Any]:
        """``submit_permit(owner, spender, value, deadline, (v, r, s), sender)``."""

        def _submit(owner: Any, spender: Any, value: int, deadline: int, vrs: tuple[int, bytes, bytes],
                    sender: Any) -> Any:
            v, r, s = vrs
            return erc20.permit(owner, spender, value, deadline, v, r, s, sender=sender)

        return _submit

    @pytest.fixture
    def holders_permit(self, sign_permit, erc20, erc20_holder, erc20_spender, amount, deadline):
        """The holder's signed permit for ``erc20_spender`` to spend ``amount``."""
        nonce = erc20.nonces(erc20_holder)
        return sign_permit(erc20_holder, erc20_holder, erc20_spender, amount, nonce, deadline)

    # ---------------------------------------------------------------- domain

    def test_domain_separator__matches_the_python_definition(
        self, erc20, chain_id, erc20_eip712_name, erc20_eip712_version
    ):
        assert erc20.DOMAIN_SEPARATOR() == eip712.domain_separator(
            chain_id, erc20.address, erc20_eip712_name, erc20_eip712_version
        )

    def test_eip712_domain__reports_name_version_chain_and_contract(
        self, erc20, chain_id, erc20_eip712_name, erc20_eip712_version
    ):
        fields, name, version, chain, contract, salt, extensions = erc20.eip712Domain()

        assert fields == b"\x0f"
        assert (name, version) == (erc20_eip712_name, erc20_eip712_version)
        assert chain == chain_id
        assert contract == erc20.address
        assert salt == bytes(32)
        assert list(extensions) == []

    def test_nonces__before_any_permit__is_zero(self, erc20, erc20_holder, erc20_stranger):
        assert erc20.nonces(erc20_holder) == 0
        assert erc20.nonces(erc20_stranger) == 0

    # ---------------------------------------------------------- valid permits

    def test_permit__signed_by_owner__sets_allowance_bumps_nonce_and_emits_approval(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_stranger, amount,
        deadline,
    ):
        """Anyone may submit the holder's permit (a relayer pays the gas)."""
        receipt = submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_stranger)

        assert erc20.allowance(erc20_holder, erc20_spender) == amount
        assert erc20.nonces(erc20_holder) == 1
        assert emitted(receipt, erc20.Approval, erc20) == [(erc20_holder.address, erc20_spender.address, amount)]

    def test_permit__then_spender__can_transfer_from_the_owner(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_recipient, amount,
        deadline, balances,
    ):
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)
        before = balances(erc20_holder, erc20_recipient)

        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert balances(erc20_holder, erc20_recipient) == (before[0] - amount, before[1] + amount)
        assert erc20.allowance(erc20_holder, erc20_spender) == 0

    def test_permit__second_with_next_nonce__overwrites_the_allowance(
        self, erc20, sign_permit, submit_permit, holders_permit, erc20_holder, erc20_spender, amount, deadline
    ):
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)
        second = sign_permit(erc20_holder, erc20_holder, erc20_spender, 1, 1, deadline)

        submit_permit(erc20_holder, erc20_spender, 1, deadline, second, erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == 1
        assert erc20.nonces(erc20_holder) == 2

    def test_permit__at_exactly_the_deadline__is_accepted(
        self, chain, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, amount
    ):
        deadline = chain.blocks.head.timestamp + 100
        vrs = sign_permit(erc20_holder, erc20_holder, erc20_spender, amount, 0, deadline)
        chain.pending_timestamp = deadline

        receipt = submit_permit(erc20_holder, erc20_spender, amount, deadline, vrs, erc20_spender)

        assert chain.blocks[receipt.block_number].timestamp == deadline
        assert erc20.allowance(erc20_holder, erc20_spender) == amount

    def test_permit__infinite_value__is_not_spent_down(
        self, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, erc20_recipient, amount, deadline
    ):
        vrs = sign_permit(erc20_holder, erc20_holder, erc20_spender, MAX_UINT256, 0, deadline)
        submit_permit(erc20_holder, erc20_spender, MAX_UINT256, deadline, vrs, erc20_spender)

        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == MAX_UINT256

    # -------------------------------------------------------- invalid permits

    def test_permit__after_the_deadline__reverts_and_keeps_nonce(
        self, chain, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, amount, reason
    ):
        deadline = chain.blocks.head.timestamp - 1
        vrs = sign_permit(erc20_holder, erc20_holder, erc20_spender, amount, 0, deadline)

        with ape.reverts(reason("permit_expired")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, vrs, erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert erc20.nonces(erc20_holder) == 0

    def test_permit__signed_by_someone_else__reverts_and_keeps_nonce(
        self, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, erc20_stranger, amount, deadline,
        reason,
    ):
        vrs = sign_permit(erc20_stranger, erc20_holder, erc20_spender, amount, 0, deadline)

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, vrs, erc20_stranger)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert erc20.nonces(erc20_holder) == 0

    def test_permit__replayed__reverts(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_recipient, amount,
        deadline, reason,
    ):
        """The spender cannot top its allowance back up with the same signature."""
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)
        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert erc20.nonces(erc20_holder) == 1

    def test_permit__signed_with_a_future_nonce__reverts(
        self, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, amount, deadline, reason
    ):
        vrs = sign_permit(erc20_holder, erc20_holder, erc20_spender, amount, 1, deadline)

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, vrs, erc20_spender)

        assert erc20.nonces(erc20_holder) == 0

    @pytest.mark.parametrize(
        "domain_change",
        [{"chain": 1}, {"contract": OTHER_CONTRACT}, {"name": "Another Token"}, {"version": "999"}],
        ids=["another-chain-id", "another-contract", "another-name", "another-version"],
    )
    def test_permit__signed_for_another_domain__reverts(
        self, erc20, sign_permit, submit_permit, erc20_holder, erc20_spender, amount, deadline, reason,
        domain_change,
    ):
        vrs = sign_permit(erc20_holder, erc20_holder, erc20_spender, amount, 0, deadline, **domain_change)

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, vrs, erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert erc20.nonces(erc20_holder) == 0

    def test_permit__malleable_high_s_twin__reverts(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, amount, deadline, reason
    ):
        twin = malleable_twin(*holders_permit)

        with ape.reverts(reason("permit_malleable_signature")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, twin, erc20_spender)

        assert erc20.nonces(erc20_holder) == 0

    def test_permit__after_its_low_s_original__high_s_twin_still_reverts(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, amount, deadline
    ):
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)

        with ape.reverts():
            submit_permit(erc20_holder, erc20_spender, amount, deadline, malleable_twin(*holders_permit),
                          erc20_spender)

        assert erc20.nonces(erc20_holder) == 1

    @pytest.mark.parametrize("changed", ["spender", "value", "deadline", "owner"])
    def test_permit__submitted_with_other_values_than_signed__reverts(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_stranger, amount,
        deadline, reason, changed,
    ):
        submitted = {"owner": erc20_holder, "spender": erc20_spender, "value": amount, "deadline": deadline}
        submitted[changed] = {
            "spender": erc20_stranger, "value": amount + 1, "deadline": deadline + 1, "owner": erc20_stranger,
        }[changed]

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(submitted["owner"], submitted["spender"], submitted["value"], submitted["deadline"],
                          holders_permit, erc20_stranger)

        assert erc20.allowance(erc20_holder, erc20_stranger) == 0
        assert erc20.allowance(erc20_holder, erc20_spender) == 0
        assert erc20.nonces(erc20_holder) == 0

    def test_permit__for_the_zero_address_as_spender__reverts(
        self, erc20, sign_permit, submit_permit, erc20_holder, erc20_stranger, amount, deadline, reason
    ):
        vrs = sign_permit(erc20_holder, erc20_holder, ZERO_ADDRESS, amount, 0, deadline)

        with ape.reverts(reason("approve_to_zero")):
            submit_permit(erc20_holder, ZERO_ADDRESS, amount, deadline, vrs, erc20_stranger)

        assert erc20.nonces(erc20_holder) == 0

    # --------------------------------------------------------------- front-run

    def test_permit__front_run_by_a_stranger__sets_the_allowance_once_and_the_owners_call_reverts(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_stranger, amount,
        deadline, reason,
    ):
        """Someone copies the signature from the mempool and submits it first."""
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_stranger)

        with ape.reverts(reason("permit_invalid_signer")):
            submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender)

        assert erc20.allowance(erc20_holder, erc20_spender) == amount
        assert erc20.nonces(erc20_holder) == 1

    def test_permit__front_run__does_not_break_a_flow_that_checks_the_allowance_first(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_stranger,
        erc20_recipient, amount, deadline, balances,
    ):
        submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_stranger)
        before = balances(erc20_holder, erc20_recipient)

        receipt = permit_unless_already_applied(
            erc20, erc20_holder, erc20_spender, amount,
            lambda: submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender),
        )
        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert receipt is None
        assert balances(erc20_holder, erc20_recipient) == (before[0] - amount, before[1] + amount)
        assert erc20.allowance(erc20_holder, erc20_spender) == 0

    def test_permit__without_front_run__the_allowance_checking_flow_submits_the_permit(
        self, erc20, submit_permit, holders_permit, erc20_holder, erc20_spender, erc20_recipient, amount, deadline
    ):
        receipt = permit_unless_already_applied(
            erc20, erc20_holder, erc20_spender, amount,
            lambda: submit_permit(erc20_holder, erc20_spender, amount, deadline, holders_permit, erc20_spender),
        )
        erc20.transferFrom(erc20_holder, erc20_recipient, amount, sender=erc20_spender)

        assert receipt is not None
        assert erc20.nonces(erc20_holder) == 1
        assert erc20.allowance(erc20_holder, erc20_spender) == 0
