"""The holder's moves under ``/app``: transfer a bottle, request its delivery,
report it lost or stolen, and the activity page of the account's relayed
actions.

Every action goes through the JSON API's custodial route that does the same
thing (``custodial_transfer``, ``custodial_redemption``, ``custodial_flag`` of
``/me/relay/*``) with an ``Idempotency-Key`` made from a one-time field issued
with the form, so a form sent twice is one action. A delivery address and a
report's reason are kept off chain, encrypted, for the custodian
(:mod:`api.holder_notes`); only their hash goes on chain. The activity page
reads the relayer's outbox (what ``GET /relay/{id}`` answers), and follows it
live: ``GET /app/activity/events`` is a stream of server-sent events of the
account's requests whose status changed (read by ``/static/activity.js``;
without script, the page reloads itself while something is pending).

The stream is the session's only, checked again at every heartbeat (a logout
ends it); it ends after :data:`STREAM_SECONDS` (the script opens a new one
while something is pending), and an account holds at most
:data:`STREAMS_PER_ACCOUNT` at once, the service :data:`MAX_STREAMS` (429
beyond), so open connections cannot pile up.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import ChainDep, IndexDep, RelayerDep, SettingsDep, UsersDep, custodial_origin
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
from api.holder_notes import NoteKind, NoteStore, canonical, clean, notes_of
from api.outbox import CONFIRMED, FAILED
from api.relayer import Relayer
from api.routers.certificates import certificate_view
from api.routers.custodial import (
    CustodialFlag,
    CustodialRedemption,
    CustodialTransfer,
    custodial_flag,
    custodial_redemption,
    custodial_transfer,
)
from api.schemas import CertificateState, CertificateView
from api.settings import Settings
from api.users import User, UserStore
from web.app import routes, session
from web.app.recipients import account_address
from web.render import page_for

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

#: Actions the activity page lists (the newest).
ACTIVITY_PAGE = 50
#: Seconds between two loads of the activity page while an action is pending (without script).
REFRESH_SECONDS = 3
#: The longest an activity stream stays open (seconds).
STREAM_SECONDS = 120
#: Seconds between two reads of the outbox by a stream, and between two heartbeats.
STREAM_POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 15.0
#: Streams one account may hold open at once, and the whole service.
STREAMS_PER_ACCOUNT = 3
MAX_STREAMS = 200
#: What the browser waits before it connects again after a dropped stream (milliseconds).
RETRY_MS = 3000
#: The limits of the delivery and report forms' fields (characters).
LIMITS = {"name": (1, 120), "address": (5, 500), "phone": (0, 40), "reason": (3, 1000)}
_ONCE = session.FORM_KEY
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_PENDING = {"queued", "sent", "mined"}
#: Where a delivery request or a report is followed.
DONE = {"delivery": "/app/bottles/{token_id}/delivery", "flag": "/app/bottles/{token_id}/flag"}
_ERRORS = error_responses(Unauthorized, Forbidden, NotFound, Conflict, InvalidRequest, TooManyRequests,
                          ServiceUnavailable, html=True)


_once = session.new_form_key


async def _mine(request: Request, token_id: str, chain: Any, index: Any, settings: Settings, user: User,
                token: str) -> CertificateView | Response:
    """The account's bottle ``token_id`` as ``GET /certificates/{id}`` shows it;
    or the 404 page (not the account's, without telling whose) or the 503 page."""
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    if number is None or number >= 2**256:
        return routes._page(request, "app/not_yours.html", status=404, user=user, token=token)
    try:
        view = await run_in_threadpool(certificate_view, chain, index, settings, number)
    except NotFound:
        return routes._page(request, "app/not_yours.html", status=404, user=user, token=token)
    except ServiceUnavailable:
        return routes._page(request, "app/unavailable.html", status=503, user=user, token=token)
    if view.owner is None or view.owner.lower() != user.address.lower():
        return routes._page(request, "app/not_yours.html", status=404, user=user, token=token)
    return view


def _not_now(request: Request, user: User, token: str, view: CertificateView) -> HTMLResponse:
    """409: the bottle is the account's but cannot do this now (pledged, gifted, flagged...)."""
    return routes._page(request, "app/moves_not_now.html", status=409, user=user, token=token, view=view,
                        state=view.state.value)


async def _relay(request: Request, user: User, once: str, call: Any, body: Any, users: UserStore, chain: Any,
                 relayer: Relayer, settings: Settings) -> str:
    """Relay ``body`` through the custodial route ``call``; the request id."""
    origin = custodial_origin(request, user, f"app-{once}")
    answer = await run_in_threadpool(call, body, user, users, chain, relayer, settings, origin)
    return str(answer.request_id)


def _failure(error: AmphoraError) -> str:
    """The word a page shows for an action the API refused."""
    if isinstance(error, TooManyRequests):
        return "throttled"
    if error.status_code == 409:
        return "refused"
    return "busy"


# ------------------------------------------------------------ transfer


@router.get("/bottles/{token_id}/transfer", responses=_ERRORS)
async def transfer_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep,
                        settings: SettingsDep) -> Response:
    signed_in = routes._signed_in(request)
    if signed_in is None:
        return routes._redirect(request, "/app/login")
    user, token = signed_in
    if user.wallet:  # signed in the wallet, not by the service (web/app/wallet.py)
        return routes._redirect(request, f"/app/bottles/{token_id}/wallet-transfer")
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.active:
        return _not_now(request, user, token, view)
    return routes._page(request, "app/moves_transfer.html", user=user, token=token, view=view, once=_once(),
                        recipient="", error=None, confirm=None)


async def transfer_front(request: Request, token_id: str, form: dict[str, str], chain: Any,
                         index: Any, settings: Settings, relayer: Relayer, user: User,
                         token: str) -> tuple[CertificateView, str] | Response:
    """What a transfer form (custodial or signed in a wallet) checks before its
    recipient: its one-time key, that it was not sent already (then to the
    activity page: the first one acted), and that the bottle is the account's
    and free to move. The bottle's view and the key; or the answer instead."""
    once = form.get("once", "")
    if not _ONCE.match(once):
        return routes._refused(request, "form")
    if relayer.outbox.by_idempotency_key(user.id, f"app-{once}") is not None:
        return routes._redirect(request, "/app/activity", done="transfer")  # the form sent again
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.active:
        return _not_now(request, user, token, view)
    return view, once


@router.post("/bottles/{token_id}/transfer", responses=_ERRORS)
async def transfer(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                   users: UsersDep, relayer: RelayerDep) -> Response:
    """Two steps: the recipient (an account name or a 0x address) is looked up
    and shown for confirmation; the confirmed form relays the transfer."""
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    front = await transfer_front(request, token_id, form, chain, index, settings, relayer, user, token)
    if isinstance(front, Response):
        return front
    view, once = front
    recipient = form.get("recipient", "").strip()[:300]

    def again(status: int, error: str, headers: dict[str, str] | None = None, wait: str = "") -> HTMLResponse:
        return routes._page(request, "app/moves_transfer.html", status=status, headers=headers, user=user,
                            token=token, view=view, once=once, recipient=recipient, error=error, confirm=None,
                            wait=wait)

    if _ADDRESS.match(recipient):
        address, name = recipient, None
    elif recipient.lower().startswith("0x") or not recipient:
        return again(422, "invalid")
    else:
        try:
            found = await account_address(request, users, user.id, recipient)
        except TooManyRequests as err:
            return again(429, "lookups", err.headers, routes._wait(page_for(request), err))
        if found is None:
            return again(404, "unknown")
        address, name = found, recipient
    if address.lower() == user.address.lower():
        return again(422, "self")
    if form.get("confirmed") != "yes" or form.get("to", "").lower() != address.lower():
        return routes._page(request, "app/moves_transfer.html", user=user, token=token, view=view, once=once,
                            recipient=recipient, error=None, confirm={"name": name, "address": address})
    try:
        await _relay(request, user, once, custodial_transfer,
                     CustodialTransfer.model_validate({"token_id": view.token_id, "to": address}), users, chain,
                     relayer, settings)
    except ValidationError:
        return again(422, "invalid")
    except AmphoraError as err:
        return again(err.status_code if err.status_code in (409, 429, 503) else 503, _failure(err), err.headers,
                     routes._wait(page_for(request), err) if isinstance(err, TooManyRequests) else "")
    return routes._redirect(request, "/app/activity", done="transfer")


# ------------------------------------------------- delivery and report


async def _note_action(request: Request, token_id: str, kind: NoteKind, chain: Any, index: Any,
                       settings: Settings, users: UserStore, relayer: Relayer) -> Response:
    """The delivery or report form sent: the text checked, sealed and kept,
    its hash relayed as the order or reason hash."""
    template = "app/moves_delivery.html" if kind == "delivery" else "app/moves_report.html"
    names = ("name", "address", "phone") if kind == "delivery" else ("reason",)
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    once = form.get("once", "")
    if not _ONCE.match(once):
        return routes._refused(request, "form")
    if relayer.outbox.by_idempotency_key(user.id, f"app-{once}") is not None and token_id.isdigit():
        return routes._redirect(request, DONE[kind].format(token_id=token_id), done="sent")  # the form sent again
    view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(view, Response):
        return view
    if view.state != CertificateState.active:
        return _not_now(request, user, token, view)
    fields = {name: form.get(name, "")[:2000] for name in names}
    errors = {name for name in names
              if not LIMITS[name][0] <= len(clean(fields[name])) <= LIMITS[name][1]}

    def again(status: int, error: str | None, headers: dict[str, str] | None = None,
              wait: str = "") -> HTMLResponse:
        return routes._page(request, template, status=status, headers=headers, user=user, token=token, view=view,
                            once=once, fields=fields, errors=errors, error=error, wait=wait, note=None)

    if errors:
        return again(422, None)
    store: NoteStore = notes_of(request.app.state)
    try:
        document = canonical(kind, view.token_id, fields, store.salt(user.id, once))
        note_hash, new = await run_in_threadpool(store.keep, kind, view.token_id, user.id, document)
    except ServiceUnavailable as err:
        return again(503, "busy", err.headers)
    if user.wallet:  # signed in the wallet, not by the service (web/app/wallet.py)
        from web.app.wallet import sign_note
        return sign_note(request, user, token, view, kind, once, note_hash)
    call, body = ((custodial_redemption, CustodialRedemption(token_id=view.token_id, order_hash=note_hash))
                  if kind == "delivery" else
                  (custodial_flag, CustodialFlag(token_id=view.token_id, reason_hash=note_hash)))
    try:
        request_id = await _relay(request, user, once, call, body, users, chain, relayer, settings)
    except AmphoraError as err:
        if new:  # nothing went out: no note to keep
            await run_in_threadpool(store.forget, note_hash)
        return again(err.status_code if err.status_code in (409, 429, 503) else 503, _failure(err), err.headers,
                     routes._wait(page_for(request), err) if isinstance(err, TooManyRequests) else "")
    await run_in_threadpool(store.relayed, note_hash, request_id)
    return routes._redirect(request, DONE[kind].format(token_id=view.token_id), done="sent")


def _progress(view: CertificateView | None, note_hash: str, relayed: str) -> str:
    """Where a delivery request stands: sending, failed, requested, delivered or rejected."""
    if relayed in _PENDING:
        return "sending"
    if relayed == FAILED:
        return "failed"
    if view is not None and view.redemption is not None and view.redemption.order_hash.lower() == note_hash:
        return "delivered" if view.redemption.redeemed_at is not None else "requested"
    return "rejected"


def _flag_progress(view: CertificateView | None, note_hash: str, relayed: str) -> str:
    """Where a report stands: sending, failed, flagged, or cleared (by the issuer)."""
    if relayed in _PENDING:
        return "sending"
    if relayed == FAILED:
        return "failed"
    if view is not None and view.flag is not None and view.flag.reason_hash.lower() == note_hash:
        return "flagged"
    return "cleared"


async def _note_page(request: Request, token_id: str, kind: NoteKind, chain: Any, index: Any, settings: Settings,
                     relayer: Relayer) -> Response:
    """The delivery (or report) page: the account's request and its progress
    when there is one, else the form (for a bottle of the account's that can)."""
    signed_in = routes._signed_in(request)
    if signed_in is None:
        return routes._redirect(request, "/app/login")
    user, token = signed_in
    template = "app/moves_delivery.html" if kind == "delivery" else "app/moves_report.html"
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    note = None
    if number is not None and number < 2**256:
        try:
            note = await run_in_threadpool(notes_of(request.app.state).latest, kind, number, user.id)
        except ServiceUnavailable:
            note = None
    if note is not None:
        # The account's own request: shown even once the bottle has left the account (delivered).
        try:
            view: CertificateView | None = await run_in_threadpool(certificate_view, chain, index, settings,
                                                                    note.token_id)
            relayed = relayer.status(note.request_id or "").status
        except (NotFound, ServiceUnavailable):
            return routes._page(request, "app/unavailable.html", status=503, user=user, token=token)
        mine = view is not None and view.owner is not None and view.owner.lower() == user.address.lower()
        stage = _progress(view, note.hash, relayed) if kind == "delivery" else _flag_progress(view, note.hash,
                                                                                                relayed)
        if kind == "delivery" and stage in ("rejected", "failed") and mine and view and \
                view.state == CertificateState.active and request.query_params.get("again") == "1":
            note = None  # asking again after a refusal: the form
        else:
            pending = stage == "sending"
            return routes._page(request, template, user=user, token=token, view=view, note=note, stage=stage,
                                relayed=relayed, fields=note.fields, errors=set(), error=None, mine=mine,
                                notice=request.query_params.get("done") == "sent",
                                refresh=REFRESH_SECONDS if pending else None)
    checked_view = await _mine(request, token_id, chain, index, settings, user, token)
    if isinstance(checked_view, Response):
        return checked_view
    if checked_view.state != CertificateState.active:
        return _not_now(request, user, token, checked_view)
    return routes._page(request, template, user=user, token=token, view=checked_view, once=_once(),
                        fields={}, errors=set(), error=None, note=None)


@router.get("/bottles/{token_id}/delivery", responses=_ERRORS)
async def delivery_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                        relayer: RelayerDep) -> Response:
    return await _note_page(request, token_id, "delivery", chain, index, settings, relayer)


@router.post("/bottles/{token_id}/delivery", responses=_ERRORS)
async def request_delivery(request: Request, token_id: str, chain: ChainDep, index: IndexDep,
                           settings: SettingsDep, users: UsersDep, relayer: RelayerDep) -> Response:
    """Ask for the bottle (``POST /me/relay/redemptions``) with the delivery
    address kept off chain for the custodian and its hash as the order hash."""
    return await _note_action(request, token_id, "delivery", chain, index, settings, users, relayer)


@router.get("/bottles/{token_id}/flag", responses=_ERRORS)
async def report_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                      relayer: RelayerDep) -> Response:
    return await _note_page(request, token_id, "flag", chain, index, settings, relayer)


@router.post("/bottles/{token_id}/flag", responses=_ERRORS)
async def report(request: Request, token_id: str, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                 users: UsersDep, relayer: RelayerDep) -> Response:
    """Report the bottle lost or stolen (``POST /me/relay/flags``) with the
    reason kept off chain and its hash as the flag's reason hash."""
    return await _note_action(request, token_id, "flag", chain, index, settings, users, relayer)


# ------------------------------------------------------------ activity


def _status(relayed: str) -> str:
    """What the activity page says of a request's outbox status: pending, confirmed or failed."""
    return "pending" if relayed in _PENDING else "confirmed" if relayed == CONFIRMED else "failed"


@router.get("/activity", responses=error_responses(ServiceUnavailable, html=True))
def activity(request: Request, relayer: RelayerDep) -> Response:
    """The account's relayed actions, newest first, from the relayer's outbox:
    pending, confirmed or failed, with the transaction hash. While one is
    pending the page follows :func:`activity_events` (script), or reloads
    itself every few seconds (no script)."""
    signed_in = routes._signed_in(request)
    if signed_in is None:
        return routes._redirect(request, "/app/login")
    user, token = signed_in
    records = relayer.outbox.for_account(user.id, ACTIVITY_PAGE)
    actions = [{"kind": record.kind, "status": _status(record.status), "tx_hash": record.tx_hash,
                "created_at": int(record.created_at), "request_id": record.request_id} for record in records]
    pending = any(action["status"] == "pending" for action in actions)
    return routes._page(request, "app/moves_activity.html", user=user, token=token, actions=actions,
                        refresh=REFRESH_SECONDS if pending else None,
                        notice=request.query_params.get("done") == "transfer")


class _Streams:
    """The activity streams open now, per account (one event loop: no lock needed)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def take(self, account: str) -> bool:
        """Count one more stream of ``account``; False (nothing counted) beyond a cap."""
        if self.open.get(account, 0) >= STREAMS_PER_ACCOUNT or sum(self.open.values()) >= MAX_STREAMS:
            return False
        self.open[account] = self.open.get(account, 0) + 1
        return True

    def release(self, account: str) -> None:
        left = self.open.get(account, 0) - 1
        if left > 0:
            self.open[account] = left
        else:
            self.open.pop(account, None)


def _streams(request: Request) -> _Streams:
    state = request.app.state
    if not hasattr(state, "activity_streams"):
        state.activity_streams = _Streams()
    streams: _Streams = state.activity_streams
    return streams


class _EventStream(StreamingResponse):
    """A stream that gives its place back however it ends (finished, client gone, never started)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _activity_events(request: Request, relayer: Relayer, users: UserStore, account: str,
                           token: str) -> AsyncIterator[str]:
    """The account's requests whose status changed (all of them first), a
    heartbeat, until the time is up, the session ends or the client leaves."""
    yield f"retry: {RETRY_MS}\n\n"
    seen: dict[str, tuple[str, str | None]] = {}
    started = beat = time.monotonic()
    while time.monotonic() - started < STREAM_SECONDS:
        records = await run_in_threadpool(relayer.outbox.for_account, account, ACTIVITY_PAGE)
        for record in reversed(records):
            now = (_status(record.status), record.tx_hash)
            if seen.get(record.request_id) != now:
                seen[record.request_id] = now
                yield _event("status", {"request_id": record.request_id, "status": now[0], "tx_hash": now[1]})
        if time.monotonic() - beat >= HEARTBEAT_SECONDS:
            beat = time.monotonic()
            try:
                await run_in_threadpool(users.authenticate, token)
            except Unauthorized:
                yield _event("end", {"reason": "session"})
                return
            yield ": still here\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(STREAM_POLL_SECONDS)
    yield _event("end", {"reason": "time"})


@router.get("/activity/events", responses={
    200: {"description": "Server-sent events: `status` (a request's status changed), `end`.",
          "content": {"text/event-stream": {}}},
    **error_responses(Unauthorized, TooManyRequests)})
async def activity_events(request: Request, relayer: RelayerDep, users: UsersDep) -> Response:
    """The live activity page's stream (``text/event-stream``): an event per
    request of the account's whose status changed, for at most
    :data:`STREAM_SECONDS`. 401 without a session; 429 when the account (or
    the service) already holds as many streams as it may."""
    signed_in = routes._signed_in(request)
    if signed_in is None:
        return PlainTextResponse("no session: log in again", status_code=401, headers={"Cache-Control": "no-store"})
    user, token = signed_in
    streams = _streams(request)
    if not streams.take(user.id):
        return PlainTextResponse("too many open activity streams: close a tab or wait", status_code=429,
                                 headers={"Retry-After": str(int(STREAM_SECONDS)), "Cache-Control": "no-store"})
    return _EventStream(_activity_events(request, relayer, users, user.id, token), lambda: streams.release(user.id))
