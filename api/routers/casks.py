"""Cask shares: a cask's facts, a holder's shares and entitlements, whether a
transfer is allowed (in words), and relayed share transfers, bottle claims and
distribution claims, self-custody (signed by the holder) or custodial (signed
by the service with the account's key).

Every cask is a ``CaskShares`` contract the deploy manifest records (one record
per cask); a route names the cask by its address. The contract applies its
rules to every relayed call, and the relayer simulates first, so a refused
transfer or claim is a 409 ``would_revert`` carrying the contract's reason."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from web3.contract import Contract

from amphora import eip712
from api.cask_schemas import (
    BottleClaimRelayRequest,
    CaskBacking,
    CaskBottling,
    CaskFacts,
    CaskHolder,
    CaskSummary,
    CaskView,
    ClaimBottlesTypedData,
    CustodialBottleClaim,
    CustodialDistributionClaim,
    CustodialShareTransfer,
    DistributionClaimRelayRequest,
    TransferCheck,
)
from api.chain import ChainService, node_errors
from api.deps import ChainDep, CustodialOriginDep, OriginDep, RelayerDep, SettingsDep, UserDep, UsersDep
from api.errors import InvalidRequest, NotDeployed, NotFound, UpstreamUnavailable, error_responses
from api.outbox import request_fingerprint
from api.relayer import Origin
from api.routers.relay import RELAY_ERRORS, accepted, authorization_typed_data
from api.schemas import (
    ADDRESS_PATTERN,
    BYTES32_PATTERN,
    PointsTransferRelayRequest,
    PointsTransferTypedData,
    RelayAccepted,
    Uint256In,
    checksum_address,
)

router = APIRouter(tags=["casks"])

#: The manifest's contract type of a cask.
CASK = "CaskShares"
#: How long the service's signatures for custodial accounts stay valid.
SIGNATURE_LIFETIME = 3600
READ_ERRORS = (InvalidRequest, NotFound, UpstreamUnavailable, NotDeployed)

CaskAddress = Annotated[str, Path(pattern=ADDRESS_PATTERN, description="The cask's shares contract.")]

#: Each of the contract's transfer refusals in words for a holder.
EXPLANATIONS = {
    "shares: transfers are paused": "The compliance agent has paused every movement of this cask's shares.",
    "shares: sender is frozen": "The sender's shares are frozen by the compliance agent.",
    "shares: recipient is frozen": "The recipient's account is frozen by the compliance agent.",
    "shares: sender is not an eligible investor": "The sender is not recorded as an eligible investor of this cask.",
    "shares: sender's eligibility has expired": "The sender's eligibility check has expired and must be renewed "
                                                "with the compliance agent.",
    "shares: recipient is not an eligible investor": "The recipient has not passed this cask's eligibility check.",
    "shares: recipient's eligibility has expired": "The recipient's eligibility check has expired and must be "
                                                   "renewed with the compliance agent.",
    "shares: recipient's country is banned": "Holders in the recipient's country may not receive this cask's "
                                             "shares.",
    "shares: lock-up has not ended": "The cask is in its lock-up period: only the issuer's shares move until it "
                                     "ends.",
    "erc20: transfer amount exceeds balance": "The sender holds fewer shares than that.",
    "shares: amount exceeds unfrozen shares": "Part of the sender's shares is frozen; the amount exceeds the rest.",
    "shares: bottled, move whole bottles only": "The cask is bottled: shares move only in whole bottles' worth.",
    "shares: too many holders": "The cask has its maximum number of holders and the recipient would be a new one.",
}
ALLOWED = "The transfer is allowed now."


def _casks(chain: ChainService) -> dict[str, str]:
    """Checksum address => manifest record name, of every cask the manifest records."""
    return {checksum_address(str(record["address"])): name for name, record in chain.manifest.contracts.items()
            if record.get("contract") == CASK}


def _cask(chain: ChainService, address: str) -> tuple[str, Contract]:
    """The manifest record name and contract of the cask at ``address``; 404 if none."""
    try:
        wanted = checksum_address(address)
    except ValueError as err:
        raise InvalidRequest(f"cask: {err}") from err
    name = _casks(chain).get(wanted)
    if name is None:
        raise NotFound(f"no cask at {wanted} in the deploy manifest")
    return name, chain.require_contract(name)


def _call(contract: Contract, function: str, *args: Any) -> Any:
    with node_errors(f"the cask {contract.address}"):
        return getattr(contract.functions, function)(*args).call()


def _address(value: str, field: str) -> str:
    try:
        return checksum_address(value)
    except ValueError as err:
        raise InvalidRequest(f"{field}: {err}") from err


# ------------------------------------------------------------------ reads


@router.get("/casks", response_model=list[CaskSummary], summary="The casks of this deployment",
            responses=error_responses(UpstreamUnavailable, NotDeployed))
def list_casks(chain: ChainDep) -> list[CaskSummary]:
    """Every cask-shares contract the deploy manifest records, with its token
    name and symbol."""
    out = []
    for address, name in sorted(_casks(chain).items(), key=lambda item: item[1]):
        contract = chain.require_contract(name)
        out.append(CaskSummary(address=address, record=name, name=_call(contract, "name"),
                               symbol=_call(contract, "symbol")))
    return out


@router.get("/casks/{cask}", response_model=CaskView, summary="A cask's facts, rules, distributions and bottling",
            responses=error_responses(*READ_ERRORS))
def cask_view(cask: CaskAddress, chain: ChainDep) -> CaskView:
    """The cask's fixed facts (producer, wine, vintage, litres, expected
    bottles, cellar, document hash, lock-up end), its supply, roles and rules,
    what was deposited and paid as distributions, the bottling declaration and,
    once bottled, the on-chain backing: every whole bottle's worth of shares
    against the bottles the cask still holds. 404 for an address that is not a
    cask of this deployment."""
    _, contract = _cask(chain, cask)
    facts = _call(contract, "facts")
    bottling = _call(contract, "bottling")
    backing = _call(contract, "backing")
    b = CaskBottling(bottled=bottling[0], lot_id=bottling[1], first_token_id=bottling[2],
                     shares_per_bottle=bottling[3], remainder_price=bottling[4], bottles_issued=bottling[5],
                     bottles_delivered=bottling[6], remainder_fund=bottling[7], remainder_paid=bottling[8])
    return CaskView(
        address=contract.address, name=_call(contract, "name"), symbol=_call(contract, "symbol"),
        decimals=_call(contract, "decimals"), total_supply=_call(contract, "totalSupply"),
        issuer=_call(contract, "owner"), agent=_call(contract, "agent"), paused=_call(contract, "paused"),
        holder_count=_call(contract, "holder_count"), max_holders=_call(contract, "max_holders"),
        certificate=facts[8], stablecoin=facts[9],
        facts=CaskFacts(producer=facts[0], wine=facts[1], vintage=facts[2], volume_litres=facts[3],
                        expected_bottles=facts[4], cellar=facts[5], document_hash="0x" + bytes(facts[6]).hex(),
                        lockup_end=facts[7]),
        distributions_deposited=_call(contract, "distributions_deposited"),
        distributions_paid=_call(contract, "distributions_paid"),
        bottling=b,
        backing=CaskBacking(whole_bottles_outstanding=backing[4], bottles_held=backing[5],
                            certificates_held=backing[6], remainder_fund_left=backing[7],
                            remainder_fund_needed=backing[8], covered=backing[9]) if backing[0] else None,
    )


@router.get("/casks/{cask}/holders/{address}", response_model=CaskHolder,
            summary="A holder's shares, eligibility and what it can claim", responses=error_responses(*READ_ERRORS))
def cask_holder(cask: CaskAddress, address: Annotated[str, Path(pattern=ADDRESS_PATTERN)],
                chain: ChainDep) -> CaskHolder:
    """The holder's shares, what the compliance agent recorded (eligibility,
    country and whether it is banned, expiry, freezes), the stablecoin it can
    claim from distributions now, and the whole bottles its unfrozen shares
    would claim once the cask is bottled."""
    _, contract = _cask(chain, cask)
    holder = _address(address, "address")
    shares = _call(contract, "balanceOf", holder)
    eligible, country, expiry, frozen, frozen_amount = _call(contract, "investor", holder)
    bottling = _call(contract, "bottling")
    bottles = 0
    if bottling[0] and not frozen:
        bottles = (shares - min(frozen_amount, shares)) // bottling[3]
    return CaskHolder(cask=contract.address, address=holder, shares=shares, eligible=eligible, country=country,
                      country_banned=bool(country) and _call(contract, "country_banned", country),
                      eligibility_expiry=expiry, frozen=frozen, frozen_amount=frozen_amount,
                      claimable_distribution=_call(contract, "claimable", holder), claimable_bottles=bottles)


@router.get("/casks/{cask}/transfer-check", response_model=TransferCheck,
            summary="Whether a transfer of shares is allowed now, in words",
            responses=error_responses(*READ_ERRORS))
def transfer_check(
    cask: CaskAddress,
    chain: ChainDep,
    sender: Annotated[str, Query(alias="from", pattern=ADDRESS_PATTERN, description="The sender.")],
    to: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The recipient.")],
    amount: Annotated[Uint256In, Query(description="Shares in the smallest unit.")],
) -> TransferCheck:
    """The contract's `can_transfer(from, to, amount)` and, when it says no,
    the rule that refuses it: the contract's revert reason (`transfer_restriction`)
    and the same in plain words. Every eligibility rule is checked: pause,
    freezes, eligibility and its expiry, country bans, lock-up, balance and
    partial freezes, whole bottles after bottling, the maximum number of holders."""
    _, contract = _cask(chain, cask)
    frm, recipient = _address(sender, "from"), _address(to, "to")
    reason = str(_call(contract, "transfer_restriction", frm, recipient, amount))
    return TransferCheck(cask=contract.address, sender=frm, to=recipient, amount=amount, allowed=not reason,
                         reason=reason or None,
                         explanation=EXPLANATIONS.get(reason, reason) if reason else ALLOWED)


# ------------------------------------------------------------------ typed data

NonceQuery = Annotated[str | None, Query(pattern=BYTES32_PATTERN, description="A unique 0x-prefixed 32-byte "
                                         "nonce; omit it and the API picks a free one next to the signer's used "
                                         "nonces (the cheapest).")]


def _window(valid_after: int, valid_before: int) -> None:
    if valid_before <= valid_after:
        raise InvalidRequest("valid_before: must be after valid_after (the signature is valid only strictly "
                             "between them)")


def _nonce(request: Request, chain: ChainService, record: str, signer: str, valid_before: int,
           nonce: str | None) -> bytes:
    if nonce is not None:
        return bytes.fromhex(nonce[2:])
    caller = f"client:{request.client.host}" if request.client else "client:unknown"
    return chain.free_authorization_nonce(record, signer, valid_before, caller=caller)


@router.get("/casks/{cask}/typed-data/transfer", response_model=PointsTransferTypedData,
            summary="The typed data a holder signs to transfer shares", responses=error_responses(*READ_ERRORS))
def share_transfer_typed_data(
    request: Request,
    cask: CaskAddress,
    chain: ChainDep,
    sender: Annotated[str, Query(alias="from", pattern=ADDRESS_PATTERN, description="The holder.")],
    to: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The recipient.")],
    value: Annotated[Uint256In, Query(description="Shares in the smallest unit.")],
    valid_before: Annotated[Uint256In, Query(description="Unix time before which it must be used.")],
    valid_after: Annotated[Uint256In, Query(description="Unix time after which it is valid (default 0).")] = 0,
    nonce: NonceQuery = None,
) -> PointsTransferTypedData:
    """The `eth_signTypedData_v4` payload of an EIP-3009
    `TransferWithAuthorization` of shares in the cask's own EIP-712 domain;
    without `nonce` the API picks a free one (as for points). Sign it and post
    the signature to `POST /casks/{cask}/relay/transfers` with the same values."""
    record, _ = _cask(chain, cask)
    payer, payee = _address(sender, "from"), _address(to, "to")
    _window(valid_after, valid_before)
    data = authorization_typed_data(chain.eip712_domain(record), "TransferWithAuthorization", payer, payee, value,
                                    valid_after, valid_before,
                                    _nonce(request, chain, record, payer, valid_before, nonce))
    return PointsTransferTypedData.model_validate(data)


@router.get("/casks/{cask}/typed-data/claim", response_model=ClaimBottlesTypedData,
            summary="The typed data a holder signs to claim bottles", responses=error_responses(*READ_ERRORS))
def bottle_claim_typed_data(
    request: Request,
    cask: CaskAddress,
    chain: ChainDep,
    holder: Annotated[str, Query(pattern=ADDRESS_PATTERN, description="The holder.")],
    bottles: Annotated[Uint256In, Query(description="Bottles to claim (at most 50).")],
    valid_before: Annotated[Uint256In, Query(description="Unix time before which it must be used.")],
    remainder: Annotated[bool, Query(description="Also claim the remainder in stablecoin.")] = False,
    valid_after: Annotated[Uint256In, Query(description="Unix time after which it is valid (default 0).")] = 0,
    nonce: NonceQuery = None,
) -> ClaimBottlesTypedData:
    """The `eth_signTypedData_v4` payload of a cask's `ClaimBottles`, its nonce
    from the same bitmap as the cask's EIP-3009 authorizations (picked by the
    API when not given). Sign it and post the signature to
    `POST /casks/{cask}/relay/claims` with the same values."""
    record, _ = _cask(chain, cask)
    signer = _address(holder, "holder")
    _window(valid_after, valid_before)
    nonce_bytes = _nonce(request, chain, record, signer, valid_before, nonce)
    domain = chain.eip712_domain(record)
    message = eip712.claim_bottles_message(signer, bottles, remainder, valid_after, valid_before, nonce_bytes)
    data = eip712.typed_data("ClaimBottles", {**message, "nonce": "0x" + nonce_bytes.hex()}, domain.chain_id,
                             domain.verifying_contract, name=domain.name, version=domain.version)
    return ClaimBottlesTypedData.model_validate(data)


# ------------------------------------------------------------------ self-custody relay


@router.post("/casks/{cask}/relay/transfers", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed share transfer (EIP-3009)", responses=error_responses(*RELAY_ERRORS, NotFound))
def relay_share_transfer(cask: CaskAddress, body: PointsTransferRelayRequest, chain: ChainDep,
                         relayer: RelayerDep, settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    """Submit a holder's EIP-712 `TransferWithAuthorization` (in the cask's own
    domain, `value` in shares) through the cask's `transferWithAuthorization`;
    the relayer pays the gas. The cask's rules apply as for any transfer: a
    transfer to an ineligible, frozen or banned recipient (or any other refusal,
    see `GET /casks/{cask}/transfer-check`) is **409 `would_revert`** with the
    contract's reason, and nothing is sent. A transfer of 0 is refused (409
    `relay_refused`). 202: stored in the outbox; follow `status_url`."""
    _, contract = _cask(chain, cask)
    return accepted(relayer.relay_share_transfer(contract, body, origin), settings.public_base_url)


@router.post("/casks/{cask}/relay/claims", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Relay a signed bottle claim", responses=error_responses(*RELAY_ERRORS, NotFound))
def relay_bottle_claim(cask: CaskAddress, body: BottleClaimRelayRequest, chain: ChainDep, relayer: RelayerDep,
                       settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    """Submit a holder's EIP-712 `ClaimBottles` through the cask's
    `claim_with_authorization`: `bottles × shares_per_bottle` shares are burned
    for that many bottle certificates (and, with `remainder`, the shares left
    below a bottle for stablecoin), delivered to the holder. A claim the cask
    refuses (not bottled, beyond the holder's unfrozen shares or the bottles
    held, frozen or ineligible holder, used nonce) is **409 `would_revert`**;
    nothing is sent. 202: stored in the outbox; follow `status_url`."""
    _, contract = _cask(chain, cask)
    return accepted(relayer.relay_bottle_claim(contract, body, origin), settings.public_base_url)


@router.post("/casks/{cask}/relay/distribution-claims", status_code=status.HTTP_202_ACCEPTED,
             response_model=RelayAccepted, summary="Relay a distribution claim for a holder",
             responses=error_responses(*RELAY_ERRORS, NotFound))
def relay_distribution_claim(cask: CaskAddress, body: DistributionClaimRelayRequest, chain: ChainDep,
                             relayer: RelayerDep, settings: SettingsDep, origin: OriginDep) -> RelayAccepted:
    """Submit the cask's `claim_distribution(holder)`: everything the holder is
    owed from distributions is paid to the holder (and nobody else), so no
    signature is needed. Nothing owed, or a frozen holder, is **409
    `would_revert`** and nothing is sent. 202: stored in the outbox."""
    _, contract = _cask(chain, cask)
    return accepted(relayer.relay_distribution_claim(contract, body.holder, origin), settings.public_base_url)


# ------------------------------------------------------------------ custodial


_CUSTODIAL_DOC = """

    The service signs with the account's own key and relays: the account's
    address is the on-chain actor and the cask's rules apply to it. Like
    every relay the call is simulated first: **409 `would_revert`** with the
    contract's reason if it would fail (nothing sent, nothing charged). 401
    without valid credentials, 404 for an address that is not a cask, 429 over
    the rate limit or a daily quota, 503 when custodial keys or the relayer are
    not configured. **`Idempotency-Key` is required** (422 without it): a retry
    with the same key returns the first request."""


def _as_asked(origin: Origin, action: str, cask: str, body: Any) -> Origin:
    """``origin`` identified by what the client asked (each try is signed anew)."""
    return replace(origin, fingerprint=request_fingerprint(f"custodial/casks/{action}",
                                                           {"cask": cask, **body.model_dump()}))


def _authorization_nonce(chain: ChainService, relayer: Any, record: str, contract: Contract, user: Any,
                         valid_before: int) -> bytes:
    """A free nonce of the account in the cask's bitmap, claimed in the outbox's
    database so no instance signs it twice."""
    return chain.free_authorization_nonce(
        record, user.address, valid_before,
        claim=partial(relayer.outbox.claim_nonce, f"{contract.address}:{user.address}"),
        caller=f"account:{user.id}")


@router.post("/me/relay/casks/{cask}/transfers", status_code=status.HTTP_202_ACCEPTED,
             response_model=RelayAccepted, summary="Transfer my cask shares",
             responses=error_responses(*RELAY_ERRORS, NotFound))
def custodial_share_transfer(cask: CaskAddress, body: CustodialShareTransfer, user: UserDep, users: UsersDep,
                             chain: ChainDep, relayer: RelayerDep, settings: SettingsDep,
                             origin: CustodialOriginDep) -> RelayAccepted:
    record, contract = _cask(chain, cask)
    origin = _as_asked(origin, "transfers", contract.address, body)
    valid_before = int(time.time()) + SIGNATURE_LIFETIME
    nonce = _authorization_nonce(chain, relayer, record, contract, user, valid_before)
    data = authorization_typed_data(chain.eip712_domain(record), "TransferWithAuthorization", user.address, body.to,
                                    body.value, 0, valid_before, nonce)
    request = PointsTransferRelayRequest.model_validate({
        "from": user.address, "to": body.to, "value": body.value, "valid_after": 0, "valid_before": valid_before,
        "nonce": "0x" + nonce.hex(), "signature": "0x" + users.sign_typed_data(user, data).hex()})
    return accepted(relayer.relay_share_transfer(contract, request, origin), settings.public_base_url)


custodial_share_transfer.__doc__ = """Sign an EIP-3009 `TransferWithAuthorization`
    of `value` shares to `to` (a fresh nonce, valid for an hour) and relay it.""" + _CUSTODIAL_DOC


@router.post("/me/relay/casks/{cask}/claims", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Claim bottles for my cask shares", responses=error_responses(*RELAY_ERRORS, NotFound))
def custodial_bottle_claim(cask: CaskAddress, body: CustodialBottleClaim, user: UserDep, users: UsersDep,
                           chain: ChainDep, relayer: RelayerDep, settings: SettingsDep,
                           origin: CustodialOriginDep) -> RelayAccepted:
    record, contract = _cask(chain, cask)
    origin = _as_asked(origin, "claims", contract.address, body)
    valid_before = int(time.time()) + SIGNATURE_LIFETIME
    nonce = _authorization_nonce(chain, relayer, record, contract, user, valid_before)
    domain = chain.eip712_domain(record)
    message = eip712.claim_bottles_message(user.address, body.bottles, body.remainder, 0, valid_before, nonce)
    data = eip712.typed_data("ClaimBottles", message, domain.chain_id, domain.verifying_contract, name=domain.name,
                             version=domain.version)
    request = BottleClaimRelayRequest.model_validate({
        "holder": user.address, "bottles": body.bottles, "remainder": body.remainder, "valid_after": 0,
        "valid_before": valid_before, "nonce": "0x" + nonce.hex(),
        "signature": "0x" + users.sign_typed_data(user, data).hex()})
    return accepted(relayer.relay_bottle_claim(contract, request, origin), settings.public_base_url)


custodial_bottle_claim.__doc__ = """Sign `ClaimBottles` for `bottles` (and the
    remainder, if asked) and relay it: the bottle certificates go to the
    account.""" + _CUSTODIAL_DOC


@router.post("/me/relay/casks/{cask}/distribution-claims", status_code=status.HTTP_202_ACCEPTED,
             response_model=RelayAccepted, summary="Claim my cask distributions",
             responses=error_responses(*RELAY_ERRORS, NotFound))
def custodial_distribution_claim(cask: CaskAddress, body: CustodialDistributionClaim, user: UserDep,
                                 chain: ChainDep, relayer: RelayerDep, settings: SettingsDep,
                                 origin: CustodialOriginDep) -> RelayAccepted:
    _, contract = _cask(chain, cask)
    origin = _as_asked(origin, "distribution-claims", contract.address, body)
    return accepted(relayer.relay_distribution_claim(contract, user.address, origin), settings.public_base_url)


custodial_distribution_claim.__doc__ = """Relay `claim_distribution` for the
    account: the stablecoin it is owed goes to its address.""" + _CUSTODIAL_DOC
