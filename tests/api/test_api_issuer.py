"""The winery's API (:mod:`api.routers.issuer`): preview and issue a lot from a
custodial issuer account's own address, its bottles file with the tag keys
once, flag and clear a flag, and a lot's scans per day; on the test deployment
(anvil), nothing mocked."""

from __future__ import annotations

import copy
import csv
import io
import threading

import pytest
from api_fixtures import V2_DOCUMENT, bearer, sign_up
from eth_account import Account
from eth_utils import keccak

from amphora import lots
from amphora.merkle import TagTree
from api.scans import Client, network_prefix

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"


@pytest.fixture
def api(make_client, tmp_path):
    """An anonymous client of an app that deposits lot documents in ``tmp_path``."""
    return make_client(auth=False, documents_dir=tmp_path)


def business_account(api, cert=None, admin=None, name: str = "Domaine de l'API", fund: bool = True) -> dict:
    """A new custodial account (its auth headers and address), granted the issuer role and funded."""
    account = sign_up(api)
    if cert is not None:
        cert.grant_issuer(account["address"], name, sender=admin)
    if fund:
        admin.transfer(account["address"], ETH)
    return {"headers": bearer(account["token"]), "address": account["address"]}


@pytest.fixture
def issuer(api, cert, admin):
    return business_account(api, cert, admin)


@pytest.fixture
def document(custodian) -> dict:
    return {**copy.deepcopy(V2_DOCUMENT), "bottle_count": 4, "custodian": custodian.address}


def preview(api, issuer, document) -> dict:
    response = api.post("/issuer/lots/preview", json=document, headers=issuer["headers"])
    assert response.status_code == 200, response.text
    return response.json()


def issue(api, issuer, document) -> dict:
    response = api.post("/issuer/lots", json=document, headers=issuer["headers"])
    assert response.status_code == 201, response.text
    return response.json()


# ------------------------------------------------------------------- roles


@pytest.mark.parametrize("method, path", [("post", "/issuer/lots"), ("post", "/issuer/lots/preview"),
                                          ("get", "/issuer/lots/1/bottles"),
                                          ("post", "/issuer/certificates/4294967297/clear-flag")])
def test_issuer_routes__without_credentials__401(api, method, path):
    response = getattr(api, method)(path, **({"json": {}} if method == "post" else {}))

    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_issue_lot__an_account_without_the_issuer_role__403_in_words_nothing_sent(api, admin, document, w3):
    holder = business_account(api, admin=admin)

    response = api.post("/issuer/lots", json=document, headers=holder["headers"])

    assert response.status_code == 403 and "issuer role" in response.json()["detail"]
    assert w3.eth.get_transaction_count(holder["address"]) == 0


# --------------------------------------------------------------- preview


def test_preview__a_valid_document__fixes_its_salt_and_sends_nothing(api, issuer, document, w3):
    answer = preview(api, issuer, document)

    assert answer["valid"] and answer["problems"] == [] and answer["would_revert"] is None
    doc = answer["document"]
    assert doc["serial_salt"] and doc["bottling_date_iso"] == "2021-06-15"
    assert answer["metadata_hash"] == "0x" + keccak(lots.canonical_json(doc)).hex()
    assert answer["gas_estimate"] > 21_000 and w3.eth.get_transaction_count(issuer["address"]) == 0


def test_preview__a_bad_document__names_every_failing_field(api, issuer, document):
    document.update(gtin="09520001000004", volume_ml="big", alcohol_percent=300)
    del document["ingredients"]

    answer = preview(api, issuer, document)

    fields = {p["field"] for p in answer["problems"]}
    assert not answer["valid"] and answer["document"] is None
    assert {"gtin", "alcohol_percent", "volume_ml"} <= fields
    assert any("ingredients" in p["message"] for p in answer["problems"])


@pytest.mark.parametrize("date", ["99999999999999999999", "15/06/2021"])
def test_preview__a_bottling_date_no_calendar_holds__names_it(api, issuer, document, date):
    document["bottling_date"] = date

    answer = preview(api, issuer, document)

    assert not answer["valid"] and answer["problems"][0]["field"] == "bottling_date"


def test_preview__a_custodian_not_registered__says_the_contract_would_refuse(api, issuer, document):
    document["custodian"] = Account.create().address

    answer = preview(api, issuer, document)

    assert answer["valid"] and "custodian" in answer["would_revert"] and answer["gas_estimate"] is None


def test_issue_lot__a_bad_document__422_naming_the_fields_nothing_sent(api, issuer, document, w3):
    document.update(bottle_count=0, gtin="123")

    response = api.post("/issuer/lots", json=document, headers=issuer["headers"])

    body = response.json()
    assert response.status_code == 422 and body["error"] == "invalid_lot_document"
    assert "bottle_count" in body["detail"] and "gtin" in body["detail"]
    assert w3.eth.get_transaction_count(issuer["address"]) == 0


def test_issue_lot__too_many_bottles_for_the_console__422_points_to_the_script(api, issuer, document):
    document["bottle_count"] = 5_001

    response = api.post("/issuer/lots", json=document, headers=issuer["headers"])

    assert response.status_code == 422 and "ape run issue_lot" in response.json()["detail"]


# ------------------------------------------------------------------ issue


def test_issue_lot__the_previewed_document__lands_from_the_issuers_address_and_is_served(api, issuer, document,
                                                                                       cert, w3, custodian):
    doc = preview(api, issuer, document)["document"]

    issued = issue(api, issuer, doc)

    lot_id = int(issued["lot_id"])
    assert w3.eth.get_transaction_receipt(issued["tx_hash"])["from"] == issuer["address"]
    lot = cert.lot(lot_id)
    assert lot.issuer == issuer["address"] and lot.custodian == custodian.address and lot.bottle_count == 4
    assert "0x" + bytes(lot.metadata_hash).hex() == issued["metadata_hash"]
    served = api.get(issued["document_url"])
    assert served.status_code == 200 and served.content == lots.canonical_json(doc)
    labels = api.get(issued["labels_url"])
    assert labels.status_code == 200 and labels.content.startswith(b"%PDF")


def test_issue_lot__the_same_document_twice__409_one_lot_only(api, issuer, document, cert):
    doc = preview(api, issuer, document)["document"]
    first = issue(api, issuer, doc)
    count = cert.lot_count()

    again = api.post("/issuer/lots", json=doc, headers=issuer["headers"])

    assert again.status_code == 409 and again.json()["error"] == "already_issued"
    assert first["lot_id"] in again.json()["detail"] and cert.lot_count() == count


def test_issue_lot__an_address_without_eth__409_and_the_document_may_be_sent_again(api, cert, admin, document, w3):
    poor = business_account(api, cert, admin, fund=False)
    doc = preview(api, poor, document)["document"]

    refused = api.post("/issuer/lots", json=doc, headers=poor["headers"])

    assert refused.status_code == 409 and refused.json()["error"] == "gas_unfunded"
    assert w3.eth.get_transaction_count(poor["address"]) == 0
    admin.transfer(poor["address"], ETH)
    assert issue(api, poor, doc)["lot_id"]


def test_issue_lot__a_revoked_issuer__403_nothing_sent(api, issuer, document, cert, admin, w3):
    cert.revoke_issuer(issuer["address"], sender=admin)

    response = api.post("/issuer/lots", json=document, headers=issuer["headers"])

    assert response.status_code == 403 and w3.eth.get_transaction_count(issuer["address"]) == 0


# --------------------------------------------------------- bottles file


def test_bottles__first_download_has_the_keys_of_the_tags_on_chain__later_ones_do_not(api, issuer, document, cert):
    issued = issue(api, issuer, preview(api, issuer, document)["document"])

    first = api.get(issued["bottles_url"], headers=issuer["headers"])
    second = api.get(issued["bottles_url"], headers=issuer["headers"])

    assert first.status_code == 200 and first.headers["x-tag-keys"] == "included"
    assert first.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(first.text)))
    assert [Account.from_key(r["tag_private_key"]).address for r in rows] == [r["tag_address"] for r in rows]
    root = TagTree.build([r["tag_address"] for r in rows]).root
    assert bytes(cert.lot(int(issued["lot_id"])).tag_root) == root
    assert second.headers["x-tag-keys"] == "withheld"
    assert all(r["tag_private_key"] == "" for r in csv.DictReader(io.StringIO(second.text)))
    assert [r["tag_address"] for r in csv.DictReader(io.StringIO(second.text))] == [r["tag_address"] for r in rows]


def test_bottles__two_downloads_at_once__only_one_gets_the_keys(api, issuer, document):
    issued = issue(api, issuer, preview(api, issuer, document)["document"])
    vault = api.app.state.tag_vault
    chain_id = api.app.state.chain.chain_id
    got: list[bool] = []

    def take() -> None:
        _, keys, _ = vault.take(chain_id, int(issued["lot_id"]), issuer["address"])
        got.append(all(keys))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(got) == [False, False, False, True]


def test_bottles__another_issuer__404_and_the_keys_stay_unread(api, issuer, document, cert, admin):
    issued = issue(api, issuer, preview(api, issuer, document)["document"])
    rival = business_account(api, cert, admin, name="Rival")

    stolen = api.get(issued["bottles_url"], headers=rival["headers"])
    mine = api.get(issued["bottles_url"], headers=issuer["headers"])

    assert stolen.status_code == 404 and mine.headers["x-tag-keys"] == "included"


def test_bottles__keys_at_rest__are_not_in_the_database_in_clear(api, issuer, document):
    issued = issue(api, issuer, preview(api, issuer, document)["document"])
    keys = [r["tag_private_key"][2:] for r in csv.DictReader(io.StringIO(
        api.get(issued["bottles_url"], headers=issuer["headers"]).text))]

    with api.app.state.db.transaction() as tx:
        stored = " ".join(str(v) for row in tx.all("SELECT * FROM issuer_lots") for v in dict(row).values())

    assert keys and not any(key in stored for key in keys)


# ------------------------------------------------------------------- flags


def test_flag__the_lots_issuer__locks_the_bottle_and_clears_it(api, issuer, document, cert):
    lot_id = int(issue(api, issuer, preview(api, issuer, document)["document"])["lot_id"])
    token = lots.token_id(lot_id, 2)

    flagged = api.post(f"/issuer/certificates/{token}/flag", json={"reason": "stolen from the cellar"},
                       headers=issuer["headers"])

    assert flagged.status_code == 200, flagged.text
    assert flagged.json()["reason_hash"] == "0x" + keccak(b"stolen from the cellar").hex()
    assert cert.locked(token)
    cleared = api.post(f"/issuer/certificates/{token}/clear-flag", headers=issuer["headers"])
    assert cleared.status_code == 200 and not cert.locked(token)


def test_flag__another_issuers_bottle__409_with_the_contracts_reason_nothing_sent(api, cert, admin, issue_v2, w3):
    lot = issue_v2(2)
    attacker = business_account(api, cert, admin, name="Not the issuer")
    token = lots.token_id(lot.lot_id, 1)

    response = api.post(f"/issuer/certificates/{token}/flag", json={"reason": "mine now"},
                        headers=attacker["headers"])

    assert response.status_code == 409 and response.json()["error"] == "would_revert"
    assert not cert.locked(token) and w3.eth.get_transaction_count(attacker["address"]) == 0


def test_flag__an_empty_reason__422(api, issuer):
    response = api.post("/issuer/certificates/4294967297/flag", json={"reason": ""}, headers=issuer["headers"])

    assert response.status_code == 422


# ------------------------------------------------------------------- scans


def test_lot_scans__counts_per_day_and_a_bottle_seen_in_many_places(api, issue_v2):
    lot = issue_v2(3)
    log = api.app.state.scans
    first, second = lots.token_id(lot.lot_id, 1), lots.token_id(lot.lot_id, 2)
    for n in range(4):
        log.record(first, Client(network_prefix(f"10.0.{n}.1"), BROWSER), redeemed=False, flagged=False)
    log.record(second, Client(network_prefix("10.9.9.9"), BROWSER), redeemed=False, flagged=False)
    log.record(lots.token_id(lot.lot_id + 1, 1), Client(network_prefix("10.8.8.8"), BROWSER), redeemed=False,
               flagged=False)

    body = api.get(f"/lots/{lot.lot_id}/scans?days=7").json()

    assert len(body["days"]) == 7 and body["days"][-1]["scans"] == 5 and body["days"][-1]["bottles"] == 2
    assert sum(d["scans"] for d in body["days"][:-1]) == 0
    assert [(a["token_id"], a["networks"]) for a in body["many_places"]] == [(str(first), 4)]
    assert "10.0" not in str(body)


@pytest.mark.parametrize("path, status", [("/lots/999999/scans", 404), ("/lots/1/scans?days=0", 422),
                                          ("/lots/1/scans?days=91", 422)])
def test_lot_scans__unknown_lot_or_days_out_of_range__refused(api, path, status):
    assert api.get(path).status_code == status
