"""The merchant's console (/console/merchant, /console/merchant/statements) on the
test deployment: forms that issue and redeem from the merchant's own address,
the clearing statement as a table, charts, CSV and PDF; every refusal checked to
have sent nothing. Ends with the merchant's journey in Chromium at phone size."""

from __future__ import annotations

import csv
import io
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pypdfium2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import PASSWORD, SCALE, USD, bearer, sign_up, wait_indexed  # noqa: E402
from test_app_pages import COOKIE, SAME_ORIGIN, csrf_of, served_app, signed_up  # noqa: E402,F401

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ONCE = re.compile(r'name="once" value="([A-Za-z0-9_-]{16,64})"')
ETH = 10**18
CAP = 100 * USD * SCALE


def words(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def form_of(browser) -> dict[str, str]:
    page = browser.get("/console/merchant")
    assert page.status_code == 200, page.text
    return {"csrf": csrf_of(browser, "/console/merchant"), "once": ONCE.search(page.text).group(1)}


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address)


@pytest.fixture
def shop(make_browser, deployed_points, mint_stablecoin, admin):
    """A signed-in browser of a custodial account registered as the merchant "Corner Shop" (cap 100
    points), with ETH for its gas and 50 USD; and its address."""
    browser = make_browser()
    signed_up(browser)
    address = browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]
    deployed_points.register_merchant(address, "Corner Shop", CAP, sender=admin)
    admin.transfer(address, ETH)
    mint_stablecoin(address, 50 * USD)
    return browser, address


@pytest.fixture
def patron(shop):
    """A customer's account on the same app: (name, address)."""
    browser, _ = shop
    name = f"patron-{datetime.now(UTC).strftime('%H%M%S%f')}"
    return name, sign_up(browser, name)["address"]


def test_merchant_console__anonymous__to_the_login_page(make_browser):
    for path in ("/console/merchant", "/console/merchant/statements", "/console/merchant/statements.csv"):
        response = make_browser().get(path)
        assert response.status_code == 303 and response.headers["location"] == "/app/login"


def test_merchant_console__an_account_not_a_merchant__403_in_words(make_browser, w3):
    browser = make_browser()
    signed_up(browser)

    page = browser.get("/console/merchant")
    statement = browser.get("/console/merchant/statements.pdf")

    assert page.status_code == statement.status_code == 403
    assert "Your account does not hold this role" in words(page)


def test_merchant_console__figures_as_money_in_the_readers_language(shop, deployed_points):
    browser, _ = shop

    text = words(browser.get("/console/merchant"))
    french = words(browser.get("/console/merchant?lang=fr"))

    assert "Points for the customers of Corner Shop" in text
    assert "Money to issue points with 50.00 tUSD" in text and "Points you may still issue 100.00" in text
    assert "Argent pour émettre des points 50,00 tUSD" in french


def test_issue_form__to_an_account_name__points_on_chain_and_said_on_the_page(shop, patron, deployed_points):
    browser, address = shop
    name, customer = patron

    sent = browser.post("/console/merchant/issue", data={**form_of(browser), "customer": name, "amount": "12.50"},
                        headers=SAME_ORIGIN)

    assert sent.status_code == 303 and sent.headers["location"] == "/console/merchant?done=issued"
    assert deployed_points.balanceOf(customer) == 12_500_000 * SCALE
    page = words(browser.get(sent.headers["location"]))
    assert "The points were issued to your customer." in page and "Money to issue points with 37.50 tUSD" in page


def test_issue_form__sent_twice__one_issuance(shop, patron, deployed_points):
    browser, _ = shop
    form = {**form_of(browser), "customer": patron[1], "amount": "2"}

    first = browser.post("/console/merchant/issue", data=form, headers=SAME_ORIGIN)
    second = browser.post("/console/merchant/issue", data=form, headers=SAME_ORIGIN)

    assert first.status_code == second.status_code == 303
    assert deployed_points.balanceOf(patron[1]) == 2 * USD * SCALE


@pytest.mark.parametrize(("customer", "amount", "message"), [
    ("patron", "60", "You have only 50.00 tUSD."),
    ("patron", "0", "Write an amount above zero, like 12.50."),
    ("patron", "-3", "Write an amount above zero, like 12.50."),
    ("patron", "1.0000001", "Write an amount above zero, like 12.50."),
    ("nobody-by-that-name", "1", "No account has this name or number."),
])
def test_issue_form__bad_input__422_beside_the_field_nothing_sent(shop, patron, w3, deployed_points, customer,
                                                                  amount, message):
    browser, address = shop
    who = patron[0] if customer == "patron" else customer

    response = browser.post("/console/merchant/issue", data={**form_of(browser), "customer": who, "amount": amount},
                            headers=SAME_ORIGIN)

    assert response.status_code == 422 and message in words(response)
    assert f'value="{amount}"' in response.text  # the form kept what was typed
    assert nonce(w3, address) == 0 and deployed_points.balanceOf(patron[1]) == 0


@pytest.mark.parametrize("attack", ["no-token", "other-site", "no-once"])
def test_issue_form__forged__refused_nothing_sent(shop, patron, w3, attack):
    browser, address = shop
    form = {**form_of(browser), "customer": patron[1], "amount": "1"}
    headers = dict(SAME_ORIGIN)
    if attack == "no-token":
        form.pop("csrf")
    elif attack == "other-site":
        headers = {"Origin": "https://attacker.example"}
    else:
        form.pop("once")

    response = browser.post("/console/merchant/issue", data=form, headers=headers)

    assert response.status_code == (422 if attack == "no-once" else 403)
    assert nonce(w3, address) == 0


def test_redeem_form__more_than_held__422_then_what_is_held__paid_out(shop, deployed_points, deployed_stablecoin,
                                                                      issue_points, customer, w3):
    browser, address = shop
    issue_points(customer, 5 * USD)
    deployed_points.transfer(address, 4 * USD * SCALE, sender=customer)

    refused = browser.post("/console/merchant/redeem", data={**form_of(browser), "amount": "4.01"},
                           headers=SAME_ORIGIN)
    assert refused.status_code == 422 and "You hold only 4.00 points." in words(refused)
    assert nonce(w3, address) == 0

    done = browser.post("/console/merchant/redeem", data={**form_of(browser), "amount": "4"}, headers=SAME_ORIGIN)

    assert done.status_code == 303 and deployed_points.balanceOf(address) == 0
    assert deployed_stablecoin.balanceOf(address) == 54 * USD


def _today(w3) -> str:
    return datetime.fromtimestamp(w3.eth.get_block("latest")["timestamp"], UTC).date().isoformat()


def test_statement_page__table_charts_and_reconciled_in_words(shop, patron, w3):
    browser, address = shop
    browser.post("/console/merchant/issue", data={**form_of(browser), "customer": patron[1], "amount": "7.5"},
                 headers=SAME_ORIGIN)
    wait_indexed(w3, browser)
    day = _today(w3)

    page = browser.get("/console/merchant/statements", params={"from": day, "to": day})
    chinese = browser.get("/console/merchant/statements", params={"from": day, "to": day, "lang": "zh-CN"})

    text = words(page)
    assert page.status_code == 200 and "Reconciled: the totals equal the reserve's movement" in text
    assert re.search(rf"Corner Shop {address} 7.50 0.00 7.50 0.00 7.50", text)
    assert page.text.count("<svg") == 2 and "Paid into the reserve, by merchant" in text
    assert f'href="/console/merchant/statements.csv?from={day}&amp;to={day}"' in page.text
    assert "已核对" in chinese.text and "按商家统计的存入储备金" in chinese.text
    assert '<input type="hidden" name="lang" value="zh-CN">' in chinese.text  # the days' form keeps the language


@pytest.mark.parametrize(("first", "last", "message"), [
    ("2026-12-05", "2026-12-01", "The last day is before the first day."),
    ("2099-01-01", "2099-01-02", "No block was made on these days"),
    ("yesterday", "2026-12-01", "Write the days like 2026-12-01."),
])
def test_statement_page__bad_days__422_in_words(shop, first, last, message):
    browser, _ = shop

    page = browser.get("/console/merchant/statements", params={"from": first, "to": last})

    assert page.status_code == 422 and message in words(page)


# ------------------------------------------------------------ in a browser


def test_merchant_on_a_phone__issues_redeems_and_downloads_a_statement_that_reconciles(
        request, w3, deployed_points, deployed_stablecoin, mint_stablecoin, admin, issue_points):
    from types import SimpleNamespace

    from browser import chromium, screenshot, sign_up_in_browser, tab
    from playwright.sync_api import expect

    app, base = request.getfixturevalue("served_app")
    with chromium() as browser, tab(browser, "phone") as visit:
        page = visit.page
        # The customer, then the merchant, sign up in the browser.
        sign_up_in_browser(page, base, "ana.customer@example.org", PASSWORD)
        page.get_by_role("link", name="My account").click()
        customer = page.locator("code").inner_text()
        page.context.clear_cookies()
        sign_up_in_browser(page, base, "bistro.merchant@example.org", PASSWORD)
        page.get_by_role("link", name="My account").click()
        merchant = page.locator("code").inner_text()
        deployed_points.register_merchant(merchant, "Bistro", CAP, sender=admin)
        admin.transfer(merchant, ETH)
        mint_stablecoin(merchant, 40 * USD)

        page.get_by_role("link", name="Business console").click()
        page.get_by_role("link", name="Merchant").first.click()
        expect(page.get_by_role("heading", name="Points for the customers of Bistro")).to_be_visible()
        page.get_by_label("Customer (account name or account number)").fill("ana.customer@example.org")
        page.get_by_label("Amount in tUSD, like 12.50").fill("20.00")
        page.get_by_role("button", name="Issue the points").click()
        expect(page.get_by_text("The points were issued to your customer.")).to_be_visible()
        assert deployed_points.balanceOf(customer) == 20 * USD * SCALE

        issue_points(merchant, 8 * USD)  # a Wine Bar customer paid at the Bistro with 8 points
        page.reload()
        page.get_by_label("Points to redeem, like 12.50").fill("8")
        page.get_by_role("button", name="Redeem the points").click()
        expect(page.get_by_text("The points were redeemed: the money is in your balance.")).to_be_visible()
        assert deployed_stablecoin.balanceOf(merchant) == 28 * USD
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
        screenshot(page, "console-merchant-home")

        wait_indexed(w3, SimpleNamespace(app=app))
        day = _today(w3)
        page.get_by_label("First day of the statement (UTC)").fill(day)
        page.get_by_label("Last day of the statement (UTC)").fill(day)
        page.get_by_role("button", name="Show the statement").click()
        expect(page.get_by_text(re.compile("^Reconciled: the totals equal"))).to_be_visible()
        screenshot(page, "console-merchant-statement")
        page.set_viewport_size({"width": 1280, "height": 800})
        screenshot(page, "console-merchant-statement-desktop")

        with page.expect_download() as got:
            page.get_by_role("link", name="Download the statement (CSV)").click()
        rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
        with page.expect_download() as got:
            page.get_by_role("link", name="Download the statement (PDF)").click()
        pdf = pypdfium2.PdfDocument(Path(got.value.path()).read_bytes())
        pdf_text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))

    first_block, last_block = map(int, re.search(r"blocks (\d+) to (\d+)", pdf_text).groups())
    points = w3.eth.contract(deployed_points.address, abi=deployed_points.contract_type.model_dump(mode="json")["abi"])
    # Before the token's deploy block the reserve was 0; anvil late in the suite keeps
    # no state that old, so only a block the token existed in is asked.
    before = first_block - 1
    deployed_at = app.state.chain.deploy_block_of("PointsToken")
    assert deployed_at > 0
    opening = points.functions.reserve().call(block_identifier=before) if before >= deployed_at else 0
    movement = points.functions.reserve().call(block_identifier=last_block) - opening
    mine = next(row for row in rows if row["merchant"] == merchant)
    assert mine == {"merchant": merchant, "name": "Bistro", "points_issued": "20.00", "points_redeemed": "8.00",
                    "paid_in": "20.00", "paid_out": "8.00", "net": "12.00"}
    total = rows[-1]
    assert total["merchant"] == "TOTAL"
    assert sum(_units(row["net"]) for row in rows[:-1]) == _units(total["net"])
    assert _units(total["net"]) == movement  # the chain's reserve moved by the statement's net total
    assert "Wine Bar" in {row["name"] for row in rows} and _units(mine["net"]) == 12 * USD
    assert "Reconciled" in pdf_text and "Bistro" in pdf_text and total["net"] in pdf_text
    assert visit.errors == [] and visit.failed == []


def _units(money: str) -> int:
    sign = -1 if money.startswith("-") else 1
    whole, _, fraction = money.lstrip("-").partition(".")
    return sign * (int(whole) * USD + int(fraction.ljust(6, "0")))

