"""The relayer's transaction engine and policy, on the test node: idempotency,
statuses and confirmations, reorganised, stuck, dropped and front-run
transactions, quotas, rate limits, the minimum balance, the allow-list, the
key pool and the webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_fixtures import ADMIN_TOKEN, bearer, manual_mining, node_rpc, outbox, sign_up, until, wait_for_status
from eth_account import Account
from pydantic import SecretStr

from api.errors import RelayRefused
from api.relayer import Origin
from api.webhooks import verify

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures", "pg"]


def _attempts(client, request_id: str) -> list[dict]:
    with client.app.state.db.transaction() as tx:
        return tx.all("SELECT * FROM relay_attempts WHERE request_id = ? ORDER BY created_at", (request_id,))


# ------------------------------------------------------------ idempotency


def test_idempotency_key__same_request_twice__one_request_and_one_transaction(
        client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    before = outbox(w3, relayer)

    first = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "order-17"})
    second = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "order-17"})

    assert first.status_code == second.status_code == 202
    assert second.json()["request_id"] == first.json()["request_id"]
    assert second.json()["tx_hash"] == first.json()["tx_hash"]
    wait_for_status(client, first.json()["request_id"], "confirmed")
    assert w3.eth.get_transaction_count(relayer.address) == before[0] + 1
    assert cert.ownerOf(held_token) == recipient


def test_idempotency_key__reused_for_another_request__409_and_nothing_sent(
        client, w3, relayer, held_token, holder, recipient, attacker, transfer_body):
    first = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token),
                        headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202
    wait_for_status(client, first.json()["request_id"], "confirmed")
    before = outbox(w3, relayer)

    other = client.post("/relay/transfers", json=transfer_body(recipient, attacker, held_token),
                        headers={"Idempotency-Key": "k1"})

    assert other.status_code == 409
    assert other.json()["error"] == "conflict"
    assert first.json()["request_id"] in other.json()["detail"]
    assert outbox(w3, relayer) == before


def test_idempotency_key__is_per_account(client, w3, relayer, held_token, holder, recipient, transfer_body):
    bob = bearer(sign_up(client)["token"])
    body = transfer_body(holder, recipient, held_token)

    mine = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "same"})
    theirs = client.get(f"/relay/{mine.json()['request_id']}", headers=bob)

    assert mine.status_code == 202
    assert theirs.status_code == 200  # status is readable (the chain shows it anyway)...
    again = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "same", **bob})
    # ...but bob's key is his own: a new request, refused because the signature is in flight or spent.
    assert again.status_code == 409
    assert again.json()["error"] in ("in_flight", "would_revert")


# ------------------------------------------------------------ statuses


def test_status__by_request_id_and_by_tx_hash__confirmed_with_block_and_gas(
        client, w3, relayer, held_token, holder, recipient, transfer_body):
    accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()

    body = wait_for_status(client, accepted["request_id"], "confirmed")

    receipt = w3.eth.get_transaction_receipt(accepted["tx_hash"])
    assert body["tx_hash"] == accepted["tx_hash"]
    assert body["block_number"] == receipt["blockNumber"]
    assert body["block_hash"] == "0x" + bytes(receipt["blockHash"]).hex()
    assert body["gas_used"] == receipt["gasUsed"]
    assert body["confirmations"] >= 1
    assert body["kind"] == "transfer"
    assert body["actor"] == holder.address
    assert body["relayer"] == relayer.address
    assert body["error"] is None
    assert client.get(f"/relay/{accepted['tx_hash']}").json()["request_id"] == accepted["request_id"]


def test_confirmations__three__mined_until_two_more_blocks(
        make_client, w3, held_token, holder, recipient, transfer_body):
    client = make_client(relay_confirmations=3)
    accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()

    mined = wait_for_status(client, accepted["request_id"], "mined")
    time.sleep(0.3)  # several worker passes: still not enough blocks
    assert client.get(f"/relay/{accepted['request_id']}").json()["status"] == "mined"
    node_rpc(w3, "anvil_mine", "0x2")

    confirmed = wait_for_status(client, accepted["request_id"], "confirmed")
    assert mined["confirmations"] == 1
    assert confirmed["confirmations"] >= 3
    assert confirmed["block_number"] == mined["block_number"]


def test_reorg__block_reorganised_away__sent_again_and_confirmed_exactly_once(
        make_client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    client = make_client(relay_confirmations=3)
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
    mined = wait_for_status(client, accepted["request_id"], "mined")

    node_rpc(w3, "anvil_reorg", 1, [])  # the block with our transaction is replaced by an empty one
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before
    until(lambda: w3.eth.get_transaction_count(relayer.address) == nonce_before + 1, what="re-send")
    node_rpc(w3, "anvil_mine", "0x3")
    confirmed = wait_for_status(client, accepted["request_id"], "confirmed")

    assert confirmed["block_hash"] != mined["block_hash"]
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    assert cert.ownerOf(held_token) == recipient
    assert cert.nonces(holder) == 1


def test_stuck__base_fee_above_its_offer__replaced_with_higher_fees_never_above_cap(
        make_client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    first_offer = 2 * int(w3.eth.get_block("latest")["baseFeePerGas"]) + int(w3.eth.max_priority_fee)
    cap = 2 * first_offer  # room for five bumps of 1/8, not for ten
    client = make_client(relay_stuck_seconds=0.3, relay_max_fee_per_gas=cap)
    nonce_before = w3.eth.get_transaction_count(relayer.address)
    with manual_mining(w3):
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        assert accepted["status"] == "sent"
        until(lambda: any(int(a["max_fee"]) == cap for a in _attempts(client, accepted["request_id"])),
               what="fee bumps up to the cap")
        time.sleep(1)  # more stuck periods: at the cap it only re-sends
        attempts = _attempts(client, accepted["request_id"])
        latest = client.get(f"/relay/{accepted['request_id']}").json()
        node_rpc(w3, "evm_mine")

    confirmed = wait_for_status(client, accepted["request_id"], "confirmed")
    fees = [int(a["max_fee"]) for a in attempts]
    assert len(fees) >= 4
    assert fees == sorted(fees) and len(set(fees)) > 1
    assert max(fees) == fees[-1] == cap
    assert fees.count(cap) == 1
    assert latest["tx_hash"] != accepted["tx_hash"]
    mined = w3.eth.get_transaction(confirmed["tx_hash"])
    assert mined["maxFeePerGas"] <= cap
    assert confirmed["tx_hash"] in {a["tx_hash"] for a in attempts}
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    assert cert.ownerOf(held_token) == recipient


def test_dropped__node_forgets_the_transaction__sent_again_and_confirmed(
        make_client, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    client = make_client(relay_stuck_seconds=0.3)
    with manual_mining(w3):
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        node_rpc(w3, "anvil_dropTransaction", accepted["tx_hash"])
        assert w3.eth.get_transaction_count(relayer.address, "pending") == w3.eth.get_transaction_count(
            relayer.address)
        until(lambda: w3.eth.get_transaction_count(relayer.address, "pending")
               > w3.eth.get_transaction_count(relayer.address), what="the transaction back in the pool")
        node_rpc(w3, "evm_mine")

    wait_for_status(client, accepted["request_id"], "confirmed")
    assert cert.ownerOf(held_token) == recipient


def test_front_run__holder_moves_the_token_first__failed_with_reason(
        client, w3, cert, relayer, held_token, holder, recipient, attacker, transfer_body):
    with manual_mining(w3):
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        # The holder moves the bottle directly, paying a higher tip: it is mined first.
        front = {"to": cert.address, "data": "0x" + bytes(cert.transferFrom.encode_input(
                    holder.address, attacker.address, held_token)).hex(),
                 "nonce": w3.eth.get_transaction_count(holder.address), "gas": 200_000, "value": 0,
                 "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 100 * 10**9, "chainId": w3.eth.chain_id}
        w3.eth.send_raw_transaction(Account.sign_transaction(front, holder.private_key).raw_transaction)
        node_rpc(w3, "evm_mine")

    failed = wait_for_status(client, accepted["request_id"], "failed")
    assert failed["error"] == "the transaction reverted on chain"
    assert w3.eth.get_transaction_receipt(failed["tx_hash"])["status"] == 0
    assert cert.ownerOf(held_token) == attacker


# ------------------------------------------------------------ policy


def test_quota__account_actions_used_up__429_with_retry_after_and_nothing_sent(
        client, w3, relayer, held_token, holder, recipient, transfer_body):
    account = client.account["user_id"]
    put = client.put(f"/admin/quotas/{account}", json={"actions_per_day": 1, "gas_per_day": 10**9},
                     headers=bearer(ADMIN_TOKEN))
    assert put.status_code == 200
    first = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))
    assert first.status_code == 202
    wait_for_status(client, first.json()["request_id"], "confirmed")
    before = outbox(w3, relayer)

    second = client.post("/relay/transfers", json=transfer_body(recipient, holder, held_token))

    assert second.status_code == 429
    assert second.json()["error"] == "rate_limited"
    assert "quota of 1 relayed actions" in second.json()["detail"]
    assert 0 < int(second.headers["Retry-After"]) <= 86_401
    assert outbox(w3, relayer) == before
    usage = client.get("/admin/usage", headers=bearer(ADMIN_TOKEN)).json()["usage"]
    assert {u["account"]: u["actions"] for u in usage}[account] == 1  # the refused one is not charged


def test_quota__global_gas__429_for_everyone(make_client, held_token, holder, recipient, transfer_body):
    client = make_client(quota_global_gas_per_day=1_000)

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))

    assert response.status_code == 429
    assert "the service's daily gas quota of 1000" in response.json()["detail"]


def test_rate_limit__burst_used_up__429_with_retry_after(make_client, held_token, holder, recipient,
                                                         transfer_body):
    client = make_client(rate_limit_burst=2, rate_limit_per_second=0.1)
    body = transfer_body(holder, recipient, held_token)

    answers = [client.post("/relay/transfers", json=body).status_code for _ in range(3)]
    limited = client.post("/relay/transfers", json=body)

    assert answers[:2] == [202, 409]  # the second is a replay of a spent signature
    assert answers[2] == 429
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_min_balance__relayer_below__503_alert_in_logs_and_health(
        make_client, w3, relayer, held_token, holder, recipient, transfer_body, caplog):
    client = make_client(relayer_min_balance_wei=10**30)
    before = outbox(w3, relayer)

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))
    health = client.get("/health", headers=bearer(ADMIN_TOKEN)).json()["relayer"]

    assert response.status_code == 503
    assert response.json()["error"] == "relay_unavailable"
    assert "below its minimum" in response.json()["detail"]
    assert outbox(w3, relayer) == before
    assert health["low_balance"] is True
    assert health["keys"][0]["low_balance"] is True
    assert any("ALERT" in r.getMessage() for r in caplog.records)


def test_allow_list__function_not_relayed__refused_before_anything_is_sent(client, cert, w3, relayer):
    service = client.app.state.relayer
    contract = client.app.state.chain.certificate_contract
    before = outbox(w3, relayer)

    with pytest.raises(RelayRefused, match="not on its allow-list"):
        service._submit(Origin("someone"), "pause", relayer.address, service._chain.calldata(contract, "pause"),
                        "pause")

    assert outbox(w3, relayer) == before
    assert "WineCertificate.transfer_with_signature" in service.allow_list.functions()


# ------------------------------------------------------------ auth


RELAY_POSTS = ["/relay/transfers", "/relay/points-transfers", "/relay/gifts", "/relay/gift-revocations",
               "/relay/redemptions", "/relay/flags", "/relay/gift-claims", "/relay/gift-claims/by-secret",
               "/relay/loan-acceptances", "/relay/loan-extensions", "/relay/loan-repayments",
               "/me/relay/transfers", "/me/relay/points-transfers", "/me/relay/gifts",
               "/me/relay/gift-revocations", "/me/relay/redemptions", "/me/relay/flags", "/me/relay/gift-claims",
               "/me/relay/loan-acceptances", "/me/relay/loan-repayments"]


@pytest.mark.parametrize("path", RELAY_POSTS)
@pytest.mark.parametrize("header", [None, "Bearer amph_s_not-a-real-token", "Basic dXNlcjpwYXNz"])
def test_auth__relay_without_valid_credentials__401_and_nothing_sent(make_client, w3, relayer, path, header):
    client = make_client(auth=False)
    before = outbox(w3, relayer)

    response = client.post(path, json={}, headers={"Authorization": header} if header else {})

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert outbox(w3, relayer) == before


@pytest.mark.parametrize("method, path", [("get", "/admin/usage"), ("get", "/admin/quotas/default"),
                                          ("put", "/admin/quotas/default")])
def test_auth__operator_routes__401_without_token_403_with_an_account_token(client, method, path):
    body = {"json": {"actions_per_day": 1, "gas_per_day": 1}} if method == "put" else {}

    anonymous = getattr(client, method)(path, headers={"Authorization": ""}, **body)
    account = getattr(client, method)(path, **body)

    assert anonymous.status_code == 401
    assert account.status_code == 403
    assert account.json()["error"] == "forbidden"


def test_admin__quota_set_and_read_back(client):
    put = client.put("/admin/quotas/default", json={"actions_per_day": 7, "gas_per_day": 7_000_000},
                     headers=bearer(ADMIN_TOKEN))
    got = client.get(f"/admin/quotas/{client.account['user_id']}", headers=bearer(ADMIN_TOKEN))

    assert put.status_code == 200
    assert got.json() == {"account": client.account["user_id"], "actions_per_day": 7, "gas_per_day": 7_000_000,
                          "share_capped": False}


# ------------------------------------------------------------ key pool and webhook


def test_pool__actors_spread_over_keys_and_each_keeps_one_key(
        make_client, w3, accounts, cert, lot, winery, sign_transfer, deadline, recipient):
    spare = accounts[9]
    client = make_client(relayer_pool_keys=SecretStr(spare.private_key))
    service = client.app.state.relayer
    assert len(service.addresses) == 2
    holders = {}
    for candidate in accounts[12:20]:
        holders.setdefault(service.outbox.key_for(candidate.address), candidate)
    assert len(holders) == 2, "eight actors should not all hash to one key"
    senders = {}
    for position, (key, who) in enumerate(holders.items(), start=3):
        token = lot.token(position)
        cert.transferFrom(winery, who, token, sender=winery)
        signature = sign_transfer(who, who.address, recipient.address, token, cert.nonces(who), deadline)
        body = {"from": who.address, "to": recipient.address, "token_id": token, "nonce": cert.nonces(who),
                "deadline": deadline, "signature": "0x" + signature.hex()}
        accepted = client.post("/relay/transfers", json=body).json()
        done = wait_for_status(client, accepted["request_id"], "confirmed")
        senders[key] = w3.eth.get_transaction(done["tx_hash"])["from"]

    assert senders == {key: key for key in holders}


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((json.loads(body), self.headers.get("X-Amphora-Signature", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook__status_changes_pushed_with_a_valid_signature(
        make_client, held_token, holder, recipient, transfer_body):
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(relay_webhook_url=f"http://127.0.0.1:{server.server_port}/hook",
                             relay_webhook_secret=SecretStr("hook-secret"))
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        wait_for_status(client, accepted["request_id"], "confirmed")
        until(lambda: any(r[0]["status"] == "confirmed" for r in _Hook.received), what="the confirmed push")
    finally:
        server.shutdown()

    statuses = [body["status"] for body, _, _ in _Hook.received if body["request_id"] == accepted["request_id"]]
    assert statuses[0] == "sent" and statuses[-1] == "confirmed"
    for _, signature, raw in _Hook.received:
        assert verify(b"hook-secret", raw, signature)


def test_postgresql__relay_idempotency_and_confirmation_on_a_shared_database(
        make_client, postgres_url, w3, cert, relayer, held_token, holder, recipient, transfer_body):
    client = make_client(database_url=SecretStr(postgres_url))
    body = transfer_body(holder, recipient, held_token)
    nonce_before = w3.eth.get_transaction_count(relayer.address)

    first = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "pg-1"})
    again = client.post("/relay/transfers", json=body, headers={"Idempotency-Key": "pg-1"})
    done = wait_for_status(client, first.json()["request_id"], "confirmed")

    assert client.get("/health", headers=bearer(ADMIN_TOKEN)).json()["relayer"]["database"] == "postgresql"
    assert again.json()["request_id"] == first.json()["request_id"]
    assert done["nonce"] == nonce_before
    assert w3.eth.get_transaction_count(relayer.address) == nonce_before + 1
    assert cert.ownerOf(held_token) == recipient
