"""The roles an address holds on chain: ``GET /accounts/{address}/roles`` and
``GET /me/roles``, what the business consoles show their sections by."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.business import ROLES, roles_of
from api.deps import ChainDep, UserDep
from api.errors import InvalidRequest, NotDeployed, Unauthorized, UpstreamUnavailable, error_responses
from api.routers.accounts import AddressPath
from api.schemas import checksum_address

router = APIRouter(tags=["roles"])

Role = Literal["issuer", "custodian", "appraiser", "lender", "merchant"]
ROLE_NAMES: tuple[Role, ...] = ("issuer", "custodian", "appraiser", "lender", "merchant")


class RolesOut(BaseModel):
    """What an address may do on chain as a business, read at one block."""

    address: str = Field(description="The account, EIP-55 checksummed.")
    block_number: int = Field(description="The block the roles were read at.")
    block_hash: str = Field(description="That block's hash (every role was read at it).")
    roles: list[Role] = Field(description=f"The roles held, in the order {', '.join(ROLES)}. `issuer` and "
                              "`custodian` are grants of the certificate contract, `appraiser` of the lending "
                              "contract, `merchant` a registration in the points contract; `lender` needs no "
                              "grant (anyone with stablecoin may offer loans) and is always listed.")


def _roles(chain: ChainDep, address: str) -> RolesOut:
    roles = roles_of(chain, address)
    return RolesOut(address=roles.address, block_number=roles.block.number, block_hash="0x" + roles.block.hash.hex(),
                    roles=[role for role in ROLE_NAMES if role in roles.held()])


@router.get("/accounts/{address}/roles", response_model=RolesOut, summary="The roles an address holds on chain",
            responses=error_responses(InvalidRequest, UpstreamUnavailable, NotDeployed))
def account_roles(address: AddressPath, chain: ChainDep) -> RolesOut:
    """The business roles `address` holds, read from the contracts at one block.
    Public: every grant is public on chain already. A contract the deployment
    lacks (no lending, no points) grants nothing."""
    try:
        owner = checksum_address(address)
    except ValueError as err:
        raise InvalidRequest(f"address: {err}") from err
    return _roles(chain, owner)


@router.get("/me/roles", response_model=RolesOut, summary="The roles the signed-in account holds on chain",
            responses=error_responses(Unauthorized, UpstreamUnavailable, NotDeployed))
def my_roles(user: UserDep, chain: ChainDep) -> RolesOut:
    """`GET /accounts/{address}/roles` for the signed-in account's address: the
    sections its console shows."""
    return _roles(chain, user.address)
