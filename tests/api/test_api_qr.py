"""QR codes and label sheets over HTTP, on lots issued on the test chain: codes decoded
by zxing-cpp to the exact Digital Link, label PDFs rendered by pypdfium2, the range cap,
and a gift's claim link whose secret the service neither caches, logs nor stores."""

from __future__ import annotations

import io
import json
import logging

import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image

from amphora import gs1, lots, qr
from amphora.demo import EXAMPLE_LOT
from api.routers import qr as qr_router

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

V2 = json.loads(EXAMPLE_LOT.read_text())
V1_FIELDS = ("producer", "wine", "region", "bottle_count", "volume_ml", "bottling_date")


@pytest.fixture
def issued(issue_v2):
    """A version 2 lot of four bottles with its document deposited."""
    return issue_v2(4, lot_code="Q/1")


@pytest.fixture
def issued_v1(cert, winery, custodian, tmp_path):
    """A version 1 lot (no GTIN) of two bottles with its document deposited."""
    description = lots.LotDescription.from_mapping({**{k: V2[k] for k in V1_FIELDS}, "bottle_count": 2,
                                                    "custodian": custodian.address})
    lot = lots.issue(cert, winery, description)
    lots.write_document(tmp_path / f"lot-{lot.lot_id}.json", lot.metadata)
    return lot


@pytest.fixture
def api(make_client, issued, tmp_path):
    return make_client(auth=False, documents_dir=tmp_path)


def decode(response) -> list[str]:
    image = Image.open(io.BytesIO(response.content))
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def link_of(lot, number: int, base: str) -> str:
    return lots.digital_link(lot.metadata, number).uri(base)


# -- a bottle's code ---------------------------------------------------------------------------


def test_bottle_qr__by_token_id__png_decodes_to_its_exact_digital_link(api, issued, public_base_url):
    response = api.get(f"/certificates/{lots.token_id(issued.lot_id, 3)}/qr", params={"format": "png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert decode(response) == [link_of(issued, 3, public_base_url)]


def test_bottle_qr__by_token_id__svg_sized_in_millimetres(api, issued, public_base_url):
    response = api.get(f"/certificates/{lots.token_id(issued.lot_id, 1)}/qr", params={"module_mm": 0.6})
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert response.content == qr.svg(link_of(issued, 1, public_base_url), module_mm=0.6)
    assert b'width="' in response.content and b'mm"' in response.content


def test_bottle_qr__by_digital_link_path__the_same_code(api, issued, public_base_url):
    path = lots.digital_link(issued.metadata, 2).path()
    response = api.get("/qr" + path, params={"format": "png", "scale": 4})
    assert response.status_code == 200
    assert decode(response) == [link_of(issued, 2, public_base_url)]


def test_bottle_qr__path_without_vintage__the_canonical_link_with_it(api, issued, public_base_url):
    link = lots.digital_link(issued.metadata, 2)
    bare = gs1.DigitalLink(gtin=link.gtin, lot=link.lot, serial=link.serial).path()
    response = api.get("/qr" + bare, params={"format": "png"})
    assert decode(response) == [link_of(issued, 2, public_base_url)]


def test_bottle_qr__never_issued__404(api, issued):
    response = api.get(f"/certificates/{lots.token_id(issued.lot_id + 50, 1)}/qr")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert api.get(f"/certificates/{lots.token_id(issued.lot_id, 0)}/qr").status_code == 404


def test_bottle_qr__version_1_lot__404_no_digital_link(make_client, issued_v1, tmp_path):
    api = make_client(auth=False, documents_dir=tmp_path)
    response = api.get(f"/certificates/{lots.token_id(issued_v1.lot_id, 1)}/qr")
    assert response.status_code == 404 and response.json()["error"] == "no_digital_link"
    assert "no GTIN" in response.json()["detail"]


def test_bottle_qr__module_below_0_4_mm__422(api, issued):
    response = api.get(f"/certificates/{lots.token_id(issued.lot_id, 1)}/qr", params={"module_mm": 0.3})
    assert response.status_code == 422 and "module_mm" in response.json()["detail"]


@pytest.mark.parametrize("path", [
    "/qr/01/09520001000004/10/Q%2F1/21/ABCDEFG",          # wrong check digit
    "/qr/01/09520001000003/21/ABCDEFG/10/Q%2F1",          # qualifiers out of order
    "/qr/01/09520001000003/10/" + "L" * 21 + "/21/X",     # lot over 20 characters
])
def test_bottle_qr__malformed_path__400(api, path):
    response = api.get(path)
    assert response.status_code == 400 and response.json()["error"] == "malformed_identifier"


def test_bottle_qr__path_of_a_lot_or_unknown_serial_or_gtin__404(api, issued):
    lot_path = lots.digital_link(issued.metadata).path()
    assert api.get("/qr" + lot_path).status_code == 404                              # a lot, not a bottle
    unknown = gs1.gs1_serial(issued.metadata["serial_salt"], 5)                      # bottle 5 of 4
    assert api.get(f"/qr{lot_path}/21/{unknown}").status_code == 404
    other = gs1.DigitalLink(gtin=gs1.demo_gtin("7777"), lot="Q/1", serial="ABCDEFG").path()
    assert api.get("/qr" + other).status_code == 404


# -- label sheets ------------------------------------------------------------------------------


def test_labels__a_range_on_letter__pdf_whose_codes_decode_to_the_bottles(api, issued, public_base_url):
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf", params={"first": 2, "last": 4, "paper": "letter"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert "attachment" in response.headers["content-disposition"]
    pdf = pdfium.PdfDocument(response.content)
    assert len(pdf) == 1 and pdf[0].get_size() == pytest.approx((612, 792), abs=0.1)
    image = pdf[0].render(scale=200 / 72).to_pil()
    found = {r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)}
    assert found == {link_of(issued, n, public_base_url) for n in (2, 3, 4)}
    assert "Ingredients" in pdf[0].get_textpage().get_text_range()


def test_labels__default_range__the_whole_lot_on_a4(api, issued):
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf")
    pdf = pdfium.PdfDocument(response.content)
    assert pdf[0].get_size() == pytest.approx((595.3, 841.9), abs=0.1)
    assert pdf[0].get_textpage().get_text_range().count("Ingredients") == 4


def test_labels__over_the_cap__422_and_default_range_stops_at_the_cap(api, issued, monkeypatch):
    monkeypatch.setattr(qr_router, "MAX_LABELS_PER_REQUEST", 3)
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf", params={"first": 1, "last": 4})
    assert response.status_code == 422 and "at most 3 per request" in response.json()["detail"]
    capped = api.get(f"/lots/{issued.lot_id}/labels.pdf")
    assert capped.status_code == 200
    assert pdfium.PdfDocument(capped.content)[0].get_textpage().get_text_range().count("Ingredients") == 3


@pytest.mark.parametrize(("params", "message"), [
    ({"first": 3, "last": 2}, "before first"),
    ({"first": 1, "last": 5}, "has 4 bottles"),
    ({"first": 5}, "first: the lot has 4 bottles"),
    ({"first": 0}, "first"),
    ({"paper": "a3"}, "paper"),
])
def test_labels__bad_range_or_paper__422(api, issued, params, message):
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf", params=params)
    assert response.status_code == 422 and message in response.json()["detail"]


def test_labels__unknown_lot__404(api, issued):
    for lot_id in (0, issued.lot_id + 50, 2**64):
        response = api.get(f"/lots/{lot_id}/labels.pdf")
        assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_labels__version_1_lot__404_no_digital_link(make_client, issued_v1, tmp_path):
    api = make_client(auth=False, documents_dir=tmp_path)
    response = api.get(f"/lots/{issued_v1.lot_id}/labels.pdf")
    assert response.status_code == 404 and response.json()["error"] == "no_digital_link"


def test_labels__document_not_the_one_on_chain__409(api, issued, tmp_path):
    doc = dict(issued.metadata, lot_code="FORGED")
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", doc)
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf")
    assert response.status_code == 409 and response.json()["error"] == "document_mismatch"


def test_labels__while_another_sheet_is_drawn__503_with_retry_after(api, issued):
    assert qr_router._sheets.acquire(blocking=False)
    try:
        response = api.get(f"/lots/{issued.lot_id}/labels.pdf")
    finally:
        qr_router._sheets.release()
    assert response.status_code == 503 and response.json()["error"] == "rendering_busy"
    assert int(response.headers["retry-after"]) >= 1
    assert api.get(f"/lots/{issued.lot_id}/labels.pdf").status_code == 200


# -- a gift's claim link -----------------------------------------------------------------------

SECRET = "0x" + "5c" * 31 + "01"


def test_gift_qr__decodes_to_the_claim_link_with_the_secret_in_the_fragment(api, public_base_url):
    response = api.post("/qr/gift-links", params={"format": "png"}, json={"token_id": "4294967297",
                                                                         "claim_secret": SECRET})
    assert response.status_code == 200
    assert decode(response) == [f"{public_base_url}/app/claim/4294967297#claim={SECRET}"]


def test_gift_qr__not_cacheable_anywhere(api):
    response = api.post("/qr/gift-links", json={"token_id": 1, "claim_secret": SECRET})
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["cache-control"] == "no-store" and response.headers["pragma"] == "no-cache"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_gift_qr__the_secret_is_neither_logged_nor_stored(make_client, tmp_path, caplog):
    files = tmp_path / "state"
    files.mkdir()
    caplog.set_level(logging.DEBUG)
    api = make_client(auth=False, relay_db=files / "relay.sqlite", scan_db=files / "scans.sqlite",
                      offer_db=files / "offers.sqlite", index_db=files / "index.sqlite")
    secret = "0x" + "7e" * 31 + "02"
    ok = api.post("/qr/gift-links", json={"token_id": 9, "claim_secret": secret})
    refused = api.post("/qr/gift-links", json={"token_id": 9, "claim_secret": "0x" + "ff" * 32})
    assert ok.status_code == 200 and refused.status_code == 422
    assert "ff" * 32 not in refused.text                    # the refusal does not echo a secret either
    api.__exit__(None, None, None)                          # closes the databases (flushes their journals)
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert caplog.records and secret[2:] not in logged and "ff" * 32 not in logged
    stored = [p for p in files.iterdir() if p.is_file()]
    assert stored                                           # the app did open its databases there
    for path in stored:
        data = path.read_bytes()
        for needle in (secret[2:].encode(), bytes.fromhex(secret[2:]), secret[2:].upper().encode()):
            assert needle not in data, path


def test_gift_qr__not_kept_in_the_bottle_codes_memory(api, issued):
    before = qr_router._bottle_code.cache_info().currsize
    assert api.post("/qr/gift-links", json={"token_id": 1, "claim_secret": SECRET}).status_code == 200
    assert qr_router._bottle_code.cache_info().currsize == before
    assert api.get(f"/certificates/{lots.token_id(issued.lot_id, 1)}/qr", params={"scale": 3}).status_code == 200
    assert qr_router._bottle_code.cache_info().currsize == before + 1       # a bottle's code is remembered


def test_qr_routes__many_requests_from_one_network__429_with_retry_after(make_client, issued, tmp_path):
    api = make_client(auth=False, documents_dir=tmp_path, rate_limit_per_second=0.01, rate_limit_burst=2)
    token = lots.token_id(issued.lot_id, 1)
    assert api.get(f"/certificates/{token}/qr").status_code == 200
    assert api.post("/qr/gift-links", json={"token_id": 1, "claim_secret": SECRET}).status_code == 200
    response = api.get(f"/lots/{issued.lot_id}/labels.pdf")
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1


def test_gift_qr__get_with_the_secret_in_the_url__not_served(api):
    response = api.get("/qr/gift-links", params={"token_id": 1, "claim_secret": SECRET})
    assert response.status_code == 405


@pytest.mark.parametrize("body", [
    {"token_id": 1, "claim_secret": "0x" + "00" * 32},       # not a key
    {"token_id": 1, "claim_secret": "0x1234"},               # not 32 bytes
    {"token_id": 0, "claim_secret": SECRET},                 # no token 0
    {"token_id": 1},                                         # no secret
])
def test_gift_qr__bad_body__422_and_no_code(api, body):
    response = api.post("/qr/gift-links", json=body)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"
    assert not response.headers["content-type"].startswith("image/")


def test_gift_qr__a_link_of_anyone_elses__ignored_only_this_services_claim_link_is_drawn(api, public_base_url):
    body = {"token_id": 1, "claim_secret": SECRET, "link": "https://phish.example/login"}
    response = api.post("/qr/gift-links", params={"format": "png"}, json=body)
    assert response.status_code == 200 and decode(response) == [f"{public_base_url}/app/claim/1#claim={SECRET}"]


# -- the OpenAPI document ----------------------------------------------------------------------


def test_success_answers__status_media_type_and_schema_as_the_openapi_document_says(api, issued):
    """The fuzzing (test_api_schemathesis) rarely reaches a 200 here (it needs an issued
    version 2 lot with its document): these are sent with real values through its checks."""
    import schemathesis
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_dict(api.app.openapi())
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    link = lots.digital_link(issued.metadata, 2)
    qualifiers = link.path().split("/", 3)[3]
    for method, path, parts in [
        ("GET", "/certificates/{token_id}/qr", {"path_parameters": {"token_id": lots.token_id(issued.lot_id, 1)},
                                                "query": {"format": "png"}}),
        ("GET", "/qr/01/{gtin}/{qualifiers}", {"path_parameters": {"gtin": link.gtin, "qualifiers": qualifiers}}),
        ("POST", "/qr/gift-links", {"body": {"token_id": 1, "claim_secret": SECRET}, "media_type": "application/json"}),
        ("GET", "/lots/{lot_id}/labels.pdf", {"path_parameters": {"lot_id": issued.lot_id},
                                              "query": {"first": 1, "last": 2, "paper": "letter"}}),
    ]:
        case = schema[path][method].Case(**parts)
        response = case.call_and_validate(app=api.app, checks=checks)
        assert response.status_code == 200, (path, response.text)
