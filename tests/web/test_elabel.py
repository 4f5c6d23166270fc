"""The EU e-label on real lots issued on the test chain: its content in each language, the
resolver's default link for EU and other lots, and that reading it is recorded nowhere
(headers, every database the app writes, uvicorn's access log)."""

from __future__ import annotations

import copy
import json
import logging
import re
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))  # the API fixtures' module

from amphora import gs1, lots  # noqa: E402
from amphora.demo import EXAMPLE_LOT  # noqa: E402
from api.routers.elabel import CSP  # noqa: E402
from api.routers.resolver import LINKSET_SCHEMA, VOC  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

V2 = json.loads(EXAMPLE_LOT.read_text())
BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.0 Mobile/15E148 Safari/604.1")
NBSP = "\u00a0"
#: Debian's Chromium (make test installs it when missing).
CHROMIUM = "/usr/bin/chromium"


def _issue(cert, winery, custodian, folder: Path, **changes):
    description = lots.LotDescription.from_mapping({**copy.deepcopy(V2), "bottle_count": 3,
                                                    "custodian": custodian.address, **changes})
    lot = lots.issue(cert, winery, description)
    lots.write_document(folder / f"lot-{lot.lot_id}.json", lot.metadata)
    return lot


@pytest.fixture
def eu_lot(cert, winery, custodian, tmp_path):
    """A lot sold in the EU (the demo's document), with a lot code that needs percent-encoding."""
    return _issue(cert, winery, custodian, tmp_path, lot_code="EU/1", eu_market=True)


@pytest.fixture
def other_lot(cert, winery, custodian, tmp_path):
    """A lot not marked for the EU market."""
    return _issue(cert, winery, custodian, tmp_path, lot_code="XX-1", eu_market=False)


@pytest.fixture
def reader(make_client, eu_lot, other_lot, tmp_path):
    """An anonymous reader's client of an app that finds both lots' documents."""
    return make_client(auth=False, documents_dir=tmp_path)


def elabel(lot, serial: int | None = None) -> str:
    return "/e-label" + lots.digital_link(lot.metadata, serial).path()


def rows(html: str) -> list[tuple[str, str]]:
    """The nutrition table's (name, amount) rows, in order."""
    found = re.findall(r'<th scope="row"(?: class="part")?>(.*?)</th><td class="num">(.*?)</td>', html)
    return [(name, amount) for name, amount in found]


# ------------------------------------------------------------------ content


def test_elabel__english__the_wine_its_ingredients_nutrition_alcohol_and_producer(reader, eu_lot):
    response = reader.get(elabel(eu_lot), headers={"Accept-Language": "en-GB,en;q=0.9"})
    html = response.text
    assert response.status_code == 200 and response.headers["content-language"] == "en"
    assert "<h1>Grand Vin de Domaine Amphora 2019</h1>" in html
    assert '<h2 id="ingredients">Ingredients</h2>' in html
    assert ("grapes, sucrose, tartaric acid, <strong>sulphites</strong>, "
            "<strong>egg white (fining agent)</strong>") in html
    assert "Allergens: <strong>Sulphites</strong>, <strong>Eggs</strong>" in html
    assert rows(html) == [("Energy", f"322{NBSP}kJ / 77{NBSP}kcal"), ("Fat", f"0{NBSP}g"),
                          ("of which saturates", f"0{NBSP}g"), ("Carbohydrate", f"2.6{NBSP}g"),
                          ("of which sugars", f"0.6{NBSP}g"), ("Protein", f"&lt;0.5{NBSP}g"),
                          ("Salt", f"&lt;0.01{NBSP}g")]
    assert f"13.5{NBSP}% vol" in html and f"750{NBSP}ml" in html
    assert "Domaine Amphora<br>1 route des Chais, 33250 Pauillac, France" in html
    assert "Check this bottle" not in html  # opened for the lot, not for a bottle


def test_elabel__french_from_accept_language__translated_list_and_french_numbers(reader, eu_lot):
    response = reader.get(elabel(eu_lot), headers={"Accept-Language": "fr-BE, en;q=0.5"})
    html = response.text
    assert response.headers["content-language"] == "fr" and "Accept-Language" in response.headers["vary"]
    assert '<h2 id="ingredients">Ingrédients</h2>' in html
    assert ("raisins, saccharose, acide tartrique, <strong>sulfites</strong>, "
            "<strong>blanc d&#39;œuf (agent de collage)</strong>") in html
    assert "Allergènes : <strong>Sulfites</strong>, <strong>Œufs</strong>" in html
    assert rows(html)[3:] == [("Glucides", f"2,6{NBSP}g"),
                              ("dont sucres", f"0,6{NBSP}g"), ("Protéines", f"&lt;0,5{NBSP}g"),
                              ("Sel", f"&lt;0,01{NBSP}g")]
    assert f"13,5{NBSP}% vol" in html


def test_elabel__chinese_from_the_switch__overrides_accept_language(reader, eu_lot):
    response = reader.get(elabel(eu_lot), params={"lang": "zh-CN"}, headers={"Accept-Language": "fr"})
    html = response.text
    assert response.headers["content-language"] == "zh-CN"
    assert "<h1>安芙拉酒庄正牌葡萄酒 2019</h1>" in html and '<h2 id="ingredients">配料</h2>' in html
    assert "葡萄、蔗糖、酒石酸、<strong>亚硫酸盐</strong>、<strong>蛋清（澄清剂）</strong>" in html
    assert "过敏原： <strong>亚硫酸盐</strong>、<strong>蛋类</strong>" in html
    assert [name for name, _ in rows(html)] == ["能量", "脂肪", "其中饱和脂肪", "碳水化合物", "其中糖", "蛋白质", "盐"]


def test_elabel__language_switch__links_the_same_lot_in_the_other_languages(reader, eu_lot):
    path = elabel(eu_lot, 1)
    assert "EU%2F1" in path  # the lot code's slash stays encoded in every link to the page
    html = reader.get(path).text
    for tag in ("zh-CN", "fr"):
        assert f'href="{path}?lang={tag}"' in html
    french = reader.get(f"{path}?lang=fr")
    assert french.status_code == 200 and "Ingrédients" in french.text


def test_elabel__a_bottles_serial__one_link_to_that_bottles_certificate(reader, eu_lot, public_base_url):
    html = reader.get(elabel(eu_lot, 2)).text
    token = lots.token_id(eu_lot.lot_id, 2)
    assert html.count("<a href=") - html.count('hreflang="') == 1  # the language switch, and one link
    assert f'<a href="{public_base_url}/verify/{token}">Check this bottle&#39;s certificate</a>' in html


def test_elabel__a_serial_not_of_this_lot__the_lots_label_without_a_certificate_link(reader, eu_lot):
    serial = gs1.gs1_serial(eu_lot.metadata["serial_salt"], 4)  # bottle 4 of a lot of 3
    response = reader.get(elabel(eu_lot) + f"/21/{serial}")
    assert response.status_code == 200 and "Ingredients" in response.text
    assert "/verify/" not in response.text


def test_elabel__any_v2_lot__has_an_elabel_too(reader, other_lot):
    response = reader.get(elabel(other_lot))
    assert response.status_code == 200 and "<strong>sulphites</strong>" in response.text


def test_elabel__no_allergen_declared__nothing_emphasised(make_client, cert, winery, custodian, tmp_path):
    lot = _issue(cert, winery, custodian, tmp_path, lot_code="NOALL", allergens=[])
    html = make_client(auth=False, documents_dir=tmp_path).get(elabel(lot)).text
    assert "<strong>" not in html and "Allergens:" not in html
    assert "grapes, sucrose, tartaric acid, sulphites, egg white (fining agent)" in html


def test_elabel__head__answers_like_get(reader, eu_lot):
    get = reader.get(elabel(eu_lot))
    head = reader.head(elabel(eu_lot))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-security-policy"] == get.headers["content-security-policy"]


# ------------------------------------------------------------------ errors in consumer words


def test_elabel__unknown_lot_of_a_known_gtin__404_in_consumer_words(reader, eu_lot):
    response = reader.get(f"/e-label/01/{V2['gtin']}/10/NOPE", headers={"Accept-Language": "fr"})
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert "Nous ne connaissons pas ce vin" in response.text
    assert "not_found" not in response.text and "GTIN" not in response.text
    assert response.headers["cache-control"] == "no-store"


def test_elabel__unknown_gtin__404(reader):
    response = reader.get(f"/e-label/01/{gs1.demo_gtin('7777777')}/10/A")
    assert response.status_code == 404 and "We do not know this wine" in response.text


@pytest.mark.parametrize("path", [
    "/e-label/01/09520001000004/10/A",                 # check digit
    "/e-label/01/09520001000003/21/S/10/A",            # qualifiers out of order
    "/e-label/01/09520001000003/10/" + "L" * 21,       # lot over 20 characters
    "/e-label/01/09520001000003/10/A~B",               # outside GS1's character set
    "/e-label/01/09520001000003/17/261231",            # a data attribute, no lot
    "/e-label/01/09520001000003/22/2019",              # no lot: an e-label is per lot
])
def test_elabel__malformed__400_in_consumer_words(reader, path):
    response = reader.get(path)
    assert response.status_code == 400 and "text/html" in response.headers["content-type"]
    assert "This code cannot be read" in response.text and "malformed" not in response.text
    assert "set-cookie" not in response.headers


def test_attacker__document_edited_after_issuance__no_elabel(make_client, eu_lot, tmp_path):
    forged = {**eu_lot.metadata, "allergens": [], "lot_code": "EU/1"}
    lots.write_document(tmp_path / f"lot-{eu_lot.lot_id}.json", forged)
    response = make_client(auth=False, documents_dir=tmp_path).get(elabel(eu_lot))
    assert response.status_code == 404


def test_attacker__markup_in_the_issuers_document__shown_as_text(make_client, cert, winery, custodian, tmp_path):
    hostile = copy.deepcopy(V2["translations"])
    hostile["en"]["ingredients"] = ['<script>alert(1)</script>', '<img src="https://evil.example/x">']
    lot = _issue(cert, winery, custodian, tmp_path, lot_code="XSS", translations=hostile)
    html = make_client(auth=False, documents_dir=tmp_path).get(elabel(lot)).text
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_attacker__markup_in_the_language_switch__not_reflected(reader, eu_lot):
    response = reader.get(elabel(eu_lot), params={"lang": '"><script>x</script>'})
    assert response.headers["content-language"] == "en"
    assert "<script" not in response.text


# ------------------------------------------------------------------ it tracks nothing


def test_elabel__headers__no_cookie_cacheable_strict_policy_no_referrer(reader, eu_lot):
    response = reader.get(elabel(eu_lot, 1), headers={"User-Agent": BROWSER})
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-security-policy"] == CSP
    assert "script-src" not in CSP and "default-src 'none'" in CSP and "img-src" not in CSP
    assert response.headers["referrer-policy"] == "no-referrer"


def test_elabel__body__no_script_no_image_no_form_no_third_party_asset(reader, eu_lot, public_base_url):
    html = reader.get(elabel(eu_lot, 1)).text
    assert not re.search(r"<(script|img|iframe|form|object|embed)\b", html)
    targets = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert targets and all(t.startswith(("/", "#", public_base_url + "/verify/")) for t in targets)


def _counts(*files: Path) -> dict[str, int]:
    """Rows per table of each SQLite file."""
    counts: dict[str, int] = {}
    for file in files:
        with sqlite3.connect(file) as db:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                counts[f"{file.name}:{table}"] = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
    return counts


def test_elabel_and_its_redirect__write_no_row_anywhere(make_client, eu_lot, tmp_path, index_file, w3):
    from api_fixtures import wait_indexed

    files = {name: tmp_path / f"{name}.sqlite" for name in ("relay", "scans", "offers")}
    client = make_client(auth=False, documents_dir=tmp_path, relay_db=files["relay"], scan_db=files["scans"],
                         offer_db=files["offers"])
    client.headers["User-Agent"] = BROWSER
    wait_indexed(w3, client)
    before = _counts(*files.values(), index_file)
    assert "scans.sqlite:scan_views" in before and len(before) > 5

    for serial in (1, 2, 3):
        redirect = client.get(lots.digital_link(eu_lot.metadata, serial).path(), follow_redirects=False)
        assert redirect.headers["location"].endswith(elabel(eu_lot, serial))
        assert client.get(elabel(eu_lot, serial), headers={"Accept-Language": "fr"}).status_code == 200
    assert client.get(elabel(eu_lot)).status_code == 200

    assert _counts(*files.values(), index_file) == before
    # The same client opening a verification page is recorded: the count above could have moved.
    client.get(f"/verify/{lots.token_id(eu_lot.lot_id, 1)}")
    assert _counts(files["scans"])["scans.sqlite:scan_views"] == before["scans.sqlite:scan_views"] + 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def served(make_app: Callable[[str], Any]) -> Iterator[str]:
    """The app ``make_app(base URL)`` served by a real uvicorn server on a free port of 127.0.0.1 (its
    access log on): its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    app = make_app("http://{}:{}".format(*listener.getsockname()))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="info", access_log=True))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        host, port = listener.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def test_access_log__elabel_and_its_redirect__no_client_address_nor_lot(reader, eu_lot):
    records = _Records()
    access = logging.getLogger("uvicorn.access")
    try:
        with served(lambda _base: reader.app) as base:
            access.addHandler(records)  # after uvicorn's Config has set up its loggers, as a running server has
            with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}) as http:
                digital_link = lots.digital_link(eu_lot.metadata, 2).path()
                assert http.get(digital_link).status_code == 307
                assert http.get(elabel(eu_lot, 2) + "?lang=fr").status_code == 200
                assert http.get("/e-label/01/09520001000004/10/A").status_code == 400
                assert http.get("/health").status_code in (200, 503)  # a path the filter leaves alone
    finally:
        access.removeHandler(records)
    host = "127.0.0.1"

    serial = gs1.gs1_serial(eu_lot.metadata["serial_salt"], 2)
    assert len(records.lines) == 4, records.lines
    private, control = records.lines[:3], records.lines[3]
    assert host in control and "/health" in control  # the capture sees what uvicorn logs
    for line in private:
        assert host not in line
        assert serial not in line and "EU" not in line and "09520001000003" not in line
    assert '"GET /01/… HTTP/1.1" 307' in private[0]
    assert '"GET /e-label/… HTTP/1.1" 200' in private[1] and '"GET /e-label/… HTTP/1.1" 400' in private[2]


# ------------------------------------------------------------------ the resolver's default link


def _linkset(client, path: str) -> dict:
    from jsonschema import validate

    body = client.get(path, params={"linkType": "linkset"}).json()
    validate(body, LINKSET_SCHEMA)
    (item,) = body["linkset"]
    assert len(item[VOC + "defaultLink"]) == 1
    assert all(key == "anchor" or key.startswith(VOC) for key in item)
    return item


def test_resolver__eu_bottle__default_link_is_its_elabel(reader, eu_lot, public_base_url):
    response = reader.get(lots.digital_link(eu_lot.metadata, 3).path(), follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == public_base_url + elabel(eu_lot, 3)


def test_resolver__eu_bottle__followed__the_elabel_one_tap_from_its_certificate(reader, eu_lot, public_base_url):
    location = reader.get(lots.digital_link(eu_lot.metadata, 1).path(), follow_redirects=False).headers["location"]
    page = reader.get(location.removeprefix(public_base_url), headers={"Accept-Language": "fr"})
    token = lots.token_id(eu_lot.lot_id, 1)
    assert page.status_code == 200 and "Ingrédients" in page.text
    assert f'href="{public_base_url}/verify/{token}"' in page.text


def test_resolver__eu_lot__default_link_is_the_lots_elabel(reader, eu_lot, public_base_url):
    response = reader.get(lots.digital_link(eu_lot.metadata).path(), follow_redirects=False)
    assert response.headers["location"] == public_base_url + elabel(eu_lot)


def test_resolver__eu_bottle__linkset_one_default_elabel_and_the_verification_page(reader, eu_lot,
                                                                                   public_base_url):
    item = _linkset(reader, lots.digital_link(eu_lot.metadata, 2).path())
    token = lots.token_id(eu_lot.lot_id, 2)
    label = public_base_url + elabel(eu_lot, 2)
    assert item[VOC + "defaultLink"] == [{"href": label, "title": "E-label: ingredients and nutrition",
                                          "type": "text/html"}]
    for link_type in ("ingredientsInfo", "allergenInfo", "nutritionalInfo"):
        assert [link["href"] for link in item[VOC + link_type]] == [label]
    service = {link["type"]: link["href"] for link in item[VOC + "verificationService"]}
    assert service == {"application/json": f"{public_base_url}/certificates/{token}",
                       "text/html": f"{public_base_url}/verify/{token}"}


def test_resolver__verification_service__a_browser_gets_the_page_a_program_the_json(reader, eu_lot,
                                                                                   public_base_url):
    path = lots.digital_link(eu_lot.metadata, 1).path()
    token = lots.token_id(eu_lot.lot_id, 1)
    browser = reader.get(path, params={"linkType": "gs1:verificationService"}, follow_redirects=False,
                         headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    program = reader.get(path, params={"linkType": "gs1:verificationService"}, follow_redirects=False,
                         headers={"Accept": "application/json"})
    assert browser.headers["location"] == f"{public_base_url}/verify/{token}"
    assert program.headers["location"] == f"{public_base_url}/certificates/{token}"


@pytest.mark.parametrize("link_type", ["gs1:ingredientsInfo", "gs1:allergenInfo",
                                       "https://ref.gs1.org/voc/nutritionalInfo"])
def test_resolver__other_bottle__elabel_offered_under_its_link_types(reader, other_lot, public_base_url, link_type):
    response = reader.get(lots.digital_link(other_lot.metadata, 1).path(), params={"linkType": link_type},
                          follow_redirects=False)
    assert response.headers["location"] == public_base_url + elabel(other_lot, 1)


def test_resolver__other_bottle__default_link_stays_the_verification_page(reader, other_lot, public_base_url):
    path = lots.digital_link(other_lot.metadata, 1).path()
    response = reader.get(path, follow_redirects=False)
    assert response.headers["location"] == f"{public_base_url}/verify/{lots.token_id(other_lot.lot_id, 1)}"
    item = _linkset(reader, path)
    assert item[VOC + "defaultLink"][0]["href"].endswith(f"/verify/{lots.token_id(other_lot.lot_id, 1)}")
    assert item[VOC + "ingredientsInfo"][0]["href"] == public_base_url + elabel(other_lot, 1)


def test_resolver__other_lot__default_link_stays_the_lot_document(reader, other_lot, public_base_url):
    response = reader.get(lots.digital_link(other_lot.metadata).path(), follow_redirects=False)
    assert response.headers["location"] == f"{public_base_url}/lots/{other_lot.lot_id}/metadata.json"


def test_resolver__eu_product__default_link_is_the_lot_document_not_one_lots_elabel(reader, eu_lot, other_lot,
                                                                                     public_base_url):
    newest = max(eu_lot.lot_id, other_lot.lot_id)
    response = reader.get(f"/01/{V2['gtin']}", follow_redirects=False)
    assert response.headers["location"] == f"{public_base_url}/lots/{newest}/metadata.json"
    assert VOC + "ingredientsInfo" not in _linkset(reader, f"/01/{V2['gtin']}")


def test_resolver__eu_unknown_serial__walks_up_to_the_lots_elabel(reader, eu_lot, public_base_url):
    serial = gs1.gs1_serial(eu_lot.metadata["serial_salt"], 4)  # bottle 4 of a lot of 3
    path = lots.digital_link(eu_lot.metadata).path() + f"/21/{serial}"
    response = reader.get(path, follow_redirects=False)
    assert response.headers["location"] == public_base_url + elabel(eu_lot)


def test_browser__scans_an_eu_bottle__elabel_with_no_cookie_no_storage_no_request_beyond_its_own(
        make_client, eu_lot, tmp_path):
    from playwright.sync_api import sync_playwright

    def app(base: str):
        return make_client(auth=False, documents_dir=tmp_path, public_base_url=base).app

    with served(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="fr-FR")
            page = context.new_page()
            requests: list[str] = []
            console: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: console.append(message.text))
            page.goto(base + lots.digital_link(eu_lot.metadata, 1).path())  # the bottle's code, as scanned

            assert page.url == base + elabel(eu_lot, 1)
            assert page.get_by_role("heading", name="Ingrédients").is_visible()
            assert page.locator("strong", has_text="sulfites").first.is_visible()
            link = page.get_by_role("link", name="Vérifier le certificat de cette bouteille")
            assert link.get_attribute("href", timeout=1_000).endswith(f"/verify/{lots.token_id(eu_lot.lot_id, 1)}")
            assert context.cookies() == []
            assert page.evaluate("document.cookie") == ""
            assert page.evaluate("localStorage.length + sessionStorage.length") == 0
            assert page.evaluate("document.scripts.length") == 0
            assert console == []
            assert {urlsplit(url).path for url in requests} == {
                lots.digital_link(eu_lot.metadata, 1).path(), elabel(eu_lot, 1),
                "/static/amphora.css", "/static/elabel.css"}
            assert all(url.startswith(base) for url in requests)
        finally:
            browser.close()
