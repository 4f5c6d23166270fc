"""``GET /health``: whether the API can serve, and what it is connected to."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ChainDep, RelayerDep
from api.errors import NotDeployed, UpstreamUnavailable, error_responses
from api.schemas import Health, RelayerHealth

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
    relayer key is configured (never the key)."""
    latest = chain.latest_block()
    chain.require_deployed()
    relayer_health = None
    if relayer.configured:
        address = relayer.address
        relayer_health = RelayerHealth(
            address=address,
            balance_wei=chain.balance(address) if address else None,
            error=relayer.key_error,
        )
    return Health(
        node_reachable=True,
        chain_id=chain.chain_id,
        latest_block=latest,
        certificate_address=chain.certificate_address,
        relayer=relayer_health,
    )
