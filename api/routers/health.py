"""``GET /health``: whether the API can serve, and what it is connected to."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from api.deps import ChainDep, RelayerDep
from api.errors import NotDeployed, UpstreamUnavailable, error_responses
from api.schemas import Health, RelayerHealth, RelayerKeyHealth

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])


@router.get(
    "",
    response_model=Health,
    summary="Node, contract and relayer status",
    responses=error_responses(UpstreamUnavailable, NotDeployed),
)
def get_health(chain: ChainDep, relayer: RelayerDep) -> Health:
    """200 when the node answers and the manifest's certificate contract has code
    on it; 503 otherwise. Reports the relayer's address and ETH balance when a
    relayer key is configured (never the key), each key of its pool with
    `low_balance` when it is below the minimum (or `fault` when the node
    refuses its transactions for lack of funds), and the outbox's requests by
    status. `status` is `degraded` while any key is low or faulted."""
    latest = chain.latest_block()
    chain.require_deployed()
    relayer_health, degraded = None, False
    if relayer.configured:
        address = relayer.address
        keys = []
        faults = relayer.outbox.key_faults() if address else {}
        for key in relayer.addresses:
            balance = relayer.balances.balance(key, fresh=True)
            keys.append(RelayerKeyHealth(address=key, balance_wei=balance,
                                         low_balance=balance < relayer.balances.minimum_wei, fault=faults.get(key)))
        low = any(k.low_balance for k in keys)
        degraded = low or any(k.fault for k in keys)
        if low:
            logger.error("ALERT relayer balance below the minimum of %d wei: %s", relayer.balances.minimum_wei,
                         ", ".join(k.address for k in keys if k.low_balance))
        relayer_health = RelayerHealth(
            address=address,
            balance_wei=chain.balance(address) if address else None,
            error=relayer.key_error,
            keys=keys,
            low_balance=low,
            min_balance_wei=relayer.balances.minimum_wei,
            requests=relayer.outbox.counts() if address else {},
            database=relayer.database,
        )
    return Health(
        status="degraded" if degraded else "ok",
        node_reachable=True,
        chain_id=chain.chain_id,
        latest_block=latest,
        certificate_address=chain.certificate_address,
        relayer=relayer_health,
    )
