# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title ERC-20 + EIP-2612 with each account's balance and permit nonce in one word
@custom:contract-name packed_erc20
@license GNU Affero General Public License v3.0 only
@notice A plain ERC-20 core (no minter, no owner: the token decides who
        mints and burns through `_mint` and `_burn`) with EIP-2612 `permit`
        and EIP-5267 `eip712Domain`. It behaves like snekmate's `erc20`
        module and uses the same revert reasons, with two differences:
        - One storage word per account holds the balance (low 128 bits)
          and the permit nonce (high 128 bits). A permit by a holder with
          a balance then changes a word that is already non-zero (5,000
          gas) instead of filling a fresh nonce slot (22,100), which is
          what keeps `permit` within 1.6 × `approve`.
        - `permit` also accepts an ERC-1271 signature from a contract
          owner (`vrs_signature`), as FiatToken v2.2 does.
        The total supply is capped at 2**128 - 1 so a balance can never
        carry into the nonce bits; for an 18-decimal token that is about
        3.4 × 10**20 whole tokens.

        Use it in a token:
        ```vy
        from .modules import packed_erc20
        initializes: packed_erc20
        exports: (packed_erc20.transfer, packed_erc20.balanceOf, ...)
        ```
@dev Storage: `_accounts[a] = balance | nonce << 128`. A transfer changes
     only the balance half (`unsafe_sub`/`unsafe_add` cannot cross bit 128
     because every balance is at most the total supply, below 2**128); a
     permit adds `1 << 128`.
@custom:security - Permit replay: the nonce is consumed in the same word
                   and the same call that checks the signature; the
                   domain binds chain id and contract address.
                 - Permit malleability: high-`s` signatures never pass as
                   ECDSA (`vrs_signature`).
                 - A permit submitted by someone else first only spends
                   the nonce the owner meant to spend and sets the same
                   allowance: a dApp that then calls `transferFrom` still
                   works.
"""


from ethereum.ercs import IERC20
implements: IERC20

from ethereum.ercs import IERC20Detailed
implements: IERC20Detailed

from snekmate.tokens.interfaces import IERC20Permit
implements: IERC20Permit


# @dev The EIP-712 domain (name, version, chain id, address) of permits,
# and anything else the token signs (EIP-3009 authorizations).
from snekmate.utils import eip712_domain_separator
initializes: eip712_domain_separator


# @dev Stateless: ECDSA, else ERC-1271, for `v, r, s` signatures.
from . import vrs_signature


exports: eip712_domain_separator.eip712Domain


# @dev The EIP-712 typehash of `permit` (EIP-2612).
_PERMIT_TYPEHASH: constant(bytes32) = keccak256(
    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
)
# @dev The balance half of an account word.
_BALANCE_MASK: constant(uint256) = (1 << 128) - 1
# @dev One permit nonce, in account-word units.
_NONCE_ONE: constant(uint256) = 1 << 128


# @notice The token's name.
name: public(immutable(String[25]))
# @notice The token's symbol.
symbol: public(immutable(String[5]))
# @notice The token's decimal places.
decimals: public(immutable(uint8))
# @notice The amount of tokens in existence.
totalSupply: public(uint256)
# @notice What `spender` may still move from `owner` by `transferFrom`.
allowance: public(HashMap[address, HashMap[address, uint256]])

# @dev Per account: balance | permit nonce << 128.
_accounts: HashMap[address, uint256]


@deploy
def __init__(
    name_: String[25], symbol_: String[5], decimals_: uint8, name_eip712_: String[50], version_eip712_: String[20]
):
    """
    @param name_ The token's name.
    @param symbol_ The token's symbol.
    @param decimals_ The token's decimal places.
    @param name_eip712_ The EIP-712 domain name.
    @param version_eip712_ The EIP-712 domain version.
    """
    name = name_
    symbol = symbol_
    decimals = decimals_
    eip712_domain_separator.__init__(name_eip712_, version_eip712_)


@external
@view
@reentrant
def balanceOf(owner: address) -> uint256:
    """
    @notice The balance of `owner`.
    """
    return self._balance_of(owner)


@external
@view
@reentrant
def nonces(owner: address) -> uint256:
    """
    @notice The nonce the next `permit` of `owner` must carry (EIP-2612).
    """
    return self._accounts[owner] >> 128


@external
@view
@reentrant
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator for the current chain.
    """
    return eip712_domain_separator._domain_separator_v4()


@external
def transfer(to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of the caller's tokens to `to`.
    """
    self._transfer(msg.sender, to, amount)
    return True


@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    """
    @notice Move `amount` of `owner`'s tokens to `to`, spending the
            caller's allowance (an allowance of 2**256 - 1 is never spent).
    """
    self._spend_allowance(owner, msg.sender, amount)
    self._transfer(owner, to, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @notice Let `spender` move up to `amount` of the caller's tokens.
    """
    self._approve(msg.sender, spender, amount)
    return True


@external
def permit(owner: address, spender: address, amount: uint256, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    """
    @notice EIP-2612: set `spender`'s allowance over `owner`'s tokens on
            `owner`'s EIP-712 signature. Anyone may submit it.
    @param owner The owner, who signed (ECDSA, or ERC-1271 for a contract).
    @param spender The spender.
    @param amount The allowance.
    @param deadline The last block timestamp at which the permit is valid.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    assert block.timestamp <= deadline, "erc20: expired deadline"
    account: uint256 = self._accounts[owner]
    struct_hash: bytes32 = keccak256(abi_encode(_PERMIT_TYPEHASH, owner, spender, amount, account >> 128, deadline))
    assert vrs_signature._is_valid(owner, eip712_domain_separator._hash_typed_data_v4(struct_hash), v, r, s), (
        "erc20: invalid signature"
    )
    self._accounts[owner] = unsafe_add(account, _NONCE_ONE)
    self._approve(owner, spender, amount)


@internal
def _transfer(owner: address, to: address, amount: uint256):
    """
    @dev Moves `amount` from `owner` to `to`; neither may be the zero
         address and `owner` must hold `amount`.
    """
    assert owner != empty(address), "erc20: transfer from the zero address"
    assert to != empty(address), "erc20: transfer to the zero address"
    account: uint256 = self._accounts[owner]
    assert account & _BALANCE_MASK >= amount, "erc20: transfer amount exceeds balance"
    self._accounts[owner] = unsafe_sub(account, amount)
    self._accounts[to] = unsafe_add(self._accounts[to], amount)
    log IERC20.Transfer(sender=owner, receiver=to, value=amount)


@internal
def _mint(owner: address, amount: uint256):
    """
    @dev Creates `amount` tokens for `owner`. Reverts if the total supply
         would pass 2**128 - 1.
    """
    assert owner != empty(address), "erc20: mint to the zero address"
    supply: uint256 = self.totalSupply + amount
    assert supply <= _BALANCE_MASK, "erc20: total supply exceeds 2**128 - 1"
    self.totalSupply = supply
    self._accounts[owner] = unsafe_add(self._accounts[owner], amount)
    log IERC20.Transfer(sender=empty(address), receiver=owner, value=amount)


@internal
def _burn(owner: address, amount: uint256):
    """
    @dev Destroys `amount` of `owner`'s tokens.
    """
    assert owner != empty(address), "erc20: burn from the zero address"
    account: uint256 = self._accounts[owner]
    assert account & _BALANCE_MASK >= amount, "erc20: burn amount exceeds balance"
    self._accounts[owner] = unsafe_sub(account, amount)
    self.totalSupply = unsafe_sub(self.totalSupply, amount)
    log IERC20.Transfer(sender=owner, receiver=empty(address), value=amount)


@internal
def _approve(owner: address, spender: address, amount: uint256):
    """
    @dev Sets `spender`'s allowance over `owner`'s tokens.
    """
    assert owner != empty(address), "erc20: approve from the zero address"
    assert spender != empty(address), "erc20: approve to the zero address"
    self.allowance[owner][spender] = amount
    log IERC20.Approval(owner=owner, spender=spender, value=amount)


@internal
def _spend_allowance(owner: address, spender: address, amount: uint256):
    """
    @dev Spends `amount` of `spender`'s allowance over `owner`'s tokens;
         an allowance of 2**256 - 1 is never spent.
    """
    current: uint256 = self.allowance[owner][spender]
    if current != max_value(uint256):
        assert current >= amount, "erc20: insufficient allowance"
        self._approve(owner, spender, unsafe_sub(current, amount))


@internal
@view
def _balance_of(owner: address) -> uint256:
    """
    @dev The balance of `owner`, for the token's own checks.
    """
    return self._accounts[owner] & _BALANCE_MASK


@internal
@view
def _domain_separator() -> bytes32:
    """
    @dev The token's EIP-712 domain separator, for other signed messages.
    """
    return eip712_domain_separator._domain_separator_v4()
