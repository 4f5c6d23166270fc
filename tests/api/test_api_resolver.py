"""The GS1 Digital Link resolver on real lots issued on the test chain."""

from __future__ import annotations

import json
from urllib.parse import quote, urlsplit

import pytest
from api_fixtures import node_gateway
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amphora import gs1, lots
from amphora.demo import EXAMPLE_LOT
from api.routers.resolver import LINKSET_SCHEMA, VOC

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

V2 = json.loads(EXAMPLE_LOT.read_text())
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def issued(issue_v2):
    """A version 2 lot of four bottles, not marked for the EU market (whose default link is the e-label:
    tests/web/test_elabel.py), with its document deposited."""
    return issue_v2(4, eu_market=False, lot_code="R/1")


@pytest.fixture
def resolver(make_client, issued, tmp_path):
    return make_client(documents_dir=tmp_path)


def path_of(lot, serial: int | None = None) -> str:
    return lots.digital_link(lot.metadata, serial).path()


def test_bottle__default__redirects_to_its_verification_page(resolver, issued, public_base_url):
    response = resolver.get(path_of(issued, 3), follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"{public_base_url}/verify/{lots.token_id(issued.lot_id, 3)}"
    assert 'rel="linkset"' in response.headers["link"]
    assert response.headers["access-control-allow-origin"] == "*"


def test_bottle__followed__the_verification_page_of_that_bottle(resolver, issued):
    response = resolver.get(path_of(issued, 2))
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert f"/verify/{lots.token_id(issued.lot_id, 2)}" in str(response.url)


@pytest.mark.parametrize(("link_type", "target"), [
    ("gs1:pip", "/lots/{lot}/metadata.json"),
    ("https://ref.gs1.org/voc/pip", "/lots/{lot}/metadata.json"),
    ("gs1:verificationService", "/certificates/{token}"),
    ("gs1:traceability", "/certificates/{token}/history"),
    ("gs1:defaultLink", "/verify/{token}"),
    ("gs1:recipeInfo", "/verify/{token}"),       # not offered: the default link
])
def test_bottle__link_type__redirects_to_that_link(resolver, issued, public_base_url, link_type, target):
    token = lots.token_id(issued.lot_id, 1)
    response = resolver.get(path_of(issued, 1), params={"linkType": link_type}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == public_base_url + target.format(lot=issued.lot_id, token=token)


def test_bottle__verification_service__followed__the_on_chain_status(resolver, issued):
    body = resolver.get(path_of(issued, 4), params={"linkType": "gs1:verificationService"}).json()
    assert body["token_id"] == str(lots.token_id(issued.lot_id, 4)) and body["state"] == "active"


def test_bottle__traceability__followed__the_history(resolver, issued, w3):
    from api_fixtures import wait_indexed

    wait_indexed(w3, resolver)
    body = resolver.get(path_of(issued, 4), params={"linkType": "gs1:traceability"}).json()
    assert "LotIssued" in [entry["event"] for entry in body["history"]]


def test_bottle__epcis__followed__the_bottles_epcis_events(resolver, issued, w3, public_base_url):
    from api_fixtures import wait_indexed

    wait_indexed(w3, resolver)
    response = resolver.get(path_of(issued, 2), params={"linkType": "gs1:epcis"}, follow_redirects=False)
    target = urlsplit(response.headers["location"])
    assert response.status_code == 307 and f"{target.scheme}://{target.netloc}{target.path}" == \
        f"{public_base_url}/epcis/events"
    body = resolver.get(f"{target.path}?{target.query}").json()
    (event,) = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    bottle = gs1.DigitalLink(gtin=issued.metadata["gtin"], lot="R/1",
                             serial=gs1.gs1_serial(issued.metadata["serial_salt"], 2)).uri(public_base_url)
    assert event["bizStep"] == "commissioning" and event["epcList"] == [bottle]


def test_lot__linkset__epcis_of_every_bottle_of_the_lot(resolver, issued, public_base_url):
    item = _linkset_ok(resolver.get(lots.digital_link(issued.metadata).path(), params={"linkType": "linkset"}).json())
    lot_uri = gs1.DigitalLink(gtin=issued.metadata["gtin"], lot="R/1").uri(public_base_url)
    assert item[VOC + "epcis"][0]["href"] == f"{public_base_url}/epcis/events?MATCH_epc={quote(lot_uri, safe='')}"


def test_bottle__query_string__passed_on_to_the_target(resolver, issued):
    response = resolver.get(path_of(issued, 1) + "?linkType=gs1:pip&utm=x&lang=fr", follow_redirects=False)
    assert response.headers["location"].endswith("/metadata.json?utm=x&lang=fr")


def _linkset_ok(body: dict) -> dict:
    from jsonschema import validate

    validate(body, LINKSET_SCHEMA)
    (item,) = body["linkset"]
    assert len(item[VOC + "defaultLink"]) == 1
    assert all(key == "anchor" or key.startswith(VOC) for key in item)
    return item


@pytest.mark.parametrize("how", ["query", "accept"])
def test_bottle__linkset__rfc_9264_with_full_link_type_uris_and_one_default(resolver, issued, public_base_url, how):
    request = ({"params": {"linkType": "linkset"}} if how == "query"
               else {"headers": {"Accept": "application/linkset+json"}})
    response = resolver.get(path_of(issued, 2), **request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/linkset+json")
    item = _linkset_ok(response.json())
    token = lots.token_id(issued.lot_id, 2)
    assert item["anchor"] == public_base_url + path_of(issued, 2)
    assert item[VOC + "defaultLink"][0]["href"] == f"{public_base_url}/verify/{token}"
    assert {VOC + t for t in ("pip", "verificationService", "traceability", "epcis")} <= set(item)


def test_bottle__link_type_all__the_linkset_as_plain_json(resolver, issued):
    response = resolver.get(path_of(issued, 2), params={"linkType": "all"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    _linkset_ok(response.json())


def test_bottle__storage_attested__certification_info_links_the_report(resolver, issued, registry,
                                                                     custodian, w3):
    from api_fixtures import wait_indexed

    uri = "https://cave.example/report-1.txt"
    registry.attest_storage(issued.lot_id, b"\x42" * 32, uri, sender=custodian)
    wait_indexed(w3, resolver)
    response = resolver.get(path_of(issued, 1), params={"linkType": "gs1:certificationInfo"},
                            follow_redirects=False)
    assert response.headers["location"] == uri
    item = _linkset_ok(resolver.get(path_of(issued, 1), params={"linkType": "linkset"}).json())
    assert item[VOC + "certificationInfo"][0]["href"] == uri


def test_unknown_serial_of_known_lot__walks_up_to_the_lot(resolver, issued, public_base_url):
    serial = gs1.gs1_serial(issued.metadata["serial_salt"], 5)  # bottle 5 of a lot of 4
    path = lots.digital_link(issued.metadata).path() + f"/21/{serial}"
    response = resolver.get(path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"{public_base_url}/lots/{issued.lot_id}/metadata.json"
    item = _linkset_ok(resolver.get(path, params={"linkType": "linkset"}).json())
    assert item["anchor"] == public_base_url + lots.digital_link(issued.metadata).path()


def test_unknown_lot_of_known_gtin__walks_up_to_the_product(resolver, issued, public_base_url):
    response = resolver.get(f"/01/{V2['gtin']}/10/NOPE/21/AAAAAAA", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == f"{public_base_url}/lots/{issued.lot_id}/metadata.json"


def test_gtin_only__the_products_newest_lot(resolver, issued, public_base_url):
    response = resolver.get(f"/01/{V2['gtin']}", follow_redirects=False)
    assert response.headers["location"] == f"{public_base_url}/lots/{issued.lot_id}/metadata.json"


def test_unknown_gtin__404(resolver, issued):
    response = resolver.get(f"/01/{gs1.demo_gtin('7777777')}/10/A/21/B")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_document_not_matching_the_chain__not_believed(make_client, issued, tmp_path):
    forged = {**issued.metadata, "lot_code": "FORGED"}
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", forged)
    response = make_client(documents_dir=tmp_path).get(f"/01/{V2['gtin']}/10/FORGED")
    assert response.status_code == 404


def test_bottle__scanned_after_its_lot_was_checked__answered_without_a_node_request(make_client, issued, tmp_path,
                                                                                     rpc_url, public_base_url):
    """The common scan (a bottle of a lot already checked against the chain) costs the node nothing:
    the lot's match with the chain and the folder's listing are remembered."""
    with node_gateway(rpc_url) as (url, seen):
        client = make_client(auth=False, rpc_url=url, documents_dir=tmp_path)
        client.get(path_of(issued, 1), follow_redirects=False)  # the lot is checked against the chain once
        asked = len(seen)

        answers = [client.get(path_of(issued, serial), follow_redirects=False) for serial in (2, 3, 4)]

        assert len(seen) == asked
    assert [a.headers["location"] for a in answers] == [
        f"{public_base_url}/verify/{lots.token_id(issued.lot_id, serial)}" for serial in (2, 3, 4)]


def test_document_replaced_or_added__seen_at_the_next_scan(resolver, issued, issue_v2, tmp_path, public_base_url):
    resolver.get(f"/01/{V2['gtin']}", follow_redirects=False)  # the folder is listed and remembered

    newer = issue_v2(2, eu_market=False, lot_code="R/2")  # a new document: the folder changed
    product = resolver.get(f"/01/{V2['gtin']}", follow_redirects=False)
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", {**issued.metadata, "lot_code": "FORGED"})
    replaced = resolver.get(path_of(issued, 1), follow_redirects=False)

    assert product.headers["location"] == f"{public_base_url}/lots/{newer.lot_id}/metadata.json"
    # The replaced document no longer hashes to the chain's: its bottles walk up to the product (the newer lot).
    assert replaced.headers["location"] == f"{public_base_url}/lots/{newer.lot_id}/metadata.json"


@pytest.mark.parametrize(("path", "reason"), [
    ("/01/09520001000004/10/A", "check digit"),
    ("/01/09520001000003/21/S/10/A", "qualifier"),
    ("/01/09520001000003/10/" + "L" * 21, "20"),
    ("/01/09520001000003/10/A~B", "character set"),
    ("/01/09520001000003/10/A/17/261231", "qualifier"),
    ("/01/09520001000003/22/19/10/A", "vintage"),
])
def test_malformed__400_with_the_reason(resolver, path, reason):
    response = resolver.get(path)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_identifier" and reason in response.json()["detail"]


def test_head__answers_like_get(resolver, issued):
    get = resolver.get(path_of(issued, 1), follow_redirects=False)
    head = resolver.head(path_of(issued, 1), follow_redirects=False)
    assert head.status_code == 307 and head.headers["location"] == get.headers["location"]
    assert resolver.head("/01/09520001000004").status_code == 400


def test_options__plain__answers_like_get_and_preflight__cors(resolver, issued):
    plain = resolver.options(path_of(issued, 1), follow_redirects=False)
    assert plain.status_code == 307
    preflight = resolver.options(path_of(issued, 1), headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_well_known__describes_the_resolver(resolver, public_base_url):
    body = resolver.get("/.well-known/gs1resolver").json()
    assert body["resolverRoot"] == public_base_url and body["supportedPrimaryKeys"] == ["01"]
    assert VOC + "verificationService" in [t["linkType"] for t in body["supportedLinkType"]]


def test_schema__served_at_a_stable_url(resolver):
    response = resolver.get("/schemas/lot-document-v2.json")
    assert response.status_code == 200
    assert response.json() == lots.lot_document_schema()


# "." and ".." are valid GS1 values but dot segments of a URI path: every client removes them
# (RFC 3986 §5.2.4) before the resolver sees the path, so they cannot name a bottle.
codes = st.text(alphabet=CSET82, min_size=1, max_size=20).filter(lambda code: code not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 4), codes)
def test_property__valid_uris__bottle_or_walk_up_never_an_error(resolver, issued, serial, other):
    salt = issued.metadata["serial_salt"]
    for path in (path_of(issued, serial), lots.digital_link(issued.metadata).path() + "/21/" + quote(other, safe="")):
        response = resolver.get(path, follow_redirects=False)
        assert response.status_code == 307
        location = urlsplit(response.headers["location"]).path
        number = gs1.serial_number(salt, urlsplit(path).path.rsplit("/", 1)[1])
        if number is not None and 1 <= number <= 4:
            assert location == f"/verify/{lots.token_id(issued.lot_id, number)}"
        else:
            assert location == f"/lots/{issued.lot_id}/metadata.json"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=CSET82 + " ~#^{}", min_size=21, max_size=30) | st.text(alphabet=" ~^{}|", min_size=1),
       st.sampled_from(["10", "21"]))
def test_property__invalid_values__400_never_a_redirect(resolver, issued, value, ai):
    lot = "" if ai == "10" else f"/10/{quote(issued.metadata['lot_code'], safe='')}"
    response = resolver.get(f"/01/{V2['gtin']}{lot}/{ai}/{quote(value, safe='')}", follow_redirects=False)
    assert response.status_code == 400, response.text


def test_attacker__header_injection_in_the_query__stays_inside_the_location(resolver, issued):
    response = resolver.get(path_of(issued, 1) + "?next=%0d%0aSet-Cookie:%20x=1", follow_redirects=False)
    assert response.status_code == 307
    assert "set-cookie" not in response.headers
    assert "\r" not in response.headers["location"] and "\n" not in response.headers["location"]
    assert response.headers["location"].endswith("?next=%0D%0ASet-Cookie%3A+x%3D1")


def test_attacker__guessed_serials__walk_up_and_name_no_bottle(resolver, issued):
    # A serial is not a secret, but guessing one finds no more than the lot: a lot of 4 bottles
    # holds 4 of the 2**32 serials, and every other guess answers exactly like an unknown serial.
    salt = issued.metadata["serial_salt"]
    guesses = [gs1.gs1_serial(salt, n) for n in (0, 5, 2**20, 2**32 - 1)]
    for guess in guesses:
        response = resolver.get(lots.digital_link(issued.metadata).path() + f"/21/{guess}", follow_redirects=False)
        assert response.headers["location"].endswith(f"/lots/{issued.lot_id}/metadata.json")
