"""The borrower accepts a lender's offer of more time, on the loan's page in the holder's app.

The borrow page (:mod:`web.app.money`) shows the loan's pending proposal in
words (:func:`api.extensions.pending`); its form posts here, and the handler
calls the JSON API's own route function ``accept_extension``
(``POST /me/loans/{loan_id}/extensions/{n}/accept``), which signs the same
``LoanExtension`` with the account's key and relays ``extend_loan``. The form
names the proposal by its number, and a proposal never changes: what is
accepted is what the page showed. A proposal the lender withdrew or replaced
meanwhile is refused in words; a form sent twice lands where the first did.

A wallet account signs the same ``LoanExtension`` in its browser wallet: the
page's form names the public typed data (``GET /relay/typed-data/loan-extension``
with the proposal's terms), ``/static/wallet.js`` has the wallet sign it
(``eth_signTypedData_v4``) and posts the signature here, which goes to the
route as ``borrower_signature`` (checked to be the borrower's before anything
is sent). The service never signs for a wallet account.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.responses import Response

from api import extensions
from api.deps import ChainDep, OffersDep, RelayerDep, SettingsDep, UsersDep, custodial_origin
from api.errors import (
    AmphoraError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RelayRefused,
    TooManyRequests,
    error_responses,
)
from api.routers.extensions import AcceptIn, accept_extension
from web.app.money import loan_form, render_borrow_page
from web.app.routes import _redirect, _wait
from web.render import page_for

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)

_ERRORS = error_responses(NotFound, Forbidden, Conflict, InvalidRequest, TooManyRequests, html=True)


def _signed(text: str) -> AcceptIn | None:
    """The wallet's signature from the form's ``0x`` hex (65 bytes for a key; what a contract wallet's
    ERC-1271 check takes, at most as long) as the route's body, or None."""
    try:
        return AcceptIn.model_validate({"borrower_signature": text.strip()[:200]})
    except ValidationError:
        return None


@router.post("/bottles/{token_id}/extensions/{n}/accept", responses=_ERRORS)
async def accept_more_time(request: Request, token_id: str, n: str, users: UsersDep, chain: ChainDep,
                           offers: OffersDep, relayer: RelayerDep, settings: SettingsDep) -> Response:
    """Accept proposal ``n`` of this bottle's open loan (``POST /me/loans/{loan_id}/extensions/{n}/accept``)."""
    checked = await loan_form(request, settings, chain, offers, token_id, "extend")
    if isinstance(checked, Response):
        return checked
    user, token, form, number, view, key = checked
    book: extensions.ExtensionBook = request.app.state.extensions
    loan, which = view["loan"], int(n) if n.isdigit() and len(n) <= 3 else 0
    done = f"/app/bottles/{number}/borrow"

    async def again(status: int, error: str, headers: dict[str, str] | None = None, wait: str = "") -> Response:
        return await render_borrow_page(request, chain, offers, user, token, token_id, status, error, headers, wait)

    if loan is None or not 1 <= which <= extensions.MAX_PER_LOAN:
        return await again(409, "extension_gone")
    loan_id = int(loan.loan_id)
    body = None
    if user.wallet:
        body = _signed(form.get("signature", ""))
        if body is None or body.borrower_signature is None:
            return await again(422, "extension_unsigned")
    try:
        await run_in_threadpool(accept_extension, loan_id, which, user, users, chain, book, relayer, settings,
                                custodial_origin(request, user, key), body)
    except TooManyRequests as err:
        return await again(429, "throttled", err.headers, _wait(page_for(request), err))
    except (Conflict, NotFound) as err:
        proposal = await run_in_threadpool(book.get, loan_id, which)
        if proposal is not None and proposal.state == extensions.ACCEPTED:
            return _redirect(request, done, done="extended")  # the form sent twice
        logger.info("extension of loan %s by %s refused: %s", loan_id, user.id, err.detail)
        expired = proposal is not None and proposal.state == extensions.PENDING and "expired" in err.detail
        return await again(409, "extension_expired" if expired else "extension_gone")
    except InvalidRequest:
        return await again(422, "extension_wallet_refused" if user.wallet else "extension_refused")
    except (RelayRefused, Forbidden) as err:
        logger.info("extension of loan %s by %s refused: %s", loan_id, user.id, err.detail)
        return await again(409, "extension_refused")
    except AmphoraError as err:
        return await again(503 if err.status_code >= 500 else err.status_code, "busy", err.headers)
    return _redirect(request, done, done="extended")
