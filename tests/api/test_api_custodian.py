"""The cellar's API (issue 16, :mod:`api.routers.custody_console`): the
redemption queue with the holders' delivery addresses, confirm / reject, storage
reports attested on chain, and proof-of-reserve roots that ``verify_reserve``
accepts, on the test deployment (anvil) with the session's index.

The cellar is a custodial account granted the custodian role on chain and
funded with ETH (a business pays its own gas); its transactions are sent from
its own address. Every refusal is checked to have sent nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from api_fixtures import bearer, sign_up, wait_indexed
from eth_utils import keccak
from fastapi.testclient import TestClient

from amphora.merkle import verify_reserve
from api.holder_notes import canonical, notes_of
from web.app.session import cookie_name

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
REDEMPTION_REQUESTED = 3


@dataclass
class Cellar:
    """A custodial business account holding the custodian role, funded, with a lot in its custody."""

    client: TestClient
    address: str
    headers: dict[str, str]
    lot: object


def make_cellar(client: TestClient, cert, admin, create_lot, name: str = "Cave Console", count: int = 4) -> Cellar:
    account = sign_up(client)
    cert.grant_custodian(account["address"], name, sender=admin)
    admin.transfer(account["address"], ETH)
    return Cellar(client, account["address"], bearer(account["token"]),
                  create_lot(count, custodian=account["address"]))


def ask_delivery(client: TestClient, cert, winery, holder, token_id: int, **fields: str) -> str:
    """The holder asks for ``token_id`` with a delivery address kept by the service (as the
    holder app does): the note sealed in the note store, its hash on chain. The order hash."""
    cert.transferFrom(winery, holder, token_id, sender=winery)
    store = notes_of(client.app.state)
    document = canonical("delivery", token_id, fields, store.salt("holder-account", f"form-{token_id}"))
    order_hash, _ = store.keep("delivery", token_id, "holder-account", document)
    cert.request_redemption(token_id, bytes.fromhex(order_hash[2:]), sender=holder)
    return order_hash


@pytest.fixture
def cellar(client, cert, admin, create_lot) -> Cellar:
    return make_cellar(client, cert, admin, create_lot)


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address)


# ------------------------------------------------------------ the queue


def test_queue__a_request__listed_with_the_address_decrypted_for_this_cellar(cellar, cert, winery, holder, w3):
    token = cellar.lot.token(2)
    order_hash = ask_delivery(cellar.client, cert, winery, holder, token, name="Mei Lin",
                              address="12  Rue du Chai\n33250 Pauillac", phone="+33 1 23")
    wait_indexed(w3, cellar.client)

    body = cellar.client.get("/custodian/redemptions", headers=cellar.headers).json()

    assert body["custodian"] == cellar.address
    [request] = body["requests"]
    assert request["token_id"] == str(token) and request["holder"] == holder.address
    assert request["order_hash"] == order_hash == "0x" + bytes(cert.certificate(token).redemption_order_hash).hex()
    assert request["delivery"] == {"name": "Mei Lin", "address": "12 Rue du Chai\n33250 Pauillac",
                                   "phone": "+33 1 23"}


def test_queue__another_cellars_request__never_listed(client, cellar, cert, admin, winery, holder, create_lot, w3):
    other = make_cellar(client, cert, admin, create_lot, name="Other Cave")
    ask_delivery(client, cert, winery, holder, other.lot.token(1), name="Someone Else", address="9 Other Road")
    mine = ask_delivery(client, cert, winery, holder, cellar.lot.token(1), name="Mei Lin", address="12 Rue du Chai")
    wait_indexed(w3, client)

    body = client.get("/custodian/redemptions", headers=cellar.headers).json()

    assert [r["order_hash"] for r in body["requests"]] == [mine]
    assert "Someone Else" not in str(body) and "Other Road" not in str(body)


def test_queue__order_written_elsewhere__listed_without_an_address(cellar, cert, winery, holder, w3):
    token = cellar.lot.token(3)
    cert.transferFrom(winery, holder, token, sender=winery)
    cert.request_redemption(token, keccak(text="an order given by hand"), sender=holder)
    wait_indexed(w3, cellar.client)

    [request] = cellar.client.get("/custodian/redemptions", headers=cellar.headers).json()["requests"]

    assert request["token_id"] == str(token) and request["delivery"] is None


def test_queue__without_credentials_401__a_holder_403_in_words(make_client):
    anonymous = make_client(auth=False)
    holder = make_client()

    assert anonymous.get("/custodian/redemptions").json()["error"] == "unauthorized"
    refused = holder.get("/custodian/redemptions")
    assert refused.status_code == 403 and "does not hold the custodian role" in refused.json()["detail"]


# ------------------------------------------------------------ confirm / reject


def test_confirm__own_request__burned_from_the_cellars_address_and_a_second_confirm_409(cellar, cert, winery, holder,
                                                                                        w3):
    token = cellar.lot.token(2)
    ask_delivery(cellar.client, cert, winery, holder, token, name="Mei Lin", address="12 Rue du Chai")

    sent = cellar.client.post(f"/custodian/redemptions/{token}/confirm", headers=cellar.headers)

    assert sent.status_code == 200, sent.text
    receipt = w3.eth.get_transaction_receipt(sent.json()["tx_hash"])
    assert receipt["from"] == cellar.address and cert.certificate(token).state == 4  # REDEEMED
    again = cellar.client.post(f"/custodian/redemptions/{token}/confirm", headers=cellar.headers)
    assert again.status_code == 409 and again.json()["error"] == "would_revert"
    assert nonce(w3, cellar.address) == 1


def test_confirm__a_bottle_in_another_cellar__403_in_words_nothing_sent(client, cellar, cert, admin, winery, holder,
                                                                          create_lot, w3):
    other = make_cellar(client, cert, admin, create_lot, name="Other Cave")
    token = other.lot.token(1)
    ask_delivery(client, cert, winery, holder, token, name="Li", address="9 Other Road")

    for action, body in (("confirm", None), ("reject", {"reason": "Unpaid fee"})):
        refused = client.post(f"/custodian/redemptions/{token}/{action}", json=body, headers=cellar.headers)
        assert refused.status_code == 403 and "kept by another cellar" in refused.json()["detail"]

    assert nonce(w3, cellar.address) == 0 and cert.certificate(token).state == REDEMPTION_REQUESTED


def test_reject__with_a_reason__unlocks_for_the_holder_and_records_its_hash(cellar, cert, winery, holder, w3):
    token = cellar.lot.token(2)
    ask_delivery(cellar.client, cert, winery, holder, token, name="Mei Lin", address="12 Rue du Chai")

    sent = cellar.client.post(f"/custodian/redemptions/{token}/reject", json={"reason": " Carrier refuses ."},
                              headers=cellar.headers)

    assert sent.status_code == 200, sent.text
    assert sent.json()["reason_hash"] == "0x" + keccak(text="Carrier refuses .").hex()
    assert cert.certificate(token).state == 0 and cert.ownerOf(token) == holder.address  # ACTIVE, with its holder
    logs = w3.eth.get_transaction_receipt(sent.json()["tx_hash"])["logs"]
    assert any(bytes(log["data"]).endswith(keccak(text="Carrier refuses .")) for log in logs)


@pytest.mark.parametrize("reason", ["", "  x ", "y" * 501])
def test_reject__reason_missing_or_too_long__422_nothing_sent(cellar, cert, winery, holder, w3, reason):
    token = cellar.lot.token(2)
    ask_delivery(cellar.client, cert, winery, holder, token, name="Mei Lin", address="12 Rue du Chai")

    refused = cellar.client.post(f"/custodian/redemptions/{token}/reject", json={"reason": reason},
                                 headers=cellar.headers)

    assert refused.status_code == 422 and nonce(w3, cellar.address) == 0


def test_confirm__no_request_pending__409_with_the_contracts_reason(cellar, w3):
    refused = cellar.client.post(f"/custodian/redemptions/{cellar.lot.token(1)}/confirm", headers=cellar.headers)

    assert refused.status_code == 409 and refused.json()["error"] == "would_revert"
    assert nonce(w3, cellar.address) == 0


def test_confirm__cellar_without_eth__409_gas_unfunded_nothing_sent(client, cert, admin, create_lot, winery, holder,
                                                                      w3):
    account = sign_up(client)
    cert.grant_custodian(account["address"], "Cave Sans Gaz", sender=admin)
    lot = create_lot(2, custodian=account["address"])
    ask_delivery(client, cert, winery, holder, lot.token(1), name="Li", address="1 Road")

    refused = client.post(f"/custodian/redemptions/{lot.token(1)}/confirm", headers=bearer(account["token"]))

    assert refused.status_code == 409 and refused.json()["error"] == "gas_unfunded"
    assert cert.certificate(lot.token(1)).state == REDEMPTION_REQUESTED


def test_confirm__a_custodian_role_revoked__403_before_anything_is_sent(cellar, cert, admin, winery, holder, w3):
    token = cellar.lot.token(2)
    ask_delivery(cellar.client, cert, winery, holder, token, name="Li", address="1 Road")
    cert.revoke_custodian(cellar.address, sender=admin)

    refused = cellar.client.post(f"/custodian/redemptions/{token}/confirm", headers=cellar.headers)

    assert refused.status_code == 403 and nonce(w3, cellar.address) == 0


# ------------------------------------------------------------ storage reports


def test_storage_report__pdf__hashed_stored_attested_and_served_as_the_hash_says(cellar, registry, w3):
    report = b"%PDF-1.7\n% cellar temperature 12C, humidity 70%\n%%EOF\n"

    sent = cellar.client.put(f"/custodian/lots/{cellar.lot.lot_id}/storage-report", content=report,
                             headers={**cellar.headers, "Content-Type": "application/pdf"})

    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["document_hash"] == "0x" + keccak(report).hex() and body["size"] == len(report)
    custody = registry.custody(cellar.lot.token(1))
    assert "0x" + bytes(custody.storage_document_hash).hex() == body["document_hash"]
    assert custody.storage_attested_by == cellar.address
    path = body["document_uri"].split("://", 1)[1].split("/", 1)[1]
    served = cellar.client.get("/" + path, headers={"Authorization": ""})
    assert served.status_code == 200 and served.content == report
    assert served.headers["content-type"] == "application/pdf" and served.headers["x-content-type-options"] == "nosniff"


def test_storage_report__html_upload__served_only_as_a_download_never_a_page(cellar):
    report = b"<html><script>alert(1)</script></html>"
    body = cellar.client.put(f"/custodian/lots/{cellar.lot.lot_id}/storage-report", content=report,
                             headers=cellar.headers).json()

    served = cellar.client.get(f"/custodian/documents/{body['document_hash']}")

    assert served.headers["content-type"] == "application/octet-stream"
    assert served.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in served.headers["content-security-policy"]


def test_storage_report__another_cellars_lot__403_nothing_stored_nothing_sent(client, cellar, cert, admin, create_lot,
                                                                              w3):
    other = make_cellar(client, cert, admin, create_lot, name="Other Cave")
    report = b"%PDF-1.7 forged report"

    refused = client.put(f"/custodian/lots/{other.lot.lot_id}/storage-report", content=report, headers=cellar.headers)

    assert refused.status_code == 403 and "kept by another cellar" in refused.json()["detail"]
    assert client.get(f"/custodian/documents/0x{keccak(report).hex()}").status_code == 404
    assert nonce(w3, cellar.address) == 0


def test_storage_report__empty__422_nothing_sent(cellar, w3):
    refused = cellar.client.put(f"/custodian/lots/{cellar.lot.lot_id}/storage-report", content=b"",
                                headers=cellar.headers)

    assert refused.status_code == 422 and nonce(w3, cellar.address) == 0


def test_storage_report__a_scan_above_the_general_body_limit__attested_under_the_upload_limit(
        make_client, cert, admin, create_lot, registry, w3):
    cellar = make_cellar(make_client(auth=False, max_upload_bytes=300_000), cert, admin, create_lot)
    report = b"%PDF-1.7\n" + bytes(range(256)) * 1_000  # 256 kB: four times the 64 KiB body limit

    sent = cellar.client.put(f"/custodian/lots/{cellar.lot.lot_id}/storage-report", content=report,
                             headers=cellar.headers)

    assert sent.status_code == 200, sent.text
    assert "0x" + bytes(registry.custody(cellar.lot.token(1)).storage_document_hash).hex() == "0x" + keccak(
        report).hex()


def test_storage_report__over_the_upload_limit_or_anonymous_above_the_body_limit__413_nothing_stored_or_sent(
        make_client, cert, admin, create_lot, w3):
    cellar = make_cellar(make_client(auth=False, max_upload_bytes=100_000), cert, admin, create_lot)
    path = f"/custodian/lots/{cellar.lot.lot_id}/storage-report"
    too_big, mid = b"%PDF-" + b"x" * 100_000, b"%PDF-" + b"y" * 70_000

    over = cellar.client.put(path, content=too_big, headers=cellar.headers)
    anonymous = cellar.client.put(path, content=mid)  # an anonymous client keeps the 64 KiB limit
    chunked = cellar.client.put(path, content=iter([mid[:40_000], mid[40_000:]]))  # no Content-Length

    assert over.status_code == 413 and "at most 100000 bytes" in over.json()["detail"]
    assert anonymous.status_code == 413 and "at most 65536 bytes" in anonymous.json()["detail"]
    assert chunked.status_code == 413 and "at most 65536 bytes" in chunked.json()["detail"]
    for report in (too_big, mid):
        assert cellar.client.get(f"/custodian/documents/0x{keccak(report).hex()}").status_code == 404
    assert nonce(w3, cellar.address) == 0


def test_upload_limit__other_routes_keep_the_body_limit_even_with_credentials(make_client):
    client = make_client(max_upload_bytes=1_000_000)

    refused = client.post("/auth/api-tokens", content=b"{" + b" " * 70_000 + b"}",
                          headers={"Content-Type": "application/json"})

    assert refused.status_code == 413 and "at most 65536 bytes" in refused.json()["detail"]


def test_upload_limit__the_console_form_with_a_session_cookie__passes_the_body_limit_then_the_route_decides(
        make_client):
    client = make_client(auth=False, max_upload_bytes=1_000_000)
    body, path = b"z" * 70_000, "/console/custodian/lots/1/report"

    without = client.post(path, content=body)
    with_cookie = client.post(path, content=body,
                              headers={"Cookie": f"{cookie_name(client.app.state.settings)}=not-a-session"})

    assert without.status_code == 413
    assert with_cookie.status_code != 413  # the body reached the route, which refuses the made-up session itself
    assert with_cookie.status_code in (303, 401, 403)


def test_storage_report__lot_never_issued__404(cellar, w3):
    refused = cellar.client.put("/custodian/lots/999999/storage-report", content=b"%PDF-", headers=cellar.headers)

    assert refused.status_code == 404 and nonce(w3, cellar.address) == 0


def test_storage_document__unknown_hash_404__malformed_422(client):
    assert client.get("/custodian/documents/0x" + "ab" * 32).status_code == 404
    assert client.get("/custodian/documents/0x1234").status_code == 422


# ------------------------------------------------------------ proof of reserve


def test_reserve__one_call__root_over_the_bottles_held_verifies_on_chain(cellar, cert, registry, winery, holder, w3):
    shipped = cellar.lot.token(4)
    ask_delivery(cellar.client, cert, winery, holder, shipped, name="Li", address="1 Road")
    cellar.client.post(f"/custodian/redemptions/{shipped}/confirm", headers=cellar.headers)
    wait_indexed(w3, cellar.client)

    posted = cellar.client.post("/custodian/reserve", headers=cellar.headers)

    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert body["bottle_count"] == 3
    tree_path = "/" + body["tree_uri"].split("://", 1)[1].split("/", 1)[1]
    tree = cellar.client.get(tree_path, headers={"Authorization": ""}).json()
    assert tree["token_ids"] == [str(cellar.lot.token(s)) for s in (1, 2, 3)] and tree["root"] == body["root"]
    for serial in (1, 2, 3):
        proof = cellar.client.get(f"{tree_path}/proofs/{cellar.lot.token(serial)}").json()["proof"]
        assert registry.verify_reserve(cellar.lot.token(serial), proof)
        assert verify_reserve(bytes.fromhex(body["root"][2:]), cellar.lot.token(serial),
                              [bytes.fromhex(p[2:]) for p in proof])
    assert cellar.client.get(f"{tree_path}/proofs/{shipped}").status_code == 404
    assert registry.custody(cellar.lot.token(1)).reserve_bottle_count == 3


def test_reserve__another_cellars_proof__does_not_verify_for_my_bottle(client, cellar, cert, admin, create_lot,
                                                                        registry, w3):
    other = make_cellar(client, cert, admin, create_lot, name="Other Cave", count=2)
    wait_indexed(w3, client)
    client.post("/custodian/reserve", headers=cellar.headers)
    theirs = client.post("/custodian/reserve", headers=other.headers).json()
    proof = client.get(f"/custodian/reserve-trees/{other.address}/{theirs['root']}/proofs/{other.lot.token(1)}")

    assert registry.verify_reserve(other.lot.token(1), proof.json()["proof"])
    assert not registry.verify_reserve(cellar.lot.token(1), proof.json()["proof"])


def test_reserve__a_holder_403__anonymous_401(make_client):
    assert make_client().post("/custodian/reserve").status_code == 403
    assert make_client(auth=False).post("/custodian/reserve").status_code == 401


def test_reserve__a_cellar_with_no_lot__409_in_words_nothing_sent(client, cert, admin, w3):
    account = sign_up(client)
    cert.grant_custodian(account["address"], "Empty Cave", sender=admin)
    admin.transfer(account["address"], ETH)

    refused = client.post("/custodian/reserve", headers=bearer(account["token"]))

    assert refused.status_code == 409 and "no bottle" in refused.json()["detail"]
    assert nonce(w3, account["address"]) == 0


def test_reserve_tree__unknown_root_404(client, cellar):
    assert client.get(f"/custodian/reserve-trees/{cellar.address}/0x{'cd' * 32}").status_code == 404
