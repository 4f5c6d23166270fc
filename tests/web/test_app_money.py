"""The holder's money pages (/app/points, /app/bottles/{id}/borrow, /app/account/key)
on the test deployment (anvil) with the session's index: points sent, loans accepted
and repaid through the relayer, the key exported; every refusal checked to have
changed nothing on chain."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import PASSWORD, SCALE, USD, bearer, outbox, sign_up, until, wait_indexed  # noqa: E402
from test_app_pages import BASE, COOKIE, SAME_ORIGIN, csrf_of, served_app, signed_up  # noqa: E402,F401

from amphora import eip712  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ONCE = re.compile(r'name="once" value="([A-Za-z0-9_-]{16,64})"')
OFFER = re.compile(r'name="offer" value="(0x[0-9a-f]{64})"')
PRINCIPAL = 1_000 * USD
REPAYMENT = 1_050 * USD
DAY = 24 * 3600


def address_of(browser) -> str:
    return browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]


def form_of(browser, path: str) -> dict[str, str]:
    """The hidden fields of the page's first action form (CSRF token, one-time key, the offer)."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    fields = {"csrf": csrf_of(browser, path), "once": ONCE.search(page.text).group(1)}
    offer = OFFER.search(page.text)
    if offer:
        fields["offer"] = offer.group(1)
    return fields


def words(response) -> str:
    return re.sub(r"\s+", " ", response.text)


@pytest.fixture
def holder(make_browser):
    """A signed-in browser of a new account and its address."""
    browser = make_browser()
    signed_up(browser)
    return browser, address_of(browser)


# ------------------------------------------------------------------- points


@pytest.fixture
def with_points(holder, issue_points, w3):
    """The holder with 10 points from the merchant, indexed."""
    browser, address = holder
    issue_points(address, 10 * USD)
    wait_indexed(w3, browser)
    return browser, address


def test_points__balance_and_history_in_words(with_points):
    browser, _ = with_points

    page = browser.get("/app/points")

    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "10 points" in words(page)
    assert "10 points given to you by a shop" in words(page)


@pytest.mark.parametrize(("lang", "expected"), [("zh-CN", ["我的积分", "10 积分", "发送积分", "商店给您的 10 积分"]),
                                                ("fr", ["Mes points", "10 points", "Envoyer des points"])])
def test_points__in_chinese_and_french(with_points, lang, expected):
    browser, _ = with_points

    page = browser.get(f"/app/points?lang={lang}")

    assert page.status_code == 200 and page.headers["content-language"] == lang
    for text in expected:
        assert text in words(page), text


def test_points__send_to_an_account_name__moves_on_chain_and_shows_in_the_history(
        with_points, deployed_points, w3):
    browser, address = with_points
    friend = sign_up(browser)  # through the JSON API, on the same service
    name, friend_address = friend["identifier"], friend["address"]

    response = browser.post("/app/points/send", data={**form_of(browser, "/app/points"), "to": name.upper(),
                                                      "amount": "2.5"}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/app/points?done=sent"
    until(lambda: deployed_points.balanceOf(friend_address) == 25 * SCALE * USD // 10, what="points sent")
    assert deployed_points.balanceOf(address) == 75 * SCALE * USD // 10
    wait_indexed(w3, browser)
    assert f"Sent 2.5 points to {friend_address}" in words(browser.get("/app/points"))


def test_points__trying_names__shares_the_accounts_hourly_lookups_so_accounts_cannot_be_listed(
        with_points, w3, relayer):
    from web.app.recipients import LOOKUPS_PER_HOUR

    browser, _ = with_points
    before = outbox(w3, relayer)
    friend = sign_up(browser)["identifier"]

    answers = [browser.post("/app/points/send", data={**form_of(browser, "/app/points"), "to": f"guess-{i}",
                                                      "amount": "1"}, headers=SAME_ORIGIN).status_code
               for i in range(LOOKUPS_PER_HOUR)]
    blocked = browser.post("/app/points/send", data={**form_of(browser, "/app/points"), "to": friend,
                                                     "amount": "1"}, headers=SAME_ORIGIN)

    assert answers == [422] * LOOKUPS_PER_HOUR
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert outbox(w3, relayer) == before  # an existing name is not paid either


def test_points__form_sent_twice__one_payment(with_points, merchant, deployed_points):
    browser, address = with_points
    form = {**form_of(browser, "/app/points"), "to": merchant.address, "amount": "1"}

    first = browser.post("/app/points/send", data=form, headers=SAME_ORIGIN)
    second = browser.post("/app/points/send", data=form, headers=SAME_ORIGIN)

    assert first.status_code == second.status_code == 303
    until(lambda: deployed_points.balanceOf(address) < 10 * SCALE * USD, what="points sent")
    assert deployed_points.balanceOf(address) == 9 * SCALE * USD


@pytest.mark.parametrize(("to", "amount", "message"), [
    ("merchant", "10.000001", "You have only 10 points."),
    ("merchant", "-1", "Write a number of points above zero"),
    ("merchant", "1e3", "Write a number of points above zero"),
    ("merchant", "NaN", "Write a number of points above zero"),
    ("merchant", "0.0000000000000000001", "Write a number of points above zero"),
    ("nobody-by-that-name", "1", "There is no account with this name or number."),
    ("0x1234", "1", "There is no account with this name or number."),
    ("me", "1", "This is your own account."),
])
def test_points__bad_input__422_in_words_nothing_sent(with_points, merchant, w3, relayer, deployed_points,
                                                       to, amount, message):
    browser, address = with_points
    before = outbox(w3, relayer)
    recipient = {"merchant": merchant.address, "me": address}.get(to, to)

    response = browser.post("/app/points/send", data={**form_of(browser, "/app/points"), "to": recipient,
                                                      "amount": amount}, headers=SAME_ORIGIN)

    assert response.status_code == 422
    assert message in words(response)
    assert f'value="{amount}"' in response.text  # the form kept what was typed
    assert outbox(w3, relayer) == before and deployed_points.balanceOf(address) == 10 * SCALE * USD


@pytest.mark.parametrize("attack", ["no-token", "other-site", "no-once"])
def test_points__forged_form__refused_nothing_sent(with_points, merchant, w3, relayer, attack):
    browser, _ = with_points
    form = {**form_of(browser, "/app/points"), "to": merchant.address, "amount": "1"}
    headers = dict(SAME_ORIGIN)
    if attack == "no-token":
        form.pop("csrf")
    elif attack == "other-site":
        headers = {"Origin": "https://attacker.example"}
    else:
        form.pop("once")
    before = outbox(w3, relayer)

    response = browser.post("/app/points/send", data=form, headers=headers)

    assert response.status_code == (422 if attack == "no-once" else 403)
    assert outbox(w3, relayer) == before


# ---------------------------------------------------------------- borrowing


@pytest.fixture(scope="session")
def deployed_lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def pledgeable(holder, make_browser, create_lot, cert, winery, deployed_lending, deployed_stablecoin,
               mint_stablecoin, lender, chain, chain_id, w3):
    """The holder owns bottle 1 of a fresh lot; the lender, funded, posted an offer for it and one
    for bottle 2 (someone else's). (browser, address, lot)."""
    browser, address = holder
    lot = create_lot(2)
    cert.transferFrom(winery, address, lot.token(1), sender=winery)
    mint_stablecoin(lender, 10 * PRINCIPAL)
    deployed_stablecoin.approve(deployed_lending, 2**256 - 1, sender=lender)
    for nonce, serial in ((0, 1), (1, 2)):
        message = eip712.loan_offer_message(lender.address, deployed_stablecoin.address, lot.lot_id,
                                            lot.token(serial), PRINCIPAL, REPAYMENT, 30 * DAY, 7 * DAY, 0,
                                            chain.pending_timestamp + DAY, nonce)
        data = eip712.lending_typed_data("LoanOffer", message, chain_id, deployed_lending.address)
        names = {"lotId": "lot_id", "tokenId": "token_id", "gracePeriod": "grace_period",
                 "maxLtvBps": "max_ltv_bps"}
        posted = browser.post("/offers", json={"offer": {names.get(k, k): v for k, v in message.items()},
                                              "signature": "0x" + eip712.sign(data, lender.private_key).hex()})
        assert posted.status_code == 201, posted.text
    wait_indexed(w3, browser)
    return browser, address, lot


def test_borrow__offer_terms_in_words_accept_then_repay__bottle_pledged_then_unlocked(
        pledgeable, cert, deployed_stablecoin, deployed_lending, mint_stablecoin, w3, relayer):
    browser, address, lot = pledgeable
    token_id = lot.token(1)
    path = f"/app/bottles/{token_id}/borrow"
    assert f'href="{path}"' in browser.get(f"/app/bottles/{token_id}").text

    page = browser.get(path)
    text = words(page)
    for expected in ("You receive now", "1,000", "You repay", "1,050", "If you do not repay",
                     "the lender takes the bottle", "Your money: 0"):
        assert expected in text, expected
    form = form_of(browser, path)
    accepted = browser.post(path, data=form, headers=SAME_ORIGIN)
    again = browser.post(path, data=form, headers=SAME_ORIGIN)  # a double tap: one loan

    assert accepted.status_code == again.status_code == 303
    until(lambda: deployed_stablecoin.balanceOf(address) == PRINCIPAL, what="principal paid")
    assert cert.ownerOf(token_id) == address
    loan_page = words(browser.get(path))
    assert "Your loan" in loan_page and "Repay 1,050" in loan_page and "Your money: 1,000" in loan_page

    before = outbox(w3, relayer)
    short = browser.post(f"/app/bottles/{token_id}/repay", data=form_of(browser, path), headers=SAME_ORIGIN)
    assert short.status_code == 422
    assert "To repay you need 1,050" in words(short) and "you have 1,000" in words(short)
    assert outbox(w3, relayer) == before

    mint_stablecoin(address, 50 * USD)
    repay_form = form_of(browser, path)
    repaid = browser.post(f"/app/bottles/{token_id}/repay", data=repay_form, headers=SAME_ORIGIN)
    assert repaid.status_code == 303
    until(lambda: deployed_stablecoin.balanceOf(address) == 0, what="loan repaid")
    assert browser.get(f"/collateral/{token_id}").json()["certificate"]["state"] == "active"
    assert "You repaid the loan" in words(browser.get(repaid.headers["location"]))
    twice = browser.post(f"/app/bottles/{token_id}/repay", data={**repay_form, "once": "f" * 32},
                         headers=SAME_ORIGIN)  # sent again once repaid: lands where the first did
    assert twice.status_code == 303 and twice.headers["location"] == repaid.headers["location"]


def test_borrow__offer_for_another_bottle__409_in_words_nothing_relayed(pledgeable, w3, relayer):
    browser, _, lot = pledgeable
    other = browser.get("/offers", params={"token_id": lot.token(2)}).json()["offers"]
    other_hash = next(o["offer_hash"] for o in other if int(o["offer"]["token_id"]) == lot.token(2))
    path = f"/app/bottles/{lot.token(1)}/borrow"
    before = outbox(w3, relayer)

    response = browser.post(path, data={**form_of(browser, path), "offer": other_hash}, headers=SAME_ORIGIN)

    assert response.status_code == 409
    assert "This offer is not available for this bottle any more." in words(response)
    assert outbox(w3, relayer) == before


def test_borrow__someone_elses_bottle__404_on_the_page_and_the_form(pledgeable, make_browser, w3, relayer):
    _, _, lot = pledgeable
    thief = make_browser()
    signed_up(thief)
    path = f"/app/bottles/{lot.token(1)}/borrow"
    before = outbox(w3, relayer)

    page = thief.get(path)
    form = thief.post(path, data={"csrf": csrf_of(thief), "once": "0" * 32, "offer": "0x" + "1" * 64},
                      headers=SAME_ORIGIN)
    repay = thief.post(f"/app/bottles/{lot.token(1)}/repay", data={"csrf": csrf_of(thief), "once": "0" * 32},
                       headers=SAME_ORIGIN)

    assert page.status_code == form.status_code == repay.status_code == 404
    assert "This bottle is not in your cellar" in page.text and "1,050" not in page.text
    assert outbox(w3, relayer) == before


def test_repay__no_loan__409_in_words_nothing_relayed(pledgeable, w3, relayer):
    browser, _, lot = pledgeable
    path = f"/app/bottles/{lot.token(1)}/borrow"
    before = outbox(w3, relayer)

    response = browser.post(f"/app/bottles/{lot.token(1)}/repay", data=form_of(browser, path),
                            headers=SAME_ORIGIN)

    assert response.status_code == 409 and "This bottle has no loan to repay." in words(response)
    assert outbox(w3, relayer) == before


# --------------------------------------------------------------- key export


def test_key_export__wrong_password__403_in_words_no_key(holder):
    browser, _ = holder

    response = browser.post("/app/account/key", data={"csrf": csrf_of(browser), "password": "not my password"},
                            headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert "This is not your password." in response.text and "Your private key" not in response.text


def test_key_export__right_password__the_key_of_my_address_not_cached_and_in_no_log(holder, caplog):
    from eth_account import Account

    browser, address = holder
    assert "Leave with my bottles" in browser.get("/app/account").text
    warning = browser.get("/app/account/key")
    assert "whoever holds it owns your bottles" in words(warning)

    with caplog.at_level(logging.DEBUG):
        response = browser.post("/app/account/key", data={"csrf": csrf_of(browser), "password": PASSWORD},
                                headers=SAME_ORIGIN)

    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    key = re.search(r'<code class="key">(0x[0-9a-f]{64})</code>', response.text).group(1)
    assert Account.from_key(key).address == address
    assert caplog.records  # the export is logged for the audit trail...
    for record in caplog.records:  # ...and the key in none of it
        assert key not in record.getMessage() and key[2:] not in record.getMessage()


def test_key_export__without_the_form_token__403_no_key(holder):
    browser, _ = holder

    response = browser.post("/app/account/key", data={"password": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert "Your private key" not in response.text and not re.search(r"0x[0-9a-f]{64}", response.text)


@pytest.mark.parametrize("path", ["/app/points", "/app/account/key", f"/app/bottles/{1 << 32 | 1}/borrow"])
def test_money_pages__anonymous__sent_to_the_login_page(make_browser, path):
    response = make_browser().get(path)

    assert response.status_code == 303 and response.headers["location"] == "/app/login"


# ------------------------------------------------------------ in a browser


def test_holder_on_a_phone__borrows_against_a_bottle_repays_it_sends_points_and_takes_the_key(
        request, w3, cert, create_lot, winery, deployed_lending, deployed_stablecoin, deployed_points,
        mint_stablecoin, issue_points, lender, merchant, chain, chain_id):
    from types import SimpleNamespace

    import requests
    from browser import chromium, screenshot, sign_up_in_browser, tab
    from playwright.sync_api import expect

    app, base = request.getfixturevalue("served_app")
    lot = create_lot(2)
    with chromium() as browser, tab(browser, "phone") as visit:
        page = visit.page
        sign_up_in_browser(page, base, "lin.borrower@example.org", PASSWORD)
        page.get_by_role("link", name="My account").click()
        address = page.locator("code").inner_text()
        cert.transferFrom(winery, address, lot.token(1), sender=winery)
        issue_points(address, 10 * USD)
        mint_stablecoin(lender, PRINCIPAL)
        deployed_stablecoin.approve(deployed_lending, PRINCIPAL, sender=lender)
        message = eip712.loan_offer_message(lender.address, deployed_stablecoin.address, lot.lot_id, lot.token(1),
                                            PRINCIPAL, REPAYMENT, 30 * DAY, 7 * DAY, 0,
                                            chain.pending_timestamp + DAY, 0)
        signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain_id, deployed_lending.address),
                                lender.private_key)
        names = {"lotId": "lot_id", "tokenId": "token_id", "gracePeriod": "grace_period", "maxLtvBps": "max_ltv_bps"}
        posted = requests.post(f"{base}/offers", json={"offer": {names.get(k, k): v for k, v in message.items()},
                                                        "signature": "0x" + signature.hex()}, timeout=10)
        assert posted.status_code == 201, posted.text
        wait_indexed(w3, SimpleNamespace(app=app))

        page.goto(f"{base}/app/bottles/{lot.token(1)}")
        page.get_by_role("link", name="Borrow against it").click()
        expect(page.get_by_role("heading", name="Offers for this bottle")).to_be_visible()
        expect(page.get_by_text(re.compile(r"^After .+ the lender takes the bottle\.$"))).to_be_visible()
        screenshot(page, "app-money-offers")
        page.get_by_role("button", name=re.compile(r"^Borrow 1,000 ")).click()
        expect(page.get_by_text("You accepted the loan.")).to_be_visible()
        until(lambda: deployed_stablecoin.balanceOf(address) == PRINCIPAL, what="the principal paid")
        page.reload()
        expect(page.get_by_role("heading", name="Your loan")).to_be_visible()
        expect(page.get_by_text(re.compile(r"Your money: 1,000 "))).to_be_visible()
        screenshot(page, "app-money-loan")

        mint_stablecoin(address, 50 * USD)  # the interest, from elsewhere
        page.reload()
        page.get_by_role("button", name=re.compile(r"^Repay 1,050 ")).click()
        expect(page.get_by_text("You repaid the loan.")).to_be_visible()
        until(lambda: deployed_stablecoin.balanceOf(address) == 0, what="the loan repaid")
        page.get_by_role("link", name="Back to the bottle's page").click()
        expect(page.get_by_text("In the cellar, yours")).to_be_visible()
        screenshot(page, "app-money-unlocked")

        page.get_by_role("link", name="My account").click()
        page.get_by_role("link", name="My points").click()
        expect(page.get_by_text("10 points", exact=True)).to_be_visible()
        page.get_by_label("To (account name or account number)").fill(merchant.address)
        page.get_by_label("How many points").fill("2.5")
        page.get_by_role("button", name="Send points").click()
        expect(page.get_by_text("Your points are on their way.")).to_be_visible()
        until(lambda: deployed_points.balanceOf(merchant) >= 25 * SCALE * USD // 10, what="the points sent")
        wait_indexed(w3, SimpleNamespace(app=app))
        page.reload()
        expect(page.get_by_text(f"Sent 2.5 points to {merchant.address}")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
        screenshot(page, "app-money-points")

        page.get_by_role("link", name="My account").click()
        page.get_by_role("link", name="Leave with my bottles").click()
        expect(page.get_by_text(re.compile("whoever holds it owns your bottles"))).to_be_visible()
        page.get_by_label("Your password, to be sure it is you").fill(PASSWORD)
        page.get_by_role("button", name="Show my private key").click()
        expect(page.get_by_role("heading", name="Your private key")).to_be_visible()
        assert re.fullmatch(r"0x[0-9a-f]{64}", page.locator("code.key").inner_text())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "app-money-key")
        assert not visit.errors and not visit.failed
    assert cert.ownerOf(lot.token(1)) == address
    assert deployed_points.balanceOf(address) == 75 * SCALE * USD // 10
