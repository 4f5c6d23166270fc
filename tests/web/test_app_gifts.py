"""The holder's gifts (/app): give a bottle as a gift (a link and QR code shown
once), take it back, accept a gift from its link (signing up on the way), on the
test deployment (anvil) through the relayer, with the session's index.

The clients are browsers without JavaScript posting URL-encoded forms; one app
serves every person of a test (one outbox for the relayer's key), and a person
is their session cookie. Every refusal is checked to have sent nothing."""

from __future__ import annotations

import io
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import httpx
import pytest
import zxingcpp
from eth_account import Account
from fastapi.testclient import TestClient
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import (  # noqa: E402
    PASSWORD,
    bearer,
    idempotency_key,
    node_rpc,
    outbox,
    sign_up,
    until,
    wait_indexed,
)

pytest_plugins = ["api_fixtures"]

BASE = "https://testserver"
SAME_ORIGIN = {"Origin": BASE}
COOKIE = "__Host-amphora_session"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
ONCE = re.compile(r'name="once" value="([0-9a-f]{64})"')
LINK = re.compile(r'<textarea id="link"[^>]*>([^<]+)</textarea>')
QR = re.compile(r'<img class="qr" src="data:image/png;base64,([^"]+)"')


@pytest.fixture
def make_app(make_browser):
    """Builder: a cookie-keeping client of a fresh app (settings ``overrides`` applied)."""
    return make_browser


@pytest.fixture
def app(make_app) -> TestClient:
    return make_app()


def person(app: TestClient) -> SimpleNamespace:
    """A new account (through the API); the app's cookie jar becomes theirs."""
    answer = sign_up(app)
    be(app, answer["token"])
    return SimpleNamespace(token=answer["token"], address=answer["address"], identifier=answer["identifier"])


def be(app: TestClient, token: str | None) -> None:
    """The browser's session is ``token``'s (None: signed out)."""
    app.cookies.clear()
    if token:
        app.cookies.set(COOKIE, token, domain="testserver.local")


def state(app: TestClient, token_id: int) -> dict:
    return app.get(f"/certificates/{token_id}").json()


@pytest.fixture
def giver(app, cert, create_lot, winery, w3):
    """A signed-in account holding bottle 2 of a fresh lot of 3: (person, lot, token id)."""
    me = person(app)
    lot = create_lot(3)
    cert.transferFrom(winery, me.address, lot.token(2), sender=winery)
    wait_indexed(w3, app)
    return me, lot, lot.token(2)


def gift_form(app: TestClient, token_id: int) -> dict[str, str]:
    page = app.get(f"/app/bottles/{token_id}/gift")
    assert page.status_code == 200, page.text
    return {"csrf": CSRF.search(page.text).group(1), "once": ONCE.search(page.text).group(1),
            "expiry": (datetime.now(UTC).date() + timedelta(days=7)).isoformat()}


def give(app: TestClient, token_id: int) -> str:
    """Gift ``token_id`` through the form; the link, once the chain holds the gift."""
    response = app.post(f"/app/bottles/{token_id}/gift", data=gift_form(app, token_id), headers=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    until(lambda: state(app, token_id)["state"] == "gift_pending", what="the gift on chain")
    return LINK.search(response.text).group(1)


def path_of(link: str) -> str:
    return urlsplit(link).path


def secret_of(link: str) -> str:
    return link.split("#claim=")[1]


# ------------------------------------------------------------- give a gift


def test_gift__own_bottle__link_and_qr_shown_once_the_chain_locks_it_to_that_key(app, giver, cert):
    me, _, token_id = giver
    form = gift_form(app, token_id)

    response = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=SAME_ORIGIN)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    link = LINK.search(response.text).group(1)
    assert re.fullmatch(rf"https://[a-z.]+/app/claim/{token_id}#claim=0x[0-9a-f]{{64}}", link)
    image = Image.open(io.BytesIO(__import__("base64").b64decode(QR.search(response.text).group(1))))
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [link]
    until(lambda: state(app, token_id)["state"] == "gift_pending", what="the gift on chain")
    gift = state(app, token_id)["gift"]
    assert gift["claim_key"] == Account.from_key(secret_of(link)).address
    day = datetime.fromisoformat(form["expiry"]).replace(tzinfo=UTC)
    assert gift["expiry"] == int((day + timedelta(days=1)).timestamp()) - 1  # the end of the chosen day
    assert cert.ownerOf(token_id) == me.address
    page = app.get(f"/app/bottles/{token_id}")
    assert secret_of(link)[2:] not in page.text  # shown once: nowhere else
    assert f'action="/app/bottles/{token_id}/gift/revoke"' in page.text


def test_gift__form_sent_twice__one_gift_and_the_same_link_both_times(app, giver, cert):
    me, _, token_id = giver
    form = gift_form(app, token_id)

    first = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=SAME_ORIGIN)
    second = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=SAME_ORIGIN)

    assert first.status_code == second.status_code == 200
    assert LINK.search(first.text).group(1) == LINK.search(second.text).group(1)
    until(lambda: state(app, token_id)["state"] == "gift_pending", what="the gift on chain")
    assert cert.nonces(me.address) == 1  # one signed action


@pytest.mark.parametrize("expiry", ["today", "yesterday", "2001-01-01", "in-six-years", "31/12/2030", ""])
def test_gift__a_day_not_from_tomorrow__422_beside_the_field_nothing_sent(app, giver, w3, relayer, expiry):
    _, _, token_id = giver
    form = gift_form(app, token_id)
    today = datetime.now(UTC).date()
    form["expiry"] = {"today": today.isoformat(), "yesterday": (today - timedelta(days=1)).isoformat(),
                      "in-six-years": (today + timedelta(days=6 * 366)).isoformat()}.get(expiry, expiry)
    before = outbox(w3, relayer)

    response = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=SAME_ORIGIN)

    assert response.status_code == 422
    assert "Choose a day from tomorrow, at most five years ahead." in response.text
    assert 'aria-invalid="true"' in response.text
    assert outbox(w3, relayer) == before and state(app, token_id)["state"] == "active"


def test_gift__someone_elses_bottle__404_in_words_nothing_sent(app, giver, w3, relayer):
    owner, lot, token_id = giver
    form = gift_form(app, token_id)
    person(app)  # another account, with the owner's form values
    form["csrf"] = CSRF.search(app.get("/app/account").text).group(1)
    before = outbox(w3, relayer)

    page = app.get(f"/app/bottles/{token_id}/gift")
    response = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=SAME_ORIGIN)

    assert page.status_code == response.status_code == 404
    assert "This bottle is not in your cellar" in response.text
    assert outbox(w3, relayer) == before and state(app, token_id)["state"] == "active"


@pytest.mark.parametrize("attack", ["cross-origin", "no-token", "another-sessions-token"])
def test_gift__forged_form__403_nothing_sent(app, giver, w3, relayer, attack):
    me, _, token_id = giver
    form = gift_form(app, token_id)
    headers = SAME_ORIGIN
    if attack == "cross-origin":
        headers = {"Origin": "https://evil.example"}
    elif attack == "no-token":
        del form["csrf"]
    else:
        other = person(app)
        form["csrf"] = CSRF.search(app.get("/app/account").text).group(1)
        be(app, me.token)
        assert other.token != me.token
    before = outbox(w3, relayer)

    response = app.post(f"/app/bottles/{token_id}/gift", data=form, headers=headers)

    assert response.status_code == 403 and "This form could not be sent" in response.text
    assert outbox(w3, relayer) == before and state(app, token_id)["state"] == "active"


def test_gift__bottle_already_gifted__form_says_so_409(app, giver):
    _, _, token_id = giver
    give(app, token_id)

    page = app.get(f"/app/bottles/{token_id}/gift")

    assert page.status_code == 409 and "already offered as a gift" in page.text
    assert 'name="once"' not in page.text


# ------------------------------------------------------------ take it back


def test_revoke__pending_gift__taken_back_once_and_the_link_says_so(app, giver, w3, cert):
    me, _, token_id = giver
    link = give(app, token_id)
    page = app.get(f"/app/bottles/{token_id}")
    csrf = CSRF.search(page.text).group(1)

    first = app.post(f"/app/bottles/{token_id}/gift/revoke", data={"csrf": csrf}, headers=SAME_ORIGIN)
    second = app.post(f"/app/bottles/{token_id}/gift/revoke", data={"csrf": csrf}, headers=SAME_ORIGIN)

    assert first.status_code == 200 and "The gift is being taken back" in first.text
    assert second.status_code in (200, 409)  # the same request while pending, "no longer waiting" once done
    until(lambda: state(app, token_id)["state"] == "active", what="the gift revoked")
    assert cert.nonces(me.address) == 2  # gift + one revocation
    wait_indexed(w3, app)
    be(app, None)
    claim = app.get(path_of(link))
    assert claim.status_code == 410 and "This gift was taken back" in claim.text


def test_revoke__someone_elses_gift__404_nothing_sent(app, giver, w3, relayer):
    _, _, token_id = giver
    give(app, token_id)
    person(app)
    csrf = CSRF.search(app.get("/app/account").text).group(1)
    before = outbox(w3, relayer)

    response = app.post(f"/app/bottles/{token_id}/gift/revoke", data={"csrf": csrf}, headers=SAME_ORIGIN)

    assert response.status_code == 404
    assert outbox(w3, relayer) == before and state(app, token_id)["state"] == "gift_pending"


# ------------------------------------------------------------ accept a gift


def test_claim__new_person_signs_up_in_the_claim_form__account_made_and_bottle_theirs(app, giver, cert):
    _, _, token_id = giver
    link = give(app, token_id)
    be(app, None)
    path = path_of(link)

    page = app.get(path)
    assert page.status_code == 200 and "A gift for you" in page.text and "Cuvée Essai" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/claim.js" defer></script>' in page.text
    response = app.post(path, data={"mode": "signup", "secret": secret_of(link), "identifier": "new-friend-1",
                                    "password": PASSWORD, "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 200 and "Gift accepted" in response.text
    assert response.headers["set-cookie"].startswith(f"{COOKIE}=amph_s_")
    address = app.post("/auth/login", json={"identifier": "new-friend-1", "password": PASSWORD}).json()["address"]
    until(lambda: cert.ownerOf(token_id) == address, what="the claim on chain")


def test_claim__signed_in_and_sent_twice__claimed_once(app, giver, cert):
    _, _, token_id = giver
    link = give(app, token_id)
    friend = person(app)
    path = path_of(link)
    csrf = CSRF.search(app.get(path).text).group(1)

    first = app.post(path, data={"csrf": csrf, "secret": link}, headers=SAME_ORIGIN)  # the whole link pasted
    second = app.post(path, data={"csrf": csrf, "secret": secret_of(link)}, headers=SAME_ORIGIN)

    assert first.status_code == 200 and "Gift accepted" in first.text
    assert second.status_code in (200, 410)  # the same request while pending; "already yours" once done
    until(lambda: cert.ownerOf(token_id) == friend.address, what="the claim on chain")
    page = app.get(path)
    assert page.status_code == 410 and "This bottle is already yours" in page.text


def test_claim__wrong_code__422_no_account_made_nothing_sent(app, giver, w3, relayer):
    _, _, token_id = giver
    give(app, token_id)
    be(app, None)
    before = outbox(w3, relayer)
    wrong = "0x" + Account.create().key.hex()

    response = app.post(f"/app/claim/{token_id}", data={"mode": "signup", "secret": wrong, "identifier": "mallory-7",
                                                        "password": PASSWORD, "confirm": PASSWORD},
                        headers=SAME_ORIGIN)

    assert response.status_code == 422 and "This code does not open this gift" in response.text
    assert wrong[2:] not in response.text
    assert app.post("/auth/login", json={"identifier": "mallory-7", "password": PASSWORD}).status_code == 401
    assert outbox(w3, relayer) == before and state(app, token_id)["state"] == "gift_pending"


def test_claim__replayed_by_someone_else_after_it_was_claimed__410_in_words_nothing_sent(app, giver, w3, relayer,
                                                                                        cert):
    _, _, token_id = giver
    link = give(app, token_id)
    friend = person(app)
    path = path_of(link)
    app.post(path, data={"csrf": CSRF.search(app.get(path).text).group(1), "secret": secret_of(link)},
             headers=SAME_ORIGIN)
    until(lambda: cert.ownerOf(token_id) == friend.address, what="the claim on chain")
    wait_indexed(w3, app)
    person(app)
    csrf = CSRF.search(app.get("/app/account").text).group(1)
    before = outbox(w3, relayer)

    page = app.get(path)
    response = app.post(path, data={"csrf": csrf, "secret": secret_of(link)}, headers=SAME_ORIGIN)

    assert page.status_code == response.status_code == 410
    assert "This gift has already been accepted" in response.text
    assert outbox(w3, relayer) == before and cert.ownerOf(token_id) == friend.address


def test_claim__expired_gift__410_in_words_nothing_sent(app, giver, w3, relayer, chain):
    me, _, token_id = giver
    key = Account.create()
    answer = app.post("/me/relay/gifts", json={"token_id": token_id, "claim_key": key.address,
                                               "expiry": chain.pending_timestamp + 60},
                      headers=idempotency_key(**bearer(me.token)))
    assert answer.status_code == 202, answer.text
    until(lambda: state(app, token_id)["state"] == "gift_pending", what="the gift on chain")
    node_rpc(w3, "evm_increaseTime", 3600)
    node_rpc(w3, "evm_mine")
    be(app, None)
    before = outbox(w3, relayer)

    page = app.get(f"/app/claim/{token_id}")
    response = app.post(f"/app/claim/{token_id}", data={"mode": "signup", "secret": "0x" + key.key.hex(),
                                                        "identifier": "late-friend", "password": PASSWORD,
                                                        "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert page.status_code == response.status_code == 410
    assert "This gift has expired" in response.text
    assert outbox(w3, relayer) == before
    assert app.post("/auth/login", json={"identifier": "late-friend", "password": PASSWORD}).status_code == 401


@pytest.mark.parametrize("token", ["1", "0", "abc", "9" * 90])
def test_claim__link_of_no_gift__404_in_words(app, token):
    response = app.get(f"/app/claim/{token}")

    assert response.status_code == 404 and "This gift link is not valid" in response.text


def test_claim__cross_origin_signup__403_no_account(app, giver):
    _, _, token_id = giver
    link = give(app, token_id)
    be(app, None)

    response = app.post(f"/app/claim/{token_id}", data={"mode": "signup", "secret": secret_of(link),
                                                        "identifier": "csrf-victim", "password": PASSWORD,
                                                        "confirm": PASSWORD},
                        headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert app.post("/auth/login", json={"identifier": "csrf-victim", "password": PASSWORD}).status_code == 401


def test_claim__french_and_chinese__the_claim_page_in_words(app, giver):
    _, _, token_id = giver
    give(app, token_id)
    be(app, None)

    french = app.get(f"/app/claim/{token_id}", headers={"Accept-Language": "fr"})
    chinese = app.get(f"/app/claim/{token_id}?lang=zh-CN")

    assert "Un cadeau pour vous" in french.text and "Créer mon compte et accepter le cadeau" in french.text
    assert "送给您的礼物" in chinese.text and 'action="/app/claim/' in chinese.text and "lang=zh-CN" in chinese.text


# ------------------------------------------------------------ the secret


def test_gift_and_claim__the_secret_is_in_no_database_file_and_no_log_record(make_app, api_settings, create_lot,
                                                                           cert, winery, w3, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app(relay_db=tmp_path / "relay.sqlite", scan_db=tmp_path / "scans.sqlite",
                   offer_db=tmp_path / "offers.sqlite")
    me = person(app)
    lot = create_lot(2)
    token_id = lot.token(2)
    cert.transferFrom(winery, me.address, token_id, sender=winery)
    wait_indexed(w3, app)
    link = give(app, token_id)
    friend = person(app)
    path = path_of(link)
    app.post(path, data={"csrf": CSRF.search(app.get(path).text).group(1), "secret": secret_of(link)},
             headers=SAME_ORIGIN)
    until(lambda: cert.ownerOf(token_id) == friend.address, what="the claim on chain")
    wait_indexed(w3, app)

    secret = secret_of(link)[2:]
    raw = bytes.fromhex(secret)
    files = [*tmp_path.glob("*.sqlite*"), *Path(api_settings.index_db).parent.glob(Path(api_settings.index_db).name
                                                                                    + "*")]
    assert any(f.name.startswith("relay.sqlite") for f in files)
    for file in files:
        content = file.read_bytes()
        assert secret.encode() not in content.lower() and raw not in content, file
    for record in caplog.records:
        assert secret not in record.getMessage().lower()


# ---------------------------------------------------------- in a browser


@pytest.fixture
def served(api_settings):
    """The app served by uvicorn on a free port (its public base URL is that port's): (app, base URL)."""
    from browser import serve_settings

    with serve_settings(api_settings) as served:
        yield served


def test_gift_link__new_person_signs_up_claims_and_gifts_it_onward__a_second_person_claims_that(
        served, w3, cert, create_lot, winery):
    from browser import chromium, screenshot, tab
    from playwright.sync_api import expect

    from amphora import qr

    served_app, base = served
    lot = create_lot(2)
    token_id = lot.token(1)
    with httpx.Client(base_url=base) as api:  # the seller: an account holding a bottle, gifting it through the API
        seller = sign_up(api)
        cert.transferFrom(winery, seller["address"], token_id, sender=winery)
        key = Account.create()
        expiry = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
        sent = api.post("/me/relay/gifts", json={"token_id": token_id, "claim_key": key.address, "expiry": expiry},
                        headers=idempotency_key(**bearer(seller["token"])))
        assert sent.status_code == 202, sent.text
        until(lambda: api.get(f"/certificates/{token_id}").json()["state"] == "gift_pending", what="the gift")
    first_link = qr.claim_link(base, token_id, "0x" + key.key.hex())

    with chromium() as browser:
        with tab(browser, "phone", locale="en-GB") as visit:
            page = visit.page
            page.goto(first_link)
            expect(page.get_by_role("heading", name="A gift for you")).to_be_visible()
            signup = page.locator("form", has=page.get_by_role("button", name="Create my account and accept the gift"))
            expect(signup.get_by_label("Gift code")).to_be_hidden()  # filled from the link by claim.js
            assert signup.get_by_label("Gift code").input_value() == "0x" + key.key.hex()
            screenshot(page, "app-gifts-claim")
            signup.get_by_label("Account name or email").fill("wei.zhang@example.org")
            signup.get_by_label("Password", exact=True).fill(PASSWORD)
            signup.get_by_label("The same password again").fill(PASSWORD)
            signup.get_by_role("button", name="Create my account and accept the gift").click()
            expect(page.get_by_role("heading", name="Gift accepted")).to_be_visible()
            screenshot(page, "app-gifts-claimed")
            wei = until(lambda: cert.ownerOf(token_id) != seller["address"] and cert.ownerOf(token_id),
                        what="the first claim")
            wait_indexed(w3, SimpleNamespace(app=served_app))
            page.get_by_role("link", name="Go to my cellar").click()
            page.get_by_role("link", name="Cuvée Essai").click()
            page.get_by_role("button", name="Give as a gift").click()
            expect(page.get_by_role("heading", name="Give this bottle as a gift")).to_be_visible()
            page.get_by_label("Last day to accept the gift").fill(
                (datetime.now(UTC).date() + timedelta(days=10)).isoformat())
            screenshot(page, "app-gifts-form")
            page.get_by_role("button", name="Make the gift link").click()
            expect(page.get_by_role("heading", name="Your gift link")).to_be_visible()
            second_link = page.get_by_label("The link to send").input_value()
            assert second_link.startswith(f"{base}/app/claim/{token_id}#claim=0x")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            screenshot(page, "app-gifts-link")
            until(lambda: cert.state_of(token_id) != 0, what="the onward gift")
            assert not visit.errors and not visit.failed
        with tab(browser, "phone", locale="en-GB") as visit:
            page = visit.page
            page.goto(second_link)
            login = page.locator("form", has=page.get_by_role("button", name="Create my account and accept the gift"))
            login.get_by_label("Account name or email").fill("amelie@example.org")
            login.get_by_label("Password", exact=True).fill(PASSWORD)
            login.get_by_label("The same password again").fill(PASSWORD)
            login.get_by_role("button", name="Create my account and accept the gift").click()
            expect(page.get_by_role("heading", name="Gift accepted")).to_be_visible()
            amelie = until(lambda: cert.ownerOf(token_id) not in (seller["address"], wei) and cert.ownerOf(token_id),
                           what="the second claim")
            wait_indexed(w3, SimpleNamespace(app=served_app))
            page.get_by_role("link", name="Go to my cellar").click()
            expect(page.get_by_role("link", name="Cuvée Essai")).to_be_visible()
            page.goto(first_link)  # the first link again: used
            expect(page.get_by_role("heading", name="This bottle is already yours")).to_be_visible()
            screenshot(page, "app-gifts-used")
    assert cert.ownerOf(token_id) == amelie
