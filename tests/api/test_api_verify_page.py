"""GET /verify/{token_id}: the page a bottle's QR code opens."""

from __future__ import annotations

import re
from html import escape

import pytest

from api.pages import COPY_NOTICE, shorten

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


def test_verify_page__issued__shows_wine_bottle_and_parties(client, lot, winery):
    response = client.get(f"/verify/{lot.token(3)}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert "Genuine certificate" in page
    for text in ("Cuvée Essai", "Domaine Test", "2019", "Pauillac AOC", "3 of 10", "750 ml", "2024-06-01",
                 "Cave Test", shorten(winery.address), str(lot.token(3))):
        assert text in page, text


def test_verify_page__issued__warns_that_a_qr_code_can_be_copied(client, lot):
    page = client.get(f"/verify/{lot.token(1)}").text

    assert escape(COPY_NOTICE) in page


def test_verify_page__self_contained__no_scripts_or_external_assets(client, lot):
    page = client.get(f"/verify/{lot.token(1)}").text

    assert "<script" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<style>" in page


def test_verify_page__html_in_strings__escaped(client, create_lot):
    lot = create_lot(3, producer="<b>x</b>", wine="<script>alert(1)</script>", region='Côte "&" <i>')

    page = client.get(f"/verify/{lot.token(2)}").text

    assert "<script>alert(1)</script>" not in page
    assert "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "Côte &quot;&amp;&quot; &lt;i&gt;" in page


def test_verify_page__sold__shows_shortened_holder(client, held_token, holder):
    page = client.get(f"/verify/{held_token}").text

    assert shorten(holder.address) in page
    assert "2 of 10" in page


def test_verify_page__flagged__warns_not_to_buy(client, cert, held_token, holder):
    cert.flag(held_token, b"\x02" * 32, sender=holder)

    page = client.get(f"/verify/{held_token}").text

    assert "Reported lost or stolen" in page
    assert "Do not buy this bottle" in page
    assert "Genuine certificate" not in page


def test_verify_page__never_issued__404_page_warns(client, lot):
    response = client.get(f"/verify/{lot.token(11)}")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No such certificate" in response.text
    assert "may not be genuine" in response.text


@pytest.mark.parametrize("raw", ["abc", "-5"])
def test_verify_page__malformed_token_id__422_page(client, raw):
    response = client.get(f"/verify/{raw}")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "Unreadable certificate number" in response.text


def test_verify_page__node_unreachable__503_page_says_nothing_about_bottle(make_client, lot):
    response = make_client(rpc_url="http://127.0.0.1:9", rpc_timeout=2).get(f"/verify/{lot.token(1)}")

    assert response.status_code == 503
    assert "temporarily unavailable" in response.text
    assert "This says nothing about the bottle" in response.text
    assert "may not be genuine" not in response.text
