"""The operator's console (/console/operator): its own sign-in with the operator
token, the views built on the /admin routes, a quota changed by identifier and
kept in the audit log, and the journey in Chromium at phone size. Every refusal
is checked to have changed nothing through the JSON API."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import ADMIN_TOKEN, bearer, sign_up  # noqa: E402
from test_app_pages import signed_up  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

BASE = "https://testserver"
SAME_ORIGIN = {"Origin": BASE}
COOKIE = "__Secure-amphora_operator"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
OPERATOR = bearer(ADMIN_TOKEN)


def words(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def signed_in(browser, token: str = ADMIN_TOKEN):
    """Sign the browser in as the operator through the form; the sign-in's answer."""
    return browser.post("/console/operator/sign-in", data={"token": token}, headers=SAME_ORIGIN)


def csrf_of(browser) -> str:
    page = browser.get("/console/operator")
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)


def quota_of(browser, account: str) -> dict:
    return browser.get(f"/admin/quotas/{account}", headers=OPERATOR).json()


def audit_of(browser) -> list[dict]:
    return browser.get("/admin/audit", headers=OPERATOR).json()["entries"]


@pytest.fixture
def operator(make_browser):
    """A browser signed in as the operator."""
    browser = make_browser()
    assert signed_in(browser).status_code == 303
    return browser


@pytest.fixture
def account(operator):
    """A custodial account on the operator's app: its signup answer (``user_id``, ``identifier``)."""
    return sign_up(operator)


# ------------------------------------------------------------ signing in


def test_operator_page__without_the_operator_cookie__the_sign_in_form_only(make_browser):
    page = make_browser().get("/console/operator")

    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'action="/console/operator/sign-in"' in page.text and 'type="password"' in page.text
    assert "Usage and quotas today" not in page.text


def test_operator_page__a_holders_session_alone__opens_nothing(make_browser):
    browser = make_browser()
    signed_up(browser)

    page = browser.get("/console/operator")

    assert "Operator sign-in" in words(page) and "Usage and quotas today" not in page.text


def test_sign_in__the_right_token__a_strict_httponly_secure_cookie_for_the_operator_pages_only(make_browser):
    browser = make_browser()

    response = signed_in(browser)

    assert response.status_code == 303 and response.headers["location"] == "/console/operator"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={ADMIN_TOKEN};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/console/operator"} <= attributes
    page = browser.get("/console/operator")
    assert page.status_code == 200 and "Usage and quotas today" in page.text and "Relayer keys" in page.text


def test_sign_in__a_holders_session_kept__and_the_operator_cookie_not_sent_to_the_app(make_browser):
    browser = make_browser()
    signed_up(browser)
    signed_in(browser)

    jar = {(c.name, c.path) for c in browser.cookies.jar}

    assert ("__Host-amphora_session", "/") in jar and (COOKIE, "/console/operator") in jar


@pytest.mark.parametrize("token", ["", "wrong", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1], ADMIN_TOKEN.upper()])
def test_sign_in__a_wrong_token__401_no_cookie_and_nothing_opened(make_browser, token):
    browser = make_browser()

    response = signed_in(browser, token)

    assert response.status_code == 401 and "set-cookie" not in response.headers
    assert "That is not the operator token" in words(response)
    assert "Usage and quotas today" not in browser.get("/console/operator").text


def test_sign_in__guessing__throttled_like_logins_even_for_the_right_token_then(make_browser):
    browser = make_browser(password_attempts_per_minute=2)
    answers = [signed_in(browser, f"guess-{i}").status_code for i in range(3)]

    then = signed_in(browser)

    assert answers[:2] == [401, 401] and answers[2] == 429
    assert then.status_code == 429 and "set-cookie" not in then.headers and int(then.headers["Retry-After"]) > 0
    assert "Too many attempts" in words(then)


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {}],
                         ids=["other-origin", "fetch-cross-site", "no-origin"])
def test_sign_in__not_from_this_sites_page__403_and_no_cookie(make_browser, headers):
    response = make_browser().post("/console/operator/sign-in", data={"token": ADMIN_TOKEN}, headers=headers)

    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_sign_in__no_operator_token_configured__503_in_words(make_browser):
    browser = make_browser(admin_token=None)

    page = browser.get("/console/operator")
    tried = signed_in(browser, "anything")

    assert page.status_code == tried.status_code == 503
    assert "AMPHORA_ADMIN_TOKEN" in words(page) and "set-cookie" not in tried.headers


def test_operator_page__a_forged_cookie__the_sign_in_form(make_browser):
    browser = make_browser()
    browser.cookies.set(COOKIE, "forged-" + ADMIN_TOKEN, domain="testserver", path="/console/operator")

    assert "Usage and quotas today" not in browser.get("/console/operator").text


def test_sign_out__forgets_the_cookie(operator):
    response = operator.post("/console/operator/sign-out", data={"csrf": csrf_of(operator)}, headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/console/operator?done=signed-out"
    assert f'{COOKIE}=""' in response.headers["set-cookie"]
    assert "You are signed out of the operator console" in words(operator.get(response.headers["location"]))


# ------------------------------------------------------------ the views


def test_dashboard__usage_by_identifier_not_id__relayer_balance_and_chart(operator, account, w3, relayer):
    operator.put(f"/admin/quotas/{account['user_id']}", json={"actions_per_day": 9, "gas_per_day": 9_000_000},
                 headers=OPERATOR)
    with operator.app.state.db.transaction() as tx:  # a day of use, as the relayer charges it
        tx.execute("INSERT INTO relay_usage (day, account, actions, gas) VALUES (date('now'), ?, 2, 150000)",
                   (account["user_id"],))

    page = operator.get("/console/operator")

    text = words(page)
    assert account["identifier"] in text and account["user_id"] not in page.text
    assert relayer.address in page.text
    assert '<svg viewBox="0 0 480 220" role="img" aria-labelledby="gas-chart-title"' in page.text
    assert "Sponsored gas per day" in text and "150,000" in text
    assert f"Quota of {account['identifier']}" in text and "9 actions, 9,000,000 gas" in text
    # No inline style or script: the only script is the app's own time-zone one, from this site.
    assert "style=" not in page.text and re.findall(r"<script[^>]*>", page.text) == [
        '<script src="/static/tz.js" defer>']


def test_dashboard__an_identifier_with_markup__shown_as_text(operator):
    hostile = sign_up(operator, identifier="<img/src=x/onerror=alert(1)>")
    operator.post("/console/operator/quotas", data={"csrf": csrf_of(operator), "account": hostile["identifier"],
                  "actions_per_day": "1", "gas_per_day": "1"}, headers=SAME_ORIGIN)

    page = operator.get("/console/operator")

    assert "&lt;img/src=x/onerror=alert(1)&gt;" in page.text and "<img/src" not in page.text


def test_dashboard__in_french__numbers_and_words_in_french(operator):
    page = operator.get("/console/operator?lang=fr")

    assert page.status_code == 200 and "Console de l’opérateur" in page.text


# ------------------------------------------------------------ a quota by identifier


def test_quota_form__sets_the_accounts_quota_by_identifier_and_logs_it(operator, account):
    response = operator.post("/console/operator/quotas", data={
        "csrf": csrf_of(operator), "account": account["identifier"].upper(), "actions_per_day": "4",
        "gas_per_day": "800000"}, headers=SAME_ORIGIN)

    assert response.status_code == 303
    assert quota_of(operator, account["user_id"])["actions_per_day"] == 4
    assert quota_of(operator, account["user_id"])["gas_per_day"] == 800_000
    entry = audit_of(operator)[0]
    assert (entry["subject"], entry["new"]) == (account["user_id"], {"actions_per_day": 4, "gas_per_day": 800_000})
    assert "is changed" in words(operator.get(response.headers["location"]))


def test_quota_form__sent_twice__one_change_in_the_log(operator, account):
    form = {"csrf": csrf_of(operator), "account": account["identifier"], "actions_per_day": "5",
            "gas_per_day": "500000"}

    answers = [operator.post("/console/operator/quotas", data=form, headers=SAME_ORIGIN) for _ in range(2)]

    assert [a.status_code for a in answers] == [303, 303]
    assert [e["subject"] for e in audit_of(operator)].count(account["user_id"]) == 1


def test_quota_form__the_services_row_by_its_star(operator):
    operator.post("/console/operator/quotas", data={"csrf": csrf_of(operator), "account": "*",
                  "actions_per_day": "100000", "gas_per_day": "7000000000"}, headers=SAME_ORIGIN)

    assert quota_of(operator, "*")["gas_per_day"] == 7_000_000_000


@pytest.mark.parametrize("field, value, error", [
    ("account", "nobody-by-this-name", "No account has this name."),
    ("account", "", "No account has this name."),
    ("actions_per_day", "-1", "Enter a whole number, 0 or more."),
    ("gas_per_day", "lots", "Enter a whole number, 0 or more."),
    ("gas_per_day", str(2**63), "Enter a whole number, 0 or more."),
])
def test_quota_form__bad_field__422_with_the_error_beside_it_and_nothing_changed(operator, account, field, value,
                                                                                 error):
    before = quota_of(operator, account["user_id"])
    form = {"csrf": csrf_of(operator), "account": account["identifier"], "actions_per_day": "3",
            "gas_per_day": "300000", field: value}

    response = operator.post("/console/operator/quotas", data=form, headers=SAME_ORIGIN)

    assert response.status_code == 422 and error in words(response)
    assert 'aria-invalid="true"' in response.text and f'value="{value}"' in response.text
    assert quota_of(operator, account["user_id"]) == before and audit_of(operator) == []


@pytest.mark.parametrize("csrf, headers", [
    (None, SAME_ORIGIN), ("0" * 64, SAME_ORIGIN), ("own", {"Origin": "https://evil.example"}),
], ids=["no-token", "wrong-token", "other-origin"])
def test_quota_form__forged__403_and_nothing_changed(operator, account, csrf, headers):
    before = quota_of(operator, account["user_id"])
    form = {"account": account["identifier"], "actions_per_day": "0", "gas_per_day": "0"}
    if csrf is not None:
        form["csrf"] = csrf_of(operator) if csrf == "own" else csrf

    response = operator.post("/console/operator/quotas", data=form, headers=headers)

    assert response.status_code == 403
    assert quota_of(operator, account["user_id"]) == before and audit_of(operator) == []


def test_quota_form__a_holder_without_the_operator_cookie__sent_to_the_sign_in_and_nothing_changed(
        make_browser, operator, account):
    holder = make_browser()
    signed_up(holder)
    before = quota_of(operator, account["user_id"])
    holder_csrf = CSRF.search(holder.get("/app/account").text).group(1)

    response = holder.post("/console/operator/quotas", data={
        "csrf": holder_csrf, "account": account["identifier"], "actions_per_day": "0", "gas_per_day": "0"},
        headers=SAME_ORIGIN)

    assert response.status_code == 303 and response.headers["location"] == "/console/operator"
    assert quota_of(operator, account["user_id"]) == before


# ------------------------------------------------------------ in a browser


@pytest.fixture
def served(api_settings):
    from browser import serve_settings

    with serve_settings(api_settings) as served:
        yield served


def test_operator__signs_in_and_sets_an_accounts_quota_to_zero__the_api_refuses_its_next_relay(
        served, cert, held_token, holder, recipient, transfer_body):
    from browser import chromium, screenshot, tab
    from playwright.sync_api import expect

    _, base = served
    with httpx.Client(base_url=base) as api:
        customer = sign_up(api)
    with chromium() as browser, tab(browser, "phone") as visit:
        page = visit.page
        page.goto(f"{base}/console/operator")
        expect(page.get_by_role("heading", name="Operator sign-in")).to_be_visible()
        page.get_by_label("Operator token").fill("not the token")
        page.get_by_role("button", name="Sign in as the operator").click()
        expect(page.get_by_role("alert")).to_contain_text("That is not the operator token")
        screenshot(page, "console-operator-sign-in")
        page.get_by_label("Operator token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in as the operator").click()
        expect(page.get_by_role("heading", name="Operator console")).to_be_visible()
        quota = page.locator("form", has=page.get_by_role("button", name="Set the quota"))
        quota.get_by_label("Account to limit").fill(customer["identifier"])
        quota.get_by_label("Relayed actions a day").fill("0")
        quota.get_by_label("Gas a day").fill("0")
        quota.get_by_role("button", name="Set the quota").click()
        expect(page.get_by_role("status")).to_contain_text("The daily quota is changed")
        expect(page.get_by_role("cell", name=f"Quota of {customer['identifier']}")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "console-operator-dashboard")
        assert not visit.errors and not visit.failed

    with httpx.Client(base_url=base) as api:
        refused = api.post("/relay/transfers", json=transfer_body(holder, recipient, held_token),
                           headers=bearer(customer["token"]))
        quota = api.get(f"/admin/quotas/{customer['user_id']}", headers=OPERATOR).json()
    assert refused.status_code == 429 and "your account's daily quota of 0" in refused.json()["detail"]
    assert (quota["actions_per_day"], quota["gas_per_day"]) == (0, 0)
    assert cert.ownerOf(held_token) == holder.address
