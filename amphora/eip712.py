"""The EIP-712 typed-data definitions of Amphora, in one place.

The API, the scripts and the tests all build and sign typed messages through
this module; ``tests/test_eip712.py`` checks the contracts' typehashes against
it, so a change on one side cannot drift from the other unnoticed.
"""

from __future__ import annotations

from typing import Any

from coincurve import PrivateKey
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

#: Domain name and version the WineCertificate is deployed with.
CERTIFICATE_DOMAIN_NAME = "Amphora Wine Certificate"
CERTIFICATE_DOMAIN_VERSION = "1"
#: Domain name and version PledgeLending is deployed with (offers, acceptances, extensions).
LENDING_DOMAIN_NAME = "Amphora Pledge Lending"
LENDING_DOMAIN_VERSION = "1"
#: Domain version of every CaskShares contract (the domain name is the cask's token name).
CASK_DOMAIN_VERSION = "1"

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

#: Primary types by name: field lists in the order the contracts hash them.
_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]

TYPES: dict[str, list[dict[str, str]]] = {
    # WineCertificate: a holder's signed transfer.
    "Transfer": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    # WineCertificate: the holder's signed lifecycle actions (same nonce as Transfer).
    "CreateGift": [
        {"name": "holder", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "claimKey", "type": "address"},
        {"name": "expiry", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RevokeGift": [
        {"name": "holder", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RequestRedemption": [
        {"name": "holder", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "orderHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Flag": [
        {"name": "holder", "type": "address"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "reasonHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    # WineCertificate: the holder voids every nonce below newNonce (signed at the current nonce).
    "InvalidateNonces": [
        {"name": "holder", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "newNonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    # WineCertificate: signed by a gift's one-time claim key (no nonce: the key works once).
    "ClaimGift": [
        {"name": "tokenId", "type": "uint256"},
        {"name": "recipient", "type": "address"},
    ],
    # WineCertificate: signed by a bottle's tag key over a recent block (proof of possession).
    "TagChallenge": [
        {"name": "tokenId", "type": "uint256"},
        {"name": "blockNumber", "type": "uint256"},
        {"name": "blockHash", "type": "bytes32"},
    ],
    # PledgeLending: a lender's offer (signed by the lender; never stored until used).
    "LoanOffer": [
        {"name": "lender", "type": "address"},
        {"name": "currency", "type": "address"},
        {"name": "lotId", "type": "uint256"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "principal", "type": "uint256"},
        {"name": "repayment", "type": "uint256"},
        {"name": "duration", "type": "uint256"},
        {"name": "gracePeriod", "type": "uint256"},
        {"name": "maxLtvBps", "type": "uint256"},
        {"name": "expiry", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
    ],
    # PledgeLending: the borrower's acceptance, for the relayer (offerHash = the offer's digest).
    "AcceptOffer": [
        {"name": "offerHash", "type": "bytes32"},
        {"name": "tokenId", "type": "uint256"},
        {"name": "borrower", "type": "address"},
        {"name": "deadline", "type": "uint256"},
    ],
    # PledgeLending: a later due date and new repayment, signed by lender and borrower.
    "LoanExtension": [
        {"name": "loanId", "type": "uint256"},
        {"name": "dueAt", "type": "uint256"},
        {"name": "repayment", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    # ERC-20 tokens: EIP-2612 permit.
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    # ERC-20 tokens: EIP-3009 transfers with authorization (random bytes32 nonces).
    "TransferWithAuthorization": _AUTHORIZATION,
    "ReceiveWithAuthorization": _AUTHORIZATION,
    # CaskShares: a holder's signed bottle claim (nonce from the EIP-3009 bitmap).
    "ClaimBottles": [
        {"name": "holder", "type": "address"},
        {"name": "bottles", "type": "uint256"},
        {"name": "remainder", "type": "bool"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
    "CancelAuthorization": [
        {"name": "authorizer", "type": "address"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


def encode_type(primary_type: str) -> str:
    """The EIP-712 ``encodeType`` string, e.g. ``Transfer(address from,...)``."""
    fields = ",".join(f"{f['type']} {f['name']}" for f in TYPES[primary_type])
    return f"{primary_type}({fields})"


def typehash(primary_type: str) -> bytes:
    """keccak256 of :func:`encode_type`: what the contract stores as a constant."""
    return keccak(text=encode_type(primary_type))


def domain(chain_id: int, verifying_contract: str, name: str = CERTIFICATE_DOMAIN_NAME,
           version: str = CERTIFICATE_DOMAIN_VERSION) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "chainId": int(chain_id),
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def domain_separator(chain_id: int, verifying_contract: str, name: str = CERTIFICATE_DOMAIN_NAME,
                     version: str = CERTIFICATE_DOMAIN_VERSION) -> bytes:
    """The domain separator a contract at ``verifying_contract`` computes on ``chain_id``."""
    encoded = (
        keccak(text="EIP712Domain(" + ",".join(f"{f['type']} {f['name']}" for f in EIP712_DOMAIN_TYPE) + ")")
        + keccak(text=name)
        + keccak(text=version)
        + int(chain_id).to_bytes(32, "big")
        + bytes(12) + bytes.fromhex(to_checksum_address(verifying_contract)[2:])
    )
    return keccak(encoded)


def typed_data(primary_type: str, message: dict[str, Any], chain_id: int, verifying_contract: str,
               name: str = CERTIFICATE_DOMAIN_NAME,
               version: str = CERTIFICATE_DOMAIN_VERSION) -> dict[str, Any]:
    """The full ``eth_signTypedData_v4`` payload for one message."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary_type: TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": domain(chain_id, verifying_contract, name, version),
        "message": message,
    }


def transfer_message(sender: str, to: str, token_id: int, nonce: int, deadline: int) -> dict[str, Any]:
    return {
        "from": to_checksum_address(sender),
        "to": to_checksum_address(to),
        "tokenId": int(token_id),
        "nonce": int(nonce),
        "deadline": int(deadline),
    }


def create_gift_message(holder: str, token_id: int, claim_key: str, expiry: int, nonce: int,
                        deadline: int) -> dict[str, Any]:
    return {
        "holder": to_checksum_address(holder),
        "tokenId": int(token_id),
        "claimKey": to_checksum_address(claim_key),
        "expiry": int(expiry),
        "nonce": int(nonce),
        "deadline": int(deadline),
    }


def revoke_gift_message(holder: str, token_id: int, nonce: int, deadline: int) -> dict[str, Any]:
    return {"holder": to_checksum_address(holder), "tokenId": int(token_id), "nonce": int(nonce),
            "deadline": int(deadline)}


def request_redemption_message(holder: str, token_id: int, order_hash: bytes, nonce: int,
                               deadline: int) -> dict[str, Any]:
    return {"holder": to_checksum_address(holder), "tokenId": int(token_id), "orderHash": _bytes32(order_hash),
            "nonce": int(nonce), "deadline": int(deadline)}


def flag_message(holder: str, token_id: int, reason_hash: bytes, nonce: int, deadline: int) -> dict[str, Any]:
    return {"holder": to_checksum_address(holder), "tokenId": int(token_id), "reasonHash": _bytes32(reason_hash),
            "nonce": int(nonce), "deadline": int(deadline)}


def invalidate_nonces_message(holder: str, nonce: int, new_nonce: int, deadline: int) -> dict[str, Any]:
    return {"holder": to_checksum_address(holder), "nonce": int(nonce), "newNonce": int(new_nonce),
            "deadline": int(deadline)}


def claim_gift_message(token_id: int, recipient: str) -> dict[str, Any]:
    return {"tokenId": int(token_id), "recipient": to_checksum_address(recipient)}


def tag_challenge_message(token_id: int, block_number: int, block_hash: bytes) -> dict[str, Any]:
    return {"tokenId": int(token_id), "blockNumber": int(block_number), "blockHash": _bytes32(block_hash)}


def sign_gift_claim(claim_key: bytes | str, token_id: int, recipient: str, chain_id: int,
                    certificate: str) -> bytes:
    """The claim of a gift for ``recipient``: signed with the gift's claim key
    (the secret in the claim link), in the certificate's domain."""
    return sign(typed_data("ClaimGift", claim_gift_message(token_id, recipient), chain_id, certificate), claim_key)


def sign_tag_challenge(tag_key: bytes | str, token_id: int, block_number: int, block_hash: bytes,
                       chain_id: int, certificate: str) -> bytes:
    """A bottle tag's answer to a challenge: block ``block_number`` (with its
    hash) for ``token_id``, signed with the key in the tag, in the
    certificate's domain. ``verify_tag_signature`` accepts it while the block
    is at most ``TAG_CHALLENGE_WINDOW`` blocks old (and not the newest)."""
    message = tag_challenge_message(token_id, block_number, block_hash)
    return sign(typed_data("TagChallenge", message, chain_id, certificate), tag_key)


#: Seconds in the year a loan rate is quoted over.
YEAR = 365 * 24 * 3600


def repayment_for_rate(principal: int, apr_bps: int, duration: int) -> int:
    """The repayment amount of a loan quoted at ``apr_bps`` a year (simple
    interest over ``duration`` seconds, 365-day year), rounded up to the
    stablecoin's smallest unit. Offers carry the amount, not the rate."""
    numerator = int(principal) * (10_000 * YEAR + int(apr_bps) * int(duration))
    return -(-numerator // (10_000 * YEAR))


def loan_offer_message(lender: str, currency: str, lot_id: int, token_id: int, principal: int, repayment: int,
                       duration: int, grace_period: int, max_ltv_bps: int, expiry: int,
                       nonce: int) -> dict[str, Any]:
    """A ``LoanOffer``: ``token_id`` 0 offers against any certificate of ``lot_id``;
    ``max_ltv_bps`` 0 skips the appraisal check."""
    return {
        "lender": to_checksum_address(lender), "currency": to_checksum_address(currency), "lotId": int(lot_id),
        "tokenId": int(token_id), "principal": int(principal), "repayment": int(repayment),
        "duration": int(duration), "gracePeriod": int(grace_period), "maxLtvBps": int(max_ltv_bps),
        "expiry": int(expiry), "nonce": int(nonce),
    }


def loan_offer_args(message: dict[str, Any]) -> tuple[Any, ...]:
    """A ``LoanOffer`` message as the contract's ``LoanOffer`` struct argument (a tuple)."""
    return tuple(message[f["name"]] for f in TYPES["LoanOffer"])


def accept_offer_message(offer_hash: bytes, token_id: int, borrower: str, deadline: int) -> dict[str, Any]:
    return {"offerHash": _bytes32(offer_hash), "tokenId": int(token_id), "borrower": to_checksum_address(borrower),
            "deadline": int(deadline)}


def loan_extension_message(loan_id: int, due_at: int, repayment: int, deadline: int) -> dict[str, Any]:
    return {"loanId": int(loan_id), "dueAt": int(due_at), "repayment": int(repayment), "deadline": int(deadline)}


def lending_typed_data(primary_type: str, message: dict[str, Any], chain_id: int,
                       lending: str) -> dict[str, Any]:
    """A typed-data payload in PledgeLending's domain."""
    return typed_data(primary_type, message, chain_id, lending, LENDING_DOMAIN_NAME, LENDING_DOMAIN_VERSION)


def _bytes32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError("a bytes32 field takes exactly 32 bytes")
    return bytes(value)


def permit_message(owner: str, spender: str, value: int, nonce: int, deadline: int) -> dict[str, Any]:
    return {
        "owner": to_checksum_address(owner),
        "spender": to_checksum_address(spender),
        "value": int(value),
        "nonce": int(nonce),
        "deadline": int(deadline),
    }


def authorization_message(sender: str, to: str, value: int, valid_after: int, valid_before: int,
                          nonce: bytes) -> dict[str, Any]:
    """The message of ``TransferWithAuthorization`` and ``ReceiveWithAuthorization``."""
    if len(nonce) != 32:
        raise ValueError("an EIP-3009 nonce is 32 bytes")
    return {
        "from": to_checksum_address(sender),
        "to": to_checksum_address(to),
        "value": int(value),
        "validAfter": int(valid_after),
        "validBefore": int(valid_before),
        "nonce": bytes(nonce),
    }


def claim_bottles_message(holder: str, bottles: int, remainder: bool, valid_after: int, valid_before: int,
                          nonce: bytes) -> dict[str, Any]:
    """The message of a cask holder's signed ``ClaimBottles``."""
    if len(nonce) != 32:
        raise ValueError("a claim nonce is 32 bytes")
    return {
        "holder": to_checksum_address(holder),
        "bottles": int(bottles),
        "remainder": bool(remainder),
        "validAfter": int(valid_after),
        "validBefore": int(valid_before),
        "nonce": bytes(nonce),
    }


def cancel_message(authorizer: str, nonce: bytes) -> dict[str, Any]:
    return {"authorizer": to_checksum_address(authorizer), "nonce": bytes(nonce)}


def digest(data: dict[str, Any]) -> bytes:
    """The 32-byte hash a signer signs for ``data`` (a :func:`typed_data` payload)."""
    signable = encode_typed_data(full_message=data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign(data: dict[str, Any], private_key: bytes | str) -> bytes:
    """Sign a typed-data payload; returns the 65-byte ``r || s || v`` signature
    (low ``s``, ``v`` 27 or 28). Signs the digest with libsecp256k1 directly:
    the relayer signs for every custodial request, and deriving an eth_account
    from the key each time costs more than the signature."""
    key = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else bytes(private_key)
    signature = PrivateKey(key).sign_recoverable(digest(data), hasher=None)
    return signature[:64] + bytes([signature[64] + 27])


def split_signature(signature: bytes) -> tuple[int, bytes, bytes]:
    """A 65-byte ``r || s || v`` signature as the ``(v, r, s)`` arguments that
    ``permit`` and EIP-3009 take. A ``v`` of 0 or 1 (some signers' recovery id)
    becomes 27 or 28, the only values ``ecrecover`` accepts."""
    if len(signature) != 65:
        raise ValueError("an ECDSA signature is 65 bytes")
    v = signature[64]
    return (v + 27 if v in (0, 1) else v), bytes(signature[:32]), bytes(signature[32:64])
