"""The reference stablecoin behaves like a well-run fiat token (USDC's
FiatToken): minters with allowances, burn, blacklist, pause, two-step
ownership, rescue, EIP-2612 permit and EIP-3009 authorizations, and every
way to misuse a role or a signature is refused."""

from __future__ import annotations

from collections.abc import Callable

import ape
import pytest
from ape.utils import ZERO_ADDRESS
from eip3009_behaviour import (
    FAR,
    RECEIVE_AUTH,
    TRANSFER_AUTH,
    Authorization,
    BehavesLikeEIP3009,
    authorization_signer,
    cancel_signer,
)
from erc20_behaviour import (
    SNEKMATE_ERC20_ERRORS,
    BehavesLikeERC20,
    BehavesLikeERC20Metadata,
    BehavesLikeERC20Permit,
)

from amphora import eip712

NAME = "Amphora Reference USD"
SYMBOL = "aUSD"
DOMAIN_NAME = "Amphora Reference USD"
DOMAIN_VERSION = "1"

USD = 10**6  # 6 decimals
MINT_ALLOWANCE = 1_000_000 * USD
HOLDER_FUNDS = 1_000 * USD
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141



# ---------------------------------------------------------------- actors
# The stablecoin's own roles; ``minter`` and the others come from conftest.


@pytest.fixture(scope="module")
def master_minter(accounts):
    return accounts[16]


@pytest.fixture(scope="module")
def pauser(accounts):
    return accounts[17]


@pytest.fixture(scope="module")
def blacklister(accounts):
    return accounts[18]


@pytest.fixture(scope="module")
def rescuer(accounts):
    return accounts[19]


# ------------------------------------------------------------ deployment


@pytest.fixture(scope="module")
def create_stablecoin(project, admin):
    def _create(name: str = NAME, symbol: str = SYMBOL, domain_name: str = DOMAIN_NAME):
        return admin.deploy(project.ReferenceStablecoin, name, symbol, domain_name, DOMAIN_VERSION)

    return _create


@pytest.fixture(scope="module")
def stablecoin(create_stablecoin, admin, master_minter, minter, pauser, blacklister, rescuer, holder, recipient):
    """A stablecoin whose owner (admin) handed every role to its own account,
    with one minter, and funds at ``holder`` and ``recipient``."""
    t = create_stablecoin()
    t.updateMasterMinter(master_minter, sender=admin)
    t.updatePauser(pauser, sender=admin)
    t.updateBlacklister(blacklister, sender=admin)
    t.updateRescuer(rescuer, sender=admin)
    t.configureMinter(minter, MINT_ALLOWANCE, sender=master_minter)
    t.mint(holder, HOLDER_FUNDS, sender=minter)
    t.mint(recipient, HOLDER_FUNDS, sender=minter)
    return t


@pytest.fixture(scope="module")
def wallet(project, holder, stablecoin, minter):
    """A smart-contract wallet (ERC-1271) owned by ``holder``, holding funds."""
    w = holder.deploy(project.MockERC1271Wallet, holder)
    stablecoin.mint(w, HOLDER_FUNDS, sender=minter)
    return w


# -------------------------------------------------------------- signatures


def _key(signer) -> bytes | str:
    return signer if isinstance(signer, (bytes, str)) else signer.private_key


def _high_s(v: int, r: bytes, s: bytes) -> tuple[int, bytes, bytes]:
    """The other valid form of the same ECDSA signature: (r, n - s, v ^ 1)."""
    s_high = SECP256K1_N - int.from_bytes(s, "big")
    return (55 - v), r, s_high.to_bytes(32, "big")


@pytest.fixture(scope="module")
def sign_authorization(stablecoin, chain_id) -> Callable[..., Authorization]:
    return authorization_signer(stablecoin, chain_id)


@pytest.fixture(scope="module")
def sign_cancel(stablecoin, chain_id) -> Callable[..., tuple[int, bytes, bytes]]:
    return cancel_signer(stablecoin, chain_id)


@pytest.fixture(scope="module")
def sign_permit(stablecoin, chain_id) -> Callable[..., tuple[int, bytes, bytes]]:
    """Builder: the (v, r, s) of an EIP-2612 permit by ``signer``."""

    def _sign(signer, owner, spender, value: int, nonce: int, deadline: int = FAR) -> tuple[int, bytes, bytes]:
        data = eip712.typed_data("Permit", eip712.permit_message(str(owner), str(spender), value, nonce, deadline),
                                 chain_id, stablecoin.address, DOMAIN_NAME, DOMAIN_VERSION)
        return eip712.split_signature(eip712.sign(data, _key(signer)))

    return _sign


def _only_event(tx, event_type):
    events = list(tx.decode_logs(event_type))
    assert len(events) == 1, f"expected one {event_type.name}, got {len(events)}"
    return events[0]


# ------------------------------------------------- ERC-20 conformance suite


class TestReferenceStablecoinBehavesLikeERC20(BehavesLikeERC20Metadata, BehavesLikeERC20,
                                              BehavesLikeERC20Permit):
    """The shared ERC-20 suite, run against the stablecoin (with its own
    revert reasons where it wraps snekmate's functions)."""

    @pytest.fixture
    def erc20(self, stablecoin):
        return stablecoin

    @pytest.fixture
    def erc20_holder(self, holder):
        return holder

    @pytest.fixture
    def erc20_initial_balance(self):
        return HOLDER_FUNDS

    @pytest.fixture
    def erc20_recipient(self, recipient):
        return recipient

    @pytest.fixture
    def erc20_spender(self, relayer):
        return relayer

    @pytest.fixture
    def erc20_stranger(self, attacker):
        return attacker

    @pytest.fixture
    def erc20_errors(self):
        return {
            **SNEKMATE_ERC20_ERRORS,
            "permit_expired": "stablecoin: permit is expired",
            "permit_invalid_signer": "stablecoin: invalid signature",
            "permit_malleable_signature": "stablecoin: invalid signature",
        }

    @pytest.fixture
    def erc20_name(self):
        return NAME

    @pytest.fixture
    def erc20_symbol(self):
        return SYMBOL

    @pytest.fixture
    def erc20_decimals(self):
        return 6

    @pytest.fixture
    def erc20_eip712_name(self):
        return DOMAIN_NAME

    @pytest.fixture
    def erc20_eip712_version(self):
        return DOMAIN_VERSION


# ------------------------------------------------------------- deployment


def test_deploy__fiat_token_metadata_and_deployer_holds_every_role(create_stablecoin, admin):
    t = create_stablecoin()
    assert (t.name(), t.symbol(), t.decimals(), t.totalSupply()) == (NAME, SYMBOL, 6, 0)
    assert t.owner() == admin and t.pending_owner() == ZERO_ADDRESS
    assert t.masterMinter() == t.pauser() == t.blacklister() == t.rescuer() == admin
    assert not t.isMinter(admin) and not t.paused()


def test_deploy__typehashes_and_domain__match_python_definitions(stablecoin, chain_id):
    assert stablecoin.PERMIT_TYPEHASH() == eip712.typehash("Permit")
    assert stablecoin.TRANSFER_WITH_AUTHORIZATION_TYPEHASH() == eip712.typehash(TRANSFER_AUTH)
    assert stablecoin.RECEIVE_WITH_AUTHORIZATION_TYPEHASH() == eip712.typehash(RECEIVE_AUTH)
    assert stablecoin.CANCEL_AUTHORIZATION_TYPEHASH() == eip712.typehash("CancelAuthorization")
    assert stablecoin.DOMAIN_SEPARATOR() == eip712.domain_separator(
        chain_id, stablecoin.address, DOMAIN_NAME, DOMAIN_VERSION
    )
    _, name, version, chain, contract, _, _ = stablecoin.eip712Domain()
    assert (name, version, chain, contract) == (DOMAIN_NAME, DOMAIN_VERSION, chain_id, stablecoin.address)


def test_deploy__unsafe_inherited_functions__are_not_exposed(stablecoin):
    # renounce_ownership: a stablecoin without owner could never get a new pauser.
    # erc20's one-step ownership transfer, set_minter, burn_from: bypass the roles.
    for name in ("renounce_ownership", "set_minter", "burn_from", "is_minter"):
        assert not hasattr(stablecoin, name), name


# ------------------------------------------------------------------ mint


def test_mint__within_allowance__credits_recipient_and_spends_allowance(stablecoin, minter, other_winery):
    supply = stablecoin.totalSupply()
    tx = stablecoin.mint(other_winery, 250 * USD, sender=minter)

    assert stablecoin.balanceOf(other_winery) == 250 * USD
    assert stablecoin.totalSupply() == supply + 250 * USD
    assert stablecoin.minterAllowance(minter) == MINT_ALLOWANCE - 2 * HOLDER_FUNDS - 250 * USD
    transfer = _only_event(tx, stablecoin.Transfer)
    assert (transfer.sender, transfer.receiver, transfer.value) == (ZERO_ADDRESS, other_winery, 250 * USD)
    minted = _only_event(tx, stablecoin.Minted)
    assert (minted.minter, minted.to, minted.amount) == (minter, other_winery, 250 * USD)


def test_mint__beyond_allowance__reverts(stablecoin, minter, holder):
    left = stablecoin.minterAllowance(minter)
    with ape.reverts("stablecoin: mint amount exceeds minter allowance"):
        stablecoin.mint(holder, left + 1, sender=minter)


def test_mint__allowance_exhausted__reverts(stablecoin, minter, holder):
    stablecoin.mint(holder, stablecoin.minterAllowance(minter), sender=minter)
    assert stablecoin.minterAllowance(minter) == 0
    with ape.reverts("stablecoin: mint amount exceeds minter allowance"):
        stablecoin.mint(holder, 1, sender=minter)


def test_configure_minter__again__replaces_the_allowance(stablecoin, master_minter, minter, holder):
    stablecoin.mint(holder, stablecoin.minterAllowance(minter), sender=minter)
    tx = stablecoin.configureMinter(minter, 5 * USD, sender=master_minter)

    assert stablecoin.minterAllowance(minter) == 5 * USD
    configured = _only_event(tx, stablecoin.MinterConfigured)
    assert (configured.minter, configured.allowance) == (minter, 5 * USD)
    stablecoin.mint(holder, 5 * USD, sender=minter)
    with ape.reverts("stablecoin: mint amount exceeds minter allowance"):
        stablecoin.mint(holder, 1, sender=minter)


def test_remove_minter__takes_effect_at_once(stablecoin, master_minter, minter, holder):
    tx = stablecoin.removeMinter(minter, sender=master_minter)

    assert not stablecoin.isMinter(minter) and stablecoin.minterAllowance(minter) == 0
    assert _only_event(tx, stablecoin.MinterRemoved).minter == minter
    with ape.reverts("stablecoin: caller is not a minter"):
        stablecoin.mint(holder, 1, sender=minter)


def test_remove_minter__not_a_minter__reverts(stablecoin, master_minter, attacker):
    with ape.reverts("stablecoin: account is not a minter"):
        stablecoin.removeMinter(attacker, sender=master_minter)


def test_mint__by_non_minter__reverts(stablecoin, attacker):
    with ape.reverts("stablecoin: caller is not a minter"):
        stablecoin.mint(attacker, 1, sender=attacker)


def test_mint__by_master_minter_or_owner_who_are_not_minters__reverts(stablecoin, master_minter, admin, attacker):
    for account in (master_minter, admin):
        with ape.reverts("stablecoin: caller is not a minter"):
            stablecoin.mint(attacker, 1, sender=account)


def test_mint__zero_amount__reverts(stablecoin, minter, holder):
    with ape.reverts("stablecoin: mint amount is zero"):
        stablecoin.mint(holder, 0, sender=minter)


def test_mint__to_zero_address__reverts(stablecoin, minter):
    with ape.reverts("erc20: mint to the zero address"):
        stablecoin.mint(ZERO_ADDRESS, 1, sender=minter)


@pytest.mark.parametrize("who", ["attacker", "admin", "minter"])
def test_configure_minter__by_anyone_but_master_minter__reverts(stablecoin, request, who):
    # The owner appoints the master minter but does not act as one; a minter
    # cannot raise its own allowance.
    account = request.getfixturevalue(who)
    with ape.reverts("stablecoin: caller is not the master minter"):
        stablecoin.configureMinter(account, MINT_ALLOWANCE * 2, sender=account)


def test_remove_minter__by_anyone_but_master_minter__reverts(stablecoin, minter, attacker):
    with ape.reverts("stablecoin: caller is not the master minter"):
        stablecoin.removeMinter(minter, sender=attacker)


def test_configure_minter__zero_address__reverts(stablecoin, master_minter):
    with ape.reverts("stablecoin: minter is the zero address"):
        stablecoin.configureMinter(ZERO_ADDRESS, 1, sender=master_minter)


# ------------------------------------------------------------------ burn


def test_burn__by_minter__destroys_its_own_balance(stablecoin, minter, holder):
    stablecoin.transfer(minter, 100 * USD, sender=holder)
    supply = stablecoin.totalSupply()
    allowance = stablecoin.minterAllowance(minter)

    tx = stablecoin.burn(40 * USD, sender=minter)

    assert stablecoin.balanceOf(minter) == 60 * USD
    assert stablecoin.totalSupply() == supply - 40 * USD
    assert stablecoin.minterAllowance(minter) == allowance, "burning does not restore mint allowance"
    transfer = _only_event(tx, stablecoin.Transfer)
    assert (transfer.sender, transfer.receiver, transfer.value) == (minter, ZERO_ADDRESS, 40 * USD)
    burned = _only_event(tx, stablecoin.Burned)
    assert (burned.burner, burned.amount) == (minter, 40 * USD)


def test_burn__by_non_minter__reverts(stablecoin, holder):
    with ape.reverts("stablecoin: caller is not a minter"):
        stablecoin.burn(1, sender=holder)
    assert stablecoin.balanceOf(holder) == HOLDER_FUNDS


def test_burn__beyond_own_balance__reverts(stablecoin, minter):
    with ape.reverts("erc20: burn amount exceeds balance"):
        stablecoin.burn(1, sender=minter)


def test_burn__zero_amount__reverts(stablecoin, minter):
    with ape.reverts("stablecoin: burn amount is zero"):
        stablecoin.burn(0, sender=minter)


def test_burn__by_removed_minter__reverts(stablecoin, master_minter, minter, holder):
    stablecoin.transfer(minter, USD, sender=holder)
    stablecoin.removeMinter(minter, sender=master_minter)
    with ape.reverts("stablecoin: caller is not a minter"):
        stablecoin.burn(USD, sender=minter)


# ------------------------------------------------------------- blacklist


def test_blacklist__by_blacklister__freezes_and_emits(stablecoin, blacklister, attacker):
    tx = stablecoin.blacklist(attacker, sender=blacklister)
    assert stablecoin.isBlacklisted(attacker)
    assert _only_event(tx, stablecoin.Blacklisted).account == attacker


@pytest.mark.parametrize("who", ["attacker", "admin", "pauser"])
def test_blacklist__by_anyone_but_blacklister__reverts(stablecoin, request, holder, who):
    account = request.getfixturevalue(who)
    with ape.reverts("stablecoin: caller is not the blacklister"):
        stablecoin.blacklist(holder, sender=account)
    with ape.reverts("stablecoin: caller is not the blacklister"):
        stablecoin.unBlacklist(holder, sender=account)


def test_transfer__from_blacklisted_sender__reverts(stablecoin, blacklister, holder, recipient):
    stablecoin.blacklist(holder, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.transfer(recipient, 1, sender=holder)


def test_transfer__to_blacklisted_recipient__reverts(stablecoin, blacklister, holder, recipient):
    stablecoin.blacklist(recipient, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.transfer(recipient, 1, sender=holder)


def test_transfer_from__by_blacklisted_spender__reverts(stablecoin, blacklister, holder, recipient, operator):
    stablecoin.approve(operator, 10 * USD, sender=holder)
    stablecoin.blacklist(operator, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.transferFrom(holder, recipient, USD, sender=operator)


def test_transfer_from__of_blacklisted_owner__reverts(stablecoin, blacklister, holder, recipient, operator):
    stablecoin.approve(operator, 10 * USD, sender=holder)
    stablecoin.blacklist(holder, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.transferFrom(holder, recipient, USD, sender=operator)


def test_transfer_from__to_blacklisted_recipient__reverts(stablecoin, blacklister, holder, recipient, operator):
    stablecoin.approve(operator, 10 * USD, sender=holder)
    stablecoin.blacklist(recipient, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.transferFrom(holder, recipient, USD, sender=operator)


def test_approve__by_blacklisted_owner__reverts(stablecoin, blacklister, holder, operator):
    stablecoin.blacklist(holder, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.approve(operator, 1, sender=holder)


def test_approve__to_blacklisted_spender__reverts(stablecoin, blacklister, holder, attacker):
    stablecoin.blacklist(attacker, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.approve(attacker, 1, sender=holder)


def test_permit__blacklisted_owner_or_spender__reverts(stablecoin, blacklister, holder, operator, relayer, sign_permit):
    v, r, s = sign_permit(holder, holder, operator, USD, 0)
    for frozen in (holder, operator):
        stablecoin.blacklist(frozen, sender=blacklister)
        with ape.reverts("stablecoin: account is blacklisted"):
            stablecoin.permit(holder, operator, USD, FAR, v, r, s, sender=relayer)
        stablecoin.unBlacklist(frozen, sender=blacklister)
    stablecoin.permit(holder, operator, USD, FAR, v, r, s, sender=relayer)
    assert stablecoin.allowance(holder, operator) == USD


def test_mint__to_blacklisted_or_by_blacklisted_minter__reverts(stablecoin, blacklister, minter, holder, attacker):
    stablecoin.blacklist(attacker, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.mint(attacker, 1, sender=minter)
    stablecoin.blacklist(minter, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.mint(holder, 1, sender=minter)


def test_burn__by_blacklisted_minter__reverts(stablecoin, blacklister, minter, holder):
    stablecoin.transfer(minter, USD, sender=holder)
    stablecoin.blacklist(minter, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.burn(USD, sender=minter)


@pytest.mark.parametrize("primary", [TRANSFER_AUTH, RECEIVE_AUTH])
@pytest.mark.parametrize("frozen", ["holder", "recipient"])
def test_authorization__from_or_to_blacklisted__reverts(stablecoin, request, blacklister, holder, recipient,
                                                         sign_authorization, primary, frozen):
    auth = sign_authorization(holder, holder, recipient, USD, primary=primary)
    stablecoin.blacklist(request.getfixturevalue(frozen), sender=blacklister)
    submit = stablecoin.transferWithAuthorization if primary == TRANSFER_AUTH else stablecoin.receiveWithAuthorization
    with ape.reverts("stablecoin: account is blacklisted"):
        submit(*auth.args, sender=recipient)
    assert not stablecoin.authorizationState(holder, auth.nonce)


def test_un_blacklist__restores_sending_receiving_and_approving(stablecoin, blacklister, holder, recipient, operator):
    stablecoin.blacklist(holder, sender=blacklister)
    tx = stablecoin.unBlacklist(holder, sender=blacklister)

    assert not stablecoin.isBlacklisted(holder)
    assert _only_event(tx, stablecoin.UnBlacklisted).account == holder
    stablecoin.transfer(recipient, USD, sender=holder)
    stablecoin.transfer(holder, USD, sender=recipient)
    stablecoin.approve(operator, USD, sender=holder)
    assert stablecoin.balanceOf(holder) == HOLDER_FUNDS and stablecoin.allowance(holder, operator) == USD


def test_blacklist__balance_stays_frozen_not_seized(stablecoin, blacklister, holder):
    stablecoin.blacklist(holder, sender=blacklister)
    assert stablecoin.balanceOf(holder) == HOLDER_FUNDS


# ----------------------------------------------------------------- pause


@pytest.fixture
def actions(stablecoin, minter, holder, recipient, operator, relayer, sign_authorization, sign_permit):
    """Every entry point that moves funds or sets an allowance, ready to call
    (signatures made and allowances given beforehand)."""
    stablecoin.approve(operator, 10 * USD, sender=holder)
    stablecoin.transfer(minter, 10 * USD, sender=holder)
    permit = sign_permit(holder, holder, relayer, USD, 0)
    transfer_auth = sign_authorization(holder, holder, recipient, USD)
    receive_auth = sign_authorization(holder, holder, recipient, USD, primary=RECEIVE_AUTH)
    return {
        "transfer": lambda: stablecoin.transfer(recipient, USD, sender=holder),
        "transferFrom": lambda: stablecoin.transferFrom(holder, recipient, USD, sender=operator),
        "approve": lambda: stablecoin.approve(recipient, USD, sender=holder),
        "permit": lambda: stablecoin.permit(holder, relayer, USD, FAR, *permit, sender=relayer),
        "mint": lambda: stablecoin.mint(recipient, USD, sender=minter),
        "burn": lambda: stablecoin.burn(USD, sender=minter),
        "transferWithAuthorization": lambda: stablecoin.transferWithAuthorization(*transfer_auth.args, sender=relayer),
        "receiveWithAuthorization": lambda: stablecoin.receiveWithAuthorization(*receive_auth.args, sender=recipient),
    }


@pytest.mark.parametrize("action", [
    "transfer", "transferFrom", "approve", "permit", "mint", "burn",
    "transferWithAuthorization", "receiveWithAuthorization",
])
def test_action__while_paused__reverts_and_works_after_unpause(stablecoin, pauser, actions, action):
    stablecoin.pause(sender=pauser)
    with ape.reverts("pausable: contract is paused"):
        actions[action]()

    stablecoin.unpause(sender=pauser)
    actions[action]()


def test_pause__by_pauser__emits_paused_and_unpaused(stablecoin, pauser):
    tx = stablecoin.pause(sender=pauser)
    assert stablecoin.paused() and _only_event(tx, stablecoin.Paused).account == pauser
    tx = stablecoin.unpause(sender=pauser)
    assert not stablecoin.paused() and _only_event(tx, stablecoin.Unpaused).account == pauser


@pytest.mark.parametrize("who", ["attacker", "admin", "blacklister"])
def test_pause__by_anyone_but_pauser__reverts(stablecoin, request, pauser, who):
    account = request.getfixturevalue(who)
    with ape.reverts("stablecoin: caller is not the pauser"):
        stablecoin.pause(sender=account)
    stablecoin.pause(sender=pauser)
    with ape.reverts("stablecoin: caller is not the pauser"):
        stablecoin.unpause(sender=account)


def test_configure_minter__while_paused__reverts(stablecoin, pauser, master_minter, minter):
    stablecoin.pause(sender=pauser)
    with ape.reverts("pausable: contract is paused"):
        stablecoin.configureMinter(minter, 1, sender=master_minter)


def test_remove_minter_and_blacklist__while_paused__still_work(stablecoin, pauser, master_minter, blacklister,
                                                                minter, attacker):
    stablecoin.pause(sender=pauser)
    stablecoin.removeMinter(minter, sender=master_minter)
    stablecoin.blacklist(attacker, sender=blacklister)
    assert not stablecoin.isMinter(minter) and stablecoin.isBlacklisted(attacker)


def test_cancel_authorization__while_paused__still_works(stablecoin, pauser, holder, recipient, relayer,
                                                          sign_authorization, sign_cancel):
    auth = sign_authorization(holder, holder, recipient, USD)
    stablecoin.pause(sender=pauser)
    stablecoin.cancelAuthorization(holder, auth.nonce, *sign_cancel(holder, holder, auth.nonce), sender=relayer)
    stablecoin.unpause(sender=pauser)
    with ape.reverts("eip3009: authorization is used or canceled"):
        stablecoin.transferWithAuthorization(*auth.args, sender=relayer)


# --------------------------------------------------------------- ownership


def test_transfer_ownership__takes_two_steps(stablecoin, admin, operator):
    tx = stablecoin.transfer_ownership(operator, sender=admin)
    assert stablecoin.owner() == admin and stablecoin.pending_owner() == operator
    started = _only_event(tx, stablecoin.OwnershipTransferStarted)
    assert (started.previous_owner, started.new_owner) == (admin, operator)

    tx = stablecoin.accept_ownership(sender=operator)
    assert stablecoin.owner() == operator and stablecoin.pending_owner() == ZERO_ADDRESS
    transferred = _only_event(tx, stablecoin.OwnershipTransferred)
    assert (transferred.previous_owner, transferred.new_owner) == (admin, operator)


def test_accept_ownership__by_other_than_pending_owner__reverts(stablecoin, admin, operator, attacker):
    stablecoin.transfer_ownership(operator, sender=admin)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        stablecoin.accept_ownership(sender=attacker)
    assert stablecoin.owner() == admin


def test_transfer_ownership__by_non_owner__reverts(stablecoin, attacker):
    with ape.reverts("ownable: caller is not the owner"):
        stablecoin.transfer_ownership(attacker, sender=attacker)


ROLE_SETTERS = [
    ("updateMasterMinter", "masterMinter", "MasterMinterChanged", "master_minter"),
    ("updatePauser", "pauser", "PauserChanged", "pauser"),
    ("updateBlacklister", "blacklister", "BlacklisterChanged", "blacklister"),
    ("updateRescuer", "rescuer", "RescuerChanged", "rescuer"),
]


@pytest.mark.parametrize(("setter", "getter", "event", "field"), ROLE_SETTERS)
def test_update_role__by_owner__appoints_and_emits(stablecoin, admin, operator, setter, getter, event, field):
    tx = getattr(stablecoin, setter)(operator, sender=admin)
    assert getattr(stablecoin, getter)() == operator
    assert getattr(_only_event(tx, getattr(stablecoin, event)), field) == operator


@pytest.mark.parametrize(("setter", "getter", "event", "field"), ROLE_SETTERS)
def test_update_role__by_non_owner__reverts(stablecoin, attacker, setter, getter, event, field):
    # Neither an outsider nor the holder of the role itself may reassign it.
    role_holder = getattr(stablecoin, getter)()
    for account in (attacker, role_holder):
        with ape.reverts("ownable: caller is not the owner"):
            getattr(stablecoin, setter)(attacker, sender=account)


@pytest.mark.parametrize(("setter", "getter", "event", "field"), ROLE_SETTERS)
def test_update_role__to_zero_address__reverts(stablecoin, admin, setter, getter, event, field):
    with ape.reverts():
        getattr(stablecoin, setter)(ZERO_ADDRESS, sender=admin)


def test_update_role__after_ownership_moved__only_new_owner_may(stablecoin, admin, operator, attacker):
    stablecoin.transfer_ownership(operator, sender=admin)
    stablecoin.accept_ownership(sender=operator)
    with ape.reverts("ownable: caller is not the owner"):
        stablecoin.updatePauser(admin, sender=admin)
    stablecoin.updatePauser(attacker, sender=operator)
    assert stablecoin.pauser() == attacker


# ---------------------------------------------------------------- rescue


def test_rescue__own_token_sent_to_contract__rescuer_recovers_it(stablecoin, rescuer, holder):
    stablecoin.transfer(stablecoin, 30 * USD, sender=holder)  # a mistake

    tx = stablecoin.rescueERC20(stablecoin, holder, 30 * USD, sender=rescuer)

    assert stablecoin.balanceOf(stablecoin) == 0 and stablecoin.balanceOf(holder) == HOLDER_FUNDS
    transfer = _only_event(tx, stablecoin.Transfer)
    assert (transfer.sender, transfer.receiver, transfer.value) == (stablecoin.address, holder, 30 * USD)
    rescued = _only_event(tx, stablecoin.TokensRescued)
    assert (rescued.token, rescued.to, rescued.amount) == (stablecoin.address, holder, 30 * USD)


def test_rescue__other_token_sent_to_contract__rescuer_recovers_it(stablecoin, create_stablecoin, admin, rescuer,
                                                                   holder):
    other = create_stablecoin("Other USD", "oUSD", "Other USD")
    other.configureMinter(admin, 100 * USD, sender=admin)
    other.mint(stablecoin, 100 * USD, sender=admin)  # sent to the wrong contract

    stablecoin.rescueERC20(other, holder, 100 * USD, sender=rescuer)

    assert other.balanceOf(stablecoin) == 0 and other.balanceOf(holder) == 100 * USD


@pytest.mark.parametrize("who", ["attacker", "admin", "holder"])
def test_rescue__by_anyone_but_rescuer__reverts(stablecoin, request, holder, who):
    stablecoin.transfer(stablecoin, USD, sender=holder)
    with ape.reverts("stablecoin: caller is not the rescuer"):
        stablecoin.rescueERC20(stablecoin, request.getfixturevalue(who), USD, sender=request.getfixturevalue(who))


def test_rescue__more_than_the_contract_holds__reverts(stablecoin, rescuer, holder):
    # The rescuer can only move what the contract itself holds, never users' funds.
    stablecoin.transfer(stablecoin, USD, sender=holder)
    with ape.reverts("erc20: transfer amount exceeds balance"):
        stablecoin.rescueERC20(stablecoin, rescuer, USD + 1, sender=rescuer)


def test_rescue__own_token_to_blacklisted_account__reverts(stablecoin, rescuer, blacklister, holder, attacker):
    stablecoin.transfer(stablecoin, USD, sender=holder)
    stablecoin.blacklist(attacker, sender=blacklister)
    with ape.reverts("stablecoin: account is blacklisted"):
        stablecoin.rescueERC20(stablecoin, attacker, USD, sender=rescuer)


def test_rescue__not_a_token_contract__reverts(stablecoin, rescuer, attacker):
    with ape.reverts():
        stablecoin.rescueERC20(attacker, rescuer, 1, sender=rescuer)


# ------------------------------------------------------------------ permit


def test_permit__relayed__sets_allowance_and_consumes_nonce(stablecoin, holder, operator, relayer, sign_permit):
    v, r, s = sign_permit(holder, holder, operator, 7 * USD, 0)

    tx = stablecoin.permit(holder, operator, 7 * USD, FAR, v, r, s, sender=relayer)

    assert stablecoin.allowance(holder, operator) == 7 * USD and stablecoin.nonces(holder) == 1
    approval = _only_event(tx, stablecoin.Approval)
    assert (approval.owner, approval.spender, approval.value) == (holder, operator, 7 * USD)


def test_permit__replayed__reverts(stablecoin, holder, operator, relayer, sign_permit):
    v, r, s = sign_permit(holder, holder, operator, 7 * USD, 0)
    stablecoin.permit(holder, operator, 7 * USD, FAR, v, r, s, sender=relayer)
    stablecoin.approve(operator, 0, sender=holder)
    with ape.reverts("stablecoin: invalid signature"):
        stablecoin.permit(holder, operator, 7 * USD, FAR, v, r, s, sender=relayer)
    assert stablecoin.allowance(holder, operator) == 0


def test_permit__expired__reverts(stablecoin, chain, holder, operator, relayer, sign_permit):
    deadline = chain.pending_timestamp + 10
    v, r, s = sign_permit(holder, holder, operator, USD, 0, deadline)
    chain.pending_timestamp = deadline + 1
    with ape.reverts("stablecoin: permit is expired"):
        stablecoin.permit(holder, operator, USD, deadline, v, r, s, sender=relayer)


def test_permit__signed_by_other__reverts(stablecoin, holder, attacker, relayer, sign_permit):
    v, r, s = sign_permit(attacker, holder, attacker, HOLDER_FUNDS, 0)
    with ape.reverts("stablecoin: invalid signature"):
        stablecoin.permit(holder, attacker, HOLDER_FUNDS, FAR, v, r, s, sender=attacker)


def test_permit__high_s_signature__reverts(stablecoin, holder, operator, relayer, sign_permit):
    v, r, s = _high_s(*sign_permit(holder, holder, operator, USD, 0))
    with ape.reverts("stablecoin: invalid signature"):
        stablecoin.permit(holder, operator, USD, FAR, v, r, s, sender=relayer)


def test_permit__by_erc1271_wallet__sets_allowance(stablecoin, wallet, holder, operator, relayer, sign_permit):
    v, r, s = sign_permit(holder, wallet, operator, USD, 0)
    stablecoin.permit(wallet, operator, USD, FAR, v, r, s, sender=relayer)
    assert stablecoin.allowance(wallet, operator) == USD


# ---------------------------------------------------------------- EIP-3009


class TestReferenceStablecoinBehavesLikeEIP3009(BehavesLikeEIP3009):
    """The shared EIP-3009 suite (tests/eip3009_behaviour.py) on the stablecoin."""

    @pytest.fixture
    def eip3009_token(self, stablecoin):
        return stablecoin

    @pytest.fixture
    def eip3009_fund(self, stablecoin, minter):
        return lambda account, amount: stablecoin.mint(account, amount, sender=minter)

    @pytest.fixture
    def eip3009_unit(self):
        return USD

    @pytest.fixture
    def eip3009_other_token(self, create_stablecoin):
        return create_stablecoin()
