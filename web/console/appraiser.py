"""The appraiser's console (``/console/appraiser``): every lot with its latest
appraisal and its age, and a form per lot to post a new value per bottle in
stablecoin, as money a person types (``45.50``).

The page calls the JSON API's route functions (:mod:`api.routers.custody_console`):
``appraisal_list`` of ``GET /appraiser/lots`` and ``post_appraisal`` of
``POST /appraiser/lots/{id}/appraisals``, which need the role, parse the
amount and simulate the call. A form carries a one-time key: sent twice, it
posts once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from babel.dates import format_timedelta
from babel.numbers import NumberFormatError, format_decimal, parse_decimal
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.business import Roles
from api.deps import BusinessDep, ChainDep, IndexDep, SettingsDep
from api.errors import (
    AmphoraError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)
from api.routers.custody_console import AppraisalIn, AppraisalPage, appraisal_list, post_appraisal
from api.users import User
from indexer.reader import IndexReader
from web.app.routes import redirect, render_page
from web.console.custodian import act_once, failure, new_once
from web.console.routes import business_form, business_user, console_page
from web.console.wallet_send import wallet_send
from web.render import page_for

router = APIRouter(prefix="/console/appraiser", include_in_schema=False, default_response_class=HTMLResponse)

#: Money as a person reads it: at least cents, at most the stablecoin's six decimals.
MONEY_PATTERN = "#,##0.00####"
_ERRORS = error_responses(Unauthorized, Forbidden, NotFound, InvalidRequest, ServiceUnavailable, html=True)


def _lots(request: Request, user: User, chain: Any, index: IndexReader, cursor: str | None) -> AppraisalPage:
    return appraisal_list(user, chain, index, cursor)


async def _home(request: Request, chain: Any, index: IndexReader, user: User, token: str, roles: Roles,
                status: int = 200, **context: Any) -> HTMLResponse:
    cursor = request.query_params.get("cursor")
    try:
        page = await run_in_threadpool(_lots, request, user, chain, index, cursor)
    except InvalidRequest:
        page = await run_in_threadpool(_lots, request, user, chain, index, None)
    locale = page_for(request).locale
    ages = {lot.lot_id: format_timedelta(timedelta(seconds=lot.age_seconds), locale=locale, threshold=1.1)
            for lot in page.lots if lot.age_seconds is not None}
    done = request.query_params.get("done")
    for name in ("error", "detail", "error_lot", "value"):
        context.setdefault(name, None)
    return console_page(request, "console/appraiser_home.html", user, token, roles, section="appraiser",
                        status=status, lots=page, ages=ages, once=new_once(), notice=done == "posted",
                        posted_lot=request.query_params.get("lot"),
                        money=lambda value: format_decimal(Decimal(value), format=MONEY_PATTERN, locale=locale),
                        **context)


@router.get("")
async def appraiser_home(request: Request, chain: ChainDep, index: IndexDep) -> Response:
    """The lots with their latest appraisal, its age, and a form to post one."""
    checked = await business_user(request, "appraiser")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    try:
        return await _home(request, chain, index, user, token, roles)
    except ServiceUnavailable:
        return render_page(request, "app/unavailable.html", status=503, user=user, token=token)


@router.post("/lots/{lot_id}", responses={303: {"description": "Back to the lots."}, **_ERRORS})
async def appraise(request: Request, lot_id: str, settings: SettingsDep, chain: ChainDep, index: IndexDep,
                   business: BusinessDep) -> Response:
    """Post the lot's value per bottle (``post_appraisal``, dated now)."""
    checked = await business_form(request, "appraiser", once=True)
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    value = form.get("value", "")[:80]
    if not lot_id.isdigit() or not 1 <= int(lot_id) < 2**64:
        return await _home(request, chain, index, user, token, roles, status=404, error="not_found")
    try:
        amount = parse_decimal(re.sub(r"[\s\u00a0\u202f]", "", value), locale=page_for(request).locale, strict=True)
        body = AppraisalIn(value_per_bottle=format(amount, "f"))
    except (NumberFormatError, ValueError):
        return await _home(request, chain, index, user, token, roles, status=422, error_lot=lot_id, value=value)
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/appraiser", post_appraisal, int(lot_id), body, user,
                                     chain, business)
        await act_once(request, user, form["once"], post_appraisal, int(lot_id), body, user, chain, business)
    except InvalidRequest:
        return await _home(request, chain, index, user, token, roles, status=422, error_lot=lot_id, value=value)
    except AmphoraError as err:
        status, error = failure(err)
        return await _home(request, chain, index, user, token, roles, status=status, error=error, detail=err.detail)
    return redirect(request, "/console/appraiser", done="posted", lot=lot_id)
