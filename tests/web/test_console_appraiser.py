"""The appraiser's console (/console/appraiser) on the test deployment (anvil) with
the session's index: lots with their latest appraisal and its age, a value per bottle
typed as money and posted once even when the form is sent twice."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import node_rpc, wait_indexed  # noqa: E402
from test_app_pages import SAME_ORIGIN, served_app, signed_up  # noqa: E402, F401
from test_console_custodian import address_of, form, post, text  # noqa: E402

pytest_plugins = ["api_fixtures"]

ETH = 10**18


@pytest.fixture(scope="session")
def lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def appraiser_browser(make_browser, lending, admin):
    """A signed-in browser of a new account appointed appraiser on chain and funded; its address."""
    browser = make_browser()
    signed_up(browser)
    address = address_of(browser)
    lending.set_appraiser(address, True, sender=admin)
    admin.transfer(address, ETH)
    return browser, address


def test_appraise__value_as_money_sent_twice__posted_once_and_shown_with_its_age(appraiser_browser, lending, lot,
                                                                                  deployed_stablecoin, w3):
    browser, address = appraiser_browser
    wait_indexed(w3, browser)
    fields = form(browser, "/console/appraiser")

    sent = [post(browser, f"/console/appraiser/lots/{lot.lot_id}", **fields, value="1,234.50") for _ in range(2)]

    assert [s.status_code for s in sent] == [303, 303]
    assert sent[0].headers["location"] == f"/console/appraiser?done=posted&lot={lot.lot_id}"
    assert lending.appraisal(lot.lot_id).value_per_bottle == 123_450 * 10 ** (deployed_stablecoin.decimals() - 2)
    assert w3.eth.get_transaction_count(address) == 1
    node_rpc(w3, "evm_increaseTime", 7200)
    node_rpc(w3, "evm_mine")
    page = browser.get(sent[0].headers["location"])
    assert f"Appraisal of lot {lot.lot_id} posted" in text(page)
    assert "1,234.50" in text(page) and "2 hours" in text(page)


def test_appraise__in_french__a_decimal_comma_and_spaced_thousands(appraiser_browser, lending, lot,
                                                                   deployed_stablecoin, w3):
    browser, _ = appraiser_browser
    wait_indexed(w3, browser)

    sent = post(browser, f"/console/appraiser/lots/{lot.lot_id}?lang=fr", **form(browser, "/console/appraiser"),
                value="1 045,5")

    assert sent.status_code == 303
    assert lending.appraisal(lot.lot_id).value_per_bottle == 10_455 * 10 ** (deployed_stablecoin.decimals() - 1)


@pytest.mark.parametrize("value", ["0", "abc", "-5", "1.1234567", "45,5"])
def test_appraise__not_a_positive_amount__422_beside_the_field_nothing_sent(appraiser_browser, lot, w3, value):
    browser, address = appraiser_browser
    wait_indexed(w3, browser)

    refused = post(browser, f"/console/appraiser/lots/{lot.lot_id}", **form(browser, "/console/appraiser"),
                   value=value)

    assert refused.status_code == 422 and "Enter a positive amount with at most 6 decimals" in text(refused)
    assert f'id="value-{lot.lot_id}"' in refused.text and 'aria-invalid="true"' in refused.text
    assert w3.eth.get_transaction_count(address) == 0


def test_appraise__lot_never_issued__409_with_the_contracts_reason(appraiser_browser, lot, w3):
    browser, address = appraiser_browser
    wait_indexed(w3, browser)

    refused = post(browser, "/console/appraiser/lots/987654", **form(browser, "/console/appraiser"), value="10")

    assert refused.status_code == 409 and "lending: lot does not exist" in text(refused)
    assert w3.eth.get_transaction_count(address) == 0


def test_appraiser_console__a_holder_403__a_form_from_elsewhere_403(make_browser, appraiser_browser, lot, w3):
    holder = make_browser()
    signed_up(holder)
    browser, address = appraiser_browser
    fields = form(browser, "/console/appraiser")

    assert holder.get("/console/appraiser").status_code == 403
    foreign = browser.post(f"/console/appraiser/lots/{lot.lot_id}", data={**fields, "value": "10"},
                           headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and w3.eth.get_transaction_count(address) == 0
    assert SAME_ORIGIN["Origin"] != "https://evil.example"


def test_appraiser_console__in_chinese_and_french(appraiser_browser, lot, w3):
    browser, _ = appraiser_browser
    wait_indexed(w3, browser)

    zh = browser.get("/console/appraiser?lang=zh-CN")
    fr = browser.get("/console/appraiser", headers={"Accept-Language": "fr"})

    assert "批次估值" in zh.text and "尚未估值" in zh.text
    assert "Estimations des lots" in fr.text and re.search(r"Pas encore estim", fr.text)


# ------------------------------------------------------------ in a browser


def test_appraiser__on_a_phone__posts_a_value_and_sees_it_with_its_age(served_app, w3, lending, admin, lot,  # noqa: F811
                                                                        deployed_stablecoin):
    from types import SimpleNamespace

    from api_fixtures import PASSWORD
    from browser import sign_up_in_browser
    from playwright.sync_api import expect, sync_playwright
    from test_app_pages import SCREENSHOTS

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            page = context.new_page()
            sign_up_in_browser(page, base, "appraiser@example.org", PASSWORD)
            address = page.locator("code").inner_text()
            lending.set_appraiser(address, True, sender=admin)
            admin.transfer(address, ETH)
            wait_indexed(w3, SimpleNamespace(app=app))

            page.goto(f"{base}/console")
            page.get_by_role("link", name="Appraiser", exact=True).first.click()
            expect(page.get_by_text("Not appraised yet")).to_be_visible()
            page.get_by_label(f"New value per bottle of lot {lot.lot_id}").fill("86.40")
            page.get_by_role("button", name="Post appraisal").click()
            expect(page.get_by_text(f"Appraisal of lot {lot.lot_id} posted on the blockchain.")).to_be_visible()
            expect(page.get_by_role("cell", name=re.compile(r"86\.40"))).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "console-appraiser-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 800})
            page.screenshot(path=str(SCREENSHOTS / "console-appraiser-desktop.png"), full_page=True)
        finally:
            chromium.close()
    assert lending.appraisal(lot.lot_id).value_per_bottle == 8_640 * 10 ** (deployed_stablecoin.decimals() - 2)
