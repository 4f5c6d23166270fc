"""The holder's moves (/app): transfer with a confirmation step, request delivery with
an address kept off chain, report lost or stolen, and the activity page, on the test
deployment (anvil) with the relayer's outbox and the session's index.

The clients are browsers without JavaScript (URL-encoded forms, the cookie, ``Origin``),
as in test_app_pages.py; every refusal is checked to have sent nothing (the relayer's
nonce and the chain height unchanged) and stored nothing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from api_fixtures import ADMIN_TOKEN, PASSWORD, bearer, manual_mining, outbox, wait_for_status, wait_indexed  # noqa: E402
from test_app_pages import COOKIE, CSRF, SAME_ORIGIN, SCREENSHOTS, served_app, signed_up  # noqa: E402, F401

from web.app.recipients import LOOKUPS_PER_HOUR  # noqa: E402

pytest_plugins = ["api_fixtures"]

BASE = "https://testserver"
ONCE = re.compile(r'name="once" value="([A-Za-z0-9_-]+)"')
ADMIN = bearer(ADMIN_TOKEN)


def address_of(browser: TestClient) -> str:
    return browser.get("/me", headers=bearer(browser.cookies[COOKIE])).json()["address"]


@pytest.fixture
def holders(make_browser, w3, cert, create_lot, winery):
    """Two signed-in browsers sharing one app (so account names resolve); the winery sold
    bottles 2 and 3 of a fresh lot of 4 to the first, bottle 4 to the second. (mine, theirs,
    their name, lot)."""
    mine = make_browser()
    theirs = TestClient(mine.app, base_url=BASE, follow_redirects=False)
    signed_up(mine)
    their_name = signed_up(theirs)
    lot = create_lot(4)
    for browser, serial in ((mine, 2), (mine, 3), (theirs, 4)):
        cert.transferFrom(winery, address_of(browser), lot.token(serial), sender=winery)
    wait_indexed(w3, mine)
    return mine, theirs, their_name, lot


def form(browser: TestClient, path: str) -> dict[str, str]:
    """The hidden fields of the form on ``path`` (CSRF token and one-time key)."""
    page = browser.get(path)
    assert page.status_code == 200, page.text
    return {"csrf": CSRF.search(page.text).group(1), "once": ONCE.search(page.text).group(1)}


def post(browser: TestClient, path: str, **fields: str):
    return browser.post(path, data=fields, headers=SAME_ORIGIN)


def text(response) -> str:
    return re.sub(r"\s+", " ", response.text)


def relayed(browser: TestClient) -> list[dict]:
    """The account's relayed requests, newest first, through the outbox."""
    user = browser.app.state.users.authenticate(browser.cookies[COOKIE])
    return [vars(r) for r in browser.app.state.relayer.outbox.for_account(user.id)]


# ------------------------------------------------------------ transfer


def test_transfer__to_an_account_name__confirmation_then_relayed_once_even_sent_twice(holders, cert, w3):
    mine, theirs, their_name, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)

    step = post(mine, path, **fields, recipient=their_name.upper())

    assert step.status_code == 200
    assert "This cannot be undone" in step.text and f"The Amphora account {their_name.upper()}" in step.text
    assert cert.ownerOf(lot.token(2)) == address_of(mine)  # nothing sent yet
    to = re.search(r'name="to" value="(0x[0-9a-fA-F]{40})"', step.text).group(1)
    sent = [post(mine, path, **fields, recipient=their_name, to=to, confirmed="yes") for _ in range(2)]

    assert [r.status_code for r in sent] == [303, 303]
    assert sent[0].headers["location"] == "/app/activity?done=transfer"
    requests = relayed(mine)
    assert len(requests) == 1 and requests[0]["kind"] == "transfer"
    wait_for_status(mine, requests[0]["request_id"], "confirmed")
    assert cert.ownerOf(lot.token(2)) == address_of(theirs)
    activity = mine.get("/app/activity")
    assert "Bottle transferred" in activity.text and "Done, on the blockchain" in activity.text
    assert re.search(r'<code class="hash">0x[0-9a-f]{64}</code>', activity.text)
    assert 'http-equiv="refresh"' not in activity.text


def test_transfer__to_a_0x_address__confirmation_shows_the_address(holders, cert):
    mine, theirs, _, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"

    step = post(mine, path, **form(mine, path), recipient=address_of(theirs))

    assert step.status_code == 200 and f"<code>{address_of(theirs)}</code>" in step.text


@pytest.mark.parametrize(("recipient", "status", "said"), [
    ("nobody-by-this-name", 404, "No Amphora account has this name"),
    ("0x1234", 422, "an account number of 0x and 40 hexadecimal characters"),
    ("", 422, "an account number of 0x and 40 hexadecimal characters"),
    ("me", 422, "This is your own account."),
])
def test_transfer__bad_recipient__4xx_in_words_and_nothing_sent(holders, cert, w3, relayer, recipient, status, said):
    mine, _, _, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)
    recipient = address_of(mine) if recipient == "me" else recipient
    before = outbox(w3, relayer)

    for extra in ({}, {"to": recipient, "confirmed": "yes"}):
        answer = post(mine, path, **fields, recipient=recipient, **extra)
        assert answer.status_code == status and said in answer.text

    assert outbox(w3, relayer) == before and not relayed(mine)
    assert cert.ownerOf(lot.token(2)) == address_of(mine)


def test_transfer__confirmed_form_whose_recipient_was_changed__asks_again_and_sends_nothing(holders, cert, w3,
                                                                                           relayer):
    mine, theirs, their_name, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    before = outbox(w3, relayer)

    # The hidden address no longer matches the name typed: the new recipient is shown for confirmation.
    answer = post(mine, path, **form(mine, path), recipient=their_name, to=address_of(mine), confirmed="yes")

    assert answer.status_code == 200 and "Check before you transfer" in answer.text
    assert outbox(w3, relayer) == before and not relayed(mine)


def test_transfer__trying_names__rate_limited_per_account_so_accounts_cannot_be_listed(holders, w3, relayer):
    mine, _, their_name, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)

    answers = [post(mine, path, **fields, recipient=f"guess-{i}").status_code for i in range(LOOKUPS_PER_HOUR)]
    blocked = post(mine, path, **fields, recipient=their_name)

    assert answers == [404] * LOOKUPS_PER_HOUR
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    assert "Check before you transfer" not in blocked.text  # an existing name is not confirmed either
    assert int(blocked.headers["retry-after"]) > 0
    # A 0x address needs no lookup: still allowed.
    assert post(mine, path, **fields, recipient="0x" + "11" * 20).status_code == 200


@pytest.mark.parametrize("which", ["someone-elses", "never-issued"])
def test_moves__bottle_not_the_accounts__404_in_words_for_every_form(holders, w3, relayer, which):
    mine, theirs, their_name, lot = holders
    own = form(mine, f"/app/bottles/{lot.token(2)}/transfer")
    token = lot.token(4) if which == "someone-elses" else (10**6 << 32) | 1
    before = outbox(w3, relayer)

    for action, fields in (("transfer", {"recipient": their_name}), ("delivery", {"name": "A", "address": "1 Road"}),
                           ("flag", {"reason": "stolen"})):
        assert mine.get(f"/app/bottles/{token}/{action}").status_code == 404
        answer = post(mine, f"/app/bottles/{token}/{action}", **own, **fields)
        assert answer.status_code == 404 and "This bottle is not in your cellar" in answer.text

    assert outbox(w3, relayer) == before


def test_moves__without_the_csrf_token_or_from_another_site__403_and_nothing_sent(holders, w3, relayer):
    mine, _, their_name, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)
    before = outbox(w3, relayer)

    no_token = post(mine, path, once=fields["once"], recipient=their_name, confirmed="yes")
    elsewhere = mine.post(f"/app/bottles/{lot.token(2)}/flag", data={**fields, "reason": "stolen"},
                          headers={"Origin": "https://attacker.example"})
    no_once = post(mine, path, csrf=fields["csrf"], recipient=their_name)

    assert [no_token.status_code, elsewhere.status_code, no_once.status_code] == [403, 403, 403]
    assert outbox(w3, relayer) == before


# ------------------------------------------------------------ delivery


def test_delivery__address_with_markup__sealed_off_chain_its_hash_on_chain_the_custodian_reads_it(
        holders, cert, w3, relayer):
    mine, _, _, lot = holders
    token = lot.token(2)
    path = f"/app/bottles/{token}/delivery"
    fields = form(mine, path)
    address = '<script>alert("x")</script>\r\n12  Rue du Chai\n33250   Pauillac '

    sent = [post(mine, path, **fields, name="Mei Lin", address=address, phone="+33 1 23") for _ in range(2)]

    assert [s.status_code for s in sent] == [303, 303]  # sent twice: one request, one note
    requests = relayed(mine)
    assert len(requests) == 1 and requests[0]["kind"] == "request_redemption"
    wait_for_status(mine, requests[0]["request_id"], "confirmed")
    order_hash = mine.get(f"/certificates/{token}").json()["redemption"]["order_hash"]
    rows = mine.app.state.db.read
    with rows() as tx:
        stored = tx.all("SELECT * FROM holder_notes")
    assert [r["hash"] for r in stored] == [order_hash]
    assert "Rue du Chai" not in stored[0]["sealed"] and "Mei Lin" not in stored[0]["sealed"]

    note = mine.get(f"/custodian/notes/{order_hash}", headers=ADMIN)
    assert note.status_code == 200
    body = note.json()
    assert body["kind"] == "delivery" and body["token_id"] == str(token)
    assert body["fields"]["address"] == '<script>alert("x")</script>\n12 Rue du Chai\n33250 Pauillac'
    assert "0x" + keccak(body["canonical"].encode()).hex() == order_hash
    assert mine.get(f"/custodian/notes/{order_hash}").status_code == 401
    assert mine.get(f"/custodian/notes/{order_hash}", headers=bearer("wrong")).status_code == 403

    wait_indexed(w3, mine)
    page = mine.get(path)
    assert page.status_code == 200 and "Requested: the cellar is preparing your bottle" in text(page)
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text


def test_delivery__bottle_locked_by_an_earlier_request__409_in_words_and_nothing_sent(holders, cert, w3, relayer):
    mine, _, their_name, lot = holders
    token = lot.token(2)
    path = f"/app/bottles/{token}/delivery"
    post(mine, path, **form(mine, path), name="Mei Lin", address="12 Rue du Chai")
    wait_for_status(mine, relayed(mine)[0]["request_id"], "confirmed")
    wait_indexed(w3, mine)
    before = outbox(w3, relayer)
    flag_form = form(mine, f"/app/bottles/{lot.token(3)}/flag")

    for action, fields in (("transfer", {"recipient": their_name}), ("flag", {"reason": "lost it"})):
        answer = post(mine, f"/app/bottles/{token}/{action}", **flag_form, **fields)
        assert answer.status_code == 409 and "Not possible with this bottle now" in answer.text
        assert "Delivery requested" in answer.text

    assert outbox(w3, relayer) == before and len(relayed(mine)) == 1


def test_moves__bottle_locked_in_a_pending_gift__409_in_words_for_every_form_and_nothing_sent(holders, w3, relayer):
    mine, _, their_name, lot = holders
    token = lot.token(2)
    gift = mine.post("/me/relay/gifts", json={"token_id": token, "claim_key": "0x" + "22" * 20,
                                              "expiry": w3.eth.get_block("latest")["timestamp"] + 86_400},
                     headers={**bearer(mine.cookies[COOKIE]), "Idempotency-Key": "gift-1"})
    wait_for_status(mine, gift.json()["request_id"], "confirmed")
    wait_indexed(w3, mine)
    fields = form(mine, f"/app/bottles/{lot.token(3)}/transfer")
    before = outbox(w3, relayer)

    for action, extra in (("transfer", {"recipient": their_name}), ("delivery", {"name": "Li", "address": "1 Road"}),
                          ("flag", {"reason": "lost it"})):
        assert mine.get(f"/app/bottles/{token}/{action}").status_code == 409
        answer = post(mine, f"/app/bottles/{token}/{action}", **fields, **extra)
        assert answer.status_code == 409 and "Offered as a gift, not yet accepted" in answer.text

    assert outbox(w3, relayer) == before


def test_delivery_form__in_chinese_and_french(holders):
    mine, _, _, lot = holders

    zh = mine.get(f"/app/bottles/{lot.token(2)}/delivery?lang=zh-CN")
    fr = mine.get(f"/app/bottles/{lot.token(2)}/delivery", headers={"Accept-Language": "fr"})

    assert "收件人姓名" in zh.text and f'action="/app/bottles/{lot.token(2)}/delivery?lang=zh-CN"' in zh.text
    assert "Nom de la personne qui la reçoit" in fr.text and "Adresse de livraison" in fr.text


@pytest.mark.parametrize(("fields", "marked"), [
    ({"name": "", "address": "12 Rue du Chai"}, "Enter a name of at most 120 characters."),
    ({"name": "Mei", "address": "   "}, "Enter the full address: 5 to 500 characters."),
    ({"name": "Mei", "address": "x" * 501}, "Enter the full address: 5 to 500 characters."),
])
def test_delivery__missing_or_too_long_field__422_beside_it_and_nothing_kept(holders, w3, relayer, fields, marked):
    mine, _, _, lot = holders
    path = f"/app/bottles/{lot.token(2)}/delivery"
    before = outbox(w3, relayer)

    answer = post(mine, path, **form(mine, path), **fields)

    assert answer.status_code == 422 and marked in answer.text and 'aria-invalid="true"' in answer.text
    assert outbox(w3, relayer) == before
    with mine.app.state.db.read() as tx:
        assert tx.all("SELECT hash FROM holder_notes") == []


def test_delivery__custodian_confirms__the_page_says_delivered_and_the_bottle_leaves_the_cellar(
        holders, cert, w3, custodian):
    mine, _, _, lot = holders
    token = lot.token(3)
    path = f"/app/bottles/{token}/delivery"
    post(mine, path, **form(mine, path), name="Mei Lin", address="12 Rue du Chai")
    wait_for_status(mine, relayed(mine)[0]["request_id"], "confirmed")

    cert.confirm_redemption(token, sender=custodian)
    wait_indexed(w3, mine)

    page = mine.get(path)
    assert page.status_code == 200 and "Delivered: the cellar has shipped your bottle" in text(page)
    assert f'href="/app/bottles/{token}"' not in mine.get("/app/cellar").text


# ------------------------------------------------------------ report


def test_flag__reason_sealed_its_hash_on_chain_the_verification_page_says_lost_or_stolen(holders, cert, w3):
    mine, _, _, lot = holders
    token = lot.token(2)
    path = f"/app/bottles/{token}/flag"

    answer = post(mine, path, **form(mine, path), reason="Stolen from my car on 3 May")

    assert answer.status_code == 303 and answer.headers["location"] == f"{path}?done=sent"
    wait_for_status(mine, relayed(mine)[0]["request_id"], "confirmed")
    view = mine.get(f"/certificates/{token}").json()
    note = mine.get(f"/custodian/notes/{view['flag']['reason_hash']}", headers=ADMIN).json()
    assert note["kind"] == "flag" and note["fields"] == {"reason": "Stolen from my car on 3 May"}
    wait_indexed(w3, mine)
    assert "Reported: anyone who checks this bottle" in text(mine.get(path))
    assert "reported lost or stolen" in mine.get(f"/verify/{token}").text


# ------------------------------------------------------------ activity


def test_activity__pending_action_reloads_itself_until_confirmed(holders, w3):
    mine, theirs, _, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)
    with manual_mining(w3):
        post(mine, path, **fields, recipient=address_of(theirs), to=address_of(theirs), confirmed="yes")
        pending = mine.get("/app/activity")
        assert "Waiting for the blockchain" in pending.text
        assert '<meta http-equiv="refresh" content="3">' in pending.text
    wait_for_status(mine, relayed(mine)[0]["request_id"], "confirmed")

    done = mine.get("/app/activity")
    assert "Done, on the blockchain" in done.text and "http-equiv" not in done.text


def test_activity__shows_only_the_accounts_own_actions(holders):
    mine, theirs, their_name, lot = holders
    path = f"/app/bottles/{lot.token(2)}/transfer"
    fields = form(mine, path)
    post(mine, path, **fields, recipient=their_name, to=address_of(theirs), confirmed="yes")

    assert len(relayed(mine)) == 1
    assert "Nothing yet" in theirs.get("/app/activity").text
    assert theirs.get("/app/activity").status_code == 200
    anonymous = TestClient(mine.app, base_url=BASE, follow_redirects=False)
    assert anonymous.get("/app/activity").headers["location"] == "/app/login"


# ------------------------------------------------------------ in a browser


def test_delivery_and_loss_report__on_a_phone__custodian_ships_and_the_public_page_warns(
        served_app, w3, cert, create_lot, winery, custodian):  # noqa: F811 (the fixture imported above)
    from types import SimpleNamespace

    from browser import sign_up_in_browser
    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    lot = create_lot(3)
    shipped, stolen = lot.token(2), lot.token(3)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            page = context.new_page()
            sign_up_in_browser(page, base, "li.wei@example.org", PASSWORD)
            address = page.locator("code").inner_text()
            for token in (shipped, stolen):
                cert.transferFrom(winery, address, token, sender=winery)
            wait_indexed(w3, SimpleNamespace(app=app))

            page.goto(f"{base}/app/bottles/{shipped}")
            page.get_by_role("link", name="Request delivery").click()
            page.get_by_label("Name of the person who receives it").fill("Li Wei")
            page.get_by_label("Delivery address").fill("88 Jiefang Road\nYibin, Sichuan 644000")
            page.get_by_label("Phone (optional)").fill("+86 831 000 0000")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "app-moves-delivery-form.png"), full_page=True)
            page.get_by_role("button", name="Request delivery").click()
            # The page reloads itself (meta refresh) until the request is on chain.
            expect(page.get_by_text("Requested: the cellar is preparing your bottle")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(SCREENSHOTS / "app-moves-delivery-requested.png"), full_page=True)

            order_hash = page.request.get(f"{base}/certificates/{shipped}").json()["redemption"]["order_hash"]
            note = page.request.get(f"{base}/custodian/notes/{order_hash}", headers=ADMIN).json()
            assert note["fields"]["address"] == "88 Jiefang Road\nYibin, Sichuan 644000"
            cert.confirm_redemption(shipped, sender=custodian)  # the custodian ships it
            wait_indexed(w3, SimpleNamespace(app=app))
            page.reload()
            expect(page.get_by_text("Delivered: the cellar has shipped your bottle")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-moves-delivered.png"), full_page=True)

            page.goto(f"{base}/app/bottles/{stolen}")
            page.get_by_role("link", name="Report lost or stolen").click()
            page.get_by_label("What happened").fill("Taken from the boot of my car in Chengdu")
            page.get_by_role("button", name="Report it").click()
            expect(page.get_by_text("Reported: anyone who checks this bottle")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(SCREENSHOTS / "app-moves-reported.png"), full_page=True)
            page.get_by_role("link", name="The public page anyone can check this bottle on").click()
            expect(page.get_by_text("This bottle has been reported lost or stolen.")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "app-moves-verify-flagged.png"), full_page=True)

            page.goto(f"{base}/app/activity")
            expect(page.get_by_text("Delivery requested")).to_be_visible()
            expect(page.get_by_text("Reported lost or stolen")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "app-moves-activity.png"), full_page=True)
        finally:
            chromium.close()
    assert cert.state_of(shipped) != cert.state_of(stolen) != 0


# ------------------------------------------------------ master key rotation


def test_rotate_master_key__delivery_addresses_move_to_the_new_key__a_foreign_note_stops_it(tmp_path):
    import secrets as random

    from pydantic import SecretStr

    from api.holder_notes import NoteStore, canonical
    from api.rotate_master_key import RotationError, rotate_master_key
    from storage.db import Database

    old, new = SecretStr(random.token_hex(32)), SecretStr(random.token_hex(32))
    db = Database(sqlite_path=tmp_path / "relay.sqlite")
    store = NoteStore(db, old)
    document = canonical("delivery", 7, {"name": "Li Wei", "address": "88 Jiefang Road"}, store.salt("acct", "x" * 16))
    note_hash, _ = store.keep("delivery", 7, "acct", document)

    assert rotate_master_key(db, old, new).notes == 1
    assert NoteStore(db, new).get(note_hash).fields["address"] == "88 Jiefang Road"
    assert rotate_master_key(db, old, new).notes == 0  # a second run: already under the new key

    NoteStore(db, SecretStr(random.token_hex(32))).keep("flag", 8, "acct", b'{"fields":{"reason":"x"}}')
    with pytest.raises(RotationError, match="decrypts under neither"):
        rotate_master_key(db, new, SecretStr(random.token_hex(32)))
    assert NoteStore(db, new).get(note_hash).document == document  # nothing changed
    db.close()
