# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title EIP-3009 Transfer With Authorization, with bitmap nonces
@custom:contract-name eip3009
@license GNU Affero General Public License v3.0 only
@notice Lets the holder of an ERC-20 token sign a transfer off chain
        (EIP-712) that anyone may submit, so the holder needs no gas:
        https://eips.ethereum.org/EIPS/eip-3009. Authorizations carry a
        32-byte nonce instead of a sequential one, so a holder can have
        many in flight at once, and each is valid only strictly between
        `validAfter` and `validBefore`. The signature is the `v, r, s`
        form of the EIP (as in USDC's FiatToken). A signature from the
        signer's own key is checked with ECDSA; otherwise a signer that is
        a contract (a smart-contract wallet) is asked with ERC-1271,
        receiving the signature packed as `r || s || v`.

        This module checks and records authorizations; it never moves
        funds, so it works with any ERC-20 core. A token writes thin entry
        points that check its own rules (pause, blacklist), then call
        `eip3009._authorize(domain_separator, TYPEHASH, ...)` followed by
        its own transfer, and `eip3009._cancel(...)`:
        ```vy
        from .modules import eip3009
        initializes: eip3009
        exports: (
            eip3009.authorizationState,
            eip3009.authorization_bitmap,
            eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
            eip3009.CANCEL_AUTHORIZATION_TYPEHASH,
        )
        ```
        `_authorize` checks everything EIP-3009 asks (time window, unused
        nonce, signature, payee for `receiveWithAuthorization`), so a
        wrapper cannot forget one of them.

        Nonce storage: the used nonces of an authorizer are a bitmap, 256
        nonces to a storage word (word `nonce >> 8`, bit `nonce & 255`),
        as in Uniswap's Permit2. Any 32-byte nonce works, random ones
        included; a signer that picks its nonces next to ones it already
        used (0, 1, 2, ... or `authorization_bitmap` to find free bits)
        pays for a changed word (5,000 gas) instead of a new one (22,100).
@dev The domain separator is an argument, so the token has exactly one
     EIP-712 domain (name, version, chain id, address) for every signed
     message it accepts, whatever module builds it. Signatures are checked
     by `vrs_signature`, the same check the tokens' `permit` uses. `authorizationState` and
     `authorization_bitmap` are reentrant views.
@custom:security - Replay: a nonce is marked used (or canceled) in the
                   same call that checks it, and an authorization cannot
                   be used twice nor after it was canceled; the domain
                   binds it to one chain and one contract.
                 - Front-running: `receiveWithAuthorization` may only be
                   submitted by the payee, so a contract that pulls funds
                   with it cannot be front-run by someone who lifts the
                   authorization from the mempool and calls
                   `transferWithAuthorization` with it instead (the
                   typehashes differ, so the signature does not verify
                   for the other function either).
                 - Malleability: high-`s` ECDSA signatures are rejected
                   (see `vrs_signature`); besides, nonces,
                   not signatures, are what is marked used, so a second
                   form of the same signature would gain nothing.
                 - Sharing a bitmap word between nonces changes nothing
                   for safety: each nonce has its own bit, and setting one
                   never clears another.
                 - ERC-1271 answers can change over time (the wallet
                   decides); the nonce still makes each authorization
                   single-use.
"""


# @dev Stateless helpers: the signature check shared with the tokens'
# `permit` (ECDSA, else ERC-1271) and snekmate's EIP-712 digest.
from . import vrs_signature
from snekmate.utils import message_hash_utils


# @notice The EIP-712 typehash of `transferWithAuthorization`.
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


# @notice The EIP-712 typehash of `receiveWithAuthorization`.
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


# @notice The EIP-712 typehash of `cancelAuthorization`.
CANCEL_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)


# @dev Used or canceled nonces: authorizer -> word index (nonce >> 8) ->
# 256 bits, bit `nonce & 255` set once the nonce is used or canceled.
_used: HashMap[address, HashMap[uint256, uint256]]


# @dev Emitted when an authorization is used to move funds.
event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


# @dev Emitted when an authorization is canceled before use.
event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


@external
@view
@reentrant
def authorizationState(authorizer: address, nonce: bytes32) -> bool:
    """
    @notice Whether the authorization of `authorizer` with `nonce` has been
            used or canceled. Once true it stays true.
    @param authorizer The payer of the authorization.
    @param nonce The 32-byte nonce.
    @return bool True if used or canceled.
    """
    n: uint256 = convert(nonce, uint256)
    return (self._used[authorizer][n >> 8] >> (n & 255)) & 1 == 1


@external
@view
@reentrant
def authorization_bitmap(authorizer: address, word: uint256) -> uint256:
    """
    @notice The used-or-canceled bits of nonces `word * 256` to
            `word * 256 + 255` of `authorizer`: bit `i` is nonce
            `word * 256 + i`. A signer picks a clear bit in a word it has
            already used for the cheapest authorization.
    @param authorizer The payer of the authorizations.
    @param word The word index, `nonce >> 8`.
    @return uint256 The bitmap.
    """
    return self._used[authorizer][word]


@internal
def _authorize(
    domain_separator: bytes32,
    typehash: bytes32,
    _from: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @dev Checks an EIP-3009 transfer authorization, marks its nonce used
         and logs `AuthorizationUsed`. Does NOT move funds: the caller
         moves `amount` from `_from` to `to` right after, once its own
         rules are checked.
    @notice Reverts unless `valid_after < block.timestamp < valid_before`,
            the nonce is unused, and `_from` signed the message. For the
            receive typehash the caller must also be the payee `to`.
    @param domain_separator The token's EIP-712 domain separator.
    @param typehash `TRANSFER_WITH_AUTHORIZATION_TYPEHASH` or
           `RECEIVE_WITH_AUTHORIZATION_TYPEHASH`.
    @param _from The payer, who signed the authorization.
    @param to The payee.
    @param amount The amount to move.
    @param valid_after The authorization is valid only after this time.
    @param valid_before The authorization is valid only before this time.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    if typehash == RECEIVE_WITH_AUTHORIZATION_TYPEHASH:
        assert to == msg.sender, "eip3009: caller is not the payee"
    else:
        assert typehash == TRANSFER_WITH_AUTHORIZATION_TYPEHASH, "eip3009: unknown typehash"
    assert block.timestamp > valid_after, "eip3009: authorization is not yet valid"
    assert block.timestamp < valid_before, "eip3009: authorization is expired"
    struct_hash: bytes32 = keccak256(abi_encode(typehash, _from, to, amount, valid_after, valid_before, nonce))
    self._use(domain_separator, _from, nonce, struct_hash, v, r, s)
    log AuthorizationUsed(authorizer=_from, nonce=nonce)


@internal
def _cancel(domain_separator: bytes32, authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @dev Checks an EIP-3009 cancellation, marks the nonce used and logs
         `AuthorizationCanceled`.
    @param domain_separator The token's EIP-712 domain separator.
    @param authorizer The payer of the authorization to cancel.
    @param nonce The nonce of the authorization to cancel.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    struct_hash: bytes32 = keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    self._use(domain_separator, authorizer, nonce, struct_hash, v, r, s)
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@internal
def _use(
    domain_separator: bytes32, authorizer: address, nonce: bytes32, struct_hash: bytes32, v: uint8, r: bytes32, s: bytes32
):
    """
    @dev The one path that consumes a nonce: throws if it was used or
         canceled or if `authorizer` did not sign `struct_hash`, else sets
         its bit.
    """
    n: uint256 = convert(nonce, uint256)
    word: uint256 = n >> 8
    bit: uint256 = 1 << (n & 255)
    bits: uint256 = self._used[authorizer][word]
    assert bits & bit == 0, "eip3009: authorization is used or canceled"
    assert vrs_signature._is_valid(authorizer, self._hash_typed_data(domain_separator, struct_hash), v, r, s), (
        "eip3009: invalid signature"
    )
    self._used[authorizer][word] = bits | bit


@internal
@pure
def _hash_typed_data(domain_separator: bytes32, struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest of `struct_hash` in the token's domain.
    @param domain_separator The token's EIP-712 domain separator.
    @param struct_hash The 32-byte EIP-712 `hashStruct` of the message.
    @return bytes32 The digest the signer signed.
    """
    return message_hash_utils._to_typed_data_hash(domain_separator, struct_hash)
