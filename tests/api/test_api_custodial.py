"""Custodial relaying: a signed-in account without a wallet acts on its own
certificates and points; the service signs with the account's key and the
account's address is the on-chain actor. One account cannot act for another."""

from __future__ import annotations

import time

import pytest
from api_fixtures import PASSWORD, SCALE, USD, bearer, idempotency_key, outbox, sign_up, wait_for_status
from eth_account import Account
from eth_utils import keccak

from amphora import eip712

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


@pytest.fixture
def me(client) -> dict:
    """The client's own account (the signup answer)."""
    return client.account


@pytest.fixture
def my_token(cert, lot, winery, me) -> int:
    """Bottle 3 of a fresh lot, sold to the custodial account."""
    token_id = lot.token(3)
    cert.transferFrom(winery, me["address"], token_id, sender=winery)
    return token_id


def _confirmed(client, response) -> dict:
    assert response.status_code == 202, response.text
    return wait_for_status(client, response.json()["request_id"], "confirmed")


def test_transfer__my_certificate__moves_with_my_address_as_actor_and_no_gas_of_mine(
        client, w3, cert, relayer, me, my_token, recipient):
    done = _confirmed(client, client.post("/me/relay/transfers",
                                          json={"token_id": my_token, "to": recipient.address},
                                          headers=idempotency_key()))

    assert cert.ownerOf(my_token) == recipient
    assert done["actor"] == me["address"]
    assert w3.eth.get_transaction(done["tx_hash"])["from"] == relayer.address
    assert w3.eth.get_balance(me["address"]) == 0
    assert cert.nonces(me["address"]) == 1


def test_transfer__two_at_once__both_signed_on_consecutive_nonces(
        client, cert, lot, winery, me, my_token, recipient):
    second = lot.token(4)
    cert.transferFrom(winery, me["address"], second, sender=winery)

    first = client.post("/me/relay/transfers", json={"token_id": my_token, "to": recipient.address},
                        headers=idempotency_key())
    then = client.post("/me/relay/transfers", json={"token_id": second, "to": recipient.address},
                       headers=idempotency_key())

    _confirmed(client, first)
    _confirmed(client, then)
    assert cert.ownerOf(my_token) == cert.ownerOf(second) == recipient
    assert cert.nonces(me["address"]) == 2


def test_transfer__another_accounts_certificate__409_and_nothing_sent(
        client, w3, cert, relayer, me, my_token, attacker):
    thief = bearer(sign_up(client)["token"])
    before = outbox(w3, relayer)

    response = client.post("/me/relay/transfers", json={"token_id": my_token, "to": attacker.address},
                           headers=idempotency_key(**thief))

    assert response.status_code == 409
    assert response.json()["detail"] == "certificate: transfer from incorrect owner"
    assert outbox(w3, relayer) == before
    assert cert.ownerOf(my_token) == me["address"]


def test_points__pay_from_my_points__moves_them(client, deployed_points, issue_points, me, merchant):
    issue_points(me["address"], 10 * USD)
    value = 3 * SCALE * USD

    _confirmed(client, client.post("/me/relay/points-transfers", json={"to": merchant.address, "value": value},
                                   headers=idempotency_key()))

    assert deployed_points.balanceOf(me["address"]) == 7 * SCALE * USD
    assert deployed_points.balanceOf(merchant) == value


def test_points__more_than_i_hold__409(client, deployed_points, issue_points, me, merchant):
    issue_points(me["address"], USD)

    response = client.post("/me/relay/points-transfers", json={"to": merchant.address, "value": 2 * SCALE * USD},
                           headers=idempotency_key())

    assert response.status_code == 409
    assert response.json()["error"] == "would_revert"


def test_gift__created_by_me_then_claimed_by_a_new_account_with_the_secret(
        make_client, client, cert, me, my_token, chain):
    claim_key = Account.create()
    expiry = chain.pending_timestamp + 86_400
    _confirmed(client, client.post("/me/relay/gifts", json={"token_id": my_token, "claim_key": claim_key.address,
                                                            "expiry": expiry}, headers=idempotency_key()))
    assert cert.state_of(my_token) != 0
    friend = sign_up(client)  # the recipient signs up on the same service, no wallet

    claimed = _confirmed(client, client.post(
        "/me/relay/gift-claims", headers=idempotency_key(**bearer(friend["token"])),
        json={"token_id": my_token, "claim_secret": "0x" + claim_key.key.hex()}))

    assert cert.ownerOf(my_token) == friend["address"]
    assert claimed["actor"] == friend["address"]


def test_gift_revocation_redemption_and_flag__each_relayed_for_me(client, cert, lot, winery, me, my_token):
    claim_key = Account.create()
    _confirmed(client, client.post("/me/relay/gifts", json={
        "token_id": my_token, "claim_key": claim_key.address, "expiry": int(time.time()) + 86_400},
        headers=idempotency_key()))
    _confirmed(client, client.post("/me/relay/gift-revocations", json={"token_id": my_token},
                                   headers=idempotency_key()))
    assert cert.state_of(my_token) == 0
    flagged = lot.token(5)
    cert.transferFrom(winery, me["address"], flagged, sender=winery)

    _confirmed(client, client.post("/me/relay/redemptions", json={
        "token_id": my_token, "order_hash": "0x" + keccak(text="deliver to me").hex()}, headers=idempotency_key()))
    _confirmed(client, client.post("/me/relay/flags", json={
        "token_id": flagged, "reason_hash": "0x" + keccak(text="lost at the party").hex()}, headers=idempotency_key()))

    assert cert.state_of(my_token) != 0 and cert.state_of(flagged) != 0
    assert cert.state_of(my_token) != cert.state_of(flagged)
    assert cert.nonces(me["address"]) == 4


def test_key_export__lets_me_leave_and_sign_myself(client, cert, me, my_token, recipient, chain_id, chain):
    exported = client.post("/me/key-export", json={"password": PASSWORD})
    assert exported.status_code == 200
    key = exported.json()["private_key"]
    assert Account.from_key(key).address == me["address"]
    deadline = chain.pending_timestamp + 3_600
    data = eip712.typed_data("Transfer", eip712.transfer_message(me["address"], recipient.address, my_token, 0,
                                                                 deadline), chain_id, cert.address)

    _confirmed(client, client.post("/relay/transfers", json={
        "from": me["address"], "to": recipient.address, "token_id": my_token, "nonce": 0, "deadline": deadline,
        "signature": "0x" + eip712.sign(data, key).hex()}))

    assert cert.ownerOf(my_token) == recipient
