"""Accounts: ``GET /accounts/{address}/balances``, what one address holds in
every asset of the deployment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.chain import POINTS, STABLECOIN, UTILITY, ChainService
from api.deps import ChainDep
from api.errors import InvalidRequest, NotDeployed, UpstreamUnavailable, error_responses
from api.schemas import (
    ADDRESS_PATTERN,
    AccountBalances,
    CertificateHoldings,
    TokenBalance,
    checksum_address,
)

router = APIRouter(prefix="/accounts", tags=["accounts"])

AddressPath = Annotated[
    str,
    Path(pattern=ADDRESS_PATTERN, description="The account: 0x and 40 hex digits (lower, upper or EIP-55 case)."),
]


def _token_balance(chain: ChainService, name: str, owner: str, block: int) -> TokenBalance | None:
    token = chain.token(name)
    if token is None:
        return None
    return TokenBalance(address=token.address, symbol=token.symbol, decimals=token.decimals,
                        balance=chain.token_balance(token, owner, block))


@router.get(
    "/{address}/balances",
    response_model=AccountBalances,
    response_model_exclude_none=True,
    summary="What one account holds",
    responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed),
)
def account_balances(address: AddressPath, chain: ChainDep) -> AccountBalances:
    """ETH, certificates, stablecoin, points and utility tokens held by one
    address, all read at the same block (`block_number`). Amounts are decimal
    strings in each asset's smallest unit; each token comes with its contract
    address, symbol and decimals as the contract reports them. An address that
    never held anything answers zeros. A token the deploy manifest does not
    record (an older deployment) is left out of the answer rather than failing
    it; one the manifest records without code on the chain is 503."""
    try:
        owner = checksum_address(address)
    except ValueError as err:
        raise InvalidRequest(f"address: {err}") from err
    block = chain.latest_block()
    return AccountBalances(
        address=owner,
        block_number=block,
        eth_wei=chain.balance(owner, block),
        certificates=CertificateHoldings(address=chain.certificate_address, symbol=chain.certificate_symbol,
                                         count=chain.certificates_held(owner, block)),
        stablecoin=_token_balance(chain, STABLECOIN, owner, block),
        points=_token_balance(chain, POINTS, owner, block),
        utility=_token_balance(chain, UTILITY, owner, block),
    )
