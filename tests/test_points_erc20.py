"""The PointsToken plugged into the ERC-20 conformance suite: points come into
existence only when a merchant issues them against stablecoin, so the holder
is funded that way."""

from __future__ import annotations

import pytest
from erc20_behaviour import (
    SNEKMATE_ERC20_ERRORS,
    BehavesLikeERC20,
    BehavesLikeERC20Metadata,
    BehavesLikeERC20Permit,
)

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
    return SNEKMATE_ERC20_ERRORS


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
