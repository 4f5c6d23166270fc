"""Self-custody in the holder's app: log in with a browser wallet, and transfer a
bottle with the wallet's own signature.

* ``POST /app/wallet/login``: the login page's script (``/static/wallet.js``)
  asks the wallet (EIP-1193 ``window.ethereum``) for its account, gets a Sign-In
  with Ethereum challenge from ``POST /auth/wallet/challenge``, has the wallet
  sign it (``personal_sign``) and posts message and signature here; the
  JSON API's ``wallet_login`` checks them and the session goes into the cookie,
  as after a password login.
* ``/app/bottles/{id}/wallet-transfer``: for a wallet account, the transfer form.
  Its first step (the recipient, looked up and shown for confirmation) works
  without a script; on the confirmation page the script fetches the typed data
  from the public ``GET /relay/typed-data/transfer``, has the wallet sign it
  (``eth_signTypedData_v4``) and posts the signature here, and the handler
  submits it through the public ``POST /relay/transfers`` route's function.
  The service never signs for a wallet account (it has no key for it).

Only these pages run a script: their ``Content-Security-Policy`` adds
``script-src 'self'`` (this site's files only, no inline code) and
``connect-src 'self'`` (the script's requests go to this service only).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import Response

from api.deps import ChainDep, IndexDep, RelayerDep, SettingsDep, UsersDep, relay_origin
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
from api.holder_notes import NoteKind, notes_of
from api.routers.relay import relay_flag, relay_gift_revocation, relay_redemption, relay_transfer
from api.routers.wallet import WalletLoginRequest, wallet_login
from api.schemas import (
    CertificateState,
    CertificateView,
    FlagRelayRequest,
    HolderActionRelayRequest,
    RedemptionRelayRequest,
    RelayAccepted,
    TransferRelayRequest,
)
from api.security import DEFAULT_CSP
from api.users import User
from web.app import routes, session
from web.app.moves import DONE, _mine, _not_now, transfer_front
from web.app.recipients import account_address
from web.render import page_for

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

#: The policy of the pages that run ``/static/wallet.js``: the API's, plus this site's scripts and requests.
PAGE_CSP = DEFAULT_CSP + "; script-src 'self'; connect-src 'self'"
WALLET_HEADERS = {"Content-Security-Policy": PAGE_CSP}
#: How long the wallet's transfer signature stays valid (seconds): time to read, sign and send.
DEADLINE_SECONDS = 15 * 60
_ONCE = session.FORM_KEY
_HASH = re.compile(r"^0x[0-9a-f]{64}$")
#: What the wallet signs on the sign page, per kind: the typed-data action
#: (``GET /relay/typed-data/{action}``) and the note's hash field (None: no note).
_SIGNED: dict[str, tuple[str, str | None]] = {"delivery": ("redemption", "order_hash"),
                                              "flag": ("flag", "reason_hash"), "revoke": ("gift-revocation", None)}
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ERRORS = error_responses(Unauthorized, Forbidden, NotFound, Conflict, InvalidRequest, TooManyRequests,
                          ServiceUnavailable, html=True)


# ------------------------------------------------------------------ log in


@router.post("/wallet/login", responses=_ERRORS)
async def login(request: Request, users: UsersDep, chain: ChainDep, settings: SettingsDep) -> Response:
    """The signed sign-in challenge from the login page's script, checked by the
    JSON API's ``POST /auth/wallet/login``; the session goes into the cookie."""
    if not session.same_origin(request, settings):
        return routes._refused(request, "origin")
    form = await routes._form(request)
    if form is None:
        return routes._refused(request, "form")
    try:
        # A browser sends a form field's line breaks as CRLF; the challenge's are LF.
        body = WalletLoginRequest.model_validate({"message": form.get("message", "").replace("\r\n", "\n"),
                                                  "signature": form.get("signature", "")})
        answer = await run_in_threadpool(wallet_login, body, request, chain, users, Response())
    except (ValidationError, Unauthorized, Conflict, ServiceUnavailable) as err:
        status = 422 if isinstance(err, ValidationError) else err.status_code
        code = {401: "wallet_refused", 409: "wallet_custodial", 422: "wallet_refused"}.get(status, "busy")
        return routes._page(request, "app/login.html", status=status, headers=WALLET_HEADERS, notice=None,
                            identifier="", error=code)
    previous = session.session_token(request, settings)
    if previous:  # one browser, one session
        users.logout(previous)
    response = routes._redirect(request, "/app/cellar")
    session.set_session(response, settings, answer.token)
    return response


# ------------------------------------------------------------ transfer


_once = session.new_form_key


@router.get("/bottles/{token_id}/wallet-transfer", responses=_ERRORS)
async def transfer_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep,
                        settings: SettingsDep) -> Response:
    signed_in = routes._signed_in(request)
    if signed_in is None:
        return routes._redirect(request, "/app/login")
    user, token = signed_in
    if not user.wallet:  # the service signs for a custodial account: the usual page
        return routes._redirect(request, f"/app/bottles/{token_id}/transfer")
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.active:
        return _not_now(request, user, token, view)
    return routes._page(request, "app/wallet_transfer.html", headers=WALLET_HEADERS, user=user, token=token,
                        view=view, once=_once(), recipient="", error=None, confirm=None, typed="")


@router.post("/bottles/{token_id}/wallet-transfer", responses=_ERRORS)
async def transfer(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                   users: UsersDep, relayer: RelayerDep) -> Response:
    """Two steps, as for a custodial account: the recipient looked up and shown
    for confirmation (with what the wallet will sign); then the wallet's
    signature, which is relayed through ``POST /relay/transfers``."""
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    if not user.wallet:
        return routes._redirect(request, f"/app/bottles/{token_id}/transfer")
    front = await transfer_front(request, token_id, form, chain, index, settings, relayer, user, token)
    if isinstance(front, Response):
        return front
    view, once = front
    recipient = form.get("recipient", "").strip()[:300]

    def page(status: int = 200, error: str | None = None, confirm: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, wait: str = "") -> HTMLResponse:
        typed = "" if confirm is None else "/relay/typed-data/transfer?" + urlencode({
            "from": user.address, "to": confirm["address"], "token_id": view.token_id,
            "deadline": confirm["deadline"]})
        return routes._page(request, "app/wallet_transfer.html", status=status,
                            headers={**WALLET_HEADERS, **(headers or {})}, user=user, token=token, view=view,
                            once=once, recipient=recipient, error=error, confirm=confirm, wait=wait, typed=typed)

    if _ADDRESS.match(recipient):
        address, name = recipient, None
    elif recipient.lower().startswith("0x") or not recipient:
        return page(422, "invalid")
    else:
        try:
            found = await account_address(request, users, user.id, recipient)
        except TooManyRequests as err:
            return page(429, "lookups", headers=err.headers, wait=routes._wait(page_for(request), err))
        if found is None:
            return page(404, "unknown")
        address, name = found, recipient
    if address.lower() == user.address.lower():
        return page(422, "self")
    confirm = {"name": name, "address": address, "deadline": int(time.time()) + DEADLINE_SECONDS}
    signature = form.get("signature", "")
    if not signature or form.get("to", "").lower() != address.lower():
        return page(confirm=confirm)
    deadline = form.get("deadline", "")
    confirm["deadline"] = int(deadline) if deadline.isdigit() and len(deadline) <= 20 else confirm["deadline"]
    try:
        body = TransferRelayRequest.model_validate({
            "from": user.address, "to": address, "token_id": view.token_id, "nonce": form.get("nonce", ""),
            "deadline": deadline, "signature": signature})
        origin = relay_origin(request, user, f"app-{once}")
        await run_in_threadpool(relay_transfer, body, relayer, settings, origin)
    except ValidationError:
        return page(422, "unsigned", confirm)
    except AmphoraError as err:
        status = err.status_code if err.status_code in (409, 429, 503) else 503
        code = "throttled" if isinstance(err, TooManyRequests) else "refused" if status == 409 else "busy"
        return page(status, code, confirm, err.headers,
                    routes._wait(page_for(request), err) if isinstance(err, TooManyRequests) else "")
    return routes._redirect(request, "/app/activity", done="transfer")


# ------------------------------------------------- delivery and report


def sign_note(request: Request, user: User, token: str, view: CertificateView, kind: NoteKind | str, once: str,
              note_hash: str, status: int = 200, error: str | None = None, deadline: int | None = None,
              headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page on which a wallet account signs its delivery request or report,
    once the text is kept off chain (``web/app/moves.py`` hands over here where
    it would have the service sign): its hash goes into the typed data. Also
    the cancellation of a pending gift (``kind`` ``revoke``, no note)."""
    action, field = _SIGNED[kind]
    deadline = deadline or int(time.time()) + DEADLINE_SECONDS
    query: dict[str, Any] = {"holder": user.address, "token_id": view.token_id, "deadline": deadline}
    if field is not None:
        query[field] = note_hash
    typed = f"/relay/typed-data/{action}?" + urlencode(query)
    return routes._page(request, "app/wallet_sign.html", status=status, headers={**WALLET_HEADERS, **(headers or {})},
                        user=user, token=token, view=view, kind=kind, once=once, note=note_hash, deadline=deadline,
                        typed=typed, error=error, wait="")


@router.post("/bottles/{token_id}/wallet-revoke", responses=_ERRORS)
async def revoke_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep,
                      settings: SettingsDep) -> Response:
    """The bottle page's "take the gift back" for a wallet account: the page that signs it."""
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, _ = checked
    if not user.wallet:
        return routes._refused(request, "form")
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.gift_pending:
        return _not_now(request, user, token, view)
    return sign_note(request, user, token, view, "revoke", _once(), "")


def _done(kind: str, token_id: str | int) -> str:
    return f"/app/bottles/{token_id}" if kind == "revoke" else DONE[kind].format(token_id=token_id)


@router.post("/bottles/{token_id}/wallet-sign/{kind}", responses=_ERRORS)
async def signed_note(request: Request, token_id: str, kind: str, chain: ChainDep, index: IndexDep,
                      settings: SettingsDep, relayer: RelayerDep) -> Response:
    """The wallet's signature of a delivery request, a report or a gift's
    cancellation: relayed through ``POST /relay/redemptions``, ``/relay/flags``
    or ``/relay/gift-revocations``; then the request's page (the bottle's for a
    cancellation)."""
    if kind not in _SIGNED:
        return routes._page(request, "app/not_yours.html", status=404)
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    once, note_hash = form.get("once", ""), form.get("note", "").lower()
    if not user.wallet or not _ONCE.match(once) or not (kind == "revoke" or _HASH.match(note_hash)):
        return routes._refused(request, "form")
    done = {"done": "sent"} if kind != "revoke" else {}
    if relayer.outbox.by_idempotency_key(user.id, f"app-{once}") is not None and token_id.isdigit():
        return routes._redirect(request, _done(kind, token_id), **done)  # the form sent again
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != (CertificateState.gift_pending if kind == "revoke" else CertificateState.active):
        return _not_now(request, user, token, view)
    if kind == "revoke":
        return await _relay_signed(request, user, token, view, kind, once, "", form, settings, relayer)
    store = notes_of(request.app.state)
    try:
        note = await run_in_threadpool(store.get, note_hash)
    except (NotFound, ServiceUnavailable):
        note = None
    if note is None or note.account != user.id or note.kind != kind or note.token_id != view.token_id:
        return routes._refused(request, "form")  # a hash this account did not write for this bottle
    return await _relay_signed(request, user, token, view, kind, once, note_hash, form, settings, relayer)


async def _relay_signed(request: Request, user: User, token: str, view: CertificateView, kind: str, once: str,
                        note_hash: str, form: dict[str, str], settings: Any, relayer: Any) -> Response:
    """Relay the wallet's signature of ``kind`` through its public ``/relay/*`` route."""
    deadline = form.get("deadline", "")
    shown = int(deadline) if deadline.isdigit() and len(deadline) <= 20 else None
    _, field = _SIGNED[kind]
    fields: dict[str, Any] = {"holder": user.address, "token_id": view.token_id, "nonce": form.get("nonce", ""),
                              "deadline": deadline, "signature": form.get("signature", "")}
    if field is not None:
        fields[field] = note_hash
    relays: dict[str, tuple[type[HolderActionRelayRequest], Callable[..., RelayAccepted]]] = {
        "delivery": (RedemptionRelayRequest, relay_redemption), "flag": (FlagRelayRequest, relay_flag),
        "revoke": (HolderActionRelayRequest, relay_gift_revocation)}
    model, call = relays[kind]
    try:
        body = model.model_validate(fields)
        origin = relay_origin(request, user, f"app-{once}")
        answer = await run_in_threadpool(call, body, relayer, settings, origin)
    except ValidationError:
        return sign_note(request, user, token, view, kind, once, note_hash, 422, "unsigned", shown)
    except AmphoraError as err:
        status = err.status_code if err.status_code in (409, 429, 503) else 503
        code = "throttled" if isinstance(err, TooManyRequests) else "refused" if status == 409 else "busy"
        return sign_note(request, user, token, view, kind, once, note_hash, status, code, shown, err.headers)
    if note_hash:
        await run_in_threadpool(notes_of(request.app.state).relayed, note_hash, str(answer.request_id))
    return routes._redirect(request, _done(kind, view.token_id), **({"done": "sent"} if note_hash else {}))
