"""The PointsToken plugged into the ERC-20 conformance suite: points come into
existence only when a merchant issues them against stablecoin, so the holder
is funded that way."""

from __future__ import annotations

import ape
import pytest
from eip3009_behaviour import BehavesLikeEIP3009
from erc20_behaviour import (
    SNEKMATE_ERC20_ERRORS,
    BehavesLikeERC20,
    BehavesLikeERC20Metadata,
    BehavesLikeERC20Permit,
)

from amphora import eip712

USD = 10**6
SCALE = 10**12


@pytest.fixture(scope="module")
def money(project, manifest, admin, minter, merchant):
    """The deployed stablecoin and points, with one registered, funded merchant.
    Module-scoped: Ape reverts it after this module, so the shared deployment
    other modules use keeps no merchant of ours."""
    stablecoin = project.ReferenceStablecoin.at(manifest.address("Stablecoin"))
    points = project.PointsToken.at(manifest.address("PointsToken"))
    stablecoin.configureMinter(minter, 10**15, sender=admin)
    stablecoin.mint(merchant, 10**12, sender=minter)
    points.register_merchant(merchant, "Wine Bar", 10**40, sender=admin)
    stablecoin.approve(points, 2**256 - 1, sender=merchant)
    return stablecoin, points


@pytest.fixture
def erc20(money):
    return money[1]


@pytest.fixture
def erc20_holder(money, merchant, holder):
    money[1].issue(holder, 1_000 * USD, sender=merchant)
    return holder


@pytest.fixture
def erc20_initial_balance():
    return 1_000 * USD * SCALE


@pytest.fixture
def erc20_recipient(recipient):
    return recipient


@pytest.fixture
def erc20_spender(relayer):
    return relayer


@pytest.fixture
def erc20_stranger(attacker):
    return attacker


@pytest.fixture
def erc20_errors():
    # Our own core (contracts/modules/packed_erc20.vy) keeps snekmate's
    # reasons, except that a high-s permit falls through to ERC-1271 and
    # fails as any other wrong signature does.
    return {**SNEKMATE_ERC20_ERRORS, "permit_malleable_signature": "erc20: invalid signature"}


@pytest.fixture
def erc20_name():
    return "Amphora Points"


@pytest.fixture
def erc20_symbol():
    return "PTS"


@pytest.fixture
def erc20_decimals():
    return 18


@pytest.fixture
def erc20_eip712_name():
    return "Amphora Points"


@pytest.fixture
def erc20_eip712_version():
    return "1"


class TestPointsBehavesLikeERC20(BehavesLikeERC20):
    pass


class TestPointsBehavesLikeERC20Metadata(BehavesLikeERC20Metadata):
    pass


class TestPointsBehavesLikeERC20Permit(BehavesLikeERC20Permit):
    pass


class TestPointsBehavesLikeEIP3009(BehavesLikeEIP3009):
    """The shared EIP-3009 suite (tests/eip3009_behaviour.py) on the points."""

    @pytest.fixture
    def eip3009_token(self, money):
        return money[1]

    @pytest.fixture
    def eip3009_fund(self, money, merchant):
        # Points exist only against stablecoin: a merchant issues them.
        def _fund(account, amount: int):
            assert amount % SCALE == 0
            money[1].issue(account, amount // SCALE, sender=merchant)

        return _fund

    @pytest.fixture
    def eip3009_unit(self):
        return USD * SCALE

    @pytest.fixture
    def eip3009_other_token(self, project, admin, money):
        return admin.deploy(project.PointsToken, money[0], "Amphora Points", "PTS", 18, "Amphora Points", "1")


# -------------------------------------------- the packed account word


@pytest.fixture
def funded(money, merchant, holder):
    money[1].issue(holder, 100 * USD, sender=merchant)
    return money[1]


def _permit(token, chain_id, signer_key, owner, spender, value, nonce, deadline=2**40):
    data = eip712.typed_data("Permit", eip712.permit_message(str(owner), str(spender), value, nonce, deadline),
                             chain_id, token.address, name="Amphora Points", version="1")
    return eip712.split_signature(eip712.sign(data, signer_key))


def test_permit__nonce_and_balance_share_a_word__neither_disturbs_the_other(
        funded, chain_id, holder, recipient, relayer):
    balance = funded.balanceOf(holder)
    for nonce in range(3):
        v, r, s = _permit(funded, chain_id, holder.private_key, holder, relayer, nonce + 1, nonce)
        funded.permit(holder, relayer, nonce + 1, 2**40, v, r, s, sender=relayer)
        assert funded.balanceOf(holder) == balance
        assert funded.nonces(holder) == nonce + 1

    funded.transfer(recipient, balance, sender=holder)  # the whole balance: the nonce half must survive

    assert funded.balanceOf(holder) == 0 and funded.nonces(holder) == 3
    funded.transfer(holder, 5, sender=recipient)
    assert funded.balanceOf(holder) == 5 and funded.nonces(holder) == 3


def test_permit__by_holder_without_balance__works(money, chain_id, recipient, relayer, accounts):
    stranger = accounts[15]
    v, r, s = _permit(money[1], chain_id, stranger.private_key, stranger, relayer, 7, 0)
    money[1].permit(stranger, relayer, 7, 2**40, v, r, s, sender=relayer)
    assert money[1].allowance(stranger, relayer) == 7 and money[1].nonces(stranger) == 1
    assert money[1].balanceOf(stranger) == 0


def test_permit__by_erc1271_wallet__sets_allowance(project, money, merchant, chain_id, holder, relayer):
    wallet = holder.deploy(project.MockERC1271Wallet, holder)
    money[1].issue(wallet, USD, sender=merchant)
    v, r, s = _permit(money[1], chain_id, holder.private_key, wallet, relayer, USD, 0)

    money[1].permit(wallet, relayer, USD, 2**40, v, r, s, sender=relayer)

    assert money[1].allowance(wallet, relayer) == USD and money[1].nonces(wallet) == 1


def test_issue__total_supply_beyond_2_pow_128__reverts_and_changes_nothing(project, admin, merchant, customer):
    # A 0-decimal stablecoin gives 10**18 points a unit, so 2**128 points is
    # within reach: one issuance more than that must fail whole.
    zero_decimals = admin.deploy(project.MockPlainToken, 0, 0)
    points = admin.deploy(project.PointsToken, zero_decimals, "P", "P", 18, "P", "1")
    points.register_merchant(merchant, "Wine Bar", 2**256 - 1, sender=admin)
    zero_decimals.mint(merchant, 2**130, sender=admin)
    zero_decimals.approve(points, 2**256 - 1, sender=merchant)
    most = (2**128 - 1) // 10**18
    points.issue(customer, most, sender=merchant)

    with ape.reverts("erc20: total supply exceeds 2**128 - 1"):
        points.issue(customer, 1, sender=merchant)

    assert points.totalSupply() == most * 10**18 == points.balanceOf(customer)
    assert points.reserve() == most and points.nonces(customer) == 0
