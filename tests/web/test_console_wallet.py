"""Business accounts that keep their own key in a browser wallet (issue 16): the
service prepares their console actions (:mod:`api.business_wallet`), the wallet
sends them from the account's address, and the service checks the reported
hash against what it prepared (``/me/business/transactions/*`` and
``/console/wallet/*``). A lender's offer is signed in the wallet (EIP-712).

The wallet here is an eth-account key that only the test holds: what a browser
wallet would send, signed and sent the same way (a raw EIP-1559 transaction to
the node)."""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import re
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import function_signature_to_4byte_selector
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_fixtures import USD, V2_DOCUMENT, bearer, sign_up, wait_indexed  # noqa: E402
from test_app_pages import SAME_ORIGIN, SCREENSHOTS, served_app  # noqa: E402, F401

from amphora import lots  # noqa: E402
from amphora.merkle import TagTree  # noqa: E402
from api.business_wallet import PREPARED_HEADER, WalletTransactions  # noqa: E402
from api.errors import Forbidden  # noqa: E402
from api.issuer import issue_call  # noqa: E402

pytest_plugins = ["api_fixtures"]

ETH = 10**18
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture(scope="session")
def lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


def personal_sign(key, message: str) -> str:
    return "0x" + key.sign_message(encode_defunct(text=message)).signature.hex().removeprefix("0x")


def wallet_session(client: TestClient, key) -> str:
    """Sign in with the wallet on the public API: the session token."""
    message = client.post("/auth/wallet/challenge", json={"address": key.address}).json()["message"]
    answer = client.post("/auth/wallet/login", json={"message": message, "signature": personal_sign(key, message)})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def wallet_browser(make_browser, key, **overrides) -> TestClient:
    """A browser signed in with the wallet through the login page's form (the cookie session)."""
    browser = make_browser(**overrides)
    message = browser.post("/auth/wallet/challenge", json={"address": key.address}).json()["message"]
    answer = browser.post("/app/wallet/login", data={"message": message, "signature": personal_sign(key, message)},
                          headers=SAME_ORIGIN)
    assert answer.status_code == 303, answer.text
    return browser


def send_from(w3, key, to: str, data: str, gas: int = 300_000) -> str:
    """What the wallet does on ``eth_sendTransaction``: sign with the key only it holds, send to the node."""
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    signed = key.sign_transaction({
        "from": key.address, "to": to, "data": data, "value": 0, "gas": gas, "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(key.address, "pending"), "maxFeePerGas": 2 * base + 10**9,
        "maxPriorityFeePerGas": 10**9})
    return "0x" + bytes(w3.eth.send_raw_transaction(signed.raw_transaction)).hex()


@pytest.fixture
def appraiser_wallet(lending, admin):
    """A wallet key appointed appraiser on chain and funded with gas."""
    key = Account.create()
    lending.set_appraiser(key.address, True, sender=admin)
    admin.transfer(key.address, ETH)
    return key


def prepare_appraisal(client: TestClient, token: str, lot_id: int, value: str = "45.50") -> dict:
    """Ask for an appraisal as a wallet account: 409 naming the prepared transaction; what to send."""
    answer = client.post(f"/appraiser/lots/{lot_id}/appraisals", json={"value_per_bottle": value},
                         headers=bearer(token))
    assert answer.status_code == 409 and answer.json()["error"] == "wallet_must_send", answer.text
    prepared = client.get(f"/me/business/transactions/{answer.headers[PREPARED_HEADER]}", headers=bearer(token))
    assert prepared.status_code == 200, prepared.text
    return prepared.json()


def report(client: TestClient, token: str, prepared_id: str, tx_hash: str):
    return client.post(f"/me/business/transactions/{prepared_id}/sent", json={"tx_hash": tx_hash},
                       headers=bearer(token))


# ------------------------------------------------------------ the API


def test_appraisal__wallet_account__prepared_sent_by_the_wallet_and_checked(client, appraiser_wallet, lending, lot,
                                                                             deployed_stablecoin, w3):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    assert prepared["from"] == appraiser_wallet.address and prepared["to"] == lending.address
    assert prepared["function"] == "post_appraisal"
    assert int(prepared["chainId"], 16) == w3.eth.chain_id and int(prepared["gas"], 16) > 21_000
    assert lending.appraisal(lot.lot_id).value_per_bottle == 0  # nothing sent by the service

    tx_hash = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])
    answer = report(client, token, prepared["id"], tx_hash)

    assert answer.status_code == 200, answer.text
    assert answer.json()["tx_hash"] == tx_hash and answer.json()["block_number"] is not None
    assert lending.appraisal(lot.lot_id).value_per_bottle == 4_550 * 10 ** (deployed_stablecoin.decimals() - 2)
    assert w3.eth.get_transaction(tx_hash)["from"] == appraiser_wallet.address
    # The same hash again reads its receipt again (a retry after a timeout): the same answer.
    assert report(client, token, prepared["id"], tx_hash).json() == answer.json()


def test_report__the_same_prepared_transaction_sent_twice__the_second_hash_refused(client, appraiser_wallet, lot, w3):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    first = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])
    assert report(client, token, prepared["id"], first).status_code == 200
    second = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"], gas=300_001)

    replay = report(client, token, prepared["id"], second)

    assert replay.status_code == 409 and replay.json()["error"] == "transaction_mismatch"
    assert "already reported with another transaction" in replay.json()["detail"]


@pytest.mark.parametrize("forged", ["data", "sender", "contract"])
def test_report__hash_of_another_transaction__refused_and_the_prepared_one_still_usable(
        client, appraiser_wallet, lot, cert, lending, w3, admin, forged):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id, "45.50")
    if forged == "data":  # the wallet sends another call to the same contract (a harmless read)
        data = "0x" + function_signature_to_4byte_selector("is_appraiser(address)").hex() + "00" * 12
        tx_hash = send_from(w3, appraiser_wallet, prepared["to"], data + appraiser_wallet.address[2:].lower())
    elif forged == "sender":  # someone else sends the same call and reports it
        stranger = Account.create()
        admin.transfer(stranger.address, ETH)
        tx_hash = send_from(w3, stranger, prepared["to"], prepared["data"])
    else:  # the same data to another contract
        tx_hash = send_from(w3, appraiser_wallet, cert.address, prepared["data"])

    refused = report(client, token, prepared["id"], tx_hash)

    assert refused.status_code == 409 and refused.json()["error"] == "transaction_mismatch"
    assert {"data": "data", "sender": "sender", "contract": "contract"}[forged] in refused.json()["detail"]
    right = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])
    assert report(client, token, prepared["id"], right).status_code == 200


def test_prepared_transaction__another_accounts_id__404_like_a_made_up_one(client, appraiser_wallet, lot, w3):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    tx_hash = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])
    attacker = wallet_session(client, Account.create())

    read = client.get(f"/me/business/transactions/{prepared['id']}", headers=bearer(attacker))
    reported = report(client, attacker, prepared["id"], tx_hash)
    made_up = client.get(f"/me/business/transactions/{'0' * 32}", headers=bearer(token))

    assert read.status_code == reported.status_code == made_up.status_code == 404
    assert read.json()["detail"] == made_up.json()["detail"]
    assert report(client, token, prepared["id"], tx_hash).status_code == 200  # still the owner's


def test_report__transaction_reverted_on_chain__failed_in_words(client, appraiser_wallet, lot, lending, admin, w3):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    lending.set_appraiser(appraiser_wallet.address, False, sender=admin)  # the chain changes before it is sent
    tx_hash = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])

    failed = report(client, token, prepared["id"], tx_hash)

    assert failed.status_code == 502 and failed.json()["error"] == "transaction_failed"
    assert "reverted on chain" in failed.json()["detail"] and tx_hash in failed.json()["detail"]
    assert lending.appraisal(lot.lot_id).value_per_bottle == 0


def test_appraisal__wallet_account_and_the_contract_refuses__409_in_words_nothing_prepared(client, appraiser_wallet):
    token = wallet_session(client, appraiser_wallet)
    with client.app.state.db.read() as tx:
        before = tx.one("SELECT COUNT(*) AS n FROM business_wallet_transactions")["n"]

    answer = client.post("/appraiser/lots/999999/appraisals", json={"value_per_bottle": "10"}, headers=bearer(token))

    assert answer.status_code == 409 and answer.json()["error"] == "would_revert"
    assert PREPARED_HEADER not in answer.headers
    with client.app.state.db.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM business_wallet_transactions")["n"] == before


def wallet_issuer(cert, admin, name: str = "Domaine du Portefeuille"):
    """A wallet key granted the issuer role on chain and funded with gas."""
    key = Account.create()
    cert.grant_issuer(key.address, name, sender=admin)
    admin.transfer(key.address, ETH)
    return key


def follow_job(client: TestClient, token: str, job_id: str, until, timeout: float = 60.0) -> dict:
    """Poll ``GET /issuer/jobs/{job_id}`` until ``until(body)``: the body."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/issuer/jobs/{job_id}", headers=bearer(token)).json()
        if until(body):
            return body
        assert body["state"] in ("queued", "running") and time.monotonic() < deadline, body
        time.sleep(0.1)


def shorten_wallet_time(app, ttl: float) -> None:
    """Prepared transactions valid ``ttl`` seconds and no grace after (instead of a quarter of an hour)."""
    app.state.business.wallet = WalletTransactions(app.state.db, app.state.chain, ttl=ttl)
    app.state.issuance_jobs.wallet_grace = 0.0


def test_lot_job__wallet_account__prepared_sent_unreported_and_done_with_the_keys_once(
        make_browser, cert, admin, custodian, w3, tmp_path):
    key = wallet_issuer(cert, admin)
    browser = wallet_browser(make_browser, key, documents_dir=tmp_path)
    api = TestClient(browser.app)
    token = wallet_session(api, key)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    count = cert.lot_count()

    started = api.post("/issuer/lot-jobs", json=document, headers=bearer(token))

    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    waiting = follow_job(api, token, job_id, lambda body: body["step"] == "wallet")
    assert waiting["state"] == "running" and re.fullmatch(r"[0-9a-f]{32}", waiting["prepared_id"])
    assert cert.lot_count() == count  # nothing sent by the service
    page = browser.get(f"/console/issuer/jobs/{job_id}")
    link = f"/console/wallet/{waiting['prepared_id']}?back=%2Fconsole%2Fissuer%2Fjobs%2F{job_id}"
    assert "Confirm in your wallet" in words(page) and html.escape(link) in page.text
    assert '<meta http-equiv="refresh"' in page.text
    assert "打开钱包确认页面" in browser.get(f"/console/issuer/jobs/{job_id}?lang=zh-CN").text
    confirm = browser.get(link)
    assert confirm.status_code == 200 and f'name="back" value="/console/issuer/jobs/{job_id}"' in confirm.text
    prepared = api.get(f"/me/business/transactions/{waiting['prepared_id']}", headers=bearer(token)).json()
    assert prepared["function"] == "issue_lot" and prepared["to"] == cert.address

    tx_hash = send_from(w3, key, prepared["to"], prepared["data"], gas=int(prepared["gas"], 16))  # never reported
    done = follow_job(api, token, job_id, lambda body: body["state"] != "running")

    assert done["state"] == "done" and done["tx_hash"] == tx_hash, done
    lot = cert.lot(int(done["lot_id"]))
    assert lot.issuer == key.address and lot.bottle_count == 4 and lot.custodian == custodian.address
    assert "0x" + bytes(lot.metadata_hash).hex() == done["metadata_hash"]
    first = api.get(done["bottles_url"], headers=bearer(token))
    rows = list(csv.DictReader(io.StringIO(first.text)))
    assert first.headers["x-tag-keys"] == "included" and len(rows) == 4
    assert bytes(lot.tag_root) == TagTree.build([r["tag_address"] for r in rows]).root
    assert all(Account.from_key(r["tag_private_key"]).address == r["tag_address"] for r in rows)
    assert api.get(done["bottles_url"], headers=bearer(token)).headers["x-tag-keys"] == "withheld"
    assert api.get(done["document_url"]).status_code == 200
    assert "Your lot is issued" in words(browser.get(f"/console/issuer/jobs/{job_id}"))


def test_lot_job__wallet_account_awaited_when_the_service_restarts__watched_again_and_done(
        make_client, cert, admin, custodian, w3, tmp_path):
    shared = {"documents_dir": tmp_path, "relay_db": tmp_path / "api.sqlite"}
    before = make_client(auth=False, **shared)
    key = wallet_issuer(cert, admin)
    token = wallet_session(before, key)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    job_id = before.post("/issuer/lot-jobs", json=document, headers=bearer(token)).json()["job_id"]
    waiting = follow_job(before, token, job_id, lambda body: body["step"] == "wallet")
    before.app.state.issuance_jobs.stop()  # the service stops: the job is left running at its wallet step
    before.app.state.issuance_jobs.wait(timeout=10)

    after = make_client(auth=False, **shared)  # its start-up finds the job and watches the chain again
    prepared = after.get(f"/me/business/transactions/{waiting['prepared_id']}", headers=bearer(token)).json()
    assert after.get(f"/issuer/jobs/{job_id}", headers=bearer(token)).json()["step"] == "wallet"
    tx_hash = send_from(w3, key, prepared["to"], prepared["data"], gas=int(prepared["gas"], 16))
    done = follow_job(after, token, job_id, lambda body: body["state"] != "running")

    assert done["state"] == "done" and done["tx_hash"] == tx_hash, done
    rows = list(csv.DictReader(io.StringIO(after.get(done["bottles_url"], headers=bearer(token)).text)))
    assert bytes(cert.lot(int(done["lot_id"])).tag_root) == TagTree.build([r["tag_address"] for r in rows]).root
    assert all(Account.from_key(r["tag_private_key"]).address == r["tag_address"] for r in rows)


def test_lot_job__wallet_account_not_sent_in_time__failed_and_the_document_free_again(
        client, cert, admin, custodian, w3):
    key = wallet_issuer(cert, admin)
    shorten_wallet_time(client.app, ttl=2)
    token = wallet_session(client, key)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    count = cert.lot_count()
    job_id = client.post("/issuer/lot-jobs", json=document, headers=bearer(token)).json()["job_id"]

    ended = follow_job(client, token, job_id, lambda body: body["state"] not in ("queued", "running"))

    assert ended["state"] == "failed" and ended["error"] == "wallet_expired", ended
    assert "not sent from the wallet in time" in ended["reason"] and ended["prepared_id"] is not None
    assert cert.lot_count() == count
    with client.app.state.db.read() as tx:  # the reservation and the staged keys are gone
        assert tx.one("SELECT COUNT(*) AS n FROM issuer_lots WHERE metadata_hash = ?",
                      (ended["metadata_hash"],))["n"] == 0
    again = client.post("/issuer/lot-jobs", json=document, headers=bearer(token))
    assert again.status_code == 202, again.text  # the same document may be issued again
    follow_job(client, token, again.json()["job_id"], lambda body: body["state"] not in ("queued", "running"))


def test_lot_job__wallet_sends_the_document_with_another_tag_root__keys_not_adopted_job_expires(
        client, cert, admin, custodian, w3):
    key = wallet_issuer(cert, admin)
    shorten_wallet_time(client.app, ttl=4)
    token = wallet_session(client, key)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    doc = client.post("/issuer/lots/preview", json=document, headers=bearer(token)).json()["document"]
    job_id = client.post("/issuer/lot-jobs", json=doc, headers=bearer(token)).json()["job_id"]
    follow_job(client, token, job_id, lambda body: body["step"] == "wallet")
    forged = client.app.state.chain.certificate_contract.encode_abi("issue_lot", args=list(
        issue_call(client.app.state.chain, lots.LotDescription.from_mapping(doc), doc, b"\x07" * 32).args))
    tx_hash = send_from(w3, key, cert.address, forged, gas=2_000_000)  # the same document, tags of its own
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1

    ended = follow_job(client, token, job_id, lambda body: body["state"] not in ("queued", "running"))

    assert ended["state"] == "failed" and ended["error"] == "wallet_expired" and ended["lot_id"] is None, ended
    with client.app.state.db.read() as tx:  # no lot of the service's keys: nothing to download for it
        assert tx.one("SELECT COUNT(*) AS n FROM issuer_lots WHERE issuer = ?", (key.address,))["n"] == 0


def test_lot_job__wallet_account_and_the_contract_refuses__failed_with_its_reason_nothing_prepared(
        client, cert, admin):
    key = wallet_issuer(cert, admin)
    token = wallet_session(client, key)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": Account.create().address}
    job_id = client.post("/issuer/lot-jobs", json=document, headers=bearer(token)).json()["job_id"]

    ended = follow_job(client, token, job_id, lambda body: body["state"] not in ("queued", "running"))

    assert ended["state"] == "failed" and ended["error"] == "would_revert" and ended["prepared_id"] is None
    with client.app.state.db.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM issuer_lots WHERE metadata_hash = ?",
                      (ended["metadata_hash"],))["n"] == 0


def test_lot_job__wallet_account__another_account_reads_neither_the_job_nor_its_transaction(
        client, cert, admin, custodian):
    key = wallet_issuer(cert, admin)
    shorten_wallet_time(client.app, ttl=2)
    token = wallet_session(client, key)
    attacker = wallet_session(client, wallet_issuer(cert, admin, "Domaine de l'Intrus"))
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    job_id = client.post("/issuer/lot-jobs", json=document, headers=bearer(token)).json()["job_id"]
    waiting = follow_job(client, token, job_id, lambda body: body["step"] == "wallet")

    job = client.get(f"/issuer/jobs/{job_id}", headers=bearer(attacker))
    prepared = client.get(f"/me/business/transactions/{waiting['prepared_id']}", headers=bearer(attacker))

    assert job.status_code == 404 and prepared.status_code == 404
    follow_job(client, token, job_id, lambda body: body["state"] not in ("queued", "running"))


def test_report__a_hash_the_node_does_not_know__422_and_a_custodial_account__403(client, appraiser_wallet, lot):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    custodial = sign_up(client)["token"]

    unknown = report(client, token, prepared["id"], "0x" + "ab" * 32)
    not_wallet = client.get(f"/me/business/transactions/{prepared['id']}", headers=bearer(custodial))

    assert unknown.status_code == 422 and "knows no transaction" in unknown.json()["detail"]
    assert not_wallet.status_code == 403 and not_wallet.json()["error"] == "forbidden"


def test_report__expired__refused(client, appraiser_wallet, lot, w3):
    token = wallet_session(client, appraiser_wallet)
    prepared = prepare_appraisal(client, token, lot.lot_id)
    with client.app.state.db.transaction() as tx:  # a quarter of an hour later
        tx.execute("UPDATE business_wallet_transactions SET expires_at = expires_at - 901 WHERE id = ?",
                   (prepared["id"],))
    tx_hash = send_from(w3, appraiser_wallet, prepared["to"], prepared["data"])

    late = report(client, token, prepared["id"], tx_hash)

    assert late.status_code == 409 and "expired" in late.json()["detail"]


# ------------------------------------------------------------ the pages


def words(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.text)))


def test_console_appraisal__wallet_account__confirm_page_then_done(make_browser, appraiser_wallet, lot, lending, w3,
                                                                    deployed_stablecoin):
    browser = wallet_browser(make_browser, appraiser_wallet)
    wait_indexed(w3, browser)
    page = browser.get("/console/appraiser")
    fields = {"csrf": CSRF.search(page.text).group(1),
              "once": re.search(r'name="once" value="([^"]+)"', page.text).group(1)}

    asked = browser.post(f"/console/appraiser/lots/{lot.lot_id}", data={**fields, "value": "86.40"},
                         headers=SAME_ORIGIN)

    assert asked.status_code == 303, asked.text
    location = asked.headers["location"]
    assert re.match(r"^/console/wallet/[0-9a-f]{32}\?back=%2Fconsole%2Fappraiser$", location)
    confirm = browser.get(location)
    assert confirm.status_code == 200 and "Confirm in your wallet" in words(confirm)
    assert "What it does Post an appraisal of a lot" in words(confirm)  # in words, before the wallet's hex
    assert "发布一个批次的估值" in browser.get(location + "&lang=zh-CN").text
    assert "script-src 'self'" in confirm.headers["content-security-policy"]
    to = re.search(r'data-to="([^"]+)"', confirm.text).group(1)
    data = re.search(r'data-data="([^"]+)"', confirm.text).group(1)
    assert to == lending.address and lending.appraisal(lot.lot_id).value_per_bottle == 0
    csrf = CSRF.search(confirm.text).group(1)
    tx_hash = send_from(w3, appraiser_wallet, to, data)

    done = browser.post(location.split("?")[0], data={"csrf": csrf, "back": "/console/appraiser", "tx_hash": tx_hash},
                        headers=SAME_ORIGIN)

    assert done.status_code == 200, done.text
    assert "the blockchain recorded it" in words(done) and tx_hash in words(done)
    again = browser.get(location)  # the page opened again: its outcome, no second button
    assert again.status_code == 200 and "data-wallet-send" not in again.text and tx_hash in words(again)
    assert lending.appraisal(lot.lot_id).value_per_bottle == 8_640 * 10 ** (deployed_stablecoin.decimals() - 2)


def test_console_wallet_page__another_account__404_and_a_foreign_back_link__the_console(
        make_browser, appraiser_wallet, lot, w3):
    browser = wallet_browser(make_browser, appraiser_wallet)
    token = wallet_session(TestClient(browser.app), appraiser_wallet)
    prepared = prepare_appraisal(TestClient(browser.app), token, lot.lot_id)
    attacker = wallet_browser(make_browser, Account.create())

    theirs = attacker.get(f"/console/wallet/{prepared['id']}")
    mine = browser.get(f"/console/wallet/{prepared['id']}", params={"back": "https://phish.example/console"})

    assert theirs.status_code == 404 and "data-wallet-send" not in theirs.text
    assert mine.status_code == 200
    back = re.search(r'<a href="([^"]*)">Back to the console</a>', mine.text).group(1)
    assert back.split("?")[0] == "/console" and "phish" not in back
    assert 'name="back" value="/console"' in mine.text  # what the form posts as its way back


def test_console_wallet_page__a_hash_of_another_transaction__refused_in_words(make_browser, appraiser_wallet, lot,
                                                                               cert, w3):
    browser = wallet_browser(make_browser, appraiser_wallet)
    token = wallet_session(TestClient(browser.app), appraiser_wallet)
    prepared = prepare_appraisal(TestClient(browser.app), token, lot.lot_id)
    page = browser.get(f"/console/wallet/{prepared['id']}")
    forged = send_from(w3, appraiser_wallet, cert.address, prepared["data"])

    refused = browser.post(f"/console/wallet/{prepared['id']}", headers=SAME_ORIGIN,
                           data={"csrf": CSRF.search(page.text).group(1), "back": "/console", "tx_hash": forged})

    assert refused.status_code == 409 and "is not the one prepared here" in words(refused)


def test_console_offer__wallet_lender__signed_in_the_wallet_and_on_the_board(
        make_browser, admin, mint_stablecoin, create_lot, deployed_stablecoin, lending, w3):
    key = Account.create()
    admin.transfer(key.address, ETH)
    mint_stablecoin(key.address, 5_000 * USD)
    browser = wallet_browser(make_browser, key)
    token = wallet_session(TestClient(browser.app), key)
    api = TestClient(browser.app)
    allowance = api.post("/me/lending-allowance", json={"amount": str(5_000 * USD)}, headers=bearer(token))
    assert allowance.status_code == 409 and allowance.json()["error"] == "wallet_must_send"
    prepared = api.get(f"/me/business/transactions/{allowance.headers[PREPARED_HEADER]}", headers=bearer(token))
    approve = send_from(w3, key, prepared.json()["to"], prepared.json()["data"])
    assert report(api, token, prepared.json()["id"], approve).status_code == 200
    lot = create_lot(2)
    new = browser.get("/console/lender/offers/new")
    form = {"csrf": CSRF.search(new.text).group(1),
            "nonce": re.search(r'name="nonce" value="([0-9]+)"', new.text).group(1), "lot": str(lot.lot_id),
            "bottle": "", "amount": "1000", "terms": "rate", "rate": "12", "repayment": "", "days": "30", "grace": "7",
            "valid": "7", "ltv": ""}

    sign_page = browser.post("/console/lender/offers", data=form, headers=SAME_ORIGIN)

    assert sign_page.status_code == 200 and "Sign the offer in your wallet" in words(sign_page)
    typed = html.unescape(re.search(r'data-typed="([^"]+)"', sign_page.text).group(1))
    offer = html.unescape(re.search(r'name="offer" value="([^"]+)"', sign_page.text).group(1))
    signed = key.sign_message(encode_typed_data(full_message=json.loads(typed)))
    signature = "0x" + signed.signature.hex().removeprefix("0x")
    csrf = CSRF.search(sign_page.text).group(1)
    # An offer edited to name another lender is refused before anything is checked.
    other = json.dumps({**json.loads(offer), "lender": Account.create().address})
    forged = browser.post("/console/wallet/offers/signed", data={"csrf": csrf, "offer": other,
                                                                  "signature": signature}, headers=SAME_ORIGIN)
    bad = browser.post("/console/wallet/offers/signed", data={"csrf": csrf, "offer": offer,
                                                               "signature": "0x" + "11" * 65}, headers=SAME_ORIGIN)
    posted = browser.post("/console/wallet/offers/signed", data={"csrf": csrf, "offer": offer,
                                                                  "signature": signature}, headers=SAME_ORIGIN)

    assert forged.status_code == 403 and bad.status_code == 422
    assert posted.status_code == 303 and posted.headers["location"] == "/console/lender?done=offered"
    board = api.get("/me/offers", headers=bearer(token)).json()["offers"]
    assert len(board) == 1 and board[0]["posted"]["offer"]["lender"] == key.address
    # Cancelling it from the console leads to the wallet's confirmation, like every action on chain.
    cancel = browser.post(f"/console/lender/offers/{form['nonce']}/cancel", headers=SAME_ORIGIN,
                          data={"csrf": CSRF.search(browser.get("/console/lender").text).group(1)})
    assert cancel.status_code == 303
    assert re.match(r"^/console/wallet/[0-9a-f]{32}\?back=%2Fconsole%2Flender$", cancel.headers["location"])


# ------------------------------------------------------------ the journey in a browser

PROVIDER = """
window.ethereum = {
  isAmphoraTest: true,
  request: async function (call) {
    if (call.method === "eth_requestAccounts" || call.method === "eth_accounts") {
      return [%(address)r];
    }
    if (call.method === "eth_chainId") {
      return %(chain)r;
    }
    return window.walletAct(call.method, JSON.stringify(call.params || []));
  }
};
"""


def test_wallet_appraiser__on_a_phone__posts_an_appraisal_sent_from_its_own_wallet(
        served_app, appraiser_wallet, lot, lending, w3, deployed_stablecoin):  # noqa: F811 (the fixture imported)
    from types import SimpleNamespace

    from playwright.sync_api import expect, sync_playwright

    app, base = served_app
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait_indexed(w3, SimpleNamespace(app=app))
    asked: list[str] = []

    def wallet_act(method: str, params: str) -> str:
        """What the wallet does when the page asks: sign in, or send a transaction, with the key only it holds."""
        asked.append(method)
        values = json.loads(params)
        if method == "personal_sign":
            signed = appraiser_wallet.sign_message(encode_defunct(primitive=bytes.fromhex(values[0][2:])))
            return "0x" + signed.signature.hex().removeprefix("0x")
        if method == "eth_sendTransaction":
            call = values[0]
            assert call["from"].lower() == appraiser_wallet.address.lower() and int(call["value"], 16) == 0
            return send_from(w3, appraiser_wallet, call["to"], call["data"], gas=int(call["gas"], 16))
        raise ValueError(f"the test wallet does not do {method}")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                           locale="en-GB")
            context.add_init_script(PROVIDER % {"address": appraiser_wallet.address, "chain": hex(w3.eth.chain_id)})
            context.expose_function("walletAct", wallet_act)
            page = context.new_page()
            page.goto(f"{base}/app/login")
            page.get_by_role("button", name="Connect a wallet").click()
            expect(page.get_by_role("heading", name="My cellar")).to_be_visible()
            page.goto(f"{base}/console")
            page.get_by_role("link", name="Appraiser", exact=True).first.click()
            page.get_by_label(f"New value per bottle of lot {lot.lot_id}").fill("86.40")
            page.get_by_role("button", name="Post appraisal").click()
            expect(page.get_by_role("heading", name="Confirm in your wallet")).to_be_visible()
            assert lending.appraisal(lot.lot_id).value_per_bottle == 0
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "console-wallet-confirm.png"), full_page=True)

            # Without JavaScript the same page says that sending needs the wallet.
            bare = chromium.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False,
                                        locale="en-GB")
            bare.add_cookies(context.cookies())
            plain = bare.new_page()
            plain.goto(page.url)
            needs = "Sending needs your wallet, which this page reaches with JavaScript."
            expect(plain.get_by_text(needs)).to_be_visible()
            bare.close()

            page.get_by_role("button", name="Confirm in my wallet").click()
            expect(page.get_by_role("heading", name="Sent and recorded")).to_be_visible(timeout=20_000)
            expect(page.get_by_text("Your wallet sent it and the blockchain recorded it")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "console-wallet-done.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 800})
            page.screenshot(path=str(SCREENSHOTS / "console-wallet-done-desktop.png"), full_page=True)
        finally:
            chromium.close()
    assert asked == ["personal_sign", "eth_sendTransaction"]
    assert lending.appraisal(lot.lot_id).value_per_bottle == 8_640 * 10 ** (deployed_stablecoin.decimals() - 2)
    key = appraiser_wallet.key.hex().removeprefix("0x")
    with app.state.db.read() as tx:  # the service never held the key, in any column of the account
        row = tx.one("SELECT * FROM users WHERE address = ?", (appraiser_wallet.address,))
    assert row["kind"] == "wallet" and row["encrypted_key"] == ""
    assert not any(key in str(value).lower() for value in row.values())


def test_issue_lot__wallet_account__403_in_words_nothing_prepared(client, cert, admin, custodian):
    """Issuing in one request keeps the lot's tag keys only once the service's own transaction landed: not from a
    wallet (its lots go through a job, which watches the chain)."""
    key = Account.create()
    cert.grant_issuer(key.address, "Domaine du Portefeuille", sender=admin)
    user = client.app.state.users.authenticate(wallet_session(client, key))
    call = client.app.state.chain.certificate_contract.functions.issue_lot(
        key.address, 1, 2020, 750, 0, b"\x01" * 32, b"\x02" * 32, "p", "w", "r", "")
    with client.app.state.db.read() as tx:
        before = tx.one("SELECT COUNT(*) AS n FROM business_wallet_transactions")["n"]

    with pytest.raises(Forbidden, match="cannot be sent from a wallet account"):
        client.app.state.business.send(user, call)
    document = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}
    direct = client.post("/issuer/lots", json=document, headers=bearer(wallet_session(client, key)))
    assert direct.status_code == 403 and "POST /issuer/lot-jobs" in direct.json()["detail"]

    with client.app.state.db.read() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM business_wallet_transactions")["n"] == before
