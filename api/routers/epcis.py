"""EPCIS 2.0 events: ``GET /epcis/events``, a small subset of the EPCIS query interface.

The bottles' histories (issuance, storage attestations, custody moves, ownership
changes, pledges, loss reports, redemptions) as GS1 EPCIS 2.0 ObjectEvents in an
EPCISQueryDocument (JSON-LD), read from the index. The event mapping lives in
:mod:`indexer.epcis`, the event hash in :mod:`amphora.epcis`; docs/epcis.md explains
both. Lots are identified by their version 2 documents (the resolver's catalogue),
believed only when the document hashes to the lot's on-chain ``metadata_hash``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from amphora import epcis, gs1
from api.deps import ChainDep, IndexDep, SettingsDep
from api.errors import NotDeployed, QueryParameterInvalid, UpstreamUnavailable, error_responses
from api.routers.resolver import CataloguedLot, catalogue
from indexer import epcis as epcis_index
from indexer.reader import MAX_PAGE, BadCursor, IndexStatus, decode_cursor

router = APIRouter(tags=["epcis"])

#: The query parameters this service answers (EPCIS 2.0 names).
PARAMETERS = ("MATCH_epc", "EQ_bizStep", "GE_eventTime", "LT_eventTime", "perPage", "nextPageToken")
DEFAULT_PAGE = 50
VERSION_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}

_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["@context", "type", "schemaVersion", "creationDate", "epcisBody"],
    "properties": {
        "@context": {"type": "array"},
        "type": {"type": "string", "enum": ["EPCISQueryDocument"]},
        "schemaVersion": {"type": "string"},
        "creationDate": {"type": "string", "format": "date-time"},
        "epcisBody": {"type": "object", "required": ["queryResults"], "properties": {"queryResults": {
            "type": "object", "required": ["queryName", "resultsBody"], "properties": {
                "queryName": {"type": "string"},
                "resultsBody": {"type": "object", "required": ["eventList"], "properties": {
                    "eventList": {"type": "array", "items": {"type": "object"}}}}}}}},
    },
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "An EPCISQueryDocument (EPCIS 2.0 JSON-LD) whose `eventList` holds one page of "
                         "ObjectEvents in chain order. `Link: <...>; rel=\"next\"` names the next page when there is "
                         "one; `GS1-EPCIS-Version` and `GS1-CBV-Version` say which standards it follows.",
          "content": {"application/json": {"schema": _DOCUMENT_SCHEMA}}},
    **error_responses(QueryParameterInvalid, UpstreamUnavailable, NotDeployed),
}

_DOC = """The bottles' histories as GS1 EPCIS 2.0 ObjectEvents (JSON-LD) in an EPCISQueryDocument: issuance
(`commissioning`), storage attestations (`storing`), custody moves (`receiving`, possessing party), ownership
changes (`accepting`, owning party), pledges (`reserving`, disposition `reserved`), loss or theft reports
(disposition `stolen`) and redemptions (`decommissioning`). Bottles are GS1 Digital Link URIs
(`https://<host>/01/<GTIN>/10/<lot>/21/<serial>`), parties `https://<host>/accounts/<address>`; each event's
`eventID` is its CBV 2.0 event hash. Only lots with a version 2 document (a GTIN) are exported.

Parameters (EPCIS 2.0 names, each at most once): `MATCH_epc` a Digital Link URI of a bottle (any host; also
`/01/<GTIN>/21/<serial>`), or of a lot (`/01/<GTIN>/10/<lot>`) or product (`/01/<GTIN>`) for all their
bottles; `EQ_bizStep` a CBV business step, bare (`storing`) or as URI; `GE_eventTime` and `LT_eventTime`
ISO 8601 date-times with a time zone; `perPage` 1 to 200 (default 50); `nextPageToken` from the `Link` header
of the page before. Anything else, or a value that cannot be read, is 400 `query_parameter_exception` with
the reason."""


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise QueryParameterInvalid(f"{name}: given {len(values)} times; this service takes one value")
    return values[0] if values else None


def _seconds(name: str, value: str | None) -> int | None:
    """The first whole unix second at or after ``value`` (block times are whole seconds)."""
    if value is None:
        return None
    try:
        return math.ceil(epcis.parse_time(value).timestamp())
    except epcis.EpcisError as err:
        raise QueryParameterInvalid(f"{name}: {err}") from err
    except (OverflowError, ValueError) as err:
        raise QueryParameterInvalid(f"{name}: {value!r} is out of range") from err


def _lot_identity(lot: CataloguedLot) -> epcis.LotIdentity:
    return epcis.LotIdentity(lot.lot_id, lot.gtin, lot.lot_code, lot.salt, lot.bottle_count)


def _match(value: str | None, lots: dict[int, epcis.LotIdentity]) -> epcis_index.EventFilter | None:
    """The lots or bottle ``MATCH_epc`` names (None: every lot); a filter of no lot for an unknown item."""
    if value is None:
        return None
    if not value.startswith(("https://", "http://")):
        raise QueryParameterInvalid("MATCH_epc: not a GS1 Digital Link URI (https://<host>/01/<GTIN>/...)")
    try:
        link = gs1.parse_digital_link(value)
    except gs1.GS1Error as err:
        raise QueryParameterInvalid(f"MATCH_epc: not a valid GS1 Digital Link URI: {err}") from err
    except (ValueError, IndexError) as err:  # a URI that does not even split (a bad port or IPv6 host)
        raise QueryParameterInvalid("MATCH_epc: not a URI") from err
    candidates = [lot for lot in lots.values() if lot.gtin == link.gtin
                  and (link.lot is None or lot.lot_code == link.lot)]
    if link.serial is None:
        return epcis_index.EventFilter(lot_ids=frozenset(lot.lot_id for lot in candidates))
    for lot in sorted(candidates, key=lambda lot: lot.lot_id):
        number = gs1.serial_number(lot.salt, link.serial)
        if number is not None and 1 <= number <= lot.bottle_count:
            return epcis_index.EventFilter(lot_ids=frozenset({lot.lot_id}), bottle=(lot.lot_id, number))
    return epcis_index.EventFilter(lot_ids=frozenset())


def _biz_step(value: str | None) -> tuple[str | None, bool]:
    """(the bare CBV step, whether anything can match): a URI outside CBV is legal EPCIS but never used here."""
    if value is None:
        return None, True
    step = epcis.short_biz_step(value)
    if step is not None:
        return step, True
    if ":" in value.strip():
        return None, False
    raise QueryParameterInvalid(f"EQ_bizStep: {value!r} is neither a CBV business step (e.g. storing) nor a URI")


def _per_page(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE:
        raise QueryParameterInvalid(f"perPage: a whole number from 1 to {MAX_PAGE}")
    return int(value)


def _parameter(name: str, description: str, example: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema,
            **({"example": example} if example else {})}


#: The parameters as OpenAPI documents them; the route reads them itself (EPCIS answers 400, not 422).
_PARAMETERS_DOC = [
    _parameter("MATCH_epc", "A bottle's, lot's or product's GS1 Digital Link URI (any host).",
               "https://verify.example/01/09520123456788/10/L2019A/21/TK3WQ5A"),
    _parameter("EQ_bizStep", "A CBV business step, bare (`storing`) or as URI.", "storing"),
    _parameter("GE_eventTime", "Events at or after this ISO 8601 date-time (with a time zone).",
               "2026-05-01T00:00:00Z"),
    _parameter("LT_eventTime", "Events before this ISO 8601 date-time (with a time zone).", "2026-06-01T00:00:00Z"),
    _parameter("perPage", f"Events per page, 1 to {MAX_PAGE} (default {DEFAULT_PAGE}).", "50"),
    _parameter("nextPageToken", "The next page's token, from the `Link` header of the page before."),
]


@router.get("/epcis/events", summary="EPCIS 2.0 events of the bottles (a SimpleEventQuery subset)",
            responses=_RESPONSES, response_class=JSONResponse, description=_DOC,
            openapi_extra={"parameters": _PARAMETERS_DOC})
async def epcis_events(request: Request, chain: ChainDep, index: IndexDep, settings: SettingsDep) -> JSONResponse:
    unknown = sorted(set(request.query_params) - set(PARAMETERS))
    if unknown:
        raise QueryParameterInvalid(f"{unknown[0]}: not a query parameter of this service (it takes "
                                    f"{', '.join(PARAMETERS)})")
    values = {name: _one(request, name) for name in PARAMETERS}
    since = _seconds("GE_eventTime", values["GE_eventTime"])
    until = _seconds("LT_eventTime", values["LT_eventTime"])
    step, possible = _biz_step(values["EQ_bizStep"])
    limit = _per_page(values["perPage"])
    try:
        after = decode_cursor(values["nextPageToken"], 3)
    except BadCursor as err:
        raise QueryParameterInvalid(f"nextPageToken: {err}".replace("next_cursor", "nextPageToken")) from err
    base = settings.public_base_url.rstrip("/")
    chain_id = chain.chain_id
    documents = catalogue(settings.documents_folder(chain_id))

    def query(tx: Any, status: IndexStatus) -> tuple[list[dict[str, Any]], str | None]:
        committed = epcis_index.lot_facts(tx, chain_id)
        lots = {lot.lot_id: _lot_identity(lot) for lot in documents
                if committed.get(lot.lot_id) == "0x" + lot.document_hash.hex()}
        matched = _match(values["MATCH_epc"], lots)
        if not possible:
            return [], None
        flt = epcis_index.EventFilter(lot_ids=matched.lot_ids if matched else None,
                                      bottle=matched.bottle if matched else None, biz_step=step, since=since,
                                      until=until)
        page = epcis_index.events(tx, chain_id, lots, base, flt, after=(after[0], after[1], after[2])
                                  if after else None, limit=limit)
        return page.items, page.next_cursor

    found, cursor = (await index.answer_async(chain_id, query, heavy=True)).value
    headers = dict(VERSION_HEADERS)
    if cursor is not None:
        kept = [(name, value) for name, value in values.items() if value is not None and name != "nextPageToken"]
        headers["Link"] = f'<{base}/epcis/events?{urlencode([*kept, ("nextPageToken", cursor)])}>; rel="next"'
    return JSONResponse(epcis.query_document(base, found, datetime.now(UTC)), headers=headers)
