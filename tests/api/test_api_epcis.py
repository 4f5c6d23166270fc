"""GET /epcis/events on a real chain and index: a version 2 lot's bottles through issuance, a sale, a
storage attestation, a loss report, a redemption and a custody move, read back as EPCIS 2.0 events that
validate against GS1's schema and whose eventIDs equal GS1's reference hash generator."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jsonschema_rs
import pytest
from api_fixtures import wait_indexed
from epcis_event_hash_generator import hash_generator, json_to_py
from eth_utils import keccak
from test_api_lending import (  # noqa: F401 (fixtures)
    VALUE,
    _args,
    deployed_lending,
    funded,
    make_offer,
)

from amphora import epcis, gs1, lots
from amphora.demo import EXAMPLE_LOT

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

V2 = json.loads(EXAMPLE_LOT.read_text())
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "vendor" / "epcis" / "EPCIS-JSON-Schema.json").read_text())
VALIDATOR = jsonschema_rs.Draft7Validator(SCHEMA, validate_formats=True)
HOUR = 3_600


@pytest.fixture
def other_custodian(accounts, cert, admin):
    """A second registered cellar."""
    account = accounts[9]
    cert.grant_custodian(account, "Entrepôt Autre", sender=admin)
    return account


@pytest.fixture
def issued(issue_v2):
    """A version 2 lot of four bottles with its document deposited."""
    return issue_v2(4, lot_code="E-1")


@pytest.fixture
def api(make_client, issued, tmp_path):
    return make_client(documents_dir=tmp_path)


@pytest.fixture
def story(api, issued, cert, registry, chain, w3, admin, winery, custodian, holder, other_custodian):
    """Bottle 1 sold to ``holder``, the lot's storage attested, bottle 1 reported stolen, bottle 2 sold and
    redeemed, then (an hour later) the lot moved to ``other_custodian``. Returns the move's block time."""
    token = lambda n: lots.token_id(issued.lot_id, n)  # noqa: E731
    cert.transferFrom(winery, holder, token(1), sender=winery)
    registry.attest_storage(issued.lot_id, keccak(text="cellar report"), "ipfs://report", sender=custodian)
    cert.flag(token(1), b"\x01" * 32, sender=holder)
    cert.transferFrom(winery, holder, token(2), sender=winery)
    cert.request_redemption(token(2), b"\x02" * 32, sender=holder)
    cert.confirm_redemption(token(2), sender=custodian)
    chain.pending_timestamp += HOUR
    receipt = cert.move_custody(issued.lot_id, other_custodian, sender=admin)
    wait_indexed(w3, api)
    return int(w3.eth.get_block(receipt.block_number)["timestamp"])


def bottle(lot, number: int, base: str) -> str:
    return gs1.DigitalLink(gtin=lot.metadata["gtin"], lot=lot.metadata["lot_code"],
                           serial=gs1.gs1_serial(lot.metadata["serial_salt"], number)).uri(base)


def events_of(api, **params) -> list[dict]:
    response = api.get("/epcis/events", params=params)
    assert response.status_code == 200, response.text
    document = response.json()
    assert [error.message for error in VALIDATOR.iter_errors(document)] == []
    return document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]


def reference_ids(events: list[dict], base: str) -> list[str]:
    document = {"@context": epcis.context(base), "type": "EPCISDocument", "schemaVersion": "2.0",
                "creationDate": "2026-01-01T00:00:00Z", "epcisBody": {"eventList": copy.deepcopy(events)}}
    parsed = json_to_py.event_list_from_epcis_document_json(document)
    return list(hash_generator.calculate_hashes_from_pre_hashes(hash_generator.derive_prehashes_from_events(parsed)))


def steps(events: list[dict]) -> list[tuple[str | None, str]]:
    return [(event.get("bizStep"), event["disposition"]) for event in events]


def test_bottle__its_whole_history_in_chain_order_valid_and_hashed_as_gs1_does(api, story, issued, public_base_url,
                                                                              winery, holder, other_custodian):
    events = events_of(api, MATCH_epc=bottle(issued, 1, public_base_url))

    assert steps(events) == [("commissioning", "active"), ("accepting", "sellable_not_accessible"),
                             ("storing", "sellable_not_accessible"), (None, "stolen"),
                             ("receiving", "sellable_not_accessible")]
    assert all(event["epcList"] == [bottle(issued, 1, public_base_url)] for event in events)
    assert events[1]["sourceList"] == [{"source": f"{public_base_url}/accounts/{winery.address}",
                                        "type": "owning_party"}]
    assert events[1]["destinationList"] == [{"destination": f"{public_base_url}/accounts/{holder.address}",
                                             "type": "owning_party"}]
    assert events[-1]["destinationList"] == [{"destination": f"{public_base_url}/accounts/{other_custodian.address}",
                                              "type": "possessing_party"}]
    assert events[-1]["eventTime"] == datetime.fromtimestamp(story, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert [event["eventID"] for event in events] == reference_ids(events, public_base_url)


def test_bottle__redeemed__decommissioned_and_later_lot_events_leave_it_out(api, story, issued, public_base_url,
                                                                           custodian, holder):
    events = events_of(api, MATCH_epc=bottle(issued, 2, public_base_url))

    assert steps(events) == [("commissioning", "active"), ("storing", "sellable_not_accessible"),
                             ("accepting", "sellable_not_accessible"), ("decommissioning", "inactive")]
    redeemed = events[-1]
    assert redeemed["action"] == "DELETE"
    assert redeemed["sourceList"] == [{"source": f"{public_base_url}/accounts/{custodian.address}",
                                       "type": "possessing_party"}]


def test_bottle__canonical_uri_on_another_host__the_same_events(api, story, issued, public_base_url):
    serial = gs1.gs1_serial(issued.metadata["serial_salt"], 1)
    canonical = f"https://id.gs1.org/01/{issued.metadata['gtin']}/21/{serial}"

    assert events_of(api, MATCH_epc=canonical) == events_of(api, MATCH_epc=bottle(issued, 1, public_base_url))


def test_lot_wildcard__every_bottle_each_lot_event_once(api, story, issued, public_base_url):
    lot_uri = gs1.DigitalLink(gtin=issued.metadata["gtin"], lot="E-1").uri(public_base_url)

    events = events_of(api, MATCH_epc=lot_uri, perPage=200)

    kinds = [event.get("bizStep") or event["disposition"] for event in events]
    assert kinds.count("commissioning") == 4 and kinds.count("storing") == 4
    assert kinds.count("receiving") == 3  # bottle 2 was redeemed before the move
    assert kinds.count("accepting") == 2 and kinds.count("stolen") == 1 and kinds.count("decommissioning") == 1
    assert len({event["eventID"] for event in events}) == len(events) == 15


@pytest.mark.parametrize("step", ["storing", "https://ref.gs1.org/cbv/BizStep-storing",
                                  "urn:epcglobal:cbv:bizstep:storing"])
def test_eq_biz_step__bare_uri_or_urn__only_that_step(api, story, issued, step):
    events = events_of(api, EQ_bizStep=step)
    assert len(events) == 4 and {event["bizStep"] for event in events} == {"storing"}


def test_eq_biz_step__a_private_uri__nothing_matches(api, story):
    assert events_of(api, EQ_bizStep="https://example.com/steps/bottling") == []


def test_event_time__ge_and_lt__split_at_the_custody_move(api, story, issued, public_base_url):
    moved = datetime.fromtimestamp(story, tz=UTC).isoformat()
    one = bottle(issued, 1, public_base_url)

    after = events_of(api, MATCH_epc=one, GE_eventTime=moved)
    before = events_of(api, MATCH_epc=one, LT_eventTime=moved.replace("+00:00", "Z"))

    assert steps(after) == [("receiving", "sellable_not_accessible")]
    assert len(before) == 4 and "receiving" not in [event.get("bizStep") for event in before]
    assert events_of(api, MATCH_epc=one, GE_eventTime=moved, LT_eventTime=moved) == []


def test_paging__next_links_walk_every_event_once(api, story, issued, public_base_url):
    everything = events_of(api, perPage=200)
    seen, url, pages = [], "/epcis/events?perPage=4", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200 and response.headers["GS1-EPCIS-Version"] == "2.0.0"
        seen += response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        link = response.headers.get("link")
        url = None
        if link:
            target = link.split(";")[0].strip("<>")
            assert target.startswith(f"{public_base_url}/epcis/events?") and 'rel="next"' in link
            url = "/epcis/events?" + urlsplit(target).query
            assert dict(parse_qsl(urlsplit(target).query))["perPage"] == "4"
        pages += 1
    assert seen == everything and pages == -(-len(everything) // 4)


def test_unknown_bottle_or_gtin__an_empty_answer(api, story, issued, public_base_url):
    beyond = gs1.DigitalLink(gtin=issued.metadata["gtin"], lot="E-1",
                             serial=gs1.gs1_serial(issued.metadata["serial_salt"], 5)).uri(public_base_url)
    assert events_of(api, MATCH_epc=beyond) == []
    assert events_of(api, MATCH_epc=f"{public_base_url}/01/{gs1.demo_gtin('7777777')}") == []


def test_attacker__forged_document__its_lot_exports_nothing(make_client, story, issued, tmp_path, public_base_url):
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", {**issued.metadata, "lot_code": "FORGED"})
    forged = make_client(documents_dir=tmp_path)
    lot_uri = gs1.DigitalLink(gtin=issued.metadata["gtin"], lot="FORGED").uri(public_base_url)

    assert events_of(forged, MATCH_epc=lot_uri) == [] and events_of(forged) == []


@pytest.mark.parametrize(("query", "names"), [
    ("MATCH_anyEPC=x", "MATCH_anyEPC"),
    ("EQ_bizStep=storing&EQ_bizStep=shipping", "EQ_bizStep"),
    ("GE_eventTime=2026-05-01T12:00:00", "GE_eventTime"),
    ("LT_eventTime=yesterday", "LT_eventTime"),
    ("EQ_bizStep=bottling", "EQ_bizStep"),
    ("perPage=0", "perPage"),
    ("perPage=201", "perPage"),
    ("perPage=%C2%B2", "perPage"),
    ("nextPageToken=c1.forged", "nextPageToken"),
    ("MATCH_epc=urn:epc:id:sgtin:0614141.107346.2017", "MATCH_epc"),
    ("MATCH_epc=https://x.example/01/09520000000012/21/A", "MATCH_epc"),
    ("MATCH_epc=https://[::1/01/09520000000011", "MATCH_epc"),
    ("MATCH_epc=https://x.example/01/09520000000011/21/A%0D%0ALocation:%20https://evil.example", "MATCH_epc"),
])
def test_bad_query__400_query_parameter_exception_naming_the_parameter(api, query, names):
    response = api.get(f"/epcis/events?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "query_parameter_exception" and body["detail"].startswith(names)


@pytest.mark.usefixtures("funded")
def test_pledge_and_repayment__reserved_then_released(api, issued, cert, chain, w3, winery, borrower, appraiser,
                                                     deployed_lending, make_offer, public_base_url):  # noqa: F811
    token = lots.token_id(issued.lot_id, 3)
    cert.transferFrom(winery, borrower, token, sender=winery)
    deployed_lending.post_appraisal(issued.lot_id, VALUE, chain.blocks.head.timestamp, sender=appraiser)
    offer = make_offer(issued.lot_id, token)
    loan_id = deployed_lending.accept_offer(_args(offer["offer"]), offer["signature"], token,
                                            sender=borrower).return_value
    deployed_lending.repay(loan_id, sender=borrower)
    wait_indexed(w3, api)

    events = events_of(api, MATCH_epc=bottle(issued, 3, public_base_url))

    assert steps(events)[-2:] == [("reserving", "reserved"), ("reserving", "sellable_not_accessible")]
    assert [event["eventID"] for event in events] == reference_ids(events, public_base_url)
