"""Operator endpoints (the admin token, `AMPHORA_ADMIN_TOKEN`): what the
relayer has spent, on whose behalf (accounts and client networks), what
reverted on chain at its cost, and the quotas that bound it."""

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
_ACCOUNT_DOC = ("An account id, a client network `net:<prefix>` (`net:203.0.113.0/24`), `default` (accounts without "
                "their own quota), `default-network` (networks without their own) or `*` (the whole service).")


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions_per_day: int = Field(ge=0, le=2**62, description="Relayed actions per UTC day.")
    gas_per_day: int = Field(ge=0, le=2**62, description="Relayed gas (as estimated at admission) per UTC day.")


class Quota(QuotaBody):
    account: str = Field(description=_ACCOUNT_DOC)
    share_capped: bool = Field(default=False, description="Whether `AMPHORA_QUOTA_MAX_SHARE` of the service's "
                               "limit cuts this one (the limits shown are then the cut ones).")


class UsageRow(BaseModel):
    account: str = Field(description="An account id, a client network `net:<prefix>`, or `*` for the whole "
                         "service.")
    actions: int
    gas: int
    actions_per_day: int = Field(description="The limit that applies: its own or its kind's default, cut to "
                                 "`max_share` of the service's.")
    gas_per_day: int
    share_capped: bool = Field(default=False, description="Whether `max_share` cut the limit below its own.")


class RevertedRow(BaseModel):
    actor: str = Field(description="The on-chain actor (lower-case address, or `loan:<id>`).")
    calls: int = Field(description="Its relayed calls that reverted on chain (each is refused if sent again).")
    gas: int = Field(description="The gas they used, counted against the actor's daily budget.")


class UsageReport(BaseModel):
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    usage: list[UsageRow]
    max_share: float = Field(description="The most of the service's actions and gas one account or network may "
                             "use in a day (`AMPHORA_QUOTA_MAX_SHARE`).")
    reverted: list[RevertedRow] = Field(default_factory=list, description="Actors whose relayed calls reverted on "
                                        "chain that day.")
    reverted_gas_budget: int = Field(description="Reverted gas per actor per day before it is refused "
                                     "(`AMPHORA_RELAY_REVERTED_GAS_PER_ACTOR`).")
    contract_reverted_gas_budget: int = Field(description="The same for actors with code "
                                              "(`AMPHORA_RELAY_CONTRACT_REVERTED_GAS_PER_ACTOR`).")
    requests: dict[str, int] = Field(description="Outbox requests by status (all days).")


@router.get("/usage", response_model=UsageReport, summary="Relayed actions and gas per account",
            responses=error_responses(*_ADMIN_ERRORS, RelayUnavailable))
def get_usage(
    _: AdminDep, relayer: RelayerDep,
    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day (default today).")] = None,
) -> UsageReport:
    """Each account's and each client network's relayed actions and gas on
    `day`, beside its limits, the service-wide total as account `*`, and the
    actors whose relayed calls reverted on chain, beside their budgets."""
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
                              actions_per_day=limit.actions_per_day, gas_per_day=limit.gas_per_day,
                              share_capped=limit.share_capped))
    day_used = rows[0].day if rows else (day or dt.datetime.now(dt.UTC).date().isoformat())
    reverted = [RevertedRow(actor=r.actor, calls=r.calls, gas=r.gas) for r in relayer.reverts.usage(day_used)]
    return UsageReport(day=day_used, usage=usage, max_share=relayer.quotas.max_share, reverted=reverted,
                       reverted_gas_budget=relayer.reverts.actor_budget,
                       contract_reverted_gas_budget=relayer.reverts.contract_budget,
                       requests=relayer.outbox.counts())


@router.get("/quotas/{account}", response_model=Quota, summary="An account's daily quota",
            responses=error_responses(*_ADMIN_ERRORS))
def get_quota(_: AdminDep, relayer: RelayerDep,
              account: Annotated[str, Path(min_length=1, max_length=64, description=_ACCOUNT_DOC)]) -> Quota:
    """The limit that applies to `account` now: its own, else its kind's
    default (`default` or `default-network`), cut to `max_share` of the
    service's (`share_capped` says so)."""
    limit = relayer.quotas.get_limit(account)
    return Quota(account=account, actions_per_day=limit.actions_per_day, gas_per_day=limit.gas_per_day,
                 share_capped=limit.share_capped)


@router.put("/quotas/{account}", response_model=Quota, summary="Set an account's daily quota",
            responses=error_responses(*_ADMIN_ERRORS))
def put_quota(_: AdminDep, relayer: RelayerDep, body: QuotaBody,
              account: Annotated[str, Path(min_length=1, max_length=64, description=_ACCOUNT_DOC)]) -> Quota:
    """Set the daily limits of `account`, of a network `net:<prefix>`, of
    `default` (every account without its own), `default-network` (every
    network without its own) or of `*` (the service). Takes effect on the next
    request; what was used today still counts. No account or network gets more
    than `AMPHORA_QUOTA_MAX_SHARE` of the service's limit, whatever is set here."""
    relayer.quotas.set_limit(account, Limit(body.actions_per_day, body.gas_per_day))
    return Quota(account=account, actions_per_day=body.actions_per_day, gas_per_day=body.gas_per_day)

