"""The merchant's console: ``/console/merchant`` (balances, cap, the reserve, the
forms to issue points to a customer and to redeem points) and
``/console/merchant/statements`` (the clearing statement between merchants over
days: a table, charts, CSV and PDF downloads).

Every action calls the JSON API's own route function (api/routers/merchant.py):
``issue_to_customer`` (``POST /merchant/issuances``), ``redeem_points``
(``POST /merchant/redemptions``), ``merchant_view`` (``GET /merchant``) and
``statement_for_days`` / ``statement_file`` (``GET /merchant/statements``). Each
form carries a random ``once`` field issued with the page: it becomes the
action's ``Idempotency-Key``, so a form sent twice is one action. Refusals come
back as codes (:class:`api.merchant.Refused`'s ``reason``); the words are in the
templates.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.business import GasUnfunded
from api.deps import BusinessDep, ChainDep, IndexDep, SettingsDep, UsersDep
from api.errors import AmphoraError, Conflict, IndexBehind, RelayRefused, ServiceUnavailable, TooManyRequests
from api.merchant import Refused
from api.routers.merchant import (
    IssuanceIn,
    MerchantOut,
    RedemptionIn,
    issue_to_customer,
    merchant_view,
    redeem_points,
    statement_file,
    statement_for_days,
)
from api.users import User
from web.app.routes import redirect, signed_in_form
from web.app.session import FORM_KEY, new_form_key
from web.charts import bar_chart
from web.console.routes import business_user, console_page
from web.console.wallet_send import wallet_send
from web.render import page_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/merchant", include_in_schema=False, default_response_class=HTMLResponse)

#: Days a statement covers when none are chosen (ending with the chain's day).
DEFAULT_DAYS = 30


def _money(request: Request) -> Any:
    """Formats money (a ``"12.50"`` string) in the reader's way: grouped, two to six decimals."""
    locale = page_for(request).locale
    return lambda text: format_decimal(Decimal(text), format="#,##0.00####", locale=locale)



async def _home(request: Request, user: User, token: str, roles: Any, chain: Any, status: int = 200,
                errors: set[str] | None = None, error: str | None = None, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Response:
    try:
        state: MerchantOut = await run_in_threadpool(merchant_view, chain, user)
    except ServiceUnavailable:
        return console_page(request, "app/unavailable.html", user, token, roles, section="merchant", status=503)
    notice = request.query_params.get("done")
    head = await run_in_threadpool(chain.latest_timestamp)
    last = datetime.fromtimestamp(head, UTC).date()
    return console_page(request, "console/merchant_home.html", user, token, roles, section="merchant",
                        status=status, headers=headers, state=state, money=_money(request), once=new_form_key(),
                        errors=errors or set(), error=error, form=form or {},
                        notice=notice if notice in ("issued", "redeemed") else None,
                        first_day=(last - timedelta(days=DEFAULT_DAYS)).isoformat(), last_day=last.isoformat(),
                        chosen_lang=request.query_params.get("lang", "")[:20])


@router.get("")
async def merchant_home(request: Request, chain: ChainDep) -> Response:
    """The merchant's balances, cap and the reserve, with the forms to issue and redeem."""
    checked = await business_user(request, "merchant")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return await _home(request, user, token, roles, chain)


async def _action(request: Request, settings: Any, chain: Any, kind: str, act: Any) -> Response:
    """A console form: the checks every form makes, then ``act(user, form, key)``; errors back on the page."""
    checked = await signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, _token, form = checked
    role = await business_user(request, "merchant")
    if isinstance(role, Response):
        return role
    user, token, roles = role
    fields = {name: form.get(name, "")[:300] for name in ("customer", "amount")}

    async def again(status: int, errors: set[str] | None = None, error: str | None = None,
                    headers: dict[str, str] | None = None) -> Response:
        return await _home(request, user, token, roles, chain, status, errors, error, {**fields, "kind": kind},
                           headers)

    once = form.get("once", "")
    if not FORM_KEY.match(once):
        return await again(422, error="form")
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/merchant", act, user, fields, f"console-{kind}:{once}")
        await act(user, fields, f"console-{kind}:{once}")
    except Refused as err:
        return await again(422, {err.reason})
    except TooManyRequests as err:
        return await again(429, error="throttled", headers=err.headers)
    except GasUnfunded:
        return await again(409, error="gas")
    except (RelayRefused, Conflict) as err:
        logger.info("merchant %s %s refused: %s", user.id, kind, err.detail)
        return await again(409, error="refused")
    except AmphoraError as err:
        logger.warning("merchant %s %s failed: %s", user.id, kind, err.detail)
        return await again(503 if err.status_code >= 500 else err.status_code, error="busy", headers=err.headers)
    return redirect(request, "/console/merchant", done="issued" if kind == "issue" else "redeemed")


@router.post("/issue")
async def issue_form(request: Request, chain: ChainDep, users: UsersDep, business: BusinessDep,
                     settings: SettingsDep) -> Response:
    """Issue points to a customer (``POST /merchant/issuances``)."""

    async def act(user: User, fields: dict[str, str], key: str) -> None:
        body = IssuanceIn.model_construct(customer=fields["customer"], amount=fields["amount"])
        await issue_to_customer(request, body, key, user, chain, users, business)

    return await _action(request, settings, chain, "issue", act)


@router.post("/redeem")
async def redeem_form(request: Request, chain: ChainDep, business: BusinessDep, settings: SettingsDep) -> Response:
    """Redeem points for stablecoin (``POST /merchant/redemptions``)."""

    async def act(user: User, fields: dict[str, str], key: str) -> None:
        await redeem_points(request, RedemptionIn.model_construct(amount=fields["amount"]), key, user, chain, business)

    return await _action(request, settings, chain, "redeem", act)


# ---------------------------------------------------------------- statements


def _days(request: Request, last: date) -> tuple[date, date] | None:
    """The ``from`` and ``to`` days of the query (default: the last :data:`DEFAULT_DAYS` up to ``last``)."""
    try:
        first_day = date.fromisoformat(request.query_params.get("from") or (last - timedelta(days=DEFAULT_DAYS))
                                       .isoformat())
        last_day = date.fromisoformat(request.query_params.get("to") or last.isoformat())
    except ValueError:
        return None
    return first_day, last_day


async def _statement(request: Request, chain: Any, index: Any, settings: Any
                     ) -> tuple[User, str, Any, Any, tuple[date, date] | None, str | None] | Response:
    """The signed-in merchant, the chosen days and their statement, or the error code in its place."""
    checked = await business_user(request, "merchant")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    last = datetime.fromtimestamp(await run_in_threadpool(chain.latest_timestamp), UTC).date()
    days = _days(request, last)
    if days is None:
        return user, token, roles, None, None, "dates"
    try:
        result = await run_in_threadpool(statement_for_days, chain, index, settings, user, *days)
    except Refused as err:
        return user, token, roles, None, days, err.reason
    except IndexBehind:
        return user, token, roles, None, days, "behind"
    return user, token, roles, result, days, None


@router.get("/statements")
async def statements(request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> Response:
    """The clearing statement of the chosen days: a table, charts by merchant, the downloads."""
    found = await _statement(request, chain, index, settings)
    if isinstance(found, Response):
        return found
    user, token, roles, result, days, error = found
    status = 200 if error is None else (503 if error == "behind" else 422)
    rows = result.rows() if result is not None else []
    query = {"from": days[0].isoformat(), "to": days[1].isoformat()} if days else {}
    return console_page(request, "console/merchant_statement.html", user, token, roles, section="merchant",
                        status=status, result=result, lines=rows[:-1], totals=rows[-1] if rows else None,
                        money=_money(request), error=error, query=query,
                        chosen_lang=request.query_params.get("lang", "")[:20],
                        first_day=request.query_params.get("from", query.get("from", ""))[:20],
                        last_day=request.query_params.get("to", query.get("to", ""))[:20],
                        chart_of=lambda title, unit, column: bar_chart(title, unit, [
                            (line["name"] or line["merchant"], Decimal(line[column])) for line in rows[:-1]]))


async def _download(request: Request, chain: Any, index: Any, settings: Any, fmt: str) -> Response:
    found = await _statement(request, chain, index, settings)
    if isinstance(found, Response):
        return found
    _user, _token, _roles, result, days, _error = found
    if result is None:
        query = {"from": days[0].isoformat(), "to": days[1].isoformat()} if days else {}
        return redirect(request, "/console/merchant/statements", **query)
    return await run_in_threadpool(statement_file, result, fmt)


@router.get("/statements.csv")
async def statement_csv(request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> Response:
    """The statement of the chosen days as CSV (``GET /merchant/statements?format=csv``)."""
    return await _download(request, chain, index, settings, "csv")


@router.get("/statements.pdf")
async def statement_pdf(request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> Response:
    """The statement of the chosen days as PDF (``GET /merchant/statements?format=pdf``)."""
    return await _download(request, chain, index, settings, "pdf")
