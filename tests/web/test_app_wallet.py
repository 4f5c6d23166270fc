"""Self-custody with a browser wallet: Sign-In with Ethereum (EIP-4361) on the public
API (``/auth/wallet/*``), the wallet account it creates (no key, no password on the
service), the app's pages for it, and one journey in real Chromium with a test
EIP-1193 provider that signs with a local key the server never sees.

The wallet here is an eth-account key made by the test (``holder_wallet``): what a
browser wallet would sign, signed the same way (EIP-191 ``personal_sign``, EIP-712
``eth_signTypedData_v4``)."""

from __future__ import annotations

import html
import re
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct, encode_typed_data
from eth_keys import keys
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import PASSWORD, bearer, wait_for_status, wait_indexed  # noqa: E402
from test_app_pages import COOKIE, CSRF, SAME_ORIGIN, SCREENSHOTS, served_app, signed_up  # noqa: E402, F401

from api.wallet_auth import SECP256K1_HALF_ORDER  # noqa: E402

pytest_plugins = ["api_fixtures", "pg"]

SECP256K1_ORDER = SECP256K1_HALF_ORDER * 2 + 1


@pytest.fixture
def holder_wallet():
    """The holder's own key, as their browser wallet keeps it (never sent to the service)."""
    return Account.create()


@pytest.fixture
def client(make_browser) -> TestClient:
    return make_browser()


def challenge(client: TestClient, address: str) -> dict:
    response = client.post("/auth/wallet/challenge", json={"address": address})
    assert response.status_code == 200, response.text
    return response.json()


def personal_sign(wallet, message: str) -> str:
    return "0x" + wallet.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def sign_in(client: TestClient, wallet) -> dict:
    """Challenge, sign, log in: the session answer."""
    message = challenge(client, wallet.address)["message"]
    response = client.post("/auth/wallet/login", json={"message": message,
                                                      "signature": personal_sign(wallet, message)})
    assert response.status_code == 200, response.text
    return response.json()


def refused(client: TestClient, message: str, signature: str) -> str:
    response = client.post("/auth/wallet/login", json={"message": message, "signature": signature})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    return str(response.json()["detail"])


def users_row(client: TestClient, address: str) -> dict:
    with client.app.state.db.read() as tx:
        return tx.one("SELECT * FROM users WHERE address = ?", (address,))


# ------------------------------------------------------- sign-in (API)


def test_wallet_login__signed_challenge__a_session_for_the_address_and_no_key_kept(client, holder_wallet,
                                                                                   public_base_url):
    issued = challenge(client, holder_wallet.address)
    host = public_base_url.split("://")[1].rstrip("/")
    assert issued["message"].startswith(f"{host} wants you to sign in with your Ethereum account:\n"
                                        f"{holder_wallet.address}\n\n")
    assert f"\nNonce: {issued['nonce']}\n" in issued["message"]
    assert "\nExpiration Time: " in issued["message"] and "\nChain ID: " in issued["message"]
    session = client.post("/auth/wallet/login", json={
        "message": issued["message"], "signature": personal_sign(holder_wallet, issued["message"])}).json()
    assert session["address"] == holder_wallet.address
    me = client.get("/me", headers=bearer(session["token"])).json()
    assert me["address"] == holder_wallet.address
    row = users_row(client, holder_wallet.address)
    assert row["kind"] == "wallet" and row["encrypted_key"] == "" and row["password_hash"] == ""
    again = sign_in(client, holder_wallet)  # the second sign-in finds the same account
    assert again["user_id"] == session["user_id"]


def test_wallet_login__same_message_sent_twice__second_is_refused(client, holder_wallet):
    message = challenge(client, holder_wallet.address)["message"]
    signature = personal_sign(holder_wallet, message)
    assert client.post("/auth/wallet/login", json={"message": message, "signature": signature}).status_code == 200
    assert "already used" in refused(client, message, signature)


def test_wallet_login__message_edited_for_another_domain__refused(client, holder_wallet, public_base_url):
    message = challenge(client, holder_wallet.address)["message"]
    host = public_base_url.split("://")[1].rstrip("/")
    forged = message.replace(host, "wallet-phish.example", 1)
    assert "not a sign-in challenge of this service" in refused(client, forged, personal_sign(holder_wallet, forged))
    # The untouched challenge still signs in: a refused attempt does not spend it.
    assert client.post("/auth/wallet/login", json={
        "message": message, "signature": personal_sign(holder_wallet, message)}).status_code == 200


def test_wallet_login__made_up_nonce__refused(client, holder_wallet):
    message = re.sub(r"Nonce: \w+", "Nonce: 00000000deadbeef", challenge(client, holder_wallet.address)["message"])
    assert "not a sign-in challenge" in refused(client, message, personal_sign(holder_wallet, message))


def test_wallet_login__expired_challenge__refused(client, holder_wallet):
    issued = challenge(client, holder_wallet.address)
    with client.app.state.db.transaction() as tx:  # five minutes later
        tx.execute("UPDATE wallet_challenges SET expires_at = expires_at - 301 WHERE nonce = ?", (issued["nonce"],))
    assert "expired" in refused(client, issued["message"], personal_sign(holder_wallet, issued["message"]))
    assert users_row(client, holder_wallet.address) is None


def test_wallet_login__signed_by_another_key__refused(client, holder_wallet):
    attacker = Account.create()
    message = challenge(client, holder_wallet.address)["message"]
    assert "not the challenge's account's signature" in refused(client, message, personal_sign(attacker, message))
    assert users_row(client, holder_wallet.address) is None and users_row(client, attacker.address) is None


def test_wallet_login__high_s_twin_of_a_valid_signature__refused_and_the_challenge_stays_usable(client,
                                                                                                holder_wallet):
    message = challenge(client, holder_wallet.address)["message"]
    signed = holder_wallet.sign_message(encode_defunct(text=message))
    twin = (signed.r.to_bytes(32, "big") + (SECP256K1_ORDER - signed.s).to_bytes(32, "big")
            + bytes([55 - signed.v]))  # v 27 <-> 28
    # The twin is a valid ECDSA signature by the same key: only the lower-s rule tells them apart.
    digest = _hash_eip191_message(encode_defunct(text=message))
    assert keys.Signature(vrs=(1 - (signed.v - 27), signed.r, SECP256K1_ORDER - signed.s)) \
        .recover_public_key_from_msg_hash(digest).to_checksum_address() == holder_wallet.address
    assert "not the challenge's account's signature" in refused(client, message, "0x" + twin.hex())
    assert client.post("/auth/wallet/login", json={
        "message": message, "signature": personal_sign(holder_wallet, message)}).status_code == 200


def test_wallet_challenge__anonymous_flood__429_after_the_limit(make_browser, holder_wallet):
    client = make_browser(wallet_challenges_per_minute=3)
    for _ in range(3):
        challenge(client, holder_wallet.address)
    response = client.post("/auth/wallet/challenge", json={"address": holder_wallet.address})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    with client.app.state.db.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM wallet_challenges")["n"] == 3


def test_wallet_login__anonymous_flood_of_wrong_signatures__429_after_the_limit(make_browser, holder_wallet):
    client = make_browser(wallet_challenges_per_minute=3)
    message = challenge(client, holder_wallet.address)["message"]
    forged = personal_sign(Account.create(), message)
    for _ in range(3):
        refused(client, message, forged)
    response = client.post("/auth/wallet/login", json={"message": message, "signature": forged})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


def test_wallet_challenge__not_an_address__422(client):
    assert client.post("/auth/wallet/challenge", json={"address": "0x1234"}).status_code == 422


def test_wallet_login__contract_wallet_erc1271__signs_in_with_its_owner_signature(client, project, admin,
                                                                                 holder_wallet):
    contract = project.MockERC1271Wallet.deploy(holder_wallet.address, sender=admin)
    message = challenge(client, contract.address)["message"]
    response = client.post("/auth/wallet/login", json={"message": message,
                                                      "signature": personal_sign(holder_wallet, message)})
    assert response.status_code == 200, response.text
    assert response.json()["address"] == contract.address


def test_wallet_sign_in__on_postgresql__the_challenge_signs_in_once_and_the_account_is_made_once(
        postgres_url, api_settings, client, holder_wallet):
    from api.errors import Forbidden, Unauthorized
    from api.users import UserStore
    from api.wallet_auth import WalletChallenges
    from storage.db import Database

    db = Database(url=postgres_url)
    try:
        users, challenges = UserStore(db, api_settings), WalletChallenges(db, api_settings.public_base_url)
        message, _, _ = challenges.issue(holder_wallet.address, 31337)
        signature = bytes(holder_wallet.sign_message(encode_defunct(text=message)).signature)
        chain = client.app.state.chain
        assert challenges.verify(message, signature, chain) == holder_wallet.address
        with pytest.raises(Unauthorized, match="already used"):
            challenges.verify(message, signature, chain)
        first, _ = users.wallet_account(holder_wallet.address)
        again, session = users.wallet_account(holder_wallet.address)
        assert first.id == again.id and first.wallet and users.authenticate(session.token).wallet
        with pytest.raises(Forbidden, match="wallet account"):
            users.sign_typed_data(again, {})
    finally:
        db.close()


# --------------------------------------------- what a wallet account cannot do


def test_wallet_account__server_signing_key_export_and_password__refused_in_words(client, holder_wallet):
    token = sign_in(client, holder_wallet)["token"]
    headers = {**bearer(token), "Idempotency-Key": "wallet-1"}
    transfer = client.post("/me/relay/transfers", json={"token_id": 1, "to": Account.create().address},
                           headers=headers)
    assert transfer.status_code == 403 and "wallet account" in transfer.json()["detail"]
    export = client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(token))
    assert export.status_code == 403 and "holds no copy" in export.json()["detail"]
    password = client.post("/me/password", json={"current_password": PASSWORD, "new_password": PASSWORD + "x"},
                           headers=bearer(token))
    assert password.status_code == 403 and "wallet account" in password.json()["detail"]
    login = client.post("/auth/login", json={"identifier": holder_wallet.address.lower(), "password": PASSWORD})
    assert login.status_code == 401  # a wallet account has no password to guess


def test_signup__identifier_that_is_an_address__refused_so_no_one_squats_a_wallet(client, holder_wallet):
    response = client.post("/auth/signup", json={"identifier": holder_wallet.address, "password": PASSWORD})
    assert response.status_code == 422 and "Ethereum address" in response.json()["detail"]


def test_wallet_login__address_of_a_custodial_account__409(client):
    from api_fixtures import sign_up

    custodial = sign_up(client)
    key = client.post("/me/key-export", json={"password": PASSWORD},
                      headers=bearer(custodial["token"])).json()["private_key"]
    wallet = Account.from_key(key)
    message = challenge(client, wallet.address)["message"]
    response = client.post("/auth/wallet/login", json={"message": message, "signature": personal_sign(wallet, message)})
    assert response.status_code == 409 and "custodial" in response.json()["detail"]


# --------------------------------------------------------------- pages


def text(response) -> str:
    """The page's text as read: whitespace runs as one space, entities decoded (``&#39;`` as ``'``)."""
    return html.unescape(re.sub(r"\s+", " ", response.text))


def wallet_browser(make_browser, wallet) -> TestClient:
    """A browser signed in to ``wallet``'s account through the login page's form (what wallet.js posts)."""
    browser = make_browser()
    message = challenge(browser, wallet.address)["message"]
    response = browser.post("/app/wallet/login", data={"message": message, "signature": personal_sign(wallet, message)},
                            headers=SAME_ORIGIN)
    assert response.status_code == 303 and response.headers["location"] == "/app/cellar", response.text
    return browser


@pytest.fixture
def wallet_bottle(make_browser, holder_wallet, w3, cert, create_lot, winery):
    """A wallet account's browser, signed in, holding bottle 2 of a fresh lot of 3. (browser, lot)"""
    browser = wallet_browser(make_browser, holder_wallet)
    lot = create_lot(3)
    cert.transferFrom(winery, holder_wallet.address, lot.token(2), sender=winery)
    wait_indexed(w3, browser)
    return browser, lot


def test_login_page__offers_a_wallet__its_script_on_that_page_only(client):
    page = client.get("/app/login")
    assert page.status_code == 200
    assert "Connect a wallet" in page.text and 'src="/static/wallet.js"' in page.text
    assert "Connecting a wallet needs JavaScript" in page.text  # what shows until the script runs
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    # Every app page runs the time-zone script (script-src 'self'); the wallet's runs on the login page only.
    assert 'src="/static/wallet.js"' not in client.get("/app/signup").text


def test_wallet_login_form__from_another_site__refused_and_no_session(make_browser, holder_wallet):
    browser = make_browser()
    message = challenge(browser, holder_wallet.address)["message"]
    response = browser.post("/app/wallet/login", data={"message": message,
                                                       "signature": personal_sign(holder_wallet, message)},
                            headers={"Origin": "https://wallet-phish.example"})
    assert response.status_code == 403 and COOKIE not in browser.cookies
    with browser.app.state.db.read() as tx:  # the challenge is not spent either
        assert tx.one("SELECT used_at FROM wallet_challenges")["used_at"] is None


def test_wallet_login_form__bad_signature__login_page_says_so_in_words(make_browser, holder_wallet):
    browser = make_browser()
    message = challenge(browser, holder_wallet.address)["message"]
    response = browser.post("/app/wallet/login", data={"message": message,
                                                       "signature": personal_sign(Account.create(), message)},
                            headers=SAME_ORIGIN)
    assert response.status_code == 401 and COOKIE not in browser.cookies
    assert "The wallet's signature could not be checked" in text(response)
    assert '<div class="problem" role="alert">' not in response.text  # not the password form's error too


def test_wallet_account__cellar_bottle_and_transfer_page__signing_needs_the_wallet(wallet_bottle, holder_wallet):
    browser, lot = wallet_bottle
    assert f"/app/bottles/{lot.token(2)}" in browser.get("/app/cellar").text
    bottle = text(browser.get(f"/app/bottles/{lot.token(2)}"))
    assert f'href="/app/bottles/{lot.token(2)}/wallet-transfer"' in bottle
    assert "transfers, delivery requests, reports and taking a gift back are signed in your wallet" in bottle
    assert f"/app/bottles/{lot.token(2)}/delivery" in bottle and "<button type=\"button\" disabled>" in bottle
    moved = browser.get(f"/app/bottles/{lot.token(2)}/transfer")  # the custodial page sends it on
    assert moved.status_code == 303 and moved.headers["location"].endswith("/wallet-transfer")
    page = browser.get(f"/app/bottles/{lot.token(2)}/wallet-transfer")
    fields = {"csrf": CSRF.search(page.text).group(1), "once": re.search(r'name="once" value="([^"]+)"',
                                                                          page.text).group(1)}
    recipient = Account.create().address
    confirm = browser.post(f"/app/bottles/{lot.token(2)}/wallet-transfer", data={**fields, "recipient": recipient},
                           headers=SAME_ORIGIN)
    assert confirm.status_code == 200
    assert "Signing needs your wallet" in text(confirm) and f"to={recipient}" in html.unescape(confirm.text)
    assert "script-src 'self'" in confirm.headers["content-security-policy"]


def test_wallet_transfer__signature_by_another_key__refused_and_nothing_sent(wallet_bottle, cert, w3):
    browser, lot = wallet_bottle
    token_id = lot.token(2)
    page = browser.get(f"/app/bottles/{token_id}/wallet-transfer")
    fields = {"csrf": CSRF.search(page.text).group(1), "once": re.search(r'name="once" value="([^"]+)"',
                                                                          page.text).group(1)}
    recipient = Account.create().address
    deadline = str(int(time.time()) + 600)
    me = browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]
    typed = browser.get("/relay/typed-data/transfer", params={"from": me, "to": recipient, "token_id": token_id,
                                                              "deadline": deadline}).json()
    forged = Account.create().sign_message(encode_typed_data(full_message=typed)).signature.hex()
    height = w3.eth.block_number
    response = browser.post(f"/app/bottles/{token_id}/wallet-transfer", headers=SAME_ORIGIN, data={
        **fields, "recipient": recipient, "to": recipient, "deadline": deadline,
        "nonce": typed["message"]["nonce"], "signature": "0x" + forged.removeprefix("0x")})
    assert response.status_code == 409, response.text
    assert "the wallet's signature does not allow it now" in text(response)
    assert cert.ownerOf(token_id) == me and w3.eth.block_number == height
    user = browser.app.state.users.authenticate(browser.cookies[COOKIE])
    assert browser.app.state.relayer.outbox.for_account(user.id) == []


def test_wallet_delivery__details_kept_then_signed_in_the_wallet__relayed_and_the_bottle_waits(wallet_bottle,
                                                                                               holder_wallet, cert):
    browser, lot = wallet_bottle
    token_id = lot.token(2)
    page = browser.get(f"/app/bottles/{token_id}/delivery")
    fields = {"csrf": CSRF.search(page.text).group(1), "once": re.search(r'name="once" value="([^"]+)"',
                                                                          page.text).group(1)}
    sign = browser.post(f"/app/bottles/{token_id}/delivery", headers=SAME_ORIGIN, data={
        **fields, "name": "Chloé Martin", "address": "12 rue des Vignes, 21200 Beaune", "phone": ""})
    assert sign.status_code == 200, sign.text
    assert "Sign the delivery request" in text(sign) and "Signing needs your wallet" in text(sign)
    note = re.search(r'name="note" value="(0x[0-9a-f]{64})"', sign.text).group(1)
    deadline = re.search(r'name="deadline" value="(\d+)"', sign.text).group(1)
    typed_url = html.unescape(re.search(r'data-typed="([^"]+)"', sign.text).group(1))
    assert typed_url.startswith("/relay/typed-data/redemption?") and f"order_hash={note}" in typed_url
    assert cert.ownerOf(token_id) == holder_wallet.address  # nothing on chain before the wallet signs

    typed = browser.get(typed_url).json()
    signature = holder_wallet.sign_message(encode_typed_data(full_message=typed)).signature.hex()
    sent = browser.post(f"/app/bottles/{token_id}/wallet-sign/delivery", headers=SAME_ORIGIN, data={
        "csrf": fields["csrf"], "once": fields["once"], "note": note, "deadline": deadline,
        "nonce": typed["message"]["nonce"], "signature": "0x" + signature.removeprefix("0x")})
    assert sent.status_code == 303 and sent.headers["location"] == f"/app/bottles/{token_id}/delivery?done=sent"
    again = browser.post(f"/app/bottles/{token_id}/wallet-sign/delivery", headers=SAME_ORIGIN, data={
        "csrf": fields["csrf"], "once": fields["once"], "note": note, "deadline": deadline,
        "nonce": typed["message"]["nonce"], "signature": "0x" + signature.removeprefix("0x")})
    assert again.status_code == 303  # the form sent twice: one request
    user = browser.app.state.users.authenticate(browser.cookies[COOKIE])
    records = browser.app.state.relayer.outbox.for_account(user.id)
    assert len(records) == 1
    wait_for_status(browser, records[0].request_id, "confirmed")
    view = browser.get(f"/certificates/{token_id}").json()
    assert view["state"] == "redemption_requested" and view["redemption"]["order_hash"] == note


def test_wallet_gift__taken_back_with_the_wallet_signature__the_bottle_is_free_again(wallet_bottle, holder_wallet,
                                                                                    w3):
    browser, lot = wallet_bottle
    token_id = lot.token(2)
    session = bearer(browser.cookies[COOKIE])
    claim_key, expiry = Account.create().address, int(time.time()) + 86_400
    query = {"holder": holder_wallet.address, "token_id": token_id, "deadline": expiry, "claim_key": claim_key,
             "expiry": expiry}
    typed = browser.get("/relay/typed-data/gift", params=query).json()  # given through the public API
    gift = browser.post("/relay/gifts", headers=session, json={
        "holder": holder_wallet.address, "token_id": token_id, "nonce": typed["message"]["nonce"],
        "deadline": expiry, "claim_key": claim_key, "expiry": expiry,
        "signature": "0x" + holder_wallet.sign_message(encode_typed_data(full_message=typed)).signature.hex()
        .removeprefix("0x")})
    assert gift.status_code == 202, gift.text
    wait_for_status(browser, gift.json()["request_id"], "confirmed")
    wait_indexed(w3, browser)

    bottle = browser.get(f"/app/bottles/{token_id}")
    assert f'action="/app/bottles/{token_id}/wallet-revoke"' in bottle.text
    sign = browser.post(f"/app/bottles/{token_id}/wallet-revoke", headers=SAME_ORIGIN,
                        data={"csrf": CSRF.search(bottle.text).group(1)})
    assert sign.status_code == 200 and "Take back the gift" in text(sign)
    typed_url = html.unescape(re.search(r'data-typed="([^"]+)"', sign.text).group(1))
    assert typed_url.startswith("/relay/typed-data/gift-revocation?")
    typed = browser.get(typed_url).json()
    sent = browser.post(f"/app/bottles/{token_id}/wallet-sign/revoke", headers=SAME_ORIGIN, data={
        "csrf": CSRF.search(sign.text).group(1), "once": re.search(r'name="once" value="([^"]+)"', sign.text).group(1),
        "note": "", "deadline": re.search(r'name="deadline" value="(\d+)"', sign.text).group(1),
        "nonce": typed["message"]["nonce"],
        "signature": "0x" + holder_wallet.sign_message(encode_typed_data(full_message=typed)).signature.hex()
        .removeprefix("0x")})
    assert sent.status_code == 303 and sent.headers["location"] == f"/app/bottles/{token_id}", sent.text
    user = browser.app.state.users.authenticate(browser.cookies[COOKIE])
    wait_for_status(browser, browser.app.state.relayer.outbox.for_account(user.id)[0].request_id, "confirmed")
    assert browser.get(f"/certificates/{token_id}").json()["state"] == "active"


def test_wallet_sign__a_note_hash_not_written_by_this_account__refused(wallet_bottle):
    browser, lot = wallet_bottle
    page = browser.get(f"/app/bottles/{lot.token(2)}/delivery")
    csrf = CSRF.search(page.text).group(1)
    response = browser.post(f"/app/bottles/{lot.token(2)}/wallet-sign/delivery", headers=SAME_ORIGIN, data={
        "csrf": csrf, "once": "a" * 24, "note": "0x" + "ab" * 32, "deadline": "9999999999", "nonce": "0",
        "signature": "0x" + "11" * 65})
    assert response.status_code == 403
    user = browser.app.state.users.authenticate(browser.cookies[COOKIE])
    assert browser.app.state.relayer.outbox.for_account(user.id) == []


def test_wallet_account__account_and_key_export_pages__say_they_do_not_apply(wallet_bottle):
    browser, _ = wallet_bottle
    account = text(browser.get("/app/account"))
    assert "This account has no password" in account and "Change your password" not in account
    key = text(browser.get("/app/account/key"))
    assert "This does not apply to your account" in key and 'name="password"' not in key


def test_wallet_transfer_page__custodial_account__sent_to_the_usual_page(make_browser):
    browser = make_browser()
    signed_up(browser)
    response = browser.get("/app/bottles/1/wallet-transfer")
    assert response.status_code == 303 and response.headers["location"] == "/app/bottles/1/transfer"


# ------------------------------------------------- the journey in Chromium

#: A test EIP-1193 provider: accounts from the page, signatures from the Python function
#: the test exposes (``walletSign``), which holds the key. The page only ever sees signatures.
PROVIDER = """
window.ethereum = {
  isAmphoraTest: true,
  request: async function (call) {
    if (call.method === "eth_requestAccounts" || call.method === "eth_accounts") {
      return [%(address)r];
    }
    return window.walletSign(call.method, JSON.stringify(call.params || []));
  }
};
"""


def test_self_custody__wallet_on_a_phone__connects_sees_the_bottle_transfers_and_reports_signed_in_the_browser(
        served_app, holder_wallet, w3, cert, create_lot, winery):  # noqa: F811 (the fixture imported above)
    from types import SimpleNamespace

    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lot = create_lot(3)
    bottle, lost, recipient = lot.token(3), lot.token(2), Account.create().address
    for token in (bottle, lost):
        cert.transferFrom(winery, holder_wallet.address, token, sender=winery)
    wait_indexed(w3, SimpleNamespace(app=app))
    asked: list[str] = []

    def wallet_sign(method: str, params: str) -> str:
        """What the wallet does when the page asks it to sign: with the key only it holds."""
        asked.append(method)
        values = __import__("json").loads(params)
        if method == "personal_sign":
            message = bytes.fromhex(values[0].removeprefix("0x"))
            signed = holder_wallet.sign_message(encode_defunct(primitive=message))
        elif method == "eth_signTypedData_v4":
            assert values[0].lower() == holder_wallet.address.lower()
            signed = holder_wallet.sign_message(encode_typed_data(full_message=__import__("json").loads(values[1])))
        else:
            raise ValueError(f"the test wallet does not do {method}")
        return "0x" + signed.signature.hex().removeprefix("0x")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            # Without a wallet: the page says what to install, and the password login stays.
            bare = chromium.new_context(viewport={"width": 390, "height": 844}, locale="en-GB").new_page()
            bare.goto(f"{base}/app/login")
            bare.get_by_role("button", name="Connect a wallet").click()
            expect(bare.get_by_text("No wallet was found in this browser. Install a browser wallet")).to_be_visible()
            expect(bare.get_by_role("button", name="Log in")).to_be_visible()
            bare.screenshot(path=str(SCREENSHOTS / "app-wallet-none.png"), full_page=True)
            bare.goto(f"{base}/app/login?lang=zh-CN")
            bare.set_viewport_size({"width": 1280, "height": 900})
            expect(bare.get_by_role("button", name="连接钱包")).to_be_visible()
            bare.screenshot(path=str(SCREENSHOTS / "app-wallet-login-zh-desktop.png"), full_page=True)

            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            context.add_init_script(PROVIDER % {"address": holder_wallet.address})
            context.expose_function("walletSign", wallet_sign)
            page = context.new_page()
            page.goto(f"{base}/app/login")
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-login.png"), full_page=True)
            page.get_by_role("button", name="Connect a wallet").click()
            expect(page.get_by_role("link", name="Cuvée Essai")).to_have_count(2)
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-cellar.png"), full_page=True)
            page.goto(f"{base}/app/bottles/{bottle}")
            page.get_by_role("link", name="Transfer to someone").click()
            page.get_by_label("Who receives it").fill(recipient)
            page.get_by_role("button", name="Next: check the recipient").click()
            expect(page.get_by_role("heading", name="Check before you sign")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-confirm.png"), full_page=True)
            page.get_by_role("button", name="Sign with my wallet and transfer").click()
            expect(page.get_by_role("heading", name="My activity")).to_be_visible()
            deadline = time.monotonic() + 20
            while cert.ownerOf(bottle) != recipient and time.monotonic() < deadline:
                time.sleep(0.2)
            page.reload()
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-activity.png"), full_page=True)

            page.goto(f"{base}/app/bottles/{lost}")
            page.get_by_role("link", name="Report lost or stolen").click()
            page.get_by_label("What happened").fill("Left in a taxi in Lyon")
            page.get_by_role("button", name="Report it").click()
            expect(page.get_by_role("heading", name="Sign the report")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-sign-report.png"), full_page=True)
            page.get_by_role("button", name="Sign with my wallet and send").click()
            # The report page reloads itself (meta refresh) until the report is on chain.
            expect(page.get_by_text("Reported: anyone who checks this bottle")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(SCREENSHOTS / "app-wallet-reported.png"), full_page=True)
        finally:
            chromium.close()
    assert cert.ownerOf(bottle) == recipient
    assert asked == ["personal_sign", "eth_signTypedData_v4", "eth_signTypedData_v4"]
    flag = TestClient(app).get(f"/certificates/{lost}").json()["flag"]
    assert flag is not None and flag["reason_hash"].startswith("0x")
    key = holder_wallet.key.hex().removeprefix("0x")
    with app.state.db.read() as tx:  # the service never held the key, in any column of the account
        row = tx.one("SELECT * FROM users WHERE address = ?", (holder_wallet.address,))
    assert row["kind"] == "wallet" and row["encrypted_key"] == ""
    assert not any(key in str(value).lower() for value in row.values())
