"""The UtilityToken plugged into the ERC-20 conformance suite, plus what is
the utility token's own: the hard cap, minters, burning, paying registered
service providers against an order id, the two-step admin transfer, the
pause, and one deployment per brand."""

from __future__ import annotations

import ape
import pytest
from erc20_behaviour import (
    SNEKMATE_ERC20_ERRORS,
    ZERO_ADDRESS,
    BehavesLikeERC20,
    BehavesLikeERC20Metadata,
    BehavesLikeERC20Permit,
    emitted,
)

from amphora import eip712

TOKEN = 10**18
NAME = "Amphora Cellar Credit"
SYMBOL = "CELLR"
CAP = 1_000_000 * TOKEN
EIP712_NAME = "Amphora Cellar Credit"
EIP712_VERSION = "1"
HOLDER_BALANCE = 1_000 * TOKEN
PROVIDER_NAME = "Cave Test storage"
ORDER_ID = bytes.fromhex("0d" * 32)

NOT_OWNER = "ownable: caller is not the owner"
NOT_MINTER = "utility: caller is not a minter"
CAP_EXCEEDED = "utility: cap exceeded"
NOT_PROVIDER = "utility: provider is not registered"
PAUSED = "pausable: contract is paused"
INSUFFICIENT_BALANCE = "erc20: transfer amount exceeds balance"
INSUFFICIENT_ALLOWANCE = "erc20: insufficient allowance"

UTILITY_ERRORS = SNEKMATE_ERC20_ERRORS

#: Every state-changing function of the token. A new one must be added here
#: on purpose, after checking that it cannot move or burn a holder's tokens
#: without the holder's approval.
UTILITY_STATE_CHANGING_FUNCTIONS = {
    # ERC-20 and EIP-2612
    "transfer", "approve", "transferFrom", "permit",
    # holder
    "burn", "burn_from", "pay",
    # minter
    "mint",
    # admin
    "set_minter", "register_provider", "unregister_provider", "pause", "unpause",
    "transfer_ownership", "accept_ownership",
}


# ------------------------------------------------ actors and deployments


@pytest.fixture(scope="session")
def minter(operator):
    """The brand's operations account, allowed to mint by the admin."""
    return operator


@pytest.fixture(scope="session")
def provider(custodian):
    """A registered service provider: the cellar, paid for storage."""
    return custodian


@pytest.fixture(scope="session")
def deploy_utility(project, admin):
    """Builder: a UtilityToken deployed by ``admin`` (one per brand)."""

    def _deploy(name=NAME, symbol=SYMBOL, cap=CAP, eip712_name=EIP712_NAME, eip712_version=EIP712_VERSION,
                deployer=None):
        return (deployer or admin).deploy(project.UtilityToken, name, symbol, cap, eip712_name, eip712_version)

    return _deploy


@pytest.fixture(scope="session")
def utility(deploy_utility, admin, minter, provider):
    token = deploy_utility()
    token.set_minter(minter, True, sender=admin)
    token.register_provider(provider, PROVIDER_NAME, sender=admin)
    return token


@pytest.fixture
def funded_holder(utility, minter, holder):
    """``holder`` with ``HOLDER_BALANCE`` tokens, minted by the minter."""
    utility.mint(holder, HOLDER_BALANCE, sender=minter)
    return holder


@pytest.fixture
def deadline(chain):
    return chain.blocks.head.timestamp + 3_600


# ------------------------------------------------ the suite's fixtures


@pytest.fixture
def erc20(utility):
    return utility


@pytest.fixture
def erc20_holder(funded_holder):
    return funded_holder


@pytest.fixture
def erc20_initial_balance():
    return HOLDER_BALANCE


@pytest.fixture
def erc20_recipient(recipient):
    return recipient


@pytest.fixture
def erc20_spender(relayer):
    """Stands in for a dApp the holder lets pull tokens; the relayer has no
    power of its own over tokens."""
    return relayer


@pytest.fixture
def erc20_stranger(attacker):
    return attacker


@pytest.fixture
def erc20_errors():
    return UTILITY_ERRORS


@pytest.fixture
def erc20_name():
    return NAME


@pytest.fixture
def erc20_symbol():
    return SYMBOL


@pytest.fixture
def erc20_decimals():
    return 18


@pytest.fixture
def erc20_eip712_name():
    return EIP712_NAME


@pytest.fixture
def erc20_eip712_version():
    return EIP712_VERSION


class TestUtilityTokenBehavesLikeERC20(BehavesLikeERC20):
    pass


class TestUtilityTokenBehavesLikeERC20Metadata(BehavesLikeERC20Metadata):
    pass


class TestUtilityTokenBehavesLikeERC20Permit(BehavesLikeERC20Permit):
    pass


# ------------------------------------------------ deployment


def test_deploy__sets_metadata_cap_admin_and_empty_supply(utility, admin):
    assert (utility.name(), utility.symbol(), utility.decimals()) == (NAME, SYMBOL, 18)
    assert utility.cap() == CAP
    assert utility.totalSupply() == 0
    assert utility.owner() == admin
    assert utility.pending_owner() == ZERO_ADDRESS
    assert utility.paused() is False


def test_deploy__makes_the_deployer_a_minter(deploy_utility, admin):
    token = deploy_utility()

    assert token.is_minter(admin) is True


def test_deploy__with_zero_cap__reverts(deploy_utility):
    with ape.reverts("utility: cap is zero"):
        deploy_utility(cap=0)


def test_deploy__two_brands__coexist_with_their_own_name_symbol_cap_and_domain(
    deploy_utility, admin, holder, chain_id
):
    first = deploy_utility(name="Maison Un Credit", symbol="MUN", cap=100 * TOKEN, eip712_name="Maison Un")
    second = deploy_utility(name="Bodega Dos Credit", symbol="BDOS", cap=5 * TOKEN, eip712_name="Bodega Dos")

    first.mint(holder, 100 * TOKEN, sender=admin)
    second.mint(holder, 5 * TOKEN, sender=admin)

    assert (first.name(), first.symbol(), first.cap()) == ("Maison Un Credit", "MUN", 100 * TOKEN)
    assert (second.name(), second.symbol(), second.cap()) == ("Bodega Dos Credit", "BDOS", 5 * TOKEN)
    assert (first.balanceOf(holder), second.balanceOf(holder)) == (100 * TOKEN, 5 * TOKEN)
    assert first.DOMAIN_SEPARATOR() == eip712.domain_separator(chain_id, first.address, "Maison Un", "1")
    assert second.DOMAIN_SEPARATOR() == eip712.domain_separator(chain_id, second.address, "Bodega Dos", "1")
    with ape.reverts(CAP_EXCEEDED):
        second.mint(holder, 1, sender=admin)


def test_permit__signed_for_one_brand__is_refused_by_another(
    deploy_utility, chain_id, admin, holder, relayer, deadline
):
    first = deploy_utility(eip712_name="Maison Un")
    second = deploy_utility(eip712_name="Maison Un")
    data = eip712.typed_data(
        "Permit", eip712.permit_message(holder.address, relayer.address, TOKEN, 0, deadline),
        chain_id, first.address, name="Maison Un", version=EIP712_VERSION,
    )
    signature = eip712.sign(data, holder.private_key)
    v, r, s = eip712.split_signature(signature)

    with ape.reverts("erc20: invalid signature"):
        second.permit(holder, relayer, TOKEN, deadline, v, r, s, sender=relayer)

    first.permit(holder, relayer, TOKEN, deadline, v, r, s, sender=relayer)
    assert first.allowance(holder, relayer) == TOKEN
    assert second.allowance(holder, relayer) == 0


# ------------------------------------------------ cap


def test_mint__up_to_the_cap__mints_and_emits_transfer(utility, minter, holder):
    receipt = utility.mint(holder, CAP, sender=minter)

    assert utility.totalSupply() == CAP
    assert utility.balanceOf(holder) == CAP
    assert emitted(receipt, utility.Transfer, utility) == [(ZERO_ADDRESS, holder.address, CAP)]


def test_mint__one_unit_beyond_the_cap__reverts(utility, minter, holder):
    with ape.reverts(CAP_EXCEEDED):
        utility.mint(holder, CAP + 1, sender=minter)

    assert utility.totalSupply() == 0


def test_mint__beyond_the_cap_in_two_steps__reverts_on_the_second(utility, minter, holder, recipient):
    utility.mint(holder, CAP - TOKEN, sender=minter)

    with ape.reverts(CAP_EXCEEDED):
        utility.mint(recipient, TOKEN + 1, sender=minter)

    utility.mint(recipient, TOKEN, sender=minter)
    assert utility.totalSupply() == CAP


def test_mint__after_a_burn_at_the_cap__mints_up_to_the_cap_again(utility, minter, holder):
    utility.mint(holder, CAP, sender=minter)
    utility.burn(TOKEN, sender=holder)

    utility.mint(holder, TOKEN, sender=minter)

    assert utility.totalSupply() == CAP
    with ape.reverts(CAP_EXCEEDED):
        utility.mint(holder, 1, sender=minter)


def test_mint__amount_that_would_overflow_the_supply__reverts(utility, minter, holder):
    utility.mint(holder, 1, sender=minter)

    with ape.reverts():
        utility.mint(holder, 2**256 - 1, sender=minter)

    assert utility.totalSupply() == 1


def test_cap__is_the_constructor_argument(deploy_utility, admin, holder):
    token = deploy_utility(cap=7)

    token.mint(holder, 7, sender=admin)

    assert token.cap() == 7
    with ape.reverts(CAP_EXCEEDED):
        token.mint(holder, 1, sender=admin)


def test_mint__to_zero_address__reverts(utility, minter):
    with ape.reverts("erc20: mint to the zero address"):
        utility.mint(ZERO_ADDRESS, TOKEN, sender=minter)


# ------------------------------------------------ minters


def test_set_minter__by_admin__grants_the_role_and_emits_role_minter_changed(utility, admin, recipient, holder):
    receipt = utility.set_minter(recipient, True, sender=admin)

    assert utility.is_minter(recipient) is True
    assert emitted(receipt, utility.RoleMinterChanged, utility) == [(recipient.address, True)]
    utility.mint(holder, TOKEN, sender=recipient)
    assert utility.balanceOf(holder) == TOKEN


@pytest.mark.parametrize("caller", ["minter", "holder", "attacker"])
def test_set_minter__by_non_admin__reverts(utility, request, attacker, caller):
    with ape.reverts(NOT_OWNER):
        utility.set_minter(attacker, True, sender=request.getfixturevalue(caller))

    assert utility.is_minter(attacker) is False


def test_set_minter__zero_address__reverts(utility, admin):
    with ape.reverts("erc20: minter is the zero address"):
        utility.set_minter(ZERO_ADDRESS, True, sender=admin)


def test_set_minter__admin_itself__reverts(utility, admin):
    """The admin's own role follows the admin role (see accept_ownership)."""
    with ape.reverts("erc20: minter is owner address"):
        utility.set_minter(admin, False, sender=admin)

    assert utility.is_minter(admin) is True


@pytest.mark.parametrize("caller", ["holder", "attacker", "relayer"])
def test_mint__by_non_minter__reverts(utility, request, holder, caller):
    with ape.reverts(NOT_MINTER):
        utility.mint(holder, TOKEN, sender=request.getfixturevalue(caller))

    assert utility.totalSupply() == 0


def test_mint__by_revoked_minter__reverts(utility, admin, minter, holder):
    utility.mint(holder, TOKEN, sender=minter)

    receipt = utility.set_minter(minter, False, sender=admin)

    assert emitted(receipt, utility.RoleMinterChanged, utility) == [(minter.address, False)]
    with ape.reverts(NOT_MINTER):
        utility.mint(holder, TOKEN, sender=minter)
    assert utility.totalSupply() == TOKEN


# ------------------------------------------------ burn


def test_burn__own_tokens__reduces_balance_and_supply_and_emits_transfer(utility, funded_holder):
    receipt = utility.burn(TOKEN, sender=funded_holder)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE - TOKEN
    assert utility.totalSupply() == HOLDER_BALANCE - TOKEN
    assert emitted(receipt, utility.Transfer, utility) == [(funded_holder.address, ZERO_ADDRESS, TOKEN)]


def test_burn__more_than_balance__reverts(utility, funded_holder):
    with ape.reverts("erc20: burn amount exceeds balance"):
        utility.burn(HOLDER_BALANCE + 1, sender=funded_holder)

    assert utility.totalSupply() == HOLDER_BALANCE


def test_burn_from__within_allowance__burns_and_decreases_allowance(utility, funded_holder, relayer):
    utility.approve(relayer, 3 * TOKEN, sender=funded_holder)

    receipt = utility.burn_from(funded_holder, TOKEN, sender=relayer)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE - TOKEN
    assert utility.totalSupply() == HOLDER_BALANCE - TOKEN
    assert utility.allowance(funded_holder, relayer) == 2 * TOKEN
    assert emitted(receipt, utility.Transfer, utility) == [(funded_holder.address, ZERO_ADDRESS, TOKEN)]


def test_burn_from__beyond_allowance__reverts(utility, funded_holder, relayer):
    utility.approve(relayer, TOKEN, sender=funded_holder)

    with ape.reverts(INSUFFICIENT_ALLOWANCE):
        utility.burn_from(funded_holder, TOKEN + 1, sender=relayer)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE


@pytest.mark.parametrize("caller", ["admin", "minter", "attacker"])
def test_burn_from__without_allowance__reverts(utility, request, funded_holder, caller):
    with ape.reverts(INSUFFICIENT_ALLOWANCE):
        utility.burn_from(funded_holder, TOKEN, sender=request.getfixturevalue(caller))

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE


# ------------------------------------------------ providers


def test_register_provider__by_admin__registers_it_under_its_name(utility, admin, other_winery):
    receipt = utility.register_provider(other_winery, "Tastings at the Domaine", sender=admin)

    assert utility.is_provider(other_winery) is True
    assert utility.provider_name(other_winery) == "Tastings at the Domaine"
    assert emitted(receipt, utility.ProviderRegistered, utility) == [
        (other_winery.address, "Tastings at the Domaine")
    ]


@pytest.mark.parametrize("caller", ["minter", "provider", "attacker"])
def test_register_provider__by_non_admin__reverts(utility, request, attacker, caller):
    with ape.reverts(NOT_OWNER):
        utility.register_provider(attacker, "Not a provider", sender=request.getfixturevalue(caller))

    assert utility.is_provider(attacker) is False


def test_register_provider__zero_address__reverts(utility, admin):
    with ape.reverts("utility: provider is the zero address"):
        utility.register_provider(ZERO_ADDRESS, "Nobody", sender=admin)


def test_register_provider__empty_name__reverts(utility, admin, other_winery):
    with ape.reverts("utility: provider name is empty"):
        utility.register_provider(other_winery, "", sender=admin)


def test_register_provider__already_registered__reverts(utility, admin, provider):
    with ape.reverts("utility: provider is already registered"):
        utility.register_provider(provider, "Another name", sender=admin)

    assert utility.provider_name(provider) == PROVIDER_NAME


def test_unregister_provider__by_admin__unregisters_it_and_clears_its_name(utility, admin, provider):
    receipt = utility.unregister_provider(provider, sender=admin)

    assert utility.is_provider(provider) is False
    assert utility.provider_name(provider) == ""
    assert emitted(receipt, utility.ProviderUnregistered, utility) == [(provider.address,)]


def test_unregister_provider__then_register_again__renames_it(utility, admin, provider):
    utility.unregister_provider(provider, sender=admin)

    utility.register_provider(provider, "Cave Test, new cellar", sender=admin)

    assert utility.is_provider(provider) is True
    assert utility.provider_name(provider) == "Cave Test, new cellar"


def test_unregister_provider__by_non_admin__reverts(utility, provider):
    with ape.reverts(NOT_OWNER):
        utility.unregister_provider(provider, sender=provider)

    assert utility.is_provider(provider) is True


def test_unregister_provider__not_registered__reverts(utility, admin, other_winery):
    with ape.reverts(NOT_PROVIDER):
        utility.unregister_provider(other_winery, sender=admin)


# ------------------------------------------------ pay


def test_pay__registered_provider__moves_tokens_and_emits_payment_made_with_order_id(
    utility, funded_holder, provider
):
    receipt = utility.pay(provider, 25 * TOKEN, ORDER_ID, sender=funded_holder)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE - 25 * TOKEN
    assert utility.balanceOf(provider) == 25 * TOKEN
    assert utility.totalSupply() == HOLDER_BALANCE
    assert emitted(receipt, utility.PaymentMade, utility) == [
        (funded_holder.address, provider.address, ORDER_ID, 25 * TOKEN)
    ]
    assert emitted(receipt, utility.Transfer, utility) == [
        (funded_holder.address, provider.address, 25 * TOKEN)
    ]


def test_pay__two_orders__are_told_apart_by_order_id(utility, funded_holder, provider):
    first_order, second_order = b"\x01" * 32, b"\x02" * 32
    utility.pay(provider, TOKEN, first_order, sender=funded_holder)
    utility.pay(provider, 2 * TOKEN, second_order, sender=funded_holder)

    logs = utility.PaymentMade.query("*", start_block=0)
    by_order = {row.event_arguments["order_id"]: row.event_arguments["amount"] for row in logs.itertuples()}

    assert by_order == {first_order: TOKEN, second_order: 2 * TOKEN}


def test_pay__unregistered_provider__reverts(utility, funded_holder, other_winery):
    with ape.reverts(NOT_PROVIDER):
        utility.pay(other_winery, TOKEN, ORDER_ID, sender=funded_holder)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE


def test_pay__provider_unregistered_since__reverts(utility, admin, funded_holder, provider):
    utility.pay(provider, TOKEN, ORDER_ID, sender=funded_holder)
    utility.unregister_provider(provider, sender=admin)

    with ape.reverts(NOT_PROVIDER):
        utility.pay(provider, TOKEN, ORDER_ID, sender=funded_holder)

    assert utility.balanceOf(provider) == TOKEN


def test_pay__zero_amount__reverts(utility, funded_holder, provider):
    with ape.reverts("utility: amount is zero"):
        utility.pay(provider, 0, ORDER_ID, sender=funded_holder)


def test_pay__more_than_balance__reverts(utility, funded_holder, provider):
    with ape.reverts(INSUFFICIENT_BALANCE):
        utility.pay(provider, HOLDER_BALANCE + 1, ORDER_ID, sender=funded_holder)

    assert utility.balanceOf(provider) == 0


def test_pay__by_an_account_without_tokens__reverts(utility, attacker, provider):
    with ape.reverts(INSUFFICIENT_BALANCE):
        utility.pay(provider, 1, ORDER_ID, sender=attacker)


# ------------------------------------------------ admin: two-step transfer


def test_transfer_ownership__by_admin__names_a_pending_admin_and_keeps_the_admin(utility, admin, other_winery):
    receipt = utility.transfer_ownership(other_winery, sender=admin)

    assert utility.owner() == admin
    assert utility.pending_owner() == other_winery
    assert emitted(receipt, utility.OwnershipTransferStarted, utility) == [
        (admin.address, other_winery.address)
    ]


def test_accept_ownership__by_pending_admin__hands_over_the_admin_and_minter_roles(
    utility, admin, other_winery, holder
):
    utility.transfer_ownership(other_winery, sender=admin)

    receipt = utility.accept_ownership(sender=other_winery)

    assert utility.owner() == other_winery
    assert utility.pending_owner() == ZERO_ADDRESS
    assert utility.is_minter(other_winery) is True
    assert utility.is_minter(admin) is False
    assert emitted(receipt, utility.OwnershipTransferred, utility) == [(admin.address, other_winery.address)]
    assert emitted(receipt, utility.RoleMinterChanged, utility) == [
        (admin.address, False), (other_winery.address, True)
    ]
    utility.mint(holder, TOKEN, sender=other_winery)
    with ape.reverts(NOT_MINTER):
        utility.mint(holder, TOKEN, sender=admin)


def test_accept_ownership__then_only_the_new_admin__runs_admin_functions(utility, admin, other_winery, recipient):
    utility.transfer_ownership(other_winery, sender=admin)
    utility.accept_ownership(sender=other_winery)

    with ape.reverts(NOT_OWNER):
        utility.register_provider(recipient, "Shipping", sender=admin)
    utility.register_provider(recipient, "Shipping", sender=other_winery)

    assert utility.is_provider(recipient) is True


def test_accept_ownership__keeps_the_other_minters(utility, admin, minter, other_winery):
    utility.transfer_ownership(other_winery, sender=admin)

    utility.accept_ownership(sender=other_winery)

    assert utility.is_minter(minter) is True


@pytest.mark.parametrize("caller", ["admin", "attacker"])
def test_accept_ownership__by_anyone_but_the_pending_admin__reverts(utility, request, admin, other_winery, caller):
    utility.transfer_ownership(other_winery, sender=admin)

    with ape.reverts("ownable_2step: caller is not the new owner"):
        utility.accept_ownership(sender=request.getfixturevalue(caller))

    assert utility.owner() == admin


def test_accept_ownership__with_no_transfer_started__reverts(utility, attacker):
    with ape.reverts("ownable_2step: caller is not the new owner"):
        utility.accept_ownership(sender=attacker)


def test_transfer_ownership__to_zero_address__cancels_a_pending_transfer(utility, admin, other_winery):
    utility.transfer_ownership(other_winery, sender=admin)

    utility.transfer_ownership(ZERO_ADDRESS, sender=admin)

    assert utility.pending_owner() == ZERO_ADDRESS
    with ape.reverts("ownable_2step: caller is not the new owner"):
        utility.accept_ownership(sender=other_winery)


@pytest.mark.parametrize("caller", ["minter", "attacker"])
def test_transfer_ownership__by_non_admin__reverts(utility, request, attacker, caller):
    with ape.reverts(NOT_OWNER):
        utility.transfer_ownership(attacker, sender=request.getfixturevalue(caller))

    assert utility.pending_owner() == ZERO_ADDRESS


# ------------------------------------------------ pause


def test_pause__by_admin__pauses_and_emits_paused(utility, admin):
    receipt = utility.pause(sender=admin)

    assert utility.paused() is True
    assert emitted(receipt, utility.Paused, utility) == [(admin.address,)]


@pytest.mark.parametrize("caller", ["minter", "holder", "attacker"])
def test_pause__by_non_admin__reverts(utility, request, caller):
    with ape.reverts(NOT_OWNER):
        utility.pause(sender=request.getfixturevalue(caller))

    assert utility.paused() is False


def test_mint__while_paused__reverts(utility, admin, minter, holder):
    utility.pause(sender=admin)

    with ape.reverts(PAUSED):
        utility.mint(holder, TOKEN, sender=minter)

    assert utility.totalSupply() == 0


def test_pay__while_paused__reverts(utility, admin, funded_holder, provider):
    utility.pause(sender=admin)

    with ape.reverts(PAUSED):
        utility.pay(provider, TOKEN, ORDER_ID, sender=funded_holder)

    assert utility.balanceOf(provider) == 0


def test_holders__while_paused__still_transfer_approve_permit_and_burn(
    utility, chain_id, admin, funded_holder, recipient, relayer, deadline
):
    utility.pause(sender=admin)
    data = eip712.typed_data(
        "Permit", eip712.permit_message(funded_holder.address, relayer.address, TOKEN, 0, deadline),
        chain_id, utility.address, name=EIP712_NAME, version=EIP712_VERSION,
    )
    signature = eip712.sign(data, funded_holder.private_key)

    utility.transfer(recipient, TOKEN, sender=funded_holder)
    utility.permit(funded_holder, relayer, TOKEN, deadline, *eip712.split_signature(signature),
                   sender=relayer)
    utility.transferFrom(funded_holder, recipient, TOKEN, sender=relayer)
    utility.burn(TOKEN, sender=funded_holder)

    assert utility.balanceOf(recipient) == 2 * TOKEN
    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE - 3 * TOKEN


def test_unpause__by_admin__resumes_mint_and_pay(utility, admin, minter, funded_holder, provider):
    utility.pause(sender=admin)

    receipt = utility.unpause(sender=admin)

    assert utility.paused() is False
    assert emitted(receipt, utility.Unpaused, utility) == [(admin.address,)]
    utility.mint(funded_holder, TOKEN, sender=minter)
    utility.pay(provider, TOKEN, ORDER_ID, sender=funded_holder)
    assert utility.balanceOf(provider) == TOKEN


def test_unpause__by_non_admin__reverts(utility, admin, attacker):
    utility.pause(sender=admin)

    with ape.reverts(NOT_OWNER):
        utility.unpause(sender=attacker)

    assert utility.paused() is True


# ------------------------------------------------ the admin cannot take a holder's tokens


def test_abi__state_changing_functions__are_exactly_the_documented_ones(utility):
    names = {abi.name for abi in utility.contract_type.mutable_methods}

    assert names == UTILITY_STATE_CHANGING_FUNCTIONS


def test_abi__no_function__accepts_ether(utility):
    payable = [
        abi.name for abi in utility.contract_type.abi if getattr(abi, "stateMutability", None) == "payable"
    ]

    assert payable == []


@pytest.mark.parametrize("caller", ["admin", "minter"])
def test_transfer_from__by_admin_or_minter_of_a_holders_tokens__reverts(utility, request, funded_holder, caller):
    taker = request.getfixturevalue(caller)

    with ape.reverts(INSUFFICIENT_ALLOWANCE):
        utility.transferFrom(funded_holder, taker, TOKEN, sender=taker)

    assert utility.balanceOf(funded_holder) == HOLDER_BALANCE
