"""The sponsor's gas (issue 12, items 1 and 2): the relayer pays only for calls
that will do on chain what their simulation said, never twice for a call that
already reverted, only for actions that do something, and within budgets per
account, per network and per share of the service's day."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
from api_fixtures import SCALE, USD, outbox, wait_for_status
from eth_account import Account
from fastapi.testclient import TestClient
from web3 import Web3

from amphora import eip712

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

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
