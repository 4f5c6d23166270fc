# pragma version 0.4.3
# pragma nonreentrancy on
# pragma evm-version prague
"""
@title Amphora Reference Stablecoin
@custom:contract-name ReferenceStablecoin
@license GNU Affero General Public License v3.0 only
@notice FOR LOCAL AND TEST NETWORKS ONLY. A stand-in for a real fiat-backed
        stablecoin (loans, points reserves) where none is deployed. It
        behaves like a well-run fiat token, after USDC's FiatToken: 6
        decimals; a master minter gives minters a mint allowance; a pauser
        stops every movement of funds; a blacklister freezes accounts,
        which then can neither send, receive nor approve; a rescuer
        recovers ERC-20 tokens sent here by mistake. Besides the ERC-20
        functions it offers EIP-2612 `permit` and EIP-3009
        `transferWithAuthorization`, `receiveWithAuthorization` and
        `cancelAuthorization`, all in one EIP-712 domain.
@dev Built on snekmate's `erc20`, whose hooks cannot be overridden: the
     token writes its own external `transfer`, `transferFrom`, `approve`,
     `permit`, `mint` and `burn`, which check pause and blacklist and then
     call `erc20`'s internal functions. `erc20`'s own minter role and its
     `mint`, `burn`, `burn_from`, `set_minter` and ownership functions are
     not exported (its constructor still marks the deployer `is_minter`
     in `erc20`'s storage; nothing reads it). Roles, after FiatToken:
     - owner (two-step transfer): appoints the master minter, pauser,
       blacklister and rescuer;
     - master minter: configures and removes minters;
     - minter: mints up to its allowance, burns from its own balance;
     - pauser, blacklister, rescuer: as their names say.
     The deployer holds every role but minter at first.
@custom:security Emergency: the pauser calls `pause`, which stops
                 transfers, `transferFrom`, approvals, `permit`, EIP-3009
                 transfers, minting, burning and configuring minters. A
                 single account is stopped with `blacklist`. Removing a
                 minter, blacklisting, canceling an EIP-3009
                 authorization and changing roles stay possible while
                 paused. No role can move tokens it does not hold: the
                 rescuer moves only what this contract itself holds.
"""


from ethereum.ercs import IERC20
implements: IERC20

from ethereum.ercs import IERC20Detailed
implements: IERC20Detailed

from snekmate.tokens.interfaces import IERC20Permit
implements: IERC20Permit

from snekmate.auth import ownable
initializes: ownable

from snekmate.auth import ownable_2step
initializes: ownable_2step[ownable := ownable]

from snekmate.tokens import erc20
initializes: erc20[ownable := ownable]

from snekmate.utils import pausable
initializes: pausable

from .modules import eip3009
initializes: eip3009

# @dev Stateless: the signature check `permit` shares with EIP-3009.
from .modules import vrs_signature


# @dev The ERC-20 surface comes from `erc20` except the functions that
# move funds or approvals, which this contract wraps. Ownership is
# two-step. `renounce_ownership` is left out on purpose: without an owner
# no role could ever be reassigned, so a lost pauser or blacklister key
# could not be replaced. `erc20.transfer_ownership` is left out because
# it is one-step and grants `erc20`'s unused minter role.
exports: (
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
    ownable.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    pausable.paused,
    eip3009.authorizationState,
    eip3009.authorization_bitmap,
    eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    eip3009.CANCEL_AUTHORIZATION_TYPEHASH,
)


# @notice The EIP-712 typehash of `permit` (EIP-2612).
PERMIT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)


# @notice The account that configures and removes minters.
masterMinter: public(reentrant(address))
# @notice The account that pauses and unpauses the token.
pauser: public(reentrant(address))
# @notice The account that blacklists and un-blacklists accounts.
blacklister: public(reentrant(address))
# @notice The account that recovers tokens sent here by mistake.
rescuer: public(reentrant(address))

# @notice Whether an account may mint.
isMinter: public(reentrant(HashMap[address, bool]))
# @notice How much a minter may still mint.
minterAllowance: public(reentrant(HashMap[address, uint256]))
# @notice Whether an account is frozen: it can neither send, receive,
#         approve nor spend an allowance.
isBlacklisted: public(reentrant(HashMap[address, bool]))


event MinterConfigured:
    minter: indexed(address)
    allowance: uint256


event MinterRemoved:
    minter: indexed(address)


event Minted:
    minter: indexed(address)
    to: indexed(address)
    amount: uint256


event Burned:
    burner: indexed(address)
    amount: uint256


event Blacklisted:
    account: indexed(address)


event UnBlacklisted:
    account: indexed(address)


event MasterMinterChanged:
    master_minter: indexed(address)


event PauserChanged:
    pauser: indexed(address)


event BlacklisterChanged:
    blacklister: indexed(address)


event RescuerChanged:
    rescuer: indexed(address)


event TokensRescued:
    token: indexed(address)
    to: indexed(address)
    amount: uint256


@deploy
def __init__(name_: String[25], symbol_: String[5], eip712_name_: String[50], eip712_version_: String[20]):
    """
    @notice The deployer becomes owner, master minter, pauser,
            blacklister and rescuer. Nobody is a minter yet.
    @param name_ The token name (at most 25 characters).
    @param symbol_ The token symbol (at most 5 characters).
    @param eip712_name_ The EIP-712 domain name of `permit` and EIP-3009.
    @param eip712_version_ The EIP-712 domain version, e.g. "1".
    """
    ownable.__init__()
    ownable_2step.__init__()
    erc20.__init__(name_, symbol_, 6, eip712_name_, eip712_version_)
    pausable.__init__()
    self._set_master_minter(msg.sender)
    self._set_pauser(msg.sender)
    self._set_blacklister(msg.sender)
    self._set_rescuer(msg.sender)


# ------------------------------------------------------------------ ERC-20


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` tokens from the caller to `to`.
    @dev Reverts while paused or if the caller or `to` is blacklisted.
    @param to The 20-byte receiver address.
    @param amount The amount to move.
    @return bool Always true; failures revert.
    """
    self._require_movable(msg.sender, to)
    erc20._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(_from: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` tokens from `_from` to `to` out of the caller's
            allowance.
    @dev Reverts while paused or if the caller, `_from` or `to` is
         blacklisted. An allowance of `max_value(uint256)` is infinite.
    @param _from The 20-byte owner address.
    @param to The 20-byte receiver address.
    @param amount The amount to move.
    @return bool Always true; failures revert.
    """
    self._require_movable(_from, to)
    self._require_not_blacklisted(msg.sender)
    erc20._spend_allowance(_from, msg.sender, amount)
    erc20._transfer(_from, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    @dev Reverts while paused or if the caller or `spender` is
         blacklisted.
    @param spender The 20-byte spender address.
    @param amount The allowance; `max_value(uint256)` is infinite.
    @return bool Always true; failures revert.
    """
    self._require_approvable(msg.sender, spender)
    erc20._approve(msg.sender, spender, amount)
    return True


@external
def permit(owner: address, spender: address, amount: uint256, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-2612: set `spender`'s allowance over `owner`'s tokens on
            `owner`'s EIP-712 signature. Anyone may submit it.
    @dev Same rules as `approve`. A contract `owner` signs with ERC-1271
         (`r || s || v`), as in FiatToken v2.2. The nonce is consumed
         before the signature is checked; a failure reverts both.
    @param owner The 20-byte owner address, who signed.
    @param spender The 20-byte spender address.
    @param amount The allowance.
    @param deadline The last block timestamp at which the permit is valid.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._require_approvable(owner, spender)
    assert block.timestamp <= deadline, "stablecoin: permit is expired"

    nonce: uint256 = erc20.nonces[owner]
    erc20.nonces[owner] = unsafe_add(nonce, 1)
    struct_hash: bytes32 = keccak256(abi_encode(PERMIT_TYPEHASH, owner, spender, amount, nonce, deadline))
    digest: bytes32 = eip3009._hash_typed_data(self._domain_separator(), struct_hash)
    assert vrs_signature._is_valid(owner, digest, v, r, s), "stablecoin: invalid signature"

    erc20._approve(owner, spender, amount)


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
    @notice EIP-3009: move `amount` from `_from` to `to` on `_from`'s
            signed authorization. Anyone may submit it.
    @dev Reverts while paused or if `_from` or `to` is blacklisted, and on
         every EIP-3009 check (see `eip3009._authorize`).
    @param _from The payer, who signed.
    @param to The payee.
    @param amount The amount to move.
    @param validAfter Valid only when the block time is after this.
    @param validBefore Valid only when the block time is before this.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._require_movable(_from, to)
    eip3009._authorize(
        self._domain_separator(),
        eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, validAfter, validBefore, nonce, v, r, s
    )
    erc20._transfer(_from, to, amount)


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
    @dev Reverts while paused or if `_from` or `to` is blacklisted.
    @param _from The payer, who signed.
    @param to The payee, who must be the caller.
    @param amount The amount to move.
    @param validAfter Valid only when the block time is after this.
    @param validBefore Valid only when the block time is before this.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._require_movable(_from, to)
    eip3009._authorize(
        self._domain_separator(),
        eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, validAfter, validBefore, nonce, v, r, s
    )
    erc20._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-3009: cancel an unused authorization on the authorizer's
            signature. Anyone may submit it.
    @dev Allowed while paused and for blacklisted authorizers, unlike in
         FiatToken: canceling only takes a capability away, and a holder
         who fears a leaked authorization should be able to kill it
         before the token is unpaused.
    @param authorizer The payer of the authorization.
    @param nonce The nonce of the authorization.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    eip3009._cancel(self._domain_separator(), authorizer, nonce, v, r, s)


# ---------------------------------------------------------- mint and burn


@external
def configureMinter(minter: address, allowance: uint256):
    """
    @notice Master minter: make `minter` a minter that may mint up to
            `allowance` from now on (replacing any allowance left).
    @param minter The 20-byte minter address.
    @param allowance The amount it may mint.
    """
    pausable._require_not_paused()
    self._check_master_minter()
    assert minter != empty(address), "stablecoin: minter is the zero address"
    self.isMinter[minter] = True
    self.minterAllowance[minter] = allowance
    log MinterConfigured(minter=minter, allowance=allowance)


@external
def removeMinter(minter: address):
    """
    @notice Master minter: take the minter role and its allowance away,
            with immediate effect. Works while paused.
    @param minter The 20-byte minter address.
    """
    self._check_master_minter()
    assert self.isMinter[minter], "stablecoin: account is not a minter"
    self.isMinter[minter] = False
    self.minterAllowance[minter] = 0
    log MinterRemoved(minter=minter)


@external
def mint(to: address, amount: uint256) -> bool:
    """
    @notice Minter: create `amount` tokens for `to`, spending as much of
            the caller's mint allowance.
    @dev Reverts while paused or if the minter or `to` is blacklisted.
    @param to The 20-byte receiver address.
    @param amount The amount to create; not zero.
    @return bool Always true; failures revert.
    """
    pausable._require_not_paused()
    assert self.isMinter[msg.sender], "stablecoin: caller is not a minter"
    self._require_not_blacklisted(msg.sender)
    self._require_not_blacklisted(to)
    assert amount != 0, "stablecoin: mint amount is zero"
    allowance: uint256 = self.minterAllowance[msg.sender]
    assert amount <= allowance, "stablecoin: mint amount exceeds minter allowance"
    self.minterAllowance[msg.sender] = unsafe_sub(allowance, amount)
    erc20._mint(to, amount)
    log Minted(minter=msg.sender, to=to, amount=amount)
    return True


@external
def burn(amount: uint256):
    """
    @notice Minter: destroy `amount` tokens of the caller's own balance
            (the fiat left the reserve). Does not restore mint allowance.
    @dev Reverts while paused or if the minter is blacklisted.
    @param amount The amount to destroy; not zero.
    """
    pausable._require_not_paused()
    assert self.isMinter[msg.sender], "stablecoin: caller is not a minter"
    self._require_not_blacklisted(msg.sender)
    assert amount != 0, "stablecoin: burn amount is zero"
    erc20._burn(msg.sender, amount)
    log Burned(burner=msg.sender, amount=amount)


# ---------------------------------------------------- pause and blacklist


@external
def pause():
    """
    @notice Pauser: stop every movement of funds and every approval.
    """
    self._check_pauser()
    pausable._pause()


@external
def unpause():
    """
    @notice Pauser: lift the pause.
    """
    self._check_pauser()
    pausable._unpause()


@external
def blacklist(account: address):
    """
    @notice Blacklister: freeze `account`. Its balance stays but cannot
            move, and it cannot receive, approve nor spend allowances.
    @param account The 20-byte address to freeze.
    """
    self._check_blacklister()
    self.isBlacklisted[account] = True
    log Blacklisted(account=account)


@external
def unBlacklist(account: address):
    """
    @notice Blacklister: unfreeze `account`.
    @param account The 20-byte address to unfreeze.
    """
    self._check_blacklister()
    self.isBlacklisted[account] = False
    log UnBlacklisted(account=account)


# ----------------------------------------------------------------- rescue


@external
def rescueERC20(token: IERC20, to: address, amount: uint256):
    """
    @notice Rescuer: send `amount` of an ERC-20 `token` held by this
            contract (sent here by mistake) to `to`.
    @dev This token itself moves by the rules of `transfer` (not while
         paused, not to a blacklisted account). Other tokens are called
         with a safe transfer: a token that returns nothing is accepted
         if it has code, one that returns false is refused.
    @param token The ERC-20 token to recover; may be this token.
    @param to The 20-byte receiver address.
    @param amount The amount to recover.
    """
    self._check_rescuer()
    if token.address == self:
        self._require_movable(self, to)
        erc20._transfer(self, to, amount)
    else:
        assert extcall token.transfer(to, amount, default_return_value=True), "stablecoin: rescue transfer failed"
    log TokensRescued(token=token.address, to=to, amount=amount)


# ------------------------------------------------------------------ roles


@external
def updateMasterMinter(new_master_minter: address):
    """
    @notice Owner: appoint the master minter.
    @param new_master_minter The 20-byte address; not zero.
    """
    ownable._check_owner()
    self._set_master_minter(new_master_minter)


@external
def updatePauser(new_pauser: address):
    """
    @notice Owner: appoint the pauser.
    @param new_pauser The 20-byte address; not zero.
    """
    ownable._check_owner()
    self._set_pauser(new_pauser)


@external
def updateBlacklister(new_blacklister: address):
    """
    @notice Owner: appoint the blacklister.
    @param new_blacklister The 20-byte address; not zero.
    """
    ownable._check_owner()
    self._set_blacklister(new_blacklister)


@external
def updateRescuer(new_rescuer: address):
    """
    @notice Owner: appoint the rescuer.
    @param new_rescuer The 20-byte address; not zero.
    """
    ownable._check_owner()
    self._set_rescuer(new_rescuer)


# --------------------------------------------------------------- internal


@internal
@view
def _require_not_blacklisted(account: address):
    """
    @dev Throws if `account` is blacklisted.
    """
    assert not self.isBlacklisted[account], "stablecoin: account is blacklisted"


@internal
def _require_movable(_from: address, to: address):
    """
    @dev Throws unless funds may move from `_from` to `to` now.
    """
    pausable._require_not_paused()
    self._require_not_blacklisted(_from)
    self._require_not_blacklisted(to)


@internal
def _require_approvable(owner: address, spender: address):
    """
    @dev Throws unless `owner` may give `spender` an allowance now.
    """
    pausable._require_not_paused()
    self._require_not_blacklisted(owner)
    self._require_not_blacklisted(spender)


@internal
@view
def _check_master_minter():
    """
    @dev Throws if the caller is not the master minter.
    """
    assert msg.sender == self.masterMinter, "stablecoin: caller is not the master minter"


@internal
@view
def _check_pauser():
    """
    @dev Throws if the caller is not the pauser.
    """
    assert msg.sender == self.pauser, "stablecoin: caller is not the pauser"


@internal
@view
def _check_blacklister():
    """
    @dev Throws if the caller is not the blacklister.
    """
    assert msg.sender == self.blacklister, "stablecoin: caller is not the blacklister"


@internal
@view
def _check_rescuer():
    """
    @dev Throws if the caller is not the rescuer.
    """
    assert msg.sender == self.rescuer, "stablecoin: caller is not the rescuer"


@internal
def _set_master_minter(account: address):
    """
    @dev Appoints `account` master minter and logs it; never the zero address.
    """
    assert account != empty(address), "stablecoin: new master minter is the zero address"
    self.masterMinter = account
    log MasterMinterChanged(master_minter=account)


@internal
def _set_pauser(account: address):
    """
    @dev Appoints `account` pauser and logs it; never the zero address.
    """
    assert account != empty(address), "stablecoin: new pauser is the zero address"
    self.pauser = account
    log PauserChanged(pauser=account)


@internal
def _set_blacklister(account: address):
    """
    @dev Appoints `account` blacklister and logs it; never the zero address.
    """
    assert account != empty(address), "stablecoin: new blacklister is the zero address"
    self.blacklister = account
    log BlacklisterChanged(blacklister=account)


@internal
def _set_rescuer(account: address):
    """
    @dev Appoints `account` rescuer and logs it; never the zero address.
    """
    assert account != empty(address), "stablecoin: new rescuer is the zero address"
    self.rescuer = account
    log RescuerChanged(rescuer=account)


@internal
@view
def _domain_separator() -> bytes32:
    """
    @dev The one EIP-712 domain of this token (the one `erc20` set up),
         for permits and EIP-3009 authorizations alike.
    """
    return erc20.eip712_domain_separator._domain_separator_v4()
