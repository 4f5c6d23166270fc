"""The holder's gifts under ``/app``: give a bottle as a gift (a claim link and
its QR code, shown once), take a pending gift back, and accept a gift from its
link (signing up or logging in first when needed).

Every action calls the JSON API's custodial route that does the same thing
(``custodial_gift``, ``custodial_gift_revocation``, ``custodial_gift_claim`` of
``/me/relay/*``), with its rate limit, simulation and idempotency, so nothing
here is out of an API client's reach.

**The claim key.** The server makes it when the gift form is sent: its secret
is ``HMAC-SHA256`` (under a key derived from the master key) of a random value
the form carried (``once``), the account and the bottle. Neither the value nor
the secret is stored or logged: the secret exists in the answer to that one
request (the page with the link and its QR code) and nowhere else. Because a
second submit of the same form carries the same ``once``, it makes the same key
and the same request to the relayer (its ``Idempotency-Key`` is the ``once``):
a double submit is one gift, and the second answer shows the same link.

**The claim link** is ``<base>/app/claim/<token id>#claim=<secret>``
(:func:`amphora.qr.claim_link`): the secret is in the fragment, which a browser
never sends. The claim page's one script (``/static/claim.js``, allowed by that
page's own ``Content-Security-Policy``) copies it into the form; without
scripts the person pastes it. Before an account exists, the secret travels in
the sign-up or login form itself, never in a server session or a URL query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import Response

from amphora import qr
from api.deps import ChainDep, IndexDep, RelayerDep, SettingsDep, UsersDep, custodial_origin
from api.errors import (
    AmphoraError,
    Conflict,
    InvalidRequest,
    NotFound,
    RelayRefused,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from api.routers import auth
from api.routers.certificates import certificate_view
from api.routers.custodial import (
    CustodialGift,
    CustodialGiftClaim,
    CustodialToken,
    custodial_gift,
    custodial_gift_claim,
    custodial_gift_revocation,
)
from api.schemas import CertificateState, CertificateView, LoginRequest, SignupRequest
from api.security import DEFAULT_CSP
from api.settings import Settings
from api.users import User, parse_master_key
from web.app import session
from web.app.routes import _form, _page, _redirect, _refused, _settings, _signed_in, _signed_in_form, _wait
from web.render import page_for
from web.verify import label, lot_document

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

#: The claim page's policy: the API's, plus this site's own scripts (``/static/claim.js``).
CLAIM_CSP = DEFAULT_CSP + "; script-src 'self'"
#: How far ahead a gift's last day may be.
MAX_GIFT_DAYS = 5 * 366
#: How long the gift form proposes.
DEFAULT_GIFT_DAYS = 30
_ONCE = re.compile(r"[0-9a-f]{64}")
_SECRET = re.compile(r"(?:0x)?([0-9a-fA-F]{64})")
_GONE: dict[int | str, dict[str, Any]] = {
    410: {"description": "The gift was accepted, taken back or has expired: said in words."}}
_ACTION_ERRORS = error_responses(NotFound, Conflict, InvalidRequest, TooManyRequests, ServiceUnavailable, html=True)


# ------------------------------------------------------------------ helpers


@cache
def _gift_key(master_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"amphora app gift claim key v1").derive(parse_master_key(master_key))


def claim_secret(settings: Settings, once: str, account: str, token_id: int) -> str:
    """The claim key's secret of the gift form carrying ``once``, sent by
    ``account`` for bottle ``token_id`` (0x hex). Without a master key there
    are no custodial accounts, so no gift: 503."""
    if settings.master_key is None:
        raise ServiceUnavailable("custodial accounts are not configured")
    try:
        key = _gift_key(settings.master_key.get_secret_value())
    except ValueError as err:
        raise ServiceUnavailable("custodial accounts are not configured") from err
    digest = hmac.new(key, f"{once}|{account}|{token_id}".encode(), hashlib.sha256).digest()
    # A digest outside 1..n-1 (about 2**-128) is no key: the form is refused, and a new form tries another value.
    Account.from_key(digest)
    return "0x" + digest.hex()


def _token_number(token_id: str) -> int | None:
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    return number if number is not None and 0 < number < 2**256 else None


async def _view(request: Request, chain: Any, index: Any, number: int) -> CertificateView:
    return await run_in_threadpool(certificate_view, chain, index, _settings(request), number)


def _wine(request: Request, view: CertificateView) -> str:
    """The wine's name in the reader's language: the lot document's translation when it has
    one (as the verification page shows it), else the name on chain ("" when none)."""
    settings = _settings(request)
    doc = lot_document(settings.lot_document_path(request.app.state.chain.chain_id, view.lot_id),
                       view.lot.metadata_hash)
    return label(view, doc, page_for(request).language, settings.public_base_url).wine


def _last_gift_event(view: CertificateView) -> str | None:
    """``GiftClaimed`` or ``GiftRevoked``: how the bottle's last gift ended (from its history)."""
    for entry in reversed(view.history):
        if entry.event in ("GiftClaimed", "GiftRevoked", "GiftCreated"):
            return entry.event
    return None


def _qr_data_uri(link: str) -> str:
    return "data:image/png;base64," + base64.b64encode(qr.png(link, scale=6)).decode()


def _relay_error(error: AmphoraError) -> str:
    if isinstance(error, TooManyRequests):
        return "throttled"
    if isinstance(error, RelayRefused | Conflict):
        return "refused"
    return "busy"


# ------------------------------------------------------------- give a gift


def _gift_form(request: Request, user: User, token: str, view: CertificateView, status: int = 200,
               error: str | None = None, expiry: str = "", wait: str = "") -> HTMLResponse:
    today = datetime.now(UTC).date()
    return _page(request, "app/gifts_form.html", status=status, user=user, token=token, view=view,
                 once=secrets.token_hex(32), error=error, wait=wait,
                 expiry=expiry or (today + timedelta(days=DEFAULT_GIFT_DAYS)).isoformat(),
                 first_day=(today + timedelta(days=1)).isoformat(),
                 last_day=(today + timedelta(days=MAX_GIFT_DAYS)).isoformat())


async def _own_bottle(request: Request, chain: Any, index: Any, user: User, token: str,
                      token_id: str) -> CertificateView | Response:
    """The account's bottle ``token_id``; or the page saying it is not in the cellar (404) or unreadable (503)."""
    number = _token_number(token_id)
    if number is None:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    try:
        view = await _view(request, chain, index, number)
    except NotFound:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    if view.owner is None or view.owner.lower() != user.address.lower():
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    return view


@router.get("/bottles/{token_id}/gift", responses=error_responses(NotFound, ServiceUnavailable, html=True))
async def gift_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep) -> Response:
    """The gift form of one of the account's bottles: the last day the gift can be accepted."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    view = await _own_bottle(request, chain, index, user, token, token_id)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.active:
        return _page(request, "app/gifts_form.html", status=409, user=user, token=token, view=view,
                     error="state", once="", expiry="", first_day="", last_day="", wait="")
    return _gift_form(request, user, token, view)


def _expiry(text: str) -> int | None:
    """The Unix time ending the day ``text`` (``YYYY-MM-DD``, UTC), if that day is
    from tomorrow to :data:`MAX_GIFT_DAYS` ahead; else None."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    today = datetime.now(UTC).date()
    if not today < day <= today + timedelta(days=MAX_GIFT_DAYS):
        return None
    return int(datetime.combine(day, time(23, 59, 59), tzinfo=UTC).timestamp())


@router.post("/bottles/{token_id}/gift", responses=_ACTION_ERRORS)
async def give(request: Request, token_id: str, chain: ChainDep, index: IndexDep, users: UsersDep,
               relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Gift the bottle (``POST /me/relay/gifts``) to a fresh claim key and show
    its link and QR code, this once."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    view = await _own_bottle(request, chain, index, user, token, token_id)
    if isinstance(view, Response):
        return view
    once = form.get("once", "")
    expiry_text = form.get("expiry", "")[:20]
    if not _ONCE.fullmatch(once):
        return _refused(request, "form")
    expiry = _expiry(expiry_text)
    if expiry is None:
        return _gift_form(request, user, token, view, status=422, error="expiry", expiry=expiry_text)
    try:
        secret = claim_secret(settings, once, user.id, int(view.token_id))
    except ValueError:
        return _gift_form(request, user, token, view, status=422, error="again", expiry=expiry_text)
    body = CustodialGift(token_id=int(view.token_id), claim_key=Account.from_key(secret).address, expiry=expiry)
    try:
        origin = custodial_origin(request, user, f"app-gift-{once}")
        await run_in_threadpool(custodial_gift, body, user, users, chain, relayer, settings, origin)
    except (Conflict, RelayRefused, TooManyRequests, ServiceUnavailable, InvalidRequest) as err:
        code = "used" if type(err) is Conflict else _relay_error(err)
        return _gift_form(request, user, token, view, status=err.status_code, error=code, expiry=expiry_text,
                          wait=_wait(page_for(request), err) if isinstance(err, TooManyRequests) else "")
    link = qr.claim_link(settings.public_base_url, int(view.token_id), secret)
    return _page(request, "app/gifts_link.html", user=user, token=token, view=view, link=link,
                 qr=_qr_data_uri(link), expiry=expiry)


@router.post("/bottles/{token_id}/gift/revoke", responses=_ACTION_ERRORS)
async def take_back(request: Request, token_id: str, chain: ChainDep, index: IndexDep, users: UsersDep,
                    relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Take back the bottle's pending gift (``POST /me/relay/gift-revocations``).
    One action per gift: its ``Idempotency-Key`` names the gift's claim key, so
    the button pressed twice revokes once."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, _ = checked
    view = await _own_bottle(request, chain, index, user, token, token_id)
    if isinstance(view, Response):
        return view
    if view.gift is None:
        return _page(request, "app/gifts_revoked.html", status=409, user=user, token=token, view=view,
                     error="state")
    try:
        origin = custodial_origin(request, user, f"app-revoke-{view.token_id}-{view.gift.claim_key}")
        await run_in_threadpool(custodial_gift_revocation, CustodialToken(token_id=int(view.token_id)), user,
                                users, chain, relayer, settings, origin)
    except (Conflict, RelayRefused, TooManyRequests, ServiceUnavailable, InvalidRequest) as err:
        return _page(request, "app/gifts_revoked.html", status=err.status_code, user=user, token=token, view=view,
                     error=_relay_error(err))
    return _page(request, "app/gifts_revoked.html", user=user, token=token, view=view, error=None)


# ------------------------------------------------------------ accept a gift


def _claim_page(request: Request, view: CertificateView | None, status: int = 200, error: str | None = None,
                errors: frozenset[str] = frozenset(), mode: str = "", identifier: str = "", secret: str = "",
                wait: str = "", headers: dict[str, str] | None = None) -> HTMLResponse:
    """The claim page of ``view``'s gift: what it is and the form(s) accepting it, or why it cannot be."""
    signed_in = _signed_in(request)
    user, token = signed_in if signed_in else (None, None)
    if view is None:
        standing = "unknown"
    elif view.gift is not None:
        standing = "expired" if view.gift.expired else "open"
    elif user is not None and view.owner and view.owner.lower() == user.address.lower():
        standing = "mine"
    else:
        standing = {"GiftClaimed": "claimed", "GiftRevoked": "revoked"}.get(_last_gift_event(view) or "", "gone")
    if standing != "open" and status == 200:
        status = 404 if standing == "unknown" else 410
    return _page(request, "app/gifts_claim.html", status=status, user=user, token=token, view=view,
                 wine=_wine(request, view) if view is not None else "", standing=standing, error=error,
                 errors=errors, mode=mode, identifier=identifier, secret=secret,
                 wait=wait, headers={"Content-Security-Policy": CLAIM_CSP, **(headers or {})})


@router.get("/claim/{token_id}", responses={**error_responses(NotFound, ServiceUnavailable, html=True), **_GONE})
async def claim_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep) -> Response:
    """A gift link's page (the secret stays in the fragment): the bottle offered,
    until when, and how to accept it; or, in words, that the link was already
    used, taken back or expired."""
    view = await _offered(request, token_id, chain, index)
    return view if isinstance(view, Response) else _claim_page(request, view)


async def _offered(request: Request, token_id: str, chain: Any, index: Any) -> CertificateView | Response:
    """The gifted bottle a claim link names, or the page to answer instead: the claim page of
    no gift for a token that is malformed or was never issued, 503 when the chain cannot be read."""
    number = _token_number(token_id)
    if number is None:
        return _claim_page(request, None)
    try:
        return await _view(request, chain, index, number)
    except NotFound:
        return _claim_page(request, None)
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503)


def _secret(text: str) -> str | None:
    """The claim secret of what was pasted or filled in: the secret, or a whole link ending in it."""
    text = text.strip()
    if "claim=" in text:
        text = text.rsplit("claim=", 1)[1]
    match = _SECRET.fullmatch(text)
    return "0x" + match.group(1).lower() if match else None


async def _account(request: Request, users: Any, form: dict[str, str], mode: str,
                   again: Any) -> tuple[User, str] | Response:
    """Sign up or log in with the claim form's fields (``POST /auth/signup`` or
    ``/auth/login``, their limits included): the account and its new session token."""
    identifier, password = form.get("identifier", ""), form.get("password", "")
    try:
        if mode == "signup":
            if password != form.get("confirm", ""):
                return again(422, "fields", frozenset({"confirm"}))
            try:
                answer = await run_in_threadpool(auth.signup, SignupRequest(identifier=identifier, password=password),
                                                 users, Response(), request)
            except Conflict as err:  # sent twice, or the person's own name: the right password logs in
                try:
                    answer = await run_in_threadpool(auth.login, LoginRequest(identifier=identifier,
                                                                              password=password),
                                                     users, Response(), request)
                except AmphoraError:
                    return again(409, "taken", frozenset({"identifier"}), headers=err.headers)
        else:
            answer = await run_in_threadpool(auth.login, LoginRequest(identifier=identifier, password=password),
                                             users, Response(), request)
    except ValidationError as err:
        fields = frozenset(str(e["loc"][0]) for e in err.errors() if e.get("loc"))
        return again(422, "wrong" if mode == "login" else "fields", fields or frozenset({"identifier"}))
    except InvalidRequest as err:
        return again(422, "fields", frozenset({"password" if err.detail.startswith("password") else "identifier"}))
    except Unauthorized:
        return again(401, "wrong", frozenset())
    except TooManyRequests as err:
        return again(429, "throttled", frozenset(), headers=err.headers, wait=_wait(page_for(request), err))
    except ServiceUnavailable as err:
        return again(503, "busy", frozenset(), headers=err.headers)
    return users.authenticate(answer.token), answer.token


@router.post("/claim/{token_id}", responses={**_ACTION_ERRORS, **_GONE})
async def claim(request: Request, token_id: str, chain: ChainDep, index: IndexDep, users: UsersDep,
                relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Accept the gift into the signed-in account (``POST /me/relay/gift-claims``);
    signed out, with ``mode`` ``signup`` or ``login``, create the account or log
    in first, in the same request. The code is checked against the gift before
    any account is made; nothing is sent for a wrong code, a used, taken-back or
    expired gift."""
    if not session.same_origin(request, settings):
        return _refused(request, "origin")
    form = await _form(request)
    if form is None:
        return _refused(request, "form")
    view = await _offered(request, token_id, chain, index)
    if isinstance(view, Response):
        return view
    mode = form.get("mode", "")
    mode = mode if mode in ("signup", "login") else ""
    identifier = form.get("identifier", "")[:254]
    secret = _secret(form.get("secret", ""))

    def again(status: int, error: str, errors: frozenset[str] = frozenset(), headers: dict[str, str] | None = None,
              wait: str = "") -> HTMLResponse:
        return _claim_page(request, view, status=status, error=error, errors=errors, mode=mode,
                           identifier=identifier, secret=secret or "", wait=wait, headers=headers)

    if view.gift is None or view.gift.expired:
        return _claim_page(request, view)
    if secret is None:
        return again(422, "secret", frozenset({"secret"}))
    try:
        opens = Account.from_key(secret).address.lower() == view.gift.claim_key.lower()
    except ValueError:
        opens = False
    if not opens:
        secret = None  # not echoed back: it opens nothing here
        return again(422, "secret", frozenset({"secret"}))
    new_session: str | None = None
    if mode:
        account = await _account(request, users, form, mode, again)
        if isinstance(account, Response):
            return account
        user, new_session = account
        token = new_session
    else:
        signed_in = _signed_in(request)
        if signed_in is None:
            return again(401, "signed_out")
        user, token = signed_in
        if not session.csrf_valid(settings, token, form.get(session.CSRF_FIELD)):
            return _refused(request, "token")
    body = CustodialGiftClaim(token_id=int(view.token_id), claim_secret=secret)
    try:
        origin = custodial_origin(request, user, f"app-claim-{view.token_id}-{view.gift.claim_key}")
        await run_in_threadpool(custodial_gift_claim, body, user, relayer, settings, origin)
        error: str | None = None
        status = 200
    except (Conflict, RelayRefused, TooManyRequests, ServiceUnavailable, InvalidRequest) as err:
        error, status = _relay_error(err), err.status_code
    previous = session.session_token(request, settings) if new_session else None
    response = _page(request, "app/gifts_claimed.html", status=status, user=user, token=token,
                     view=view, wine=_wine(request, view), error=error)
    if new_session:
        if previous:
            users.logout(previous)
        session.set_session(response, settings, new_session)
    return response
