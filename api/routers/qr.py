"""QR codes and label sheets: the code printed on a bottle (its GS1 Digital Link), the
code of a gift's claim link, and a lot's printable label sheet (PDF).

A bottle's code is found by its token id or by its Digital Link path; it encodes
the bottle's canonical Digital Link under ``AMPHORA_PUBLIC_BASE_URL``, built from the
lot's version 2 document, which is used only if it hashes to the lot's on-chain
``metadata_hash`` (the rule of ``GET /lots/{lot_id}/metadata.json``, called here).

A gift's claim link holds a bearer secret, so its code is drawn only on a ``POST``
(the secret in the body, never in a URL that access logs, proxies and browser
histories keep), answered with ``Cache-Control: no-store``, and the service neither
logs nor stores the secret: it builds the link, draws it, and forgets it. The holder's
app can equally draw the code itself with :mod:`amphora.qr` (see docs/labels.md).

Label sheets take a core for a second or so per hundred labels, so a request draws at
most :data:`MAX_LABELS_PER_REQUEST` labels, and at most :data:`CONCURRENT_SHEETS`
sheets are drawn at once in a process (503 with ``Retry-After`` beyond).
"""

from __future__ import annotations

import io
import json
import threading
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from amphora import gs1, labels, lots, qr
from amphora.lots import split_token_id
from api.chain import ChainService
from api.deps import ChainDep, SettingsDep
from api.errors import (
    DocumentMismatch,
    InvalidRequest,
    MalformedIdentifier,
    NoDigitalLink,
    NotDeployed,
    NotFound,
    RenderingBusy,
    TooManyRequests,
    UpstreamUnavailable,
    error_responses,
)
from api.ratelimit import RateLimiter, client_key
from api.routers.certificates import TokenIdPath
from api.routers.metadata import lot_document
from api.routers.resolver import resolve
from api.schemas import Bytes32Hex, Uint256In
from api.settings import Settings


async def _throttle(request: Request) -> None:
    """The app's rate limit (`AMPHORA_RATE_LIMIT_PER_SECOND`, bursts of `AMPHORA_RATE_LIMIT_BURST`) per
    client network: drawing codes and sheets costs CPU, and these routes need no account."""
    limiter = cast(RateLimiter, request.app.state.rate_limiter)
    limiter.check(f"qr:{client_key(request)}", "QR code and label requests from your network")


router = APIRouter(tags=["qr codes and labels"], dependencies=[Depends(_throttle)])

#: Labels one request may ask for (about 42 A4 pages).
MAX_LABELS_PER_REQUEST = 1_000
#: Label sheets drawn at once in one process (one core; the rest of the API keeps the others).
CONCURRENT_SHEETS = 1
_sheets = threading.BoundedSemaphore(CONCURRENT_SHEETS)


class QRFormat(StrEnum):
    svg = "svg"
    png = "png"


class Paper(StrEnum):
    a4 = "a4"
    letter = "letter"


FormatQuery = Annotated[QRFormat, Query(
    alias="format", description="`svg` (vector, sized in millimetres for print) or `png` (pixels for screens).")]
ModuleQuery = Annotated[float, Query(
    ge=qr.MIN_MODULE_MM, le=qr.MAX_MODULE_MM,
    description=f"SVG only: millimetres a module (at least {qr.MIN_MODULE_MM} mm, GS1's minimum for phones).")]
ScaleQuery = Annotated[int, Query(ge=1, le=qr.MAX_PNG_SCALE, description="PNG only: pixels a module.")]

_IMAGE = {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                      for media in qr.MEDIA_TYPES.values()}}
_BOTTLE_ERRORS = (NotFound, NoDigitalLink, InvalidRequest, DocumentMismatch, UpstreamUnavailable, NotDeployed,
                  TooManyRequests)


@lru_cache(maxsize=2_048)
def _bottle_code(uri: str, fmt: str, module_mm: float, scale: int) -> bytes:
    """A bottle's code, remembered (a code is drawn in about 12 ms). Never used for a
    claim link: its secret must not stay in memory after the answer."""
    return qr.render(uri, fmt, module_mm, scale)


def _image(content: str, fmt: QRFormat, module_mm: float, scale: int, headers: dict[str, str],
           remember: bool) -> Response:
    try:
        body = (_bottle_code if remember else qr.render)(content, fmt.value, module_mm, scale)
    except qr.QRError as err:
        raise InvalidRequest(str(err)) from err
    return Response(body, media_type=qr.MEDIA_TYPES[fmt.value], headers=headers)


def lot_document_v2(chain: ChainService, settings: Settings, lot_id: int) -> dict[str, Any]:
    """The lot's version 2 document, served by the rule of `GET /lots/{lot_id}/metadata.json`
    (404 for no lot or no document, 409 for a document that is not the one on chain);
    :class:`NoDigitalLink` for a version 1 document."""
    doc = json.loads(bytes(lot_document(lot_id=lot_id, chain=chain, settings=settings).body))
    if not isinstance(doc, dict) or not lots.is_v2(doc):
        raise NoDigitalLink(f"lot {lot_id} has a version 1 document: no GTIN, so no GS1 Digital Link")
    return doc


def bottle_link(chain: ChainService, settings: Settings, token: int) -> str:
    """The Digital Link URI of certificate ``token``'s bottle."""
    lot_id, number = split_token_id(token)
    if number == 0 or lot_id == 0 or not chain.certificate(token).issued:
        raise NotFound(f"certificate {token} was never issued")
    doc = lot_document_v2(chain, settings, lot_id)
    return lots.digital_link(doc, number).uri(settings.public_base_url)


_BOTTLE_HEADERS = {"Cache-Control": "public, max-age=300"}


@router.get("/certificates/{token_id}/qr", summary="QR code of a bottle (by token id)", response_class=Response,
            responses={200: {"description": "The QR code of the bottle's GS1 Digital Link.", **_IMAGE},
                       **error_responses(*_BOTTLE_ERRORS)})
def bottle_qr(token_id: TokenIdPath, chain: ChainDep, settings: SettingsDep, fmt: FormatQuery = QRFormat.svg,
              module_mm: ModuleQuery = qr.MODULE_MM, scale: ScaleQuery = qr.PNG_SCALE) -> Response:
    """The QR code to print on the bottle of certificate `token_id`: its GS1 Digital
    Link (`/01/{gtin}[/22/{vintage}]/10/{lot}/21/{serial}` under the service's public
    address), error correction level Q, a four-module quiet zone, no logo. The SVG's
    width and height are in millimetres (`module_mm` a module). 404 for a certificate
    never issued, or a lot whose document is version 1 (`no_digital_link`)."""
    return _image(bottle_link(chain, settings, token_id), fmt, module_mm, scale, _BOTTLE_HEADERS, remember=True)


@router.get("/qr/01/{gtin}/{qualifiers:path}", summary="QR code of a bottle (by its Digital Link path)",
            response_class=Response,
            responses={200: {"description": "The QR code of the bottle's GS1 Digital Link.", **_IMAGE},
                       **error_responses(MalformedIdentifier, *_BOTTLE_ERRORS)})
def digital_link_qr(gtin: str, qualifiers: str, request: Request, chain: ChainDep, settings: SettingsDep,
                    fmt: FormatQuery = QRFormat.svg, module_mm: ModuleQuery = qr.MODULE_MM,
                    scale: ScaleQuery = qr.PNG_SCALE) -> Response:
    """The QR code of the bottle that the Digital Link path after `/qr` names (the
    path a bottle's code carries, e.g. `/qr/01/09520001000003/22/2019/10/L1/21/ABCDEFG`).
    The code carries the bottle's canonical Digital Link, from its lot's document. 400
    for a path GS1's rules reject; 404 unless the path names one bottle of an issued lot
    (a lot or a product has no bottle code)."""
    # The path as sent: a lot or serial may hold a percent-encoded "/", which the decoded parameters lose.
    raw = request.scope.get("raw_path") or request.url.path.encode()
    try:
        link = gs1.parse_digital_link(raw.decode("latin-1").removeprefix("/qr"))
    except gs1.GS1Error as err:
        raise MalformedIdentifier(f"not a valid GS1 Digital Link: {err}") from err
    if link.lot is None or link.serial is None:
        raise NotFound("a bottle's Digital Link names its lot (10) and serial (21)")
    item = resolve(link, chain, settings)
    if item.token is None:
        raise NotFound(f"no bottle with serial {link.serial} in lot {link.lot} of GTIN {link.gtin}")
    return _image(bottle_link(chain, settings, item.token), fmt, module_mm, scale, _BOTTLE_HEADERS,
                  remember=True)


class GiftLinkQR(BaseModel):
    """A pending gift's claim link, to draw as a QR code."""

    token_id: Uint256In = Field(description="The gifted certificate.")
    claim_secret: Bytes32Hex = Field(description="The claim key's private key (the link's secret). Used to draw the "
                                     "code and forgotten: never logged, stored or cached.")


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.post("/qr/gift-links", summary="QR code of a gift's claim link", response_class=Response,
             responses={200: {"description": "The QR code of the claim link "
                                             "`<public address>/app/claim/<token_id>#claim=<claim secret>`. Sent with "
                                             "`Cache-Control: no-store`.", **_IMAGE},
                        **error_responses(InvalidRequest, TooManyRequests)})
def gift_link_qr(body: GiftLinkQR, settings: SettingsDep, fmt: FormatQuery = QRFormat.svg,
                 module_mm: ModuleQuery = qr.MODULE_MM, scale: ScaleQuery = qr.PNG_SCALE) -> Response:
    """The QR code of a gift's claim link,
    `<public address>/app/claim/<token_id>#claim=<claim secret>` (the holder app's
    claim page of the gifted bottle, with the secret in the fragment), for a holder's app that cannot
    draw one itself (an app that can should: then the secret never leaves the giver's
    device but to the recipient). The secret travels only in this body and, in the
    link, in the fragment, which browsers never send to a server. The answer is not
    cached (`no-store`); nothing is logged or stored. The link is built here from the
    token id and secret, so this is no general QR service. 422 for a secret that is not
    a valid secp256k1 key or a token id out of range."""
    try:
        link = qr.claim_link(settings.public_base_url, body.token_id, body.claim_secret)
    except qr.QRError as err:
        raise InvalidRequest(str(err)) from None
    return _image(link, fmt, module_mm, scale, _NO_STORE, remember=False)


@router.get("/lots/{lot_id}/labels.pdf", summary="Printable label sheet of a lot (PDF)", response_class=Response,
            responses={200: {"description": "The label sheet: one label per bottle of the range.",
                             "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                       **error_responses(*_BOTTLE_ERRORS, RenderingBusy)})
def label_sheet(
    lot_id: Annotated[Uint256In, Path(description="Decimal lot id.")], chain: ChainDep, settings: SettingsDep,
    first: Annotated[int, Query(ge=1, le=lots.MAX_BOTTLES_PER_LOT, description="First bottle number.")] = 1,
    last: Annotated[int | None, Query(ge=1, le=lots.MAX_BOTTLES_PER_LOT, description=(
        f"Last bottle number; default: the lot's last, or the {MAX_LABELS_PER_REQUEST:,}th from `first`."))] = None,
    paper: Annotated[Paper, Query(description="`a4` (3 x 8 labels a page) or `letter` (3 x 7).")] = Paper.a4,
) -> Response:
    """Labels for bottles `first`..`last` of the lot, one per bottle: the bottle's QR
    code (its GS1 Digital Link), the heading "Ingredients" beside it (the EU notice on
    wine e-labels asks for it), the energy value per 100 ml, and the GTIN, vintage, lot
    and serial in human-readable form (`(01) 09520001000003`). At most
    1,000 labels a request (422 beyond, and for a range outside the lot); for larger
    lots ask range by range, or use `python -m amphora.labels`. 404 for an unknown lot
    or a version 1 document (`no_digital_link`); 503 `rendering_busy` while other sheets
    are being drawn."""
    if lot_id == 0 or lot_id >= 2**64:
        raise NotFound(f"lot {lot_id} does not exist")
    doc = lot_document_v2(chain, settings, lot_id)
    if last is None:
        last = min(int(doc["bottle_count"]), first + MAX_LABELS_PER_REQUEST - 1)
    try:
        labels.check_document(doc)
        labels.check_range(doc, first, last, MAX_LABELS_PER_REQUEST)
    except labels.LabelError as err:
        raise InvalidRequest(str(err)) from err
    if not _sheets.acquire(blocking=False):
        raise RenderingBusy("other label sheets are being drawn; try again shortly", 5)
    try:
        out = io.BytesIO()
        labels.write_pdf(doc, settings.public_base_url, first, last, paper.value, out)
    finally:
        _sheets.release()
    name = f"lot-{lot_id}-labels-{first}-{last}-{paper.value}.pdf"
    return Response(out.getvalue(), media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "public, max-age=300"})
