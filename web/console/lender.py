"""The lender's console under ``/console/lender``: the loans and what backs
them, the offers on the board, and the forms that make, cancel and foreclose.

Every action calls the JSON API's own route function (:mod:`api.routers.lender`):
``create_offer`` (``POST /me/offers``), ``cancel_offer``
(``POST /me/offers/{nonce}/cancel``), ``set_lending_allowance``
(``POST /me/lending-allowance``) and ``foreclose``
(``POST /me/loans/{loan_id}/foreclose``); the loans come from ``list_loans``
(``GET /loans?lender=``) and ``lender_portfolio``
(``GET /lenders/{address}/portfolio``), each open loan's collateral from
``loan_snapshot`` (``GET /loans/{loan_id}``), and the download is that
snapshot signed (``GET /loans/{loan_id}?signed=true``).

Amounts are typed and shown in the stablecoin as a person reads it; the page
turns them into the smallest unit. The offer form carries the offer's nonce,
issued with the page: sent twice, it is one offer. Errors are codes the
templates put in words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.dates import format_timedelta
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.responses import Response

from api import lender, lending
from api.chain import STABLECOIN, Token
from api.deps import BusinessDep, ChainDep, IndexDep, OffersDep, SettingsDep, UsersDep
from api.errors import (
    AmphoraError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotDeployed,
    NotFound,
    OfferUnusable,
    ServiceUnavailable,
    error_responses,
)
from api.routers import index as index_api
from api.routers import lender as lender_api
from api.routers import lending as lending_api
from api.schemas import LoanState
from api.users import User
from web.app.money import amount_of, parse_amount, readable_amounts
from web.app.routes import redirect, signed_in_form
from web.console.routes import business_user, console_page
from web.console.wallet_send import wallet_offer, wallet_send
from web.render import page_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/lender", include_in_schema=False, default_response_class=HTMLResponse)

DAY = 24 * 3600
#: Loans the portfolio lists (the first by id).
LOANS = 50
#: Notices a redirect may name.
NOTICES = frozenset({"offered", "cancelled", "allowed", "foreclosed"})
#: The offer form's fields (and a few to spare): CSRF token, nonce, ten answers.
OFFER_FIELDS = 16
#: Longest terms the form takes, in days.
MAX_DAYS = 3650
_ERRORS = error_responses(NotFound, Forbidden, Conflict, InvalidRequest, html=True)


def _stablecoin(chain: Any) -> Token:
    token = chain.token(STABLECOIN)
    if token is None:
        raise NotDeployed("no stablecoin in this deployment")
    return token


def _span(request: Request) -> Any:
    """Seconds as a person reads a length of time ("3 days"), in the reader's language."""
    locale = page_for(request).locale
    return lambda seconds: format_timedelta(timedelta(seconds=max(int(seconds), 1)), locale=locale, threshold=1.1)


def _percent(bps: int) -> Decimal:
    return (Decimal(int(bps)) / 100).normalize()


# ---------------------------------------------------------------- the view


async def _view(chain: Any, book: Any, index: Any, user: User) -> dict[str, Any]:
    """Everything the console's front page shows: funds and offers (chain), loans and totals
    (index), and the collateral of each open loan (chain, one snapshot each)."""
    mine = await run_in_threadpool(lender.my_offers, chain, book, user.address)
    page = await index_api.list_loans(chain, index, None, LOANS, lender=user.address, borrower=None, state=None)
    totals = await index_api.lender_portfolio(user.address, chain, index)

    def snapshots() -> dict[int, Any]:
        found = {}
        for loan in page.loans:
            if loan.state == LoanState.open:
                try:
                    found[int(loan.loan_id)] = lending.loan_snapshot(chain, int(loan.loan_id))
                except NotFound:
                    continue
        return found

    return {"mine": mine, "loans": page.loans, "totals": totals, "snapshots": await run_in_threadpool(snapshots)}


async def _front(request: Request, chain: Any, book: Any, index: Any, user: User, token: str, roles: Any,
                 status: int = 200, error: str | None = None, detail: str | None = None) -> Response:
    try:
        view = await _view(chain, book, index, user)
        coin = _stablecoin(chain)
    except AmphoraError:
        return console_page(request, "app/unavailable.html", user, token, roles, section="lender", status=503)
    notice = request.query_params.get("done")
    return console_page(request, "console/lender_home.html", user, token, roles, section="lender", status=status,
                        readable=readable_amounts(request), span=_span(request), percent=_percent,
                        money=lambda units: amount_of(int(units), coin.decimals), symbol=coin.symbol,
                        foreclosable=lender.foreclosable, error=error, detail=detail,
                        notice=notice if notice in NOTICES else None, **view)


@router.get("", responses=error_responses(ServiceUnavailable, html=True))
async def home(request: Request, chain: ChainDep, offers: OffersDep, index: IndexDep) -> Response:
    """The lender's loans with their collateral, its offers and its funds."""
    checked = await business_user(request, "lender")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return await _front(request, chain, offers, index, user, token, roles)


# ------------------------------------------------------------- a new offer


def _offer_page(request: Request, chain: Any, user: User, token: str, roles: Any, status: int = 200,
                errors: set[str] | None = None, error: str | None = None, fields: dict[str, str] | None = None,
                nonce: int | None = None) -> HTMLResponse:
    coin = _stablecoin(chain)
    defaults = {"lot": request.query_params.get("lot", "")[:80], "bottle": "", "amount": "", "terms": "rate",
                "repayment": "", "rate": "", "days": "90", "grace": "14", "valid": "7", "ltv": ""}
    return console_page(request, "console/lender_offer.html", user, token, roles, section="lender", status=status,
                        symbol=coin.symbol, errors=errors or set(), error=error, form={**defaults, **(fields or {})},
                        nonce=nonce if nonce is not None else time.time_ns() // 1000)


@router.get("/offers/new")
async def new_offer(request: Request, chain: ChainDep) -> Response:
    """The form of a new offer: lot, one bottle or any, amount, repayment or yearly rate, terms."""
    checked = await business_user(request, "lender")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return _offer_page(request, chain, user, token, roles)


def _number(text: str, low: int, high: int) -> int | None:
    text = text.strip()
    if not text.isdigit() or len(text) > 80:
        return None
    value = int(text)
    return value if low <= value <= high else None


def _percent_bps(text: str, high: Decimal) -> int | None:
    """``5``, ``5.25`` or ``5,25`` (percent) as basis points; None unless 0 to ``high`` with at most 2 decimals."""
    text = text.strip().replace(",", ".").rstrip("%").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    bps = value * 100
    if not value.is_finite() or value < 0 or value > high or bps != bps.to_integral_value():
        return None
    return int(bps)


def _terms(form: dict[str, str], decimals: int, now: int) -> tuple[lender.OfferTerms | None, set[str]]:
    """The offer terms the form states, or the names of the fields in error."""
    errors: set[str] = set()
    lot = _number(form.get("lot", ""), 1, lender.MAX_LOT_ID)
    bottle_text = form.get("bottle", "").strip()
    serial = _number(bottle_text, 1, 2**32 - 1) if bottle_text else 0
    principal = parse_amount(form.get("amount", "")[:100], decimals)
    days, grace, valid = (_number(form.get(name, ""), low, MAX_DAYS)
                          for name, low in (("days", 1), ("grace", 0), ("valid", 1)))
    ltv_text = form.get("ltv", "").strip()
    ltv = _percent_bps(ltv_text, Decimal(100)) if ltv_text else 0
    repayment = rate = None
    if form.get("terms") == "amount":
        repayment = parse_amount(form.get("repayment", "")[:100], decimals)
        if repayment is None or (principal is not None and repayment < principal):
            errors.add("repayment")
    else:
        rate = _percent_bps(form.get("rate", "")[:20], Decimal(lender.MAX_YEARLY_RATE_BPS) / 100)
        if rate is None:
            errors.add("rate")
    for name, value in (("lot", lot), ("bottle", serial), ("amount", principal), ("days", days),
                        ("grace", grace), ("valid", valid), ("ltv", ltv)):
        if value is None:
            errors.add(name)
    if errors:
        return None, errors
    assert lot is not None and serial is not None and principal is not None and days is not None
    assert grace is not None and valid is not None and ltv is not None
    return lender.OfferTerms(lot_id=lot, token_id=lot << 32 | serial if serial else 0, principal=principal,
                             repayment=repayment, yearly_rate_bps=rate, duration=days * DAY,
                             grace_period=grace * DAY, expiry=now + valid * DAY, max_ltv_bps=ltv), set()


async def _offer_form(request: Request, settings: Any) -> tuple[User, str, dict[str, str]] | Response:
    """:func:`signed_in_form` for the offer form, whose twelve fields are more than the app's
    other forms have (the app refuses a body of more than eight unread)."""
    return await signed_in_form(request, settings, max_fields=OFFER_FIELDS)


@router.post("/offers", responses=_ERRORS)
async def create_offer(request: Request, chain: ChainDep, offers: OffersDep, users: UsersDep,
                       settings: SettingsDep) -> Response:
    """Sign and post the offer the form states (``POST /me/offers``). Sent twice, one offer."""
    checked = await _offer_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    roles = await business_user(request, "lender")
    if isinstance(roles, Response):
        return roles
    fields = {name: form.get(name, "")[:100] for name in
              ("lot", "bottle", "amount", "terms", "repayment", "rate", "days", "grace", "valid", "ltv")}
    nonce = _number(form.get("nonce", ""), 0, 2**128)

    def again(status: int, errors: set[str] | None = None, error: str | None = None) -> HTMLResponse:
        return _offer_page(request, chain, user, token, roles[2], status, errors, error, fields, nonce)

    if nonce is None:
        return again(422, error="form")
    coin = _stablecoin(chain)
    board = await run_in_threadpool(offers.for_lender, user.address, 0)
    if any(int(stored.offer["nonce"]) == nonce for stored in board):
        return redirect(request, "/console/lender", done="offered")  # the form sent twice
    now = (await run_in_threadpool(chain.latest_block_ref)).timestamp
    terms, errors = _terms(form, coin.decimals, now)
    if terms is None:
        return again(422, errors)
    body = lender_api.OfferTermsIn(**{**asdict(terms), "nonce": nonce})
    try:
        if user.wallet:  # the account's own wallet signs it (web/console/wallet_send.py)
            return await wallet_offer(request, user, token, roles[2], lender.OfferTerms(**body.model_dump()))
        await run_in_threadpool(lender_api.create_offer, body, user, users, chain, offers, settings)
    except InvalidRequest as err:
        field = "bottle" if err.detail.startswith("token_id") else "lot" if err.detail.startswith("lot_id") else None
        return again(422, {field} if field else set(), None if field else "refused")
    except OfferUnusable as err:
        logger.info("offer of %s unusable: %s", user.id, err.detail)
        return again(409, error="allowance" if "approved" in err.detail else "funds" if "holds" in err.detail
                     else "refused")
    except Conflict:
        return again(409, error="too_many")
    except AmphoraError:
        return again(503, error="busy")
    return redirect(request, "/console/lender", done="offered")


# ------------------------------------------------------ actions on the chain


async def _act(request: Request, settings: Any, chain: Any, offers: Any, index: Any,
               action: Callable[[dict[str, str], User], Any], done: str,
               twice: type[AmphoraError] | None = None) -> Response:
    """Run ``action(form, user)`` (which calls an API route function) for the signed-in lender;
    the front page in words if refused. ``twice``: the error that means the form was sent twice."""
    checked = await signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    roles = await business_user(request, "lender")
    if isinstance(roles, Response):
        return roles
    try:
        if user.wallet:  # the account's own wallet sends it (web/console/wallet_send.py)
            return await wallet_send(request, user, "/console/lender", action, form, user)
        await run_in_threadpool(action, form, user)
    except AmphoraError as err:
        if twice is not None and isinstance(err, twice):  # the form sent twice: the first one did it
            return redirect(request, "/console/lender", done=done)
        logger.info("lender action of %s refused: %s", user.id, err.detail)
        code = {"gas_unfunded": "gas", "would_revert": "refused", "conflict": "refused", "forbidden": "not_yours",
                "not_found": "not_found", "invalid_request": "amount"}.get(err.code, "busy")
        status = err.status_code if err.status_code < 500 else 503
        return await _front(request, chain, offers, index, user, token, roles[2], status, code, err.detail)
    return redirect(request, "/console/lender", done=done)


@router.post("/allowance", responses=_ERRORS)
async def allowance(request: Request, chain: ChainDep, offers: OffersDep, index: IndexDep, business: BusinessDep,
                    settings: SettingsDep) -> Response:
    """Let the lending contract take up to the amount typed (``POST /me/lending-allowance``)."""

    def action(form: dict[str, str], user: User) -> Any:
        text = form.get("amount", "")[:100].strip()
        units = 0 if text.strip("0.,") == "" and text else parse_amount(text, _stablecoin(chain).decimals)
        if units is None:
            raise InvalidRequest("amount: not an amount")
        return lender_api.set_lending_allowance(lender_api.AllowanceIn(amount=units), user, chain, business)

    return await _act(request, settings, chain, offers, index, action, done="allowed")


@router.post("/offers/{nonce}/cancel", responses=_ERRORS)
async def cancel_offer(request: Request, nonce: str, chain: ChainDep, offers: OffersDep, index: IndexDep,
                       business: BusinessDep, settings: SettingsDep) -> Response:
    """Cancel the offer with this nonce on chain (``POST /me/offers/{nonce}/cancel``). Sent twice,
    the second finds the nonce cancelled and lands where the first did."""
    number = _number(nonce, 0, 2**256 - 1)

    def action(form: dict[str, str], user: User) -> Any:
        if number is None:
            raise NotFound("no such offer")
        return lender_api.cancel_offer(number, user, chain, business)

    return await _act(request, settings, chain, offers, index, action, done="cancelled", twice=Conflict)


@router.post("/loans/{loan_id}/foreclose", responses=_ERRORS)
async def foreclose(request: Request, loan_id: str, chain: ChainDep, offers: OffersDep, index: IndexDep,
                    business: BusinessDep, settings: SettingsDep) -> Response:
    """Take the bottle of a loan whose grace period is over (``POST /me/loans/{loan_id}/foreclose``).
    Sent twice, the second finds the bottle already the lender's."""
    number = _number(loan_id, 0, 2**256 - 1)

    def action(form: dict[str, str], user: User) -> Any:
        if number is None:
            raise NotFound("no such loan")
        latest = lending.loan_snapshot(chain, number).loan
        if latest is not None and latest.state == LoanState.foreclosed and latest.lender == user.address:
            return None  # the form sent twice: the bottle is already the lender's
        return lender_api.foreclose(number, user, chain, business)

    return await _act(request, settings, chain, offers, index, action, done="foreclosed")


@router.get("/loans/{loan_id}/snapshot.json", responses=error_responses(NotFound, ServiceUnavailable, html=True))
async def snapshot(request: Request, loan_id: str, chain: ChainDep) -> Response:
    """The loan's collateral snapshot signed by the service's snapshot key
    (``GET /loans/{loan_id}?signed=true``), as a file to keep."""
    checked = await business_user(request, "lender")
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    number = _number(loan_id, 0, 2**256 - 1)
    try:
        if number is None:
            raise NotFound("no such loan")
        signed = await run_in_threadpool(lending_api.loan, number, chain, request.app.state.snapshot_signer, True)
    except NotFound:
        return console_page(request, "console/lender_missing.html", user, token, roles, section="lender", status=404)
    except AmphoraError:
        return console_page(request, "app/unavailable.html", user, token, roles, section="lender", status=503)
    if signed.loan is None or signed.loan.lender != user.address:
        return console_page(request, "console/lender_missing.html", user, token, roles, section="lender", status=404)
    return JSONResponse(signed.model_dump(mode="json"), headers={
        "Content-Disposition": f'attachment; filename="amphora-loan-{number}-block-{signed.block_number}.json"',
        "Cache-Control": "no-store"})
