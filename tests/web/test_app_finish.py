"""The holder app's last pieces (issue 15): dates and times in the reader's zone, the live
activity stream, and the report-lost journey in Chromium at phone size, on the test
deployment (anvil) with the relayer's outbox and the session's index.

The stream is read by a real HTTP client (httpx) from the app served by uvicorn, while a
request confirms on the node."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import httpx
import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

import test_app_moves  # noqa: E402
import test_app_pages  # noqa: E402
from api_fixtures import (  # noqa: E402
    ADMIN_TOKEN,
    PASSWORD,
    bearer,
    manual_mining,
    node_rpc,
    wait_for_status,
    wait_indexed,
)
from test_app_moves import address_of, form, post, relayed  # noqa: E402
from test_app_pages import COOKIE, CSRF, SAME_ORIGIN, SCREENSHOTS, signed_up  # noqa: E402

from web.app import moves  # noqa: E402

pytest_plugins = ["api_fixtures"]

#: The fixtures of the moves' and the pages' tests: two holders of a fresh lot; the app served by uvicorn.
holders = test_app_moves.holders
served_app = test_app_pages.served_app

BASE = "https://testserver"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FLAGGED = 5


def flat(html: str) -> str:
    """A page's text with its spaces (narrow and no-break ones too) as single spaces."""
    return re.sub(r"[\s\u202f\u00a0]+", " ", html)


def english_medium(moment: datetime) -> str:
    """How an English page writes ``moment`` (``Dec 7, 2026, 5:03:09 AM``), built without Babel."""
    hour = moment.hour % 12 or 12
    return f"{moment:%b} {moment.day}, {moment.year}, {hour}:{moment:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"


def transferred(holders) -> dict:
    """The first browser's bottle 2 transferred to the second; the confirmed request."""
    mine, theirs, _, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    post(mine, path, **form(mine, path), recipient=address_of(theirs), to=address_of(theirs), confirmed="yes")
    request = relayed(mine)[0]
    wait_for_status(mine, request["request_id"], "confirmed")
    return request


def with_cookies(app, session: str, zone: str) -> TestClient:
    """A client sending exactly the session cookie and ``amphora_tz=<zone>`` (raw, as a forger would)."""
    client = TestClient(app, base_url=BASE, follow_redirects=False)
    client.headers["Cookie"] = f"{COOKIE}={session}; amphora_tz={zone}"
    return client


# ------------------------------------------------------------ times


def test_activity__reader_in_shanghai__times_written_in_china_time_and_named(holders):
    mine = holders[0]
    request = transferred(holders)
    local = datetime.fromtimestamp(int(request["created_at"]), SHANGHAI)

    page = with_cookies(mine.app, mine.cookies[COOKIE], "Asia/Shanghai").get("/app/activity")
    plain = mine.get("/app/activity")

    assert page.status_code == 200
    assert f"{english_medium(local)} (China Standard Time)" in flat(page.text)
    utc = datetime.fromtimestamp(int(request["created_at"]), ZoneInfo("UTC"))
    assert f"{english_medium(utc)} (Coordinated Universal Time)" in flat(plain.text)


def test_activity__same_zone_in_chinese__written_the_chinese_way(holders):
    mine = holders[0]
    request = transferred(holders)
    local = datetime.fromtimestamp(int(request["created_at"]), SHANGHAI)

    page = with_cookies(mine.app, mine.cookies[COOKIE], "Asia/Shanghai").get("/app/activity?lang=zh-CN")

    assert f"{local.year}年{local.month}月{local.day}日 {local:%H:%M:%S} (中国标准时间)" in flat(page.text)


#: Cookie values no zone is read from: unknown, a path, encoded, too long, half-quoted, markup, out of range, empty.
FORGED_ZONES = ("Mars/Olympus_Mons", "../../../etc/passwd", "Asia/Shanghai%00", "x" * 4000, '"Asia/Shanghai',
                "<script>", "Etc/GMT+25", "")


def test_activity__forged_time_zone_cookie__page_in_utc_and_nothing_kept(holders):
    mine = holders[0]
    transferred(holders)

    for forged in FORGED_ZONES:
        page = with_cookies(mine.app, mine.cookies[COOKIE], forged).get("/app/activity")

        assert page.status_code == 200, forged
        assert "(Coordinated Universal Time)" in page.text and "<script>" not in page.text.replace(
            '<script src="/static/tz.js" defer>', "").replace('<script src="/static/activity.js" defer>', "")
        assert "set-cookie" not in page.headers
        assert '<meta name="amphora-tz" content="UTC" data-reload="yes">' in page.text


def test_account__time_zone_chosen__kept_for_the_app_pages_in_a_lax_secure_cookie(make_browser):
    browser = make_browser()
    signed_up(browser)
    account = browser.get("/app/account")
    assert '<option value="Asia/Shanghai">Asia/Shanghai</option>' in account.text

    chosen = browser.post("/app/timezone", data={"csrf": CSRF.search(account.text).group(1),
                                                 "tz": "Asia/Shanghai"}, headers=SAME_ORIGIN)

    assert chosen.status_code == 303 and chosen.headers["location"] == "/app/account?done=timezone"
    cookie = chosen.headers["set-cookie"]
    assert cookie.startswith("amphora_tz=") and "Asia/Shanghai" in cookie
    assert "Path=/app" in cookie and "SameSite=lax" in cookie and "Secure" in cookie and "HttpOnly" not in cookie
    again = browser.get("/app/account?done=timezone")
    assert '<option value="Asia/Shanghai" selected>' in again.text
    assert "Dates and times now show in the time zone you chose." in again.text
    # Chosen empty: the preference is forgotten (the page's script takes the device's zone again).
    forgotten = browser.post("/app/timezone", data={"csrf": CSRF.search(account.text).group(1), "tz": ""},
                             headers=SAME_ORIGIN)
    assert forgotten.status_code == 303 and 'amphora_tz="";' in forgotten.headers["set-cookie"] or \
        "Max-Age=0" in forgotten.headers["set-cookie"]


def test_account__unknown_time_zone__422_in_words_and_nothing_kept(make_browser):
    browser = make_browser()
    signed_up(browser)
    csrf = CSRF.search(browser.get("/app/account").text).group(1)

    for zone in ("Mars/Olympus_Mons", "asia/shanghai", "UTC; Path=/", "x" * 100):
        answer = browser.post("/app/timezone", data={"csrf": csrf, "tz": zone}, headers=SAME_ORIGIN)

        assert answer.status_code == 422 and "Please choose a time zone from the list." in answer.text, zone
        assert "set-cookie" not in answer.headers


def test_account__time_zone_form_from_another_site_or_without_token__403_and_nothing_kept(make_browser):
    browser = make_browser()
    signed_up(browser)
    csrf = CSRF.search(browser.get("/app/account").text).group(1)

    elsewhere = browser.post("/app/timezone", data={"csrf": csrf, "tz": "Asia/Shanghai"},
                             headers={"Origin": "https://attacker.example"})
    no_token = browser.post("/app/timezone", data={"tz": "Asia/Shanghai"}, headers=SAME_ORIGIN)

    assert [elsewhere.status_code, no_token.status_code] == [403, 403]
    assert "set-cookie" not in elsewhere.headers and "set-cookie" not in no_token.headers


def test_verification_page__time_zone_cookie__neither_read_nor_set(holders):
    mine, _, _, lot = holders
    transferred(holders)

    plain = mine.get(f"/verify/{lot.token(2)}")
    forged = with_cookies(mine.app, mine.cookies[COOKIE], "Asia/Shanghai").get(f"/verify/{lot.token(2)}")

    assert plain.status_code == forged.status_code == 200
    assert "(UTC)" in forged.text and "China Standard Time" not in forged.text
    assert "set-cookie" not in forged.headers and "tz.js" not in forged.text
    assert "script-src" not in forged.headers["content-security-policy"]


# ------------------------------------------------------------ live activity


def events(lines: Iterator[str], until, seen: list[dict], timeout: float = 20.0) -> None:
    """Read server-sent events from a stream's ``lines`` into ``seen`` until ``until(seen)``."""
    deadline = time.monotonic() + timeout
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            seen.append({"event": name, **json.loads(line.removeprefix("data: "))})
            if until(seen):
                return
        assert time.monotonic() < deadline, f"no such event in time: {seen}"


@pytest.fixture
def served_holder(served_app, w3, cert, create_lot, winery):
    """A person signed up on the served app (a plain HTTP client keeping the cookie) holding bottle 2
    of a fresh lot: (app, base URL, client, token id)."""
    app, base = served_app
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    assert client.post("/app/signup", data={"identifier": f"live-{time.monotonic_ns()}", "password": PASSWORD,
                                            "confirm": PASSWORD}, headers={"Origin": base}).status_code == 303
    address = client.get("/me", headers=bearer(client.cookies["amphora_session"])).json()["address"]
    lot = create_lot(2)
    cert.transferFrom(winery, address, lot.token(2), sender=winery)
    wait_indexed(w3, SimpleNamespace(app=app))
    yield app, base, client, lot.token(2)
    client.close()


def test_activity_events__http_client_reads_pending_then_confirmed_while_the_report_confirms(served_holder, w3):
    app, base, client, token = served_holder
    path = f"/app/bottles/{token}/flag"
    page = client.get(path).text
    fields = {"csrf": CSRF.search(page).group(1), "once": re.search(r'name="once" value="([^"]+)"', page).group(1)}
    seen: list[dict] = []

    with manual_mining(w3):
        sent = client.post(path, data={**fields, "reason": "Left in a taxi"}, headers={"Origin": base})
        assert sent.status_code == 303
        with client.stream("GET", "/app/activity/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            lines = stream.iter_lines()
            events(lines, lambda s: any(e["event"] == "status" for e in s), seen)
            assert seen[0]["status"] == "pending"
            node_rpc(w3, "evm_mine")  # the report confirms while the stream is open
            events(lines, lambda s: s[-1].get("status") == "confirmed", seen)

    request_id = seen[0]["request_id"]
    assert all(e["request_id"] == request_id for e in seen if e["event"] == "status")
    confirmed = seen[-1]
    assert re.fullmatch(r"0x[0-9a-f]{64}", confirmed["tx_hash"])
    assert w3.eth.get_transaction_receipt(confirmed["tx_hash"])["status"] == 1


def test_activity_events__another_accounts_stream__sees_none_of_this_accounts_requests(served_holder, w3):
    app, base, client, token = served_holder
    path = f"/app/bottles/{token}/flag"
    page = client.get(path).text
    client.post(path, data={"csrf": CSRF.search(page).group(1), "reason": "Lost in the move",
                            "once": re.search(r'name="once" value="([^"]+)"', page).group(1)},
                headers={"Origin": base})
    other = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    assert other.post("/app/signup", data={"identifier": f"other-{time.monotonic_ns()}", "password": PASSWORD,
                                           "confirm": PASSWORD}, headers={"Origin": base}).status_code == 303
    lines: list[str] = []

    with other.stream("GET", "/app/activity/events") as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if len(lines) >= 2:  # the retry line, and the blank line after it
                break
    time.sleep(moves.STREAM_POLL_SECONDS * 1.5)

    assert lines[0] == f"retry: {moves.RETRY_MS}" and not any(line.startswith("data:") for line in lines)
    other.close()


def test_activity_events__without_a_session__401_and_no_stream(served_app):
    _, base = served_app
    with httpx.Client(base_url=base) as anonymous:
        answer = anonymous.get("/app/activity/events", headers={"Cookie": "amphora_session=amph_s_forged"})

    assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/plain")


def test_activity_events__more_streams_than_the_cap__429_until_one_closes(served_holder):
    app, base, client, _ = served_holder
    opened = [client.stream("GET", "/app/activity/events") for _ in range(moves.STREAMS_PER_ACCOUNT)]
    streams = [context.__enter__() for context in opened]
    try:
        assert [s.status_code for s in streams] == [200] * moves.STREAMS_PER_ACCOUNT
        refused = client.get("/app/activity/events")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    finally:
        opened.pop().__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while sum(app.state.activity_streams.open.values()) >= moves.STREAMS_PER_ACCOUNT:
        assert time.monotonic() < deadline  # the server notices the closed stream at its next read
        time.sleep(0.1)
    with client.stream("GET", "/app/activity/events") as again:
        assert again.status_code == 200
    for context in opened:
        context.__exit__(None, None, None)


def test_activity_events__session_logged_out__the_open_stream_ends(served_holder, monkeypatch):
    app, base, client, _ = served_holder
    monkeypatch.setattr(moves, "HEARTBEAT_SECONDS", 0.2)
    seen: list[dict] = []

    with client.stream("GET", "/app/activity/events") as stream:
        app.state.users.logout(client.cookies["amphora_session"])  # logged out elsewhere (another tab)
        events(stream.iter_lines(), lambda s: bool(s) and s[-1]["event"] == "end", seen, timeout=10)

    assert seen[-1] == {"event": "end", "reason": "session"}


def test_activity_events__stream_ends_by_itself_after_its_time(served_holder, monkeypatch):
    app, base, client, _ = served_holder
    monkeypatch.setattr(moves, "STREAM_SECONDS", 1.5)
    started = time.monotonic()
    seen: list[dict] = []

    with client.stream("GET", "/app/activity/events") as stream:
        events(stream.iter_lines(), lambda s: s[-1]["event"] == "end", seen, timeout=10)

    assert seen[-1] == {"event": "end", "reason": "time"} and time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while app.state.activity_streams.open:  # its place given back once the response is complete
        assert time.monotonic() < deadline, app.state.activity_streams.open
        time.sleep(0.05)


# ------------------------------------------------------------ in a browser


def test_report_lost__on_a_phone_in_shanghai__live_activity_then_the_public_page_warns(
        served_app, w3, cert, create_lot, winery):
    from browser import sign_up_in_browser
    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lot = create_lot(2)
    token = lot.token(2)
    reason = "Stolen from my hotel room in Chengdu, 3 May"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB", timezone_id="Asia/Shanghai")
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda m: problems.append(f"{m.text} {m.location.get('url')}")
                    if m.type == "error" and not str(m.location.get("url")).endswith("/favicon.ico") else None)
            sign_up_in_browser(page, base, f"zhang.min.{time.monotonic_ns()}@example.org", PASSWORD)
            assert {c["name"]: c for c in context.cookies()}["amphora_tz"]["value"] == "Asia/Shanghai"
            address = page.locator("code").inner_text()
            cert.transferFrom(winery, address, token, sender=winery)
            wait_indexed(w3, SimpleNamespace(app=app))

            page.goto(f"{base}/app/bottles/{token}")
            page.get_by_role("link", name="Report lost or stolen").click()
            page.get_by_label("What happened").fill(reason)
            page.screenshot(path=str(SCREENSHOTS / "app-finish-report-form.png"), full_page=True)
            with manual_mining(w3):
                page.get_by_role("button", name="Report it").click()
                page.goto(f"{base}/app/activity")
                row = page.locator("li[data-request]").first
                expect(row.get_by_text("Waiting for the blockchain")).to_be_visible()
                page.evaluate("window.notReloaded = true")
                page.screenshot(path=str(SCREENSHOTS / "app-finish-activity-pending.png"), full_page=True)
                node_rpc(w3, "evm_mine")
                # The row turns without the page reloading: the stream told the script.
                expect(row.get_by_text("Done, on the blockchain")).to_be_visible(timeout=15_000)
                assert page.evaluate("window.notReloaded") is True
                expect(page.get_by_text("Something is still pending")).to_be_hidden()
            expect(row.locator("code.hash")).to_have_text(re.compile(r"^0x[0-9a-f]{64}$"))
            expect(row.get_by_text("(China Standard Time)")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "app-finish-activity-live.png"), full_page=True)

            page.goto(f"{base}/app/account")  # the zone the browser set is the account's choice
            expect(page.get_by_label("Show dates and times in")).to_have_value("Asia/Shanghai")
            page.screenshot(path=str(SCREENSHOTS / "app-finish-account-zone.png"), full_page=True)

            wait_indexed(w3, SimpleNamespace(app=app))
            page.goto(f"{base}/app/bottles/{token}/flag")
            page.get_by_role("link", name="The public page anyone can check this bottle on").click()
            expect(page.get_by_text("This bottle has been reported lost or stolen.")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-finish-verify-reported.png"), full_page=True)
            assert not problems, problems
        finally:
            chromium.close()

    assert cert.state_of(token) == FLAGGED
    on_chain = "0x" + bytes(cert.certificate(token).flag_reason_hash).hex()
    note = httpx.get(f"{base}/custodian/notes/{on_chain}", headers=bearer(ADMIN_TOKEN)).json()
    assert note["kind"] == "flag" and note["fields"] == {"reason": reason}
    assert "0x" + keccak(note["canonical"].encode()).hex() == on_chain


# ------------------------------------------------------------ points history


def test_points_history__three_issues__newest_first_in_pages_linked_by_the_cursor(make_browser, issue_points, w3,
                                                                                  deployed_points):
    browser = make_browser()
    signed_up(browser)
    address = address_of(browser)
    for dollars in (1, 2, 3):
        issue_points(address, dollars * 1_000_000)
    wait_indexed(w3, browser)
    auth = bearer(browser.cookies[COOKIE])

    first = browser.get("/me/points/history?limit=2", headers=auth)
    second = browser.get("/me/points/history", params={"limit": 2, "cursor": first.json()["next_cursor"]},
                         headers=auth)

    assert first.status_code == second.status_code == 200
    moves = first.json()["moves"] + second.json()["moves"]
    assert [len(first.json()["moves"]), len(second.json()["moves"])] == [2, 1]
    assert second.json()["next_cursor"] is None and first.json()["address"] == address
    positions = [(m["block_number"], m["log_index"]) for m in moves]
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == 3
    assert all(m["counterparty"] is None and int(m["points"]) > 0 for m in moves)
    assert sum(int(m["points"]) for m in moves) == deployed_points.balanceOf(address)
    # The page reads the same route: its history lists the three.
    assert flat(browser.get("/app/points").text).count("points given to you by a shop") == 3


def test_points_history__no_credentials_or_a_made_up_cursor__401_and_422(make_browser):
    browser = make_browser()
    signed_up(browser)

    anonymous = browser.get("/me/points/history")
    forged = browser.get("/me/points/history", params={"cursor": "c1.bm90LWEtY3Vyc29y"},
                         headers=bearer(browser.cookies[COOKIE]))

    assert anonymous.status_code == 401
    assert forged.status_code == 422 and "cursor" in forged.json()["detail"]


# ------------------------------------------------------------ the gift claim page


def test_claim_page__lot_document_translates_the_wine__each_reader_sees_it_in_their_language(
        make_browser, cert, winery, custodian, w3, tmp_path):
    from test_app_gifts import give, path_of

    from amphora import lots
    from amphora.demo import EXAMPLE_LOT

    document = json.loads(EXAMPLE_LOT.read_text())
    issued = lots.issue(cert, winery, lots.LotDescription.from_mapping(
        {**document, "bottle_count": 2, "custodian": custodian.address, "lot_code": "ZH-1"}))
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", issued.metadata)
    token = (issued.lot_id << 32) | 2
    giver = make_browser(documents_dir=tmp_path)
    signed_up(giver)
    cert.transferFrom(winery, address_of(giver), token, sender=winery)
    wait_indexed(w3, giver)
    claim = path_of(give(giver, token))
    reader = TestClient(giver.app, base_url=BASE, follow_redirects=False)

    chinese = reader.get(claim, params={"lang": "zh-CN"})
    english = reader.get(claim, params={"lang": "en"})

    assert chinese.status_code == english.status_code == 200
    assert f"<h2>{document['translations']['zh-CN']['wine']}</h2>" in chinese.text
    assert f"<h2>{document['translations']['en']['wine']}</h2>" in english.text
