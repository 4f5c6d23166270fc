"""Verification scans (api/scans.py): the "this code may have been copied"
signal counts distinct clients of the verification page, so no one client can
raise it; bots, API reads and repeated views do not count; nothing raw is
stored; old scans are pruned. On real SQLite and PostgreSQL databases, and
through the real page."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from api.scans import BURST, DAY_SECONDS, FLAGGED, REDEEMED, Client, ScanLog, is_bot, network_prefix, page_client
from storage.db import Database

#: The API fixtures, and a throwaway PostgreSQL server for the shared-database case.
pytest_plugins = ["api_fixtures", "pg"]

BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.0 Mobile/15E148 Safari/604.1")
PREVIEW_BOTS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "WhatsApp/2.23.20.0 A",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "curl/8.5.0",
    "",
]


def _client(n: int, agent: str = BROWSER) -> Client:
    """The ``n``-th client, each on its own /24."""
    return Client(network=network_prefix(f"10.{n // 256}.{n % 256}.1"), agent=agent)


def _log(where=None, window: int = 600, threshold: int = 20, **kwargs) -> ScanLog:
    return ScanLog(where, window_seconds=window, burst_threshold=threshold, **kwargs)


# ------------------------------------------------------------------ the log


def test_record__one_client_views_25_times__counts_once_and_never_bursts():
    log = _log()
    answers = [log.record(7, _client(1), redeemed=False, flagged=False, now=1_000 + i) for i in range(25)]

    assert [a.anomalies for a in answers] == [[]] * 25
    assert (answers[-1].total, answers[-1].recent, answers[-1].day) == (1, 1, 1)


def test_record__more_distinct_clients_than_threshold__burst():
    log = _log(threshold=20)
    answers = [log.record(7, _client(n), redeemed=False, flagged=False, now=1_000 + n) for n in range(21)]

    assert answers[19].anomalies == [] and answers[20].anomalies == [BURST]
    assert answers[20].recent == 21


def test_record__one_network_rotating_user_agents__counts_as_at_most_two_clients():
    log = _log(threshold=3)
    for n in range(30):
        summary = log.record(7, Client(network=network_prefix(f"203.0.113.{n}"), agent=f"{BROWSER} v{n}"),
                             redeemed=False, flagged=False, now=1_000 + n)

    assert summary.recent == 2 and summary.anomalies == []


def test_record__clients_spread_over_the_day__day_threshold_bursts():
    log = _log(window=60, threshold=20, day_threshold=5)
    answers = [log.record(7, _client(n), redeemed=False, flagged=False, now=1_000 + 600 * n) for n in range(6)]

    assert [a.recent for a in answers] == [1] * 6
    assert answers[4].anomalies == [] and answers[5].anomalies == [BURST]


def test_record__api_read_or_bot__not_recorded_but_summarised():
    log = _log()
    log.record(7, _client(1), redeemed=False, flagged=False, now=1_000)

    summary = log.record(7, None, redeemed=False, flagged=False, now=1_001)

    assert (summary.total, summary.recent) == (1, 1)


def test_record__old_clients_leave_the_window_and_the_retention_period():
    log = _log(window=60, threshold=3, retention_days=1)
    for n in range(4):
        log.record(7, _client(n), redeemed=False, flagged=False, now=1_000 + n)
    later = log.record(7, _client(9), redeemed=False, flagged=False, now=1_000 + 120)
    assert (later.total, later.recent, later.anomalies) == (5, 1, [])

    after_retention = log.record(7, _client(10), redeemed=False, flagged=False, now=1_000 + DAY_SECONDS + 500)

    assert after_retention.total == 1  # the first five were deleted
    with log._db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM scan_views")["n"] == 1
        assert [row["day"] for row in tx.all("SELECT day FROM scan_salts")] == [
            int((1_000 + DAY_SECONDS + 500) // DAY_SECONDS)]  # yesterday's salt is gone


def test_record__redeemed_or_flagged__reported():
    log = _log()
    assert log.record(1, None, redeemed=True, flagged=False).anomalies == [REDEEMED]
    assert log.record(2, None, redeemed=False, flagged=True).anomalies == [FLAGGED]


def test_record__file_database__shared_by_two_logs_and_survives_reopening(tmp_path):
    path = tmp_path / "scans.sqlite"
    first, second = _log(path), _log(path)
    first.record(9, _client(1), redeemed=False, flagged=False, now=1_000)
    assert second.record(9, _client(2), redeemed=False, flagged=False, now=1_001).recent == 2
    first.close()
    second.close()
    assert _log(path).record(9, _client(3), redeemed=False, flagged=False, now=1_002).total == 3


def test_record__concurrent_threads__no_client_lost(tmp_path):
    log = _log(tmp_path / "scans.sqlite", threshold=10_000)

    def scan(thread: int) -> None:
        for n in range(25):
            log.record(3, _client(thread * 25 + n), redeemed=False, flagged=False, now=1_000)

    threads = [threading.Thread(target=scan, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.record(3, None, redeemed=False, flagged=False, now=1_001).recent == 200


def test_scan_log__two_instances_on_postgresql__share_the_counts_and_the_salt(postgres_url):
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        _log(first, threshold=2).record(7, _client(1), redeemed=False, flagged=False, now=1_000)
        _log(second, threshold=2).record(7, _client(1), redeemed=False, flagged=False, now=1_001)  # same client
        _log(second, threshold=2).record(7, _client(2), redeemed=False, flagged=False, now=1_002)

        summary = _log(first, threshold=2).record(7, _client(3), redeemed=False, flagged=False, now=1_003)
    finally:
        first.close()
        second.close()

    assert (summary.total, summary.recent, summary.anomalies) == (3, 3, ["burst"])


def test_network_prefix__ipv4_24_ipv6_48_and_mapped():
    assert network_prefix("192.0.2.77") == "192.0.2.0/24"
    assert network_prefix("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert network_prefix("::ffff:192.0.2.77") == "192.0.2.0/24"


def test_is_bot__link_previews_and_scripts_are_bots_a_phone_browser_is_not():
    assert all(is_bot(agent) for agent in PREVIEW_BOTS)
    assert not is_bot(BROWSER)
    assert page_client("192.0.2.1", PREVIEW_BOTS[0]) is None


# ------------------------------------------------------------------ through the page


def _page(app, token_id: int, host: str, agent: str = BROWSER):
    return TestClient(app, client=(host, 50_000)).get(f"/verify/{token_id}", headers={"User-Agent": agent})


def test_page__21_views_from_one_client__no_copied_code_warning(make_client, held_token):
    client = make_client(auth=False)
    client.headers["User-Agent"] = BROWSER

    pages = [client.get(f"/verify/{held_token}") for _ in range(22)]

    assert all(p.status_code == 200 for p in pages)
    assert "banner ok" in pages[-1].text and "Many different people" not in pages[-1].text
    assert client.get(f"/certificates/{held_token}").json()["scans"]["recent"] == 1


def test_page__many_distinct_clients__warning_and_no_green_banner(make_client, held_token):
    app = make_client(auth=False, scan_burst_threshold=3).app

    pages = [_page(app, held_token, f"198.51.{n}.10") for n in range(4)]

    assert "Many different people" not in pages[2].text and "banner ok" in pages[2].text
    last = pages[3].text
    assert "Many different people checked this code" in last and "4 different visitors" in last
    assert "banner ok" not in last  # the top banner no longer says all is well
    assert "Genuine certificate — check this bottle" in last


def test_page__bots_and_api_reads__never_count(make_client, held_token):
    client = make_client(auth=False, scan_burst_threshold=1)
    app = client.app

    for n, agent in enumerate(PREVIEW_BOTS):
        assert _page(app, held_token, f"198.51.{n}.10", agent).status_code == 200
    for _ in range(5):
        client.get(f"/certificates/{held_token}")

    scans = client.get(f"/certificates/{held_token}").json()["scans"]
    assert (scans["total"], scans["recent"], scans["anomalies"]) == (0, 0, [])


def test_page__scans_stored__no_raw_address_or_user_agent(make_client, held_token):
    app = make_client(auth=False).app
    for n in range(3):
        _page(app, held_token, f"198.51.{n}.77")

    with app.state.scans._db.transaction() as tx:
        rows = tx.all("SELECT * FROM scan_views") + tx.all("SELECT * FROM scan_salts")
    stored = repr(rows)
    assert len(rows) == 4
    assert "198.51." not in stored and "iPhone" not in stored and "Mozilla" not in stored
