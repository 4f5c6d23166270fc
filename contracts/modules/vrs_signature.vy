# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Signature check for `v, r, s` signatures: ECDSA, else ERC-1271
@custom:contract-name vrs_signature
@license GNU Affero General Public License v3.0 only
@notice The one check the tokens use for EIP-2612 `permit` and EIP-3009
        authorizations, whose signatures arrive split as `v, r, s`.
        Stateless: import it and call `vrs_signature._is_valid(...)`; no
        `initializes:` or `uses:` is needed.
@custom:security High-`s` signatures never pass as ECDSA (EIP-2, snekmate
                 `ecdsa`'s bound), so a signature has one valid form; an
                 unrecoverable signature returns False, it does not revert.
"""


from snekmate.utils import ecdsa
from snekmate.utils import signature_checker


@internal
@view
def _is_valid(signer: address, digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> bool:
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
