"""The cask shares in the ERC-20, permit and EIP-3009 conformance suites,
with every party an eligible investor: under the rules' normal case the
shares behave as any ERC-20."""

from __future__ import annotations

import pytest
from cask_fixtures import FAR, FRANCE
from eip3009_behaviour import BehavesLikeEIP3009
from erc20_behaviour import (
    SNEKMATE_ERC20_ERRORS,
    BehavesLikeERC20,
    BehavesLikeERC20Metadata,
    BehavesLikeERC20Permit,
)

from amphora.deploy import record_investor

pytest_plugins = ["cask_fixtures"]

INITIAL = 1_000


@pytest.fixture
def erc20(eligible):
    return eligible


@pytest.fixture
def erc20_holder(eligible, winery, holder):
    eligible.transfer(holder, INITIAL - eligible.balanceOf(holder), sender=winery)
    return holder


@pytest.fixture
def erc20_initial_balance():
    return INITIAL


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
    # The zero address is never an eligible investor, so a transfer to it
    # fails on that rule first; a high-s permit fails as any wrong signature.
    return {**SNEKMATE_ERC20_ERRORS, "transfer_to_zero": "shares: recipient is not an eligible investor",
            "permit_malleable_signature": "erc20: invalid signature"}


@pytest.fixture
def erc20_name():
    return "Cask Test"


@pytest.fixture
def erc20_symbol():
    return "CSKT"


@pytest.fixture
def erc20_decimals():
    return 0


@pytest.fixture
def erc20_eip712_name():
    return "Cask Test"


@pytest.fixture
def erc20_eip712_version():
    return "1"


class TestCaskSharesBehaveLikeERC20(BehavesLikeERC20):
    pass


class TestCaskSharesBehaveLikeERC20Metadata(BehavesLikeERC20Metadata):
    pass


class TestCaskSharesBehaveLikeERC20Permit(BehavesLikeERC20Permit):
    pass


class TestCaskSharesBehaveLikeEIP3009(BehavesLikeEIP3009):
    """The shared EIP-3009 suite on the shares (every party eligible)."""

    @pytest.fixture
    def eip3009_token(self, eligible):
        return eligible

    @pytest.fixture
    def eip3009_fund(self, eligible, winery, agent):
        def _fund(account, amount: int):
            record_investor(eligible, agent, str(account), FRANCE, FAR)
            eligible.transfer(account, amount, sender=winery)

        return _fund

    @pytest.fixture
    def eip3009_unit(self):
        return 1

    @pytest.fixture
    def eip3009_other_token(self, create_cask):
        return create_cask()
