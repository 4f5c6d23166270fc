"""The cellar's console (``/console/custodian``): the delivery requests with the
holders' addresses, confirm a shipment or refuse it with a reason, a storage
report per lot, and the proof of reserve in one click.

Every action calls the JSON API's route function that does the same thing
(:mod:`api.routers.custody_console`): ``queue_of`` of
``GET /custodian/redemptions``, ``confirm_redemption``, ``reject_redemption``,
``attest`` of ``PUT /custodian/lots/{id}/storage-report`` and ``post_reserve``
of ``POST /custodian/reserve``; the rules (the role, the cellar's own bottles
only, the contract's simulation) live there. Each form carries a one-time key
(:meth:`api.cellar.CellarStore.claim`): a form sent twice is one action.

The storage report is a file: its form is ``multipart/form-data``, read here
with the standard library's MIME parser (the service has no multipart
dependency), within the service's request body limit.
"""

from __future__ import annotations

import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.business import GasUnfunded, Roles, TransactionFailed
from api.cellar import cellar_of
from api.chain import CUSTODY, ChainService
from api.deps import BusinessDep, ChainDep, IndexDep, SettingsDep
from api.errors import (
    AmphoraError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    WouldRevert,
    error_responses,
)
from api.routers.custody_console import (
    MAX_REASON,
    Rejection,
    attest,
    confirm_redemption,
    post_reserve,
    queue_of,
    reject_redemption,
)
from api.schemas import BYTES32_PATTERN
from api.users import User
from indexer import holdings
from indexer.events import SERIAL_BITS
from indexer.reader import IndexReader, IndexStatus
from web.app import session
from web.app.routes import redirect, render_page
from web.console.routes import business_form, business_user, console_page
from web.console.wallet_send import wallet_send

router = APIRouter(prefix="/console/custodian", include_in_schema=False, default_response_class=HTMLResponse)

#: Notices the console page may show after a redirect (``?done=``).
NOTICES = frozenset({"confirmed", "rejected", "attested", "reserve"})
#: Lots the page lists with their storage report.
LOTS_SHOWN = 50
_ROOT = re.compile(BYTES32_PATTERN)
_ERRORS = error_responses(Unauthorized, Forbidden, NotFound, Conflict, InvalidRequest, ServiceUnavailable, html=True)


#: A console form's one-time key.
new_once = session.new_form_key


def failure(err: AmphoraError) -> tuple[int, str]:
    """The status and the template's error code for an action the API refused."""
    if isinstance(err, GasUnfunded):
        return 409, "gas"
    if isinstance(err, WouldRevert):
        return 409, "refused"
    if isinstance(err, Forbidden):
        return 403, "other_cellar"
    if isinstance(err, NotFound):
        return 404, "not_found"
    if isinstance(err, Conflict):
        return 409, "empty"
    if isinstance(err, InvalidRequest):
        return 422, "invalid"
    if isinstance(err, TransactionFailed):
        return 502, "failed"
    return 503, "busy"


def _lots(chain: ChainService, index: IndexReader, custodian: str) -> list[dict[str, Any]]:
    """The cellar's lots (per the index) with their latest storage attestation (from the registry)."""
    chain_id = chain.chain_id

    def query(tx: Any, status: IndexStatus) -> list[holdings.LotSummary]:
        return holdings.lots(tx, chain_id, after=None, limit=LOTS_SHOWN, custodian=custodian).items

    registry = chain.contract(CUSTODY)
    found = []
    for summary in index.answer(chain_id, query).value:
        facts = summary.facts
        attested = reserve = None
        if registry is not None:
            # Custody(custodian, storage_document_hash, storage_attested_at, storage_attested_by, reserve_root,
            # reserve_posted_at, reserve_bottle_count): the lot's latest report and the cellar's latest root.
            record = registry.functions.custody((facts.lot_id << SERIAL_BITS) | facts.first_serial).call()
            if int(record[2]):
                attested = {"hash": "0x" + bytes(record[1]).hex(), "at": int(record[2])}
            if int(record[5]):
                reserve = {"at": int(record[5]), "count": int(record[6])}
        found.append({"facts": facts, "kept": facts.bottle_count - summary.counts.redeemed, "attested": attested,
                      "reserve": reserve})
    return found


async def _home(request: Request, chain: ChainService, index: IndexReader, user: User, token: str, roles: Roles,
                status: int = 200, **context: Any) -> HTMLResponse:
    address = roles.address
    queue = await run_in_threadpool(queue_of, request, chain, index, address)
    lots = await run_in_threadpool(_lots, chain, index, address)
    done = request.query_params.get("done")
    root = request.query_params.get("root", "")
    for name in ("error", "detail", "error_lot"):
        context.setdefault(name, None)
    return console_page(request, "console/custodian_home.html", user, token, roles, section="custodian",
                        status=status, queue=queue, lots=lots, once=new_once(),
                        reserve=next((lot["reserve"] for lot in lots if lot["reserve"]), None),
                        notice=done if done in NOTICES else None,
                        root=root if _ROOT.match(root) else None, **context)


@router.get("")
async def custodian_home(request: Request, chain: ChainDep, index: IndexDep) -> Response:
    """The cellar's page: delivery requests, storage reports per lot, proof of reserve."""
    checked = await business_user(request, "custodian")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    try:
        return await _home(request, chain, index, user, token, roles)
    except ServiceUnavailable:
        return render_page(request, "app/unavailable.html", status=503, user=user, token=token)


def _request_of(request: Request, chain: ChainService, index: IndexReader, address: str,
                token_id: int) -> dict[str, Any]:
    """The bottle's delivery request in this cellar's queue; or why it is not there
    (``other_cellar``: kept by another cellar; ``not_pending``: no request to answer)."""
    record = chain.certificate(token_id)
    if not record.issued:
        return {"problem": "not_found"}
    if record.custodian.lower() != address.lower():
        return {"problem": "other_cellar"}
    queue = queue_of(request, chain, index, address)
    for item in queue.requests:
        if item.token_id == str(token_id):
            return {"item": item}
    return {"problem": "not_pending"}


async def _request_page(request: Request, chain: ChainService, index: IndexReader, user: User, token: str,
                        roles: Roles, token_id: str, status: int = 200, **context: Any) -> HTMLResponse:
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    found = (await run_in_threadpool(_request_of, request, chain, index, roles.address, number)
             if number is not None else {"problem": "not_found"})
    problem = found.get("problem")
    if problem is not None and status == 200:
        status = {"other_cellar": 403, "not_found": 404, "not_pending": 409}[problem]
    context.setdefault("once", new_once())
    context.setdefault("reason", "")
    context.setdefault("errors", set())
    context.setdefault("error", None)
    context.setdefault("detail", None)
    return console_page(request, "console/custodian_request.html", user, token, roles, section="custodian",
                        status=status, token_id=token_id, item=found.get("item"), problem=problem,
                        max_reason=MAX_REASON, **context)


@router.get("/redemptions/{token_id}")
async def request_page(request: Request, token_id: str, chain: ChainDep, index: IndexDep) -> Response:
    """One delivery request: the address, and the forms to confirm or refuse it.
    403 in words for a bottle another cellar keeps."""
    checked = await business_user(request, "custodian")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return await _request_page(request, chain, index, user, token, roles, token_id)


async def act_once(request: Request, user: User, once: str, action: Any, *args: Any) -> Any:
    """Run an API action once per form key: None when the key was used already
    (the form sent again: the first one acted). The key is given back when the
    action was refused before anything was sent."""
    store = cellar_of(request.app.state)
    if not await run_in_threadpool(store.claim, user.id, once):
        return None
    try:
        return await run_in_threadpool(action, *args)
    except AmphoraError as err:
        if not isinstance(err, TransactionFailed):
            await run_in_threadpool(store.release, user.id, once)
        raise


@router.post("/redemptions/{token_id}/confirm", responses={303: {"description": "Back to the queue."}, **_ERRORS})
async def confirm(request: Request, token_id: str, settings: SettingsDep, chain: ChainDep, index: IndexDep,
                  business: BusinessDep) -> Response:
    """The bottle is shipped: ``confirm_redemption`` from the cellar's address."""
    checked = await business_form(request, "custodian", once=True)
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    if not token_id.isdigit() or len(token_id) > 78:
        return await _request_page(request, chain, index, user, token, roles, token_id)
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/custodian", confirm_redemption, int(token_id), user,
                                     chain, business)
        await act_once(request, user, form["once"], confirm_redemption, int(token_id), user, chain, business)
    except AmphoraError as err:
        status, error = failure(err)
        return await _request_page(request, chain, index, user, token, roles, token_id, status=status, error=error,
                                   detail=err.detail)
    return redirect(request, "/console/custodian", done="confirmed")


@router.post("/redemptions/{token_id}/reject", responses={303: {"description": "Back to the queue."}, **_ERRORS})
async def reject(request: Request, token_id: str, settings: SettingsDep, chain: ChainDep, index: IndexDep,
                 business: BusinessDep) -> Response:
    """Refuse the delivery with a reason: ``reject_redemption`` with its hash."""
    checked = await business_form(request, "custodian", once=True)
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    reason = form.get("reason", "").strip()
    if not 3 <= len(reason) <= MAX_REASON or not token_id.isdigit() or len(token_id) > 78:
        return await _request_page(request, chain, index, user, token, roles, token_id, status=422,
                                   errors={"reason"}, reason=reason[:MAX_REASON * 2], once=form["once"])
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/custodian", reject_redemption, int(token_id),
                                     Rejection(reason=reason), user, chain, business)
        await act_once(request, user, form["once"], reject_redemption, int(token_id), Rejection(reason=reason), user,
                   chain, business)
    except AmphoraError as err:
        status, error = failure(err)
        return await _request_page(request, chain, index, user, token, roles, token_id, status=status, error=error,
                                   detail=err.detail, reason=reason)
    return redirect(request, "/console/custodian", done="rejected")


def _upload(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None] | None:
    """The text fields and the ``report`` file of a ``multipart/form-data`` body; None when it is not one."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    report: bytes | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "report":
            report = data
        elif name not in fields:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, report


@router.post("/lots/{lot_id}/report", responses={303: {"description": "Back to the console."}, **_ERRORS})
async def report(request: Request, lot_id: str, settings: SettingsDep, chain: ChainDep, index: IndexDep,
                 business: BusinessDep) -> Response:
    """A storage report uploaded: hashed, published and attested (``attest_storage``)."""
    parsed = _upload(request.headers.get("content-type", ""), await request.body())
    if parsed is None:
        return render_page(request, "app/refused.html", status=403, reason="form")
    fields, document = parsed
    checked = await business_form(request, "custodian", fields, once=True)
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    if not lot_id.isdigit() or not 1 <= int(lot_id) < 2**64 or not document:
        return await _home(request, chain, index, user, token, roles, status=422, error="no_file", error_lot=lot_id)
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/custodian", attest, request, chain, business, user,
                                     int(lot_id), document)
        await act_once(request, user, form["once"], attest, request, chain, business, user, int(lot_id), document)
    except AmphoraError as err:
        status, error = failure(err)
        return await _home(request, chain, index, user, token, roles, status=status, error=error, detail=err.detail,
                           error_lot=lot_id)
    return redirect(request, "/console/custodian", done="attested")


@router.post("/reserve", responses={303: {"description": "Back to the console."}, **_ERRORS})
async def reserve(request: Request, settings: SettingsDep, chain: ChainDep, index: IndexDep,
                  business: BusinessDep) -> Response:
    """One click: the root over the bottles the cellar keeps, posted with its tree."""
    checked = await business_form(request, "custodian", once=True)
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/custodian", post_reserve, request, chain, index,
                                     business, user)
        posted = await act_once(request, user, form["once"], post_reserve, request, chain, index, business, user)
    except AmphoraError as err:
        status, error = failure(err)
        return await _home(request, chain, index, user, token, roles, status=status, error=error, detail=err.detail)
    if posted is None:
        return redirect(request, "/console/custodian", done="reserve")
    return redirect(request, "/console/custodian", done="reserve", root=posted.root)
