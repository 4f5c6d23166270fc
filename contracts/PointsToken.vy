# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Points
@custom:contract-name PointsToken
@license GNU Affero General Public License v3.0 only
@notice Loyalty points worth exactly one unit of a stablecoin each. A
        registered merchant issues points to a customer by paying the
        equivalent stablecoin into this contract's reserve; holders move
        points freely (also by EIP-2612 permit and EIP-3009 authorizations,
        which a relayer submits); a registered merchant that
        accepted points redeems them for stablecoin out of the reserve.
        Every issuance and redemption is an event naming the merchant, so
        merchants can settle with each other from the chain's record.
@dev Decimals: points have `decimals` (18 by default) and the stablecoin
     fewer (6 for USDC-like tokens); SCALE = 10 ** (points - stablecoin
     decimals). Issuing `s` stablecoin units mints exactly `s * SCALE`
     points. Redeeming burns a multiple of SCALE and pays `points // SCALE`;
     the remainder below one stablecoin unit stays with the redeemer. Nothing
     is ever rounded, so `reserve * SCALE == totalSupply` holds exactly:
     the reserve always covers every outstanding point.
     The stablecoin must be a plain ERC-20: issuance checks that the reserve
     grew by exactly the amount paid, so fee-on-transfer tokens are refused.
@custom:security Emergency: the admin calls `pause`, which stops issuance
                 and redemption. Point transfers never stop and no function
                 lets anyone, the admin included, take someone's points or
                 the reserve that backs them.
"""


from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed


from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

from snekmate.utils import pausable
initializes: pausable

# @dev Our own ERC-20 core rather than snekmate's `erc20`: it keeps each
# account's balance and permit nonce in one storage word, which the gas
# targets for `permit` need (see the module). It has no mint or burn entry
# points: points come into existence only against stablecoin (`issue`)
# and leave only by redemption (`redeem`).
from .modules import packed_erc20
initializes: packed_erc20

from .modules import eip3009
initializes: eip3009


# @dev Left out on purpose: `renounce_ownership` of ownable_2step
# (renouncing would freeze merchant registration).
exports: (
    packed_erc20.name,
    packed_erc20.symbol,
    packed_erc20.decimals,
    packed_erc20.totalSupply,
    packed_erc20.balanceOf,
    packed_erc20.allowance,
    packed_erc20.transfer,
    packed_erc20.transferFrom,
    packed_erc20.approve,
    packed_erc20.permit,
    packed_erc20.nonces,
    packed_erc20.DOMAIN_SEPARATOR,
    packed_erc20.eip712Domain,
    eip3009.authorizationState,
    eip3009.authorization_bitmap,
    eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.CANCEL_AUTHORIZATION_TYPEHASH,
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
)


struct Merchant:
    name: String[64]
    active: bool
    cap: uint256
    issued: uint256
    redeemed: uint256
    paid_in: uint256
    paid_out: uint256


# @notice The stablecoin points are pegged to.
STABLECOIN: public(immutable(address))
# @notice Points per stablecoin unit: 10 ** (points - stablecoin decimals).
SCALE: public(immutable(uint256))

# @notice Stablecoin units held for outstanding points (excludes anything
#         sent to this contract outside `issue`).
reserve: public(uint256)
# @notice Registered merchants and their running totals (points and
#         stablecoin units).
merchants: public(HashMap[address, Merchant])
# @notice Whether holders who are not merchants may redeem too.
open_redemption: public(bool)


event MerchantRegistered:
    merchant: indexed(address)
    name: String[64]
    cap: uint256


event MerchantCapChanged:
    merchant: indexed(address)
    cap: uint256


event MerchantRemoved:
    merchant: indexed(address)


event OpenRedemptionChanged:
    enabled: bool


event PointsIssued:
    merchant: indexed(address)
    customer: indexed(address)
    points: uint256
    stablecoin_paid_in: uint256


event PointsRedeemed:
    merchant: indexed(address)
    points: uint256
    stablecoin_paid_out: uint256


@deploy
def __init__(
    stablecoin: address,
    name_: String[25],
    symbol_: String[5],
    decimals_: uint8,
    eip712_name_: String[50],
    eip712_version_: String[20],
):
    """
    @notice The deployer becomes the admin.
    @param stablecoin The ERC-20 stablecoin that backs the points.
    @param decimals_ Points decimals; at least the stablecoin's and at most
           18 more than it.
    """
    assert stablecoin.is_contract, "points: stablecoin is not a contract"
    stable_decimals: uint8 = staticcall IERC20Detailed(stablecoin).decimals()
    assert decimals_ >= stable_decimals, "points: fewer decimals than the stablecoin"
    assert decimals_ - stable_decimals <= 18, "points: decimals too far from the stablecoin's"
    ownable.__init__()
    ownable_2step.__init__()
    pausable.__init__()
    packed_erc20.__init__(name_, symbol_, decimals_, eip712_name_, eip712_version_)
    STABLECOIN = stablecoin
    SCALE = 10 ** convert(decimals_ - stable_decimals, uint256)


# ---------------------------------------------------------------- EIP-3009


@external
def transferWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    validAfter: uint256,
    validBefore: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice EIP-3009: move `amount` points from `_from` to `to` on
            `_from`'s signed authorization. Anyone may submit it (the
            relayer pays the gas). Works while paused, like `transfer`.
    @dev Nonces are a bitmap (see `eip3009`): a nonce next to one the
         payer already used costs least; any 32-byte nonce is accepted.
    @param _from The payer, who signed.
    @param to The payee.
    @param amount The points to move.
    @param validAfter Valid only when the block time is after this.
    @param validBefore Valid only when the block time is before this.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    eip3009._authorize(
        packed_erc20._domain_separator(),
        eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
        _from,
        to,
        amount,
        validAfter,
        validBefore,
        nonce,
        v,
        r,
        s,
    )
    packed_erc20._transfer(_from, to, amount)


@external
def receiveWithAuthorization(
    _from: address,
    to: address,
    amount: uint256,
    validAfter: uint256,
    validBefore: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice EIP-3009: like `transferWithAuthorization`, but only the payee
            `to` may submit it, so it cannot be front-run.
    @param _from The payer, who signed.
    @param to The payee, who must be the caller.
    @param amount The points to move.
    @param validAfter Valid only when the block time is after this.
    @param validBefore Valid only when the block time is before this.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    eip3009._authorize(
        packed_erc20._domain_separator(),
        eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
        _from,
        to,
        amount,
        validAfter,
        validBefore,
        nonce,
        v,
        r,
        s,
    )
    packed_erc20._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-3009: cancel an unused authorization on the authorizer's
            signature. Anyone may submit it.
    @param authorizer The payer of the authorization.
    @param nonce The nonce of the authorization.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    eip3009._cancel(packed_erc20._domain_separator(), authorizer, nonce, v, r, s)


# --------------------------------------------------------------- issuance


@external
def issue(customer: address, stablecoin_amount: uint256) -> uint256:
    """
    @notice Merchant: issue points worth `stablecoin_amount` to `customer`,
            paying that much stablecoin into the reserve (approve this
            contract on the stablecoin first). The points are attributed to
            the calling merchant.
    @return uint256 The points minted: `stablecoin_amount * SCALE`.
    """
    pausable._require_not_paused()
    merchant: Merchant = self.merchants[msg.sender]
    assert merchant.active, "points: caller is not a merchant"
    assert customer != empty(address), "points: customer is the zero address"
    assert stablecoin_amount != 0, "points: amount is zero"
    points: uint256 = stablecoin_amount * SCALE
    # Outstanding as issuer (issued minus redeemed) may not exceed the cap:
    # issued + points <= cap + redeemed, with the right side saturating at
    # 2**256 - 1 so that an unlimited cap stays unlimited after redemptions,
    # and the left side compared without overflowing.
    limit: uint256 = max_value(uint256)
    if merchant.redeemed <= max_value(uint256) - merchant.cap:
        limit = merchant.cap + merchant.redeemed
    assert points <= limit and merchant.issued <= limit - points, "points: merchant cap exceeded"

    before: uint256 = staticcall IERC20(STABLECOIN).balanceOf(self)
    assert extcall IERC20(STABLECOIN).transferFrom(msg.sender, self, stablecoin_amount, default_return_value=True), (
        "points: stablecoin transfer failed"
    )
    assert staticcall IERC20(STABLECOIN).balanceOf(self) == before + stablecoin_amount, (
        "points: stablecoin paid in differs from amount"
    )

    self.reserve += stablecoin_amount
    self.merchants[msg.sender].issued = merchant.issued + points
    self.merchants[msg.sender].paid_in = merchant.paid_in + stablecoin_amount
    packed_erc20._mint(customer, points)
    log PointsIssued(merchant=msg.sender, customer=customer, points=points, stablecoin_paid_in=stablecoin_amount)
    return points


@external
def redeem(points: uint256) -> uint256:
    """
    @notice Merchant: redeem accepted points for stablecoin, one unit per
            SCALE points, paid to the caller. Only whole stablecoin units
            are redeemed; a remainder below SCALE stays in the caller's
            balance. Consumers cannot cash out unless `open_redemption`.
    @return uint256 The stablecoin paid out.
    """
    pausable._require_not_paused()
    merchant: Merchant = self.merchants[msg.sender]
    assert merchant.active or self.open_redemption, "points: only merchants redeem"
    payout: uint256 = points // SCALE
    assert payout != 0, "points: amount below one stablecoin unit"
    burned: uint256 = payout * SCALE
    assert packed_erc20._balance_of(msg.sender) >= burned, "points: redeem amount exceeds balance"

    packed_erc20._burn(msg.sender, burned)
    self.reserve -= payout
    if merchant.active:
        self.merchants[msg.sender].redeemed = merchant.redeemed + burned
        self.merchants[msg.sender].paid_out = merchant.paid_out + payout
    log PointsRedeemed(merchant=msg.sender, points=burned, stablecoin_paid_out=payout)
    assert extcall IERC20(STABLECOIN).transfer(msg.sender, payout, default_return_value=True), (
        "points: stablecoin transfer failed"
    )
    return payout


@external
@view
@reentrant
def points_for(stablecoin_amount: uint256) -> uint256:
    """
    @notice The points that `stablecoin_amount` stablecoin units issue.
    """
    return stablecoin_amount * SCALE


@external
@view
@reentrant
def surplus() -> uint256:
    """
    @notice Stablecoin held beyond the reserve (sent here outside `issue`).
    """
    return staticcall IERC20(STABLECOIN).balanceOf(self) - self.reserve


# ---------------------------------------------------------------- admin


@external
def register_merchant(merchant: address, name: String[64], cap: uint256):
    """
    @notice Admin: register a merchant under `name` with an issuance cap:
            the most points it may have outstanding as issuer, counted as
            points it issued minus points it redeemed. A cap of
            `2**256 - 1` is unlimited (the check saturates, it never
            overflows).
    """
    ownable._check_owner()
    assert merchant != empty(address), "points: merchant is the zero address"
    assert len(name) != 0, "points: name is empty"
    assert not self.merchants[merchant].active, "points: merchant already registered"
    self.merchants[merchant].name = name
    self.merchants[merchant].active = True
    self.merchants[merchant].cap = cap
    log MerchantRegistered(merchant=merchant, name=name, cap=cap)


@external
def set_merchant_cap(merchant: address, cap: uint256):
    """
    @notice Admin: change a merchant's issuance cap. A cap below what is
            already outstanding only stops further issuance.
    """
    ownable._check_owner()
    assert self.merchants[merchant].active, "points: not a merchant"
    self.merchants[merchant].cap = cap
    log MerchantCapChanged(merchant=merchant, cap=cap)


@external
def remove_merchant(merchant: address):
    """
    @notice Admin: stop a merchant from issuing and redeeming. Its totals
            stay on record; points it issued stay valid and backed.
    """
    ownable._check_owner()
    assert self.merchants[merchant].active, "points: not a merchant"
    self.merchants[merchant].active = False
    log MerchantRemoved(merchant=merchant)


@external
def set_open_redemption(enabled: bool):
    """
    @notice Admin: let every holder redeem (a network without the loyalty
            rule that only merchants cash out).
    """
    ownable._check_owner()
    self.open_redemption = enabled
    log OpenRedemptionChanged(enabled=enabled)


@external
def pause():
    """
    @notice Admin: stop issuance and redemption in an emergency.
    """
    ownable._check_owner()
    pausable._pause()


@external
def unpause():
    """
    @notice Admin: resume issuance and redemption.
    """
    ownable._check_owner()
    pausable._unpause()
