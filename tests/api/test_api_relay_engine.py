"""Hardening of the relayer's engine (issue 12, items 3 to 5 and 7), on the
test node: one request in flight per signed call, retries that get the first
request's answer, custodial actions that need an idempotency key, a relayer
key that cannot pay (refused, shown, unblocked), and EIP-3009 nonce
reservations that one caller cannot spend for another."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_fixtures import (
    ADMIN_TOKEN,
    bearer,
    idempotency_key,
    manual_mining,
    node_rpc,
    outbox,
    sign_up,
    until,
    wait_for_status,
)
from fastapi.testclient import TestClient

from api.main import create_app

#: /health shows key detail to the operator only.
OPERATOR = bearer(ADMIN_TOKEN)

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


# ------------------------------------------------------------ item 3: one in flight per call


def test_in_flight__same_signature_under_other_keys_and_accounts__one_admitted_the_others_409_with_its_id(
        client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    bob = bearer(sign_up(client)["token"])
    nonce_before = w3.eth.get_transaction_count(relayer.address)

    with manual_mining(w3):  # the first stays in flight (in the pool, not mined)
        first = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "a"})
        other_key = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "b"})
        no_key = client.post("/relay/transfers", json=body)
        other_account = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "a", **bob})
        node_rpc(w3, "evm_mine")

    assert first.status_code == 202, first.text
    for twin in (other_key, no_key, other_account):
        assert twin.status_code == 409, twin.text
        assert twin.json()["error"] == "in_flight"
        assert first.json()["request_id"] in twin.json()["detail"]
    wait_for_status(client, first.json()["request_id"], "confirmed")
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    assert cert.ownerOf(held_token) == recipient


def test_in_flight__after_the_first_is_final__the_same_call_is_judged_by_the_chain_again(
        client, w3, relayer, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    first = client.post("/relay/transfers", json=body, headers=idempotency_key())
    wait_for_status(client, first.json()["request_id"], "confirmed")
    before = outbox(w3, relayer)

    again = client.post("/relay/transfers", json=body, headers=idempotency_key())

    assert again.status_code == 409
    assert again.json()["error"] == "would_revert"  # the signature is spent, no longer "in flight"
    assert outbox(w3, relayer) == before


def test_in_flight__same_signature_sent_concurrently_under_eight_keys__one_transaction(
        client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    barrier = threading.Barrier(8)

    def post(_: int):
        barrier.wait()
        return client.post("/relay/transfers", json=body, headers=idempotency_key())

    with manual_mining(w3), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    node_rpc(w3, "evm_mine")

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [409] * 7, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 409} <= {"in_flight", "would_revert"}
    accepted = next(a for a in answers if a.status_code == 202).json()
    wait_for_status(client, accepted["request_id"], "confirmed")
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1


# ------------------------------------------------------------ item 5: retries get the first answer


def test_idempotency_key__retry_whose_first_try_is_sent_while_it_looks__gets_the_first_request_not_409(
        client, w3, cert, relayer, held_token, holder, recipient, transfer_body, monkeypatch):
    """The race, made deterministic: the retry finds no request under its key,
    and before it simulates, the first try is stored and sent (so the call,
    simulated now, reverts: its signature is spent in the pending block)."""
    body = transfer_body(holder, recipient, held_token)
    headers = {"Idempotency-Key": "retry-me"}
    outbox_ = client.app.state.relayer.outbox
    lookup = outbox_._by_idempotency_key
    first: list = []

    def first_try_lands_meanwhile(account: str, key: str):
        row = lookup(account, key)
        if row is None and not first:
            first.append(None)
            first[0] = client.post("/relay/transfers", json=body, headers=headers)
        return row

    monkeypatch.setattr(outbox_, "_by_idempotency_key", first_try_lands_meanwhile)
    nonce_before = w3.eth.get_transaction_count(relayer.address)

    retry = client.post("/relay/transfers", json=body, headers=headers)

    assert first[0].status_code == 202, first[0].text
    assert retry.status_code == 202, retry.text
    assert retry.json()["request_id"] == first[0].json()["request_id"]
    wait_for_status(client, retry.json()["request_id"], "confirmed")
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    assert cert.ownerOf(held_token) == recipient


@pytest.mark.parametrize("path, body", [
    ("/me/relay/transfers", {"token_id": 1, "to": "0x" + "11" * 20}),
    ("/me/relay/points-transfers", {"to": "0x" + "11" * 20, "value": 1}),
    ("/me/relay/flags", {"token_id": 1, "reason_hash": "0x" + "22" * 32}),
    ("/me/relay/loan-repayments", {"loan_id": 1}),
])
def test_custodial__post_without_idempotency_key__422_naming_the_header_and_nothing_sent(
        client, w3, relayer, path, body):
    before = outbox(w3, relayer)

    response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("Idempotency-Key:")
    assert outbox(w3, relayer) == before


def test_custodial__openapi__idempotency_key_required_on_every_custodial_post(client):
    paths = client.get("/openapi.json").json()["paths"]

    custodial = {path: item["post"] for path, item in paths.items() if path.startswith("/me/relay/")}

    assert len(custodial) == 13  # nine actions, the nonce invalidation and three cask share actions
    for path, operation in custodial.items():
        header = [p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert header and header[0]["required"] is True, path
        assert "in_flight" in operation["responses"]["409"]["description"], path


# ------------------------------------------------------------ item 4: a key that cannot pay


def _drain(w3, address: str) -> None:
    node_rpc(w3, "anvil_setBalance", address, hex(1))


def _fund(w3, address: str) -> None:
    node_rpc(w3, "anvil_setBalance", address, hex(10**20))


def _stuck_on_a_drained_key(client, w3, relayer, body) -> dict:
    """A request admitted while its key could pay, whose transaction the node
    then forgot (dropped from the pool) while the key was drained: the
    outbox's re-send is refused for lack of funds, and the request waits on
    the key's nonce. Returns the 202 body; the key is left drained."""
    with manual_mining(w3):
        stuck = client.post("/relay/transfers", json=body, headers=idempotency_key())
        assert stuck.status_code == 202, stuck.text
        node_rpc(w3, "anvil_dropTransaction", stuck.json()["tx_hash"])
        _drain(w3, relayer.address)
    request_id = stuck.json()["request_id"]
    until(lambda: client.get(f"/relay/{request_id}").json()["status"] == "queued", what="the request queued again")
    return stuck.json()


def test_key_cannot_pay__new_work_503_health_degraded__funded_again_the_stuck_request_confirms(
        make_client, w3, cert, relayer, lot, winery, held_token, holder, recipient, attacker, transfer_body,
        caplog):
    client = make_client(relayer_min_balance_wei=0, relay_stuck_seconds=0.3)  # the balance guard would not see it
    other = lot.token(5)
    cert.transferFrom(winery, attacker, other, sender=winery)
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    try:
        stuck = _stuck_on_a_drained_key(client, w3, relayer, transfer_body(holder, recipient, held_token))
        assert until(lambda: client.get("/health").json() == {"status": "degraded"},
                      what="public health degraded")
        health = client.get("/health", headers=OPERATOR).json()
        assert health["status"] == "degraded"

        refused = client.post("/relay/transfers", json=transfer_body(attacker, recipient, other),
                              headers=idempotency_key())

        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "relay_unavailable"
        assert "cannot pay for gas" in refused.json()["detail"]
        assert "insufficient funds" in health["relayer"]["keys"][0]["fault"].lower()
        assert any("ALERT" in r.getMessage() and "cannot pay" in r.getMessage() for r in caplog.records)
        assert w3.eth.get_transaction_count(relayer.address) == nonce_before
    finally:
        _fund(w3, relayer.address)

    done = wait_for_status(client, stuck["request_id"], "confirmed")
    assert done["nonce"] == nonce_before
    assert cert.ownerOf(held_token) == recipient
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/health", headers=OPERATOR).json()["relayer"]["keys"][0]["fault"] is None
    later = client.post("/relay/transfers", json=transfer_body(attacker, recipient, other), headers=idempotency_key())
    assert later.status_code == 202, later.text
    wait_for_status(client, later.json()["request_id"], "confirmed")


def test_key_cannot_pay__new_request_while_drained__503_at_simulation_nothing_stored(
        make_client, w3, relayer, held_token, holder, recipient, transfer_body):
    client = make_client(relayer_min_balance_wei=0)
    before = outbox(w3, relayer)
    _drain(w3, relayer.address)
    try:
        refused = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token),
                              headers=idempotency_key())
        pending = w3.eth.get_transaction_count(relayer.address, "pending")
    finally:
        _fund(w3, relayer.address)

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "relay_unavailable"
    assert "cannot pay for gas" in refused.json()["detail"]
    assert client.get("/health", headers=OPERATOR).json()["relayer"]["requests"] == {}
    assert (pending, *outbox(w3, relayer)[1:]) == before


def test_key_cannot_pay__stuck_call_would_revert_once_funded__nonce_freed_by_a_cancellation(
        make_client, w3, cert, relayer, held_token, holder, recipient, attacker, transfer_body):
    client = make_client(relayer_min_balance_wei=0, relay_stuck_seconds=0.3)
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    try:
        stuck = _stuck_on_a_drained_key(client, w3, relayer, transfer_body(holder, recipient, held_token))
        until(lambda: client.get("/health").json()["status"] == "degraded", what="health degraded")
        cert.transferFrom(holder, attacker, held_token, sender=holder)  # the signed transfer is void now
    finally:
        _fund(w3, relayer.address)

    failed = wait_for_status(client, stuck["request_id"], "failed")
    assert failed["error"].startswith("cancelled:")
    assert "would revert" in failed["error"]
    cancel = w3.eth.get_transaction(failed["tx_hash"])
    assert (cancel["to"], cancel["value"], cancel["nonce"]) == (relayer.address, 0, nonce_before)
    assert w3.eth.get_transaction_receipt(failed["tx_hash"])["gasUsed"] == 21_000
    assert cert.ownerOf(held_token) == attacker
    assert client.get("/health").json()["status"] == "ok"


# ------------------------------------------------------------ item 7: nonce reservations


def _typed_data_nonce(client: TestClient, payer: str, valid_before: int) -> int:
    response = client.get("/relay/typed-data/points-transfer",
                          params={"from": payer, "to": "0x" + "11" * 20, "value": 1, "valid_before": valid_before})
    assert response.status_code == 200, response.text
    return int(response.json()["message"]["nonce"], 16)


def test_points_typed_data__one_client_asks_300_times_for_a_payer__another_client_still_gets_a_cheap_nonce(
        api_settings, deployed_points, holder, chain):
    app = create_app(api_settings)
    valid_before = chain.pending_timestamp + 3_600
    with TestClient(app, client=("203.0.113.7", 4000)) as flooder, \
            TestClient(app, client=("198.51.100.9", 4000)) as payer:
        flood = [_typed_data_nonce(flooder, holder.address, valid_before) for _ in range(300)]

        mine = _typed_data_nonce(payer, holder.address, valid_before)

    assert mine < 256, "the payer's own nonce left the cheap first bitmap word"
    assert max(flood) < 256  # the flooder's own reservations are bounded too: it never fills the word


def test_points_typed_data__reservations_per_caller_bounded_and_expiring(api_settings, holder, chain):
    app = create_app(api_settings.model_copy(update={"relay_nonce_reservations_per_caller": 4,
                                                     "relay_nonce_reservation_seconds": 1}))
    valid_before = chain.pending_timestamp + 3_600
    with TestClient(app, client=("203.0.113.7", 4000)) as caller:
        for _ in range(20):
            _typed_data_nonce(caller, holder.address, valid_before)
        service = app.state.chain

        assert service.reserved_nonce_count() == 4
        time.sleep(1.1)
        assert service.reserved_nonce_count() == 0
