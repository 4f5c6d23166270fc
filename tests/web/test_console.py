"""The businesses' console front page (/console) on the test deployment, and the
server-drawn charts (:mod:`web.charts`, ``console/_chart.html``) every console uses."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_app_pages import signed_up  # noqa: E402

from web.charts import MAX_LABELS, bar_chart, nice_step  # noqa: E402
from web.render import ENV, Page  # noqa: E402

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


def words(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


@pytest.fixture
def business(make_browser):
    """A signed-in browser of a new account and its address."""
    browser = make_browser()
    signed_up(browser)
    return browser, browser.get("/me/roles", headers={
        "Authorization": "Bearer " + browser.cookies["__Host-amphora_session"]}).json()["address"]


def test_console__anonymous__to_the_login_page(make_browser):
    response = make_browser().get("/console")

    assert response.status_code == 303 and response.headers["location"] == "/app/login"


def test_console__a_holder__may_lend_and_is_told_how_to_get_the_rest(business):
    browser, address = business

    page = browser.get("/console")

    text = words(page)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'href="/console/lender"' in page.text and 'href="/console/issuer"' not in page.text
    assert "Roles your account does not hold" in text and "Winery" in text and address in text


def test_console__a_role_granted_on_chain__opens_its_section(business, cert, admin):
    browser, address = business
    cert.grant_issuer(address, "Domaine de la Console", sender=admin)

    page = browser.get("/console?lang=zh-CN")

    assert page.status_code == 200 and 'href="/console/issuer?lang=zh-CN"' in page.text
    assert "酒庄" in page.text and "商家控制台" in page.text


def test_app_navigation__links_the_console(business):
    browser, _ = business

    assert 'href="/console"' in browser.get("/app/cellar").text


# ------------------------------------------------------------------- charts


@pytest.mark.parametrize("top, step", [(0, 1.0), (4, 1.0), (9, 5.0), (10, 5.0), (1234, 500.0), (0.3, 0.1)])
def test_nice_step__a_round_step_covering_the_top_in_about_four(top, step):
    assert nice_step(top) == pytest.approx(step)


def test_bar_chart__the_tallest_bar_reaches_the_top_tick_and_zero_draws_nothing():
    chart = bar_chart("Scans per day", "scans", [("1 Dec", 0), ("2 Dec", 10), ("3 Dec", 5)])

    bars = chart.bars
    assert bars[0].height == 0 and bars[2].height == pytest.approx(bars[1].height / 2)
    assert chart.ticks[-1].value == 10 and bars[1].y == pytest.approx(chart.ticks[-1].y)
    assert [t.value for t in chart.ticks] == [0, 2.5, 5, 7.5, 10] or [t.value for t in chart.ticks] == [0, 5, 10]


def test_bar_chart__many_days__labels_thinned_to_fit():
    chart = bar_chart("Scans per day", "scans", [(f"d{i}", i) for i in range(90)])

    assert len(chart.labelled) <= MAX_LABELS and 0 in chart.labelled and len(chart.bars) == 90


def test_chart_template__svg_with_a_title_and_the_same_figures_as_a_table():
    chart = bar_chart("Scans per day", "scans", [("1 Dec", 1200), ("2 Dec", 3)])
    macro = ENV.from_string('{% from "console/_chart.html" import chart with context %}{{ chart(c, "scans") }}')

    html = macro.render(c=chart, page=Page("en"), _=lambda s: s)

    assert '<svg viewBox="0 0 480 220" role="img" aria-labelledby="scans-title"' in html
    assert re.search(r'<th scope="row">1 Dec</th><td>1,200</td>', html)
    assert "<title>2 Dec: 3 scans</title>" in html and 'style=' not in html
