"""Custodial relaying: a signed-in account acts without a wallet.

The service signs the account's EIP-712 action with the account's own key
(kept encrypted, see :mod:`api.users`) and relays it like any self-custody
signature: on chain the account's address is the actor, the contract checks
the same signature, and the request goes through the same outbox, policy and
quotas. A route here can only ever sign for the authenticated account's own
address, so one account cannot move another's certificates or points.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from amphora import eip712
from api import lending
from api.chain import LENDING, POINTS, STABLECOIN, contract_label, node_errors
from api.deps import ChainDep, CustodialOriginDep, RelayerDep, SettingsDep, UserDep, UsersDep
from api.errors import Conflict, NotFound, TooManyRequests, error_responses
from api.lifecycle import ACTIONS, ActionName
from api.outbox import request_fingerprint
from api.relayer import Origin, Relayer
from api.routers.relay import NONCE_INVALIDATION_DOC, RELAY_ERRORS, accepted, authorization_typed_data
from api.schemas import (
    Address,
    Bytes32Hex,
    GiftClaimBySecretRequest,
    LoanAcceptanceRelayRequest,
    LoanOfferIn,
    LoanRepaymentRelayRequest,
    LoanState,
    NonceInvalidationRelayRequest,
    PointsTransferRelayRequest,
    RelayAccepted,
    SignatureHex,
    TransferRelayRequest,
    Uint256In,
)
from api.users import User, UserStore
from storage.db import LockBusy

router = APIRouter(prefix="/me/relay", tags=["custodial"])

#: How long the service's own signatures stay valid: long enough for the outbox
#: to get the transaction mined through a congested hour, short enough that a
#: signature that somehow escaped is soon void.
SIGNATURE_LIFETIME = 3600



@contextmanager
def _account_lock(relayer: Relayer, user: User) -> Iterator[None]:
    """Held around "read the holder nonce, sign, queue": two actions of one
    account in flight at once, on any instance sharing the database, must not
    sign the same certificate nonce. 429 when another action of the account
    holds it too long."""
    try:
        with relayer.outbox.actor_lock(user.address):
            yield
    except LockBusy as err:
        raise TooManyRequests("another action of this account is still being signed; retry in a moment",
                              1) from err


def _deadline() -> int:
    return int(time.time()) + SIGNATURE_LIFETIME


def _holder_nonce(relayer: Relayer, chain: Any, address: str) -> int:
    """The next certificate nonce of ``address``: the chain's, or past the
    nonces of its own requests still in the outbox."""
    return max(chain.nonce(address), relayer.outbox.next_actor_nonce(address))


_CUSTODIAL_DOC = """

    The service signs with the account's own key and relays: the account's
    address is the on-chain actor. Like every relay, the action is simulated
    first: **409 `would_revert`** with the contract's reason if it would fail
    (nothing sent, nothing charged). 401 without valid credentials, 429 over
    the rate limit or a daily quota, 503 when custodial keys or the relayer are
    not configured. 202: stored in the outbox; follow `status_url`.

    **`Idempotency-Key` is required** (422 without it): each try is signed
    anew (a fresh nonce and deadline), so a retry without the key would be a
    second action, paid twice. Send one unique key per action and the same
    key on every retry of it: a retry gets the first request's answer, even
    while the first is still in flight; the same key with a different body is
    409 `conflict`."""


class CustodialTransfer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: Uint256In
    to: Address = Field(description="The recipient.")


class CustodialPointsTransfer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Address = Field(description="The payee.")
    value: Uint256In = Field(description="Points in the smallest unit (10**-18 point).")


class CustodialGift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: Uint256In
    claim_key: Address = Field(description="Address of the fresh claim key whose secret goes to the recipient.")
    expiry: Uint256In = Field(description="Unix time after which the gift can no longer be claimed.")


class CustodialToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: Uint256In


class CustodialRedemption(CustodialToken):
    order_hash: Bytes32Hex = Field(description="keccak256 of the delivery order given to the custodian.")


class CustodialFlag(CustodialToken):
    reason_hash: Bytes32Hex = Field(description="keccak256 of the loss or theft report.")


class CustodialGiftClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: Uint256In
    claim_secret: Bytes32Hex = Field(description="The claim key's private key, from the claim link.")


class CustodialLoanAcceptance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offer: LoanOfferIn
    lender_signature: SignatureHex = Field(description="The lender's signature of `offer` (from `GET /offers`).")
    token_id: Uint256In = Field(description="The account's certificate to pledge.")


class CustodialNonceInvalidation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_nonce: Uint256In | None = Field(
        default=None, description="The nonce the account's next signed action will carry; every nonce below it "
        "dies. Default: past every nonce the service ever signed for the account, and at least the current "
        "nonce + 1 (void everything signed so far).")


class CustodialLoanRepayment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loan_id: Uint256In


def _as_asked(origin: Origin, action: str, body: BaseModel) -> Origin:
    """``origin`` with the request identified by what the client asked for:
    each try of a custodial action is signed anew (a fresh nonce and
    deadline), so a retry under the same ``Idempotency-Key`` must be
    recognised by its body, not by the signed call, to return the first
    request instead of a 409."""
    return replace(origin, fingerprint=request_fingerprint(f"custodial/{action}", _plain(body.model_dump())))


def _plain(value: Any) -> Any:
    """``value`` with its bytes (signatures) as 0x hex, for a JSON fingerprint."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _sign(users: UserStore, user: User, data: dict[str, Any]) -> str:
    return "0x" + users.sign_typed_data(user, data).hex()


@router.post("/transfers", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Transfer one of my certificates", responses=error_responses(*RELAY_ERRORS))
def custodial_transfer(body: CustodialTransfer, user: UserDep, users: UsersDep, chain: ChainDep,
                       relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "transfers", body)
    with _account_lock(relayer, user):
        nonce, deadline = _holder_nonce(relayer, chain, user.address), _deadline()
        domain = chain.eip712_domain()
        data = eip712.typed_data("Transfer", eip712.transfer_message(user.address, body.to, body.token_id, nonce,
                                                                     deadline),
                                 domain.chain_id, domain.verifying_contract, name=domain.name,
                                 version=domain.version)
        request = TransferRelayRequest.model_validate({
            "from": user.address, "to": body.to, "token_id": body.token_id, "nonce": nonce, "deadline": deadline,
            "signature": _sign(users, user, data)})
        return accepted(relayer.relay_transfer(request, origin), settings.public_base_url)


custodial_transfer.__doc__ = """Sign the certificate contract's `Transfer` for
    `token_id` to `to` with the account's key and relay it.""" + _CUSTODIAL_DOC


@router.post("/points-transfers", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Pay points to someone", responses=error_responses(*RELAY_ERRORS))
def custodial_points_transfer(body: CustodialPointsTransfer, user: UserDep, users: UsersDep, chain: ChainDep,
                              relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "points-transfers", body)
    token = chain.authorization_token(POINTS)  # 503 for a points token without EIP-3009
    valid_before = _deadline()
    # Claimed in the outbox's database: another instance, or this one after a restart, never
    # signs the same nonce for this account while the first request may still be relayed.
    nonce = chain.free_authorization_nonce(POINTS, user.address, valid_before,
                                           claim=partial(relayer.outbox.claim_nonce, f"{token.address}:{user.address}"),
                                           caller=f"account:{user.id}")
    domain = chain.eip712_domain(POINTS)
    data = authorization_typed_data(domain, "TransferWithAuthorization", user.address, body.to, body.value, 0,
                                    valid_before, nonce)
    request = PointsTransferRelayRequest.model_validate({
        "from": user.address, "to": body.to, "value": body.value, "valid_after": 0, "valid_before": valid_before,
        "nonce": "0x" + nonce.hex(), "signature": _sign(users, user, data)})
    return accepted(relayer.relay_points_transfer(request, origin), settings.public_base_url)


custodial_points_transfer.__doc__ = """Sign an EIP-3009 `TransferWithAuthorization`
    of `value` points to `to` (a fresh nonce, valid for an hour) and relay it.""" + _CUSTODIAL_DOC


def _holder_action(name: ActionName, token_id: int, extra: tuple[Any, ...], fields: dict[str, Any], user: User,
                   users: UserStore, chain: Any, relayer: Relayer, origin: Origin, base_url: str) -> RelayAccepted:
    action = ACTIONS[name]
    with _account_lock(relayer, user):
        nonce, deadline = _holder_nonce(relayer, chain, user.address), _deadline()
        domain = chain.eip712_domain()
        data = action.typed_data(user.address, token_id, extra, nonce, deadline, domain.chain_id,
                                 domain.verifying_contract, domain.name, domain.version)
        request = action.request_model.model_validate({
            "holder": user.address, "token_id": token_id, "nonce": nonce, "deadline": deadline,
            "signature": _sign(users, user, data), **fields})
        return accepted(relayer.relay_holder_action(action, request, origin), base_url)


@router.post("/gifts", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Gift one of my certificates (claim link)", responses=error_responses(*RELAY_ERRORS))
def custodial_gift(body: CustodialGift, user: UserDep, users: UsersDep, chain: ChainDep, relayer: RelayerDep,
                   settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "gifts", body)
    return _holder_action(ActionName.gift, body.token_id, (body.claim_key, body.expiry),
                          {"claim_key": body.claim_key, "expiry": body.expiry}, user, users, chain, relayer,
                          origin, settings.public_base_url)


custodial_gift.__doc__ = """Lock the certificate to a one-time claim key
    (`CreateGift`). Make the claim key on the client and send only its
    address; its secret goes to the recipient.""" + _CUSTODIAL_DOC


@router.post("/gift-revocations", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Revoke my pending gift", responses=error_responses(*RELAY_ERRORS))
def custodial_gift_revocation(body: CustodialToken, user: UserDep, users: UsersDep, chain: ChainDep,
                              relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "gift-revocations", body)
    return _holder_action(ActionName.gift_revocation, body.token_id, (), {}, user, users, chain, relayer, origin,
                          settings.public_base_url)


custodial_gift_revocation.__doc__ = """Cancel the account's pending gift of
    `token_id` (`RevokeGift`).""" + _CUSTODIAL_DOC


@router.post("/redemptions", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Ask for my bottle", responses=error_responses(*RELAY_ERRORS))
def custodial_redemption(body: CustodialRedemption, user: UserDep, users: UsersDep, chain: ChainDep,
                         relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "redemptions", body)
    order = bytes.fromhex(body.order_hash[2:])
    return _holder_action(ActionName.redemption, body.token_id, (order,), {"order_hash": body.order_hash}, user,
                          users, chain, relayer, origin, settings.public_base_url)


custodial_redemption.__doc__ = """Request redemption of `token_id`
    (`RequestRedemption`): the certificate locks until the custodian ships or
    rejects.""" + _CUSTODIAL_DOC


@router.post("/flags", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Report my certificate lost or stolen", responses=error_responses(*RELAY_ERRORS))
def custodial_flag(body: CustodialFlag, user: UserDep, users: UsersDep, chain: ChainDep, relayer: RelayerDep,
                   settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "flags", body)
    reason = bytes.fromhex(body.reason_hash[2:])
    return _holder_action(ActionName.flag, body.token_id, (reason,), {"reason_hash": body.reason_hash}, user,
                          users, chain, relayer, origin, settings.public_base_url)


custodial_flag.__doc__ = """Flag `token_id` lost or stolen (`Flag`); the lot's
    acting issuer (or the admin) can clear it.""" + _CUSTODIAL_DOC


@router.post("/gift-claims", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Claim a gift into my account", responses=error_responses(*RELAY_ERRORS))
def custodial_gift_claim(body: CustodialGiftClaim, user: UserDep, relayer: RelayerDep, settings: SettingsDep,
                         origin: CustodialOriginDep) -> RelayAccepted:
    request = GiftClaimBySecretRequest.model_validate({"token_id": body.token_id, "recipient": user.address,
                                                       "claim_secret": body.claim_secret})
    return accepted(relayer.relay_gift_claim_by_secret(request, origin), settings.public_base_url)


custodial_gift_claim.__doc__ = """For a gift recipient without a wallet: sign up,
    then send the claim link's secret here. The claim names this account's
    address as the recipient (nobody else's); the secret is used for this one
    signature and neither stored nor logged.""" + _CUSTODIAL_DOC


@router.post("/loan-acceptances", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Borrow against my certificate", responses=error_responses(*RELAY_ERRORS))
def custodial_loan_acceptance(body: CustodialLoanAcceptance, user: UserDep, users: UsersDep, chain: ChainDep,
                              relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "loan-acceptances", body)
    offer_hash = lending.offer_hash(chain, body.offer)
    deadline = _deadline()
    data = lending.lending_typed_data(chain, "AcceptOffer",
                                      eip712.accept_offer_message(offer_hash, body.token_id, user.address,
                                                                  deadline))
    request = LoanAcceptanceRelayRequest.model_validate({
        "offer": body.offer.model_dump(), "lender_signature": "0x" + body.lender_signature.hex(),
        "token_id": body.token_id,
        "borrower": user.address, "deadline": deadline, "borrower_signature": _sign(users, user, data)})
    return accepted(relayer.relay_loan_acceptance(request, origin), settings.public_base_url)


custodial_loan_acceptance.__doc__ = """Accept a lender's signed offer (from
    `GET /offers`) with the account's certificate `token_id`: the certificate
    is pledged and the principal paid to the account.""" + _CUSTODIAL_DOC


@router.post("/loan-repayments", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Repay a loan from my stablecoin", responses=error_responses(*RELAY_ERRORS, NotFound))
def custodial_loan_repayment(body: CustodialLoanRepayment, user: UserDep, users: UsersDep, chain: ChainDep,
                             relayer: RelayerDep, settings: SettingsDep, origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "loan-repayments", body)
    contract = chain.lending_contract("repay_with_authorization")
    loan = lending.loan_snapshot(chain, body.loan_id).loan
    if loan is None or loan.state != LoanState.open:
        raise NotFound(f"loan {body.loan_id} is not open")
    with node_errors(contract_label(LENDING)):
        nonce = bytes(contract.functions.repayment_nonce(body.loan_id).call())
    valid_before = _deadline()
    data = authorization_typed_data(chain.eip712_domain(STABLECOIN), "ReceiveWithAuthorization", user.address,
                                    contract.address, int(loan.repayment), 0, valid_before, nonce)
    request = LoanRepaymentRelayRequest.model_validate({
        "loan_id": body.loan_id, "payer": user.address, "valid_after": 0, "valid_before": valid_before,
        "signature": _sign(users, user, data)})
    return accepted(relayer.relay_loan_repayment(request, origin), settings.public_base_url)


custodial_loan_repayment.__doc__ = """Repay open loan `loan_id` (anyone's; usually
    the account's own) from the account's stablecoin with an EIP-3009
    authorization: no gas, no allowance.""" + _CUSTODIAL_DOC


@router.post("/nonce-invalidations", status_code=status.HTTP_202_ACCEPTED, response_model=RelayAccepted,
             summary="Cancel my pending signed actions (void their nonces)",
             responses=error_responses(*RELAY_ERRORS))
def custodial_nonce_invalidation(body: CustodialNonceInvalidation, user: UserDep, users: UsersDep, chain: ChainDep,
                                 relayer: RelayerDep, settings: SettingsDep,
                                 origin: CustodialOriginDep) -> RelayAccepted:
    origin = _as_asked(origin, "nonce-invalidations", body)
    with _account_lock(relayer, user):
        nonce = chain.nonce(user.address)
        in_flight = relayer.outbox.next_actor_nonce(user.address)
        if in_flight > nonce:
            raise Conflict(f"actions of this account signed at nonces {nonce} to {in_flight - 1} are still being "
                           "relayed and go out before anything else of this account, so they cannot be cancelled; "
                           "wait until they are confirmed or failed, then void what failed")
        new_nonce = body.new_nonce
        if new_nonce is None:
            new_nonce = max(nonce + 1, relayer.outbox.next_actor_nonce(user.address, open_only=False))
        deadline = _deadline()
        domain = chain.eip712_domain()
        data = eip712.typed_data("InvalidateNonces",
                                 eip712.invalidate_nonces_message(user.address, nonce, new_nonce, deadline),
                                 domain.chain_id, domain.verifying_contract, name=domain.name,
                                 version=domain.version)
        request = NonceInvalidationRelayRequest.model_validate({
            "holder": user.address, "nonce": nonce, "new_nonce": new_nonce, "deadline": deadline,
            "signature": _sign(users, user, data)})
        return accepted(relayer.relay_nonce_invalidation(request, origin), settings.public_base_url)


custodial_nonce_invalidation.__doc__ = """Void the account's signed actions that
    never ran: the service signs `InvalidateNonces` with the account's key at
    its current nonce and relays it.

    **"Cancel my pending signed actions"** means: no signature the service made
    for this account that has not run yet can ever run. Without `new_nonce`,
    the account's nonce moves past every nonce the service ever signed for it
    (failed requests included: their signatures stay valid until their
    deadline, an hour) and at least one past the current one. An action
    already handed to the chain cannot be called back: while a request of
    the account is still open in the outbox at a nonce the chain's pending
    state has not used (queued, or in the pool but about to revert) the answer
    is **409 `conflict`**, and nothing is sent;
    wait until it is confirmed or failed, then void what failed. A key
    exported with `POST /me/key-export` may have signed more: pass `new_nonce`
    to void those too.""" + NONCE_INVALIDATION_DOC + _CUSTODIAL_DOC
