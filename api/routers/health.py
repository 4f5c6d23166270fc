"""``GET /health``: whether the API can serve; with the operator token, also
what it is connected to (relayer addresses, balances, queues)."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from api.deps import ChainDep, IndexDep, RelayerDep, SettingsDep, admin_bearer
from api.errors import NotDeployed, UpstreamUnavailable, error_responses
from api.relayer import Relayer
from api.schemas import Health, IndexHealth, PublicHealth, RelayerHealth, RelayerKeyHealth
from api.settings import Settings
from indexer.reader import IndexReader

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])


def _relayer_health(relayer: Relayer, chain: ChainDep) -> RelayerHealth | None:
    if not relayer.configured:
        return None
    address = relayer.address
    keys = []
    faults = relayer.outbox.key_faults() if address else {}
    for key in relayer.addresses:
        balance = relayer.balances.balance(key, fresh=True)
        keys.append(RelayerKeyHealth(address=key, balance_wei=balance,
                                     low_balance=balance < relayer.balances.minimum_wei, fault=faults.get(key)))
    low = any(k.low_balance for k in keys)
    if low:
        logger.error("ALERT relayer balance below the minimum of %d wei: %s", relayer.balances.minimum_wei,
                     ", ".join(k.address for k in keys if k.low_balance))
    return RelayerHealth(
        address=address,
        balance_wei=chain.balance(address) if address else None,
        error=relayer.key_error,
        keys=keys,
        low_balance=low,
        min_balance_wei=relayer.balances.minimum_wei,
        requests=relayer.outbox.counts() if address else {},
        database=relayer.database,
    )


def _degraded(relayer: Relayer) -> bool:
    """Whether a configured relayer cannot relay: a bad key, a key the node
    refuses for lack of funds, or a key below its minimum balance (cached
    balances: the public check costs no node call per key)."""
    if not relayer.configured:
        return False
    if relayer.key_error is not None or relayer.outbox.key_faults():
        return True
    return any(relayer.balances.low(key) for key in relayer.addresses)


def _index_health(index: IndexReader, chain: ChainDep, request: Request) -> IndexHealth:
    status = index.status(chain.chain_id)
    follower = getattr(request.app.state, "follower", None)
    return IndexHealth(state=status.state, indexed_block=status.indexed_block, head_block=status.head_block,
                       lag=status.lag, final_block=status.final_block, holder=status.holder,
                       error=follower.last_error if follower is not None else None)


def _index_degraded(health: IndexHealth, settings: Settings) -> bool:
    return health.state in ("stopped", "empty") or (health.lag or 0) > settings.index_max_lag_blocks


def _is_operator(settings: SettingsDep, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """Whether the request carries the operator token (compared in constant time)."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    given = credentials.credentials if credentials is not None else ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@router.get(
    "",
    response_model=Health | PublicHealth,
    summary="Service status (detail for the operator)",
    responses=error_responses(UpstreamUnavailable, NotDeployed),
    # Anyone may ask; the operator token is optional and only adds the detail.
    openapi_extra={"security": [{}]},  # FastAPI adds {"adminToken": []} beside it
)
def get_health(
    chain: ChainDep, relayer: RelayerDep, settings: SettingsDep, index: IndexDep, request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> Health | PublicHealth:
    """200 when the node answers and the manifest's certificate contract has code
    on it; 503 otherwise.

    Without an `Authorization` header the answer is only `{"status": "ok"}`, or
    `{"status": "degraded"}` when the relayer cannot relay (an invalid key, a key
    below its minimum balance, or a key whose transactions the node refuses for
    lack of funds): nothing about addresses, balances or queues.

    With the operator token (`Authorization: Bearer <AMPHORA_ADMIN_TOKEN>`) the
    answer is the detail: the chain, the certificate contract, the relayer's
    address and ETH balance when a relayer key is configured (never the key),
    each key of its pool with `low_balance` when it is below the minimum (or
    `fault` when the node refuses its transactions for lack of funds), and the
    outbox's requests by status, and the index (`state`, `indexed_block`,
    `head_block`, `lag`). The index makes the status `degraded` when its
    follower has stopped or lags more than `AMPHORA_INDEX_MAX_LAG_BLOCKS`. Any other credentials (an account's token, a
    wrong operator token) get the public answer."""
    latest = chain.latest_block()
    chain.require_deployed()
    index_health = _index_health(index, chain, request)
    index_degraded = _index_degraded(index_health, settings)
    if not _is_operator(settings, credentials):
        return PublicHealth(status="degraded" if _degraded(relayer) or index_degraded else "ok")
    relayer_health = _relayer_health(relayer, chain)
    degraded = relayer_health is not None and (
        relayer_health.low_balance or relayer_health.error is not None
        or any(k.fault for k in relayer_health.keys))
    return Health(
        status="degraded" if degraded or index_degraded else "ok",
        node_reachable=True,
        chain_id=chain.chain_id,
        latest_block=latest,
        certificate_address=chain.certificate_address,
        relayer=relayer_health,
        index=index_health,
    )
