"""The cellar's console (/console/custodian) on the test deployment (anvil) with the
session's index: the delivery queue with the holders' addresses, confirm or refuse,
a storage report uploaded as a file, and the proof of reserve in one click; then the
journey in Chromium at phone size.

The clients are browsers without JavaScript (forms, the cookie, ``Origin``), as in
test_app_pages.py; every refusal is checked to have sent nothing (the cellar's nonce)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import PASSWORD, bearer, sign_up, wait_indexed  # noqa: E402
from test_api_custodian import ask_delivery  # noqa: E402
from test_app_pages import COOKIE, CSRF, SAME_ORIGIN, SCREENSHOTS, served_app, signed_up  # noqa: E402, F401

pytest_plugins = ["api_fixtures"]

ETH = 10**18
ONCE = re.compile(r'name="once" value="([A-Za-z0-9_-]+)"')
REDEEMED, ACTIVE, REQUESTED = 4, 0, 3


@dataclass
class CellarBrowser:
    browser: TestClient
    address: str
    lot: object


def address_of(browser: TestClient) -> str:
    return browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]


@pytest.fixture
def cellar(make_browser, cert, admin, create_lot) -> CellarBrowser:
    """A signed-in browser of a new account granted the custodian role, funded, keeping a lot of 4."""
    browser = make_browser()
    signed_up(browser)
    address = address_of(browser)
    cert.grant_custodian(address, "Cave de la Console", sender=admin)
    admin.transfer(address, ETH)
    return CellarBrowser(browser, address, create_lot(4, custodian=address))


def form(browser: TestClient, path: str) -> dict[str, str]:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    return {"csrf": CSRF.search(page.text).group(1), "once": ONCE.search(page.text).group(1)}


def post(browser: TestClient, path: str, **fields: str):
    return browser.post(path, data=fields, headers=SAME_ORIGIN)


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address)


# ------------------------------------------------------------ queue, confirm, refuse


def test_queue__shows_the_address_as_text__confirm_sent_twice_ships_once(cellar, cert, winery, holder, w3):
    browser, token = cellar.browser, cellar.lot.token(2)
    ask_delivery(browser, cert, winery, holder, token, name="Mei Lin",
                 address="12 Rue du Chai <script>alert(1)</script>\n33250 Pauillac", phone="+33 1 23")
    wait_indexed(w3, browser)

    queue = browser.get("/console/custodian")
    assert queue.status_code == 200 and "Mei Lin" in queue.text and "12 Rue du Chai" in queue.text
    assert "<script>alert(1)" not in queue.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in queue.text
    assert f'href="/console/custodian/redemptions/{token}"' in queue.text
    path = f"/console/custodian/redemptions/{token}"
    fields = form(browser, path)
    sent = [post(browser, f"{path}/confirm", **fields) for _ in range(2)]

    assert [s.status_code for s in sent] == [303, 303]
    assert sent[0].headers["location"] == "/console/custodian?done=confirmed"
    assert cert.certificate(token).state == REDEEMED and nonce(w3, cellar.address) == 1
    wait_indexed(w3, browser)
    after = browser.get("/console/custodian?done=confirmed")
    assert "Delivery confirmed" in text(after) and "Mei Lin" not in after.text


def test_request_page__a_bottle_in_another_cellar__403_in_words_and_nothing_sent(cellar, cert, admin, winery, holder,
                                                                                  create_lot, w3):
    browser = cellar.browser
    other = sign_up(browser)
    cert.grant_custodian(other["address"], "Other Cave", sender=admin)
    theirs = create_lot(2, custodian=other["address"]).token(1)
    ask_delivery(browser, cert, winery, holder, theirs, name="Someone Else", address="9 Other Road")
    fields = form(browser, "/console/custodian")

    page = browser.get(f"/console/custodian/redemptions/{theirs}")
    refused = post(browser, f"/console/custodian/redemptions/{theirs}/confirm", **fields)

    assert page.status_code == 403 and "kept by another cellar" in text(page) and "Other Road" not in page.text
    assert refused.status_code == 403 and "kept by another cellar" in text(refused)
    assert nonce(w3, cellar.address) == 0 and cert.certificate(theirs).state == REQUESTED


def test_reject__reason_too_short_422_beside_it__then_refused_with_its_hash(cellar, cert, winery, holder, w3):
    browser, token = cellar.browser, cellar.lot.token(3)
    ask_delivery(browser, cert, winery, holder, token, name="Li", address="1 Road")
    wait_indexed(w3, browser)
    path = f"/console/custodian/redemptions/{token}"

    short = post(browser, f"{path}/reject", **form(browser, path), reason="no")
    assert short.status_code == 422 and "Say why in 3 to 500 characters." in text(short)
    assert 'aria-invalid="true"' in short.text and nonce(w3, cellar.address) == 0

    done = post(browser, f"{path}/reject", **form(browser, path), reason="Unpaid cellar fee")
    assert done.status_code == 303 and done.headers["location"] == "/console/custodian?done=rejected"
    assert cert.certificate(token).state == ACTIVE and cert.ownerOf(token) == holder.address


def test_request_page__no_request_pending__409_in_words(cellar):
    page = cellar.browser.get(f"/console/custodian/redemptions/{cellar.lot.token(1)}")

    assert page.status_code == 409 and "No delivery is waiting for this bottle" in text(page)


def test_confirm__a_form_from_elsewhere_or_without_its_token__403_nothing_sent(cellar, cert, winery, holder, w3):
    browser, token = cellar.browser, cellar.lot.token(2)
    ask_delivery(browser, cert, winery, holder, token, name="Li", address="1 Road")
    path = f"/console/custodian/redemptions/{token}/confirm"
    fields = form(browser, "/console/custodian")

    foreign = browser.post(path, data=fields, headers={"Origin": "https://evil.example"})
    tokenless = post(browser, path, once=fields["once"])

    assert foreign.status_code == 403 and tokenless.status_code == 403
    assert nonce(w3, cellar.address) == 0 and cert.certificate(token).state == REQUESTED


# ------------------------------------------------------------ storage report, reserve


def test_report__uploaded_as_a_file__hashed_attested_and_linked(cellar, registry):
    browser, lot = cellar.browser, cellar.lot
    report = b"%PDF-1.4\n% Cave de la Console: 12 C, 70 % humidity, racks 4-6\n%%EOF\n"

    sent = browser.post(f"/console/custodian/lots/{lot.lot_id}/report", data=form(browser, "/console/custodian"),
                        files={"report": ("report.pdf", report, "application/pdf")}, headers=SAME_ORIGIN)

    assert sent.status_code == 303 and sent.headers["location"] == "/console/custodian?done=attested"
    document_hash = "0x" + keccak(report).hex()
    assert "0x" + bytes(registry.custody(lot.token(1)).storage_document_hash).hex() == document_hash
    page = browser.get("/console/custodian?done=attested")
    assert "Storage report published and attested" in text(page) and "Last report attested on" in text(page)
    assert f'href="/custodian/documents/{document_hash}"' in page.text
    assert browser.get(f"/custodian/documents/{document_hash}").content == report


def test_report__no_file_chosen__422_beside_the_lot_nothing_sent(cellar, w3):
    browser, lot = cellar.browser, cellar.lot

    sent = browser.post(f"/console/custodian/lots/{lot.lot_id}/report", data=form(browser, "/console/custodian"),
                        files={"report": ("empty.pdf", b"", "application/pdf")}, headers=SAME_ORIGIN)

    assert sent.status_code == 422 and "Choose a file, then upload it again." in text(sent)
    assert nonce(w3, cellar.address) == 0


def test_reserve__one_click__root_posted_and_a_bottle_verifies_on_chain(cellar, registry, w3):
    browser, lot = cellar.browser, cellar.lot
    wait_indexed(w3, browser)
    fields = form(browser, "/console/custodian")

    sent = [post(browser, "/console/custodian/reserve", **fields) for _ in range(2)]

    assert [s.status_code for s in sent] == [303, 303] and nonce(w3, cellar.address) == 1
    root = re.search(r"root=(0x[0-9a-f]{64})", sent[0].headers["location"]).group(1)
    page = browser.get(sent[0].headers["location"])
    tree = f"/custodian/reserve-trees/{cellar.address}/{root}"
    assert "Proof of reserve posted" in text(page) and f'href="{tree}"' in page.text
    proof = browser.get(f"{tree}/proofs/{lot.token(3)}").json()["proof"]
    assert registry.verify_reserve(lot.token(3), proof)


# ------------------------------------------------------------ who may see it


def test_custodian_console__a_holder_403_in_words__anonymous_to_login(make_browser):
    holder = make_browser()
    signed_up(holder)

    page = holder.get("/console/custodian")

    assert page.status_code == 403 and 'href="/console/custodian"' not in page.text
    assert make_browser().get("/console/custodian").headers["location"] == "/app/login"


def test_custodian_console__in_chinese_and_french(cellar):
    zh = cellar.browser.get("/console/custodian?lang=zh-CN")
    fr = cellar.browser.get("/console/custodian", headers={"Accept-Language": "fr"})

    assert "待交付的酒瓶" in zh.text and "发布储备证明" in zh.text
    assert "Bouteilles à livrer" in fr.text and "Publier la preuve de réserve" in fr.text


# ------------------------------------------------------------ in a browser


def test_cellar__on_a_phone__confirms_a_delivery_and_posts_a_reserve_root_that_verifies(
        served_app, w3, cert, registry, admin, create_lot, winery, holder):  # noqa: F811 (the fixture imported above)
    from browser import sign_up_in_browser
    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            page = context.new_page()
            sign_up_in_browser(page, base, "cave@example.org", PASSWORD)
            address = page.locator("code").inner_text()
            cert.grant_custodian(address, "Cave du Port", sender=admin)
            admin.transfer(address, ETH)
            lot = create_lot(3, custodian=address)
            ask_delivery(SimpleNamespace(app=app), cert, winery, holder, lot.token(2), name="Wang Fang",
                         address="88 Jiefang Road\nYibin, Sichuan 644000", phone="+86 831 000 0000")
            wait_indexed(w3, SimpleNamespace(app=app))

            page.goto(f"{base}/console")
            page.get_by_role("link", name="Cellar", exact=True).first.click()
            expect(page.get_by_text("88 Jiefang Road")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "console-custodian-queue.png"), full_page=True)
            page.get_by_role("link", name="Confirm or refuse this delivery").click()
            expect(page.get_by_text("Wang Fang")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "console-custodian-request.png"), full_page=True)
            page.get_by_role("button", name="Confirm the delivery").click()
            expect(page.get_by_text("Delivery confirmed")).to_be_visible()
            assert cert.certificate(lot.token(2)).state == REDEEMED
            wait_indexed(w3, SimpleNamespace(app=app))

            page.reload()
            expect(page.get_by_text("Bottles in your cellar: 2.")).to_be_visible()
            page.get_by_role("button", name="Post proof of reserve").click()
            expect(page.get_by_text("Proof of reserve posted on the blockchain.")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "console-custodian-reserve.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 800})
            page.screenshot(path=str(SCREENSHOTS / "console-custodian-desktop.png"), full_page=True)
            page.get_by_role("link", name="See the published list").click()
            listed = page.evaluate("JSON.parse(document.body.innerText)")
            assert listed["token_ids"] == [str(lot.token(1)), str(lot.token(3))]
            proof = page.request.get(f"{page.url}/proofs/{lot.token(3)}").json()["proof"]
        finally:
            chromium.close()
    assert registry.verify_reserve(lot.token(3), proof)
    assert not registry.verify_reserve(lot.token(2), proof)
