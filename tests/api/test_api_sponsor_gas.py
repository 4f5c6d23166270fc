"""The sponsor's gas (issue 12, items 1 and 2): the relayer pays only for calls
that will do on chain what their simulation said, never twice for a call that
already reverted, only for actions that do something, and within budgets per
account, per network and per share of the service's day."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from api_fixtures import ADMIN_TOKEN, SCALE, USD, outbox, sign_up, wait_for_status
from eth_account import Account
from fastapi.testclient import TestClient
from web3 import Web3

from amphora import eip712
from api.errors import AlreadyReverted, TooManyRequests
from api.policy import Quotas, RevertLedger, network_of
from api.settings import Settings
from storage.db import Database

#: The API fixtures (apps and clients on the test deployment), and a throwaway PostgreSQL server.
pytest_plugins = ["api_fixtures", "pg"]

#: What a wallet or customer holds in points (smallest unit) in these tests.
HELD = 10 * USD * SCALE
VALUE = USD * SCALE
TRANSFER_AUTH = "TransferWithAuthorization"


@pytest.fixture
def valid_before(chain) -> int:
    return chain.pending_timestamp + 3_600


@pytest.fixture
def authorization(deployed_points, chain_id, valid_before):
    """Builder: a `POST /relay/points-transfers` body from ``sender`` (an address)
    signed by ``signer`` (an account with a private key)."""
    _, name, version, _, _, _, _ = deployed_points.eip712Domain()

    def _body(sender: str, to: str, signer, value: int = VALUE, nonce: bytes | None = None) -> dict:
        nonce = nonce or secrets.token_bytes(32)
        message = eip712.authorization_message(sender, to, value, 0, valid_before, nonce)
        data = eip712.typed_data(TRANSFER_AUTH, message, chain_id, deployed_points.address, name=name,
                                 version=version)
        signature = eip712.sign(data, signer.private_key)
        return {"from": sender, "to": to, "value": value, "valid_after": 0, "valid_before": valid_before,
                "nonce": "0x" + nonce.hex(), "signature": "0x" + signature.hex()}

    return _body


@pytest.fixture
def two_faced_wallet(project, attacker, admin, issue_points):
    """An ERC-1271 wallet of ``attacker`` that accepts its owner's signatures only
    where ``tx.gasprice`` is 0 (a simulation without fee fields), holding HELD points."""
    wallet = project.MockTwoFacedWallet.deploy(attacker, True, sender=admin)
    issue_points(wallet, HELD // SCALE)
    return wallet


@contextlib.contextmanager
def manual_mining(w3: Web3) -> Iterator[None]:
    """Anvil mines only on ``evm_mine`` (so a transaction can be put before a
    relayed one in the same block); automatic mining again afterwards."""
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield
    finally:
        w3.provider.make_request("evm_setAutomine", [True])


def _send_first(w3: Web3, account, to: str, data: str) -> str:
    """Put ``account``'s call in the pool with a tip far above the relayer's, so
    the next block holds it first."""
    key = Account.from_key(account.private_key)
    signed = key.sign_transaction({
        "chainId": w3.eth.chain_id, "to": to, "data": data, "value": 0, "gas": 200_000, "type": 2,
        "nonce": w3.eth.get_transaction_count(key.address, "pending"),
        "maxFeePerGas": 1_000 * 10**9, "maxPriorityFeePerGas": 500 * 10**9,
    })
    return w3.eth.send_raw_transaction(signed.raw_transaction).hex()


# ------------------------------------------------------------ item 1: simulation that lies


def test_relay_points__erc1271_wallet_valid_only_when_gasprice_is_zero__refused_every_time_nothing_sent(
        client, w3, relayer, two_faced_wallet, attacker, recipient, deployed_points, authorization):
    body = authorization(two_faced_wallet.address, recipient.address, attacker)
    before = outbox(w3, relayer)

    answers = [client.post("/relay/points-transfers", json=body) for _ in range(3)]

    assert [a.status_code for a in answers] == [409, 409, 409]
    assert answers[0].json() == {"error": "would_revert", "detail": "eip3009: invalid signature"}
    assert outbox(w3, relayer) == before
    assert deployed_points.balanceOf(two_faced_wallet) == HELD


def test_relay_points__zero_value_from_lying_erc1271_wallet__refused_every_time_nothing_sent(
        client, w3, relayer, two_faced_wallet, attacker, recipient, authorization):
    body = authorization(two_faced_wallet.address, recipient.address, attacker, value=0)
    before = outbox(w3, relayer)

    answers = [client.post("/relay/points-transfers", json=body) for _ in range(3)]

    assert [a.status_code for a in answers] == [409, 409, 409]
    assert outbox(w3, relayer) == before


def test_relay_points__call_that_reverted_on_chain__same_body_refused_without_a_second_revert(
        client, w3, relayer, two_faced_wallet, attacker, recipient, deployed_points, authorization):
    body = authorization(two_faced_wallet.address, recipient.address, attacker)
    contract = w3.eth.contract(address=two_faced_wallet.address, abi=[
        {"type": "function", "name": "set_mode", "stateMutability": "nonpayable", "outputs": [],
         "inputs": [{"name": "valid_", "type": "bool"}, {"name": "lie_", "type": "bool"}]}])

    def set_mode(valid: bool) -> None:
        _send_first(w3, attacker, two_faced_wallet.address,
                    contract.encode_abi("set_mode", args=[valid, False]))

    with manual_mining(w3):
        set_mode(True)  # honest in simulation and on chain ...
        w3.provider.make_request("evm_mine", [])
        first = client.post("/relay/points-transfers", json=body)
        assert first.status_code == 202, first.text
        set_mode(False)  # ... until its owner turns it in the same block, ahead of the relayed call
        w3.provider.make_request("evm_mine", [])
        receipt = w3.eth.wait_for_transaction_receipt(first.json()["tx_hash"], timeout=10)
        assert receipt["status"] == 0
        assert wait_for_status(client, first.json()["request_id"], "failed")["status"] == "failed"
        set_mode(True)  # and back: the same body simulates fine again
        w3.provider.make_request("evm_mine", [])
        before = outbox(w3, relayer)

        again = client.post("/relay/points-transfers", json=body)

        w3.provider.make_request("evm_mine", [])
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "already_reverted"
    assert first.json()["request_id"] in again.json()["detail"]
    assert outbox(w3, relayer)[0] == before[0]
    assert deployed_points.balanceOf(two_faced_wallet) == HELD


def _revert_on_chain(client, w3, body: dict, front_run) -> dict:
    """Relay ``body`` (it passes the simulation), then let ``front_run()`` put a
    transaction ahead of it in the same block so that it reverts; the failed request."""
    with manual_mining(w3):
        first = client.post("/relay/points-transfers", json=body)
        assert first.status_code == 202, first.text
        front_run()
        w3.provider.make_request("evm_mine", [])
        assert w3.eth.wait_for_transaction_receipt(first.json()["tx_hash"], timeout=10)["status"] == 0
    return wait_for_status(client, first.json()["request_id"], "failed")


def _set_mode_call(w3: Web3, wallet: str, valid: bool) -> str:
    contract = w3.eth.contract(address=wallet, abi=[
        {"type": "function", "name": "set_mode", "stateMutability": "nonpayable", "outputs": [],
         "inputs": [{"name": "valid_", "type": "bool"}, {"name": "lie_", "type": "bool"}]}])
    return contract.encode_abi("set_mode", args=[valid, False])


def test_relay_points__contract_actor_over_its_reverted_gas_budget__429_other_actors_still_served(
        make_client, w3, relayer, two_faced_wallet, attacker, customer, recipient, issue_points, authorization):
    client = make_client(relay_contract_reverted_gas_per_actor=1)
    issue_points(customer, HELD // SCALE)
    two_faced_wallet.set_mode(True, False, sender=attacker)
    failed = _revert_on_chain(client, w3, authorization(two_faced_wallet.address, recipient.address, attacker),
                              lambda: _send_first(w3, attacker, two_faced_wallet.address,
                                                  _set_mode_call(w3, two_faced_wallet.address, False)))
    two_faced_wallet.set_mode(True, False, sender=attacker)  # valid again: a new body simulates fine
    before = outbox(w3, relayer)

    refused = client.post("/relay/points-transfers",
                          json=authorization(two_faced_wallet.address, recipient.address, attacker))
    served = client.post("/relay/points-transfers", json=authorization(customer.address, recipient.address, customer))

    assert refused.status_code == 429, refused.text
    assert "reverted on chain" in refused.json()["detail"]
    assert "budget of a contract actor is 1" in refused.json()["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_401
    _relayed(w3, served)
    assert outbox(w3, relayer)[0] == before[0] + 1
    usage = client.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    reverted = {r["actor"]: r for r in usage["reverted"]}
    assert reverted[two_faced_wallet.address.lower()]["calls"] == 1
    assert reverted[two_faced_wallet.address.lower()]["gas"] == w3.eth.get_transaction_receipt(
        failed["tx_hash"])["gasUsed"]
    assert usage["contract_reverted_gas_budget"] == 1


def test_relay_points__account_actor_over_its_reverted_gas_budget__429(
        make_client, w3, relayer, deployed_points, customer, recipient, attacker, issue_points, authorization):
    client = make_client(relay_reverted_gas_per_actor=1)
    issue_points(customer, HELD // SCALE)
    empty = deployed_points.transfer.encode_input(attacker.address, HELD)  # the payer spends it all first
    _revert_on_chain(client, w3, authorization(customer.address, recipient.address, customer),
                     lambda: _send_first(w3, customer, deployed_points.address, "0x" + bytes(empty).hex()))
    issue_points(customer, HELD // SCALE)
    before = outbox(w3, relayer)

    refused = client.post("/relay/points-transfers", json=authorization(customer.address, recipient.address, customer))

    assert refused.status_code == 429, refused.text
    assert "budget of an actor is 1" in refused.json()["detail"]
    assert outbox(w3, relayer) == before


@pytest.mark.parametrize("listed", [False, True])
def test_relay_points__contract_code_allow_list__only_listed_code_is_served(
        make_client, project, admin, w3, relayer, attacker, recipient, issue_points, authorization, listed):
    wallet = project.MockERC1271Wallet.deploy(attacker, sender=admin)
    issue_points(wallet, HELD // SCALE)
    code_hash = "0x" + Web3.keccak(w3.eth.get_code(wallet.address)).hex().removeprefix("0x")
    client = make_client(relay_contract_code_hashes=(code_hash if listed else "0x" + "11" * 32))
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=authorization(wallet.address, recipient.address, attacker))

    if listed:
        assert response.status_code == 202, response.text
    else:
        assert response.status_code == 409
        assert response.json()["error"] == "relay_refused"
        assert code_hash in response.json()["detail"] and "allow-list" in response.json()["detail"]
        assert outbox(w3, relayer) == before


@pytest.mark.parametrize("value", ["0x12", "0x" + "1" * 63, "abc", "0x" + "g" * 64])
def test_settings__malformed_contract_code_hash__refused_at_startup(api_settings, value):
    with pytest.raises(ValueError, match="relay_contract_code_hashes"):
        Settings.model_validate({**api_settings.model_dump(), "relay_contract_code_hashes": value})


# ------------------------------------------------------------ item 2: free accounts, free gas


def test_relay_points__zero_value_transfer__409_refused_and_nothing_sent(
        client, w3, relayer, customer, recipient, issue_points, authorization):
    issue_points(customer, HELD // SCALE)
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers",
                           json=authorization(customer.address, recipient.address, customer, value=0))

    assert response.status_code == 409
    assert response.json() == {"error": "relay_refused",
                               "detail": "the relayer does not pay for a transfer of 0 points: it would do nothing"}
    assert outbox(w3, relayer) == before


def test_me_relay_points__zero_value_from_a_fresh_custodial_account__409_refused_and_nothing_sent(
        client, w3, relayer, recipient):
    before = outbox(w3, relayer)

    response = client.post("/me/relay/points-transfers", json={"to": recipient.address, "value": 0},
                           headers={"Idempotency-Key": secrets.token_hex(8)})

    assert response.status_code == 409, response.text
    assert response.json()["error"] == "relay_refused"
    assert outbox(w3, relayer) == before


def test_relay_points__sender_holds_no_points__409_and_nothing_sent(
        client, w3, relayer, deployed_points, attacker, recipient, authorization):
    assert deployed_points.balanceOf(attacker) == 0
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=authorization(attacker.address, recipient.address, attacker))

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "erc20: transfer amount exceeds balance"}
    assert outbox(w3, relayer) == before


@pytest.mark.parametrize("host, network", [
    ("203.0.113.77", "net:203.0.113.0/24"),
    ("::ffff:203.0.113.9", "net:203.0.113.0/24"),
    ("2001:db8:1:2ff:abcd::1", "net:2001:db8:1:200::/56"),
    ("testclient", "net:testclient"),
    (None, "net:unknown"),
])
def test_network_of__address__its_prefix(host, network):
    assert network_of(host) == network


def test_network_of__configured_prefixes__used():
    assert network_of("203.0.113.77", v4_prefix=16) == "net:203.0.0.0/16"
    assert network_of("2001:db8:1:2ff::1", v6_prefix=48) == "net:2001:db8:1::/48"


def _relayed(w3: Web3, response) -> None:
    """``response`` is a 202 whose transaction is mined."""
    assert response.status_code == 202, response.text
    w3.eth.wait_for_transaction_receipt(response.json()["tx_hash"], timeout=10)


def _from(client: TestClient, host: str, token: str | None = None) -> TestClient:
    """Another client of ``client``'s app, connecting from ``host``, signed in
    with ``token`` or as a new account."""
    other = TestClient(client.app, client=(host, 40_000))
    other.headers["Authorization"] = f"Bearer {token or sign_up(other)['token']}"
    return other


@pytest.mark.parametrize("limit", [{"quota_network_actions_per_day": 1}, {"quota_network_gas_per_day": 100_000}])
def test_relay__network_quota_used_up__429_for_its_accounts_not_for_other_networks(
        make_client, w3, relayer, customer, recipient, issue_points, authorization, limit):
    issue_points(customer, HELD // SCALE)
    app_client = make_client(auth=False, **limit)
    first, neighbour, elsewhere = (_from(app_client, "203.0.113.5"), _from(app_client, "203.0.113.77"),
                                   _from(app_client, "198.51.100.5"))
    _relayed(w3, first.post("/relay/points-transfers",
                            json=authorization(customer.address, recipient.address, customer)))
    before = outbox(w3, relayer)

    refused = neighbour.post("/relay/points-transfers",
                             json=authorization(customer.address, recipient.address, customer))
    served = elsewhere.post("/relay/points-transfers",
                            json=authorization(customer.address, recipient.address, customer))

    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"].startswith("your network's daily")
    _relayed(w3, served)
    assert outbox(w3, relayer)[0] == before[0] + 1
    usage = app_client.get("/admin/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["usage"]
    networks = {u["account"]: u["actions"] for u in usage if u["account"].startswith("net:")}
    assert networks == {"net:203.0.113.0/24": 1, "net:198.51.100.0/24": 1}


def test_relay__account_gas_budget_used_up__429_for_that_account_not_for_another(
        make_client, w3, relayer, customer, recipient, issue_points, authorization):
    issue_points(customer, HELD // SCALE)
    app_client = make_client(auth=False, quota_account_gas_per_day=100_000)  # one points transfer, not two
    spender, other = _from(app_client, "203.0.113.5"), _from(app_client, "198.51.100.5")
    _relayed(w3, spender.post("/relay/points-transfers",
                              json=authorization(customer.address, recipient.address, customer)))
    before = outbox(w3, relayer)

    refused = spender.post("/relay/points-transfers", json=authorization(customer.address, recipient.address, customer))
    served = other.post("/relay/points-transfers", json=authorization(customer.address, recipient.address, customer))

    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"].startswith("your account's daily gas quota of 100000 is used up")
    _relayed(w3, served)
    assert outbox(w3, relayer)[0] == before[0] + 1


def test_relay__share_of_the_service_day_used_up__429_for_that_account_and_network_only(
        make_client, w3, relayer, customer, recipient, issue_points, authorization):
    issue_points(customer, HELD // SCALE)
    # The account and network defaults are far above 1% of 200 actions: the share is what binds.
    app_client = make_client(auth=False, quota_global_actions_per_day=200, quota_max_share=0.005)
    abuser = _from(app_client, "203.0.113.5")
    _relayed(w3, abuser.post("/relay/points-transfers",
                             json=authorization(customer.address, recipient.address, customer)))
    token = abuser.headers["Authorization"].removeprefix("Bearer ")
    before = outbox(w3, relayer)

    same_network = _from(app_client, "203.0.113.6")
    same_account = _from(app_client, "192.0.2.1", token=token)
    answers = [c.post("/relay/points-transfers", json=authorization(customer.address, recipient.address, customer))
               for c in (same_network, same_account, _from(app_client, "198.51.100.5"))]

    assert [a.status_code for a in answers[:2]] == [429, 429]
    _relayed(w3, answers[2])
    assert answers[0].json()["detail"].startswith("your network's daily quota of 1 relayed actions (0.50% of the")
    assert answers[1].json()["detail"].startswith("your account's daily quota of 1 relayed actions (0.50% of the")
    assert outbox(w3, relayer)[0] == before[0] + 1
    quota = app_client.get("/admin/quotas/default", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert quota == {"account": "default", "actions_per_day": 1, "gas_per_day": 50_000_000, "share_capped": True}


# ------------------------------------------------------------ the ledgers on each database


@pytest.fixture(params=["sqlite", "postgresql"])
def policy_db(request) -> Iterator[Database]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    database = Database(url=url)
    yield database
    database.close()


def test_revert_ledger__on_each_database__remembers_calls_and_sums_gas_per_actor(policy_db):
    ledger = RevertLedger(policy_db, Settings(relay_reverted_gas_per_actor=100_000,
                                              relay_contract_reverted_gas_per_actor=1_000))
    actor, to = "0x" + "ab" * 20, "0x" + "cd" * 20
    ledger.record("request-1", actor, to, "0x1234", 600)
    ledger.record("request-1", actor, to, "0x1234", 600)  # the worker saw it twice: counted once

    with pytest.raises(AlreadyReverted, match="request-1"):
        ledger.check_call(to.upper().replace("0X", "0x"), "0x1234")
    ledger.check_call(to, "0x1235")  # another call is not refused
    with policy_db.transaction() as tx:
        ledger.check_actor(tx, actor, None)  # 600 of 100,000
        ledger.check_actor(tx, actor, "0x" + "00" * 32)  # 600 of 1,000
    ledger.record("request-2", actor.upper().replace("0X", "0x"), to, "0x99", 500)
    with policy_db.transaction() as tx, pytest.raises(TooManyRequests, match="budget of a contract actor is 1000"):
        ledger.check_actor(tx, actor, "0x" + "00" * 32)
    assert [(u.actor, u.calls, u.gas) for u in ledger.usage()] == [(actor, 2, 1_100)]


def test_quotas__on_each_database__network_and_share_bind_and_a_refusal_is_not_charged(policy_db):
    quotas = Quotas(policy_db, Settings(quota_global_actions_per_day=1_000, quota_max_share=0.002,
                                        quota_network_actions_per_day=100))
    with policy_db.transaction() as tx:
        quotas.charge(tx, "alice", 10, "net:203.0.113.0/24")
        quotas.charge(tx, "alice", 10, "net:203.0.113.0/24")
    with pytest.raises(TooManyRequests, match="your network's daily quota of 2 relayed actions"):
        with policy_db.transaction() as tx:
            quotas.charge(tx, "bob", 10, "net:203.0.113.0/24")

    usage = {u.account: (u.actions, u.gas) for u in quotas.usage()}
    assert usage == {"*": (2, 20), "alice": (2, 20), "net:203.0.113.0/24": (2, 20)}
    assert quotas.get_limit("net:198.51.100.0/24").share_capped is True
    assert quotas.get_limit("*").actions_per_day == 1_000
