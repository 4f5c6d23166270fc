"""The relayer for wallet-less holders: build the typed data to sign, submit the
signed transfer (the relayer pays the gas), follow the transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from amphora import eip712
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
    RelayAccepted,
    RelayStatus,
    RelayTransaction,
    TransferRelayRequest,
    TransferTypedData,
    Uint256In,
    checksum_address,
)

router = APIRouter(prefix="/relay", tags=["relay"])

@router.post(
    "/transfers",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RelayAccepted,
    summary="Relay a signed certificate transfer",
    responses=error_responses(InvalidRequest, WouldRevert, RelayRefused, RelayUnavailable,
                              UpstreamUnavailable, NotDeployed),
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
    tx_hash = relayer.relay_transfer(body)
    return RelayAccepted(tx_hash=tx_hash, status=RelayStatus.pending,
                         status_url=f"{settings.public_base_url.rstrip('/')}/relay/{tx_hash}")


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
