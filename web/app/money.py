"""The holder's money pages under ``/app``: points (balance, send, history),
borrowing against a bottle (the offers, accept, repay) and leaving with the
bottles (the key export).

Every action calls the JSON API's own route function: ``custodial_points_transfer``
(``POST /me/relay/points-transfers``), ``custodial_loan_acceptance``
(``POST /me/relay/loan-acceptances``), ``custodial_loan_repayment``
(``POST /me/relay/loan-repayments``) and ``export_key`` (``POST /me/key-export``);
the offers come from ``matching_offers`` (``GET /offers``), the loan from
``collateral_snapshot`` (``GET /collateral/{token_id}``), the points history from
``points_history_page`` (``GET /me/points/history``). Each form carries a
random ``once`` field issued with the page: it becomes the action's
``Idempotency-Key``, so a form sent twice is one action.

What the relayer would refuse for a reason a person understands (more points
than the account holds, a stablecoin balance short of the repayment) is
checked before relaying, so the page can say it in words; the relayer's own
simulation still guards everything else.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api import extensions, lending
from api.chain import POINTS, STABLECOIN, ChainService, Token
from api.deps import ChainDep, IndexDep, OffersDep, RelayerDep, SettingsDep, UsersDep, custodial_origin
from api.errors import (
    AmphoraError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RelayRefused,
    ServiceUnavailable,
    TooManyRequests,
    error_responses,
)
from api.index_schemas import PointsMoveOut
from api.routers import auth
from api.routers.custodial import (
    CustodialLoanAcceptance,
    CustodialLoanRepayment,
    CustodialPointsTransfer,
    custodial_loan_acceptance,
    custodial_loan_repayment,
    custodial_points_transfer,
)
from api.routers.index import points_history_page
from api.schemas import CertificateState, KeyExportRequest, LoanOfferIn, LoanState, PostedOffer, checksum_address
from api.settings import Settings
from api.users import User
from web.app.recipients import account_address
from web.app.routes import _page, _redirect, _signed_in, _signed_in_form, _wait
from web.app.session import FORM_KEY, new_form_key
from web.render import page_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

#: Points movements the points page shows (the latest).
HISTORY = 30
#: Offers the borrow page shows (the cheapest).
OFFERS = 20
#: An amount as a person types it: digits, then maybe a decimal point or comma and more digits.
AMOUNT = re.compile(r"^[0-9]{1,60}(?:[.,][0-9]{1,60})?$")
_ERRORS = error_responses(NotFound, Forbidden, Conflict, InvalidRequest, TooManyRequests, ServiceUnavailable,
                          html=True)


def readable_amounts(request: Request) -> Any:
    """Formats an amount with the reader's grouping and every decimal it has (Babel's default keeps three)."""
    locale = page_for(request).locale
    return lambda value: format_decimal(value, locale=locale, decimal_quantization=False)



def amount_of(units: int, decimals: int) -> Decimal:
    """``units`` of a token with ``decimals`` as a person reads it (trailing zeros dropped)."""
    value = Decimal(units).scaleb(-decimals)
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def parse_amount(text: str, decimals: int) -> int | None:
    """``text`` (``12.5``, ``12,5``) in the token's smallest unit; None unless a positive
    number with at most ``decimals`` decimals."""
    text = text.strip().replace(" ", "").replace("\u00a0", "")
    if not AMOUNT.match(text):
        return None
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None
    if value <= 0:
        return None
    units = value.scaleb(decimals)
    if units != units.to_integral_value():
        return None
    return int(units)


def _action_key(kind: str, form: dict[str, str]) -> str | None:
    """The ``Idempotency-Key`` of a form's action: its one-time field, under the form's kind."""
    once = form.get("once", "")
    return f"app-{kind}:{once}" if FORM_KEY.match(once) else None


# ------------------------------------------------------------------- points


def _points_balance(chain: ChainService, user: User) -> tuple[Token, int]:
    token = chain.token(POINTS)
    if token is None:
        raise ServiceUnavailable("no points token in this deployment")
    return token, chain.token_balance(token, user.address)


async def _points_view(chain: ChainService, index: Any, user: User) -> tuple[Token, int, list[PointsMoveOut]]:
    """The balance (from the chain) and the latest movements, from ``GET /me/points/history``."""
    token, balance = await run_in_threadpool(_points_balance, chain, user)
    history = await points_history_page(index, chain.chain_id, checksum_address(user.address), None, HISTORY)
    return token, balance, history.moves


async def _points_page(request: Request, chain: ChainService, index: Any, user: User, token: str, status: int = 200,
                       errors: set[str] | None = None, error: str | None = None, to: str = "", amount: str = "",
                       headers: dict[str, str] | None = None, wait: str = "") -> Response:
    try:
        points, balance, moves = await _points_view(chain, index, user)
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    notice = request.query_params.get("done")
    return _page(request, "app/money_points.html", status=status, headers=headers, user=user, token=token,
                 readable=readable_amounts(request),
                 balance=amount_of(balance, points.decimals), symbol=points.symbol,
                 moves=[(move, amount_of(abs(move.points), points.decimals)) for move in moves],
                 once=new_form_key(), errors=errors or set(), error=error, to=to, amount=amount, wait=wait,
                 notice=notice if notice == "sent" else None)


@router.get("/points", responses=error_responses(ServiceUnavailable, html=True))
async def points_page(request: Request, chain: ChainDep, index: IndexDep) -> Response:
    """The account's points: balance from the chain, the latest movements from the index, a form to send."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    return await _points_page(request, chain, index, user, token)


async def _recipient(request: Request, users: Any, user: User, text: str) -> str | None:
    """An account name (looked up within the account's hourly limit: :class:`TooManyRequests`
    beyond it) or a 0x address as an address; None when it names nobody."""
    text = text.strip()
    if text.lower().startswith("0x"):
        try:
            return checksum_address(text)
        except ValueError:
            return None
    return await account_address(request, users, user.id, text) if text else None


@router.post("/points/send", responses=_ERRORS)
async def send_points(request: Request, users: UsersDep, chain: ChainDep, index: IndexDep, relayer: RelayerDep,
                      settings: SettingsDep) -> Response:
    """Pay points to an account name or a 0x address (``POST /me/relay/points-transfers``)."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    to_text, amount_text = form.get("to", "")[:300], form.get("amount", "")[:100]

    async def again(status: int, errors: set[str], error: str | None = None,
                    headers: dict[str, str] | None = None, wait: str = "") -> Response:
        return await _points_page(request, chain, index, user, token, status, errors, error, to_text, amount_text,
                                  headers, wait)

    key = _action_key("points", form)
    if key is None:
        return await again(422, set(), "form")
    points = chain.token(POINTS)
    if points is None:
        return await again(503, set(), "busy")
    errors = set()
    try:
        to = await _recipient(request, users, user, to_text)
    except TooManyRequests as err:
        return await again(429, set(), "throttled", err.headers, _wait(page_for(request), err))
    if to is None:
        errors.add("to")
    elif to.lower() == user.address.lower():
        errors.add("self")
    value = parse_amount(amount_text, points.decimals)
    if value is None:
        errors.add("amount")
    if errors:
        return await again(422, errors)
    assert to is not None and value is not None
    try:
        if value > await run_in_threadpool(chain.token_balance, points, user.address):
            return await again(422, {"balance"})
        origin = custodial_origin(request, user, key)
        await run_in_threadpool(custodial_points_transfer, CustodialPointsTransfer(to=to, value=value), user,
                                users, chain, relayer, settings, origin)
    except TooManyRequests as err:
        return await again(429, set(), "throttled", err.headers, _wait(page_for(request), err))
    except (RelayRefused, Conflict) as err:
        logger.info("points transfer of %s refused: %s", user.id, err.detail)
        return await again(409, set(), "refused")
    except AmphoraError as err:
        return await again(503 if err.status_code >= 500 else err.status_code, set(), "busy", err.headers)
    return _redirect(request, "/app/points", done="sent")


# ---------------------------------------------------------------- borrowing


def _token_number(token_id: str) -> int | None:
    number = int(token_id) if token_id.isdigit() and len(token_id) <= 78 else None
    return number if number is not None and number < 2**256 else None


def _borrow_view(chain: ChainService, book: Any, token_id: int, user: User) -> dict[str, Any] | None:
    """What the borrow page shows, or None when the bottle is not the account's."""
    snapshot = lending.collateral_snapshot(chain, token_id)
    owner = snapshot.certificate.owner
    if owner is None or owner.lower() != user.address.lower():
        return None
    stablecoin = chain.token(STABLECOIN)
    if stablecoin is None:
        raise ServiceUnavailable("no stablecoin in this deployment")
    state = snapshot.certificate.state
    offers: list[PostedOffer] = []
    if state == CertificateState.active:
        offers = lending.matching_offers(chain, book, token_id, limit=OFFERS).offers
    loan = snapshot.loan if snapshot.loan is not None and snapshot.loan.state == LoanState.open else None
    return {"latest": snapshot.loan, "state": state.value, "offers": offers, "loan": loan, "stablecoin": stablecoin,
            "balance": chain.token_balance(stablecoin, user.address), "now": snapshot.block_timestamp}


async def render_borrow_page(request: Request, chain: ChainService, book: Any, user: User, token: str, token_id: str,
                       status: int = 200, error: str | None = None, headers: dict[str, str] | None = None,
                       wait: str = "") -> Response:
    number = _token_number(token_id)
    try:
        view = None if number is None else await run_in_threadpool(_borrow_view, chain, book, number, user)
    except NotFound:
        view = None
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    if view is None:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    decimals = view["stablecoin"].decimals
    notice = request.query_params.get("done")
    extension = await run_in_threadpool(extensions.pending, request.app.state.extensions, view["loan"], view["now"])
    return _page(request, "app/money_borrow.html", status=status, headers=headers, user=user, token=token,
                 readable=readable_amounts(request), extension=extension,
                 token_id=number, once=new_form_key(), error=error, wait=wait,
                 notice=notice if notice in ("accepted", "repaid", "extended") else None,
                 money=lambda units: amount_of(int(units), decimals), symbol=view["stablecoin"].symbol, **{
                     k: v for k, v in view.items() if k != "stablecoin"})


@router.get("/bottles/{token_id}/borrow", responses=error_responses(NotFound, ServiceUnavailable, html=True))
async def borrow_page(request: Request, token_id: str, chain: ChainDep, offers: OffersDep) -> Response:
    """Borrow against one of the account's bottles: the offers for it in words, or its open loan and the
    stablecoin to repay it. 404 in words for a bottle that is not the account's."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    return await render_borrow_page(request, chain, offers, user, token, token_id)


async def loan_form(request: Request, settings: Settings, chain: ChainService, book: Any, token_id: str,
                     kind: str) -> tuple[User, str, dict[str, str], int, dict[str, Any], str] | Response:
    """A borrow form's account, token, fields, bottle, view and action key; or the answer refusing it."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    number = _token_number(token_id)
    try:
        view = None if number is None else await run_in_threadpool(_borrow_view, chain, book, number, user)
    except NotFound:
        view = None
    except ServiceUnavailable:
        return _page(request, "app/unavailable.html", status=503, user=user, token=token)
    if view is None or number is None:
        return _page(request, "app/not_yours.html", status=404, user=user, token=token)
    key = _action_key(kind, form)
    if key is None:
        return await render_borrow_page(request, chain, book, user, token, token_id, 422, "form")
    return user, token, form, number, view, key


async def _relayed(request: Request, chain: ChainService, book: Any, user: User, token: str, token_id: str,
                   call: Any, *args: Any) -> Response | None:
    """Run the API route ``call``; None when it was accepted, else the borrow page saying why not."""
    try:
        await run_in_threadpool(call, *args)
    except TooManyRequests as err:
        return await render_borrow_page(request, chain, book, user, token, token_id, 429, "throttled", err.headers,
                                  _wait(page_for(request), err))
    except (RelayRefused, Conflict, NotFound) as err:
        logger.info("loan action of %s refused: %s", user.id, err.detail)
        return await render_borrow_page(request, chain, book, user, token, token_id, 409, "refused")
    except AmphoraError as err:
        return await render_borrow_page(request, chain, book, user, token, token_id,
                                  503 if err.status_code >= 500 else err.status_code, "busy", err.headers)
    return None


@router.post("/bottles/{token_id}/borrow", responses=_ERRORS)
async def accept_offer(request: Request, token_id: str, users: UsersDep, chain: ChainDep, offers: OffersDep,
                       relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Accept one of the offers the borrow page listed for this bottle (``POST /me/relay/loan-acceptances``):
    the bottle is pledged and the loan paid to the account. An offer not on this bottle's list (another
    bottle's, expired, used) is refused in words, nothing relayed."""
    checked = await loan_form(request, settings, chain, offers, token_id, "accept")
    if isinstance(checked, Response):
        return checked
    user, token, form, number, view, key = checked
    wanted = form.get("offer", "").lower()
    chosen = next((o for o in view["offers"] if o.offer_hash.lower() == wanted), None)
    if chosen is None:
        if view["loan"] is not None and view["loan"].borrower.lower() == user.address.lower():
            return _redirect(request, f"/app/bottles/{number}/borrow", done="accepted")  # the form sent twice
        return await render_borrow_page(request, chain, offers, user, token, token_id, 409, "offer")
    body = CustodialLoanAcceptance(offer=LoanOfferIn.model_validate(chosen.offer.model_dump()),
                                   lender_signature=chosen.signature, token_id=number)
    refused = await _relayed(request, chain, offers, user, token, token_id, custodial_loan_acceptance, body, user,
                             users, chain, relayer, settings, custodial_origin(request, user, key))
    return refused or _redirect(request, f"/app/bottles/{number}/borrow", done="accepted")


@router.post("/bottles/{token_id}/repay", responses=_ERRORS)
async def repay_loan(request: Request, token_id: str, users: UsersDep, chain: ChainDep, offers: OffersDep,
                     relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Repay this bottle's open loan from the account's stablecoin (``POST /me/relay/loan-repayments``);
    the bottle unlocks. A balance short of the repayment is refused in words, nothing relayed."""
    checked = await loan_form(request, settings, chain, offers, token_id, "repay")
    if isinstance(checked, Response):
        return checked
    user, token, _, number, view, key = checked
    loan = view["loan"]
    if loan is None:
        latest = view["latest"]
        if latest is not None and latest.state == LoanState.repaid and latest.borrower.lower() == user.address.lower():
            return _redirect(request, f"/app/bottles/{number}/borrow", done="repaid")  # the form sent twice
        return await render_borrow_page(request, chain, offers, user, token, token_id, 409, "no_loan")
    if view["balance"] < int(loan.repayment):
        return await render_borrow_page(request, chain, offers, user, token, token_id, 422, "short")
    refused = await _relayed(request, chain, offers, user, token, token_id, custodial_loan_repayment,
                             CustodialLoanRepayment(loan_id=int(loan.loan_id)), user, users, chain, relayer,
                             settings, custodial_origin(request, user, key))
    return refused or _redirect(request, f"/app/bottles/{number}/borrow", done="repaid")


# --------------------------------------------------------------- key export


@router.get("/account/key")
def key_page(request: Request) -> Response:
    """Leave with my bottles: the warning and the password form for the key export."""
    signed_in = _signed_in(request)
    if signed_in is None:
        return _redirect(request, "/app/login")
    user, token = signed_in
    return _page(request, "app/money_key.html", user=user, token=token, key=None, error=None, wait="")


@router.post("/account/key", responses=error_responses(Forbidden, TooManyRequests, ServiceUnavailable, html=True))
async def export_key(request: Request, users: UsersDep, settings: SettingsDep) -> Response:
    """The account's private key after the password is typed again (``POST /me/key-export``, its
    password-attempt limit included). The page is ``Cache-Control: no-store``; the key is in no log."""
    checked = await _signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked

    def again(status: int, error: str, headers: dict[str, str] | None = None, wait: str = "") -> HTMLResponse:
        return _page(request, "app/money_key.html", status=status, headers=headers, user=user, token=token,
                     key=None, error=error, wait=wait)

    try:
        body = KeyExportRequest(password=form.get("password", "")[:1024])
        answer = await run_in_threadpool(auth.export_key, body, user, users, Response(), request)
    except Forbidden:
        return again(403, "wrong")
    except TooManyRequests as err:
        return again(429, "throttled", err.headers, _wait(page_for(request), err))
    except AmphoraError as err:
        return again(503, "busy", err.headers)
    return _page(request, "app/money_key.html", user=user, token=token, key=answer.private_key, error=None,
                 wait="")
