"""The GS1 Digital Link resolver: ``/01/{gtin}[/22/{vintage}][/10/{lot}[/21/{serial}]]``.

A bottle's QR code carries its Digital Link URI; this router answers it as a GS1
resolver: a 307 redirect to the default link (for a lot sold in the EU, the tracking-free
e-label of the bottle or lot; elsewhere the consumer verification page for a bottle and the
lot document for a lot; the lot document for a product), another link with ``?linkType=``,
every link as an RFC 9264 linkset with ``?linkType=linkset`` or
``Accept: application/linkset+json`` (and ``?linkType=all`` for older clients), and
``/.well-known/gs1resolver`` describing it all. A serial this resolver does not know
under a known lot walks up to the lot, a lot it does not know to the product (its
newest lot); an unknown GTIN is 404; a path GS1's rules reject is 400 with the reason.

Lots are found by their version 2 documents in the documents folder (each read once
per change of the file; the folder is listed again when it changes, and at least
every second) and believed only if the document hashes to the lot's on-chain
``metadata_hash``. HEAD and OPTIONS answer like GET; a CORS preflight is answered
with the CORS headers, and every answer allows any origin.

The routes are coroutines: a redirect whose lots are already known to match the
chain is answered on the event loop without a thread or a node request (the
common case: every scan of a bottle after the first of its lot); anything that
must ask the node (a lot not checked yet, the custodian's report for
``certificationInfo`` or a linkset) runs in the thread pool.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from cachetools import TTLCache
from eth_utils import keccak
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from amphora import gs1
from amphora.lots import is_v2, split_token_id, token_id
from api.chain import ChainService
from api.deps import ChainDep, IndexDep, SettingsDep
from api.errors import (
    InvalidRequest,
    MalformedIdentifier,
    NotDeployed,
    NotFound,
    UpstreamUnavailable,
    error_responses,
)
from api.routers.certificates import certificate_view
from api.settings import Settings
from indexer.reader import IndexReader

router = APIRouter(tags=["gs1 resolver"])

#: GS1's web vocabulary: link types are keys ``VOC + name`` in a linkset.
VOC = "https://ref.gs1.org/voc/"
LINKSET_TYPE = "application/linkset+json"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Accept-Language",
    "Access-Control-Expose-Headers": "Link, Location",
}
#: The link types this resolver may offer, with what each opens.
LINK_TYPES = {
    "defaultLink": "The default: for a lot sold in the EU (its document's `eu_market`), the bottle's and the lot's "
                   "e-label; elsewhere the verification page of a bottle and the lot document of a lot; the lot "
                   "document of a product.",
    "pip": "Product information: the lot's metadata document (version 2: ingredients, nutrition, translations).",
    "ingredientsInfo": "The lot's e-label (GET /e-label/01/{gtin}/10/{lot}): ingredients, allergens emphasised.",
    "allergenInfo": "The lot's e-label: the allergens of the wine, spelled out in the reader's language.",
    "nutritionalInfo": "The lot's e-label: the nutrition declaration per 100 ml and the energy value.",
    "verificationService": "The certificate's on-chain status as JSON (GET /certificates/{token_id}); the "
                           "verification page (text/html) to a client that asks for HTML.",
    "certificationInfo": "The custodian's latest storage attestation report of the bottle, when there is one.",
    "traceability": "The certificate's history from the chain's events (GET /certificates/{token_id}/history).",
    "epcis": "The EPCIS 2.0 events of the bottle, lot or product (GET /epcis/events?MATCH_epc=<its Digital Link>).",
}

_LINK = {"type": "object", "required": ["href"], "properties": {
    "href": {"type": "string"}, "title": {"type": "string"}, "type": {"type": "string"}}}
LINKSET_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["linkset"],
    "properties": {"linkset": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["anchor", VOC + "defaultLink"],
        "properties": {"anchor": {"type": "string"}},
        "additionalProperties": {"type": "array", "minItems": 1, "items": _LINK},
    }}},
}

LinkTypeQuery = Annotated[str | None, Query(
    alias="linkType", max_length=200,
    description="`linkset` or `all` for every link; a link type (`gs1:pip`, `gs1:verificationService`, "
    "`gs1:certificationInfo`, `gs1:traceability`, `gs1:epcis`, `gs1:ingredientsInfo`, `gs1:allergenInfo`, "
    "`gs1:nutritionalInfo`, `gs1:defaultLink`, or the full URI "
    "`https://ref.gs1.org/voc/pip`) for that link; a type not offered gives the default link.")]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The linkset (RFC 9264) of the identified item: link-type URIs as keys, exactly one "
                         "default link. `application/json` for `?linkType=all`.",
          "content": {LINKSET_TYPE: {"schema": LINKSET_SCHEMA}, "application/json": {"schema": LINKSET_SCHEMA}}},
    307: {"description": "Redirect (`Location`) to the requested link type, or the default link; the request's "
                         "query string (but `linkType`) is passed on. `Link` names the linkset."},
    **error_responses(MalformedIdentifier, NotFound, InvalidRequest, UpstreamUnavailable, NotDeployed),
}


@dataclass(frozen=True)
class CataloguedLot:
    lot_id: int
    gtin: str
    lot_code: str
    vintage: int
    salt: str
    bottle_count: int
    document_hash: bytes
    #: Sold in the EU: the default link of its bottles and of the lot is the e-label.
    eu_market: bool = False
    #: The document as parsed (what the e-label shows).
    document: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


#: directory => file name => ((mtime, size), the lot or None for a file that is not a v2 lot document).
_catalogues: dict[str, dict[str, tuple[tuple[int, int], CataloguedLot | None]]] = {}
#: directory => (its mtime when last listed, when it was listed (monotonic), the lots then).
_listed: dict[str, tuple[int, float, list[CataloguedLot]]] = {}
#: A folder is listed again at least this often (seconds): a document rewritten in place (same name, so
#: the folder's mtime stays) is seen within it. New documents change the folder's mtime and are seen at once.
RELIST_SECONDS = 1.0


def _read_lot(path: Path, lot_id: int) -> CataloguedLot | None:
    try:
        body = path.read_bytes()
        doc = json.loads(body)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not is_v2(doc):
        return None
    try:
        return CataloguedLot(lot_id=lot_id, gtin=gs1.validate_gtin(str(doc["gtin"])), lot_code=str(doc["lot_code"]),
                             vintage=int(doc.get("vintage") or 0), salt=str(doc["serial_salt"]),
                             bottle_count=int(doc["bottle_count"]), document_hash=keccak(body),
                             eu_market=doc.get("eu_market") is True, document=doc)
    except (KeyError, TypeError, ValueError):
        return None


def catalogue(directory: Path) -> list[CataloguedLot]:
    """The version 2 lots whose documents are in ``directory``: listed again when the folder
    changes (a new or removed document, or one replaced by a rename) and at least every
    :data:`RELIST_SECONDS`; each document re-read when its file changes. One ``stat`` of the
    folder otherwise, so a scan costs the same with 10 lots or 10,000."""
    listed = listed_catalogue(directory)
    if listed is not None:
        return listed
    try:
        folder_mtime = os.stat(directory).st_mtime_ns
    except OSError:
        return []
    lots = _scan(directory)
    _listed[str(directory)] = (folder_mtime, time.monotonic(), lots)
    return lots


def listed_catalogue(directory: Path) -> list[CataloguedLot] | None:
    """:func:`catalogue`'s answer when it needs no listing or reading (one ``stat``), else None."""
    listed = _listed.get(str(directory))
    if listed is None or time.monotonic() - listed[1] >= RELIST_SECONDS:
        return None
    try:
        folder_mtime = os.stat(directory).st_mtime_ns
    except OSError:
        return None
    return listed[2] if listed[0] == folder_mtime else None


def _scan(directory: Path) -> list[CataloguedLot]:
    entries = _catalogues.setdefault(str(directory), {})
    seen: set[str] = set()
    try:
        scan = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with scan:
        for entry in scan:
            name = entry.name
            if not (name.startswith("lot-") and name.endswith(".json") and name[4:-5].isdigit()):
                continue
            seen.add(name)
            stat = entry.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            cached = entries.get(name)
            if cached is None or cached[0] != stamp:
                entries[name] = (stamp, _read_lot(Path(entry.path), int(name[4:-5])))
    for name in set(entries) - seen:
        del entries[name]
    return [lot for _, lot in entries.values() if lot is not None]


@dataclass(frozen=True)
class Resolved:
    """What a Digital Link names: a bottle (``token`` set), a lot, or a product (its newest lot)."""

    lot: CataloguedLot
    level: str
    token: int | None = None


#: (chain id, lot id, document hash) of documents found to match their lot's on-chain hash. A lot's
#: ``metadata_hash`` is written once, at issuance, so a match stays true; the time limit bounds how long a
#: lot that a reorganisation removed keeps resolving.
_matched: TTLCache[tuple[int, int, bytes], bool] = TTLCache(maxsize=100_000, ttl=600)


def _on_chain(chain: ChainService, lot: CataloguedLot) -> bool:
    key = (chain.chain_id, lot.lot_id, lot.document_hash)
    if key in _matched:
        return True
    record = chain.certificate(token_id(lot.lot_id, 1))
    matches = bool(record.issued) and bytes(record.metadata_hash) == lot.document_hash
    if matches:
        _matched[key] = True
    return matches


def _directory(chain: ChainService, settings: Settings) -> Path:
    return settings.documents_folder(chain.chain_id)


def _of_gtin(lots: list[CataloguedLot], gtin: str) -> list[CataloguedLot]:
    """The lots of ``gtin``, newest first (none checked against the chain yet)."""
    return sorted((lot for lot in lots if lot.gtin == gtin), key=lambda lot: -lot.lot_id)


def warm_candidates(link: gs1.DigitalLink, chain: ChainService, settings: Settings) -> list[CataloguedLot] | None:
    """The catalogued lots of ``link``'s GTIN when :func:`resolve` can answer it from them with
    neither a node request nor a file read (the chain id is known, the folder's listing is
    fresh, and every one of them was already found to match the chain; none for an unknown
    GTIN: 404 at once); else None."""
    if not chain.chain_id_known:
        return None
    listed = listed_catalogue(_directory(chain, settings))
    if listed is None:
        return None
    candidates = _of_gtin(listed, link.gtin)
    matched = all((chain.chain_id, lot.lot_id, lot.document_hash) in _matched for lot in candidates)
    return candidates if matched else None


def resolve(link: gs1.DigitalLink, chain: ChainService, settings: Settings,
            candidates: list[CataloguedLot] | None = None) -> Resolved:
    """The item ``link`` names, walking up from an unknown serial to its lot and from an
    unknown lot to the product; :class:`NotFound` for a GTIN of no issued lot.
    ``candidates``: the GTIN's lots as :func:`warm_candidates` found them, not listed again."""
    if candidates is None:
        candidates = _of_gtin(catalogue(_directory(chain, settings)), link.gtin)
    known = [lot for lot in candidates if _on_chain(chain, lot)]
    if not known:
        raise NotFound(f"GTIN {link.gtin} is not known to this resolver")
    lots = [lot for lot in known if lot.lot_code == link.lot
            and (link.vintage is None or str(lot.vintage) == link.vintage)]
    if link.lot is None or not lots:
        return Resolved(known[0], "product")
    lot = lots[0]
    number = gs1.serial_number(lot.salt, link.serial) if link.serial is not None else None
    if number is None or not 1 <= number <= lot.bottle_count:
        return Resolved(lot, "lot")
    # Issuance mints the whole range 1..bottle_count at once, and `lots.issue` sends the document's count.
    return Resolved(lot, "serial", token_id(lot.lot_id, number))


def _link(href: str, title: str, media_type: str) -> dict[str, str]:
    return {"href": href, "title": title, "type": media_type}


def _epcis_link(item: Resolved, base: str) -> dict[str, str]:
    """The EPCIS events of ``item``: ``MATCH_epc`` with the Digital Link URI of the bottle (as the events name
    it, without the vintage), of the lot or of the product."""
    lot = item.lot
    serial = gs1.gs1_serial(lot.salt, item.token & 0xFFFF_FFFF) if item.token is not None else None
    named = gs1.DigitalLink(gtin=lot.gtin, lot=lot.lot_code if item.level != "product" else None, serial=serial)
    return _link(f"{base}/epcis/events?{urlencode({'MATCH_epc': named.uri(base)})}",
                 "EPCIS 2.0 events (GS1 traceability data)", "application/json")


def elabel_path(item: Resolved) -> str:
    """The path of ``item``'s e-label: ``/e-label`` and the Digital Link of its lot, with the serial
    for a bottle (so the e-label links that bottle's verification page)."""
    lot = item.lot
    named = gs1.DigitalLink(gtin=lot.gtin, lot=lot.lot_code, vintage=str(lot.vintage) if lot.vintage else None,
                            serial=gs1.gs1_serial(lot.salt, split_token_id(item.token)[1])
                            if item.token is not None else None)
    return "/e-label" + named.path()


def links(item: Resolved, base: str, certification: str | None = None) -> dict[str, list[dict[str, str]]]:
    """Link type (short name) => targets of ``item``, the one a redirect takes first."""
    document = _link(f"{base}/lots/{item.lot.lot_id}/metadata.json", "Product information: the lot document",
                     "application/json")
    out = {"pip": [document], "epcis": [_epcis_link(item, base)]}
    if item.level == "product":
        # A product's lots may differ in ingredients: no lot's e-label stands for the product.
        out["defaultLink"] = [document]
        return out
    elabel = f"{base}{elabel_path(item)}"
    out["ingredientsInfo"] = [_link(elabel, "Ingredients (e-label)", "text/html")]
    out["allergenInfo"] = [_link(elabel, "Allergens (e-label)", "text/html")]
    out["nutritionalInfo"] = [_link(elabel, "Nutrition declaration (e-label)", "text/html")]
    if item.token is None:
        out["defaultLink"] = [_link(elabel, "E-label: ingredients and nutrition", "text/html")
                              if item.lot.eu_market else document]
        return out
    page = _link(f"{base}/verify/{item.token}", "Certificate verification page", "text/html")
    out["defaultLink"] = [_link(elabel, "E-label: ingredients and nutrition", "text/html")
                          if item.lot.eu_market else page]
    out["verificationService"] = [_link(f"{base}/certificates/{item.token}", "On-chain status of the certificate",
                                        "application/json"), page]
    out["traceability"] = [_link(f"{base}/certificates/{item.token}/history", "The certificate's history",
                                 "application/json")]
    if certification:
        out["certificationInfo"] = [_link(certification, "Storage attestation report", "text/plain")]
    return out


def _pick(targets: list[dict[str, str]], accept: str) -> str:
    """The target a redirect takes: the first, or the first in HTML for a client that asks for HTML
    (a browser following ``?linkType=gs1:verificationService`` gets the page, a program the JSON)."""
    if "text/html" in accept:
        for target in targets:
            if target["type"] == "text/html":
                return target["href"]
    return targets[0]["href"]


def _anchor(link: gs1.DigitalLink, item: Resolved, base: str) -> str:
    named = gs1.DigitalLink(gtin=link.gtin, lot=item.lot.lot_code if item.level != "product" else None,
                            vintage=str(item.lot.vintage) if item.level != "product" and item.lot.vintage else None,
                            serial=link.serial if item.level == "serial" else None)
    return named.uri(base)


def _certification(chain: ChainService, index: IndexReader, settings: Settings, token: int | None) -> str | None:
    if token is None:
        return None
    custody = certificate_view(chain, index, settings, token).custody
    return custody.storage_document_uri if custody else None


def _short(link_type: str) -> str:
    return link_type.removeprefix("gs1:").removeprefix(VOC)


async def answer(request: Request, chain: ChainService, index: IndexReader, settings: Settings,
                 link_type: str | None) -> Response:
    """The resolver's answer to ``request``: on the event loop when no node request is
    needed (see the module's doc), else in the thread pool."""
    if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        return Response(status_code=204, headers={**CORS_HEADERS, "Access-Control-Max-Age": "86400"})
    raw = request.scope.get("raw_path") or request.url.path.encode()
    try:
        link = gs1.parse_digital_link(raw.decode("latin-1"))
    except gs1.GS1Error as err:
        raise MalformedIdentifier(f"not a valid GS1 Digital Link: {err}") from err
    wants = link_type or ("linkset" if LINKSET_TYPE in request.headers.get("accept", "") else "")
    needs_records = wants in ("linkset", "all") or _short(wants) == "certificationInfo"
    candidates = None if needs_records else warm_candidates(link, chain, settings)
    if candidates is None:
        return await run_in_threadpool(_answer, request, link, chain, index, settings, wants)
    return _answer(request, link, chain, index, settings, wants, candidates)


def _answer(request: Request, link: gs1.DigitalLink, chain: ChainService, index: IndexReader, settings: Settings,
            wants: str, candidates: list[CataloguedLot] | None = None) -> Response:
    item = resolve(link, chain, settings, candidates)
    base = settings.public_base_url.rstrip("/")
    anchor = _anchor(link, item, base)
    headers = {**CORS_HEADERS, "Vary": "Accept", "Cache-Control": "no-store",
               "Link": f'<{anchor}?linkType=linkset>; rel="linkset"; type="{LINKSET_TYPE}"'}
    accept = request.headers.get("accept", "")
    if wants in ("linkset", "all"):
        targets = links(item, base, _certification(chain, index, settings, item.token))
        body = {"linkset": [{"anchor": anchor, **{VOC + name: target for name, target in targets.items()}}]}
        return JSONResponse(body, headers=headers, media_type=LINKSET_TYPE if wants == "linkset" else None)
    name = _short(wants)
    certification = _certification(chain, index, settings, item.token) if name == "certificationInfo" else None
    targets = links(item, base, certification)
    target = _pick(targets.get(name, targets["defaultLink"]), accept)
    query = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "linkType"]
    if query:
        target += ("&" if "?" in target else "?") + urlencode(query)
    return Response(status_code=307, headers={**headers, "Location": target})


_DOC = """Resolve a bottle's GS1 Digital Link: `{path}` (vintage as AI 22 before the lot, qualifiers in GS1's
order). A 307 redirect to the default link (for a lot whose document has `eu_market`, the bottle's or lot's
e-label; otherwise a bottle's verification page or a lot's document; a product's lot document), or with
`linkType` to another link; `linkType=linkset` or `Accept: application/linkset+json` answer the RFC 9264
linkset, `linkType=all` the same as `application/json`. An unknown serial of a known lot walks up to the lot, an
unknown lot to the product. 400 for a path GS1's rules reject, 404 for a GTIN of no lot here. HEAD and OPTIONS
answer like GET; CORS allows any origin."""


@router.get("/01/{gtin}", summary="Resolve a GTIN (GS1 Digital Link)", responses=_RESPONSES,
            response_class=Response, description=_DOC.format(path="/01/{gtin}"))
async def resolve_gtin(gtin: str, request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep,
                 link_type: LinkTypeQuery = None) -> Response:
    return await answer(request, chain, index, settings, link_type)


@router.get("/01/{gtin}/{qualifiers:path}", summary="Resolve a bottle or lot (GS1 Digital Link)",
            responses=_RESPONSES, response_class=Response,
            description=_DOC.format(path="/01/{gtin}[/22/{vintage}][/10/{lot}[/21/{serial}]]"))
async def resolve_item(gtin: str, qualifiers: str, request: Request, chain: ChainDep, index: IndexDep,
                 settings: SettingsDep, link_type: LinkTypeQuery = None) -> Response:
    return await answer(request, chain, index, settings, link_type)


@router.api_route("/01/{gtin}", methods=["HEAD", "OPTIONS"], include_in_schema=False)
async def resolve_gtin_head_options(gtin: str, request: Request, chain: ChainDep, index: IndexDep,
                              settings: SettingsDep, link_type: LinkTypeQuery = None) -> Response:
    return await answer(request, chain, index, settings, link_type)


@router.api_route("/01/{gtin}/{qualifiers:path}", methods=["HEAD", "OPTIONS"], include_in_schema=False)
async def resolve_item_head_options(gtin: str, qualifiers: str, request: Request, chain: ChainDep, index: IndexDep,
                              settings: SettingsDep, link_type: LinkTypeQuery = None) -> Response:
    return await answer(request, chain, index, settings, link_type)


@router.get("/.well-known/gs1resolver", summary="What this GS1 resolver supports",
            responses={200: {"description": "The resolver description.",
                             "content": {"application/json": {"schema": {"type": "object"}}}}})
def resolver_description(settings: SettingsDep) -> JSONResponse:
    """The resolver description file of GS1's resolver standard: its root, the primary
    key it resolves (GTIN, AI 01) with the qualifiers it accepts, and its link types."""
    base = settings.public_base_url.rstrip("/")
    return JSONResponse({
        "name": "Amphora certificate resolver",
        "resolverRoot": base,
        "supportedPrimaryKeys": ["01"],
        "supportedQualifiers": {"01": ["22", "10", "21"]},
        "linkTypeDefaultCanBeLinkset": False,
        "supportedLinkType": [{"namespace": VOC, "prefix": "gs1:", "linkType": VOC + name, "description": text}
                              for name, text in LINK_TYPES.items()],
        "linksetMediaType": LINKSET_TYPE,
    }, headers={**CORS_HEADERS, "Cache-Control": "public, max-age=3600"})
