"""The relayer for wallet-less holders: build the typed data to sign, submit the
signed transfer (the relayer pays the gas), follow the transaction. Certificates
move by the WineCertificate's own signed `Transfer`; points by EIP-3009
`TransferWithAuthorization` on the PointsToken."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from amphora import eip712
from api.chain import POINTS
from api.deps import ChainDep, RelayerDep, SettingsDep
from api.errors import (
    InvalidRequest,
    NotDeployed,
    NotFound,
    RelayRefused,
    RelayUnavailable,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.schemas import (
    ADDRESS_PATTERN,
    BYTES32_PATTERN,
    PointsTransferRelayRequest,
    PointsTransferTypedData,
    RelayAccepted,
    RelayStatus,
    RelayTransaction,
    TransferRelayRequest,
    TransferTypedData,
    Uint256In,
    checksum_address,
)

router = APIRouter(prefix="/relay", tags=["relay"])

_RELAY_ERRORS = (InvalidRequest, WouldRevert, RelayRefused, RelayUnavailable, UpstreamUnavailable, NotDeployed)


def _accepted(tx_hash: str, public_base_url: str) -> RelayAccepted:
    return RelayAccepted(tx_hash=tx_hash, status=RelayStatus.pending,
                         status_url=f"{public_base_url.rstrip('/')}/relay/{tx_hash}")


@router.post(
    "/transfers",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RelayAccepted,
    summary="Relay a signed certificate transfer",
    responses=error_responses(*_RELAY_ERRORS),
)
def relay_transfer(body: TransferRelayRequest, relayer: RelayerDep, settings: SettingsDep) -> RelayAccepted:
    """Submit a holder's EIP-712 `Transfer` signature through
    `transfer_with_signature`; the relayer pays the gas and the holder stays the
    actor (the `Transfer` event names the holder as sender).

    The transfer is first simulated (`eth_call`) from the relayer's address. If it
    would revert (invalid signature, wrong nonce, expired deadline, a locked token,
    a sender who does not hold it, a paused contract) the answer is **409
    `would_revert`** with the contract's revert reason in `detail`, and nothing is
    sent: 409 because the request is well-formed but conflicts with the chain's
    current state. Malformed input is 422; a missing relayer key is 503.

    202: the transaction was sent; poll `status_url` until it is `mined` or `failed`."""
    return _accepted(relayer.relay_transfer(body), settings.public_base_url)


@router.post(
    "/points-transfers",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RelayAccepted,
    summary="Relay a signed points transfer (EIP-3009)",
    responses=error_responses(*_RELAY_ERRORS),
)
def relay_points_transfer(
    body: PointsTransferRelayRequest, relayer: RelayerDep, settings: SettingsDep,
) -> RelayAccepted:
    """Submit a holder's EIP-712 `TransferWithAuthorization` signature through the
    PointsToken's `transferWithAuthorization` (EIP-3009); the relayer pays the gas
    and the holder stays the actor (the `Transfer` event names the holder as
    sender; `AuthorizationUsed` names the holder and the nonce). The 65-byte
    signature is split into the contract's `v, r, s` here.

    As for certificates, the transfer is first simulated (`eth_call`) from the
    relayer's address. If it would revert (invalid signature, nonce already used
    or canceled, outside `valid_after`..`valid_before`, balance too low) the answer
    is **409 `would_revert`** with the contract's revert reason in `detail`, and
    nothing is sent. Malformed input is 422; a missing relayer key is 503, as is
    a PointsToken without EIP-3009.

    202: the transaction was sent; poll `status_url` until it is `mined` or `failed`."""
    return _accepted(relayer.relay_points_transfer(body), settings.public_base_url)


@router.get(
    "/typed-data/transfer",
    response_model=TransferTypedData,
    summary="The typed data a holder signs to transfer a certificate",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def transfer_typed_data(
    chain: ChainDep,
    sender: Annotated[str, Query(alias="from", pattern=ADDRESS_PATTERN, description="The holder.")],
    to: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The recipient.")],
    token_id: Annotated[Uint256In, Query(description="Decimal token id.")],
    deadline: Annotated[Uint256In, Query(description="Unix time the signature expires.")],
) -> TransferTypedData:
    """The complete `eth_signTypedData_v4` payload for a transfer, in the certificate
    contract's own EIP-712 domain, with the holder's current nonce filled in from the
    chain. Sign it with any standard signer and post the signature to
    `POST /relay/transfers` with the same values."""
    try:
        holder, recipient = checksum_address(sender), checksum_address(to)
    except ValueError as err:
        raise InvalidRequest(f"from or to: {err}") from err
    domain = chain.eip712_domain()
    message = eip712.transfer_message(holder, recipient, token_id, chain.nonce(holder), deadline)
    data = eip712.typed_data("Transfer", message, domain.chain_id, domain.verifying_contract,
                             name=domain.name, version=domain.version)
    return TransferTypedData.model_validate(data)


@router.get(
    "/typed-data/points-transfer",
    response_model=PointsTransferTypedData,
    summary="The typed data a holder signs to transfer points",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def points_transfer_typed_data(
    chain: ChainDep,
    sender: Annotated[str, Query(alias="from", pattern=ADDRESS_PATTERN, description="The payer.")],
    to: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The payee.")],
    value: Annotated[Uint256In, Query(description="Points in the smallest unit (10**-18 point).")],
    valid_before: Annotated[Uint256In, Query(description="Unix time before which the authorization must be "
                                             "used.")],
    valid_after: Annotated[Uint256In, Query(description="Unix time after which the authorization is valid "
                                            "(default 0: at once).")] = 0,
    nonce: Annotated[str | None, Query(pattern=BYTES32_PATTERN, description="A unique 0x-prefixed 32-byte "
                                       "nonce; omit it and the API picks a free one "
                                       "next to the payer's used nonces (the cheapest).")] = None,
) -> PointsTransferTypedData:
    """The complete `eth_signTypedData_v4` payload for an EIP-3009
    `TransferWithAuthorization` of points, in the PointsToken's own EIP-712
    domain (as its `eip712Domain()` reports it). Without `nonce`, the API
    picks one and returns it in `message.nonce`: a nonce the payer has not used,
    in the same 256-nonce bitmap word as nonces it used before, which makes
    the relayed transfer about 17,000 gas cheaper than a random nonce would, and
    not one it handed out for another pending authorization. Sign the payload
    with any standard signer and post the signature to
    `POST /relay/points-transfers` with the same values (`validAfter` as
    `valid_after`, `validBefore` as `valid_before`). 422 when `valid_before` is
    not after `valid_after` (no moment could satisfy the authorization)."""
    try:
        payer, payee = checksum_address(sender), checksum_address(to)
    except ValueError as err:
        raise InvalidRequest(f"from or to: {err}") from err
    if valid_before <= valid_after:
        raise InvalidRequest("valid_before: must be after valid_after (the authorization is valid only "
                             "strictly between them)")
    chain.authorization_token(POINTS)
    domain = chain.eip712_domain(POINTS)
    if nonce is not None:
        nonce_bytes = bytes.fromhex(nonce[2:])
    else:
        nonce_bytes = chain.free_authorization_nonce(POINTS, payer, valid_before)
    message = eip712.authorization_message(payer, payee, value, valid_after, valid_before, nonce_bytes)
    data = eip712.typed_data("TransferWithAuthorization", {**message, "nonce": "0x" + nonce_bytes.hex()},
                             domain.chain_id, domain.verifying_contract, name=domain.name, version=domain.version)
    return PointsTransferTypedData.model_validate(data)


@router.get(
    "/{tx_hash}",
    response_model=RelayTransaction,
    summary="Status of a relayed transaction",
    responses=error_responses(NotFound, InvalidRequest, UpstreamUnavailable),
)
def relay_status(
    tx_hash: Annotated[str, Path(pattern=BYTES32_PATTERN, description="0x-prefixed transaction hash.")],
    relayer: RelayerDep,
) -> RelayTransaction:
    """`pending` (in the node's pool), `mined` (succeeded), `failed` (mined and
    reverted), or `unknown` (sent by this relayer but no longer known to the node).
    404 for a hash neither the node nor this relayer knows."""
    return relayer.status(tx_hash)
