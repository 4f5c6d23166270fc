# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Cask Shares
@custom:contract-name CaskShares
@license GNU Affero General Public License v3.0 only
@notice A security token for owning part of one cask of wine while it
        ages, and the bottles it becomes. One contract per cask: a fixed
        supply of shares is minted once, to the issuer (the deployer), and
        never again. The cask's facts (producer, wine, vintage, litres,
        expected bottles, cellar, document hash) are fixed at deployment.
        - Eligibility: a compliance agent records who may hold shares
          (country code, expiry of the check). Shares move only between
          eligible, unfrozen addresses, never to a banned country, never
          past the maximum number of holders, and not before the lock-up
          end (except the issuer's primary sale). `can_transfer` and
          `transfer_restriction` answer without reverting.
        - Agent powers, all logged: freeze an address or an amount of its
          shares, recover a lost key's shares to a new address of the same
          holder, pause. Nobody can mint; nobody moves shares except by
          the rules above and the recovery.
        - Signed transfers: EIP-2612 `permit` and EIP-3009 authorizations
          (the relayer submits them), under the same rules.
        - Distributions: anyone (the issuer, typically) deposits stablecoin;
          every holder can claim its pro-rata part at any later time. The
          contract keeps the cumulative stablecoin per share; each holder's
          entitlement is brought up to date when its balance changes, so a
          transfer costs O(1) and no call loops over holders.
        - Bottling: the issuer declares the cask bottled. The cask contract
          then issues the bottling lot on the `WineCertificate` itself, so
          it is the lot's issuer and owns every bottle from the start: the
          issuer cannot sell them elsewhere. Holders burn shares for bottle
          certificates; a remainder below one bottle is paid in stablecoin
          at a price fixed in the declaration, from a fund the issuer pays
          in with the declaration. `backing` shows the cover on chain.
@dev Why the cask issues the lot itself: `issue_lot` costs the same for 1
     or 10,000 bottles and gives all of them to the caller, so the backing
     is complete in one transaction and needs no change to the certificate;
     any design where the issuer issues the lot and then moves bottles in
     would cost one transfer per bottle. The certificate's admin must grant
     the cask contract the issuer role before bottling (a visible, one-off
     step; `declare_bottled` says so if it is missing).
     Remainders after bottling: from then on shares move only in whole
     bottles' worth, so no address's remainder (balance modulo shares per
     bottle) ever grows, and only addresses that held shares at the
     declaration can have one. The remainder fund is therefore
     `price × (shares_per_bottle - 1) × holders at the declaration`, which
     covers every remainder there can be.
     Storage per account: the packed_erc20 word (balance | permit nonce),
     the investor word (expiry | country | frozen | partly frozen |
     distribution snapshot; the snapshot is written only when a distribution
     happened since the account's last change), what it is owed, and the
     frozen amount (read only when the partly-frozen bit is set). A transfer
     reads each party's two words, the `_hot` word and the recipient's
     country ban, nothing else.
@custom:security Emergency: the compliance agent calls `pause`, which stops
                 every movement of shares (transfers, signed transfers,
                 bottle claims); distribution claims (which only pay out
                 what is owed) and the agent's recovery still work.
                 Trust model: the agent can freeze and recover but never
                 mint or burn; `recover` is its one way to move shares, to
                 an eligible, unfrozen address of the same country that the
                 agent vouches is the same holder's (logged with both
                 addresses). The issuer can deposit and bottle but not take
                 shares or the distribution and remainder funds back.
"""


from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed


from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

# @dev The project's ERC-20 core (balance and permit nonce in one word); its
# `transfer` and `transferFrom` are NOT exported: the wrappers below check
# the cask's rules first.
from .modules import packed_erc20
initializes: packed_erc20

from .modules import eip3009
initializes: eip3009


# @dev Left out on purpose: `packed_erc20.transfer` and `transferFrom`
# (wrapped below with the rules), and `renounce_ownership` (an issuer-less
# cask could never be bottled). Not snekmate's `pausable`: the pause flag is
# a bit of the word every transfer reads anyway (`_hot`), which saves a cold
# storage read (2,100 gas) a transfer; `paused`, `Paused`, `Unpaused` and the
# revert reasons are snekmate's.
exports: (
    packed_erc20.name,
    packed_erc20.symbol,
    packed_erc20.decimals,
    packed_erc20.totalSupply,
    packed_erc20.balanceOf,
    packed_erc20.allowance,
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
)


interface IWineCertificate:
    def issue_lot(
        custodian: address,
        bottle_count: uint256,
        vintage: uint256,
        volume_ml: uint256,
        bottling_date: uint256,
        metadata_hash: bytes32,
        tag_root: bytes32,
        producer: String[64],
        wine: String[96],
        region: String[96],
        metadata_uri: String[256],
    ) -> uint256: nonpayable
    def transferFrom(_from: address, _to: address, _tokenId: uint256): nonpayable
    def is_issuer(account: address) -> bool: view
    def balanceOf(_owner: address) -> uint256: view


struct Facts:
    producer: String[64]
    wine: String[96]
    vintage: uint256
    volume_litres: uint256
    expected_bottles: uint256
    cellar: address
    document_hash: bytes32
    lockup_end: uint256
    certificate: address
    stablecoin: address


struct Investor:
    eligible: bool
    country: uint256
    expiry: uint256
    frozen: bool
    frozen_amount: uint256


struct Bottling:
    bottled: bool
    lot_id: uint256
    first_token_id: uint256
    shares_per_bottle: uint256
    remainder_price: uint256
    bottles_issued: uint256
    bottles_delivered: uint256
    remainder_fund: uint256
    remainder_paid: uint256
    holders_at_bottling: uint256


struct Backing:
    bottled: bool
    lot_id: uint256
    shares_per_bottle: uint256
    shares_outstanding: uint256
    whole_bottles_outstanding: uint256
    bottles_held: uint256
    certificates_held: uint256
    remainder_fund_left: uint256
    remainder_fund_needed: uint256
    covered: bool


# @notice The EIP-712 typehash of a signed bottle claim (`claim_with_authorization`).
CLAIM_BOTTLES_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ClaimBottles(address holder,uint256 bottles,bool remainder,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)

# @notice Scale of `distributed_per_share`: stablecoin units per share × 10**18.
PRECISION: public(constant(uint256)) = 10**18
# @notice The most bottles one claim delivers (one certificate transfer each).
MAX_BOTTLES_PER_CLAIM: public(constant(uint256)) = 50
# @notice Country codes are ISO 3166-1 numeric, 1 to 999.
MAX_COUNTRY: public(constant(uint256)) = 999

# @dev The investor word: expiry (64 bits) | country << 64 (16 bits) |
# frozen << 80 (1 bit) | partly frozen << 81 (1 bit) | distribution
# snapshot << 128 (128 bits). A transfer reads each party's word once for
# both the rules and its entitlement.
_U64: constant(uint256) = (1 << 64) - 1
_U16: constant(uint256) = (1 << 16) - 1
_U128: constant(uint256) = (1 << 128) - 1
_FROZEN_BIT: constant(uint256) = 1 << 80
_PAUSED_BIT: constant(uint256) = 1 << 224
_PARTIAL_BIT: constant(uint256) = 1 << 81
_U32: constant(uint256) = (1 << 32) - 1
_U80: constant(uint256) = (1 << 80) - 1
_U96: constant(uint256) = (1 << 96) - 1


# @notice The WineCertificate the bottling lot is issued on.
CERTIFICATE: public(immutable(address))
# @notice The stablecoin of distributions and remainder payments.
STABLECOIN: public(immutable(address))
# @notice Until this time only the issuer's shares move (the primary sale).
LOCKUP_END: public(immutable(uint256))
_PRODUCER: immutable(String[64])
_WINE: immutable(String[96])
_VINTAGE: immutable(uint256)
_VOLUME_LITRES: immutable(uint256)
_EXPECTED_BOTTLES: immutable(uint256)
_CELLAR: immutable(address)
_DOCUMENT_HASH: immutable(bytes32)

# @notice The compliance agent: records investors, freezes, recovers, pauses,
#         sets the country bans and the maximum number of holders.
agent: public(address)
# @notice Whether holders in a country (ISO 3166-1 numeric) may not receive shares.
country_banned: public(HashMap[uint256, bool])
# @notice The most addresses that may hold shares at once; 0 is no limit.
max_holders: public(uint256)
# @notice Addresses holding shares now.
holder_count: public(uint256)

# @dev What every transfer needs in one word: the cumulative stablecoin
# per share ever deposited, × PRECISION (128 bits) | shares per bottle << 128
# (96 bits, 0 before bottling) | paused << 224 (1 bit).
_hot: uint256
# @notice Stablecoin deposited as distributions, and paid out of them.
distributions_deposited: public(uint256)
distributions_paid: public(uint256)
# @dev Deposits not yet spread (below one unit per share), × PRECISION.
_undistributed: uint256
# @dev Per account: shares the agent froze (the investor word's partial bit says whether any).
_frozen_amount: HashMap[address, uint256]
# @dev Per account: stablecoin owed and not yet claimed.
_owed: HashMap[address, uint256]

# @dev Per account: the investor word (see above).
_investors: HashMap[address, uint256]

# @dev The bottling declaration, two words (read them with `bottling`):
# terms = shares per bottle (96 bits) | lot id << 96 (64) | remainder price << 160 (96),
# zero before the declaration; counts = bottles issued (32) | delivered << 32 (32) |
# holders at the declaration << 64 (32) | remainder fund << 96 (80) | remainder paid << 176 (80).
_terms: uint256
_counts: uint256


event Paused:
    account: address


event Unpaused:
    account: address


event AgentSet:
    agent: indexed(address)


event InvestorRecorded:
    account: indexed(address)
    country: uint256
    expiry: uint256


event AccountFrozen:
    account: indexed(address)
    frozen: bool


event SharesFrozen:
    account: indexed(address)
    amount: uint256


event SharesRecovered:
    lost: indexed(address)
    new: indexed(address)
    amount: uint256


event CountryBanSet:
    country: indexed(uint256)
    banned: bool


event MaxHoldersSet:
    max_holders: uint256


event DistributionDeposited:
    by: indexed(address)
    amount: uint256
    distributed_per_share: uint256


event DistributionClaimed:
    holder: indexed(address)
    amount: uint256


event CaskBottled:
    lot_id: indexed(uint256)
    shares_per_bottle: uint256
    bottles: uint256
    remainder_price: uint256
    remainder_fund: uint256


event BottlesClaimed:
    holder: indexed(address)
    bottles: uint256
    first_token_id: uint256
    shares_burned: uint256
    remainder_shares: uint256
    remainder_paid: uint256


@deploy
def __init__(
    certificate: address,
    stablecoin: address,
    agent_: address,
    supply: uint256,
    decimals_: uint8,
    name_: String[25],
    symbol_: String[5],
    eip712_name_: String[50],
    eip712_version_: String[20],
    facts: Facts,
):
    """
    @notice The deployer becomes the issuer (owner) and receives the whole,
            fixed supply; `agent_` becomes the compliance agent.
    @param facts The cask's facts; `lockup_end`, `certificate` and
           `stablecoin` inside it are ignored (the arguments rule).
    """
    assert certificate.is_contract, "shares: certificate is not a contract"
    assert stablecoin.is_contract, "shares: stablecoin is not a contract"
    assert agent_ != empty(address), "shares: agent is the zero address"
    assert supply != 0, "shares: supply is zero"
    assert facts.expected_bottles != 0, "shares: no expected bottles"
    assert facts.cellar != empty(address), "shares: cellar is the zero address"
    ownable.__init__()
    ownable_2step.__init__()
    packed_erc20.__init__(name_, symbol_, decimals_, eip712_name_, eip712_version_)
    CERTIFICATE = certificate
    STABLECOIN = stablecoin
    LOCKUP_END = facts.lockup_end
    _PRODUCER = facts.producer
    _WINE = facts.wine
    _VINTAGE = facts.vintage
    _VOLUME_LITRES = facts.volume_litres
    _EXPECTED_BOTTLES = facts.expected_bottles
    _CELLAR = facts.cellar
    _DOCUMENT_HASH = facts.document_hash
    self.agent = agent_
    log AgentSet(agent=agent_)
    packed_erc20._mint(msg.sender, supply)
    self.holder_count = 1


# --------------------------------------------------------------- views


@external
@view
@reentrant
def facts() -> Facts:
    """
    @notice The cask's facts, fixed at deployment.
    """
    return Facts(
        producer=_PRODUCER,
        wine=_WINE,
        vintage=_VINTAGE,
        volume_litres=_VOLUME_LITRES,
        expected_bottles=_EXPECTED_BOTTLES,
        cellar=_CELLAR,
        document_hash=_DOCUMENT_HASH,
        lockup_end=LOCKUP_END,
        certificate=CERTIFICATE,
        stablecoin=STABLECOIN,
    )


@external
@view
@reentrant
def investor(account: address) -> Investor:
    """
    @notice What the agent recorded about `account`; `eligible` is true
            only while its check has not expired.
    """
    word: uint256 = self._investors[account]
    expiry: uint256 = word & _U64
    return Investor(
        eligible=expiry > block.timestamp,
        country=(word >> 64) & _U16,
        expiry=expiry,
        frozen=word & _FROZEN_BIT != 0,
        frozen_amount=self._frozen_amount[account],
    )


@external
@view
@reentrant
def can_transfer(_from: address, to: address, amount: uint256) -> bool:
    """
    @notice Whether `_from` may move `amount` shares to `to` now (the
            same rules `transfer` applies, balance included).
    """
    return len(self._restriction(_from, to, amount)) == 0


@external
@view
@reentrant
def transfer_restriction(_from: address, to: address, amount: uint256) -> String[64]:
    """
    @notice Why `_from` may not move `amount` shares to `to` now: the
            revert reason `transfer` would give, or empty if it may.
    """
    return self._restriction(_from, to, amount)


@external
@view
@reentrant
def claimable(holder: address) -> uint256:
    """
    @notice The stablecoin `holder` can claim from distributions now.
    """
    return self._owed[holder] + self._pending(holder, self._hot & _U128)


@external
@view
@reentrant
def paused() -> bool:
    """
    @notice Whether the agent paused every movement of shares.
    """
    return self._hot & _PAUSED_BIT != 0


@external
@view
@reentrant
def distributed_per_share() -> uint256:
    """
    @notice Cumulative stablecoin per share ever deposited, × PRECISION.
    """
    return self._hot & _U128


@external
@view
@reentrant
def backing() -> Backing:
    """
    @notice The bottling cover, for anyone to check: every whole bottle's
            worth of outstanding shares against the bottles the cask still
            holds, and the remainder fund against the most it may owe.
    """
    b: Bottling = self._bottling()
    result: Backing = empty(Backing)
    result.shares_outstanding = packed_erc20.totalSupply
    if not b.bottled:
        return result
    result.bottled = True
    result.lot_id = b.lot_id
    result.shares_per_bottle = b.shares_per_bottle
    result.whole_bottles_outstanding = result.shares_outstanding // b.shares_per_bottle
    result.bottles_held = b.bottles_issued - b.bottles_delivered
    result.certificates_held = staticcall IWineCertificate(CERTIFICATE).balanceOf(self)
    result.remainder_fund_left = b.remainder_fund - b.remainder_paid
    result.remainder_fund_needed = b.remainder_price * (b.shares_per_bottle - 1) * b.holders_at_bottling
    result.covered = result.whole_bottles_outstanding <= result.bottles_held
    return result


@external
@view
@reentrant
def bottling() -> Bottling:
    """
    @notice The bottling declaration and its running counts; `bottled` is
            false before the declaration.
    """
    return self._bottling()


# ------------------------------------------------------------ transfers


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of the caller's shares to `to`, under the rules
            (see `transfer_restriction`).
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of `owner`'s shares to `to`, spending the
            caller's allowance, under the same rules as `transfer`.
    """
    packed_erc20._spend_allowance(owner, msg.sender, amount)
    self._transfer(owner, to, amount)
    return True


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
    @notice EIP-3009: move shares on `_from`'s signed authorization;
            anyone may submit it. The rules apply as for `transfer`.
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
    self._transfer(_from, to, amount)


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
    @notice EIP-3009: like `transferWithAuthorization`, submitted by the payee only.
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
    self._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-3009: cancel an unused authorization (or signed claim) on
            the authorizer's signature.
    """
    eip3009._cancel(packed_erc20._domain_separator(), authorizer, nonce, v, r, s)


# --------------------------------------------------------- distributions


@external
def deposit_distribution(amount: uint256):
    """
    @notice Pay `amount` stablecoin to the current holders, pro rata
            (approve this contract on the stablecoin first). Anyone may
            deposit; the issuer does, for example with the proceeds of a
            partial sale.
    """
    assert amount != 0, "shares: amount is zero"
    supply: uint256 = packed_erc20.totalSupply
    assert supply != 0, "shares: no shares outstanding"
    before: uint256 = staticcall IERC20(STABLECOIN).balanceOf(self)
    assert extcall IERC20(STABLECOIN).transferFrom(msg.sender, self, amount, default_return_value=True), (
        "shares: stablecoin transfer failed"
    )
    assert staticcall IERC20(STABLECOIN).balanceOf(self) == before + amount, (
        "shares: stablecoin paid in differs from amount"
    )
    scaled: uint256 = amount * PRECISION + self._undistributed
    hot: uint256 = self._hot
    per_share: uint256 = (hot & _U128) + scaled // supply
    assert per_share <= _U128, "shares: distribution too large for the supply"
    self._undistributed = scaled % supply
    self._hot = (hot & ~_U128) | per_share
    self.distributions_deposited += amount
    log DistributionDeposited(by=msg.sender, amount=amount, distributed_per_share=per_share)


@external
def claim_distribution(holder: address) -> uint256:
    """
    @notice Pay `holder` everything it is owed from distributions. Anyone
            may submit it (the relayer does for custodial holders): the
            stablecoin goes to `holder` only.
    @return uint256 The stablecoin paid.
    """
    word: uint256 = self._investors[holder]
    assert word & _FROZEN_BIT == 0, "shares: account is frozen"
    per_share: uint256 = self._hot & _U128
    owed: uint256 = self._owed[holder]
    amount: uint256 = owed + self._pending(holder, per_share)
    assert amount != 0, "shares: nothing to claim"
    self._investors[holder] = (word & _U128) | (per_share << 128)
    if owed != 0:
        self._owed[holder] = 0
    self.distributions_paid += amount
    log DistributionClaimed(holder=holder, amount=amount)
    assert extcall IERC20(STABLECOIN).transfer(holder, amount, default_return_value=True), (
        "shares: stablecoin transfer failed"
    )
    return amount


# --------------------------------------------------------------- bottling


@external
def declare_bottled(
    shares_per_bottle: uint256,
    remainder_price: uint256,
    volume_ml: uint256,
    bottling_date: uint256,
    metadata_hash: bytes32,
    tag_root: bytes32,
    region: String[96],
    metadata_uri: String[256],
) -> uint256:
    """
    @notice Issuer: declare the cask bottled. The cask issues the bottling
            lot on the certificate (it must hold the issuer role there), one
            bottle per whole `shares_per_bottle` of the outstanding shares,
            kept by the cellar; the lot's bottles belong to this contract
            until holders claim them. The issuer pays in the remainder fund:
            `remainder_price × (shares_per_bottle - 1) × holder_count`
            stablecoin (approve first). From now on shares move only in
            multiples of `shares_per_bottle`.
    @param remainder_price Stablecoin paid per share of a remainder below one bottle.
    @return uint256 The lot id.
    """
    ownable._check_owner()
    assert self._terms == 0, "shares: cask already bottled"
    assert shares_per_bottle != 0, "shares: shares per bottle is zero"
    assert shares_per_bottle <= _U96, "shares: shares per bottle out of range"
    assert remainder_price <= _U96, "shares: remainder price out of range"
    bottles: uint256 = packed_erc20.totalSupply // shares_per_bottle
    assert bottles != 0, "shares: less than one bottle outstanding"
    assert staticcall IWineCertificate(CERTIFICATE).is_issuer(self), (
        "shares: cask is not an issuer on the certificate"
    )
    holders: uint256 = self.holder_count
    fund: uint256 = remainder_price * (shares_per_bottle - 1) * holders
    assert fund <= _U80 and holders <= _U32, "shares: remainder fund out of range"
    lot_id: uint256 = extcall IWineCertificate(CERTIFICATE).issue_lot(
        _CELLAR,
        bottles,
        _VINTAGE,
        volume_ml,
        bottling_date,
        metadata_hash,
        tag_root,
        _PRODUCER,
        _WINE,
        region,
        metadata_uri,
    )
    self._terms = shares_per_bottle | (lot_id << 96) | (remainder_price << 160)
    self._hot |= shares_per_bottle << 128
    self._counts = bottles | (holders << 64) | (fund << 96)
    if fund != 0:
        before: uint256 = staticcall IERC20(STABLECOIN).balanceOf(self)
        assert extcall IERC20(STABLECOIN).transferFrom(msg.sender, self, fund, default_return_value=True), (
            "shares: stablecoin transfer failed"
        )
        assert staticcall IERC20(STABLECOIN).balanceOf(self) == before + fund, (
            "shares: stablecoin paid in differs from amount"
        )
    log CaskBottled(
        lot_id=lot_id,
        shares_per_bottle=shares_per_bottle,
        bottles=bottles,
        remainder_price=remainder_price,
        remainder_fund=fund,
    )
    return lot_id


@external
def claim(bottles: uint256, remainder: bool) -> uint256:
    """
    @notice Burn `bottles × shares_per_bottle` of the caller's shares for
            that many bottle certificates, and with `remainder` also the
            shares left below one bottle for stablecoin at the declared price.
    @return uint256 The first token id delivered (0 if no bottle).
    """
    return self._claim(msg.sender, bottles, remainder)


@external
def claim_with_authorization(
    holder: address,
    bottles: uint256,
    remainder: bool,
    validAfter: uint256,
    validBefore: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
) -> uint256:
    """
    @notice `claim` on `holder`'s EIP-712 signature (`ClaimBottles`);
            anyone may submit it. The nonce is from the same bitmap as
            EIP-3009 authorizations (`authorizationState`).
    @return uint256 The first token id delivered (0 if no bottle).
    """
    assert block.timestamp > validAfter, "shares: authorization is not yet valid"
    assert block.timestamp < validBefore, "shares: authorization is expired"
    struct_hash: bytes32 = keccak256(
        abi_encode(CLAIM_BOTTLES_TYPEHASH, holder, bottles, remainder, validAfter, validBefore, nonce)
    )
    eip3009._use(packed_erc20._domain_separator(), holder, nonce, struct_hash, v, r, s)
    return self._claim(holder, bottles, remainder)


# ------------------------------------------------------------ the agent


@external
def set_investor(account: address, country: uint256, expiry: uint256):
    """
    @notice Agent: record that `account` passed the eligibility check, with
            its country (ISO 3166-1 numeric) and when the check expires; an
            expiry of 0 withdraws eligibility. Freezes are kept.
    """
    self._check_agent()
    assert account != empty(address), "shares: account is the zero address"
    assert country != 0 and country <= MAX_COUNTRY, "shares: country code out of range"
    assert expiry == 0 or expiry > block.timestamp, "shares: expiry is in the past"
    assert expiry <= _U64, "shares: expiry out of range"
    word: uint256 = self._investors[account]
    self._investors[account] = (word & ~(_U64 | (_U16 << 64))) | expiry | (country << 64)
    log InvestorRecorded(account=account, country=country, expiry=expiry)


@external
def set_frozen(account: address, frozen: bool):
    """
    @notice Agent: freeze (or unfreeze) every share of `account`: it can
            neither send nor receive shares, claim bottles or distributions.
    """
    self._check_agent()
    word: uint256 = self._investors[account]
    if frozen:
        word |= _FROZEN_BIT
    else:
        word &= ~_FROZEN_BIT
    self._investors[account] = word
    log AccountFrozen(account=account, frozen=frozen)


@external
def set_frozen_amount(account: address, amount: uint256):
    """
    @notice Agent: freeze `amount` of `account`'s shares (it may move only
            the rest); 0 unfreezes them. At most its balance.
    """
    self._check_agent()
    assert amount <= packed_erc20._balance_of(account), "shares: frozen amount exceeds balance"
    self._set_frozen_amount(account, amount)
    log SharesFrozen(account=account, amount=amount)


@external
def recover(lost: address, new: address):
    """
    @notice Agent: move every share (and distribution owed) of `lost`, a
            holder's lost key, to `new`, the same holder's new address. `new`
            must be eligible, unfrozen and recorded with the same country.
            `lost` loses its eligibility and is frozen; a partial freeze
            follows the shares. Works while paused.
    """
    self._check_agent()
    assert lost != new, "shares: lost and new address are the same"
    lost_word: uint256 = self._investors[lost]
    new_word: uint256 = self._investors[new]
    assert new_word & _U64 > block.timestamp, "shares: new address is not eligible"
    assert new_word & _FROZEN_BIT == 0, "shares: new address is frozen"
    assert (lost_word >> 64) & _U16 == (new_word >> 64) & _U16, "shares: new address is of another country"
    amount: uint256 = packed_erc20._balance_of(lost)
    assert amount != 0, "shares: lost address holds no shares"
    per_share: uint256 = self._hot & _U128
    self._settle(lost, per_share)
    self._settle(new, per_share)
    owed: uint256 = self._owed[lost]
    if owed != 0:
        self._owed[lost] = 0
        self._owed[new] += owed
    if packed_erc20._balance_of(new) != 0:
        self.holder_count -= 1
    self._set_frozen_amount(new, self._frozen_amount[new] + self._frozen_amount[lost])
    self._set_frozen_amount(lost, 0)
    # The lost key: no longer eligible, frozen; its country and snapshot stay.
    self._investors[lost] = (self._investors[lost] & ~_U64) | _FROZEN_BIT
    packed_erc20._transfer(lost, new, amount)
    log SharesRecovered(lost=lost, new=new, amount=amount)


@external
def set_country_banned(country: uint256, banned: bool):
    """
    @notice Agent: stop (or allow again) transfers to holders of `country`.
    """
    self._check_agent()
    assert country != 0 and country <= MAX_COUNTRY, "shares: country code out of range"
    self.country_banned[country] = banned
    log CountryBanSet(country=country, banned=banned)


@external
def set_max_holders(max_holders: uint256):
    """
    @notice Agent: the most addresses that may hold shares at once (0: no
            limit). A limit below the current count only stops new holders.
    """
    self._check_agent()
    self.max_holders = max_holders
    log MaxHoldersSet(max_holders=max_holders)


@external
def pause():
    """
    @notice Agent: stop every movement of shares in an emergency.
    """
    self._check_agent()
    hot: uint256 = self._hot
    assert hot & _PAUSED_BIT == 0, "pausable: contract is paused"
    self._hot = hot | _PAUSED_BIT
    log Paused(account=msg.sender)


@external
def unpause():
    """
    @notice Agent: resume.
    """
    self._check_agent()
    hot: uint256 = self._hot
    assert hot & _PAUSED_BIT != 0, "pausable: contract is not paused"
    self._hot = hot & ~_PAUSED_BIT
    log Unpaused(account=msg.sender)


@external
def set_agent(agent_: address):
    """
    @notice Issuer: appoint another compliance agent.
    """
    ownable._check_owner()
    assert agent_ != empty(address), "shares: agent is the zero address"
    self.agent = agent_
    log AgentSet(agent=agent_)


# ------------------------------------------------------------- internals


@internal
@view
def _bottling() -> Bottling:
    """
    @dev The two bottling words, unpacked.
    """
    terms: uint256 = self._terms
    if terms == 0:
        return empty(Bottling)
    counts: uint256 = self._counts
    lot_id: uint256 = (terms >> 96) & _U64
    return Bottling(
        bottled=True,
        lot_id=lot_id,
        first_token_id=(lot_id << 32) | 1,
        shares_per_bottle=terms & _U96,
        remainder_price=terms >> 160,
        bottles_issued=counts & _U32,
        bottles_delivered=(counts >> 32) & _U32,
        remainder_fund=(counts >> 96) & _U80,
        remainder_paid=counts >> 176,
        holders_at_bottling=(counts >> 64) & _U32,
    )


@internal
@view
def _check_agent():
    assert msg.sender == self.agent, "shares: caller is not the agent"


@internal
@view
def _restriction(_from: address, to: address, amount: uint256) -> String[64]:
    """
    @dev The first rule a transfer of `amount` from `_from` to `to` breaks,
         as its revert reason; empty if none. The one statement of the rules.
    """
    hot: uint256 = self._hot
    if hot & _PAUSED_BIT != 0:
        return "shares: transfers are paused"
    sender: uint256 = self._investors[_from]
    receiver: uint256 = self._investors[to]
    if sender & _FROZEN_BIT != 0:
        return "shares: sender is frozen"
    if receiver & _FROZEN_BIT != 0:
        return "shares: recipient is frozen"
    if sender & _U64 == 0:
        return "shares: sender is not an eligible investor"
    if sender & _U64 <= block.timestamp:
        return "shares: sender's eligibility has expired"
    if receiver & _U64 == 0:
        return "shares: recipient is not an eligible investor"
    if receiver & _U64 <= block.timestamp:
        return "shares: recipient's eligibility has expired"
    if self.country_banned[(receiver >> 64) & _U16]:
        return "shares: recipient's country is banned"
    if block.timestamp < LOCKUP_END and _from != ownable.owner:
        return "shares: lock-up has not ended"
    balance: uint256 = packed_erc20._balance_of(_from)
    if amount > balance:
        return "erc20: transfer amount exceeds balance"
    if sender & _PARTIAL_BIT != 0 and amount > balance - min(self._frozen_amount[_from], balance):
        return "shares: amount exceeds unfrozen shares"
    spb: uint256 = (hot >> 128) & _U96
    if spb != 0 and amount % spb != 0:
        return "shares: bottled, move whole bottles only"
    if amount != 0 and _from != to and packed_erc20._balance_of(to) == 0 and amount != balance:
        limit: uint256 = self.max_holders
        if limit != 0 and self.holder_count >= limit:
            return "shares: too many holders"
    return ""


@internal
def _transfer(_from: address, to: address, amount: uint256):
    """
    @dev Checks the rules, brings both entitlements up to date, keeps the
         holder count and moves the shares.
    """
    reason: String[64] = self._restriction(_from, to, amount)
    assert len(reason) == 0, reason
    per_share: uint256 = self._hot & _U128
    if per_share != 0:
        self._settle(_from, per_share)
        self._settle(to, per_share)
    if amount != 0 and _from != to:
        count: uint256 = self.holder_count
        new_count: uint256 = count
        if packed_erc20._balance_of(to) == 0:
            new_count += 1
        if packed_erc20._balance_of(_from) == amount:
            new_count -= 1
        if new_count != count:
            self.holder_count = new_count
    packed_erc20._transfer(_from, to, amount)


@internal
@view
def _pending(account: address, per_share: uint256) -> uint256:
    """
    @dev What `account` earned since its last snapshot.
    """
    return packed_erc20._balance_of(account) * (per_share - (self._investors[account] >> 128)) // PRECISION


@internal
def _settle(account: address, per_share: uint256):
    """
    @dev Moves what `account` earned since its last snapshot into what it
         is owed; called before every change of its balance.
    """
    word: uint256 = self._investors[account]
    snapshot: uint256 = word >> 128
    if snapshot == per_share:
        return
    earned: uint256 = packed_erc20._balance_of(account) * (per_share - snapshot) // PRECISION
    if earned != 0:
        self._owed[account] += earned
    self._investors[account] = (word & _U128) | (per_share << 128)


@internal
def _set_frozen_amount(account: address, amount: uint256):
    """
    @dev Records `amount` frozen shares of `account` and its partial bit.
    """
    self._frozen_amount[account] = amount
    word: uint256 = self._investors[account]
    if amount != 0:
        self._investors[account] = word | _PARTIAL_BIT
    else:
        self._investors[account] = word & ~_PARTIAL_BIT


@internal
def _claim(holder: address, bottles: uint256, remainder: bool) -> uint256:
    """
    @dev Burns the holder's shares for bottles and its remainder for stablecoin.
    """
    assert self._hot & _PAUSED_BIT == 0, "pausable: contract is paused"
    b: Bottling = self._bottling()
    assert b.bottled, "shares: cask not bottled"
    word: uint256 = self._investors[holder]
    assert word & _FROZEN_BIT == 0, "shares: account is frozen"
    assert word & _U64 > block.timestamp, "shares: holder is not eligible"
    assert bottles <= MAX_BOTTLES_PER_CLAIM, "shares: too many bottles in one claim"
    balance: uint256 = packed_erc20._balance_of(holder)
    unfrozen: uint256 = balance
    if word & _PARTIAL_BIT != 0:
        unfrozen = balance - min(self._frozen_amount[holder], balance)
    burned: uint256 = bottles * b.shares_per_bottle
    rest: uint256 = 0
    if remainder:
        rest = (balance - min(burned, balance)) % b.shares_per_bottle
    assert bottles != 0 or rest != 0, "shares: nothing to claim"
    assert burned + rest <= unfrozen, "shares: claim exceeds unfrozen shares"
    assert b.bottles_delivered + bottles <= b.bottles_issued, "shares: claim exceeds the bottles held"
    paid: uint256 = rest * b.remainder_price
    assert b.remainder_paid + paid <= b.remainder_fund, "shares: remainder fund exhausted"

    self._settle(holder, self._hot & _U128)
    if burned + rest == balance:
        self.holder_count -= 1
    packed_erc20._burn(holder, burned + rest)
    first: uint256 = 0
    if bottles != 0:
        first = b.first_token_id + b.bottles_delivered
    self._counts += (bottles << 32) | (paid << 176)
    log BottlesClaimed(
        holder=holder, bottles=bottles, first_token_id=first, shares_burned=burned, remainder_shares=rest, remainder_paid=paid
    )
    for i: uint256 in range(bottles, bound=MAX_BOTTLES_PER_CLAIM):
        extcall IWineCertificate(CERTIFICATE).transferFrom(self, holder, first + i)
    if paid != 0:
        assert extcall IERC20(STABLECOIN).transfer(holder, paid, default_return_value=True), (
            "shares: stablecoin transfer failed"
        )
    return first
