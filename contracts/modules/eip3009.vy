# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title EIP-3009 Transfer With Authorization for snekmate ERC-20 tokens
@custom:contract-name eip3009
@license GNU Affero General Public License v3.0 only
@notice Lets the holder of an ERC-20 token sign a transfer off chain
        (EIP-712) that anyone may submit, so the holder needs no gas:
        https://eips.ethereum.org/EIPS/eip-3009. Authorizations carry a
        random 32-byte nonce instead of a sequential one, so a holder can
        have many in flight at once, and each is valid only strictly
        between `validAfter` and `validBefore`. The signature is the
        `v, r, s` form of the EIP (as in USDC's FiatToken). A signature
        from the signer's own key is checked with ECDSA; otherwise a
        signer that is a contract (a smart-contract wallet) is asked with
        ERC-1271, receiving the signature packed as `r || s || v`.

        How to use it in a token built on snekmate's `erc20`:
        ```vy
        from snekmate.auth import ownable
        initializes: ownable
        from snekmate.tokens import erc20
        initializes: erc20[ownable := ownable]
        from .modules import eip3009
        initializes: eip3009[erc20 := erc20]
        ```
        then either export the ready-made entry points as they are
        ```vy
        exports: (
            eip3009.transferWithAuthorization,
            eip3009.receiveWithAuthorization,
            eip3009.cancelAuthorization,
            eip3009.authorizationState,
            eip3009.TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            eip3009.RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
            eip3009.CANCEL_AUTHORIZATION_TYPEHASH,
        )
        ```
        or, if the token has its own rules for moving funds (pause,
        blacklist), export only the state and the typehashes and write
        thin wrappers that check those rules and then call
        `eip3009._authorize(TYPEHASH, ...)` followed by
        `erc20._transfer(...)`, and `eip3009._cancel(...)`.
        `_authorize` checks everything EIP-3009 asks (time window, unused
        nonce, signature, payee for `receiveWithAuthorization`), so a
        wrapper cannot forget one of them.
@dev The EIP-712 domain is the one `erc20` initialises for `permit`, so a
     token has exactly one domain (name, version, chain id, address) for
     every signed message it accepts. `_is_valid_signature` and
     `_hash_typed_data` are exposed so that the token's own `permit`
     wrapper checks signatures the same way. The ready-made entry points
     are nonreentrant (`pragma nonreentrancy on`); `authorizationState`
     is a reentrant view. Because of `uses: erc20` this module does not
     compile on its own: `ape compile` must leave `contracts/modules`
     out (`compile: exclude: [modules]` in `ape-config.yaml`).
@custom:security - Replay: a nonce is marked used (or canceled) before the
                   transfer, and an authorization cannot be used twice nor
                   after it was canceled; the domain binds it to one chain
                   and one contract.
                 - Front-running: `receiveWithAuthorization` may only be
                   submitted by the payee, so a contract that pulls funds
                   with it cannot be front-run by someone who lifts the
                   authorization from the mempool and calls
                   `transferWithAuthorization` with it instead (the
                   typehashes differ, so the signature does not verify
                   for the other function either).
                 - Malleability: high-`s` ECDSA signatures are rejected
                   (snekmate `ecdsa`'s bound, EIP-2); besides, nonces,
                   not signatures, are what is marked used, so a second
                   form of the same signature would gain nothing.
                 - ERC-1271 answers can change over time (the wallet
                   decides); the nonce still makes each authorization
                   single-use.
"""


# @dev We use snekmate's `erc20` module: its internal `_transfer` moves
# the funds and its EIP-712 domain separator hashes the messages.
from snekmate.tokens import erc20
uses: erc20


# @dev Stateless helpers: snekmate's malleability bound for ECDSA, and
# ERC-1271 verification for contract signers.
from snekmate.utils import ecdsa
from snekmate.utils import signature_checker


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


# @notice Whether the authorization of `authorizer` with `nonce` has been
#         used or canceled. Once true it stays true.
authorizationState: public(reentrant(HashMap[address, HashMap[bytes32, bool]]))


# @dev Emitted when an authorization is used to move funds.
event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


# @dev Emitted when an authorization is canceled before use.
event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


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
    @notice Move `amount` tokens from `_from` to `to` on `_from`'s signed
            authorization. Anyone may submit it.
    @dev Ready-made entry point for a token with no transfer rules of its
         own; a token with rules writes a wrapper instead (see above).
    @param _from The payer, who signed the authorization.
    @param to The payee.
    @param amount The amount to move.
    @param validAfter The authorization is valid only after this time.
    @param validBefore The authorization is valid only before this time.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._authorize(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, validAfter, validBefore, nonce, v, r, s
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
    @notice Like `transferWithAuthorization`, but only the payee `to` may
            submit it: a contract that pulls a payment cannot be
            front-run.
    @param _from The payer, who signed the authorization.
    @param to The payee, who must be the caller.
    @param amount The amount to move.
    @param validAfter The authorization is valid only after this time.
    @param validBefore The authorization is valid only before this time.
    @param nonce The payer's unique 32-byte nonce.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._authorize(
        RECEIVE_WITH_AUTHORIZATION_TYPEHASH, _from, to, amount, validAfter, validBefore, nonce, v, r, s
    )
    erc20._transfer(_from, to, amount)


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @notice Cancel an authorization that has not been used yet, on the
            authorizer's signature. Anyone may submit it.
    @param authorizer The payer of the authorization to cancel.
    @param nonce The nonce of the authorization to cancel.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._cancel(authorizer, nonce, v, r, s)


@internal
def _authorize(
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
         calls `erc20._transfer(_from, to, amount)` right after, once its
         own rules are checked.
    @notice Reverts unless `valid_after < block.timestamp < valid_before`,
            the nonce is unused, and `_from` signed the message. For the
            receive typehash the caller must also be the payee `to`.
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
    self._require_unused(_from, nonce)

    struct_hash: bytes32 = keccak256(abi_encode(typehash, _from, to, amount, valid_after, valid_before, nonce))
    assert self._is_valid_signature(_from, self._hash_typed_data(struct_hash), v, r, s), (
        "eip3009: invalid signature"
    )

    self.authorizationState[_from][nonce] = True
    log AuthorizationUsed(authorizer=_from, nonce=nonce)


@internal
def _cancel(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @dev Checks an EIP-3009 cancellation, marks the nonce used and logs
         `AuthorizationCanceled`.
    @param authorizer The payer of the authorization to cancel.
    @param nonce The nonce of the authorization to cancel.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    """
    self._require_unused(authorizer, nonce)

    struct_hash: bytes32 = keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    assert self._is_valid_signature(authorizer, self._hash_typed_data(struct_hash), v, r, s), (
        "eip3009: invalid signature"
    )

    self.authorizationState[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@internal
@view
def _require_unused(authorizer: address, nonce: bytes32):
    """
    @dev Throws if the authorization was used or canceled.
    """
    assert not self.authorizationState[authorizer][nonce], "eip3009: authorization is used or canceled"


@internal
@view
def _hash_typed_data(struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest of `struct_hash` in the token's own domain,
         the one `erc20` set up for `permit`.
    @param struct_hash The 32-byte EIP-712 `hashStruct` of the message.
    @return bytes32 The digest the signer signed.
    """
    return erc20.eip712_domain_separator._hash_typed_data_v4(struct_hash)


@internal
@view
def _is_valid_signature(signer: address, digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> bool:
    """
    @dev Whether `signer` signed `digest`. ECDSA first, as OpenZeppelin's
         `SignatureChecker` does: a low-`s` secp256k1 signature that
         recovers to `signer` is valid, whether or not `signer` has code
         (an EOA with an EIP-7702 delegation still holds its key). Else,
         if `signer` has code, ERC-1271 `isValidSignature(digest,
         r || s || v)` decides (snekmate `signature_checker`).
    @notice Checking ECDSA before the code size spares an EOA signer the
            cold `EXTCODESIZE` (2,600 gas); a high-`s` or unrecoverable
            signature does not revert here but falls through to ERC-1271,
            so a contract wallet's own signature format still works.
    @param signer The 20-byte address that must have signed.
    @param digest The 32-byte EIP-712 digest.
    @param v The secp256k1 1-byte signature parameter `v`.
    @param r The secp256k1 32-byte signature parameter `r`.
    @param s The secp256k1 32-byte signature parameter `s`.
    @return bool Whether the signature is valid.
    """
    if convert(s, uint256) <= ecdsa._MALLEABILITY_THRESHOLD:
        recovered: address = ecrecover(digest, v, r, s)
        if recovered != empty(address) and recovered == signer:
            return True
    if not signer.is_contract:
        return False
    return signature_checker._is_valid_ERC1271_signature_now(signer, digest, concat(r, s, convert(v, bytes1)))
