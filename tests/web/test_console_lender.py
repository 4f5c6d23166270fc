"""The lender's console (/console/lender) on the test deployment (anvil) with the session's
index: the stablecoin allowed, offers signed and posted from a form, cancelled, a loan's
collateral in words, the bottle taken after the due date, the signed record downloaded;
every refusal checked to have changed nothing on chain; and the journey in Chromium."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import PASSWORD, USD, bearer, until, wait_indexed  # noqa: E402
from test_app_pages import COOKIE, SAME_ORIGIN, csrf_of, served_app, signed_up  # noqa: E402,F401

from amphora import eip712  # noqa: E402
from api.lending import recover_snapshot_signer  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
DAY = 24 * 3600
PRINCIPAL = 1_000 * USD
NONCE = re.compile(r'name="nonce" value="([0-9]+)"')
HOME = "/console/lender"


def words(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.text)))


@pytest.fixture(scope="session")
def deployed_lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def lender_browser(make_browser, admin, mint_stablecoin):
    """A signed-in browser of a new account with gas and 5,000 of the stablecoin, and its address."""
    browser = make_browser()
    signed_up(browser)
    address = browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]
    admin.transfer(address, ETH)
    mint_stablecoin(address, 5 * PRINCIPAL)
    return browser, address


def allow(browser, amount: str = "5000"):
    return browser.post(f"{HOME}/allowance", data={"csrf": csrf_of(browser, HOME), "amount": amount},
                        headers=SAME_ORIGIN)


def offer_form(browser, **fields: str) -> dict[str, str]:
    page = browser.get(f"{HOME}/offers/new")
    assert page.status_code == 200, page.text
    return {"csrf": csrf_of(browser, HOME), "nonce": NONCE.search(page.text).group(1), "lot": "", "bottle": "",
            "amount": "1000", "terms": "rate", "rate": "12", "repayment": "", "days": "30", "grace": "7",
            "valid": "7", "ltv": "", **fields}


def my_offers(browser) -> list[dict]:
    return browser.get("/me/offers", headers=bearer(browser.cookies[COOKIE])).json()["offers"]


def test_lender_console__anonymous__sent_to_the_login_page(make_browser):
    browser = make_browser()

    answers = [browser.get(HOME), browser.get(f"{HOME}/offers/new"), browser.get(f"{HOME}/loans/1/snapshot.json")]

    assert [(a.status_code, a.headers["location"]) for a in answers] == [(303, "/app/login")] * 3


def test_lender_console__money_in_words_in_three_languages(lender_browser):
    browser, _ = lender_browser

    english, chinese, french = (browser.get(f"{HOME}?lang={lang}") for lang in ("en", "zh-CN", "fr"))

    assert english.status_code == 200 and english.headers["cache-control"] == "no-store"
    assert "5,000" in words(english) and "The lending contract may take up to 0" in words(english)
    assert "No loans yet" in words(english) and 'href="/console/lender/offers/new?lang=en"' in english.text
    assert "借贷" in chinese.text and "Prêts" in french.text


def test_offer_form__allowed_then_a_yearly_rate__signed_and_on_the_board_once(
        lender_browser, create_lot, deployed_stablecoin, deployed_lending):
    browser, address = lender_browser
    lot = create_lot(2)
    assert allow(browser).status_code == 303
    assert deployed_stablecoin.allowance(address, deployed_lending) == 5 * PRINCIPAL
    form = offer_form(browser, lot=str(lot.lot_id), bottle="2", rate="12,5", days="365")

    first = browser.post(f"{HOME}/offers", data=form, headers=SAME_ORIGIN)
    second = browser.post(f"{HOME}/offers", data=form, headers=SAME_ORIGIN)  # a double tap: one offer

    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == f"{HOME}?done=offered"
    offers = my_offers(browser)
    assert len(offers) == 1 and int(offers[0]["posted"]["offer"]["repayment"]) == 1_125 * USD
    assert int(offers[0]["posted"]["offer"]["token_id"]) == lot.token(2)
    listed = browser.get("/offers", params={"token_id": lot.token(2)}).json()["offers"]
    assert [o["offer_hash"] for o in listed] == [offers[0]["posted"]["offer_hash"]]
    page = words(browser.get(first.headers["location"]))
    assert "Your offer is signed and on the board" in page and "Bottle 2 of lot" in page
    assert "1,125 " in page and "Days from acceptance to the due date 365" in page


def test_offer_form__bad_answers__422_beside_each_field_nothing_posted(lender_browser, create_lot):
    browser, _ = lender_browser
    lot = create_lot(1)
    allow(browser)
    form = offer_form(browser, lot=str(lot.lot_id), bottle="9x", amount="-5", rate="abc", days="0", ltv="150")

    response = browser.post(f"{HOME}/offers", data=form, headers=SAME_ORIGIN)

    text = words(response)
    assert response.status_code == 422
    for expected in ("Type the number of a bottle of this lot", "Type an amount above zero",
                     "Type a rate from 0 to 1000", "Type a number of days from 1 to 3650",
                     "Type a share from 0 to 100"):
        assert expected in text, expected
    assert my_offers(browser) == []


def test_offer_form__a_lot_that_does_not_exist__422_beside_the_lot(lender_browser):
    browser, _ = lender_browser
    allow(browser)

    response = browser.post(f"{HOME}/offers", data=offer_form(browser, lot="987654321"), headers=SAME_ORIGIN)

    assert response.status_code == 422 and "Type the number of a lot that exists." in words(response)
    assert my_offers(browser) == []


def test_offer_form__not_allowed__409_says_to_allow_first(lender_browser, create_lot):
    browser, _ = lender_browser
    lot = create_lot(1)

    response = browser.post(f"{HOME}/offers", data=offer_form(browser, lot=str(lot.lot_id)), headers=SAME_ORIGIN)

    assert response.status_code == 409
    assert "You have not allowed the lending contract to take this amount" in words(response)
    assert my_offers(browser) == []


def test_forms__forged_from_elsewhere_or_without_the_token__403_nothing_sent(lender_browser, create_lot,
                                                                               deployed_stablecoin, deployed_lending):
    browser, address = lender_browser
    lot = create_lot(1)
    form = offer_form(browser, lot=str(lot.lot_id))

    forged = browser.post(f"{HOME}/allowance", data={"csrf": "0" * 64, "amount": "5000"}, headers=SAME_ORIGIN)
    elsewhere = browser.post(f"{HOME}/offers", data=form, headers={"Origin": "https://evil.example"})
    cancel = browser.post(f"{HOME}/offers/1/cancel", data={"amount": "1"}, headers=SAME_ORIGIN)

    assert forged.status_code == elsewhere.status_code == cancel.status_code == 403
    assert deployed_stablecoin.allowance(address, deployed_lending) == 0
    assert my_offers(browser) == [] and not deployed_lending.nonce_used(address, 1)


def test_cancel__an_offer__spent_on_chain_and_twice_lands_where_the_first_did(lender_browser, create_lot,
                                                                                deployed_lending):
    browser, address = lender_browser
    lot = create_lot(1)
    allow(browser)
    browser.post(f"{HOME}/offers", data=offer_form(browser, lot=str(lot.lot_id)), headers=SAME_ORIGIN)
    nonce = int(my_offers(browser)[0]["posted"]["offer"]["nonce"])
    page = browser.get(HOME)
    assert "Cancel this offer" in words(page) and f'/console/lender/offers/{nonce}/cancel' in page.text
    form = {"csrf": csrf_of(browser, HOME)}

    first = browser.post(f"{HOME}/offers/{nonce}/cancel", data=form, headers=SAME_ORIGIN)
    second = browser.post(f"{HOME}/offers/{nonce}/cancel", data=form, headers=SAME_ORIGIN)

    assert first.status_code == second.status_code == 303 and second.headers["location"] == f"{HOME}?done=cancelled"
    assert deployed_lending.nonce_used(address, nonce)
    assert "Taken by a borrower or cancelled" in words(browser.get(HOME))


def test_cancel__without_gas__refused_in_words(make_browser, deployed_lending):
    browser = make_browser()
    signed_up(browser)
    address = browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]

    response = browser.post(f"{HOME}/offers/4/cancel", data={"csrf": csrf_of(browser, HOME)}, headers=SAME_ORIGIN)

    assert response.status_code == 409 and f"Send some to {address}" in words(response)
    assert not deployed_lending.nonce_used(address, 4)


# --------------------------------------------------------------- the loans


@pytest.fixture
def lent(lender_browser, create_lot, cert, winery, holder, deployed_lending, w3):
    """The lender's offer on bottle 1 accepted by a holder on chain, indexed: (browser, address, loan_id, token)."""
    browser, address = lender_browser
    lot = create_lot(1)
    cert.transferFrom(winery, holder, lot.token(1), sender=winery)
    allow(browser)
    browser.post(f"{HOME}/offers", data=offer_form(browser, lot=str(lot.lot_id), bottle="1", terms="amount",
                                                   repayment="1050"), headers=SAME_ORIGIN)
    posted = my_offers(browser)[0]["posted"]
    offer = posted["offer"]
    message = eip712.loan_offer_message(address, offer["currency"], lot.lot_id, lot.token(1), PRINCIPAL,
                                        1_050 * USD, 30 * DAY, 7 * DAY, 0, int(offer["expiry"]),
                                        int(offer["nonce"]))
    deployed_lending.accept_offer(eip712.loan_offer_args(message), bytes.fromhex(posted["signature"][2:]),
                                  lot.token(1), sender=holder)
    wait_indexed(w3, browser)
    return browser, address, int(deployed_lending.loan_id_of(lot.token(1))), lot.token(1)


def test_loan__collateral_and_due_date_in_words_then_taken_after_the_grace_period(lent, cert, chain, w3):
    browser, address, loan_id, token_id = lent
    page = words(browser.get(HOME))
    for expected in ("Due on", "in 4 weeks", "Kept by", "Latest storage report", "Borrower's record",
                     "Loans taken: 1. Repaid on time: 0.", "Download the signed record"):
        assert expected in page, expected
    assert "Take the bottle" not in page
    early = browser.post(f"{HOME}/loans/{loan_id}/foreclose", data={"csrf": csrf_of(browser, HOME)},
                         headers=SAME_ORIGIN)
    assert early.status_code == 409 and "the grace period ends at" in words(early)

    chain.pending_timestamp += 33 * DAY
    chain.mine(1)
    assert "Overdue since" in words(browser.get(HOME))
    chain.pending_timestamp += 5 * DAY
    chain.mine(1)
    assert "Not repaid in time: you may take the bottle." in words(browser.get(HOME))
    form = {"csrf": csrf_of(browser, HOME)}
    first = browser.post(f"{HOME}/loans/{loan_id}/foreclose", data=form, headers=SAME_ORIGIN)
    second = browser.post(f"{HOME}/loans/{loan_id}/foreclose", data=form, headers=SAME_ORIGIN)

    assert first.status_code == second.status_code == 303
    assert cert.ownerOf(token_id) == address
    wait_indexed(w3, browser)
    assert "Not repaid: the bottle is yours" in words(browser.get(HOME))


def test_loan__signed_record_downloads_and_verifies_only_for_its_lender(lent, make_browser):
    browser, address, loan_id, token_id = lent

    response = browser.get(f"{HOME}/loans/{loan_id}/snapshot.json")

    assert response.status_code == 200 and response.headers["content-disposition"].startswith("attachment;")
    body = response.json()
    assert body["loan"]["lender"] == address and int(body["token_id"]) == token_id
    assert recover_snapshot_signer(body) == body["signer"]
    assert json.loads(response.text)["signature"] == body["signature"]
    stranger = make_browser()
    signed_up(stranger)
    refused = stranger.get(f"{HOME}/loans/{loan_id}/snapshot.json")
    assert refused.status_code == 404 and "Not one of your loans" in refused.text


def test_foreclose__another_lenders_loan__refused_in_words_nothing_sent(lent, make_browser, chain, cert, holder,
                                                                          admin):
    _, _, loan_id, token_id = lent
    thief = make_browser()
    signed_up(thief)
    admin.transfer(thief.get("/me", headers=bearer(thief.cookies[COOKIE])).json()["address"], ETH)
    chain.pending_timestamp += 38 * DAY
    chain.mine(1)

    response = thief.post(f"{HOME}/loans/{loan_id}/foreclose", data={"csrf": csrf_of(thief, HOME)},
                          headers=SAME_ORIGIN)

    assert response.status_code == 403 and "This loan is another lender's" in words(response)
    assert cert.ownerOf(token_id) == holder.address


# ------------------------------------------------------------ in a browser


def test_lender_on_a_phone__offers_a_loan_a_holder_accepts_then_takes_the_bottle_after_the_due_date(
        request, w3, cert, create_lot, winery, admin, mint_stablecoin, deployed_stablecoin, deployed_lending, chain):
    from types import SimpleNamespace

    from browser import chromium, screenshot, sign_up_in_browser, tab
    from playwright.sync_api import expect

    app, base = request.getfixturevalue("served_app")
    lot = create_lot(1)
    with chromium() as browser, tab(browser, "phone") as visit:
        page = visit.page
        sign_up_in_browser(page, base, "cave.credit@example.org", PASSWORD)
        page.get_by_role("link", name="My account").click()
        lender = page.locator("code").inner_text()
        admin.transfer(lender, ETH)
        mint_stablecoin(lender, 5 * PRINCIPAL)

        page.goto(f"{base}/console")
        page.get_by_role("link", name="Lender").first.click()
        expect(page.get_by_role("heading", name="Lending", exact=True)).to_be_visible()
        page.get_by_label(re.compile("^Most the lending contract may take")).fill("2000")
        page.get_by_role("button", name="Allow this amount").click()
        expect(page.get_by_text(re.compile("^The lending contract may now take up to"))).to_be_visible()
        page.get_by_role("link", name="Offer a loan").click()
        page.get_by_label("Lot number").fill(str(lot.lot_id))
        page.get_by_label(re.compile(r"^Amount you lend")).fill("1000")
        page.get_by_label("Yearly interest rate, in percent").fill("10")
        page.get_by_label("Days until the loan is due").fill("30")
        page.get_by_label(re.compile("^Extra days the borrower")).fill("7")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "console-lender-offer")
        page.get_by_role("button", name="Sign and post the offer").click()
        expect(page.get_by_text(re.compile("^Your offer is signed and on the board"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"^Any bottle of lot"))).to_be_visible()

        # The holder, in another tab of its own, borrows against bottle 1 through the holder app.
        with tab(browser, "phone") as holder_visit:
            borrower = holder_visit.page
            sign_up_in_browser(borrower, base, "lin.emprunt@example.org", PASSWORD)
            borrower.get_by_role("link", name="My account").click()
            holder = borrower.locator("code").inner_text()
            cert.transferFrom(winery, holder, lot.token(1), sender=winery)
            borrower.goto(f"{base}/app/bottles/{lot.token(1)}/borrow")
            borrower.get_by_role("button", name=re.compile(r"^Borrow 1,000 ")).click()
            expect(borrower.get_by_text("You accepted the loan.")).to_be_visible()
            until(lambda: deployed_stablecoin.balanceOf(holder) == PRINCIPAL, what="the principal paid")
            assert not holder_visit.errors and not holder_visit.failed
        wait_indexed(w3, SimpleNamespace(app=app))

        page.reload()
        expect(page.get_by_text(re.compile(r"Due on .+, in 4 weeks\."))).to_be_visible()
        expect(page.get_by_text("Kept by")).to_be_visible()
        assert page.get_by_role("button", name="Take the bottle").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "console-lender-loan")
        with tab(browser, "desktop") as wide_visit:  # the same page at desktop width
            wide = wide_visit.page
            wide.goto(f"{base}/app/login")
            wide.get_by_label("Account name or email").fill("cave.credit@example.org")
            wide.get_by_label("Password").fill(PASSWORD)
            wide.get_by_role("button", name="Log in").click()
            wide.goto(f"{base}/console/lender")
            expect(wide.get_by_text("Kept by")).to_be_visible()
            assert wide.evaluate("document.documentElement.scrollWidth") <= 1280
            screenshot(wide, "console-lender-desktop")

        chain.pending_timestamp += 37 * DAY + 60  # the due date and the grace period pass
        chain.mine(1)
        page.reload()
        expect(page.get_by_text("Not repaid in time: you may take the bottle.")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the signed record of this loan (JSON)").click()
        record = json.loads(Path(download.value.path()).read_text())
        assert record["loan"]["lender"] == lender and recover_snapshot_signer(record) == record["signer"]
        page.get_by_role("button", name="Take the bottle").click()
        expect(page.get_by_text("The bottle is yours now: the loan was not repaid in time.")).to_be_visible()
        screenshot(page, "console-lender-foreclosed")
        assert not visit.errors and not visit.failed
    assert cert.ownerOf(lot.token(1)) == lender
    assert deployed_stablecoin.balanceOf(holder) == PRINCIPAL
