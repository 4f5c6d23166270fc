"""The relayer for wallet-less holders: build the typed data to sign, submit the
signed transfer (the relayer pays the gas), follow the transaction. Certificates
move by the WineCertificate's own signed `Transfer`; points by EIP-3009
`TransferWithAuthorization` on the PointsToken."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from amphora import eip712
from api.chain import POINTS, Eip712Domain
from api.deps import ChainDep, OriginDep, RelayerDep, SettingsDep
from api.errors import (
    AlreadyReverted,
    Conflict,
    Forbidden,
    InFlight,
    InvalidRequest,
    NotDeployed,
    NotFound,
    RelayRefused,
    RelayUnavailable,
    TooManyRequests,
    Unauthorized,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.lifecycle import ACTIONS, ActionName
from api.outbox import RelayRecord
from api.policy import MAX_NONCE_SKIP, check_nonce_invalidation
from api.relayer import Origin, Relayer
from api.schemas import (
    ADDRESS_PATTERN,
    BYTES32_PATTERN,
    FlagRelayRequest,
    GiftClaimBySecretRequest,
    GiftClaimRelayRequest,
    GiftRelayRequest,
    HolderActionRelayRequest,
    HolderActionTypedData,
    NonceInvalidationRelayRequest,
    PointsTransferRelayRequest,
    PointsTransferTypedData,
    RedemptionRelayRequest,
    RelayAccepted,
    RelayStatus,
    RelayTransaction,
    TransferRelayRequest,
    TransferTypedData,
    Uint256In,
    checksum_address,
)
from api.settings import Settings

router = APIRouter(prefix="/relay", tags=["relay"])

#: What a relay submission may answer besides 202 (403: a read-only API token).
RELAY_ERRORS = (InvalidRequest, Unauthorized, Forbidden, WouldRevert, AlreadyReverted, RelayRefused, Conflict, InFlight,
                TooManyRequests,
                RelayUnavailable, UpstreamUnavailable, NotDeployed)


def accepted(record: RelayRecord, public_base_url: str) -> RelayAccepted:
    """The 202 body for a stored request."""
    return RelayAccepted(request_id=record.request_id, status=RelayStatus(record.status), tx_hash=record.tx_hash,
                         relayer=record.relayer, nonce=record.nonce,
                         status_url=f"{public_base_url.rstrip('/')}/relay/{record.request_id}")



@router.post(
    "/transfers",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RelayAccepted,
    summary="Relay a signed certificate transfer",
    responses=error_responses(*RELAY_ERRORS),
)
def relay_transfer(body: TransferRelayRequest, relayer: RelayerDep, settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    """Submit a holder's EIP-712 `Transfer` signature through
    `transfer_with_signature`; the relayer pays the gas and the holder stays the
    actor (the `Transfer` event names the holder as sender).

    The transfer is first simulated (`eth_estimateGas` on the pending block) with the fields the
    transaction will carry (the relayer's address, its fee fields; for a signer with code, once more
    at the exact gas limit). If it would revert (invalid signature, wrong nonce, expired deadline, a
    locked token, a sender who does not hold it, a paused contract) the answer is **409
    `would_revert`** with the contract's revert reason in `detail`, and nothing is sent: 409 because
    the request is well-formed but conflicts with the chain's current state. Malformed input is 422;
    a missing relayer key is 503.

    202: the request is stored in the outbox (and normally already sent); poll
    `status_url` until it is `confirmed` or `failed`. Send an `Idempotency-Key`
    header to make a retry safe: the same key returns the first request."""
    return accepted(relayer.relay_transfer(body, origin), settings.public_base_url)


@router.post(
    "/points-transfers",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RelayAccepted,
    summary="Relay a signed points transfer (EIP-3009)",
    responses=error_responses(*RELAY_ERRORS),
)
def relay_points_transfer(
    body: PointsTransferRelayRequest, relayer: RelayerDep, settings: SettingsDep, origin: OriginDep,
) -> RelayAccepted:
    """Submit a holder's EIP-712 `TransferWithAuthorization` signature through the
    PointsToken's `transferWithAuthorization` (EIP-3009); the relayer pays the gas
    and the holder stays the actor (the `Transfer` event names the holder as
    sender; `AuthorizationUsed` names the holder and the nonce). The 65-byte
    signature is split into the contract's `v, r, s` here.

    As for certificates, the transfer is first simulated (`eth_estimateGas` on the pending block) with
    the fields the transaction will carry (the relayer's address, its fee fields; for a signer with
    code, once more at the exact gas limit). If it would revert (invalid signature, nonce already
    used or canceled, outside
    `valid_after`..`valid_before`, balance too low) the answer is **409 `would_revert`** with the
    contract's revert reason in `detail`, and nothing is sent. A transfer of 0 does nothing and is
    refused (**409 `relay_refused`**); a call that already reverted on chain at the relayer's cost
    is never paid again (**409 `already_reverted`**); a signer with code not on the operator's
    allow-list is 409 `relay_refused`, and one whose relayed calls reverted for more than its daily
    budget is 429, as are an account or a client network (IP prefix) over its quota or its share of
    the service's day. Malformed input is 422; a missing relayer key is 503, as is a PointsToken
    without EIP-3009.

    202: the request is stored in the outbox (and normally already sent); poll
    `status_url` until it is `confirmed` or `failed`. Send an `Idempotency-Key`
    header to make a retry safe: the same key returns the first request."""
    return accepted(relayer.relay_points_transfer(body, origin), settings.public_base_url)


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
    request: Request,
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
    not one it handed out to the same caller (client address) for another
    pending authorization. Such a reservation is the caller's own (it never
    changes what another caller gets), short (15 minutes by default, or until
    `valid_before`) and bounded (32 per caller and payer by default). Sign the payload
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
        caller = f"client:{request.client.host}" if request.client else "client:unknown"
        nonce_bytes = chain.free_authorization_nonce(POINTS, payer, valid_before, caller=caller)
    data = authorization_typed_data(domain, "TransferWithAuthorization", payer, payee, value, valid_after,
                                    valid_before, nonce_bytes)
    return PointsTransferTypedData.model_validate(data)


# ------------------------------------------------------------ lifecycle

_LIFECYCLE_DOC = """

    The holder signs the typed data from `GET /relay/typed-data/{action}` (the
    holder's current nonce filled in); the relayer pays the gas and the holder
    stays the on-chain actor. The action is first simulated (`eth_estimateGas` on the pending block) with
    the fields the transaction will carry (the relayer's address, its fee fields; for a signer with
    code, once more at the exact gas limit): if it would revert (invalid signature, wrong nonce,
    expired deadline, a certificate not in the
    state the action needs, a paused contract) the answer is **409 `would_revert`** with the
    contract's reason, which names the certificate's current state, and nothing is sent. Malformed
    input is 422; a missing relayer key is 503.

    202: the request is stored in the outbox (and normally already sent); poll
    `status_url` until it is `confirmed` or `failed`. Send an `Idempotency-Key`
    header to make a retry safe: the same key returns the first request."""


def _relay_action(name: ActionName, body: HolderActionRelayRequest, relayer: Relayer, settings: Settings,
                  origin: Origin) -> RelayAccepted:
    return accepted(relayer.relay_holder_action(ACTIONS[name], body, origin), settings.public_base_url)


@router.post("/gifts", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed gift (lock a certificate to a claim key)",
             responses=error_responses(*RELAY_ERRORS))
def relay_gift(body: GiftRelayRequest, relayer: RelayerDep, settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    return _relay_action(ActionName.gift, body, relayer, settings, origin)


relay_gift.__doc__ = """Submit a holder's `CreateGift` signature through
    `create_gift_with_signature`: the certificate locks (`gift_pending`) to the
    one-time `claim_key` until the recipient claims it, the holder revokes it, or
    it expires. Only the claim key's *address* comes here; its secret goes to the
    recipient in the claim link.""" + _LIFECYCLE_DOC


@router.post("/gift-revocations", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed gift revocation", responses=error_responses(*RELAY_ERRORS))
def relay_gift_revocation(body: HolderActionRelayRequest, relayer: RelayerDep,
                          settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    return _relay_action(ActionName.gift_revocation, body, relayer, settings, origin)


relay_gift_revocation.__doc__ = """Submit a holder's `RevokeGift` signature through
    `revoke_gift_with_signature`: the pending gift is cancelled and the certificate
    unlocks, still the holder's.""" + _LIFECYCLE_DOC


@router.post("/redemptions", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed redemption request", responses=error_responses(*RELAY_ERRORS))
def relay_redemption(body: RedemptionRelayRequest, relayer: RelayerDep, settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    return _relay_action(ActionName.redemption, body, relayer, settings, origin)


relay_redemption.__doc__ = """Submit a holder's `RequestRedemption` signature through
    `request_redemption_with_signature`: the certificate locks
    (`redemption_requested`) until its custodian ships the bottle (the certificate
    is burned and stays on record as `redeemed`) or rejects the request.""" + _LIFECYCLE_DOC


@router.post("/flags", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed lost/stolen flag", responses=error_responses(*RELAY_ERRORS))
def relay_flag(body: FlagRelayRequest, relayer: RelayerDep, settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    return _relay_action(ActionName.flag, body, relayer, settings, origin)


relay_flag.__doc__ = """Submit a holder's `Flag` signature through `flag_with_signature`:
    the certificate is reported lost or stolen and locks until its issuer clears
    the flag. Works while the contract is paused.""" + _LIFECYCLE_DOC


@router.post("/gift-claims", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a gift claim signed with the claim key", responses=error_responses(*RELAY_ERRORS))
def relay_gift_claim(body: GiftClaimRelayRequest, relayer: RelayerDep, settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    """For a recipient who holds the claim link's secret and signs themselves:
    submit the claim key's `ClaimGift(tokenId, recipient)` signature (typed data
    from `GET /relay/typed-data/gift-claim`) through `claim_gift`. The relayer
    only submits: it never sees the secret. The signature covers the recipient,
    so nobody who copies it can redirect the certificate; a claim key works
    once. 409 `would_revert` (nothing sent) for a wrong signature, an expired,
    revoked or already claimed gift, or a contract recipient that refuses
    ERC-721 tokens; 422 for malformed input; 503 without a relayer key.

    202: the request is stored in the outbox; poll `status_url`."""
    return accepted(relayer.relay_gift_claim(body, origin), settings.public_base_url)


@router.post("/gift-claims/by-secret", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Claim a gift with the claim link's secret (wallet-less)",
             responses=error_responses(*RELAY_ERRORS))
def relay_gift_claim_by_secret(body: GiftClaimBySecretRequest, relayer: RelayerDep,
                               settings: SettingsDep,
        origin: OriginDep) -> RelayAccepted:
    """For a recipient without a wallet: send the secret from the claim link and
    the address that should receive the certificate; the API signs the claim
    with the secret and relays it.

    **Trust.** Whoever holds the secret can claim the gift for any address until
    the claim is mined; sending it here means trusting this API (and the HTTPS
    connection to it) to sign for `recipient` only. The API uses the secret for
    this one signature and neither stores nor logs it. A recipient who does not
    want that trust signs the claim themselves (`POST /relay/gift-claims`).

    Errors as for `POST /relay/gift-claims`; 422 also for a secret that is not a
    valid private key."""
    return accepted(relayer.relay_gift_claim_by_secret(body, origin), settings.public_base_url)


@router.get(
    "/typed-data/gift-claim",
    response_model=HolderActionTypedData,
    summary="The typed data a recipient signs with the claim key",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def gift_claim_typed_data(
    chain: ChainDep,
    token_id: Annotated[Uint256In, Query(description="Decimal token id of the gift.")],
    recipient: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="Who receives the certificate.")],
) -> HolderActionTypedData:
    """The `eth_signTypedData_v4` payload of `ClaimGift(tokenId, recipient)` in
    the certificate contract's domain. Sign it with the claim key (the secret in
    the claim link) and post the signature to `POST /relay/gift-claims`."""
    try:
        to = checksum_address(recipient)
    except ValueError as err:
        raise InvalidRequest(f"recipient: {err}") from err
    domain = chain.eip712_domain()
    data = eip712.typed_data("ClaimGift", eip712.claim_gift_message(token_id, to), domain.chain_id,
                             domain.verifying_contract, name=domain.name, version=domain.version)
    return HolderActionTypedData.model_validate(_stringified(data))


# ------------------------------------------------------- nonce invalidation

NONCE_INVALIDATION_DOC = f"""

    **Why.** A signed action that reverted (a flag while the certificate was in
    a gift, a transfer of a locked certificate) used no nonce: its signature
    stays valid until its deadline, and anyone who has seen it (it is public
    once sent) can submit it again once the certificate's state allows it.
    Voiding its nonce ends that.

    **What it does.** The invalidation is signed at the holder's current nonce
    and sets the holder's nonce to `new_nonce`: every signature at a nonce below
    `new_nonce` (including any the holder signed ahead, at higher nonces) can
    never run. `new_nonce = nonce + 1` voids just the signature pending at the
    current nonce. The next signed action carries `new_nonce`; typed data from
    this API always fills in the current nonce, so nothing else changes for
    the holder.

    **Sponsor policy.** The relayer pays only for an invalidation that voids
    something and stays near: `new_nonce` above `nonce` and at most
    {MAX_NONCE_SKIP:,} above it; **422** in words otherwise, and nothing is sent.
    (The contract itself allows up to 2**64 - 1 with `invalidate_nonces`, sent
    by the holder, who then pays the gas.)"""


@router.get(
    "/typed-data/nonce-invalidation",
    response_model=HolderActionTypedData,
    summary="The typed data a holder signs to void its pending signatures",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def nonce_invalidation_typed_data(
    chain: ChainDep,
    holder: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The holder who will sign.")],
    deadline: Annotated[Uint256In, Query(description="Unix time the signature expires.")],
    new_nonce: Annotated[Uint256In | None, Query(description="The nonce the holder's next signed action will "
                                                 "carry; every nonce below it dies. Default: the current nonce "
                                                 "+ 1 (void the signature pending at the current nonce).")] = None,
) -> HolderActionTypedData:
    try:
        owner = checksum_address(holder)
    except ValueError as err:
        raise InvalidRequest(f"holder: {err}") from err
    nonce = chain.nonce(owner)
    target = nonce + 1 if new_nonce is None else new_nonce
    check_nonce_invalidation(nonce, target)
    domain = chain.eip712_domain()
    data = eip712.typed_data("InvalidateNonces", eip712.invalidate_nonces_message(owner, nonce, target, deadline),
                             domain.chain_id, domain.verifying_contract, name=domain.name, version=domain.version)
    return HolderActionTypedData.model_validate(_stringified(data))


nonce_invalidation_typed_data.__doc__ = """The complete `eth_signTypedData_v4` payload
    of `InvalidateNonces(holder, nonce, newNonce, deadline)` in the certificate
    contract's EIP-712 domain, with the holder's current nonce (counting
    transactions already in the node's pool) filled in. Sign it and post the
    signature with the same values (`newNonce` as `new_nonce`) to
    `POST /relay/nonce-invalidations`. 422 for a `new_nonce` the relayer would
    refuse (see below), so nobody signs what will not be sent.""" + NONCE_INVALIDATION_DOC


@router.post("/nonce-invalidations", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed nonce invalidation (void pending signatures)",
             responses=error_responses(*RELAY_ERRORS))
def relay_nonce_invalidation(body: NonceInvalidationRelayRequest, relayer: RelayerDep, settings: SettingsDep,
                             origin: OriginDep) -> RelayAccepted:
    return accepted(relayer.relay_nonce_invalidation(body, origin), settings.public_base_url)


relay_nonce_invalidation.__doc__ = """Submit a holder's `InvalidateNonces` signature
    (typed data from `GET /relay/typed-data/nonce-invalidation`) through
    `invalidate_nonces_with_signature`; the relayer pays the gas and the holder
    stays the actor (the `NoncesInvalidated` event names the holder). Only the
    holder's own signature works: one made by anybody else for the holder is
    **409 `would_revert`** (`certificate: invalid signature`), as is one at a
    nonce that is no longer the current one (`certificate: invalid nonce`) or
    past its deadline; nothing is sent.""" + NONCE_INVALIDATION_DOC + """

    202: the request is stored in the outbox (and normally already sent); poll
    `status_url` until it is `confirmed` or `failed`. Send an `Idempotency-Key`
    header to make a retry safe: the same key returns the first request."""


def authorization_typed_data(domain: Eip712Domain, primary_type: str, payer: str, payee: str, value: int,
                             valid_after: int, valid_before: int, nonce: bytes) -> dict:
    """The ``eth_signTypedData_v4`` payload of an EIP-3009 authorization in a
    token's own ``domain``, the nonce as 0x hex."""
    message = eip712.authorization_message(payer, payee, value, valid_after, valid_before, nonce)
    return eip712.typed_data(primary_type, {**message, "nonce": "0x" + nonce.hex()}, domain.chain_id,
                             domain.verifying_contract, name=domain.name, version=domain.version)


def _stringified(data: dict) -> dict:
    """A typed-data payload with its message values as strings (numbers in
    decimal, bytes in 0x hex), as the response schema declares them."""
    message = {key: ("0x" + value.hex() if isinstance(value, bytes) else str(value))
               for key, value in data["message"].items()}
    return {**data, "message": message}


@router.get(
    "/typed-data/{action}",
    response_model=HolderActionTypedData,
    summary="The typed data a holder signs for a lifecycle action",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def holder_action_typed_data(
    action: Annotated[ActionName, Path(description="`gift`, `gift-revocation`, `redemption` or `flag`.")],
    chain: ChainDep,
    holder: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The holder who will sign.")],
    token_id: Annotated[Uint256In, Query(description="Decimal token id.")],
    deadline: Annotated[Uint256In, Query(description="Unix time the signature expires.")],
    claim_key: Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="`gift` only: the claim "
                                           "key's address.")] = None,
    expiry: Annotated[Uint256In | None, Query(description="`gift` only: unix time the gift expires.")] = None,
    order_hash: Annotated[str | None, Query(pattern=BYTES32_PATTERN, description="`redemption` only: "
                                            "keccak256 of the delivery order.")] = None,
    reason_hash: Annotated[str | None, Query(pattern=BYTES32_PATTERN, description="`flag` only: keccak256 "
                                             "of the report.")] = None,
) -> HolderActionTypedData:
    """The complete `eth_signTypedData_v4` payload for a holder's lifecycle
    action, in the certificate contract's EIP-712 domain, with the holder's
    current nonce (counting transactions already in the node's pool) filled
    in. Sign it with any standard signer and post the signature with the same
    values to the action's relay endpoint (`POST /relay/gifts`,
    `/relay/gift-revocations`, `/relay/redemptions`, `/relay/flags`). 422 when a
    field the action needs is missing or one it does not take is given."""
    try:
        owner = checksum_address(holder)
        key = checksum_address(claim_key) if claim_key else None
    except ValueError as err:
        raise InvalidRequest(f"holder or claim_key: {err}") from err
    given = {"claim_key": key, "expiry": expiry, "order_hash": order_hash, "reason_hash": reason_hash}
    needed = {ActionName.gift: ("claim_key", "expiry"), ActionName.gift_revocation: (),
              ActionName.redemption: ("order_hash",), ActionName.flag: ("reason_hash",)}[action]
    missing = [name for name in needed if given[name] is None]
    extra = [name for name, value in given.items() if value is not None and name not in needed]
    if missing or extra:
        raise InvalidRequest("; ".join([*(f"{name}: required for {action.value}" for name in missing),
                                        *(f"{name}: not taken by {action.value}" for name in extra)]))
    values = tuple(bytes.fromhex(str(given[n])[2:]) if n.endswith("_hash") else given[n] for n in needed)
    domain = chain.eip712_domain()
    data = ACTIONS[action].typed_data(owner, token_id, values, chain.nonce(owner), deadline, domain.chain_id,
                                      domain.verifying_contract, domain.name, domain.version)
    return HolderActionTypedData.model_validate(_stringified(data))


@router.get(
    "/{request_id}",
    response_model=RelayTransaction,
    summary="Status of a relayed request",
    responses=error_responses(NotFound, InvalidRequest, RelayUnavailable, UpstreamUnavailable),
)
def relay_status(
    request_id: Annotated[str, Path(pattern=r"^([0-9a-f]{32}|0x[0-9a-fA-F]{64})$",
                                    description="The `request_id` of a 202 answer, or the hash of any "
                                    "transaction sent for it.")],
    relayer: RelayerDep,
) -> RelayTransaction:
    """Where a relayed request stands in the outbox: `queued`, `sent`,
    `mined`, then `confirmed` or `failed` (final), with its transaction, block
    and confirmations. A request id is not a secret to guard: it reveals what
    the chain will show anyway. 404 for an id this relayer never stored."""
    return _status_body(relayer.status(request_id))


def _status_body(record: RelayRecord) -> RelayTransaction:
    return RelayTransaction(
        request_id=record.request_id, kind=record.kind, description=record.description, actor=record.actor,
        status=RelayStatus(record.status), tx_hash=record.tx_hash, relayer=record.relayer, nonce=record.nonce,
        replacements=record.replacements, block_number=record.block_number, block_hash=record.block_hash,
        confirmations=record.confirmations, gas_used=record.gas_used, error=record.error,
        created_at=record.created_at, updated_at=record.updated_at)
