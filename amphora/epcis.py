"""GS1 EPCIS 2.0 events of a bottle, and the CBV event hash that names each one.

Everything here is pure (no I/O): :mod:`indexer.epcis` reads the chain's events
from the index and calls :func:`object_event` for each bottle an event concerns.

Identifiers
    A bottle is its GS1 Digital Link URI under the deployment's public base URL,
    ``https://<base>/01/<GTIN>/10/<lot>/21/<serial>`` (:func:`bottle_uri`), the URI
    printed in its QR code (without the vintage, AI 22, which is not part of the
    key). A party (issuer, custodian, holder) is ``https://<base>/accounts/<address>``
    (:func:`party_uri`): an on-chain account has no GS1 Party GLN, and a PGLN
    (``urn:epc:id:pgln:`` or Digital Link AI 417) would need a GS1 company prefix
    the parties do not have, so a URI of this service that names the account is
    the honest identifier. A custodian's cellar, where stored bottles are, is
    ``https://<base>/accounts/<custodian>#cellar`` (:func:`cellar_uri`).

Event hash (``eventID``)
    :func:`event_hash` is this project's implementation of the EPCIS event hash of
    CBV 2.0 (section 8.9, described in the README of GS1's reference generator,
    https://github.com/RalphTro/epcis-event-hash-generator): a pre-hash string of
    ``key=value`` pairs in the canonical property order, CBV values and GS1 keys in
    their canonical web URI forms (a Digital Link reduced to
    ``https://id.gs1.org/01/<GTIN>/21/<serial>``), times in UTC with milliseconds,
    list items sorted, user extensions as ``{namespace}name=value``; its SHA-256
    as ``ni:///sha-256;<hex>?ver=CBV2.0``. The tests compare it with the reference
    generator on fixed and random events. Where the reference generator and its
    README disagree, this follows the generator (see docs/epcis.md): the
    ``bizTransactionList``, ``sourceList``, ``destinationList`` and extension parts
    are sorted as strings among themselves (so ``destinationList`` precedes
    ``sourceList``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from amphora import gs1

#: The JSON-LD context of EPCIS 2.0 documents.
EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
#: CBV web vocabulary; a bare ``shipping`` is ``CBV + "BizStep-shipping"``.
CBV = "https://ref.gs1.org/cbv/"
CBV_VERSION = "CBV2.0"
#: The domain of canonical GS1 Digital Link URIs.
ID_GS1 = "https://id.gs1.org"
#: The prefix of this service's extension fields (``amphora:transaction``).
PREFIX = "amphora"

#: CBV 2.0 business steps (bare names).
BIZ_STEPS = (
    "accepting", "arriving", "assembling", "collecting", "commissioning", "consigning", "creating_class_instance",
    "cycle_counting", "decommissioning", "departing", "destroying", "disassembling", "dispensing", "encoding",
    "entering_exiting", "holding", "inspecting", "installing", "killing", "loading", "other", "packing", "picking",
    "receiving", "removing", "repackaging", "repairing", "replacing", "reserving", "retail_selling", "shipping",
    "staging_outbound", "stock_taking", "stocking", "storing", "transporting", "unloading", "unpacking",
    "void_shipping", "sensor_reporting", "sampling",
)
#: CBV 2.0 dispositions (bare names).
DISPOSITIONS = (
    "active", "container_closed", "damaged", "destroyed", "dispensed", "disposed", "encoded", "expired",
    "in_progress", "in_transit", "inactive", "no_pedigree_match", "non_sellable_other", "partially_dispensed",
    "recalled", "reserved", "retail_sold", "returned", "sellable_accessible", "sellable_not_accessible", "stolen",
    "unknown", "available", "completeness_verified", "completeness_inferred", "conformant", "container_open",
    "mismatch_instance", "mismatch_class", "mismatch_quantity", "needs_replacement", "non_conformant", "unavailable",
)
#: Source and destination types.
OWNING_PARTY = "owning_party"
POSSESSING_PARTY = "possessing_party"

#: CBV term kinds: the prefix of each in the web vocabulary, and in the old URNs.
_TERMS = {"bizStep": "BizStep-", "disposition": "Disp-", "sdt": "SDT-", "btt": "BTT-"}
_URNS = {"urn:epcglobal:cbv:bizstep:": "BizStep-", "urn:epcglobal:cbv:disp:": "Disp-",
         "urn:epcglobal:cbv:btt:": "BTT-", "urn:epcglobal:cbv:sdt:": "SDT-", "urn:epcglobal:cbv:er:": "ER-"}
#: Fields of an event that the hash leaves out (CBV 2.0, 8.9: recordTime, eventID, errorDeclaration).
_NOT_HASHED = ("recordTime", "eventID", "errorDeclaration", "type", "@context")
_SIMPLE = ("eventTimeZoneOffset", "action", "bizStep", "disposition")
_LISTS = {"bizTransactionList": ("bizTransaction", "btt"), "sourceList": ("source", "sdt"),
          "destinationList": ("destination", "sdt")}


class EpcisError(ValueError):
    """An event this module cannot build or hash; the message says which field."""


def vocabulary(base_url: str) -> str:
    """The namespace of this deployment's EPCIS extension fields."""
    return base_url.rstrip("/") + "/epcis/vocabulary#"


def context(base_url: str) -> list[Any]:
    """The ``@context`` of an EPCIS document of this deployment: EPCIS 2.0's, and the extension prefix."""
    return [EPCIS_CONTEXT, {PREFIX: vocabulary(base_url)}]


def cbv_uri(kind: str, value: str) -> str:
    """``value`` (bare ``shipping``, a CBV web URI or an old ``urn:epcglobal:cbv:`` URN) as its CBV web URI;
    a URI outside CBV (a private vocabulary) unchanged."""
    text = value.strip()
    for urn, term in _URNS.items():
        if text.startswith(urn):
            return CBV + term + text[len(urn):]
    if ":" in text:
        return text
    return CBV + _TERMS[kind] + text


def short_biz_step(value: str) -> str | None:
    """The bare CBV business step that ``value`` (bare, web URI or URN) names; None if it names none."""
    uri = cbv_uri("bizStep", value)
    name = uri.removeprefix(CBV + _TERMS["bizStep"])
    return name if name != uri and name in BIZ_STEPS else None


# -- identifiers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotIdentity:
    """What makes a lot's bottles GS1 identifiable: its version 2 document's GTIN, lot code and serial salt."""

    lot_id: int
    gtin: str
    lot_code: str
    salt: str
    bottle_count: int


@lru_cache(maxsize=4_096)
def lot_uri(base_url: str, gtin: str, lot_code: str) -> str:
    """The Digital Link URI of a lot (GTIN and lot), built and percent-encoded by biip."""
    return gs1.DigitalLink(gtin=gtin, lot=lot_code).uri(base_url)


def bottle_uri(base_url: str, lot: LotIdentity, number: int) -> str:
    """The Digital Link URI of bottle ``number`` (1 to the lot's count) of ``lot``: the lot's URI and the
    serial, whose base32 characters need no encoding (a page of events builds hundreds of these)."""
    return f"{lot_uri(base_url, lot.gtin, lot.lot_code)}/21/{gs1.gs1_serial(lot.salt, number)}"


def party_uri(base_url: str, address: str) -> str:
    return f"{base_url.rstrip('/')}/accounts/{address}"


def cellar_uri(base_url: str, custodian: str) -> str:
    return f"{party_uri(base_url, custodian)}#cellar"


#: A Digital Link of a bottle whose values need no percent-encoding: (host and path prefix, GTIN, vintage, lot,
#: serial). Such URIs (every one this service writes) take the fast path of :func:`canonical_identifier`.
_PLAIN_BOTTLE = re.compile(r"^https?://[^/?#]+(?P<prefix>(?:/[^/?#]+)*?)/01/(?P<gtin>\d{14})(?:/22/(?P<vintage>[^/?#]+))?"
                           r"(?:/10/(?P<lot>[A-Za-z0-9_.-]{1,20}))?/21/(?P<serial>[A-Za-z0-9_.-]{1,20})(?:\?[^#]*)?$")


@lru_cache(maxsize=65_536)
def canonical_identifier(value: str) -> str:
    """A GS1 Digital Link URI (any domain) as the constrained canonical form the hash uses: domain
    ``id.gs1.org``, no query, only the finest key (GTIN + serial, else GTIN + lot, else GTIN); any other
    value unchanged."""
    text = value.strip()
    if not text.startswith(("https://", "http://")) or "/01/" not in text:
        return text
    plain = _PLAIN_BOTTLE.match(text)
    if (plain and "/01/" not in plain["prefix"] + "/" and int(plain["gtin"][-1]) == gs1.check_digit(plain["gtin"][:-1])
            and (plain["vintage"] is None or re.fullmatch(r"[12]\d{3}", plain["vintage"]))):
        return f"{ID_GS1}/01/{plain['gtin']}/21/{plain['serial']}"
    return parsed_canonical_identifier(text)


def parsed_canonical_identifier(text: str) -> str:
    """:func:`canonical_identifier` through biip's Digital Link parser, for any URI."""
    if not text.startswith(("https://", "http://")) or "/01/" not in text:
        return text
    try:
        link = gs1.parse_digital_link(text)
    except (gs1.GS1Error, ValueError):
        return text
    if link.serial is not None:
        finest = gs1.DigitalLink(gtin=link.gtin, serial=link.serial)
    elif link.lot is not None:
        finest = gs1.DigitalLink(gtin=link.gtin, lot=link.lot)
    else:
        finest = gs1.DigitalLink(gtin=link.gtin)
    return finest.uri(ID_GS1)


def iso_time(timestamp: int) -> str:
    """A unix time as EPCIS writes it: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_time(value: str) -> datetime:
    """An ISO 8601 date-time with a time zone (``Z`` or ``+02:00``); :class:`EpcisError` otherwise."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as err:
        raise EpcisError(f"{value!r} is not an ISO 8601 date-time (e.g. 2026-05-01T12:00:00Z)") from err
    if parsed.tzinfo is None:
        raise EpcisError(f"{value!r} has no time zone (end it with Z or an offset such as +02:00)")
    return parsed


def canonical_time(value: str) -> str:
    """A date-time in UTC with millisecond precision and ``Z``."""
    moment = parse_time(value).astimezone(UTC)
    rounded = moment.replace(microsecond=0) + timedelta(milliseconds=round(moment.microsecond / 1000))
    return rounded.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rounded.microsecond // 1000:03d}Z"


# -- the event hash ----------------------------------------------------------------------------


def _text(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EpcisError(f"{field}: a string or integer is expected")
    return str(value).strip()


def _pair(key: str, value: str) -> str:
    return f"{key}={value}" if value else ""


def _extension(key: str, value: Any, namespaces: Mapping[str, str]) -> str:
    prefix, _, local = key.partition(":")
    if not local or prefix not in namespaces:
        raise EpcisError(f"{key}: neither a field this hash supports nor an extension with a prefix the @context "
                         "declares")
    text = canonical_identifier(_text(value, key))
    return "{" + namespaces[prefix] + "}" + local + ("=" + text if text else "")


def prehash(event: Mapping[str, Any], namespaces: Mapping[str, str]) -> str:
    """The pre-hash string of an ObjectEvent of the shape :func:`object_event` builds (``epcList``,
    ``action``, ``bizStep``, ``disposition``, ``readPoint``, ``bizLocation``, ``bizTransactionList``,
    ``sourceList``, ``destinationList``, and extension fields whose prefix ``namespaces`` declares).
    :class:`EpcisError` for a field outside that shape."""
    if event.get("type") != "ObjectEvent":
        raise EpcisError("type: only ObjectEvent is supported")
    parts = ["eventType=ObjectEvent"]
    if "eventTime" in event:
        parts.append("eventTime=" + canonical_time(_text(event["eventTime"], "eventTime")))
    if "eventTimeZoneOffset" in event:
        parts.append(_pair("eventTimeZoneOffset", _text(event["eventTimeZoneOffset"], "eventTimeZoneOffset")))
    epcs = sorted(_pair("epc", canonical_identifier(_text(epc, "epcList"))) for epc in event.get("epcList") or [])
    if "".join(epcs):
        parts.append("epcList" + "".join(epcs))
    if "action" in event:
        parts.append(_pair("action", _text(event["action"], "action")))
    for field in ("bizStep", "disposition"):
        if field in event:
            parts.append(_pair(field, cbv_uri(field, _text(event[field], field))))
    for field in ("readPoint", "bizLocation"):
        if field in event:
            place = event[field]
            if not isinstance(place, Mapping) or set(place) != {"id"}:
                raise EpcisError(f"{field}: an object with only an id is supported")
            identifier = _pair("id", canonical_identifier(_text(place["id"], field)))
            if identifier:
                parts.append(field + identifier)
    tail: list[str] = []
    for field, (key, kind) in _LISTS.items():
        items = []
        for item in event.get(field) or []:
            if not isinstance(item, Mapping) or not set(item) <= {key, "type"} or key not in item:
                raise EpcisError(f"{field}: each item needs {key!r} and may have 'type'")
            text = _pair(key, canonical_identifier(_text(item[key], field)))
            if "type" in item:
                text += _pair("type", cbv_uri(kind, _text(item["type"], field)))
            items.append(text)
        if "".join(items):
            tail.append(field + "".join(sorted(items)))
    known = {"eventTime", "epcList", "readPoint", "bizLocation", *_SIMPLE, *_LISTS, *_NOT_HASHED}
    for key, value in event.items():
        if key not in known:
            tail.append(_extension(key, value, namespaces))
    return "".join(parts) + "".join(sorted(tail))


def event_hash(event: Mapping[str, Any], namespaces: Mapping[str, str]) -> str:
    """The CBV 2.0 event hash of ``event``: ``ni:///sha-256;<hex>?ver=CBV2.0``."""
    digest = hashlib.sha256(prehash(event, namespaces).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver={CBV_VERSION}"


# -- building events ---------------------------------------------------------------------------


def _parties(key: str, parties: Iterable[tuple[str, str]], base_url: str) -> list[dict[str, str]]:
    """Source or destination items, the party before its type (the order the hash writes them in)."""
    return [{key: party_uri(base_url, address), "type": role} for role, address in parties if address]


def object_event(base_url: str, *, timestamp: int, epcs: list[str], action: str, biz_step: str | None,
                 disposition: str | None, sources: Iterable[tuple[str, str]] = (),
                 destinations: Iterable[tuple[str, str]] = (), location: str | None = None,
                 extensions: Mapping[str, str | int] | None = None) -> dict[str, Any]:
    """An EPCIS 2.0 ObjectEvent (JSON-LD, bare CBV values) with its event hash as ``eventID``.
    ``sources`` and ``destinations`` are (``owning_party`` or ``possessing_party``, address) pairs;
    ``location`` a custodian's address (its cellar becomes ``bizLocation``); ``extensions`` are this
    service's fields without their prefix (``transaction``)."""
    event: dict[str, Any] = {"type": "ObjectEvent", "eventTime": iso_time(timestamp), "eventTimeZoneOffset": "+00:00",
                             "epcList": epcs, "action": action}
    if biz_step is not None:
        event["bizStep"] = biz_step
    if disposition is not None:
        event["disposition"] = disposition
    if location:
        event["bizLocation"] = {"id": cellar_uri(base_url, location)}
    source_list = _parties("source", sources, base_url)
    if source_list:
        event["sourceList"] = source_list
    destination_list = _parties("destination", destinations, base_url)
    if destination_list:
        event["destinationList"] = destination_list
    for name, value in (extensions or {}).items():
        event[f"{PREFIX}:{name}"] = value
    event["eventID"] = event_hash(event, {PREFIX: vocabulary(base_url)})
    return event


def query_document(base_url: str, events: list[dict[str, Any]], created: datetime) -> dict[str, Any]:
    """The EPCISQueryDocument of a SimpleEventQuery's results."""
    return {
        "@context": context(base_url),
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": events}}},
    }
