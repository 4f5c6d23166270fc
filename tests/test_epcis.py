"""EPCIS 2.0 events and the CBV event hash, without a chain: every event validates against GS1's
EPCIS 2.0 JSON Schema (vendored under tests/vendor/epcis/) and our event hash equals GS1's
reference generator (the `epcis-event-hash-generator` package) on fixed and random events."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from epcis_event_hash_generator import hash_generator, json_to_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amphora import epcis, gs1
from indexer import epcis as epcis_index

SCHEMA_FILE = Path(__file__).resolve().parent / "vendor" / "epcis" / "EPCIS-JSON-Schema.json"
BASE = "https://amphora.example"
NAMESPACES = {epcis.PREFIX: epcis.vocabulary(BASE)}
ISSUER, CUSTODIAN, HOLDER, OTHER = ("0x" + c * 40 for c in "abcd")
TX = "0x" + "5e" * 32


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.Draft7Validator(json.loads(SCHEMA_FILE.read_text()), validate_formats=True)


def lot_identity(lot_code: str = "L2019-A", count: int = 12, salt: str | None = None) -> epcis.LotIdentity:
    return epcis.LotIdentity(lot_id=3, gtin=gs1.demo_gtin("1"), lot_code=lot_code, salt=salt or "0x" + "17" * 32,
                             bottle_count=count)


def reference_hash(events: list[dict[str, Any]], context: list[Any] | None = None) -> list[str]:
    """GS1's reference generator on an EPCISDocument holding ``events``."""
    document = {"@context": context or epcis.context(BASE), "type": "EPCISDocument", "schemaVersion": "2.0",
                "creationDate": "2026-01-01T00:00:00Z", "epcisBody": {"eventList": copy.deepcopy(events)}}
    parsed = json_to_py.event_list_from_epcis_document_json(document)
    return list(hash_generator.calculate_hashes_from_pre_hashes(hash_generator.derive_prehashes_from_events(parsed)))


def chain_row(log_index: int = 4, block_time: int = 1_780_000_000) -> dict[str, Any]:
    return {"tx_hash": TX, "log_index": log_index, "block_time": block_time}


#: One chain event of each kind the export knows, with its arguments.
CHAIN_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("LotIssued", {"issuer": ISSUER, "custodian": CUSTODIAN}),
    ("StorageAttested", {"custodian": CUSTODIAN, "document_hash": "0x" + "42" * 32}),
    ("CustodyMoved", {"previous_custodian": CUSTODIAN, "custodian": OTHER}),
    ("Transfer", {"sender": ISSUER, "receiver": HOLDER}),
    ("CertificatePledged", {"holder": HOLDER}),
    ("CertificateReleased", {"holder": HOLDER, "receiver": HOLDER}),
    ("CertificateFlagged", {"by": HOLDER}),
    ("FlagCleared", {"by": HOLDER}),
    ("CertificateRedeemed", {"holder": HOLDER, "custodian": CUSTODIAN}),
]


def exported(name: str, args: dict[str, Any], number: int = 5) -> dict[str, Any]:
    event = epcis_index._event(BASE, lot_identity(), number, name, args, chain_row())  # noqa: SLF001
    assert event is not None
    return event


# ------------------------------------------------------------------ the mapping


@pytest.mark.parametrize(("name", "step", "disposition", "action"), [
    ("LotIssued", "commissioning", "active", "ADD"),
    ("StorageAttested", "storing", "sellable_not_accessible", "OBSERVE"),
    ("CustodyMoved", "receiving", "sellable_not_accessible", "OBSERVE"),
    ("Transfer", "accepting", "sellable_not_accessible", "OBSERVE"),
    ("CertificatePledged", "reserving", "reserved", "OBSERVE"),
    ("CertificateReleased", "reserving", "sellable_not_accessible", "OBSERVE"),
    ("CertificateFlagged", None, "stolen", "OBSERVE"),
    ("FlagCleared", None, "sellable_not_accessible", "OBSERVE"),
    ("CertificateRedeemed", "decommissioning", "inactive", "DELETE"),
])
def test_mapping__each_chain_event__its_cbv_step_disposition_and_action(name, step, disposition, action):
    args = dict(CHAIN_EVENTS)[name]
    event = exported(name, args)
    assert (event.get("bizStep"), event["disposition"], event["action"]) == (step, disposition, action)
    assert event["epcList"] == [epcis.bottle_uri(BASE, lot_identity(), 5)]
    assert event["eventTime"] == "2026-05-28T20:26:40.000Z" and event["eventTimeZoneOffset"] == "+00:00"
    assert event["amphora:transaction"] == TX and event["amphora:logIndex"] == 4


def test_mapping__transfer__ownership_moves_between_owning_parties():
    event = exported("Transfer", {"sender": ISSUER, "receiver": HOLDER})
    assert event["sourceList"] == [{"source": f"{BASE}/accounts/{ISSUER}", "type": "owning_party"}]
    assert event["destinationList"] == [{"destination": f"{BASE}/accounts/{HOLDER}", "type": "owning_party"}]


def test_mapping__custody_move__possession_moves_between_possessing_parties_and_the_new_cellar():
    event = exported("CustodyMoved", {"previous_custodian": CUSTODIAN, "custodian": OTHER})
    assert event["sourceList"] == [{"source": f"{BASE}/accounts/{CUSTODIAN}", "type": "possessing_party"}]
    assert event["destinationList"] == [{"destination": f"{BASE}/accounts/{OTHER}", "type": "possessing_party"}]
    assert event["bizLocation"] == {"id": f"{BASE}/accounts/{OTHER}#cellar"}


def test_mapping__issuance__issuer_owns_and_custodian_possesses():
    event = exported("LotIssued", {"issuer": ISSUER, "custodian": CUSTODIAN})
    assert event["destinationList"] == [
        {"destination": f"{BASE}/accounts/{ISSUER}", "type": "owning_party"},
        {"destination": f"{BASE}/accounts/{CUSTODIAN}", "type": "possessing_party"}]


@pytest.mark.parametrize("args", [{"sender": "0x" + "00" * 20, "receiver": HOLDER},
                                  {"sender": HOLDER, "receiver": "0x" + "00" * 20}])
def test_mapping__mint_or_burn_transfer__no_event_of_its_own(args):
    assert epcis_index._event(BASE, lot_identity(), 1, "Transfer", args, chain_row()) is None  # noqa: SLF001


def test_mapping__two_attestations_in_one_block__different_event_ids():
    first = epcis_index._event(BASE, lot_identity(), 1, "StorageAttested",  # noqa: SLF001
                               {"custodian": CUSTODIAN, "document_hash": "0x" + "01" * 32}, chain_row(1))
    second = epcis_index._event(BASE, lot_identity(), 1, "StorageAttested",  # noqa: SLF001
                                {"custodian": CUSTODIAN, "document_hash": "0x" + "01" * 32}, chain_row(2))
    assert first and second and first["eventID"] != second["eventID"]


# ------------------------------------------------------------------ the schema


@pytest.mark.parametrize(("name", "args"), CHAIN_EVENTS)
def test_schema__every_exported_event__valid_epcis_2(validator, name, args):
    event = {"@context": epcis.context(BASE), **exported(name, args)}
    errors = [error.message for error in validator.iter_errors(event)]
    assert errors == []


def test_schema__query_document_of_every_kind__valid_epcis_2(validator):
    document = epcis.query_document(BASE, [exported(name, args) for name, args in CHAIN_EVENTS],
                                    datetime(2026, 5, 1, 12, 0, 0, 123_456, tzinfo=UTC))
    assert [error.message for error in validator.iter_errors(document)] == []
    assert document["creationDate"] == "2026-05-01T12:00:00.123Z"


@pytest.mark.parametrize("spoil", [
    lambda e: e.update(epcList=["not a uri"]),
    lambda e: e.update(action="MOVE"),
    lambda e: e.update(eventTimeZoneOffset="UTC"),
    lambda e: e.update(disposition="misplaced"),
    lambda e: e.update(sourceList=[{"source": "https://a.example/x", "type": "owner"}]),
    lambda e: e.pop("@context"),
])
def test_schema__spoiled_event__rejected_so_the_check_can_fail(validator, spoil):
    event = {"@context": epcis.context(BASE), **exported("Transfer", {"sender": ISSUER, "receiver": HOLDER})}
    spoil(event)
    assert not validator.is_valid(event)


# ------------------------------------------------------------------ the hash


@pytest.mark.parametrize(("name", "args"), CHAIN_EVENTS)
def test_hash__every_exported_event__equals_gs1_reference_generator(name, args):
    event = exported(name, args)
    assert reference_hash([event]) == [event["eventID"]]
    assert event["eventID"].startswith("ni:///sha-256;") and event["eventID"].endswith("?ver=CBV2.0")


def test_hash__several_bottles_in_any_order__equals_reference_and_does_not_depend_on_order():
    lot = lot_identity()
    epcs = [epcis.bottle_uri(BASE, lot, n) for n in (7, 1, 12)]
    event = epcis.object_event(BASE, timestamp=1_700_000_000, epcs=epcs, action="OBSERVE", biz_step="storing",
                               disposition="sellable_not_accessible", location=CUSTODIAN)
    reordered = {**event, "epcList": list(reversed(epcs))}
    assert epcis.event_hash(reordered, NAMESPACES) == event["eventID"] == reference_hash([event])[0]


def test_hash__field_changed__hash_changes():
    event = exported("Transfer", {"sender": ISSUER, "receiver": HOLDER})
    other = {**event, "destinationList": [{"destination": f"{BASE}/accounts/{OTHER}", "type": "owning_party"}]}
    assert epcis.event_hash(other, NAMESPACES) != event["eventID"]


def test_hash__event_id_and_record_time__not_hashed():
    event = exported("CertificateFlagged", {"by": HOLDER})
    with_record = {**event, "eventID": "urn:uuid:0", "recordTime": "2030-01-01T00:00:00Z"}
    assert epcis.event_hash(with_record, NAMESPACES) == event["eventID"]


def test_hash__unsupported_field__clear_error():
    with pytest.raises(epcis.EpcisError, match="quantityList"):
        epcis.prehash({"type": "ObjectEvent", "quantityList": [{"epcClass": "x", "quantity": 1}]}, NAMESPACES)


@pytest.mark.parametrize(("uri", "canonical"), [
    (f"{BASE}/01/09520000000011/10/L1/21/ABCDEFG", "https://id.gs1.org/01/09520000000011/21/ABCDEFG"),
    ("https://other.example/01/09520000000011/22/2019/10/L1/21/ABCDEFG?x=1",
     "https://id.gs1.org/01/09520000000011/21/ABCDEFG"),
    (f"{BASE}/01/09520000000011/10/R%2F1/21/ABCDEFG", "https://id.gs1.org/01/09520000000011/21/ABCDEFG"),
    (f"{BASE}/01/09520000000011/10/L1", "https://id.gs1.org/01/09520000000011/10/L1"),
    (f"{BASE}/01/9520000000011", "https://id.gs1.org/01/09520000000011"),
    (f"{BASE}/accounts/{HOLDER}", f"{BASE}/accounts/{HOLDER}"),
    (f"{BASE}/01/09520000000012/21/X", f"{BASE}/01/09520000000012/21/X"),  # bad check digit: not a GS1 key
])
def test_canonical_identifier__digital_links_to_id_gs1_org_finest_key__others_unchanged(uri, canonical):
    assert epcis.canonical_identifier(uri) == canonical


@settings(max_examples=200, deadline=None)
@given(host=st.sampled_from(["https://a.example", "http://b.example:8080/res/01x", "https://c.example/01"]),
       gtin=st.sampled_from([gs1.demo_gtin("42"), "09520000000012", "9520000000011"]),
       vintage=st.sampled_from([None, "2019", "19"]), lot=st.sampled_from([None, "L1", "R%2F1", "a" * 21]),
       serial=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567-._~%", min_size=1, max_size=21),
       query=st.sampled_from(["", "?linkType=all"]))
def test_canonical_identifier__fast_path__agrees_with_biips_parser(host, gtin, vintage, lot, serial, query):
    path = f"/01/{gtin}" + (f"/22/{vintage}" if vintage else "") + (f"/10/{lot}" if lot else "") + f"/21/{serial}"
    uri = host + path + query
    epcis.canonical_identifier.cache_clear()
    assert epcis.canonical_identifier(uri) == epcis.parsed_canonical_identifier(uri)


@pytest.mark.parametrize(("value", "canonical"), [
    ("2026-05-01T12:00:00Z", "2026-05-01T12:00:00.000Z"),
    ("2026-05-01T14:00:00.5+02:00", "2026-05-01T12:00:00.500Z"),
    ("2026-05-01T11:59:59.9996-00:00", "2026-05-01T12:00:00.000Z"),
])
def test_canonical_time__utc_milliseconds_z(value, canonical):
    assert epcis.canonical_time(value) == canonical


@pytest.mark.parametrize(("value", "step"), [
    ("storing", "storing"), ("https://ref.gs1.org/cbv/BizStep-storing", "storing"),
    ("urn:epcglobal:cbv:bizstep:shipping", "shipping"), ("https://example.com/steps/bottling", None),
    ("bottling", None)])
def test_short_biz_step__bare_uri_or_urn(value, step):
    assert epcis.short_biz_step(value) == step


_HEX = st.text("0123456789abcdef", min_size=1, max_size=64).map(lambda h: "0x" + h)
_ADDRESS = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40).map(lambda h: "0x" + h)
#: Lot codes of GS1's character set 82 that stay unencoded in a URI path.
_LOT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=20)


@st.composite
def random_events(draw: st.DrawFn) -> dict[str, Any]:
    """An ObjectEvent of the shape the export writes, with every field and value drawn at random. Hosts have
    a dot: the reference generator leaves a Digital Link on a dotless host (``localhost``) as it is, where the
    algorithm (and :func:`amphora.epcis.canonical_identifier`) reduces it to ``id.gs1.org``."""
    base = draw(st.sampled_from([BASE, "https://wine.example/resolver", "http://127.0.0.1:8000"]))
    lot = epcis.LotIdentity(1, gs1.demo_gtin(str(draw(st.integers(0, 999_999)))), draw(_LOT),
                            "0x" + draw(st.binary(min_size=32, max_size=32)).hex(), 2**32 - 1)
    numbers = draw(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=4, unique=True))
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)))
    offset = draw(st.sampled_from(["+00:00", "+02:00", "-05:30", "+14:00", "-12:00"]))
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": moment.replace(microsecond=moment.microsecond // 1000 * 1000).isoformat(timespec="milliseconds")
        + offset,
        "eventTimeZoneOffset": offset,
        "epcList": [epcis.bottle_uri(base, lot, n) for n in numbers],
        "action": draw(st.sampled_from(["ADD", "OBSERVE", "DELETE"])),
    }
    if draw(st.booleans()):
        event["bizStep"] = draw(st.sampled_from(epcis.BIZ_STEPS))
    if draw(st.booleans()):
        event["disposition"] = draw(st.sampled_from(epcis.DISPOSITIONS))
    for place in ("readPoint", "bizLocation"):
        if draw(st.booleans()):
            event[place] = {"id": epcis.cellar_uri(base, draw(_ADDRESS))}
    for field, key in (("sourceList", "source"), ("destinationList", "destination")):
        parties = draw(st.lists(st.tuples(st.sampled_from([epcis.OWNING_PARTY, epcis.POSSESSING_PARTY, "location"]),
                                          _ADDRESS), max_size=3))
        if parties:
            event[field] = [{key: epcis.party_uri(base, address), "type": kind} for kind, address in parties]
    for name in draw(st.lists(st.sampled_from(["transaction", "logIndex", "documentHash"]), unique=True)):
        event[f"{epcis.PREFIX}:{name}"] = draw(st.integers(0, 10**6)) if name == "logIndex" else draw(_HEX)
    event["@base"] = base  # where to find the namespace; removed before hashing
    return event


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=random_events())
def test_hash__random_events__equal_gs1_reference_generator(event):
    base = event.pop("@base")
    ours = epcis.event_hash(event, {epcis.PREFIX: epcis.vocabulary(base)})
    assert reference_hash([event], epcis.context(base)) == [ours]
