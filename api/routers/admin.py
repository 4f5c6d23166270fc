"""Operator endpoints (the admin token, `AMPHORA_ADMIN_TOKEN`): what the
relayer has spent, on whose behalf, and the quotas that bound it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, RelayerDep
from api.errors import Forbidden, InvalidRequest, RelayUnavailable, ServiceUnavailable, Unauthorized, error_responses
from api.policy import Limit

router = APIRouter(prefix="/admin", tags=["operator"])

_ADMIN_ERRORS = (Unauthorized, Forbidden, InvalidRequest, ServiceUnavailable)
_ACCOUNT_DOC = "An account id, `default` (accounts without their own quota) or `*` (the whole service)."


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions_per_day: int = Field(ge=0, le=2**62, description="Relayed actions per UTC day.")
    gas_per_day: int = Field(ge=0, le=2**62, description="Relayed gas (as estimated at admission) per UTC day.")


class Quota(QuotaBody):
    account: str = Field(description=_ACCOUNT_DOC)


class UsageRow(BaseModel):
    account: str = Field(description="An account id, or `*` for the whole service.")
    actions: int
    gas: int
    actions_per_day: int = Field(description="The account's limit.")
    gas_per_day: int


class UsageReport(BaseModel):
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    usage: list[UsageRow]
    requests: dict[str, int] = Field(description="Outbox requests by status (all days).")


@router.get("/usage", response_model=UsageReport, summary="Relayed actions and gas per account",
            responses=error_responses(*_ADMIN_ERRORS, RelayUnavailable))
def get_usage(
    _: AdminDep, relayer: RelayerDep,
    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day (default today).")] = None,
) -> UsageReport:
    """Each account's relayed actions and gas on `day`, beside its limits,
    and the service-wide total as account `*`."""
    if day is not None:
        try:
            dt.date.fromisoformat(day)
        except ValueError as err:
            raise InvalidRequest(f"day: {err}") from err
    rows = relayer.quotas.usage(day)
    usage = []
    for row in rows:
        limit = relayer.quotas.get_limit(row.account)
        usage.append(UsageRow(account=row.account, actions=row.actions, gas=row.gas,
                              actions_per_day=limit.actions_per_day, gas_per_day=limit.gas_per_day))
    day_used = rows[0].day if rows else (day or dt.datetime.now(dt.UTC).date().isoformat())
    return UsageReport(day=day_used, usage=usage, requests=relayer.outbox.counts())


@router.get("/quotas/{account}", response_model=Quota, summary="An account's daily quota",
            responses=error_responses(*_ADMIN_ERRORS))
def get_quota(_: AdminDep, relayer: RelayerDep,
              account: Annotated[str, Path(min_length=1, max_length=64, description=_ACCOUNT_DOC)]) -> Quota:
    """The limit that applies to `account` now: its own, else `default`'s."""
    limit = relayer.quotas.get_limit(account)
    return Quota(account=account, actions_per_day=limit.actions_per_day, gas_per_day=limit.gas_per_day)


@router.put("/quotas/{account}", response_model=Quota, summary="Set an account's daily quota",
            responses=error_responses(*_ADMIN_ERRORS))
def put_quota(_: AdminDep, relayer: RelayerDep, body: QuotaBody,
              account: Annotated[str, Path(min_length=1, max_length=64, description=_ACCOUNT_DOC)]) -> Quota:
    """Set the daily limits of `account`, of `default` (every account without
    its own) or of `*` (the service). Takes effect on the next request; what
    was used today still counts."""
    relayer.quotas.set_limit(account, Limit(body.actions_per_day, body.gas_per_day))
    return Quota(account=account, actions_per_day=body.actions_per_day, gas_per_day=body.gas_per_day)

