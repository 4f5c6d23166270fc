"""The lender's "Offer more time" page under ``/console/lender/loans/{loan_id}/extension``.

A form (the new due date and the offer's last day as dates, the new repayment
as an amount or a yearly rate for the added time) answers first with a
preview in words; confirmed, it calls the JSON API's own route function
``propose_extension`` (``POST /lender/loans/{loan_id}/extensions``), which
signs with the account's key. The page lists the loan's proposals and
withdraws a pending one (``withdraw_extension``). A confirmation sent twice is
one proposal (the same terms return the pending one). Errors are codes the
template puts in words.

A date is the end of that day (23:59:59) in the page's time zone.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from api import extensions, lending
from api.deps import ChainDep, SettingsDep, UsersDep
from api.errors import AmphoraError, Conflict, Forbidden, InvalidRequest, NotFound, ServiceUnavailable, error_responses
from api.lender import MAX_YEARLY_RATE_BPS
from api.routers import extensions as extensions_api
from api.schemas import LoanState, LoanView
from api.users import User
from web.app import times
from web.app.money import amount_of, parse_amount, readable_amounts
from web.app.routes import redirect, signed_in_form
from web.console.lender import _number, _percent_bps, _stablecoin
from web.console.routes import business_user, console_page

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/lender/loans", include_in_schema=False)

#: Notices a redirect may name.
NOTICES = frozenset({"offered", "withdrawn"})
#: Default added time and offer lifetime, in days.
DEFAULT_MORE_DAYS = 30
DEFAULT_VALID_DAYS = 7
_ERRORS = error_responses(NotFound, Forbidden, Conflict, InvalidRequest, ServiceUnavailable, html=True)


def day_end(text: str, request: Request) -> int | None:
    """The Unix time of 23:59:59 on the day ``text`` (``2027-06-01``) in the page's zone; None if not a day."""
    try:
        day = date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None
    return int(datetime.combine(day, time(23, 59, 59), tzinfo=times.zone_of(request)).timestamp())


def iso_day(moment: int, request: Request) -> str:
    return datetime.fromtimestamp(moment, tz=times.zone_of(request)).date().isoformat()


def _loan_of(chain: Any, loan_id: int, user: User) -> tuple[LoanView, int] | None:
    """The loan and the chain's time, when the account lent it."""
    snapshot = lending.loan_snapshot(chain, loan_id)
    loan = snapshot.loan
    if loan is None or loan.lender.lower() != user.address.lower():
        return None
    return loan, snapshot.block_timestamp


async def _page(request: Request, chain: Any, book: Any, loan_id: str, status: int = 200,
                fields: dict[str, str] | None = None, errors: set[str] | None = None, error: str | None = None,
                detail: str | None = None, preview: dict[str, Any] | None = None) -> Response:
    checked = await business_user(request, "lender")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    number = _number(loan_id, 1, 2**256 - 1)
    try:
        found = None if number is None else await run_in_threadpool(_loan_of, chain, number, user)
        coin = _stablecoin(chain)
        proposals = [] if found is None or number is None else (await run_in_threadpool(
            extensions_api.list_extensions, number, user, chain, book)).extensions
    except NotFound:
        found = None
    except AmphoraError:
        return console_page(request, "app/unavailable.html", user, token, roles, section="lender", status=503)
    if found is None:
        return console_page(request, "console/lender_missing.html", user, token, roles, section="lender", status=404)
    loan, now = found
    defaults = {"due": iso_day(max(int(loan.due_at), now) + DEFAULT_MORE_DAYS * 86_400, request), "terms": "amount",
                "repayment": str(amount_of(int(loan.repayment), coin.decimals)), "rate": "",
                "expiry": iso_day(now + DEFAULT_VALID_DAYS * 86_400, request)}
    notice = request.query_params.get("done")
    return console_page(request, "console/lender_extend.html", user, token, roles, section="lender", status=status,
                        loan=loan, now=now, proposals=proposals, symbol=coin.symbol, readable=readable_amounts(request),
                        money=lambda units: amount_of(int(units), coin.decimals), form={**defaults, **(fields or {})},
                        errors=errors or set(), error=error, detail=detail, preview=preview,
                        open=loan.state == LoanState.open, notice=notice if notice in NOTICES else None)


@router.get("/{loan_id}/extension", responses=error_responses(NotFound, ServiceUnavailable, html=True))
async def extension_page(request: Request, loan_id: str, chain: ChainDep) -> Response:
    """The loan's terms now, the form to offer more time, and the proposals made so far."""
    return await _page(request, chain, request.app.state.extensions, loan_id)


def _terms(form: dict[str, str], request: Request, loan: LoanView, now: int,
           decimals: int) -> tuple[extensions_api.ExtensionIn | None, set[str]]:
    """The terms the form states (checked as the API checks them, field by field), or the fields in error."""
    errors: set[str] = set()
    due_at = day_end(form.get("due", "")[:20], request)
    if due_at is None or due_at <= max(int(loan.due_at), now):
        errors.add("due")
    deadline = day_end(form.get("expiry", "")[:20], request)
    if deadline is None or deadline <= now:
        errors.add("expiry")
    repayment = rate = None
    if form.get("terms") == "rate":
        rate = _percent_bps(form.get("rate", "")[:20], Decimal(MAX_YEARLY_RATE_BPS) / 100)
        if rate is None:
            errors.add("rate")
    else:
        repayment = parse_amount(form.get("repayment", "")[:100], decimals)
        if repayment is None or repayment < int(loan.repayment):
            errors.add("repayment")
    if errors:
        return None, errors
    assert due_at is not None and deadline is not None
    return extensions_api.ExtensionIn(due_at=due_at, deadline=deadline, repayment=repayment,
                                      yearly_rate_bps=rate), set()


@router.post("/{loan_id}/extension", responses=_ERRORS)
async def offer_more_time(request: Request, loan_id: str, chain: ChainDep, users: UsersDep,
                          settings: SettingsDep) -> Response:
    """``step=preview``: the offer in words with a button to sign it; ``step=confirm``: sign and keep it for
    the borrower (``POST /lender/loans/{loan_id}/extensions``)."""
    checked = await signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, _, form = checked
    book = request.app.state.extensions
    fields = {name: form.get(name, "")[:100] for name in ("due", "terms", "repayment", "rate", "expiry")}
    number = _number(loan_id, 1, 2**256 - 1)
    try:
        found = None if number is None else await run_in_threadpool(_loan_of, chain, number, user)
        coin = _stablecoin(chain)
    except NotFound:
        found = None
    except AmphoraError:
        return await _page(request, chain, book, loan_id, 503, fields, error="busy")
    if found is None or number is None:
        return await _page(request, chain, book, loan_id)  # the page says it is not the account's loan
    loan, now = found
    body, errors = _terms(form, request, loan, now, coin.decimals)
    if body is None:
        return await _page(request, chain, book, loan_id, 422, fields, errors)
    if form.get("step") != "confirm":
        repayment = body.repayment if body.repayment is not None else extensions.repayment_with_rate(
            loan, body.due_at, body.yearly_rate_bps or 0)
        preview = {"due_at": body.due_at, "repayment": repayment, "deadline": body.deadline}
        return await _page(request, chain, book, loan_id, 200, fields, preview=preview)
    try:
        await run_in_threadpool(extensions_api.propose_extension, number, body, user, users, chain, book)
    except InvalidRequest as err:
        return await _page(request, chain, book, loan_id, 422, fields, error="refused", detail=err.detail)
    except Conflict as err:
        return await _page(request, chain, book, loan_id, 409, fields, error="closed", detail=err.detail)
    except AmphoraError as err:
        logger.info("extension of loan %s by %s refused: %s", number, user.id, err.detail)
        return await _page(request, chain, book, loan_id, 503, fields, error="busy")
    return redirect(request, f"/console/lender/loans/{number}/extension", done="offered")


@router.post("/{loan_id}/extension/{n}/withdraw", responses=_ERRORS)
async def withdraw(request: Request, loan_id: str, n: str, chain: ChainDep, settings: SettingsDep) -> Response:
    """Withdraw pending proposal ``n`` (``POST /lender/loans/{loan_id}/extensions/{n}/withdraw``). Sent twice,
    the second finds it withdrawn and lands where the first did."""
    checked = await signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, _, _ = checked
    book = request.app.state.extensions
    number, which = _number(loan_id, 1, 2**256 - 1), _number(n, 1, extensions.MAX_PER_LOAN)
    if number is None or which is None:
        return await _page(request, chain, book, loan_id, 404, error="missing")
    try:
        await run_in_threadpool(extensions_api.withdraw_extension, number, which, user, chain, book)
    except (NotFound, Forbidden):
        return await _page(request, chain, book, loan_id, 404, error="missing")
    except Conflict:
        return await _page(request, chain, book, loan_id, 409, error="accepted")
    except AmphoraError:
        return await _page(request, chain, book, loan_id, 503, error="busy")
    return redirect(request, f"/console/lender/loans/{number}/extension", done="withdrawn")
