"""The consoles for business accounts that keep their own key in a browser wallet.

Every console action calls a public API route's function, which sends through
:class:`api.business.BusinessSender`; for a wallet account that sender
simulates the call and prepares the transaction instead
(:class:`api.business_wallet.WalletSendRequired`). One branch per action hands
over here (``if user.wallet: return await wallet_send(...)``), which shows

* ``GET /console/wallet/{id}``: "Confirm in your wallet": what will be sent,
  and a button that ``/static/console_wallet.js`` turns into the wallet's
  ``eth_sendTransaction`` (the wallet pays the gas); the hash goes back to
* ``POST /console/wallet/{id}``: checked by the public
  ``POST /me/business/transactions/{id}/sent`` route's function (the same
  transaction as prepared, once), which waits for the receipt; then the outcome
  in words and the way back to the section.

A lender's offer is not a transaction but an EIP-712 signature: for a wallet
lender the offer form hands over to :func:`wallet_offer`, whose page has the
wallet sign the typed data (``eth_signTypedData_v4``) and posts offer and
signature to ``POST /console/wallet/offers/signed``, which puts them on the board
through the public ``POST /offers`` route's function (it checks the signature
recovers the lender).

Without JavaScript the pages say that the wallet is needed. Only these pages
run a script: their policy adds ``script-src 'self'``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import Response

from api.business import Roles
from api.business_wallet import Prepared, Reported, WalletSendRequired
from api.chain import STABLECOIN
from api.errors import AmphoraError, Conflict, InvalidRequest, NotFound, OfferUnusable, ServiceUnavailable
from api.lender import OfferTerms, offer_of
from api.lending import lending_typed_data
from api.routers.business_wallet import ReportIn, transaction_sent
from api.routers.lending import post_offer
from api.schemas import LoanOfferIn, OfferPost
from api.users import User
from web.app.routes import redirect, render_page, signed_in_form
from web.app.wallet import WALLET_HEADERS
from web.console.routes import business_user, console_page

router = APIRouter(prefix="/console/wallet", include_in_schema=False, default_response_class=HTMLResponse)

#: Where the page leads back to: a console section's page, nothing else (no open redirect).
_BACK = re.compile(r"^/console(/[a-z]+)(/[A-Za-z0-9_-]+)*$")  # an issuance job's id: URL-safe base64
_ID = re.compile(r"^[0-9a-f]{32}$")
#: The reported outcome's error codes, for the template's words.
_FAILURES = {"transaction_mismatch": "mismatch", "transaction_failed": "failed", "invalid_request": "unknown",
             "not_found": "gone"}


def _back(path: str) -> str:
    return path if _BACK.match(path) else "/console"


def _section(back: str) -> str | None:
    parts = back.split("/")
    return parts[2] if len(parts) > 2 else None


async def wallet_send(request: Request, user: User, back: str, action: Callable[..., Any], *args: Any) -> Response:
    """Run a console action's API function for a wallet account: the
    transaction it prepared is shown to confirm in the wallet (a 303 to its
    page). Errors other than the preparation (a call that would revert, bad
    input) are raised to the caller, which shows them as for any account."""
    try:
        if inspect.iscoroutinefunction(action):
            await action(*args)
        else:
            await run_in_threadpool(action, *args)
    except WalletSendRequired as needed:
        return redirect(request, f"/console/wallet/{needed.prepared.id}", back=_back(back))
    return redirect(request, _back(back))  # nothing to send (the action needed no transaction)


def _page(request: Request, user: User, token: str, roles: Roles, prepared: Prepared, back: str,
          status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("detail", None)
    context.setdefault("sent", None)
    return console_page(request, "console/wallet_send.html", user, token, roles, section=_section(back),
                        status=status, headers=WALLET_HEADERS, prepared=prepared, back=back,
                        value=hex(prepared.value), gas=hex(prepared.gas), chain=hex(prepared.chain_id), **context)


@router.get("/{prepared_id}")
async def confirm_page(request: Request, prepared_id: str) -> Response:
    """The prepared transaction and the button that sends it from the wallet."""
    checked = await business_user(request)
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    back = _back(request.query_params.get("back", ""))
    store = request.app.state.business.wallet
    if not user.wallet or store is None or not _ID.match(prepared_id):
        return render_page(request, "app/not_yours.html", status=404, user=user, token=token)
    try:
        prepared = await run_in_threadpool(store.get, user, prepared_id)
    except NotFound:  # another account's, or never prepared: the same answer
        return render_page(request, "app/not_yours.html", status=404, user=user, token=token)
    if prepared.tx_hash is not None:  # sent already: no second button, its outcome can be read again
        return _page(request, user, token, roles, prepared, back, sent=Reported(prepared.tx_hash, None))
    return _page(request, user, token, roles, prepared, back)


@router.post("/{prepared_id}")
async def sent(request: Request, prepared_id: str) -> Response:
    """The wallet's transaction hash, checked and followed to its receipt."""
    checked = await signed_in_form(request, request.app.state.settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    business = request.app.state.business
    if not user.wallet or business.wallet is None or not _ID.match(prepared_id):
        return render_page(request, "app/not_yours.html", status=404, user=user, token=token)
    roles_checked = await business_user(request)
    if isinstance(roles_checked, Response):
        return roles_checked
    roles = roles_checked[2]
    back = _back(form.get("back", ""))
    try:
        prepared = await run_in_threadpool(business.wallet.get, user, prepared_id)
    except NotFound:
        return render_page(request, "app/not_yours.html", status=404, user=user, token=token)
    try:
        body = ReportIn(tx_hash=form.get("tx_hash", "").strip().lower())
        reported = await run_in_threadpool(transaction_sent, prepared_id, body, user, business)
    except ValidationError:
        return _page(request, user, token, roles, prepared, back, status=422, error="unsent")
    except ServiceUnavailable:
        return _page(request, user, token, roles, prepared, back, status=503, error="busy")
    except AmphoraError as err:
        return _page(request, user, token, roles, prepared, back, status=err.status_code,
                     error=_FAILURES.get(err.code, "busy"), detail=err.detail)
    return _page(request, user, token, roles, prepared, back, sent=reported)


# ------------------------------------------------------- a lender's offer


def _offer_page(request: Request, user: User, token: str, roles: Roles, offer: LoanOfferIn, status: int = 200,
                error: str | None = None) -> HTMLResponse:
    chain = request.app.state.chain
    typed = lending_typed_data(chain, "LoanOffer", offer.message())
    token_info = chain.token(STABLECOIN)
    decimals = token_info.decimals if token_info is not None else 0
    symbol = token_info.symbol if token_info is not None else ""
    readable = {"principal": Decimal(offer.principal).scaleb(-decimals),
                "repayment": Decimal(offer.repayment).scaleb(-decimals)}
    return console_page(request, "console/wallet_offer.html", user, token, roles, section="lender", status=status,
                        headers=WALLET_HEADERS, offer=offer, offer_json=offer.model_dump_json(),
                        typed=json.dumps(typed, separators=(",", ":")), readable=readable, symbol=symbol,
                        error=error)


async def wallet_offer(request: Request, user: User, token: str, roles: Roles, terms: OfferTerms) -> Response:
    """The offer of ``terms`` with the wallet lender as lender, on a page where
    the wallet signs it. :class:`InvalidRequest` (raised to the caller, which
    shows it as for any account) for terms the contract would never accept."""
    book = request.app.state.offers
    offer = await run_in_threadpool(offer_of, request.app.state.chain, book, user, terms)
    return _offer_page(request, user, token, roles, offer)


@router.post("/offers/signed")
async def signed_offer(request: Request) -> Response:
    """The wallet's signature of the offer shown: on the board through ``POST /offers``."""
    checked = await signed_in_form(request, request.app.state.settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    roles_checked = await business_user(request, "lender")
    if isinstance(roles_checked, Response):
        return roles_checked
    roles = roles_checked[2]
    try:
        offer = LoanOfferIn.model_validate_json(form.get("offer", ""))
    except ValidationError:
        return render_page(request, "app/refused.html", status=403, user=user, token=token, reason="form")
    if not user.wallet or offer.lender.lower() != user.address.lower():  # only the account's own offer
        return render_page(request, "app/refused.html", status=403, user=user, token=token, reason="form")
    state = request.app.state
    try:
        post = OfferPost.model_validate({"offer": offer, "signature": form.get("signature", "")})
        await run_in_threadpool(post_offer, post, state.chain, state.offers, state.settings)
    except (ValidationError, InvalidRequest):
        return _offer_page(request, user, token, roles, offer, 422, "unsigned")
    except OfferUnusable:
        return _offer_page(request, user, token, roles, offer, 409, "unusable")
    except Conflict:
        return _offer_page(request, user, token, roles, offer, 409, "too_many")
    except AmphoraError:
        return _offer_page(request, user, token, roles, offer, 503, "busy")
    return redirect(request, "/console/lender", done="offered")
