"""The winery's console: ``/console/issuer`` (its lots and a new lot's form),
the preview of a lot before anything is sent, its issuance, and a lot's
dashboard (counts, scans per day, anomalies, downloads, flags).

Every action calls the API's route function (:mod:`api.routers.issuer`,
:mod:`api.routers.index`), so a rule lives once. The new-lot form posts
``multipart/form-data`` (a lot file may be attached); it is read with the
standard library's MIME parser, within the app's body-size limit. The preview
page carries the previewed document (with its ``serial_salt`` fixed) in the
issue form, so what is issued is exactly what was shown, and a second press of
the button is the same document: refused as already issued, never a second lot.
The bottles file is handed out by a ``POST`` form (a link could be fetched by a
prefetcher and spend the one download of the tag keys).

Issuing starts a background job (:mod:`api.jobs`, ``POST /issuer/lot-jobs``) and
opens its progress page, ``/console/issuer/jobs/{id}``: a ``<progress>`` bar and
its count in words, reloaded every 2 seconds by a ``<meta http-equiv="refresh">``
(no script) while the job runs, then the lot with its bottles file (tag keys
once) and its label sheets range by range, or the reason it failed.
"""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.business import GasUnfunded, Roles, TransactionFailed
from api.errors import AmphoraError, NotFound, ServiceUnavailable, WouldRevert
from api.issuer import AlreadyIssued, LotDocumentInvalid, parse_upload
from api.jobs import JobRunning
from api.routers import issuer as issuer_api
from api.routers import issuer_jobs as jobs_api
from api.routers.index import get_lot, list_lots
from api.users import User
from web import elabel
from web.app import session
from web.app.routes import redirect, render_page, signed_in
from web.charts import bar_chart
from web.console.routes import business_form, business_user, console_page
from web.console.wallet_send import wallet_send
from web.render import page_for

router = APIRouter(prefix="/console/issuer", include_in_schema=False, default_response_class=HTMLResponse)

#: The form's own fields (a lot version 1 description); a file replaces them.
FIELDS = ("producer", "wine", "region", "vintage", "bottle_count", "volume_ml", "bottling_date", "custodian")
#: A job id as the API makes them (anything else: no such job).
JOB_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: Seconds between two reloads of a running job's progress page.
REFRESH_SECONDS = 2
#: Scans the dashboard's chart covers, in days.
CHART_DAYS = 30
#: What an action's error shows (a code: words are in the templates).
_ERRORS: tuple[tuple[type[AmphoraError], str], ...] = (
    (JobRunning, "running"), (AlreadyIssued, "already"), (LotDocumentInvalid, "invalid"), (WouldRevert, "refused"),
    (GasUnfunded, "unfunded"), (TransactionFailed, "failed"), (ServiceUnavailable, "busy"))


def _code(error: AmphoraError) -> str:
    return next((code for kind, code in _ERRORS if isinstance(error, kind)), "busy")


async def _home(request: Request, user: User, token: str, roles: Roles, status: int = 200,
                **context: Any) -> HTMLResponse:
    chain, index = request.app.state.chain, request.app.state.index
    try:
        page = await list_lots(chain, index, limit=50, issuer=user.address)
        lots_found, indexed = page.lots, page.indexed_block
    except ServiceUnavailable:
        lots_found, indexed = [], None
    for key, empty in (("fields", dict.fromkeys(FIELDS, "")), ("problems", []), ("error", ""), ("detail", "")):
        context.setdefault(key, empty)
    if context.get("running") is None:
        context["running"] = await run_in_threadpool(request.app.state.issuance_jobs.active, chain.chain_id,
                                                     user.address)
    return console_page(request, "console/issuer_home.html", user, token, roles, section="issuer", status=status,
                        lots=lots_found, indexed=indexed, **context)


@router.get("")
async def home(request: Request) -> Response:
    """The issuer's lots with their bottles counted by state, and the new lot's form."""
    checked = await business_user(request, "issuer")
    if isinstance(checked, Response):
        return checked
    return await _home(request, *checked)


def _multipart(request: Request, body: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None] | None:
    """A ``multipart/form-data`` body's text fields and its file (name, bytes), or None when it is not one."""
    kind = request.headers.get("content-type", "")
    if kind.split(";")[0].strip().lower() != "multipart/form-data":
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + kind.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    upload = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        if filename is not None:
            if payload:
                upload = (filename, payload)
        else:
            fields.setdefault(name, payload.decode("utf-8", "replace"))
    return fields, upload


@router.post("/preview")
async def preview(request: Request) -> Response:
    """The lot the form or file describes, checked field by field and previewed (summary, e-label) with
    the button that issues it; or the form again with every field that fails. Nothing is sent."""
    settings = request.app.state.settings
    if not session.same_origin(request, settings):
        return render_page(request, "app/refused.html", status=403, reason="origin")
    parsed = _multipart(request, await request.body())
    if parsed is None:
        return render_page(request, "app/refused.html", status=403, reason="form")
    fields, upload = parsed
    found = signed_in(request)
    if found is None:
        return redirect(request, "/app/login", done="expired")
    if not session.csrf_valid(settings, found[1], fields.get(session.CSRF_FIELD)):
        return render_page(request, "app/refused.html", status=403, reason="token")
    checked = await business_user(request, "issuer")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    form = {key: fields.get(key, "").strip() for key in FIELDS}
    try:
        document = parse_upload(*upload) if upload else {k: v for k, v in form.items() if v}
    except LotDocumentInvalid as err:
        return await _home(request, user, token, roles, status=422, fields=form,
                           problems=[issuer_api.Problem(field="file", message=err.detail)])
    try:
        answer = await run_in_threadpool(issuer_api.preview_lot, document, user, request.app.state.chain)
    except ServiceUnavailable:
        return render_page(request, "app/unavailable.html", status=503, user=user, token=token)
    if not answer.valid:
        return await _home(request, user, token, roles, status=422, fields=form, problems=answer.problems)
    doc = answer.document or {}
    label = elabel.build(doc, page_for(request)) if doc.get("document_version") == 2 else None
    return console_page(request, "console/issuer_preview.html", user, token, roles, section="issuer",
                        preview=answer, doc=doc, label=label, separator=elabel.SEPARATORS.get(
                            page_for(request).language, ", "), encoded=json.dumps(doc, ensure_ascii=False))


@router.post("/issue")
async def issue(request: Request) -> Response:
    """Starts issuing the previewed document from the account's own address, then to the job's progress page."""
    checked = await business_form(request, "issuer")
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    try:
        document = json.loads(form.get("document", ""))
        if not isinstance(document, dict):
            raise ValueError("not an object")
    except ValueError:
        return render_page(request, "app/refused.html", status=403, reason="form")
    state = request.app.state
    try:
        job = await run_in_threadpool(jobs_api.start_issuance, document, request, Response(), user, state.chain)
    except AmphoraError as err:
        return await _home(request, user, token, roles, status=err.status_code, error=_code(err),
                           detail=err.detail)
    return redirect(request, f"/console/issuer/jobs/{job.job_id}")


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    """An issuance's progress (reloading itself while it runs), then its lot with the downloads, or why it
    failed."""
    checked = await business_user(request, "issuer")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    state = request.app.state
    job = None
    if JOB_ID.fullmatch(job_id):
        try:
            job = await jobs_api.issuance_job(job_id, request, user, state.chain)
        except NotFound:
            job = None
        except ServiceUnavailable:
            return render_page(request, "app/unavailable.html", status=503, user=user, token=token)
    if job is None:
        return console_page(request, "console/issuer_job.html", user, token, roles, section="issuer", status=404,
                            job=None, refresh=None)
    kept = issuer_api.vault(request).issued(state.chain.chain_id, int(job.lot_id)) if job.lot_id else None
    return console_page(request, "console/issuer_job.html", user, token, roles, section="issuer", job=job,
                        refresh=REFRESH_SECONDS if job.state in ("queued", "running") else None,
                        kept=kept is not None, keys_taken=bool(kept and kept["keys_downloaded_at"]),
                        step_number=jobs_api.STEP_NUMBERS.get(job.step or "", 0), steps=jobs_api.STEP_COUNT)


async def _lot_page(request: Request, lot_id: int, user: User, token: str, roles: Roles, status: int = 200,
                    **context: Any) -> Response:
    for key, empty in (("error", ""), ("detail", ""), ("form", None)):
        context.setdefault(key, empty)
    state = request.app.state
    try:
        answer = await get_lot(lot_id, state.chain, state.index)
        lot = answer.lot
    except NotFound:
        lot = None
    except ServiceUnavailable:
        return render_page(request, "app/unavailable.html", status=503, user=user, token=token)
    kept = issuer_api.vault(request).issued(state.chain.chain_id, lot_id)
    if lot is None and (kept is None or kept["issuer"] != user.address):
        return console_page(request, "console/issuer_lot.html", user, token, roles, section="issuer", status=404,
                            lot=None, lot_id=lot_id, missing=True)
    if lot is not None and lot.issuer != user.address:
        return console_page(request, "console/issuer_lot.html", user, token, roles, section="issuer", status=404,
                            lot=None, lot_id=lot_id, missing=True)
    page = page_for(request)
    scans = await issuer_api.lot_scans(lot_id, state.chain, state.scans, CHART_DAYS)
    chart = bar_chart(page.gettext("Scans per day"), page.gettext("scans"),
                      [(page.date(day.date, "d MMM"), day.scans) for day in scans.days])
    return console_page(request, "console/issuer_lot.html", user, token, roles, section="issuer", status=status,
                        lot=lot, lot_id=lot_id, missing=False, chart=chart, scans=scans,
                        keys_taken=bool(kept and kept["keys_downloaded_at"]), kept=kept is not None,
                        done=request.query_params.get("done", ""), **context)


@router.get("/lots/{lot_id}")
async def lot_dashboard(request: Request, lot_id: int) -> Response:
    """One of the issuer's lots: bottles by state, holders, scans per day, anomalies, downloads, flags."""
    checked = await business_user(request, "issuer")
    if isinstance(checked, Response):
        return checked
    if not 0 < lot_id < 2**63:
        return await _lot_page(request, 0, *checked)
    return await _lot_page(request, lot_id, *checked)


@router.post("/lots/{lot_id}/bottles")
async def bottles(request: Request, lot_id: int) -> Response:
    """The bottles file (CSV), with the tag keys the first time (the API's rule)."""
    checked = await business_form(request, "issuer")
    if isinstance(checked, Response):
        return checked
    user, token, roles, _ = checked
    state = request.app.state
    try:
        return await run_in_threadpool(issuer_api.lot_bottles, lot_id, request, user, state.chain, state.settings,
                                       issuer_api.BottlesFormat.csv)
    except (NotFound, ServiceUnavailable):
        return await _lot_page(request, lot_id, user, token, roles, status=404, error="bottles")


@router.post("/lots/{lot_id}/flags")
async def flag(request: Request, lot_id: int) -> Response:
    """Flags bottle ``serial`` of the lot lost or stolen (``action=flag``, with a reason) or clears its flag
    (``action=clear``); the contract decides who may."""
    checked = await business_form(request, "issuer")
    if isinstance(checked, Response):
        return checked
    user, token, roles, form = checked
    action, reason = form.get("action", ""), form.get("reason", "").strip()
    try:
        serial = int(form.get("serial", ""))
        if not 0 < serial < 2**32:
            raise ValueError(serial)
    except ValueError:
        return await _lot_page(request, lot_id, user, token, roles, status=422, error="serial", form=form)
    if action == "flag" and not 0 < len(reason) <= 500:
        return await _lot_page(request, lot_id, user, token, roles, status=422, error="reason", form=form)
    token_id = (lot_id << 32) | serial
    state = request.app.state
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            back = f"/console/issuer/lots/{lot_id}"
            if action == "flag":
                return await wallet_send(request, user, back, issuer_api.flag_bottle, token_id,
                                         issuer_api.FlagRequest(reason=reason), user, state.chain, state.business)
            return await wallet_send(request, user, back, issuer_api.clear_bottle_flag, token_id, user, state.chain,
                                     state.business)
        if action == "flag":
            await run_in_threadpool(issuer_api.flag_bottle, token_id, issuer_api.FlagRequest(reason=reason), user,
                                    state.chain, state.business)
        else:
            await run_in_threadpool(issuer_api.clear_bottle_flag, token_id, user, state.chain, state.business)
    except AmphoraError as err:
        return await _lot_page(request, lot_id, user, token, roles, status=err.status_code, error=_code(err),
                               detail=err.detail, form=form)
    return redirect(request, f"/console/issuer/lots/{lot_id}", done="flagged" if action == "flag" else "cleared")
