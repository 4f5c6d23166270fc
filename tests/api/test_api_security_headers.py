"""Security headers on every response, and a /health that tells the public
only whether the service works."""

from __future__ import annotations

import re

import pytest
from api_fixtures import ADMIN_TOKEN, bearer

from api.security import sha256_source

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


def _csp(response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy, directive => sources."""
    policy = response.headers["content-security-policy"]
    directives = [part.split() for part in policy.split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


def _assert_common(response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = _csp(response)
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp.get("script-src", [])
    assert "'unsafe-eval'" not in csp.get("script-src", [])


@pytest.mark.parametrize("path", ["/health", "/certificates/1", "/openapi.json", "/no-such-route",
                                  "/verify/not-a-number"])
def test_security_headers__any_response__has_csp_nosniff_referrer_policy_and_no_framing(client, path):
    response = client.get(path)

    _assert_common(response)
    csp = _csp(response)
    assert csp["default-src"] == ["'none'"]
    assert "script-src" not in csp  # no script at all outside the docs pages
    assert csp["form-action"] == ["'self'"]  # the holder's app posts its forms to this origin, nowhere else


def test_security_headers__https_base_url__sends_hsts(client):
    assert client.get("/health").headers["strict-transport-security"].startswith("max-age=")


def test_security_headers__verification_page__styles_only_from_this_origin_and_no_script(client, held_token):
    response = client.get(f"/verify/{held_token}")

    assert response.status_code == 200
    _assert_common(response)
    page = response.content
    assert b"<script" not in page
    assert b"<style" not in page and b" style=" not in page  # nothing inline: the policy allows none
    assert re.findall(rb'<link rel="stylesheet" href="(/static/[a-z]+\.css)">', page)
    csp = _csp(response)
    assert csp["style-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:"]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_security_headers__docs_pages__every_inline_script_hashed_and_every_script_source_allowed(client, path):
    response = client.get(path)

    assert response.status_code == 200
    _assert_common(response)
    csp = _csp(response)
    page = response.content
    for script in re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.DOTALL):
        assert f"'{sha256_source(script)}'" in csp["script-src"]
    for source in re.findall(rb"<script[^>]*\bsrc=\"([^\"]+)\"", page):
        origin = re.match(rb"https?://[^/]+", source)
        assert (origin.group(0).decode() if origin else "'self'") in csp["script-src"]
    assert "'self'" in csp["connect-src"]  # the docs fetch /openapi.json


def test_health__anonymous__says_only_ok(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health__anonymous_with_relayer_below_minimum__says_only_degraded(make_client, relayer):
    response = make_client(auth=False, relayer_min_balance_wei=relayer.balance + 1).get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "degraded"}
    assert relayer.address not in response.text


def test_health__operator_token__shows_relayer_addresses_balances_and_queues(make_client, relayer):
    response = make_client(auth=False).get("/health", headers=bearer(ADMIN_TOKEN))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["relayer"]["address"] == relayer.address
    assert body["relayer"]["keys"][0]["balance_wei"] == str(relayer.balance)
    assert body["relayer"]["requests"] == {}


@pytest.mark.parametrize("headers", [bearer("wrong-token"), {"Authorization": "Basic abc"}, None])
def test_health__not_the_operator_token__public_answer_only(make_client, relayer, headers):
    # `client` sends its account's session token: an account is not the operator.
    response = make_client().get("/health", headers=headers)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert relayer.address not in response.text
