"""Business transactions that a wallet account sends itself:
``GET /me/business/transactions/{id}`` and ``POST /me/business/transactions/{id}/sent``.

Every business route (an issuer's flag, a custodian's confirmation, an
appraisal, points, a lender's cancellation or foreclosure) answers a wallet
account 409 ``wallet_must_send`` with the ``Amphora-Prepared-Transaction``
header, once the call was simulated; these two routes read what to send and
take back the hash (see :mod:`api.business_wallet`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.business import TransactionFailed
from api.business_wallet import ID_CHARS, TransactionMismatch, WalletTransactions
from api.deps import BusinessDep, UserDep
from api.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamUnavailable,
    error_responses,
)
from api.schemas import Bytes32Hex

router = APIRouter(tags=["business"])

PreparedId = Annotated[str, Path(description="The prepared transaction's id (the `Amphora-Prepared-Transaction` "
                                             "header of the route's 409 `wallet_must_send`).",
                                 min_length=ID_CHARS, max_length=ID_CHARS, pattern="^[0-9a-f]+$")]


class PreparedOut(BaseModel):
    """The transaction to send from the wallet, as `eth_sendTransaction` takes it."""

    id: str
    from_: str = Field(alias="from", description="The account's address: the only sender accepted.")
    to: str = Field(description="The contract.")
    data: str = Field(description="The call's data, hex.")
    value: str = Field(description="Wei sent with it, hex (always `0x0` for these calls).")
    chainId: str = Field(description="The chain, hex.")
    gas: str = Field(description="A gas limit: the node's estimate plus a margin, hex.")
    function: str = Field(description="The contract function it calls, e.g. `post_appraisal`.")
    expires_at: float = Field(description="Unix time after which the hash is no longer taken.")


class ReportIn(BaseModel):
    tx_hash: Bytes32Hex = Field(description="The hash the wallet answered `eth_sendTransaction` with.")


class ReportedOut(BaseModel):
    """The prepared transaction, sent by the wallet and checked."""

    tx_hash: str
    block_number: int | None = Field(description="The block it landed in; null while still pending (report the "
                                                 "same hash again to read it).")


def _store(business: BusinessDep) -> WalletTransactions:
    if business.wallet is None:
        raise ServiceUnavailable("wallet accounts' business transactions are not set up on this service")
    return business.wallet


def _wallet_only(user: UserDep) -> None:
    if not user.wallet:
        raise Forbidden("this is a custodial account: the service sends its business transactions itself")


@router.get("/me/business/transactions/{prepared_id}", response_model=PreparedOut, response_model_by_alias=True,
            summary="A business transaction prepared for my wallet to send",
            responses=error_responses(Unauthorized, Forbidden, NotFound, InvalidRequest, ServiceUnavailable))
def prepared_transaction(prepared_id: PreparedId, user: UserDep, business: BusinessDep) -> PreparedOut:
    """What a business route prepared for this wallet account (its 409 `wallet_must_send`): send it with the
    wallet's `eth_sendTransaction` exactly as given (the wallet may pick the fees and nonce). Only the account
    that prepared it can read it: any other id is 404."""
    _wallet_only(user)
    found = _store(business).get(user, prepared_id)
    return PreparedOut.model_validate({
        "id": found.id, "from": found.sender, "to": found.to, "data": found.data, "value": hex(found.value),
        "chainId": hex(found.chain_id), "gas": hex(found.gas), "function": found.function,
        "expires_at": found.expires_at})


@router.post("/me/business/transactions/{prepared_id}/sent", response_model=ReportedOut,
             summary="Report the hash of a prepared transaction my wallet sent",
             responses=error_responses(Unauthorized, Forbidden, NotFound, InvalidRequest, TransactionMismatch,
                                       TransactionFailed, UpstreamUnavailable, ServiceUnavailable))
def transaction_sent(prepared_id: PreparedId, body: ReportIn, user: UserDep, business: BusinessDep) -> ReportedOut:
    """The wallet sent the prepared transaction: the service reads it from the node, checks that it is the
    prepared one (sender, contract, data, value, chain; else 409 `transaction_mismatch` and the id stays
    usable), spends the id (a second, different hash is 409) and waits for the receipt. 502
    `transaction_failed` when it reverted on chain; 422 when the node does not know the hash."""
    _wallet_only(user)
    reported = _store(business).confirm(user, prepared_id, body.tx_hash)
    return ReportedOut(tx_hash=reported.tx_hash, block_number=reported.block_number)
