"""The holder's pages under ``/app``: sign up, log in, log out (here or everywhere),
change the password, the cellar and a bottle's page.

Every page calls the function of the JSON API's route that does the same
thing (``api.routers.auth`` for the account, with its rate limits and login
throttle on ``app.state``; ``certificate_page`` of ``GET /me/certificates``;
``get_lot`` of ``GET /lots/{id}``; ``certificate_view`` of
``GET /certificates/{id}``), so a rule lives in one place and nothing the app
does is out of an API client's reach. Routes pass error *codes* to the
templates; every word a person reads is in the templates and the catalogs.

The pages are HTML forms, not part of the API's contract: they are left out of
the OpenAPI document (``include_in_schema=False``); the API routes they call
are in it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from babel.dates import format_timedelta
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.responses import Response

from api.chain import ChainService
from api.deps import ChainDep, IndexDep, SettingsDep, UsersDep
from api.errors import (
    AmphoraError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from api.index_schemas import HeldCertificate, LotSummaryOut
from api.routers import auth
from api.routers.certificates import certificate_view
from api.routers.index import certificate_page, get_lot
from api.schemas import CertificateState, LoginRequest, PasswordChangeRequest, SignupRequest, checksum_address
from api.security import DEFAULT_CSP
from api.settings import Settings
from api.users import User
from indexer.reader import IndexReader
from web.app import session, times
from web.render import Page, page_for, respond

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

#: Bottles a page of the cellar shows (the API's page size; the next page follows the cursor).
CELLAR_PAGE = 50
#: The most fields a form of the app has; a body with more is refused unread.
MAX_FIELDS = 8
#: Messages the login page may show after a redirect (``?done=``); anything else shows nothing.
NOTICES = frozenset({"logout", "everywhere", "expired"})
#: The account page's notices.
ACCOUNT_NOTICES = frozenset({"password", "timezone"})
#: What the holder may do with a bottle in each state (the buttons are not wired yet: see docs/holder-app.md).
ACTIONS: dict[str, tuple[str, ...]] = {
    CertificateState.active: ("transfer", "gift", "redeem", "flag", "borrow"),
    CertificateState.gift_pending: ("revoke_gift",),
    CertificateState.pledged: ("repay",),
}
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": session.REFERRER_POLICY}
#: The app's pages run their own scripts only (the reader's time zone, the live activity), which may
#: read this origin's event streams.
APP_CSP = DEFAULT_CSP + "; script-src 'self'; connect-src 'self'"
_FORM_ERRORS = error_responses(Unauthorized, Forbidden, Conflict, InvalidRequest, TooManyRequests,
                               ServiceUnavailable, html=True)


# ------------------------------------------------------------------ helpers


def href(request: Request, path: str, **params: str) -> str:
    """``path`` keeping the language the reader chose with the switch (``?lang=``)."""
    query = dict(params)
    if "lang" in request.query_params:
        query["lang"] = request.query_params["lang"]
    return f"{path}?{urlencode(query)}" if query else path


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _page(request: Request, template: str, status: int = 200, user: User | None = None, token: str | None = None,
          headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    page = page_for(request, times.zone_of(request))
    csrf = session.csrf_token(_settings(request), token) if token else ""
    return respond(template, page, status_code=status,
                   headers={**_HEADERS, "Content-Security-Policy": APP_CSP, **(headers or {})}, account=user,
                   csrf=csrf, csrf_field=session.CSRF_FIELD, href=lambda path, **p: href(request, path, **p),
                   tz_reload=request.method == "GET", zone_names=times.zone_names,
                   zone_choice=times.chosen(request), **context)


def _redirect(request: Request, path: str, **params: str) -> RedirectResponse:
    return RedirectResponse(href(request, path, **params), status_code=303, headers=_HEADERS)


def _signed_in(request: Request) -> tuple[User, str] | None:
    """The account of the request's session cookie and its token, or None."""
    token = session.session_token(request, _settings(request))
    if token is None:
        return None
    try:
        return request.app.state.users.authenticate(token), token
    except Unauthorized:
        return None


def _wait(page: Page, error: AmphoraError) -> str:
    seconds = getattr(error, "retry_after", 60)
    return format_timedelta(timedelta(seconds=seconds), locale=page.locale, threshold=1.1)


async def _form(request: Request, max_fields: int = MAX_FIELDS) -> dict[str, str] | None:
    """The fields of a URL-encoded form (the first of each name); None when the
    body is not one (another content type, not UTF-8, more than ``max_fields`` fields)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=max_fields, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _refused(request: Request, reason: str) -> HTMLResponse:
    """403: the form did not come from this site's page, or its token is missing or wrong. Nothing changed."""
    return _page(request, "app/refused.html", status=403, reason=reason)


def _error_status(error: AmphoraError | ValidationError) -> tuple[int, dict[str, str]]:
    if isinstance(error, ValidationError):
        return 422, {}
    return error.status_code, error.headers


def _field_errors(error: ValidationError) -> set[str]:
    """The form fields a validation error names."""
    return {str(e["loc"][0]) for e in error.errors() if e.get("loc")}


# -------------------------------------------------------------------- pages


@router.get("", responses={303: {"description": "To the cellar, or to the login page."}})
def home(request: Request) -> Response:
    """The app's front door: the cellar when signed in, else the login page."""
    return _redirect(request, "/app/cellar" if _signed_in(request) else "/app/login")


@router.get("/login")
def login_page(request: Request) -> Response:
    if _signed_in(request):
        return _redirect(request, "/app/cellar")
    notice = request.query_params.get("done")
    from web.app.wallet import WALLET_HEADERS  # its "Connect a wallet" runs /static/wallet.js

    return _page(request, "app/login.html", notice=notice if notice in NOTICES else None, identifier="",
                 error=None, headers=WALLET_HEADERS)


@router.post("/login", responses=_FORM_ERRORS)
async def login(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """Log in with the JSON API's ``POST /auth/login`` (its throttle included):
    the session token goes into the cookie, and the browser on to the cellar."""
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = await _form(request)
    if form is None:
        return _refused(request, "form")
    identifier = form.get("identifier", "")
    try:
        body = LoginRequest(identifier=identifier, password=form.get("password", ""))
        answer = await run_in_threadpool(auth.login, body, users, Response(), request)
    except (ValidationError, Unauthorized, TooManyRequests, ServiceUnavailable) as err:
        status, headers = _error_status(err)
        code = {401: "wrong", 422: "wrong", 429: "throttled"}.get(status, "busy")
        return _page(request, "app/login.html", status=status, headers=headers, notice=None,
                     identifier=identifier, error=code, wait=_wait(page_for(request), err)
                     if isinstance(err, TooManyRequests) else "")
    previous = session.session_token(request, settings)
    if previous:  # this browser's earlier session ends: one browser, one session
        users.logout(previous)
    response = _redirect(request, "/app/cellar")
    session.set_session(response, settings, answer.token)
    return response


@router.get("/signup")
def signup_page(request: Request) -> Response:
    if _signed_in(request):
        return _redirect(request, "/app/cellar")
    return _page(request, "app/signup.html", identifier="", errors=set(), error=None)


@router.post("/signup", responses=_FORM_ERRORS)
async def signup(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """Create the account with the JSON API's ``POST /auth/signup`` (its rate
    limit per network included) and sign the browser in."""
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = await _form(request)
    if form is None:
        return _refused(request, "form")
    identifier, password = form.get("identifier", ""), form.get("password", "")

    def again(status: int, errors: set[str], error: str | None = None, headers: dict[str, str] | None = None,
              wait: str = "") -> HTMLResponse:
        return _page(request, "app/signup.html", status=status, headers=headers, identifier=identifier,
                     errors=errors, error=error, wait=wait)

    if password != form.get("confirm", ""):
        return again(422, {"confirm"})
    try:
        body = SignupRequest(identifier=identifier, password=password)
        answer = await run_in_threadpool(auth.signup, body, users, Response(), request)
    except ValidationError as err:
        return again(422, _field_errors(err))
    except InvalidRequest as err:  # the store's own check of the identifier (spaces, control characters)
        return again(422, {"password"} if err.detail.startswith("password") else {"identifier"})
    except Conflict as err:
        # The form sent twice (or its owner signing up again): the right password logs in, through the
        # login's throttle; anyone else learns only what the API's 409 tells.
        try:
            answer = await run_in_threadpool(auth.login, LoginRequest(identifier=identifier, password=password),
                                             users, Response(), request)
        except AmphoraError:
            return again(409, {"identifier"}, "taken", err.headers)
    except TooManyRequests as err:
        return again(429, set(), "throttled", err.headers, _wait(page_for(request), err))
    except ServiceUnavailable as err:
        return again(503, set(), "busy", err.headers)
    response = _redirect(request, "/app/cellar")
    session.set_session(response, settings, answer.token)
    return response


async def _signed_in_form(request: Request, settings: Settings, missing: str = "expired",
                          max_fields: int = MAX_FIELDS, fields: dict[str, str] | None = None,
                          ) -> tuple[User, str, dict[str, str]] | Response:
    """A signed-in form's account, session token and fields; or the answer
    refusing it (403 from elsewhere, without the right token or with more than
    ``max_fields`` fields, 303 to the login page saying ``missing`` without a
    session: a logout sent twice lands where the first one did). A refused form
    changes nothing. ``fields``: the form already read (a multipart form's text
    fields), instead of reading a URL-encoded body."""
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = fields if fields is not None else await _form(request, max_fields)
    if form is None:
        return _refused(request, "form")
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login", done=missing)
    user, token = signed_in
    if not session.csrf_valid(settings, token, form.get(session.CSRF_FIELD)):
        return _refused(request, "token")
    return user, token, form


@router.post("/logout", responses={303: {"description": "To the login page."}, **_FORM_ERRORS})
async def logout(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """End this browser's session (``POST /auth/logout``) and forget the cookie."""
    checked = await _signed_in_form(request, settings, missing="logout")
    if isinstance(checked, Response):
        return checked
    user, token, _ = checked
    auth.logout(user, token, users)
    response = _redirect(request, "/app/login", done="logout")
    session.clear_session(response, settings)
    return response


@router.post("/logout-everywhere", responses={303: {"description": "To the login page."}, **_FORM_ERRORS})
async def logout_everywhere(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """End every session and API token of the account (``POST /auth/logout-everywhere``)."""
    checked = await _signed_in_form(request, settings, missing="everywhere")
    if isinstance(checked, Response):
        return checked
    user, _, _ = checked
    auth.logout_everywhere(user, users)
    response = _redirect(request, "/app/login", done="everywhere")
    session.clear_session(response, settings)
    return response


@router.get("/account")
def account_page(request: Request) -> Response:
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    notice = request.query_params.get("done")
    return _page(request, "app/account.html", user=user, token=token, errors=set(), error=None,
                 notice=notice if notice in ACCOUNT_NOTICES else None)


@router.post("/password", responses=_FORM_ERRORS)
async def change_password(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """Change the password (``POST /me/password``: the current one typed again,
    every session and API token revoked); the browser keeps the new session."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    new = form.get("new_password", "")

    def again(status: int, errors: set[str], error: str | None = None, headers: dict[str, str] | None = None,
              wait: str = "") -> HTMLResponse:
        return _page(request, "app/account.html", status=status, headers=headers, user=user, token=token,
                     errors=errors, error=error, wait=wait, notice=None)

    if new != form.get("confirm", ""):
        return again(422, {"confirm"})
    try:
        body = PasswordChangeRequest(current_password=form.get("current_password", ""), new_password=new)
        answer = await run_in_threadpool(auth.change_password, body, user, users, Response(), request)
    except ValidationError as err:
        return again(422, {"new_password" if "new_password" in _field_errors(err) else "current_password"})
    except InvalidRequest:
        return again(422, {"new_password"})
    except Forbidden:
        return again(403, {"current_password"})
    except TooManyRequests as err:
        return again(429, set(), "throttled", err.headers, _wait(page_for(request), err))
    except (Conflict, ServiceUnavailable) as err:
        return again(err.status_code, set(), "busy", err.headers)
    response = _redirect(request, "/app/account", done="password")
    session.set_session(response, settings, answer.token)
    return response


# ------------------------------------------------------------ the cellar


def _custodian_names(chain: ChainService, first_tokens: dict[int, int]) -> dict[int, str]:
    """Lot id => the name its custodian is registered under, read from the
    chain at one block (one read per lot); a lot whose read fails is left out."""
    names: dict[int, str] = {}
    try:
        block = chain.latest_block_ref()
    except AmphoraError:
        return names
    for lot_id, token_id in first_tokens.items():
        try:
            names[lot_id] = chain.certificate_at(token_id, block).custodian_name
        except AmphoraError as err:
            logger.info("custodian of lot %s unread: %s", lot_id, err.detail)
    return names


@router.get("/cellar", responses=error_responses(ServiceUnavailable, html=True))
async def cellar(request: Request, chain: ChainDep, index: IndexDep) -> Response:
    """The bottles the account holds, from the index (``GET /me/certificates``),
    each with its lot's bottle count and custodian (``GET /lots/{id}``) and the
    custodian's registered name (from the chain)."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    cursor = request.query_params.get("after")
    try:
        held = await certificate_page(index, chain.chain_id, checksum_address(user.address),
                                      cursor[:200] if cursor else None, CELLAR_PAGE, None, None)
        lots = {lot_id: await _lot(chain, index, lot_id) for lot_id in {c.lot_id for c in held.certificates}}
    except InvalidRequest:  # a cursor made up by hand: the first page
        return _redirect(request, "/app/cellar")
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    names = await run_in_threadpool(_custodian_names, chain, {
        lot_id: int(lot.first_token_id) for lot_id, lot in lots.items() if lot is not None})
    bottles = [_bottle(c, lots.get(c.lot_id), names) for c in held.certificates]
    return _page(request, "app/cellar.html", user=user, token=token, bottles=bottles, next_cursor=held.next_cursor,
                 lag=held.lag)


async def _lot(chain: ChainService, index: IndexReader, lot_id: int) -> LotSummaryOut | None:
    try:
        return (await get_lot(lot_id, chain, index)).lot
    except NotFound:
        return None


def _bottle(held: HeldCertificate, lot: LotSummaryOut | None, names: dict[int, str]) -> dict[str, Any]:
    return {"token_id": int(held.token_id), "wine": held.wine, "producer": held.producer, "vintage": held.vintage,
            "lot_id": int(held.lot_id), "serial": held.serial, "state": held.state.value,
            "bottle_count": lot.bottle_count if lot else None,
            "custodian": names.get(int(held.lot_id)) or (lot.custodian if lot else None)}


@router.get("/bottles/{token_id}", responses=error_responses(NotFound, ServiceUnavailable, html=True))
async def bottle(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> Response:
    """One of the account's bottles: its facts, its state and custodian from the
    chain, its history from the index (``GET /certificates/{id}``), and what the
    holder can do with it. 404 in words for a bottle that is not the account's
    (someone else's, never issued, or no number at all): the page does not tell
    which, so it cannot be used to probe other people's cellars."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    if number is None or number >= 2**256:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    try:
        view = await run_in_threadpool(certificate_view, chain, index, settings, number)
    except NotFound:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    if view.owner is None or view.owner.lower() != user.address.lower():
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    return _page(request, "app/bottle.html", user=user, token=token, view=view,
                 state=view.state.value, actions=ACTIONS.get(view.state, ()),
                 history=list(reversed(view.history)))



# ---------------------------------------- what the consoles (web.console) build on

#: A page of the signed-in app (its layout, session, CSRF token and language).
render_page = _page
#: A 303 to a page of the site, keeping the reader's language.
redirect = _redirect
#: The session's account and token, or None.
signed_in = _signed_in
#: A signed-in form's account, token and fields, or the answer refusing it.
signed_in_form = _signed_in_form
#: The fields of a URL-encoded form, or None.
form_fields = _form
