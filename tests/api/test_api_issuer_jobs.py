"""The winery's issuance as a background job (:mod:`api.jobs`, `POST /issuer/lot-jobs`,
`GET /issuer/jobs/{job_id}`) on the test deployment (anvil), nothing mocked: polled to
done with the chain asserted, owners only, one job at a time per account, a refused
send that keeps nothing, and a restart that ends unfinished jobs by the chain's word."""

from __future__ import annotations

import copy
import csv
import io
import json
import time

import pytest
from api_fixtures import V2_DOCUMENT, bearer, sign_up
from eth_account import Account
from pydantic import SecretStr

from amphora import lots
from amphora.merkle import TagTree
from api.issuer import issue_call
from api.jobs import RESTARTED

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures", "pg"]

ETH = 10**18


@pytest.fixture
def api(make_client, tmp_path):
    """An anonymous client of an app that deposits lot documents in ``tmp_path``."""
    return make_client(auth=False, documents_dir=tmp_path)


def business_account(api, cert=None, admin=None, name: str = "Domaine des Travaux", fund: bool = True) -> dict:
    """A new custodial account (its auth headers and address), granted the issuer role and funded."""
    account = sign_up(api)
    if cert is not None:
        cert.grant_issuer(account["address"], name, sender=admin)
    if fund:
        admin.transfer(account["address"], ETH)
    return {"headers": bearer(account["token"]), "address": account["address"], "token": account["token"]}


@pytest.fixture
def issuer(api, cert, admin):
    return business_account(api, cert, admin)


@pytest.fixture
def document(custodian) -> dict:
    return {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}


def start(api, issuer, document) -> tuple[dict, str]:
    response = api.post("/issuer/lot-jobs", json=document, headers=issuer["headers"])
    assert response.status_code == 202, response.text
    return response.json(), response.headers["location"]


def follow(api, issuer, location: str, timeout: float = 60.0) -> tuple[dict, list[tuple[str, str | None]]]:
    """Poll the job until it ends: its last body, and every (state, step) seen on the way."""
    seen: list[tuple[str, str | None]] = []
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(location, headers=issuer["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        if not seen or seen[-1] != (body["state"], body["step"]):
            seen.append((body["state"], body["step"]))
        if body["state"] in ("done", "failed"):
            return body, seen
        assert time.monotonic() < deadline, f"the job did not end: {body}"
        time.sleep(0.05)


# ------------------------------------------------------------------- the journey


def test_lot_job__polled__runs_its_steps_in_order_and_the_lot_lands_with_the_keys_once(api, issuer, document, cert,
                                                                                      w3, custodian):
    document["bottle_count"] = 1_050

    queued, location = start(api, issuer, document)
    job, seen = follow(api, issuer, location)

    assert queued["state"] == "queued" and location == f"/issuer/jobs/{queued['job_id']}"
    order = ["queued", "keys", "tree", "send", "labels", "done"]
    steps = [step if state == "running" else state for state, step in seen]
    assert steps == sorted(steps, key=order.index) and steps[-1] == "done"
    lot_id = int(job["lot_id"])
    assert w3.eth.get_transaction_receipt(job["tx_hash"])["from"] == issuer["address"]
    lot = cert.lot(lot_id)
    assert lot.issuer == issuer["address"] and lot.bottle_count == 1_050 and lot.custodian == custodian.address
    assert "0x" + bytes(lot.metadata_hash).hex() == job["metadata_hash"]
    assert [(r["first"], r["last"]) for r in job["labels"]] == [(1, 1_000), (1_001, 1_050)]
    first = api.get(job["bottles_url"], headers=issuer["headers"])
    rows = list(csv.DictReader(io.StringIO(first.text)))
    assert first.headers["x-tag-keys"] == "included" and len(rows) == 1_050
    assert bytes(lot.tag_root) == TagTree.build([r["tag_address"] for r in rows]).root
    assert all(Account.from_key(r["tag_private_key"]).address == r["tag_address"] for r in rows[:20])
    assert api.get(job["bottles_url"], headers=issuer["headers"]).headers["x-tag-keys"] == "withheld"
    sheet = api.get(job["labels"][1]["url"])
    assert sheet.status_code == 200 and sheet.content.startswith(b"%PDF")
    assert api.get(job["document_url"]).status_code == 200


def test_lot_job__the_same_document_again__409_already_issued_one_lot(api, issuer, document, cert):
    doc = api.post("/issuer/lots/preview", json=document, headers=issuer["headers"]).json()["document"]
    _, location = start(api, issuer, doc)
    done, _ = follow(api, issuer, location)
    count = cert.lot_count()

    again = api.post("/issuer/lot-jobs", json=doc, headers=issuer["headers"])

    assert again.status_code == 409 and again.json()["error"] == "already_issued"
    assert done["lot_id"] in again.json()["detail"] and cert.lot_count() == count


# ------------------------------------------------------------------- who may


@pytest.mark.parametrize("method, path", [("post", "/issuer/lot-jobs"), ("get", "/issuer/jobs/" + "a" * 22)])
def test_lot_job_routes__without_credentials__401(api, method, path):
    response = getattr(api, method)(path, **({"json": {}} if method == "post" else {}))

    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_lot_job__an_account_without_the_issuer_role__403_in_words_nothing_started(api, admin, document, w3):
    holder = business_account(api, admin=admin)

    response = api.post("/issuer/lot-jobs", json=document, headers=holder["headers"])

    assert response.status_code == 403 and "issuer role" in response.json()["detail"]
    with api.app.state.db.transaction() as tx:
        assert tx.all("SELECT job_id FROM issuer_jobs WHERE issuer = ?", (holder["address"],)) == []
    assert w3.eth.get_transaction_count(holder["address"]) == 0


def test_lot_job__another_accounts_job__404_and_an_unknown_one_too(api, issuer, document, cert, admin):
    _, location = start(api, issuer, document)
    follow(api, issuer, location)
    rival = business_account(api, cert, admin, name="Domaine Rival")

    theirs = api.get(location, headers=rival["headers"])
    unknown = api.get("/issuer/jobs/" + "b" * 22, headers=issuer["headers"])

    assert theirs.status_code == 404 and theirs.json()["error"] == "not_found" and "lot_id" not in theirs.text
    assert unknown.status_code == 404


@pytest.mark.parametrize("job_id", ["short", "a" * 65, "has.dots.in.it.and.more"])
def test_lot_job__a_malformed_job_id__422(api, issuer, job_id):
    assert api.get(f"/issuer/jobs/{job_id}", headers=issuer["headers"]).status_code == 422


# ------------------------------------------------------------------- bad input


def test_lot_job__a_bad_document__422_naming_the_fields_nothing_started(api, issuer, document, w3):
    document.update(bottle_count=0, gtin="123")

    response = api.post("/issuer/lot-jobs", json=document, headers=issuer["headers"])

    body = response.json()
    assert response.status_code == 422 and body["error"] == "invalid_lot_document"
    assert "bottle_count" in body["detail"] and "gtin" in body["detail"]
    assert w3.eth.get_transaction_count(issuer["address"]) == 0


def test_lot_job__more_bottles_than_a_job_takes__422_points_to_the_script(api, issuer, document):
    document["bottle_count"] = 100_001

    response = api.post("/issuer/lot-jobs", json=document, headers=issuer["headers"])

    assert response.status_code == 422 and "ape run issue_lot" in response.json()["detail"]


def test_issue_lot_in_one_request__more_than_5000__422_points_to_the_job(api, issuer, document):
    document["bottle_count"] = 5_001

    response = api.post("/issuer/lots", json=document, headers=issuer["headers"])

    assert response.status_code == 422 and "POST /issuer/lot-jobs" in response.json()["detail"]


# ------------------------------------------------------------------- one at a time


def test_lot_job__a_second_while_the_first_runs__409_in_words_then_allowed(api, issuer, document, custodian, cert):
    document["bottle_count"] = 3_000
    other = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 3, "custodian": custodian.address, "wine": "Second Vin"}
    _, location = start(api, issuer, document)

    second = api.post("/issuer/lot-jobs", json=other, headers=issuer["headers"])

    assert second.status_code == 409 and second.json()["error"] == "job_running"
    assert location.rsplit("/", 1)[1] in second.json()["detail"]
    assert follow(api, issuer, location)[0]["state"] == "done"
    _, later = start(api, issuer, other)
    assert cert.lot(int(follow(api, issuer, later)[0]["lot_id"])).bottle_count == 3


def test_lot_job__two_accounts_at_once__both_run_a_version_1_lot_has_no_label_sheets(api, issuer, document, cert,
                                                                                      admin, custodian):
    rival = business_account(api, cert, admin, name="Domaine Voisin")
    version_1 = {"producer": "Domaine Voisin", "wine": "Cuvée Simple", "region": "Loire", "bottle_count": 3,
                 "volume_ml": 750, "bottling_date": "2022-03-01", "custodian": custodian.address}
    _, mine = start(api, issuer, document)
    _, theirs = start(api, rival, version_1)

    done, other = follow(api, issuer, mine)[0], follow(api, rival, theirs)[0]

    assert done["state"] == "done" and len(done["labels"]) == 1
    assert other["state"] == "done" and other["labels"] == [] and other["bottles_url"]
    assert cert.lot(int(other["lot_id"])).issuer == rival["address"]


# ------------------------------------------------------------------- failures keep nothing


def test_lot_job__the_contract_refuses__failed_with_its_reason_nothing_kept(api, issuer, document, w3, cert):
    document["custodian"] = Account.create().address
    count = cert.lot_count()

    _, location = start(api, issuer, document)
    job, _ = follow(api, issuer, location)

    assert job["state"] == "failed" and job["error"] == "would_revert" and "custodian" in job["reason"]
    assert job["lot_id"] is None and job["bottles_url"] is None and job["labels"] == []
    assert w3.eth.get_transaction_count(issuer["address"]) == 0 and cert.lot_count() == count
    with api.app.state.db.transaction() as tx:
        assert tx.all("SELECT * FROM issuer_lots WHERE issuer = ?", (issuer["address"],)) == []
    assert start(api, issuer, document)[0]["state"] == "queued"  # the document is free to try again


def test_lot_job__an_address_without_eth__failed_gas_unfunded_and_may_start_again(api, cert, admin, document, w3):
    poor = business_account(api, cert, admin, fund=False)
    doc = api.post("/issuer/lots/preview", json=document, headers=poor["headers"]).json()["document"]

    _, location = start(api, poor, doc)
    job, _ = follow(api, poor, location)

    assert job["state"] == "failed" and job["error"] == "gas_unfunded" and "ETH" in job["reason"]
    assert w3.eth.get_transaction_count(poor["address"]) == 0
    admin.transfer(poor["address"], ETH)
    _, again = start(api, poor, doc)
    assert follow(api, poor, again)[0]["state"] == "done"


# ------------------------------------------------------------------- restart


def _crashed_job(app, issuer: dict, doc: dict, step: str) -> str:
    """A job row as a process that stopped mid-job leaves it: reserved, running at ``step``."""
    job_id = "crashed-" + Account.create().address[2:18]
    digest = "0x" + lots.metadata_hash(doc).hex()
    chain = app.state.chain
    app.state.tag_vault.reserve(chain.chain_id, issuer["address"], digest)
    now = time.time()
    with app.state.db.transaction() as tx:
        tx.execute("INSERT INTO issuer_jobs (job_id, chain_id, issuer, state, step, done, total, bottle_count, "
                   "metadata_hash, document, from_block, created_at, updated_at) VALUES (?, ?, ?, 'running', ?, 1, "
                   "4, 4, ?, ?, ?, ?, ?)", (job_id, chain.chain_id, issuer["address"], step, digest, json.dumps(doc),
                                            chain.w3.eth.block_number, now, now))
    return job_id


@pytest.fixture
def shared_db(tmp_path):
    return tmp_path / "api.sqlite"


def test_restart__a_job_left_running__ends_failed_and_the_document_is_free_again(make_client, shared_db, cert,
                                                                                admin, document, tmp_path):
    before = make_client(auth=False, documents_dir=tmp_path, relay_db=shared_db)
    issuer = business_account(before, cert, admin)
    doc = before.post("/issuer/lots/preview", json=document, headers=issuer["headers"]).json()["document"]
    job_id = _crashed_job(before.app, issuer, doc, "keys")

    after = make_client(auth=False, documents_dir=tmp_path, relay_db=shared_db)
    job = after.get(f"/issuer/jobs/{job_id}", headers=issuer["headers"]).json()

    assert job["state"] == "failed" and job["error"] == "restarted" and job["reason"] == RESTARTED
    _, location = start(after, issuer, doc)
    assert follow(after, issuer, location)[0]["state"] == "done"


@pytest.mark.parametrize("step", ["send", "wallet"])  # wallet: a wallet account's job awaiting its wallet's send
def test_restart__the_lot_landed_before_the_stop__the_job_ends_done_with_its_keys(make_client, shared_db, cert,
                                                                                 admin, document, tmp_path, step):
    before = make_client(auth=False, documents_dir=tmp_path, relay_db=shared_db)
    issuer = business_account(before, cert, admin)
    doc = before.post("/issuer/lots/preview", json=document, headers=issuer["headers"]).json()["document"]
    job_id = _crashed_job(before.app, issuer, doc, step)
    lot = lots.LotDescription.from_mapping(doc)
    tree, keys = lots.make_tags(lot)
    state = before.app.state
    state.tag_vault.stage(state.chain.chain_id, issuer["address"], "0x" + lots.metadata_hash(doc).hex(), tree, keys)
    sent = state.business.send(state.users.authenticate(issuer["token"]), issue_call(state.chain, lot, doc, tree.root))

    after = make_client(auth=False, documents_dir=tmp_path, relay_db=shared_db)
    job = after.get(f"/issuer/jobs/{job_id}", headers=issuer["headers"]).json()

    assert job["state"] == "done" and job["tx_hash"] == sent.tx_hash and "restarted" in job["reason"]
    assert cert.lot(int(job["lot_id"])).issuer == issuer["address"]
    rows = list(csv.DictReader(io.StringIO(after.get(job["bottles_url"], headers=issuer["headers"]).text)))
    assert [Account.from_key(r["tag_private_key"]).address for r in rows] == list(tree.tags)


def test_postgresql__two_instances__share_jobs_one_per_account_and_a_live_job_outlives_anothers_start(
        make_client, postgres_url, cert, admin, document, custodian, tmp_path):
    url = SecretStr(postgres_url)
    first = make_client(auth=False, documents_dir=tmp_path, database_url=url)
    issuer = business_account(first, cert, admin)
    live = _crashed_job(first.app, issuer, document | {"serial_salt": "LIVEJOB1"}, "keys")  # progress just written

    second = make_client(auth=False, documents_dir=tmp_path, database_url=url)  # its start-up recovers
    seen = second.get(f"/issuer/jobs/{live}", headers=issuer["headers"]).json()
    refused = second.post("/issuer/lot-jobs", json={**document, "wine": "Autre"}, headers=issuer["headers"])

    assert seen["state"] == "running" and seen["step"] == "keys"
    assert refused.status_code == 409 and refused.json()["error"] == "job_running"
    with first.app.state.db.transaction() as tx:  # its instance stopped 11 minutes ago
        tx.execute("UPDATE issuer_jobs SET updated_at = ? WHERE job_id = ?", (time.time() - 660, live))
    third = make_client(auth=False, documents_dir=tmp_path, database_url=url)
    ended = third.get(f"/issuer/jobs/{live}", headers=issuer["headers"]).json()
    assert ended["state"] == "failed" and ended["error"] == "restarted"
    _, location = start(third, issuer, {**document, "wine": "Autre"})
    assert follow(third, issuer, location)[0]["state"] == "done"
