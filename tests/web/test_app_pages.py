"""The holder's app (/app): accounts as forms, the session cookie, CSRF, the cellar
and a bottle's page, on the test deployment (anvil) with the session's index.

The clients here are browsers without JavaScript: they post URL-encoded forms,
keep the cookie the app sets, and say where a form comes from (``Origin``).
The app's public base URL is https (the API fixtures'), so the clients talk
https to keep the ``Secure`` cookie. Every refusal is checked to have changed
nothing through the JSON API, which the pages are built on."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import PASSWORD, bearer, sign_up, wait_indexed  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

BASE = "https://testserver"
SAME_ORIGIN = {"Origin": BASE}
COOKIE = "__Host-amphora_session"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def browser(make_browser) -> TestClient:
    return make_browser()


def new_identifier() -> str:
    import secrets
    return f"holder-{secrets.token_hex(5)}"


def signed_up(browser: TestClient, identifier: str | None = None) -> str:
    """Sign up through the form; the account's identifier. The browser keeps the session."""
    identifier = identifier or new_identifier()
    response = browser.post("/app/signup", data={"identifier": identifier, "password": PASSWORD, "confirm": PASSWORD},
                            headers=SAME_ORIGIN)
    assert response.status_code == 303, response.text
    return identifier


def csrf_of(browser: TestClient, path: str = "/app/account") -> str:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


def api_login(browser: TestClient, identifier: str, password: str = PASSWORD) -> int:
    """The JSON API's answer to a login (the status): whether the password is what it was."""
    return browser.post("/auth/login", json={"identifier": identifier, "password": password}).status_code


# ------------------------------------------------------------------ sign up


def test_signup__new_person__one_httponly_lax_secure_cookie_with_a_working_session(browser):
    response = browser.post("/app/signup", data={"identifier": "Alice-Fong", "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/app/cellar"
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1
    name, _, rest = cookies[0].partition("=")
    token, *attributes = [part.strip() for part in rest.split(";")]
    assert name == COOKIE and token.startswith("amph_s_")
    assert {a.lower() for a in attributes} >= {"httponly", "samesite=lax", "secure", "path=/"}
    assert not any(a.lower().startswith("domain") for a in attributes)
    me = browser.get("/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["identifier"] == "alice-fong"
    cellar = browser.get("/app/cellar")
    assert cellar.status_code == 200 and "Your cellar is empty" in cellar.text
    assert me.json()["address"] in cellar.text  # what to give a seller


def test_signup__plain_http_base_url__cookie_without_secure_and_without_the_host_prefix(make_browser):
    browser = make_browser(public_base_url="http://localhost:8000")

    response = browser.post("/app/signup", data={"identifier": new_identifier(), "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=SAME_ORIGIN)

    cookie = response.headers["set-cookie"]
    assert cookie.startswith("amphora_session=amph_s_")
    assert "secure" not in cookie.lower() and "httponly" in cookie.lower()


def test_signup__identifier_taken__409_in_words_form_kept_without_the_password(browser):
    taken = sign_up(browser)["identifier"]

    response = browser.post("/app/signup", data={"identifier": taken, "password": "another password 1",
                                                 "confirm": "another password 1"}, headers=SAME_ORIGIN)

    assert response.status_code == 409
    assert "This name is taken" in response.text
    assert f'value="{taken}"' in response.text and "another password 1" not in response.text
    assert "set-cookie" not in response.headers
    assert api_login(browser, taken, "another password 1") == 401


@pytest.mark.parametrize(("password", "confirm", "marked"), [
    ("short", "short", "Use at least 10 characters"),
    (PASSWORD, PASSWORD + "x", "The two passwords are not the same."),
])
def test_signup__bad_password__422_beside_the_field_and_no_account(browser, password, confirm, marked):
    identifier = new_identifier()

    response = browser.post("/app/signup", data={"identifier": identifier, "password": password,
                                                 "confirm": confirm}, headers=SAME_ORIGIN)

    assert response.status_code == 422
    assert marked in response.text and 'aria-invalid="true"' in response.text
    assert f'value="{identifier}"' in response.text and PASSWORD not in response.text
    assert api_login(browser, identifier, password) == 401


def test_signup__identifier_with_a_space__422_and_no_account(browser):
    response = browser.post("/app/signup", data={"identifier": "two words", "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 422 and "without spaces" in response.text
    assert api_login(browser, "two words") == 401


def test_signup__form_sent_twice__the_second_logs_in_instead_of_saying_taken(browser):
    identifier = signed_up(browser)

    again = browser.post("/app/signup", data={"identifier": identifier, "password": PASSWORD, "confirm": PASSWORD},
                         headers=SAME_ORIGIN)

    assert again.status_code == 303 and again.headers["location"] == "/app/cellar"
    assert browser.get("/app/cellar").status_code == 200


def test_signup__beyond_the_apis_limit_per_network__429_in_words(make_browser):
    browser = make_browser(signup_attempts_per_hour=1)
    browser.post("/auth/signup", json={"identifier": new_identifier(), "password": PASSWORD})  # the API's one

    identifier = new_identifier()
    response = browser.post("/app/signup", data={"identifier": identifier, "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 429 and "retry-after" in response.headers
    assert "Too many new accounts from your network" in response.text
    assert api_login(browser, identifier) == 401


# ------------------------------------------------------------------- log in


@pytest.mark.parametrize("known", [True, False])
def test_login__wrong_password_or_unknown_account__same_401_in_words_nothing_set(browser, known):
    identifier = sign_up(browser)["identifier"] if known else new_identifier()

    response = browser.post("/app/login", data={"identifier": identifier, "password": "not the password"},
                            headers=SAME_ORIGIN)

    assert response.status_code == 401
    assert "The account name or the password is wrong" in response.text
    assert f'value="{identifier}"' in response.text and "not the password" not in response.text
    assert "set-cookie" not in response.headers


def test_login__right_password__session_cookie_and_the_cellar(browser):
    identifier = sign_up(browser)["identifier"]

    response = browser.post("/app/login", data={"identifier": identifier.upper(), "password": PASSWORD},
                            headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/app/cellar"
    assert response.headers["set-cookie"].startswith(f"{COOKIE}=amph_s_")
    assert "My cellar" in browser.get("/app/cellar").text


def test_login__failures_through_the_api_count__the_form_is_throttled_too(make_browser):
    browser = make_browser(password_attempts_per_minute=2)
    identifier = sign_up(browser)["identifier"]
    for _ in range(2):
        assert api_login(browser, identifier, "wrong password!") == 401

    response = browser.post("/app/login", data={"identifier": identifier, "password": PASSWORD},
                            headers=SAME_ORIGIN)

    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert "Too many attempts. Please wait" in response.text
    assert "set-cookie" not in response.headers


def test_login__while_signed_in__the_earlier_session_of_this_browser_ends(browser):
    identifier = signed_up(browser)
    earlier = browser.cookies[COOKIE]

    browser.post("/app/login", data={"identifier": identifier, "password": PASSWORD}, headers=SAME_ORIGIN)

    assert browser.get("/me", headers=bearer(earlier)).status_code == 401
    assert browser.get("/me", headers=bearer(browser.cookies[COOKIE])).status_code == 200


# ------------------------------------------------------- cross-site requests


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Referer": "https://evil.example/page"},
    {"Sec-Fetch-Site": "cross-site", "Origin": BASE},
    {"Sec-Fetch-Site": "same-site"},
    {},
], ids=["other-origin", "null-origin", "other-referer", "fetch-cross-site", "fetch-same-site", "no-origin"])
def test_signup__not_from_this_sites_page__403_and_no_account(browser, headers):
    identifier = new_identifier()

    response = browser.post("/app/signup", data={"identifier": identifier, "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=headers)

    assert response.status_code == 403 and "Nothing was changed" in response.text
    assert "set-cookie" not in response.headers
    assert api_login(browser, identifier) == 401


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "same-origin"}, {"Referer": f"{BASE}/app/signup"}])
def test_signup__from_this_sites_page_by_fetch_metadata_or_referer__accepted(browser, headers):
    response = browser.post("/app/signup", data={"identifier": new_identifier(), "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=headers)

    assert response.status_code == 303


def test_login__cross_origin__403_before_any_password_check(make_browser):
    browser = make_browser(password_attempts_per_minute=1)
    identifier = sign_up(browser)["identifier"]

    refused = browser.post("/app/login", data={"identifier": identifier, "password": "guess number 1"},
                           headers={"Origin": "https://evil.example"})

    assert refused.status_code == 403
    assert api_login(browser, identifier) == 200  # the refused guess did not count against the owner


@pytest.mark.parametrize("token", [None, "", "0" * 64, "other-session"])
def test_change_password__csrf_token_missing_or_wrong__403_and_password_unchanged(browser, make_browser, token):
    identifier = signed_up(browser)
    if token == "other-session":
        other = make_browser()
        signed_up(other)
        token = csrf_of(other)
    form = {"current_password": PASSWORD, "new_password": "a brand new passphrase", "confirm": "a brand new passphrase"}
    if token is not None:
        form["csrf"] = token

    response = browser.post("/app/password", data=form, headers=SAME_ORIGIN)

    assert response.status_code == 403 and "Nothing was changed" in response.text
    assert api_login(browser, identifier) == 200
    assert browser.get("/app/cellar").status_code == 200  # still signed in


def test_change_password__right_token_from_another_site__403_and_password_unchanged(browser):
    identifier = signed_up(browser)

    response = browser.post("/app/password", data={
        "csrf": csrf_of(browser), "current_password": PASSWORD, "new_password": "a brand new passphrase",
        "confirm": "a brand new passphrase"}, headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert api_login(browser, identifier) == 200


def test_logout__without_csrf_token__403_and_the_session_still_works(browser):
    signed_up(browser)

    response = browser.post("/app/logout", data={}, headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert browser.get("/me", headers=bearer(browser.cookies[COOKIE])).status_code == 200


def test_form__not_url_encoded__403_and_nothing_changed(browser):
    identifier = new_identifier()

    response = browser.post("/app/signup", json={"identifier": identifier, "password": PASSWORD,
                                                 "confirm": PASSWORD}, headers=SAME_ORIGIN)

    assert response.status_code == 403
    assert api_login(browser, identifier) == 401


# ------------------------------------------------------------------ log out


def test_logout__clears_the_cookie_and_the_token_no_longer_works(browser):
    signed_up(browser)
    token = browser.cookies[COOKIE]

    response = browser.post("/app/logout", data={"csrf": csrf_of(browser)}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/app/login?done=logout"
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith(f"{COOKIE.lower()}=") and "max-age=0" in cleared
    assert browser.get("/me", headers=bearer(token)).status_code == 401
    browser.cookies.set(COOKIE, token)  # a copy of the cookie kept elsewhere
    assert browser.get("/app/cellar").headers["location"] == "/app/login"
    assert "You are logged out." in browser.get("/app/login?done=logout").text


def test_logout__sent_twice__the_second_lands_on_the_same_page(browser):
    signed_up(browser)
    token = csrf_of(browser)
    browser.post("/app/logout", data={"csrf": token}, headers=SAME_ORIGIN)

    again = browser.post("/app/logout", data={"csrf": token}, headers=SAME_ORIGIN)

    assert again.status_code == 303 and again.headers["location"] == "/app/login?done=logout"


def test_logout_everywhere__every_session_and_api_token_of_the_account_stops_working(browser):
    identifier = signed_up(browser)
    other_session = browser.post("/auth/login", json={"identifier": identifier, "password": PASSWORD}).json()["token"]
    api_token = browser.post("/auth/api-tokens", json={"name": "script"},
                             headers=bearer(other_session)).json()["token"]

    response = browser.post("/app/logout-everywhere", data={"csrf": csrf_of(browser)}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and "max-age=0" in response.headers["set-cookie"].lower()
    for token in (other_session, api_token):
        assert browser.get("/me", headers=bearer(token)).status_code == 401
    assert browser.get("/app/cellar").status_code == 303


# --------------------------------------------------------- change password


def test_change_password__right_current_password__new_session_here_every_other_revoked(browser):
    identifier = signed_up(browser)
    elsewhere = browser.post("/auth/login", json={"identifier": identifier, "password": PASSWORD}).json()["token"]

    response = browser.post("/app/password", data={
        "csrf": csrf_of(browser), "current_password": PASSWORD, "new_password": "a brand new passphrase",
        "confirm": "a brand new passphrase"}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/app/account?done=password"
    assert browser.get("/me", headers=bearer(elsewhere)).status_code == 401
    assert "Your password is changed" in browser.get(response.headers["location"]).text
    assert api_login(browser, identifier, "a brand new passphrase") == 200
    assert api_login(browser, identifier) == 401


def test_change_password__wrong_current_password__403_beside_the_field_and_nothing_changed(browser):
    identifier = signed_up(browser)

    response = browser.post("/app/password", data={
        "csrf": csrf_of(browser), "current_password": "not my password", "new_password": "a brand new passphrase",
        "confirm": "a brand new passphrase"}, headers=SAME_ORIGIN)

    assert response.status_code == 403 and "This is not your password." in response.text
    assert "a brand new passphrase" not in response.text and "not my password" not in response.text
    assert api_login(browser, identifier) == 200


# ---------------------------------------------------------- cellar, bottle


@pytest.fixture
def two_cellars(make_browser, w3, cert, create_lot, winery):
    """Two signed-in browsers; the winery sold bottle 2 of a fresh lot of 3 to the first
    and bottle 3 to the second; the index holds it. (browser, other, lot)."""
    mine, theirs = make_browser(), make_browser()
    signed_up(mine)
    signed_up(theirs)
    lot = create_lot(3)
    for browser, serial in ((mine, 2), (theirs, 3)):
        address = browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]
        cert.transferFrom(winery, address, lot.token(serial), sender=winery)
    wait_indexed(w3, mine)
    return mine, theirs, lot


def test_cellar__lists_exactly_the_bottles_the_account_holds_in_words(two_cellars):
    mine, _, lot = two_cellars

    page = mine.get("/app/cellar")

    assert page.status_code == 200
    links = re.findall(r'href="/app/bottles/(\d+)"', page.text)
    assert links == [str(lot.token(2))]
    text = re.sub(r"\s+", " ", page.text)
    for expected in ("Cuvée Essai", "Domaine Test", "2019", f"<dd>{lot.lot_id}</dd>", "2 of 3",
                     "In the cellar, yours", "Cave Test"):
        assert expected in text, expected


def test_bottle_page__own_bottle__facts_history_and_each_action_opens_its_page(two_cellars, cert):
    mine, _, lot = two_cellars

    page = mine.get(f"/app/bottles/{lot.token(2)}")

    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    for expected in ("Cuvée Essai", "2 of 3", "750 ml", "June 1, 2024", "Cave Test", "Domaine Test",
                     "In the cellar, yours", f'href="/verify/{lot.token(2)}"'):
        assert expected in text, expected
    assert re.search(r'<span lang="en">Lot \d+ issued by', page.text)
    assert re.search(r'<span lang="en">Moved from 0x', page.text)
    buttons = re.findall(r"<button type=\"button\" disabled>([^<]+)</button>", page.text)
    assert buttons == []  # every action of an active bottle has its page now
    actions = page.text.split("What you can do")[1].split("</section>")[0]
    links = re.findall(r'<a class="button" href="/app/bottles/\d+/(\w+)">([^<]+)</a>', actions)
    assert links == [("transfer", "Transfer to someone"), ("delivery", "Request delivery"),
                     ("flag", "Report lost or stolen"), ("borrow", "Borrow against it")]
    assert f'<form method="get" action="/app/bottles/{lot.token(2)}/gift">' in actions  # the gift's page
    assert actions.count("<form") == 1
    assert "Coming soon" not in page.text


@pytest.mark.parametrize("which", ["someone-elses", "the-issuers", "never-issued", "not-a-number", "too-big"])
def test_bottle_page__not_the_accounts_bottle__404_in_words_whoever_holds_it(two_cellars, which):
    mine, _, lot = two_cellars
    token = {"someone-elses": str(lot.token(3)), "the-issuers": str(lot.token(1)),
             "never-issued": str((10**6 << 32) | 1), "not-a-number": "0x01", "too-big": "9" * 80}[which]

    page = mine.get(f"/app/bottles/{token}")

    assert page.status_code == 404
    assert "This bottle is not in your cellar" in page.text
    assert "Cuvée Essai" not in page.text


@pytest.mark.parametrize("path", ["/app/cellar", "/app/account", f"/app/bottles/{1 << 32 | 1}", "/app"])
def test_pages__anonymous__sent_to_the_login_page(browser, path):
    response = browser.get(path)

    assert response.status_code == 303 and response.headers["location"] == "/app/login"


@pytest.mark.parametrize(("query", "header", "expected", "bottle"), [
    ("?lang=zh-CN", None, ["我的酒窖", "在酒窖中，归您所有", "年份"], "第 2 瓶，共 3 瓶"),
    ("", "fr-FR,fr;q=0.9", ["Ma cave", "En cave, à vous", "Millésime"], "2 sur 3"),
])
def test_cellar__in_chinese_and_french(two_cellars, query, header, expected, bottle):
    mine, _, _ = two_cellars

    page = mine.get(f"/app/cellar{query}", headers={"Accept-Language": header} if header else {})

    assert page.status_code == 200
    assert page.headers["content-language"] == ("zh-CN" if query else "fr")
    for text in [*expected, bottle]:
        assert text in page.text, text
    if query:  # the reader's choice follows every link and form
        assert 'href="/app/account?lang=zh-CN"' in page.text and 'action="/app/logout?lang=zh-CN"' in page.text


def test_login__wrong_password_in_chinese__the_message_in_chinese(browser):
    response = browser.post("/app/login?lang=zh-CN", data={"identifier": new_identifier(), "password": "nope"},
                            headers=SAME_ORIGIN)

    assert response.status_code == 401 and "账户名或密码错误" in response.text


def test_app_pages__only_own_scripts_forms_post_here_only_no_cache_referrer_kept_to_this_site(browser):
    signed_up(browser)

    for path in ("/app/cellar", "/app/account", "/app/login", "/app/signup"):
        if path == "/app/login":
            browser.cookies.clear()
        page = browser.get(path)
        assert page.status_code == 200
        # Scripts from this site only (the reader's time zone, web/static/tz.js; on the login page also its
        # "Connect a wallet", tests/web/test_app_wallet.py); no inline script or style.
        own = {'<script src="/static/tz.js" defer>'} | (
            {'<script src="/static/wallet.js" defer>'} if path == "/app/login" else set())
        assert set(re.findall(r"<script[^>]*>", page.text)) == own
        assert " style=" not in page.text
        assert "form-action 'self'" in page.headers["content-security-policy"]
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "same-origin"
        assert '<link rel="stylesheet" href="/static/app.css">' in page.text
    assert browser.get("/static/app.css").status_code == 200


# ------------------------------------------------------------ in a browser


@pytest.fixture
def served_app(api_settings):
    """The app served by uvicorn in a thread on a free local port, as a browser reaches it; its base URL."""
    from browser import serve_settings

    with serve_settings(api_settings) as served:
        yield served


SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def test_new_person__signs_up_on_a_phone__sees_the_bottle_they_were_sold_in_the_cellar(
        served_app, w3, cert, create_lot, winery):
    from types import SimpleNamespace

    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lot = create_lot(6)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            page = context.new_page()
            page.goto(f"{base}/app")
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()
            page.get_by_role("link", name="Create an account").click()
            page.get_by_label("Account name or email").fill("mei.lin@example.org")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("The same password again").fill(PASSWORD + " typo")
            page.get_by_role("button", name="Create my account").click()
            expect(page.get_by_text("The two passwords are not the same.")).to_be_visible()
            expect(page.get_by_label("Account name or email")).to_have_value("mei.lin@example.org")
            page.screenshot(path=str(SCREENSHOTS / "app-signup-error.png"), full_page=True)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("The same password again").fill(PASSWORD)
            page.get_by_role("button", name="Create my account").click()

            expect(page.get_by_role("heading", name="Your cellar is empty")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-cellar-empty.png"), full_page=True)
            cookie = next(c for c in context.cookies() if c["name"] == "amphora_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            address = page.locator("code").inner_text()
            cert.transferFrom(winery, address, lot.token(4), sender=winery)
            wait_indexed(w3, SimpleNamespace(app=app))

            page.reload()
            bottle = page.get_by_role("link", name="Cuvée Essai")
            expect(bottle).to_be_visible()
            expect(page.get_by_text("4 of 6")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
            page.screenshot(path=str(SCREENSHOTS / "app-cellar.png"), full_page=True)
            bottle.click()
            expect(page.get_by_role("heading", name="This bottle's history")).to_be_visible()
            expect(page.get_by_role("link", name="Transfer to someone")).to_be_visible()  # its page: test_app_moves
            page.screenshot(path=str(SCREENSHOTS / "app-bottle.png"), full_page=True)
            page.get_by_role("link", name="简体中文").click()
            expect(page.get_by_role("heading", name="此瓶的历史")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-bottle-zh.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.screenshot(path=str(SCREENSHOTS / "app-bottle-zh-desktop.png"), full_page=True)

            page.get_by_role("button", name="退出登录").click()
            expect(page.get_by_text("您已退出登录。")).to_be_visible()
            assert not [c for c in context.cookies() if c["name"] == "amphora_session"]
        finally:
            chromium.close()
    assert cert.ownerOf(lot.token(4)) == address
