"""The API's one exception hierarchy, and the one place it becomes HTTP.

Services raise :class:`AmphoraError` subclasses; each class names its HTTP
status and error code. :func:`install_exception_handlers` turns them (and
FastAPI's own validation and routing errors) into the body
``{"error": code, "detail": message}``, or into a page in the reader's
language for the routes that serve HTML (:func:`web.verify.error_page`).
:func:`error_responses` builds a route's ``responses=`` from the same classes,
so what the OpenAPI document promises is what the handlers send.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorBody
from web import verify

logger = logging.getLogger(__name__)


class AmphoraError(Exception):
    """Base of every error the API reports to a client."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: What this error means, for the OpenAPI document.
    meaning: ClassVar[str] = "Unexpected error."

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Extra response headers (``WWW-Authenticate``, ``Retry-After``).
        self.headers = headers or {}


class NotFound(AmphoraError):
    status_code = 404
    code = "not_found"
    meaning = "The resource does not exist (a certificate never issued, a transaction unknown to the node)."


class InvalidRequest(AmphoraError):
    status_code = 422
    code = "invalid_request"
    meaning = ("A path, query or body value is malformed (token id, address, proof, signature, hash, nonce) "
               "or out of range (a block range that is inverted or reaches beyond the latest block).")


class MalformedIdentifier(AmphoraError):
    status_code = 400
    code = "malformed_identifier"
    meaning = ("A GS1 Digital Link path that GS1's rules reject: a wrong GTIN check digit, qualifiers out of "
               "order, a value over 20 characters or outside GS1's character set 82, a data attribute in the "
               "path. The detail says which.")


class NoDigitalLink(NotFound):
    code = "no_digital_link"
    meaning = ("The lot has a version 1 metadata document: it names no GTIN, so its bottles have no GS1 Digital "
               "Link to put in a QR code or on a label.")
class QueryParameterInvalid(AmphoraError):
    status_code = 400
    code = "query_parameter_exception"
    meaning = ("An EPCIS query (`GET /epcis/events`) with a parameter this service does not support, a parameter "
               "given twice, or a value it cannot read (a time without a time zone, a business step that is not a "
               "URI, an identifier that is not a GS1 Digital Link, a page token it did not hand out); EPCIS calls "
               "this a QueryParameterException. The detail names the parameter.")


class Unauthorized(AmphoraError):
    status_code = 401
    code = "unauthorized"
    meaning = ("Credentials are missing, unknown, expired or revoked: send `Authorization: Bearer <token>` with "
               "a session token from `POST /auth/login` or an API token from `POST /auth/api-tokens`.")

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": 'Bearer realm="amphora"'})


class Forbidden(AmphoraError):
    status_code = 403
    code = "forbidden"
    meaning = ("The credentials are valid but do not allow this: another account's resource, an operator "
               "endpoint without the admin token, a read-only API token on a route that acts, or a password that "
               "does not match on re-authentication.")


class Conflict(AmphoraError):
    status_code = 409
    code = "conflict"
    meaning = "The request conflicts with stored state (an identifier already taken, an idempotency key reused "\
              "with a different request)."


class InFlight(Conflict):
    code = "in_flight"
    meaning = ("The same signed call is already in the relayer's outbox and not yet final (sent under another "
               "idempotency key or by another account); `detail` names that request: follow it at "
               "`GET /relay/{request_id}`. Nothing was sent again.")


class TooManyRequests(AmphoraError):
    status_code = 429
    code = "rate_limited"
    meaning = ("Too many requests, or a quota is used up: actions or gas per day per account, per client "
               "network or for the whole service (no account or network may take more than a set share of the "
               "service's day), or the gas of an on-chain actor's reverted transactions today; `Retry-After` "
               "says how many seconds to wait.")

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, {"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = max(1, int(retry_after))


class PayloadTooLarge(AmphoraError):
    status_code = 413
    code = "payload_too_large"
    meaning = ("The request body is larger than the service accepts (`AMPHORA_MAX_BODY_BYTES`, 64 KiB by default); "
               "it was refused before being read in full or parsed.")


class RelayRefused(AmphoraError):
    status_code = 409
    code = "relay_refused"
    meaning = ("The relayer will not pay for this transaction: its gas exceeds the relayer's cap, it would do "
               "nothing (a transfer of 0), or its signer is a contract whose code is not on the operator's "
               "allow-list (`AMPHORA_RELAY_CONTRACT_CODE_HASHES`).")


class AlreadyReverted(RelayRefused):
    code = "already_reverted"
    meaning = ("The relayer already paid for exactly this call and it reverted on chain; it never pays for the "
               "same call twice. `detail` names the failed request. Nothing was sent.")


class WouldRevert(RelayRefused):
    code = "would_revert"
    meaning = (
        "The chain would reject the transaction as it stands now (bad signature, used nonce or authorization, "
        "expired deadline or authorization, locked or foreign token, balance too low); `detail` holds the "
        "contract's revert reason. Nothing was sent."
    )


class OfferUnusable(AmphoraError):
    status_code = 409
    code = "offer_unusable"
    meaning = ("The loan offer cannot be accepted on chain now: it has expired, its nonce is used or "
               "cancelled (one by one or below the lender's nonce floor), or the lender does not hold or has not "
               "approved the principal in the stablecoin.")


class DocumentMismatch(AmphoraError):
    status_code = 409
    code = "document_mismatch"
    meaning = ("The stored lot metadata document does not hash to the lot's on-chain metadata_hash, so it is "
               "not served.")


class ServiceUnavailable(AmphoraError):
    status_code = 503
    code = "service_unavailable"
    meaning = ("A part of the service is not configured or cannot use its configuration: custodial accounts "
               "without a valid `AMPHORA_MASTER_KEY` (or with one that does not decrypt the stored key), "
               "operator endpoints without `AMPHORA_ADMIN_TOKEN`.")


class ServerBusy(ServiceUnavailable):
    code = "busy"
    meaning = ("Every password-hashing slot is busy (signup, login, key export and password change hash the "
               "password with Argon2id, which takes much memory, so only a few run at once); `Retry-After` says "
               "when to try again.")

    def __init__(self, detail: str, retry_after: int) -> None:
        AmphoraError.__init__(self, detail, {"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = max(1, int(retry_after))


class RenderingBusy(ServiceUnavailable):
    code = "rendering_busy"
    meaning = ("Label sheets are being drawn for as many requests as the service allows at once (a sheet takes "
               "a core for seconds); `Retry-After` says when to try again.")

    def __init__(self, detail: str, retry_after: int) -> None:
        AmphoraError.__init__(self, detail, {"Retry-After": str(max(1, int(retry_after)))})


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream_unavailable"
    meaning = "The blockchain node cannot be reached or answered with an error."


class NotDeployed(ServiceUnavailable):
    code = "not_deployed"
    meaning = ("The deploy manifest is missing, is for another chain, lacks a contract the route needs, or names "
               "a contract without code (or without the function the route needs).")


class IndexBehind(ServiceUnavailable):
    code = "index_behind"
    meaning = ("The index (the chain follower's tables) has not yet reached a block the answer needs (it is "
               "catching up, or stopped: see `/health`); `detail` says how far it goes. Try again shortly.")


class RelayUnavailable(ServiceUnavailable):
    code = "relay_unavailable"
    meaning = ("The relayer has no key or an invalid one (relayed transactions and signed snapshots need it), "
               "or the node refused its transaction.")


def error_responses(*errors: type[AmphoraError], html: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route that may raise ``errors``; several
    errors with one status share an entry whose description lists their codes."""
    grouped: dict[int, list[type[AmphoraError]]] = {}
    for error in errors:
        grouped.setdefault(error.status_code, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, classes in sorted(grouped.items()):
        description = " ".join(f"`{c.code}`: {c.meaning}" for c in classes)
        if html:
            responses[status] = {
                "description": description + " Served as an HTML page.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        else:
            responses[status] = {"model": ErrorBody, "description": description}
    return responses


def _serves_html(request: Request) -> bool:
    route = request.scope.get("route")
    response_class = getattr(route, "response_class", None)
    return isinstance(response_class, type) and issubclass(response_class, HTMLResponse)


def _respond(request: Request, status: int, code: str, detail: str) -> Response:
    if _serves_html(request):
        # A person reads it: no error code or field name, the words of web/templates/verify_error.html.
        return verify.error_page(request, status)
    return JSONResponse(ErrorBody(error=code, detail=detail).model_dump(), status_code=status)


def error_body_response(exc: AmphoraError) -> Response:
    """``exc`` as its JSON response, for the code that answers before routing
    (the body-size limit), where no exception handler runs."""
    response = JSONResponse(ErrorBody(error=exc.code, detail=exc.detail).model_dump(), status_code=exc.status_code)
    response.headers.update(exc.headers)
    return response


async def _amphora_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AmphoraError)
    level = logging.WARNING if exc.status_code >= 500 else logging.INFO
    logger.log(level, "%s %s -> %d %s: %s", request.method, request.url.path, exc.status_code, exc.code,
               exc.detail)
    response = _respond(request, exc.status_code, exc.code, exc.detail)
    response.headers.update(exc.headers)
    return response


def _location(loc: tuple[Any, ...]) -> str:
    # ("path", "token_id") -> "token_id"; ("body", "signature") -> "signature"
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 and loc[0] in ("path", "query", "header", "body") else [
        str(p) for p in loc]
    return ".".join(parts) or "request"


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def _error_text(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":  # loc is ("body", character offset)
        position = error.get("loc", ("body", "?"))[-1]
        return f"body: not valid JSON ({error.get('ctx', {}).get('error', 'decode error')} at character {position})"
    return f"{_location(tuple(error.get('loc', ())))}: {_message(error)}"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    messages = [_error_text(e) for e in exc.errors()]
    return _respond(request, InvalidRequest.status_code, InvalidRequest.code, "; ".join(messages))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot read at all (bytes that are not UTF-8; text that is not JSON
        # is already a validation error). To the API that is one more malformed request: the 422 that every
        # route with a body declares, not a 400 that none does.
        return _respond(request, InvalidRequest.status_code, InvalidRequest.code,
                        "body: cannot be read: send JSON in UTF-8")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = _respond(request, exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AmphoraError, _amphora_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
