"""The operator's console under ``/console/operator``.

The operator signs in with the operator token (``AMPHORA_ADMIN_TOKEN``), not
with an account: the form keeps it in a cookie of its own, ``HttpOnly``,
``SameSite=Strict``, ``Secure`` on https, sent only to ``/console/operator``
and compared in constant time on every request, so a holder's session opens
nothing here and signing out of the app does not sign the operator out. A
wrong token is counted by the logins' throttle (under a key no account can
have) and changes nothing.

Every view calls the ``/admin`` route function that answers the same thing
as JSON (:mod:`api.routers.admin`): usage and quotas by identifier, a quota
change (``PUT /admin/quotas/{account}``, which writes the audit log), the
relayer's keys and balances, stuck and failed requests, the index's lag, the
sponsored gas per day against the budget, and the audit log. Forms carry a
token derived from the operator token (as the app's forms do from the
session) and are refused from another origin.
"""

from __future__ import annotations

import datetime as dt
import hmac
from decimal import Decimal
from typing import Any

from babel.dates import format_timedelta
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import Response

from api.errors import AmphoraError, RelayUnavailable, TooManyRequests
from api.operator import account_id_of, operator_id
from api.policy import DEFAULT, DEFAULT_NETWORK, GLOBAL, NETWORK
from api.ratelimit import client_key
from api.routers import admin
from api.settings import Settings
from web.app import session
from web.app.routes import form_fields, redirect, render_page
from web.charts import bar_chart
from web.render import page_for

router = APIRouter(prefix="/console/operator", include_in_schema=False, default_response_class=HTMLResponse)

PATH = "/console/operator"
#: The operator cookie: on https ``__Secure-`` (a ``__Host-`` cookie must have ``Path=/``).
COOKIE = "amphora_operator"
SECURE_COOKIE = "__Secure-amphora_operator"
#: How long a sign-in lasts (the browser forgets the token after that).
COOKIE_SECONDS = 8 * 3600
#: The logins' throttle key of the operator's sign-in: blank-led, so no account identifier equals it.
THROTTLE_KEY = " operator console"
#: Days the sponsored gas chart covers.
CHART_DAYS = 14
#: Quota rows that are not an account (kept as typed, not looked up by identifier).
SPECIAL_ACCOUNTS = (GLOBAL, DEFAULT, DEFAULT_NETWORK)
#: Notices the dashboard shows after a redirect (``?done=``).
NOTICES = frozenset({"quota", "signed-out"})
WEI_PER_ETH = Decimal(10**18)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _expected(settings: Settings) -> str | None:
    return settings.admin_token.get_secret_value() if settings.admin_token else None


def _cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if session.secure(settings) else COOKIE


def operator_token(request: Request) -> str | None:
    """The operator token of the request's cookie when it is the right one (in constant time), else None."""
    settings = _settings(request)
    expected = _expected(settings)
    given = request.cookies.get(_cookie_name(settings), "")
    if not expected or not given or len(given) > 512:
        return None
    return given if hmac.compare_digest(given.encode(), expected.encode()) else None


def _set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(_cookie_name(settings), token, max_age=COOKIE_SECONDS, path=PATH,
                        secure=session.secure(settings), httponly=True, samesite="strict")


def _clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(_cookie_name(settings), path=PATH, secure=session.secure(settings), httponly=True,
                           samesite="strict")


def _page(request: Request, template: str, status: int = 200, token: str | None = None,
          headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """An operator page: the console's layout, its operator section current, no account's navigation."""
    csrf = session.csrf_token(_settings(request), token) if token else ""
    return render_page(request, template, status=status, headers=headers, nav="console", section="operator",
                       sections=[], operator_csrf=csrf, **context)


def _sign_in_page(request: Request, status: int = 200, error: str | None = None, wait: str = "",
                  headers: dict[str, str] | None = None, notice: str | None = None) -> HTMLResponse:
    configured = bool(_expected(_settings(request)))
    return _page(request, "console/operator_sign_in.html", status=status if configured else 503, headers=headers,
                 error=error if configured else "unconfigured", wait=wait, notice=notice)


# -------------------------------------------------------------------- pages


@router.get("")
async def dashboard(request: Request) -> Response:
    """The sign-in form without the operator cookie; the operator's views with it."""
    token = operator_token(request)
    if token is None:
        notice = request.query_params.get("done")
        return _sign_in_page(request, notice=notice if notice == "signed-out" else None)
    views = await run_in_threadpool(_views, request)
    notice = request.query_params.get("done")
    return _page(request, "console/operator_dashboard.html", token=token,
                 notice=notice if notice in NOTICES else None, form=None, errors=set(), error=None, **views)


def _views(request: Request) -> dict[str, Any]:
    """What the dashboard shows, each from its ``/admin`` route."""
    state = request.app.state
    relayer, db, settings = state.relayer, state.db, state.settings
    page = page_for(request)
    usage = admin.get_usage(None, relayer, db, None)
    try:
        keys: admin.RelayerKeys | None = admin.get_relayer_keys(None, relayer)
        stuck: admin.TroubledRequests | None = admin.get_troubled_requests(None, relayer, settings, db, "stuck", 50)
        failed: admin.TroubledRequests | None = admin.get_troubled_requests(None, relayer, settings, db, "failed",
                                                                             50)
    except RelayUnavailable:
        keys = stuck = failed = None
    gas = admin.get_sponsored_gas(None, relayer, db, CHART_DAYS)
    chart = bar_chart(page.gettext("Sponsored gas per day"), page.gettext("units of gas"),
                      [(page.date(dt.date.fromisoformat(d.day), form="short"), d.gas) for d in gas.days])
    index = admin.get_index_lag(None, state.chain, state.index, settings, request)
    audit = admin.get_audit(None, request, db, 50)
    return {"usage": usage, "keys": keys, "stuck": stuck, "failed": failed, "gas": gas, "chart": chart,
            "index": index, "audit": audit.entries, "eth": lambda wei: Decimal(int(wei)) / WEI_PER_ETH,
            "when": lambda at: dt.datetime.fromtimestamp(at, dt.UTC)}


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the operator token (through the logins' throttle) and keep it in the operator cookie."""
    settings = _settings(request)
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = await form_fields(request)
    if form is None:
        return _refused(request, "form")
    expected = _expected(settings)
    if not expected:
        return _sign_in_page(request)
    throttle = request.app.state.login_throttle
    client = client_key(request)
    try:
        throttle.check(THROTTLE_KEY, client)
    except TooManyRequests as err:
        return _sign_in_page(request, 429, "throttled", _wait(request, err), err.headers)
    given = form.get("token", "").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        throttle.failed(THROTTLE_KEY, client)
        return _sign_in_page(request, 401, "wrong")
    throttle.succeeded(THROTTLE_KEY, client)
    response = redirect(request, PATH)
    _set_cookie(response, settings, given)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """Forget the operator cookie (a sign-out sent twice lands where the first one did)."""
    checked = await _operator_form(request)
    if isinstance(checked, Response):
        return checked
    response = redirect(request, PATH, done="signed-out")
    _clear_cookie(response, _settings(request))
    return response


@router.post("/quotas")
async def set_quota(request: Request) -> Response:
    """Set an account's daily quota with ``PUT /admin/quotas/{account}``: the
    account by identifier (or ``*``, ``default``, ``default-network``,
    ``net:<prefix>``). The same form sent twice sets the same limits: the
    second changes nothing and is not logged again."""
    checked = await _operator_form(request)
    if isinstance(checked, Response):
        return checked
    token, form = checked
    state = request.app.state
    identifier = form.get("account", "").strip()
    values = {"account": identifier, "actions_per_day": form.get("actions_per_day", "").strip(),
              "gas_per_day": form.get("gas_per_day", "").strip()}

    async def again(status: int, errors: set[str], error: str | None = None) -> HTMLResponse:
        views = await run_in_threadpool(_views, request)
        return _page(request, "console/operator_dashboard.html", status=status, token=token, notice=None,
                     form=values, errors=errors, error=error, **views)

    if identifier in SPECIAL_ACCOUNTS or identifier.startswith(NETWORK):
        account: str | None = identifier
    else:
        account = await run_in_threadpool(account_id_of, state.db, identifier)
    if not account or len(account) > 64:
        return await again(422, {"account"}, "unknown")
    try:
        body = admin.QuotaBody.model_validate({"actions_per_day": values["actions_per_day"],
                                               "gas_per_day": values["gas_per_day"]})
    except ValidationError as err:
        return await again(422, {str(e["loc"][0]) for e in err.errors() if e.get("loc")})
    try:
        await run_in_threadpool(admin.put_quota, None, state.relayer, body, operator_id(token), request, account)
    except AmphoraError:
        return await again(503, set(), "busy")
    return redirect(request, PATH, done="quota")


# ------------------------------------------------------------------ helpers


async def _operator_form(request: Request) -> tuple[str, dict[str, str]] | Response:
    """An operator form's token and fields; or the answer refusing it (403
    from elsewhere or without the right form token; the sign-in form without
    the operator cookie). A refused form changes nothing."""
    settings = _settings(request)
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = await form_fields(request)
    if form is None:
        return _refused(request, "form")
    token = operator_token(request)
    if token is None:
        return redirect(request, PATH)
    if not session.csrf_valid(settings, token, form.get(session.CSRF_FIELD)):
        return _refused(request, "token")
    return token, form


def _refused(request: Request, reason: str) -> HTMLResponse:
    return render_page(request, "app/refused.html", status=403, reason=reason)


def _wait(request: Request, error: TooManyRequests) -> str:
    return format_timedelta(dt.timedelta(seconds=error.retry_after), locale=page_for(request).locale, threshold=1.1)
