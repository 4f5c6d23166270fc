"""Operator endpoints (the admin token, `AMPHORA_ADMIN_TOKEN`): what the
relayer has spent, on whose behalf (accounts, by identifier, and client
networks), what reverted on chain at its cost, the quotas that bound it, the
relayer's keys and their balances, stuck and failed requests, the index's lag,
the sponsored gas per day against the service's budget, and the audit log of
every operator write (:mod:`api.operator`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AdminDep, ChainDep, DbDep, IndexDep, RelayerDep, SettingsDep, admin_bearer
from api.errors import Forbidden, InvalidRequest, RelayUnavailable, ServiceUnavailable, Unauthorized, error_responses
from api.operator import (
    MAX_ROWS,
    RequestState,
    audit_log,
    identifiers,
    operator_id,
    sponsored_per_day,
    troubled_requests,
)
from api.policy import GLOBAL, Limit
from api.schemas import IndexHealth, RelayerKeyHealth

router = APIRouter(prefix="/admin", tags=["operator"])

_ADMIN_ERRORS = (Unauthorized, Forbidden, InvalidRequest, ServiceUnavailable)


def operator_who(_: AdminDep, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                     Depends(admin_bearer)]) -> str:
    """Who the audit log names for this request: a short hash of the operator token it carries."""
    return operator_id(credentials.credentials if credentials is not None else "")


#: The operator's name in the audit log (admits the operator first, like :data:`AdminDep`).
OperatorDep = Annotated[str, Depends(operator_who)]
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
    identifier: str | None = Field(default=None, description="The custodial account's identifier (what its "
                                   "owner logs in with) when `account` is an account id; null otherwise.")
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
    _: AdminDep, relayer: RelayerDep, db: DbDep,
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
    names = identifiers(db, (row.account for row in rows))
    usage = []
    for row in rows:
        limit = relayer.quotas.get_limit(row.account)
        usage.append(UsageRow(account=row.account, identifier=names.get(row.account), actions=row.actions,
                              gas=row.gas,
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
def put_quota(_: AdminDep, relayer: RelayerDep, body: QuotaBody, who: OperatorDep, request: Request,
              account: Annotated[str, Path(min_length=1, max_length=64, description=_ACCOUNT_DOC)]) -> Quota:
    """Set the daily limits of `account`, of a network `net:<prefix>`, of
    `default` (every account without its own), `default-network` (every
    network without its own) or of `*` (the service). Takes effect on the next
    request; what was used today still counts. No account or network gets more
    than `AMPHORA_QUOTA_MAX_SHARE` of the service's limit, whatever is set here.

    Each change is appended to the audit log (`GET /admin/audit`) with the
    limits that applied before and the ones set; setting the limits an
    account already has changes nothing and records nothing."""
    log = audit_log(request.app.state)
    new = {"actions_per_day": body.actions_per_day, "gas_per_day": body.gas_per_day}

    def record(tx: Any, before: Limit) -> None:
        old = {"actions_per_day": before.actions_per_day, "gas_per_day": before.gas_per_day}
        log.record(who, "quota.set", account, old, new, tx)

    relayer.quotas.set_limit(account, Limit(body.actions_per_day, body.gas_per_day), audit=record)
    return Quota(account=account, actions_per_day=body.actions_per_day, gas_per_day=body.gas_per_day)



# ---------------------------------------------------------------- the console's views


class RelayerKeys(BaseModel):
    min_balance_wei: str = Field(description="Below this ETH balance (wei, decimal string) a key refuses new work "
                                 "(`AMPHORA_RELAYER_MIN_BALANCE_WEI`).")
    keys: list[RelayerKeyHealth] = Field(description="Every key of the relayer's pool, the service key first.")


@router.get("/relayer", response_model=RelayerKeys, summary="The relayer's keys and their ETH balances",
            responses=error_responses(*_ADMIN_ERRORS, RelayUnavailable))
def get_relayer_keys(_: AdminDep, relayer: RelayerDep) -> RelayerKeys:
    """Each relayer key's address and ETH balance read from the node now,
    `low_balance` below the minimum, and `fault` when the node refuses its
    transactions for lack of funds. 503 when no relayer key is configured."""
    outbox = relayer.outbox  # 503 without a (valid) key
    faults = outbox.key_faults()
    keys = []
    for address in relayer.addresses:
        balance = relayer.balances.balance(address, fresh=True)
        keys.append(RelayerKeyHealth(address=address, balance_wei=balance,
                                     low_balance=balance < relayer.balances.minimum_wei, fault=faults.get(address)))
    return RelayerKeys(min_balance_wei=str(relayer.balances.minimum_wei), keys=keys)


class TroubledRequest(BaseModel):
    request_id: str
    account: str = Field(description="The account charged for it (an account id).")
    identifier: str | None = Field(description="That account's identifier, if it is a custodial account.")
    kind: str
    status: str = Field(description="`queued` or `sent` (stuck), or `failed`.")
    description: str
    relayer: str = Field(description="The relayer key that signed it.")
    nonce: int | None
    tx_hash: str | None = Field(description="The latest transaction sent for it.")
    replacements: int = Field(description="How often it was sent again with higher fees.")
    error: str | None = Field(description="Why it failed, or the latest error sending it.")
    created_at: float = Field(description="Unix time it was queued.")
    updated_at: float


class TroubledRequests(BaseModel):
    state: RequestState
    stuck_seconds: float = Field(description="A request still without a receipt this long after it was sent is "
                                 "stuck (`AMPHORA_RELAY_STUCK_SECONDS`).")
    requests: list[TroubledRequest] = Field(description="Newest first.")


@router.get("/requests", response_model=TroubledRequests, summary="Stuck or failed relayed requests",
            responses=error_responses(*_ADMIN_ERRORS, RelayUnavailable))
def get_troubled_requests(
    _: AdminDep, relayer: RelayerDep, settings: SettingsDep, db: DbDep,
    state: Annotated[RequestState, Query(description="`stuck`: queued or sent, without a receipt "
                                         "`stuck_seconds` after it was sent, or sent again with higher fees; "
                                         "`failed`: reverted on chain, or cancelled.")] = "stuck",
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 50,
) -> TroubledRequests:
    """The relayed requests that need the operator's eye, newest first, each
    with the identifier of the account it was relayed for."""
    relayer.outbox  # noqa: B018 - 503 without a relayer (and so without its tables)
    records = troubled_requests(db, state, settings.relay_stuck_seconds, limit)
    names = identifiers(db, (r.account for r in records))
    return TroubledRequests(state=state, stuck_seconds=settings.relay_stuck_seconds, requests=[
        TroubledRequest(request_id=r.request_id, account=r.account, identifier=names.get(r.account), kind=r.kind,
                        status=r.status, description=r.description, relayer=r.relayer, nonce=r.nonce,
                        tx_hash=r.tx_hash, replacements=r.replacements, error=r.error, created_at=r.created_at,
                        updated_at=r.updated_at)
        for r in records])


class IndexLag(IndexHealth):
    max_lag_blocks: int = Field(description="Beyond this lag `/health` reports `degraded` "
                                "(`AMPHORA_INDEX_MAX_LAG_BLOCKS`).")


@router.get("/index", response_model=IndexLag, summary="How far the index lags the chain",
            responses=error_responses(*_ADMIN_ERRORS))
def get_index_lag(_: AdminDep, chain: ChainDep, index: IndexDep, settings: SettingsDep, request: Request) -> IndexLag:
    """The index's state, last indexed block, the node's head as the follower
    last saw it, and the lag between them, beside the lag that degrades
    `/health`."""
    status = index.status(chain.chain_id)
    follower = getattr(request.app.state, "follower", None)
    return IndexLag(state=status.state, indexed_block=status.indexed_block, head_block=status.head_block,
                    lag=status.lag, final_block=status.final_block, holder=status.holder,
                    error=follower.last_error if follower is not None else None,
                    max_lag_blocks=settings.index_max_lag_blocks)


class GasDay(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD.")
    actions: int
    gas: int


class SponsoredGas(BaseModel):
    day: str = Field(description="Today (UTC).")
    gas: int = Field(description="The gas the relayer sponsored today (as estimated at admission).")
    gas_budget: int = Field(description="The service's daily gas quota (account `*`).")
    actions: int
    actions_budget: int
    days: list[GasDay] = Field(description="Each of the last `days` UTC days, oldest first, today last.")


@router.get("/gas", response_model=SponsoredGas, summary="Sponsored gas per day against the budget",
            responses=error_responses(*_ADMIN_ERRORS))
def get_sponsored_gas(
    _: AdminDep, relayer: RelayerDep, db: DbDep,
    days: Annotated[int, Query(ge=1, le=90, description="How many days back, today included.")] = 14,
) -> SponsoredGas:
    """The relayed actions and gas the service paid for on each of the last
    `days` days (the service-wide row `*` of `/admin/usage`), and today's
    beside the service's daily quota (`PUT /admin/quotas/*`)."""
    series = sponsored_per_day(db, days)
    budget = relayer.quotas.get_limit(GLOBAL)
    today = series[-1]
    return SponsoredGas(day=today.day, gas=today.gas, gas_budget=budget.gas_per_day, actions=today.actions,
                        actions_budget=budget.actions_per_day,
                        days=[GasDay(day=d.day, actions=d.actions, gas=d.gas) for d in series])


class AuditRow(BaseModel):
    at: float = Field(description="Unix time.")
    who: str = Field(description="`operator:` and a short SHA-256 of the operator token used (never the token).")
    action: str = Field(description="What was done, e.g. `quota.set`.")
    subject: str = Field(description="On what, e.g. the account whose quota was set.")
    identifier: str | None = Field(default=None, description="The identifier of the custodial account `subject` "
                                   "names, if it names one.")
    old: dict[str, Any] | None = Field(description="The values before.")
    new: dict[str, Any] | None = Field(description="The values after.")


class AuditReport(BaseModel):
    entries: list[AuditRow] = Field(description="Newest first.")


@router.get("/audit", response_model=AuditReport, summary="The audit log of operator actions",
            responses=error_responses(*_ADMIN_ERRORS))
def get_audit(_: AdminDep, request: Request, db: DbDep,
              limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 50) -> AuditReport:
    """Every operator write through the API (today: quota changes), newest
    first, with who made it, when, on what, and the values before and after."""
    entries = audit_log(request.app.state).latest(limit)
    names = identifiers(db, (e.subject for e in entries))
    return AuditReport(entries=[AuditRow(at=e.at, who=e.who, action=e.action, subject=e.subject,
                                         identifier=names.get(e.subject), old=e.old, new=e.new) for e in entries])
