"""Loan extensions in the pages: the lender's "Offer more time" (/console/lender/loans/{id}/extension,
a preview in words before signing) and the borrower's loan page in the holder app (the offer in words,
Accept), on the test deployment (anvil); every refusal checked to have changed nothing on chain; and
the journey in Chromium at phone size."""

from __future__ import annotations

import html
import re
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import PASSWORD, USD, bearer, until, wait_for_status, wait_indexed  # noqa: E402
from test_app_pages import BASE, COOKIE, SAME_ORIGIN, csrf_of, served_app, signed_up  # noqa: E402,F401

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
DAY = 24 * 3600
PRINCIPAL = 1_000 * USD
REPAYMENT = 1_050 * USD
ONCE = re.compile(r'name="once" value="([A-Za-z0-9_-]{16,64})"')


def words(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.text)))


def day_end(day: date) -> int:
    return int(datetime.combine(day, time(23, 59, 59), tzinfo=UTC).timestamp())


def day_of(moment: int) -> date:
    return datetime.fromtimestamp(moment, tz=UTC).date()


@pytest.fixture
def lend(admin, mint_stablecoin, create_lot, cert, winery):
    """Builder: on the app behind ``http`` (a TestClient or an httpx client), the account of
    ``lender`` (bearer headers) lends 1,000 (repay 1,050 in 30 days) against a new bottle of the account
    of ``borrower``, accepted through the relayer; the loan id and the bottle."""

    def _lend(http, lender: dict[str, str], borrower: dict[str, str], wallet=None) -> tuple[int, int]:
        lender_address = http.get("/me", headers=lender).json()["address"]
        borrower_address = http.get("/me", headers=borrower).json()["address"]
        admin.transfer(lender_address, ETH)
        mint_stablecoin(lender_address, PRINCIPAL)
        assert http.post("/me/lending-allowance", json={"amount": str(PRINCIPAL)}, headers=lender).status_code == 200
        lot = create_lot(1)
        cert.transferFrom(winery, borrower_address, lot.token(1), sender=winery)
        expiry = http.get(f"/collateral/{lot.token(1)}").json()["block_timestamp"] + DAY
        posted = http.post("/me/offers", headers=lender, json={
            "lot_id": lot.lot_id, "token_id": lot.token(1), "principal": PRINCIPAL, "repayment": REPAYMENT,
            "duration": 30 * DAY, "grace_period": 7 * DAY, "expiry": expiry}).json()
        if wallet is None:  # the service signs the acceptance with the custodial borrower's key
            accepted = http.post("/me/relay/loan-acceptances", headers={**borrower, "Idempotency-Key": "take"},
                                 json={"offer": posted["offer"], "lender_signature": posted["signature"],
                                       "token_id": lot.token(1)})
        else:  # the wallet signs it
            deadline = int(posted["offer"]["expiry"])
            typed = http.get("/relay/typed-data/loan-acceptance", params={
                "offer_hash": posted["offer_hash"], "token_id": lot.token(1), "borrower": borrower_address,
                "deadline": deadline}).json()
            signature = wallet.sign_message(encode_typed_data(full_message=typed)).signature.hex()
            accepted = http.post("/relay/loan-acceptances", headers=borrower, json={
                "offer": posted["offer"], "lender_signature": posted["signature"], "token_id": lot.token(1),
                "borrower": borrower_address, "deadline": deadline, "borrower_signature": "0x" + signature})
        assert accepted.status_code == 202, accepted.text
        wait_for_status(http, accepted.json()["request_id"], "confirmed")
        return int(http.get(f"/collateral/{lot.token(1)}").json()["loan"]["loan_id"]), lot.token(1)

    return _lend


@pytest.fixture
def parties(make_browser, lend):
    """The lender's and the borrower's signed-in browsers on one app, and their loan: (lender, borrower,
    loan_id, token_id)."""
    lender = make_browser()
    signed_up(lender)
    borrower = TestClient(lender.app, base_url=BASE, follow_redirects=False)
    signed_up(borrower)
    loan_id, token_id = lend(lender, bearer(lender.cookies[COOKIE]), bearer(borrower.cookies[COOKIE]))
    return lender, borrower, loan_id, token_id


def chain_terms(browser, loan_id: int) -> tuple[int, int]:
    loan = browser.get(f"/loans/{loan_id}").json()["loan"]
    return loan["due_at"], int(loan["repayment"])


def more_time_form(browser, loan_id: int, **fields: str) -> dict[str, str]:
    due_at, _ = chain_terms(browser, loan_id)
    now = browser.get(f"/loans/{loan_id}").json()["block_timestamp"]
    return {"csrf": csrf_of(browser, f"/console/lender/loans/{loan_id}/extension"), "step": "preview",
            "due": (day_of(due_at) + timedelta(days=30)).isoformat(), "terms": "amount", "repayment": "1080",
            "rate": "", "expiry": (day_of(now) + timedelta(days=7)).isoformat(), **fields}


def test_more_time__anonymous__sent_to_the_login_page(make_browser):
    browser = make_browser()

    answer = browser.get("/console/lender/loans/1/extension")

    assert (answer.status_code, answer.headers["location"]) == (303, "/app/login")


def test_more_time_form__preview_in_words_then_signed__the_borrower_sees_it_and_accepts(parties):
    lender, borrower, loan_id, token_id = parties
    due_at, _ = chain_terms(lender, loan_id)
    form = more_time_form(lender, loan_id)
    new_due = day_end(date.fromisoformat(form["due"]))

    preview = lender.post(f"/console/lender/loans/{loan_id}/extension", data=form, headers=SAME_ORIGIN)
    stored_before_confirm = borrower.get(f"/me/loans/{loan_id}/extensions", headers=bearer(borrower.cookies[COOKIE]))
    confirm = {**form, "step": "confirm"}
    signed = lender.post(f"/console/lender/loans/{loan_id}/extension", data=confirm, headers=SAME_ORIGIN)
    twice = lender.post(f"/console/lender/loans/{loan_id}/extension", data=confirm, headers=SAME_ORIGIN)

    assert preview.status_code == 200
    assert re.search(r"You offer to move the due date from \w+ \d+, \d{4} to \w+ \d+, \d{4}\. The borrower would "
                     r"then repay 1,080 \S+ instead of 1,050 \S+\.", words(preview)), words(preview)
    assert stored_before_confirm.json()["extensions"] == []
    assert signed.status_code == twice.status_code == 303
    assert "Your offer of more time is signed." in words(lender.get(signed.headers["location"]))
    seen = borrower.get(f"/me/loans/{loan_id}/extensions", headers=bearer(borrower.cookies[COOKIE])).json()
    assert [(p["n"], p["state"], p["due_at"], p["repayment"]) for p in seen["extensions"]] == [
        (1, "pending", new_due, str(1_080 * USD))]
    page = borrower.get(f"/app/bottles/{token_id}/borrow")
    assert "Your lender offers to move the due date from" in words(page) and "instead of 1,050" in words(page)

    accepted = borrower.post(f"/app/bottles/{token_id}/extensions/1/accept", headers=SAME_ORIGIN, data={
        "csrf": csrf_of(borrower, f"/app/bottles/{token_id}/borrow"), "once": ONCE.search(page.text).group(1)})

    assert accepted.status_code == 303 and accepted.headers["location"].endswith("done=extended")
    until(lambda: chain_terms(borrower, loan_id) == (new_due, 1_080 * USD), what="the new terms on chain")
    assert new_due > due_at


def test_more_time_form__bad_answers__422_beside_each_field_nothing_kept(parties):
    lender, borrower, loan_id, _ = parties
    due_at, _ = chain_terms(lender, loan_id)
    form = more_time_form(lender, loan_id, due=(day_of(due_at) - timedelta(days=1)).isoformat(), repayment="1049.99",
                          expiry="2001-01-01", step="confirm")

    answer = lender.post(f"/console/lender/loans/{loan_id}/extension", data=form, headers=SAME_ORIGIN)

    assert answer.status_code == 422
    for field in ("due", "repayment", "expiry"):
        assert f'id="{field}-error"' in answer.text, field
    assert borrower.get(f"/me/loans/{loan_id}/extensions",
                        headers=bearer(borrower.cookies[COOKIE])).json()["extensions"] == []


def test_more_time__another_lenders_loan__404_in_words_nothing_kept(parties, make_browser):
    lender, borrower, loan_id, _ = parties
    stranger = make_browser()
    signed_up(stranger)
    form = more_time_form(lender, loan_id)
    form["csrf"] = csrf_of(stranger, "/console/lender")

    page = stranger.get(f"/console/lender/loans/{loan_id}/extension")
    posted = stranger.post(f"/console/lender/loans/{loan_id}/extension", data={**form, "step": "confirm"},
                           headers=SAME_ORIGIN)

    assert page.status_code == posted.status_code == 404 and "Not one of your loans" in words(page)
    assert borrower.get(f"/me/loans/{loan_id}/extensions",
                        headers=bearer(borrower.cookies[COOKIE])).json()["extensions"] == []


def test_more_time__withdrawn_in_the_console__gone_from_the_borrowers_page_and_twice_lands_the_same(parties):
    lender, borrower, loan_id, token_id = parties
    page = f"/console/lender/loans/{loan_id}/extension"
    assert lender.post(page, data=more_time_form(lender, loan_id, step="confirm"), headers=SAME_ORIGIN).status_code \
        == 303
    assert "Your lender offers more time" in words(borrower.get(f"/app/bottles/{token_id}/borrow"))
    csrf = csrf_of(lender, page)

    first = lender.post(f"{page}/1/withdraw", data={"csrf": csrf}, headers=SAME_ORIGIN)
    second = lender.post(f"{page}/1/withdraw", data={"csrf": csrf}, headers=SAME_ORIGIN)
    by_borrower = borrower.post(f"{page}/1/withdraw", headers=SAME_ORIGIN, data={
        "csrf": csrf_of(borrower, f"/app/bottles/{token_id}/borrow")})

    assert first.status_code == second.status_code == 303 and first.headers["location"].endswith("done=withdrawn")
    assert by_borrower.status_code == 404
    assert "Your lender offers more time" not in words(borrower.get(f"/app/bottles/{token_id}/borrow"))
    assert "Withdrawn." in words(lender.get(page))


def test_borrow_page__offer_replaced_after_the_borrower_looked__refused_in_words_chain_unchanged(parties):
    lender, borrower, loan_id, token_id = parties
    terms = chain_terms(lender, loan_id)
    first = more_time_form(lender, loan_id, step="confirm")
    assert lender.post(f"/console/lender/loans/{loan_id}/extension", data=first, headers=SAME_ORIGIN).status_code \
        == 303
    page = borrower.get(f"/app/bottles/{token_id}/borrow")  # the borrower reads 1,080
    assert "you would then repay 1,080" in words(page)
    second = more_time_form(lender, loan_id, step="confirm", repayment="1200")
    assert lender.post(f"/console/lender/loans/{loan_id}/extension", data=second, headers=SAME_ORIGIN).status_code \
        == 303

    answer = borrower.post(f"/app/bottles/{token_id}/extensions/1/accept", headers=SAME_ORIGIN, data={
        "csrf": csrf_of(borrower, f"/app/bottles/{token_id}/borrow"), "once": ONCE.search(page.text).group(1)})

    assert answer.status_code == 409 and "Your lender withdrew or changed this offer" in words(answer)
    assert "you would then repay 1,200" in words(answer)
    assert chain_terms(lender, loan_id) == terms


def test_borrow_page__wallet_borrower__signs_in_the_wallet_and_the_chain_moves(make_browser, lend):
    lender = make_browser()
    signed_up(lender)
    wallet = Account.create()
    borrower = TestClient(lender.app, base_url=BASE, follow_redirects=False)
    message = borrower.post("/auth/wallet/challenge", json={"address": wallet.address}).json()["message"]
    signed_in = borrower.post("/app/wallet/login", headers=SAME_ORIGIN, data={
        "message": message, "signature": "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex()})
    assert signed_in.status_code == 303, signed_in.text
    loan_id, token_id = lend(lender, bearer(lender.cookies[COOKIE]), bearer(borrower.cookies[COOKIE]), wallet)
    lender.post(f"/console/lender/loans/{loan_id}/extension", data=more_time_form(lender, loan_id, step="confirm"),
                headers=SAME_ORIGIN)
    page = borrower.get(f"/app/bottles/{token_id}/borrow")
    assert "Accept more time with my wallet" in words(page) and 'src="/static/wallet.js"' in page.text
    typed_url = html.unescape(re.search(r'data-typed="([^"]+)"', page.text).group(1))
    typed = borrower.get(typed_url).json()
    assert typed["primaryType"] == "LoanExtension" and int(typed["message"]["repayment"]) == 1_080 * USD
    fields = {"csrf": csrf_of(borrower, f"/app/bottles/{token_id}/borrow"), "once": ONCE.search(page.text).group(1),
              "nonce": "undefined"}  # what wallet.js posts for a message without a nonce
    terms = chain_terms(lender, loan_id)

    unsigned = borrower.post(f"/app/bottles/{token_id}/extensions/1/accept", headers=SAME_ORIGIN,
                             data={**fields, "signature": ""})
    forged = borrower.post(f"/app/bottles/{token_id}/extensions/1/accept", headers=SAME_ORIGIN, data={
        **fields, "signature": "0x" + Account.create().sign_message(
            encode_typed_data(full_message=typed)).signature.hex()})
    assert unsigned.status_code == forged.status_code == 422
    assert "The wallet's signature did not arrive" in words(unsigned)
    assert "The wallet's signature was refused now" in words(forged)
    assert chain_terms(lender, loan_id) == terms
    signed = borrower.post(f"/app/bottles/{token_id}/extensions/1/accept", headers=SAME_ORIGIN, data={
        **fields, "signature": "0x" + wallet.sign_message(encode_typed_data(full_message=typed)).signature.hex()})

    assert signed.status_code == 303 and signed.headers["location"].endswith("done=extended"), signed.text
    until(lambda: chain_terms(lender, loan_id) == (int(typed["message"]["dueAt"]), 1_080 * USD),
          what="the new terms on chain")


def test_more_time_on_a_phone__lender_offers_in_the_console_borrower_accepts_in_the_app(
        request, w3, lend, deployed_stablecoin):
    from types import SimpleNamespace

    import httpx
    from browser import chromium, screenshot, tab
    from playwright.sync_api import expect

    app, base = request.getfixturevalue("served_app")
    with httpx.Client(base_url=base, timeout=30) as http:
        accounts = [http.post("/auth/signup", json={"identifier": name, "password": PASSWORD}).json()
                    for name in ("cave.delai@example.org", "mei.yanqi@example.org")]
        loan_id, token_id = lend(http, bearer(accounts[0]["token"]), bearer(accounts[1]["token"]))
        due_at, _ = chain_terms(http, loan_id)
    wait_indexed(w3, SimpleNamespace(app=app))
    new_day = day_of(due_at) + timedelta(days=61)

    def log_in(page, identifier: str) -> None:
        page.goto(f"{base}/app/login")
        page.get_by_label("Account name or email").fill(identifier)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

    with chromium() as browser, tab(browser, "phone") as visit:
        page = visit.page
        log_in(page, "cave.delai@example.org")
        page.goto(f"{base}/console/lender")
        page.get_by_role("link", name="Offer more time").click()
        page.get_by_label("New due date").fill(new_day.isoformat())
        page.get_by_label("A new amount").check()
        page.get_by_label(re.compile(r"^New amount to repay")).fill("1080")
        screenshot(page, "loan-extension-form")
        page.get_by_role("button", name="Preview the offer").click()
        expect(page.get_by_text(re.compile(r"^You offer to move the due date from .+ to .+\. The borrower would "
                                           r"then repay 1,080 .+ instead of 1,050"))).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "loan-extension-preview")
        page.get_by_role("button", name="Sign and offer more time").click()
        expect(page.get_by_text(re.compile("^Your offer of more time is signed"))).to_be_visible()
        expect(page.get_by_role("button", name="Withdraw this offer")).to_be_visible()
        assert not visit.errors and not visit.failed

        with tab(browser, "phone") as holder_visit:
            borrower = holder_visit.page
            log_in(borrower, "mei.yanqi@example.org")
            borrower.goto(f"{base}/app/bottles/{token_id}/borrow")
            expect(borrower.get_by_text(re.compile(r"^Your lender offers to move the due date from .+; you would "
                                                   r"then repay 1,080 .+ instead of 1,050"))).to_be_visible()
            assert borrower.evaluate("document.documentElement.scrollWidth") <= 390
            screenshot(borrower, "loan-extension-offer")
            borrower.get_by_role("button", name="Accept more time").click()
            expect(borrower.get_by_text(re.compile("^You accepted more time"))).to_be_visible()
            with httpx.Client(base_url=base, timeout=30) as http:
                until(lambda: chain_terms(http, loan_id) == (day_end(new_day), 1_080 * USD),
                      what="the new due date and repayment on chain")
            borrower.reload()
            expect(borrower.get_by_role("button", name=re.compile(r"^Repay 1,080 "))).to_be_visible()
            assert borrower.get_by_text("Your lender offers more time").count() == 0
            screenshot(borrower, "loan-extension-accepted")
            assert not holder_visit.errors and not holder_visit.failed
    assert deployed_stablecoin.balanceOf(accounts[1]["address"]) == PRINCIPAL
