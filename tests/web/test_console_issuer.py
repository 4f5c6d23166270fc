"""The winery's console (/console/issuer) on the test deployment: a new lot from
the form or a file, its preview before anything is sent, its issuance as a
background job followed on its progress page, the lot's dashboard (counts,
scans chart, downloads, flags), and one journey in Chromium: a winery creates
a lot from a CSV, previews, issues through the progress page and downloads its
labels and tag keys."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import V2_DOCUMENT, wait_indexed  # noqa: E402
from eth_account import Account  # noqa: E402
from test_app_pages import SAME_ORIGIN, signed_up  # noqa: E402

from amphora import lots  # noqa: E402
from api.scans import Client, network_prefix  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
DOCUMENT = re.compile(r'name="document" value="([^"]*)"')
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def words(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def address_of(browser) -> str:
    token = browser.cookies["__Host-amphora_session"]
    return browser.get("/me/roles", headers={"Authorization": f"Bearer {token}"}).json()["address"]


@pytest.fixture
def winery_browser(make_browser, cert, admin, tmp_path):
    """A signed-in browser of a new account holding the issuer role, funded; (browser, address)."""
    browser = make_browser(documents_dir=tmp_path)
    signed_up(browser)
    address = address_of(browser)
    cert.grant_issuer(address, "Domaine de la Console", sender=admin)
    admin.transfer(address, ETH)
    return browser, address


def v2_document(custodian, count: int = 3) -> dict:
    return {**copy.deepcopy(V2_DOCUMENT), "bottle_count": count, "custodian": custodian.address}


def lot_csv(doc: dict) -> bytes:
    """A version 2 lot as a CSV of one row (nested fields as JSON in their cells)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(doc))
    writer.writeheader()
    writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list, bool)) else v
                     for k, v in doc.items()})
    return out.getvalue().encode()


def preview(browser, fields: dict | None = None, upload: tuple[str, bytes] | None = None):
    csrf = CSRF.search(browser.get("/console/issuer").text).group(1)
    return browser.post("/console/issuer/preview", data={"csrf": csrf, **(fields or {})},
                        files={"file": upload} if upload else {"file": ("", b"")}, headers=SAME_ORIGIN)


def issue(browser, page):
    document = DOCUMENT.search(page.text).group(1)
    return browser.post("/console/issuer/issue", data={"csrf": CSRF.search(page.text).group(1),
                                                       "document": html.unescape(document)}, headers=SAME_ORIGIN)


LOT_LINK = re.compile(r'href="/console/issuer/lots/(\d+)"')


def finished(browser, job_path: str, timeout: float = 30.0):
    """The job's page once it no longer reloads itself (done or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        page = browser.get(job_path)
        if 'http-equiv="refresh"' not in page.text:
            return page
        assert time.monotonic() < deadline, words(page)
        time.sleep(0.1)


def issued_lot(browser, page) -> int:
    """Issue the previewed lot and follow its job to the end: the new lot's id."""
    started = issue(browser, page)
    assert started.status_code == 303 and started.headers["location"].startswith("/console/issuer/jobs/")
    done = finished(browser, started.headers["location"])
    assert "Your lot is issued" in words(done), words(done)
    return int(LOT_LINK.search(done.text).group(1))


def test_issuer_console__anonymous__to_login__a_holder__403_in_words(make_browser):
    anonymous = make_browser()
    assert anonymous.get("/console/issuer").headers["location"] == "/app/login"
    holder = make_browser()
    signed_up(holder)

    page = holder.get("/console/issuer")

    assert page.status_code == 403 and "The operator grants roles on the blockchain" in words(page)


def test_preview__from_the_form__shows_the_lot_and_sends_nothing(winery_browser, custodian, w3):
    browser, address = winery_browser

    page = preview(browser, {"producer": "Clos Test", "wine": "Cuvée Formulaire", "region": "Loire", "vintage": "2022",
                             "bottle_count": "6", "volume_ml": "750", "bottling_date": "2023-03-01",
                             "custodian": custodian.address})

    text = words(page)
    assert page.status_code == 200 and "Cuvée Formulaire 2022" in text and "Nothing has been sent yet" in text
    assert "no e-label" in text and 'name="document"' in page.text
    assert w3.eth.get_transaction_count(address) == 0


def test_preview__a_v2_json_file__shows_its_e_label(winery_browser, custodian):
    browser, _ = winery_browser

    page = preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode()))

    text = words(page)
    assert page.status_code == 200 and "The e-label buyers will read" in text
    assert "<strong>sulphites</strong>" in page.text and "322 kJ / 77 kcal" in text.replace("\u00a0", " ")


def test_preview__bad_fields__the_form_again_naming_each(winery_browser, custodian):
    browser, _ = winery_browser
    doc = {**v2_document(custodian), "gtin": "09520001000004", "alcohol_percent": 300}

    page = preview(browser, upload=("lot.csv", lot_csv(doc)))

    assert page.status_code == 422 and "Please correct these fields" in words(page)
    assert "<code>gtin</code>" in page.text and "<code>alcohol_percent</code>" in page.text


def test_preview__without_the_pages_token__403_nothing_read(winery_browser, custodian):
    browser, _ = winery_browser

    page = browser.post("/console/issuer/preview", data={"csrf": "0" * 64, "wine": "x"},
                        files={"file": ("", b"")}, headers=SAME_ORIGIN)

    assert page.status_code == 403


def test_issue__twice_from_the_same_preview__one_lot_through_the_progress_page(winery_browser, custodian, cert,
                                                                               w3):
    browser, address = winery_browser
    page = preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode()))
    count = cert.lot_count()

    started = issue(browser, page)
    again = issue(browser, page)

    assert started.status_code == 303 and started.headers["location"].startswith("/console/issuer/jobs/")
    assert again.status_code == 409
    assert "already issuing a lot" in words(again) or "already issued" in words(again)
    done = finished(browser, started.headers["location"])
    text = words(done)
    assert done.status_code == 200 and "Your lot is issued" in text and f"as lot {count + 1}" in text
    assert cert.lot_count() == count + 1 and cert.lot(count + 1).issuer == address
    assert f'href="/lots/{count + 1}/labels.pdf?first=1&amp;last=3"' in done.text and "<progress" not in done.text
    assert "Download the bottles file with the tag keys" in text
    wait_indexed(w3, browser)
    dashboard = browser.get(f"/console/issuer/lots/{count + 1}")
    assert dashboard.status_code == 200 and "Unsold 3" in words(dashboard) and "<svg" in dashboard.text


def test_job_page__while_running__a_progress_bar_with_its_count_that_reloads_itself(winery_browser, custodian):
    browser, address = winery_browser
    state = browser.app.state
    doc = lots.LotDescription.from_mapping(v2_document(custodian, 10_000)).metadata_document()
    digest = "0x" + lots.metadata_hash(doc).hex()
    state.tag_vault.reserve(state.chain.chain_id, address, digest)
    with state.db.transaction() as tx:  # a job another instance is running, at its keys step
        tx.execute("INSERT INTO issuer_jobs (job_id, chain_id, issuer, state, step, done, total, bottle_count, "
                   "metadata_hash, document, from_block, created_at, updated_at) VALUES (?, ?, ?, 'running', 'keys', "
                   "4000, 10000, 10000, ?, ?, 0, ?, ?)", ("running-job-0000000", state.chain.chain_id, address,
                                                         digest, json.dumps(doc), time.time(), time.time()))

    page = browser.get("/console/issuer/jobs/running-job-0000000")
    chinese = browser.get("/console/issuer/jobs/running-job-0000000?lang=zh-Hans-CN")

    assert page.status_code == 200 and '<meta http-equiv="refresh" content="2">' in page.text
    assert "Making tag keys: 4,000 of 10,000" in words(page) and "Step 1 of 4" in words(page)
    assert '<progress aria-labelledby="job-words" max="10000" value="4000">' in page.text
    assert "正在生成标签密钥" in chinese.text
    home = browser.get("/console/issuer")
    assert "A lot is being issued now" in words(home) and 'href="/console/issuer/jobs/running-job-0000000"' in home.text
    other = preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode()))
    refused = issue(browser, other)
    assert refused.status_code == 409 and "already issuing a lot" in words(refused)
    assert 'href="/console/issuer/jobs/running-job-0000000"' in refused.text


def test_job_page__an_unfunded_account__failed_in_words_nothing_sent(make_browser, cert, admin, custodian, tmp_path,
                                                                    w3):
    browser = make_browser(documents_dir=tmp_path)
    signed_up(browser)
    address = address_of(browser)
    cert.grant_issuer(address, "Domaine Sans Le Sou", sender=admin)
    started = issue(browser, preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode())))

    page = finished(browser, started.headers["location"])

    assert "The lot was not issued" in words(page) and "too little ETH" in words(page)
    assert w3.eth.get_transaction_count(address) == 0


def test_job_page__another_accounts_job__404(winery_browser, make_browser, cert, admin, custodian):
    browser, _ = winery_browser
    started = issue(browser, preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode())))
    finished(browser, started.headers["location"])
    rival = make_browser()
    signed_up(rival)
    cert.grant_issuer(address_of(rival), "Domaine Curieux", sender=admin)

    page = rival.get(started.headers["location"])
    malformed = rival.get("/console/issuer/jobs/..%2F..")

    assert page.status_code == 404 and "no such issuance" in words(page) and "Your lot is issued" not in words(page)
    assert malformed.status_code == 404


def test_dashboard__keys_once__scans_chart__flag_and_clear(winery_browser, custodian, cert, w3):
    browser, _ = winery_browser
    lot_id = issued_lot(browser, preview(browser, upload=("lot.json", json.dumps(v2_document(custodian)).encode())))
    lot_path = f"/console/issuer/lots/{lot_id}"
    token = lots.token_id(lot_id, 1)
    for n in range(3):
        browser.app.state.scans.record(token, Client(network_prefix(f"10.1.{n}.1"), BROWSER), redeemed=False,
                                       flagged=False)
    csrf = CSRF.search(browser.get(lot_path).text).group(1)

    first = browser.post(f"{lot_path}/bottles", data={"csrf": csrf}, headers=SAME_ORIGIN)
    second = browser.post(f"{lot_path}/bottles", data={"csrf": csrf}, headers=SAME_ORIGIN)

    keys = [row["tag_private_key"] for row in csv.DictReader(io.StringIO(first.text))]
    assert first.headers["x-tag-keys"] == "included" and len(keys) == 3 and all(keys)
    assert second.headers["x-tag-keys"] == "withheld"
    page = browser.get(lot_path)
    assert "without keys" in words(page) and "Bottle 1 was checked from 3 different places" in words(page)
    flagged = browser.post(f"{lot_path}/flags", headers=SAME_ORIGIN,
                           data={"csrf": csrf, "serial": "1", "reason": "stolen", "action": "flag"})
    assert flagged.status_code == 303 and cert.locked(token)
    cleared = browser.post(f"{lot_path}/flags", data={"csrf": csrf, "serial": "1", "action": "clear"},
                           headers=SAME_ORIGIN)
    assert cleared.status_code == 303 and not cert.locked(token)


def test_dashboard__another_issuers_lot__404_and_its_flags_refused(winery_browser, issue_v2, cert):
    browser, _ = winery_browser
    lot = issue_v2(2)
    csrf = CSRF.search(browser.get("/console/issuer").text).group(1)

    page = browser.get(f"/console/issuer/lots/{lot.lot_id}")
    attempt = browser.post(f"/console/issuer/lots/{lot.lot_id}/flags",
                           data={"csrf": csrf, "serial": "1", "reason": "mine", "action": "flag"}, headers=SAME_ORIGIN)

    assert page.status_code == 404 and "not one of yours" in words(page)
    assert attempt.status_code == 404 and not cert.locked(lots.token_id(lot.lot_id, 1))


# ------------------------------------------------------------------ the journey in Chromium


@pytest.fixture
def served(api_settings, tmp_path):
    from browser import serve_settings

    with serve_settings(api_settings.model_copy(update={"documents_dir": tmp_path})) as served:
        yield served


def test_winery__creates_a_lot_from_a_csv_follows_its_issuance_and_downloads_labels_and_keys(
        served, cert, admin, custodian, w3, tmp_path):
    import pypdfium2
    import zxingcpp
    from browser import chromium, screenshot, tab
    from playwright.sync_api import expect

    served_app, base = served
    doc = v2_document(custodian, count=4)
    lot_file = tmp_path / "grand-vin.csv"
    lot_file.write_bytes(lot_csv(doc))
    identifier = f"winery-{Account.create().address[2:10].lower()}@example.org"
    with chromium() as browser, tab(browser, "phone", locale="en-GB") as visit:
        page = visit.page
        page.goto(f"{base}/app/signup")
        page.get_by_label("Account name or email").fill(identifier)
        page.get_by_label("Password", exact=True).fill("correct horse battery staple")
        page.get_by_label("The same password again").fill("correct horse battery staple")
        page.get_by_role("button", name="Create my account").click()
        address = served_app.state.users.address_of(identifier)
        cert.grant_issuer(address, "Domaine du Navigateur", sender=admin)
        admin.transfer(address, ETH)
        page.goto(f"{base}/console/issuer")
        expect(page.get_by_role("heading", name="Your lots")).to_be_visible()
        page.get_by_label("Lot file (CSV or JSON)").set_input_files(str(lot_file))
        screenshot(page, "console-issuer-home")
        page.get_by_role("button", name="Preview the lot").click()
        expect(page.get_by_role("heading", name="Check the lot before issuing it")).to_be_visible()
        expect(page.get_by_role("heading", name="The e-label buyers will read")).to_be_visible()
        assert w3.eth.get_transaction_count(address) == 0
        screenshot(page, "console-issuer-preview")
        page.get_by_role("button", name="Issue the lot").click()
        running = page.get_by_role("heading", name="Issuing your lot")
        done = page.get_by_role("heading", name="Your lot is issued")
        expect(running.or_(done)).to_be_visible()
        assert "/console/issuer/jobs/" in page.url
        if running.is_visible():
            expect(page.locator("progress")).to_be_visible()
            screenshot(page, "console-issuer-job-running")
        expect(done).to_be_visible(timeout=30_000)  # the page reloads itself every 2 s, no script
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        lot_id = int(re.search(r"as lot (\d+)", page.get_by_role("status").inner_text()).group(1))
        lot = cert.lot(lot_id)
        assert lot.issuer == address and lot.bottle_count == 4 and lot.custodian == custodian.address
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "console-issuer-job-done")
        with page.expect_download() as labels:
            page.get_by_role("link", name="Labels for bottles 1 to 4").click()
        pdf = Path(labels.value.path()).read_bytes()
        with page.expect_download() as bottles:
            page.get_by_role("button", name="Download the bottles file with the tag keys").click()
        rows = list(csv.DictReader(io.StringIO(Path(bottles.value.path()).read_text())))
        wait_indexed(w3, SimpleNamespace(app=served_app))
        page.get_by_role("link", name="Open the lot's page").click()
        expect(page.get_by_text("Where the bottles are")).to_be_visible()
        expect(page.get_by_text("The tag keys were already downloaded once")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "console-issuer-lot")
        page.set_viewport_size({"width": 1280, "height": 800})
        screenshot(page, "console-issuer-lot-desktop")
        assert not visit.errors and not visit.failed
    sheet = pypdfium2.PdfDocument(pdf)
    assert len(sheet) == 1
    found = zxingcpp.read_barcodes(sheet[0].render(scale=3).to_pil())
    links = sorted(code.text for code in found)
    assert len(links) == 4 and all(link.startswith(base + "/01/09520001000003/") for link in links)
    assert [Account.from_key(r["tag_private_key"]).address for r in rows] == [r["tag_address"] for r in rows]
