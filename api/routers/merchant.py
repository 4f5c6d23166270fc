"""The merchant's endpoints: ``GET /merchant`` (its cap, balances and the points
reserve), ``POST /merchant/issuances`` (issue points to a customer),
``POST /merchant/redemptions`` (redeem points for stablecoin) and
``GET /merchant/statements`` (the clearing statement between merchants over a
date range, as JSON, CSV or PDF). Each needs a signed-in account whose address
is a registered merchant on chain (403 in words otherwise); the console's
merchant pages (web/console/merchant.py) call these functions."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api import merchant as service
from api.business import BusinessSender, GasUnfunded, TransactionFailed, roles_of
from api.business_wallet import WalletSendRequired
from api.chain import ChainService
from api.deps import BusinessDep, ChainDep, IndexDep, SettingsDep, UserDep, UsersDep
from api.errors import (
    Conflict,
    Forbidden,
    IndexBehind,
    InvalidRequest,
    NotDeployed,
    TooManyRequests,
    Unauthorized,
    UpstreamUnavailable,
    WouldRevert,
    error_responses,
)
from api.routers.points import points_statement
from api.schemas import checksum_address
from api.settings import Settings
from api.users import User, UserStore
from indexer.reader import IndexReader
from web.app.recipients import account_address

router = APIRouter(prefix="/merchant", tags=["merchant"])

MONEY_EXAMPLE = "12.50"
_READ_ERRORS = (Unauthorized, Forbidden, UpstreamUnavailable, NotDeployed)
_ACTION_ERRORS = (Unauthorized, Forbidden, InvalidRequest, Conflict, WouldRevert, GasUnfunded, WalletSendRequired,
                  TooManyRequests, TransactionFailed, UpstreamUnavailable, NotDeployed)

IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=1, max_length=200,
    description="Required: any unique string of the client's (a UUID), the same on every retry of one action. "
    "The same key again answers what the first request did (and sends nothing); the same key with another "
    "request is 409 `conflict`. Kept in the serving process's memory.")]


def require_merchant(chain: ChainService, user: User) -> None:
    """:class:`Forbidden`, in words, unless ``user``'s address is a registered merchant now."""
    roles_of(chain, user.address).require("merchant")


class MerchantOut(BaseModel):
    """A merchant's registration, balances and the points reserve, read at one block. Amounts are money
    (`12.50`): one point is worth one unit of the stablecoin."""

    address: str = Field(description="The merchant's address (EIP-55).")
    name: str = Field(description="The name it was registered under.")
    block_number: int = Field(description="The block everything was read at.")
    currency: str = Field(description="The stablecoin's symbol.", examples=["USDC"])
    balance: str = Field(description="The merchant's stablecoin, to issue points with.", examples=[MONEY_EXAMPLE])
    points_balance: str = Field(description="Points it holds (accepted from customers), to redeem.")
    cap: str | None = Field(description="The most points it may have outstanding as issuer (issued minus "
                            "redeemed); null when unlimited.")
    issued: str = Field(description="Points it issued since registration.")
    redeemed: str = Field(description="Points it redeemed since registration.")
    room: str | None = Field(description="Points it may still issue under its cap now; null when unlimited.")
    reserve: str = Field(description="Stablecoin the points contract holds for every outstanding point "
                         "(all merchants').")


def _merchant_out(state: service.MerchantState) -> MerchantOut:
    found = state.tokens
    points = found.points.decimals

    def pts(units: int | None) -> str | None:
        return None if units is None else service.money(units, points)

    return MerchantOut(
        address=state.address, name=state.name, block_number=state.block_number, currency=found.stablecoin.symbol,
        balance=service.money(state.stablecoin_balance, found.stablecoin.decimals),
        points_balance=service.money(state.points_balance, points), cap=pts(state.cap),
        issued=service.money(state.issued, points), redeemed=service.money(state.redeemed, points),
        room=pts(state.room), reserve=service.money(state.reserve, found.stablecoin.decimals))


def merchant_view(chain: ChainService, user: User) -> MerchantOut:
    require_merchant(chain, user)
    return _merchant_out(service.merchant_state(chain, user.address))


@router.get("", response_model=MerchantOut, summary="The merchant's cap, balances and the points reserve",
            responses=error_responses(*_READ_ERRORS))
def my_merchant(user: UserDep, chain: ChainDep) -> MerchantOut:
    """What the signed-in merchant may issue and redeem: its stablecoin and points balances, its cap and
    the room left under it, and the reserve behind every outstanding point. 403 unless the account's
    address is a registered merchant on the PointsToken."""
    return merchant_view(chain, user)


class IssuanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1, max_length=300, description="Who receives the points: an Amphora "
                          "account name (looked up within the account's hourly limit of name look-ups) or a "
                          "0x address.", examples=["lin@example.org"])
    amount: str = Field(min_length=1, max_length=100, description="Stablecoin to pay into the reserve, as money "
                        "(a point, at most the stablecoin's decimals); the customer receives as many points.",
                        examples=[MONEY_EXAMPLE])


class IssuanceOut(BaseModel):
    customer: str = Field(description="The customer's address.")
    amount: str = Field(description="Stablecoin paid into the reserve, as money.", examples=[MONEY_EXAMPLE])
    points: str = Field(description="Points issued to the customer, as the same figure.")
    approve_tx_hash: str | None = Field(description="The stablecoin `approve` sent first, when the allowance "
                                        "fell short.")
    tx_hash: str = Field(description="The `PointsToken.issue` transaction.")
    block_number: int | None = Field(description="Its block; null while still pending.")


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(min_length=1, max_length=100, description="Stablecoin to take out of the reserve, as "
                        "money; as many of the merchant's points are burnt.", examples=[MONEY_EXAMPLE])


class RedemptionOut(BaseModel):
    amount: str = Field(description="Stablecoin paid to the merchant, as money.", examples=[MONEY_EXAMPLE])
    points: str = Field(description="Points redeemed (burnt).")
    tx_hash: str = Field(description="The `PointsToken.redeem` transaction.")
    block_number: int | None = Field(description="Its block; null while still pending.")


async def resolve_customer(request: Request, users: UserStore, user: User, text: str) -> str:
    """An account name or a 0x address as an address; :class:`InvalidRequest` when it names nobody,
    :class:`TooManyRequests` beyond the account's hourly name look-ups."""
    text = text.strip()
    if text.lower().startswith("0x"):
        try:
            return checksum_address(text)
        except ValueError as err:
            raise service.Refused("customer", f"customer: {text!r} is not an account number "
                                  "(0x and 40 hex digits)") from err
    address = await account_address(request, users, user.id, text) if text else None
    if address is None:
        raise service.Refused("customer", "customer: no account has this name")
    return checksum_address(address)


async def issue_to_customer(request: Request, body: IssuanceIn, key: str, user: User, chain: ChainService,
                            users: UserStore, business: BusinessSender) -> IssuanceOut:
    """``POST /merchant/issuances``, for the route and the console's form."""
    await run_in_threadpool(require_merchant, chain, user)
    found = await run_in_threadpool(service.tokens, chain)
    units = service.parse_money(body.amount, found.stablecoin.decimals, found.stablecoin.symbol)
    customer = await resolve_customer(request, users, user, body.customer)

    def act() -> IssuanceOut:
        done = service.issue(chain, business, user, customer, units)
        return IssuanceOut(customer=done.customer, amount=service.money(done.stablecoin_units,
                                                                        found.stablecoin.decimals),
                           points=service.money(done.points_units, found.points.decimals),
                           approve_tx_hash=done.approve_tx_hash, tx_hash=done.sent.tx_hash,
                           block_number=done.sent.block_number)

    log = service.action_log(request.app.state)
    return await run_in_threadpool(log.run, user.id, key, ("issue", customer, units), act)


@router.post("/issuances", status_code=201, response_model=IssuanceOut, summary="Issue points to a customer",
             responses=error_responses(*_ACTION_ERRORS))
async def create_issuance(request: Request, body: IssuanceIn, user: UserDep, chain: ChainDep, users: UsersDep,
                          business: BusinessDep, idempotency_key: IdempotencyKey) -> IssuanceOut:
    """The merchant pays `amount` of stablecoin into the points reserve and the customer receives as many
    points (`PointsToken.issue`, after a stablecoin `approve` when the allowance falls short), both sent
    from the merchant's own address, which pays their gas.

    Refused in words, nothing sent: 403 unless a registered merchant; 422 for an amount that is not money
    (0, negative, more decimals than the stablecoin has), above the merchant's stablecoin balance or above
    the room under its cap, and for a customer no account has; 409 `would_revert` with the contract's
    reason (paused), `gas_unfunded` when the address has too little ETH, `conflict` for a reused key."""
    return await issue_to_customer(request, body, idempotency_key, user, chain, users, business)


async def redeem_points(request: Request, body: RedemptionIn, key: str, user: User, chain: ChainService,
                        business: BusinessSender) -> RedemptionOut:
    """``POST /merchant/redemptions``, for the route and the console's form."""
    await run_in_threadpool(require_merchant, chain, user)
    found = await run_in_threadpool(service.tokens, chain)
    units = service.parse_money(body.amount, found.stablecoin.decimals, found.stablecoin.symbol)

    def act() -> RedemptionOut:
        done = service.redeem(chain, business, user, units)
        return RedemptionOut(amount=service.money(done.stablecoin_units, found.stablecoin.decimals),
                             points=service.money(done.points_units, found.points.decimals),
                             tx_hash=done.sent.tx_hash, block_number=done.sent.block_number)

    log = service.action_log(request.app.state)
    return await run_in_threadpool(log.run, user.id, key, ("redeem", units), act)


@router.post("/redemptions", status_code=201, response_model=RedemptionOut,
             summary="Redeem points for stablecoin",
             responses=error_responses(*(error for error in _ACTION_ERRORS if error is not TooManyRequests)))
async def create_redemption(request: Request, body: RedemptionIn, user: UserDep, chain: ChainDep,
                            business: BusinessDep, idempotency_key: IdempotencyKey) -> RedemptionOut:
    """The merchant burns the points worth `amount` and receives that much stablecoin out of the reserve
    (`PointsToken.redeem`, sent from its own address).

    Refused in words, nothing sent: 403 unless a registered merchant; 422 for an amount that is not money
    or above the points it holds; 409 as for issuances."""
    return await redeem_points(request, body, idempotency_key, user, chain, business)


# ---------------------------------------------------------------- statements


class StatementLineOut(BaseModel):
    merchant: str = Field(description="The merchant's address, or `TOTAL` on the totals line.")
    name: str = Field(description="Its registered name (empty on the totals line).")
    points_issued: str
    points_redeemed: str
    paid_in: str = Field(description="Stablecoin it paid into the reserve, as money.")
    paid_out: str = Field(description="Stablecoin it took out of the reserve, as money.")
    net: str = Field(description="Paid in minus paid out (negative: the network paid it).")


class MerchantStatementOut(BaseModel):
    """The clearing statement of the days `from_date` to `to_date` (UTC), amounts as money."""

    from_date: date
    to_date: date
    from_block: int = Field(description="The first block stamped on or after `from_date` 00:00 UTC.")
    to_block: int = Field(description="The last block stamped before the day after `to_date`, 00:00 UTC.")
    currency: str = Field(description="The stablecoin's symbol.")
    merchants: list[StatementLineOut] = Field(description="One line per merchant that issued or redeemed.")
    totals: StatementLineOut
    reserve_before: str = Field(description="The reserve at the block before `from_block`.")
    reserve_after: str = Field(description="The reserve at `to_block`.")
    reserve_movement: str
    reconciled: bool = Field(description="Whether paid in minus paid out, and the sum of the nets, equal the "
                             "reserve's movement on chain.")
    discrepancies: list[str]


def statement_for_days(chain: ChainService, index: IndexReader, settings: Settings, user: User, from_date: date,
                       to_date: date) -> service.MoneyStatement:
    """The clearing statement of the days, for a merchant: 422 in words for an inverted range or days
    without a block."""
    require_merchant(chain, user)
    if to_date < from_date:
        raise service.Refused("order", f"to_date: {to_date.isoformat()} is before from_date {from_date.isoformat()}")
    blocks = service.blocks_between(chain, from_date, to_date)
    if blocks is None:
        raise service.Refused("empty", f"no block of the points token is stamped between {from_date.isoformat()} and "
                             f"{to_date.isoformat()} (UTC): choose other days")
    found = service.tokens(chain)
    return service.money_statement(points_statement(chain, index, settings, *blocks), from_date, to_date, found)


def statement_out(result: service.MoneyStatement) -> MerchantStatementOut:
    rows = [StatementLineOut(**row) for row in result.rows()]
    statement = result.statement
    return MerchantStatementOut(
        from_date=result.first_day, to_date=result.last_day, from_block=statement.from_block,
        to_block=statement.to_block, currency=result.symbol, merchants=rows[:-1], totals=rows[-1],
        reserve_before=result.amount(statement.reserve_before), reserve_after=result.amount(statement.reserve_after),
        reserve_movement=result.amount(statement.reserve_movement), reconciled=statement.reconciled,
        discrepancies=statement.discrepancies)


def statement_file(result: service.MoneyStatement, fmt: str) -> Response:
    """The statement as a CSV or PDF download."""
    name = f"points-statement-{result.first_day.isoformat()}-{result.last_day.isoformat()}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return Response(service.statement_csv(result), media_type="text/csv", headers=headers)
    return Response(service.statement_pdf(result), media_type="application/pdf", headers=headers)


CSV_EXAMPLE = ("merchant,name,points_issued,points_redeemed,paid_in,paid_out,net\r\n"
               "0x976EA74026E726554dB657fA54763abd0C3a0aa9,Wine Bar,30.00,0.00,30.00,0.00,30.00\r\n"
               "TOTAL,,30.00,0.00,30.00,0.00,30.00\r\n")


@router.get(
    "/statements", response_model=MerchantStatementOut, summary="Clearing statement between merchants over days",
    responses={
        200: {"description": "The statement: JSON, CSV with `format=csv`, PDF with `format=pdf`.",
              "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE},
                          "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
        **error_responses(Unauthorized, Forbidden, InvalidRequest, UpstreamUnavailable, NotDeployed, IndexBehind),
    },
)
async def merchant_statement(
    user: UserDep, chain: ChainDep, index: IndexDep, settings: SettingsDep,
    from_date: Annotated[date, Query(description="The first day (UTC), `YYYY-MM-DD`.")],
    to_date: Annotated[date, Query(description="The last day (UTC), inclusive.")],
    fmt: Annotated[str, Query(alias="format", pattern="^(json|csv|pdf)$",
                              description="`json` (default), `csv` or `pdf`.")] = "json",
) -> MerchantStatementOut | Response:
    """What every merchant issued and redeemed between the days, and what it paid into and took out of the
    reserve, as money; the totals; the reserve before and after. The days become blocks by their
    timestamps: from the first block stamped on or after `from_date` 00:00 UTC to the last stamped before
    the day after `to_date`. `reconciled` says whether the totals match the reserve's movement on chain.

    403 unless a registered merchant; 422 for `to_date` before `from_date` or days without a block; 503
    `index_behind` while the index has not reached the last block."""
    result = await run_in_threadpool(statement_for_days, chain, index, settings, user, from_date, to_date)
    if fmt == "json":
        return statement_out(result)
    return await run_in_threadpool(statement_file, result, fmt)
