"""The operator's views and audit log (``/admin``): usage by identifier, the
relayer's keys, stuck and failed requests, the index's lag, sponsored gas per
day against the budget, and every quota change in the audit log."""

from __future__ import annotations

import hashlib

import pytest
from api_fixtures import ADMIN_TOKEN, bearer, manual_mining, node_rpc, until, wait_for_status
from eth_account import Account

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

OPERATOR = bearer(ADMIN_TOKEN)
VIEWS = ["/admin/relayer", "/admin/requests", "/admin/index", "/admin/gas", "/admin/audit"]


@pytest.mark.parametrize("path", VIEWS)
def test_operator_views__without_a_token_401__with_an_accounts_token_403(client, path):
    anonymous = client.get(path, headers={"Authorization": ""})
    account = client.get(path)
    wrong = client.get(path, headers=bearer(ADMIN_TOKEN + "x"))

    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert account.status_code == 403 and wrong.status_code == 403
    assert account.json()["detail"] == "not the operator token"


@pytest.mark.parametrize("path", VIEWS)
def test_operator_views__no_operator_token_configured__503(make_client, path):
    client = make_client(auth=False, admin_token=None)

    response = client.get(path, headers=OPERATOR)

    assert response.status_code == 503 and "AMPHORA_ADMIN_TOKEN" in response.json()["detail"]


@pytest.mark.parametrize("path, query", [
    ("/admin/requests", {"state": "lost"}), ("/admin/requests", {"limit": 0}), ("/admin/requests", {"limit": 201}),
    ("/admin/gas", {"days": 0}), ("/admin/gas", {"days": 91}), ("/admin/audit", {"limit": "many"}),
])
def test_operator_views__bad_query__422(client, path, query):
    response = client.get(path, params=query, headers=OPERATOR)

    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_usage__an_accounts_row_names_its_identifier_and_the_days_gas_is_the_services(
        client, held_token, holder, recipient, transfer_body):
    accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))
    assert accepted.status_code == 202, accepted.text
    wait_for_status(client, accepted.json()["request_id"], "confirmed")

    usage = client.get("/admin/usage", headers=OPERATOR).json()["usage"]
    gas = client.get("/admin/gas", headers=OPERATOR).json()

    row = next(u for u in usage if u["account"] == client.account["user_id"])
    total = next(u for u in usage if u["account"] == "*")
    assert row["identifier"] == client.account["identifier"] and row["actions"] == 1
    assert total["identifier"] is None
    assert len(gas["days"]) == 14 and gas["days"][-1]["day"] == gas["day"] == usage[0].get("day", gas["day"])
    assert gas["gas"] == gas["days"][-1]["gas"] == total["gas"] > 0
    assert gas["actions"] == total["actions"] and gas["gas_budget"] == total["gas_per_day"]


def test_put_quota__the_audit_log_keeps_who_what_and_the_values_before_and_after(client):
    account = client.account["user_id"]
    before = client.get(f"/admin/quotas/{account}", headers=OPERATOR).json()

    put = client.put(f"/admin/quotas/{account}", json={"actions_per_day": 3, "gas_per_day": 900_000},
                     headers=OPERATOR)
    again = client.put(f"/admin/quotas/{account}", json={"actions_per_day": 3, "gas_per_day": 900_000},
                       headers=OPERATOR)
    audit = client.get("/admin/audit", headers=OPERATOR).json()["entries"]

    assert put.status_code == again.status_code == 200
    mine = [e for e in audit if e["subject"] == account]
    assert len(mine) == 1  # the same limits again changed nothing: nothing to record
    entry = mine[0]
    assert entry["action"] == "quota.set" and entry["identifier"] == client.account["identifier"]
    assert entry["who"] == "operator:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:12]
    assert ADMIN_TOKEN not in str(audit)
    assert entry["old"] == {"actions_per_day": before["actions_per_day"], "gas_per_day": before["gas_per_day"]}
    assert entry["new"] == {"actions_per_day": 3, "gas_per_day": 900_000}


def test_put_quota__the_audit_record_cannot_be_written__the_quota_is_not_changed_either(client):
    account = client.account["user_id"]
    before = client.get(f"/admin/quotas/{account}", headers=OPERATOR).json()
    client.get("/admin/audit", headers=OPERATOR)  # the audit table exists from here on
    with client.app.state.db.transaction() as tx:  # the database refuses every audit row, as a full disk would
        tx.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON operator_audit "
                   "BEGIN SELECT RAISE(ABORT, 'no room for the audit row'); END")

    with pytest.raises(Exception, match="no room for the audit row"):
        client.put(f"/admin/quotas/{account}", json={"actions_per_day": 2, "gas_per_day": 1}, headers=OPERATOR)

    assert client.get(f"/admin/quotas/{account}", headers=OPERATOR).json() == before


@pytest.mark.parametrize("headers", [{"Authorization": ""}, "account", bearer("not-the-operator-token-00000")])
def test_put_quota__without_the_operator_token__refused_and_nothing_recorded(client, headers):
    account = client.account["user_id"]
    before = client.get(f"/admin/quotas/{account}", headers=OPERATOR).json()

    response = client.put(f"/admin/quotas/{account}", json={"actions_per_day": 0, "gas_per_day": 0},
                          **({} if headers == "account" else {"headers": headers}))

    assert response.status_code in (401, 403)
    assert client.get(f"/admin/quotas/{account}", headers=OPERATOR).json() == before
    assert all(e["subject"] != account for e in client.get("/admin/audit", headers=OPERATOR).json()["entries"])


@pytest.mark.parametrize("body", [{"actions_per_day": -1, "gas_per_day": 1}, {"actions_per_day": 1},
                                  {"actions_per_day": 1, "gas_per_day": 1, "admin": True}])
def test_put_quota__bad_body__422_and_nothing_recorded(client, body):
    account = client.account["user_id"]

    response = client.put(f"/admin/quotas/{account}", json=body, headers=OPERATOR)

    assert response.status_code == 422
    assert all(e["subject"] != account for e in client.get("/admin/audit", headers=OPERATOR).json()["entries"])


def test_relayer_keys__each_keys_balance_as_the_node_reads_it(client, w3, relayer):
    response = client.get("/admin/relayer", headers=OPERATOR)

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys[0]["address"] == relayer.address
    assert int(keys[0]["balance_wei"]) == w3.eth.get_balance(relayer.address) > 0
    assert keys[0]["low_balance"] is False and keys[0]["fault"] is None


def test_relayer_keys__no_relayer_configured__503(make_client):
    client = make_client(auth=False, relayer_private_key=None)

    response = client.get("/admin/relayer", headers=OPERATOR)

    assert response.status_code == 503


def test_index__lag_between_the_indexed_block_and_the_head(client):
    response = client.get("/admin/index", headers=OPERATOR)

    assert response.status_code == 200
    index = response.json()
    assert index["state"] in ("following", "behind", "stopped", "empty")
    if index["lag"] is not None:
        assert index["lag"] == index["head_block"] - index["indexed_block"]
    assert index["max_lag_blocks"] > 0


def test_requests__a_transaction_without_receipt__listed_as_stuck_with_its_identifier(
        make_client, w3, held_token, holder, recipient, transfer_body):
    client = make_client(relay_stuck_seconds=0.2)
    with manual_mining(w3):
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        until(lambda: any(r["request_id"] == accepted["request_id"] for r in client.get(
            "/admin/requests", params={"state": "stuck"}, headers=OPERATOR).json()["requests"]), what="stuck")
        stuck = client.get("/admin/requests", params={"state": "stuck"}, headers=OPERATOR).json()
        node_rpc(w3, "evm_mine")
    wait_for_status(client, accepted["request_id"], "confirmed")
    after = client.get("/admin/requests", params={"state": "stuck"}, headers=OPERATOR).json()

    row = next(r for r in stuck["requests"] if r["request_id"] == accepted["request_id"])
    assert row["identifier"] == client.account["identifier"] and row["status"] == "sent"
    assert stuck["stuck_seconds"] == 0.2
    assert all(r["request_id"] != accepted["request_id"] for r in after["requests"])


def test_requests__front_run_on_chain__listed_as_failed_with_its_reason(
        client, w3, cert, held_token, holder, recipient, attacker, transfer_body):
    with manual_mining(w3):
        accepted = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token)).json()
        front = {"to": cert.address, "data": "0x" + bytes(cert.transferFrom.encode_input(
                    holder.address, attacker.address, held_token)).hex(),
                 "nonce": w3.eth.get_transaction_count(holder.address), "gas": 200_000, "value": 0,
                 "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 100 * 10**9, "chainId": w3.eth.chain_id}
        w3.eth.send_raw_transaction(Account.sign_transaction(front, holder.private_key).raw_transaction)
        node_rpc(w3, "evm_mine")
    wait_for_status(client, accepted["request_id"], "failed")

    failed = client.get("/admin/requests", params={"state": "failed"}, headers=OPERATOR).json()["requests"]

    row = next(r for r in failed if r["request_id"] == accepted["request_id"])
    assert row["status"] == "failed" and row["error"] == "the transaction reverted on chain"
    assert row["identifier"] == client.account["identifier"]
