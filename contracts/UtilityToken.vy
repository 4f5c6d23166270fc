# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Utility Token
@custom:contract-name UtilityToken
@license GNU Affero General Public License v3.0 only
@notice A brand's capped ERC-20 utility token with EIP-2612 `permit`.
        Holders spend it on services (cellar storage, shipping, tastings)
        with `pay`, which moves the tokens to a service provider the admin
        has registered and logs the provider's order id, so the provider
        can match every payment to an order. One deployment per brand: the
        name, symbol, cap and EIP-712 domain are constructor arguments.
@dev Built on snekmate's `erc20`, which holds the balances, allowances,
     permit nonces and the minter role. This contract adds:
     - a hard cap on the total supply, checked by its own `mint` (snekmate's
       `mint` is not exported, so no path mints around the cap). Burning
       frees room under the cap, as in OpenZeppelin's `ERC20Capped`;
     - the provider registry and `pay`;
     - a two-step admin transfer (snekmate's `ownable_2step`) in place of
       `erc20`'s one-step `transfer_ownership`. As in `erc20`'s own
       transfer, the admin's minter role moves with the admin: the new
       admin becomes a minter, the previous one stops being one;
     - a pause that stops minting and `pay`.
@custom:security Emergency: the admin calls `pause`, which stops minting
                 and `pay`; it also removes a compromised minter with
                 `set_minter(minter, False)`. Transfers, approvals,
                 `permit` and burning by holders are never paused, and no
                 function lets anyone, the admin or a minter included, move
                 or burn tokens of a holder who has not approved them.
"""


from ethereum.ercs import IERC20
implements: IERC20

from ethereum.ercs import IERC20Detailed
implements: IERC20Detailed

from snekmate.tokens.interfaces import IERC20Permit
implements: IERC20Permit

from snekmate.utils.interfaces import IERC5267
implements: IERC5267


from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

from snekmate.tokens import erc20
initializes: erc20[ownable := ownable]

from snekmate.utils import pausable
initializes: pausable


# @dev Left out on purpose:
# - `erc20.mint`: it ignores the cap; this contract's `mint` replaces it;
# - `erc20.transfer_ownership`: a one-step transfer; `ownable_2step`'s
#   `transfer_ownership` and this contract's `accept_ownership` replace it;
# - `erc20.renounce_ownership` and `ownable_2step.renounce_ownership`: a
#   token without an admin could never be paused again nor register a new
#   provider, while its minters would keep minting.
exports: (
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.transfer,
    erc20.approve,
    erc20.transferFrom,
    erc20.burn,
    erc20.burn_from,
    erc20.is_minter,
    erc20.set_minter,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
    erc20.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    pausable.paused,
)


# @dev The token has 18 decimals, like ether: service prices are quoted
# in whole tokens and fractions of them.
_DECIMALS: constant(uint8) = 18


# @notice The most tokens that may ever be in circulation at once.
cap: public(immutable(uint256))

# @notice Whether `pay` may send tokens to an account.
is_provider: public(HashMap[address, bool])
# @notice The name the admin registered a service provider under.
provider_name: public(HashMap[address, String[64]])


# @dev All three keys are indexed so that a provider can filter its own
# payments, a payer its own, and anyone one order.
event PaymentMade:
    payer: indexed(address)
    provider: indexed(address)
    order_id: indexed(bytes32)
    amount: uint256


# @dev The name is in the event too, so an indexer needs no extra call.
event ProviderRegistered:
    provider: indexed(address)
    name: String[64]


event ProviderUnregistered:
    provider: indexed(address)


@deploy
def __init__(
    name_: String[25], symbol_: String[5], cap_: uint256, eip712_name_: String[50], eip712_version_: String[20]
):
    """
    @notice The deployer becomes the admin and a minter.
    @param name_ The token name (at most 25 characters).
    @param symbol_ The token symbol (at most 5 characters).
    @param cap_ The most tokens (in the smallest unit, 18 decimals) that
           may be in circulation at once; not zero.
    @param eip712_name_ The EIP-712 domain name `permit` signatures are
           bound to.
    @param eip712_version_ The EIP-712 domain version.
    """
    assert cap_ != 0, "utility: cap is zero"
    ownable.__init__()
    ownable_2step.__init__()
    erc20.__init__(name_, symbol_, _DECIMALS, eip712_name_, eip712_version_)
    pausable.__init__()
    cap = cap_


# ---------------------------------------------------------------- supply


@external
def mint(owner: address, amount: uint256):
    """
    @notice Minter: create `amount` tokens for `owner`, as long as the
            total supply stays within `cap`.
    @param owner The account that receives the tokens; not zero.
    @param amount The number of tokens, in the smallest unit.
    """
    pausable._require_not_paused()
    assert erc20.is_minter[msg.sender], "utility: caller is not a minter"
    assert erc20.totalSupply + amount <= cap, "utility: cap exceeded"
    erc20._mint(owner, amount)


# -------------------------------------------------------------- payments


@external
def pay(provider: address, amount: uint256, order_id: bytes32):
    """
    @notice Pay a registered service provider `amount` tokens from the
            caller's balance for the order `order_id`. The provider finds
            the payment by its order id in the `PaymentMade` event.
    @dev The `Transfer` event is logged too, so wallets and indexers that
         only know ERC-20 see the payment as a transfer.
    @param provider A registered service provider.
    @param amount The number of tokens, in the smallest unit; not zero.
    @param order_id The provider's reference for what is paid for.
    """
    pausable._require_not_paused()
    assert amount != 0, "utility: amount is zero"
    assert self.is_provider[provider], "utility: provider is not registered"
    erc20._transfer(msg.sender, provider, amount)
    log PaymentMade(payer=msg.sender, provider=provider, order_id=order_id, amount=amount)


@external
def register_provider(provider: address, name: String[64]):
    """
    @notice Admin: let `pay` send tokens to `provider`, known as `name`.
    @dev To rename a provider, unregister it and register it again.
    """
    ownable._check_owner()
    assert provider != empty(address), "utility: provider is the zero address"
    assert len(name) != 0, "utility: provider name is empty"
    assert not self.is_provider[provider], "utility: provider is already registered"
    self.is_provider[provider] = True
    self.provider_name[provider] = name
    log ProviderRegistered(provider=provider, name=name)


@external
def unregister_provider(provider: address):
    """
    @notice Admin: stop `pay` from sending tokens to `provider`. The
            tokens it was paid stay its own.
    """
    ownable._check_owner()
    assert self.is_provider[provider], "utility: provider is not registered"
    self.is_provider[provider] = False
    self.provider_name[provider] = empty(String[64])
    log ProviderUnregistered(provider=provider)


# ------------------------------------------------------------------ admin


@external
def accept_ownership():
    """
    @notice The pending admin accepts the admin role started by
            `transfer_ownership`. The minter role moves with it: the
            new admin becomes a minter, the previous one stops being one.
    """
    assert ownable_2step.pending_owner == msg.sender, "ownable_2step: caller is not the new owner"
    previous_owner: address = ownable.owner
    erc20.is_minter[previous_owner] = False
    log erc20.RoleMinterChanged(minter=previous_owner, status=False)
    ownable_2step._transfer_ownership(msg.sender)
    erc20.is_minter[msg.sender] = True
    log erc20.RoleMinterChanged(minter=msg.sender, status=True)


@external
def pause():
    """
    @notice Admin: stop minting and `pay` in an emergency.
    """
    ownable._check_owner()
    pausable._pause()


@external
def unpause():
    """
    @notice Admin: resume minting and `pay`.
    """
    ownable._check_owner()
    pausable._unpause()
