"""Issue 12 item 26, the API half: a holder voids its unused signature nonces
through the relayer, with no wallet (self-custody: a signed
`InvalidateNonces`; custodial: the service signs for the account), within the
sponsor policy (it must void something, at most 1,000 nonces ahead)."""

from __future__ import annotations

import pytest
from api_fixtures import PASSWORD, idempotency_key, manual_mining, node_rpc, outbox, wait_for_status
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from amphora import eip712
from api.policy import MAX_NONCE_SKIP

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

REASON = keccak(text="police report 2026-118")


@pytest.fixture
def deadline(chain) -> int:
    return chain.pending_timestamp + 3_600


def _sign(signer, payload: dict) -> str:
    """``payload`` signed by ``signer`` with eth_account (an independent signer)."""
    return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=payload), signer.private_key)
                        .signature).hex()


def _invalidation(client, holder, deadline: int, signer=None, **params) -> dict:
    """The relay body of an invalidation for ``holder`` from the API's typed data,
    signed by ``signer`` (default: the holder)."""
    response = client.get("/relay/typed-data/nonce-invalidation",
                          params={"holder": holder.address, "deadline": deadline, **params})
    assert response.status_code == 200, response.text
    payload = response.json()
    message = payload["message"]
    return {"holder": holder.address, "nonce": int(message["nonce"]), "new_nonce": int(message["newNonce"]),
            "deadline": deadline, "signature": _sign(signer or holder, payload)}


def _mined(w3, response) -> None:
    assert response.status_code == 202, response.text
    receipt = w3.eth.wait_for_transaction_receipt(response.json()["tx_hash"], timeout=10)
    assert receipt["status"] == 1


def _replay(w3, tx_hash: str) -> str | None:
    """The revert reason of a mined transaction's call sent again now (None: it would run)."""
    sent = w3.eth.get_transaction(tx_hash)
    try:
        w3.eth.call({"to": sent["to"], "data": sent["input"]})
    except Exception as err:  # web3 raises ContractLogicError with the reason
        return str(err)
    return None


# ------------------------------------------------------------ self-custody


def test_nonce_invalidation__reverted_signed_flag__voided_through_the_relay_and_its_replay_refused(
        client, w3, cert, held_token, holder, deadline):
    # A flag signed while the bottle is in a gift reverts and uses no nonce...
    cert.create_gift(held_token, Account.create().address, deadline, sender=holder)
    payload = client.get("/relay/typed-data/flag", params={
        "holder": holder.address, "token_id": held_token, "deadline": deadline,
        "reason_hash": "0x" + REASON.hex()}).json()
    flag = {"holder": holder.address, "token_id": held_token, "nonce": int(payload["message"]["nonce"]),
            "deadline": deadline, "reason_hash": "0x" + REASON.hex(), "signature": _sign(holder, payload)}
    refused = client.post("/relay/flags", json=flag)
    assert refused.status_code == 409 and refused.json()["detail"] == "certificate: token is gift pending"
    cert.revoke_gift(held_token, sender=holder)  # ...and would now run for anyone who replays it.

    _mined(w3, client.post("/relay/nonce-invalidations", json=_invalidation(client, holder, deadline)))

    assert cert.nonces(holder) == flag["nonce"] + 1
    replay = client.post("/relay/flags", json=flag)
    assert replay.status_code == 409 and replay.json()["detail"] == "certificate: invalid nonce"
    assert cert.state_of(held_token) == 0  # still active, never flagged


def test_nonce_invalidation__new_nonce_ahead__voids_every_nonce_below_it(
        client, w3, cert, held_token, holder, recipient, deadline, sign_transfer):
    ahead = sign_transfer(holder, holder.address, recipient.address, held_token, 2, deadline)

    _mined(w3, client.post("/relay/nonce-invalidations", json=_invalidation(client, holder, deadline,
                                                                            new_nonce=3)))

    assert cert.nonces(holder) == 3
    replay = client.post("/relay/transfers", json={
        "from": holder.address, "to": recipient.address, "token_id": held_token, "nonce": 2, "deadline": deadline,
        "signature": "0x" + ahead.hex()})
    assert replay.status_code == 409 and replay.json()["detail"] == "certificate: invalid nonce"


def test_nonce_invalidation__signed_by_a_stranger_for_the_holder__409_and_nothing_sent(
        client, w3, relayer, cert, holder, attacker, deadline):
    body = _invalidation(client, holder, deadline, signer=attacker)
    before = outbox(w3, relayer)

    response = client.post("/relay/nonce-invalidations", json=body)

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "certificate: invalid signature"}
    assert outbox(w3, relayer) == before and cert.nonces(holder) == 0


@pytest.mark.parametrize("skip, problem", [
    (0, "is not above nonce 0, so the invalidation would void nothing"),
    (MAX_NONCE_SKIP + 1, f"is more than {MAX_NONCE_SKIP} above nonce 0"),
])
def test_nonce_invalidation__no_op_or_too_far__422_in_words_and_nothing_sent(
        client, w3, relayer, cert, chain_id, holder, deadline, skip, problem):
    # Signed by the holder and valid on chain: only the sponsor policy refuses it.
    data = eip712.typed_data("InvalidateNonces", eip712.invalidate_nonces_message(holder.address, 0, skip, deadline),
                             chain_id, cert.address)
    before = outbox(w3, relayer)

    response = client.post("/relay/nonce-invalidations", json={
        "holder": holder.address, "nonce": 0, "new_nonce": skip, "deadline": deadline,
        "signature": _sign(holder, data)})

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request" and problem in response.json()["detail"]
    assert outbox(w3, relayer) == before and cert.nonces(holder) == 0


@pytest.mark.parametrize("new_nonce", [0, MAX_NONCE_SKIP + 1])
def test_nonce_invalidation_typed_data__new_nonce_the_relayer_refuses__422(client, holder, deadline, new_nonce):
    response = client.get("/relay/typed-data/nonce-invalidation",
                          params={"holder": holder.address, "deadline": deadline, "new_nonce": new_nonce})

    assert response.status_code == 422 and response.json()["detail"].startswith("new_nonce: ")


def test_nonce_invalidation_typed_data__is_the_contracts_digest_at_the_holders_nonce(
        client, w3, cert, held_token, holder, recipient, deadline, sign_transfer):
    cert.transfer_with_signature(holder, recipient, held_token, 0, deadline,
                                 sign_transfer(holder, holder.address, recipient.address, held_token, 0, deadline),
                                 sender=holder)

    payload = client.get("/relay/typed-data/nonce-invalidation", params={
        "holder": holder.address, "deadline": deadline, "new_nonce": 7}).json()

    assert payload["primaryType"] == "InvalidateNonces"
    struct = keccak(encode(["bytes32", "address", "uint256", "uint256", "uint256"],
                           [bytes(cert.INVALIDATE_NONCES_TYPEHASH()), holder.address, 1, 7, deadline]))
    assert eip712.digest(payload) == keccak(b"\x19\x01" + bytes(cert.DOMAIN_SEPARATOR()) + struct)


# --------------------------------------------------------------- custodial


def test_custodial_nonce_invalidation__default__voids_what_was_signed_with_my_key(
        client, cert, chain, chain_id, lot, winery, recipient):
    me = client.account
    token_id = lot.token(3)
    cert.transferFrom(winery, me["address"], token_id, sender=winery)
    # A transfer signed with my (exported) key and never sent: pending at nonce 0.
    key = client.post("/me/key-export", json={"password": PASSWORD}).json()["private_key"]
    deadline = chain.pending_timestamp + 3_600
    pending = eip712.sign(eip712.typed_data("Transfer", eip712.transfer_message(
        me["address"], recipient.address, token_id, 0, deadline), chain_id, cert.address), key)

    response = client.post("/me/relay/nonce-invalidations", json={}, headers=idempotency_key())

    assert response.status_code == 202, response.text
    done = wait_for_status(client, response.json()["request_id"], "confirmed")
    assert done["kind"] == "nonce-invalidation" and done["actor"] == me["address"]
    assert cert.nonces(me["address"]) == 1
    replay = client.post("/relay/transfers", json={
        "from": me["address"], "to": recipient.address, "token_id": token_id, "nonce": 0, "deadline": deadline,
        "signature": "0x" + pending.hex()})
    assert replay.status_code == 409 and replay.json()["detail"] == "certificate: invalid nonce"
    assert cert.ownerOf(token_id) == me["address"]


def test_custodial_nonce_invalidation__explicit_new_nonce__then_my_next_action_carries_it(
        client, cert, lot, winery, recipient):
    me = client.account
    token_id = lot.token(3)
    cert.transferFrom(winery, me["address"], token_id, sender=winery)
    first = client.post("/me/relay/nonce-invalidations", json={"new_nonce": 5}, headers=idempotency_key())
    wait_for_status(client, first.json()["request_id"], "confirmed")

    moved = client.post("/me/relay/transfers", json={"token_id": token_id, "to": recipient.address},
                        headers=idempotency_key())

    wait_for_status(client, moved.json()["request_id"], "confirmed")
    assert cert.nonces(me["address"]) == 6 and cert.ownerOf(token_id) == recipient


@pytest.mark.parametrize("new_nonce, problem", [
    (0, "would void nothing"), (MAX_NONCE_SKIP + 1, f"more than {MAX_NONCE_SKIP} above nonce 0")])
def test_custodial_nonce_invalidation__no_op_or_too_far__422_and_nothing_sent(
        client, w3, relayer, cert, new_nonce, problem):
    before = outbox(w3, relayer)

    response = client.post("/me/relay/nonce-invalidations", json={"new_nonce": new_nonce}, headers=idempotency_key())

    assert response.status_code == 422 and problem in response.json()["detail"]
    assert outbox(w3, relayer) == before and cert.nonces(client.account["address"]) == 0


def test_custodial_nonce_invalidation__without_idempotency_key__422(client, cert):
    response = client.post("/me/relay/nonce-invalidations", json={})

    assert response.status_code == 422 and cert.nonces(client.account["address"]) == 0


def test_custodial_nonce_invalidation__default__also_voids_failed_requests_signed_ahead(
        client, w3, cert, lot, winery, relayer):
    me = client.account
    first, second = lot.token(3), lot.token(4)
    for token_id in (first, second):
        cert.transferFrom(winery, me["address"], token_id, sender=winery)
    with manual_mining(w3):
        # Two flags signed by the service at nonces 0 and 1, both in the pool...
        a, b = (client.post("/me/relay/flags", json={"token_id": token_id, "reason_hash": "0x" + REASON.hex()},
                            headers=idempotency_key()).json() for token_id in (first, second))
        # ...and the issuer flags the first bottle with a higher tip: mined first.
        front = {"to": cert.address, "data": "0x" + bytes(cert.flag.encode_input(first, REASON)).hex(),
                 "nonce": w3.eth.get_transaction_count(winery.address), "gas": 200_000, "value": 0,
                 "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 100 * 10**9, "chainId": w3.eth.chain_id}
        w3.eth.send_raw_transaction(Account.sign_transaction(front, winery.private_key).raw_transaction)
        node_rpc(w3, "evm_mine")
    for request in (a, b):
        assert wait_for_status(client, request["request_id"], "failed")["actor"] == me["address"]
    cert.clear_flag(first, sender=winery)
    # Both signatures are unused: anyone who read them on chain could run them now.
    assert _replay(w3, a["tx_hash"]) is None
    assert cert.nonces(me["address"]) == 0

    done = client.post("/me/relay/nonce-invalidations", json={}, headers=idempotency_key())

    wait_for_status(client, done.json()["request_id"], "confirmed")
    assert cert.nonces(me["address"]) == 2
    for request in (a, b):
        assert "certificate: invalid nonce" in str(_replay(w3, request["tx_hash"]))


def test_allow_list__the_signed_invalidation_only(client):
    functions = client.app.state.relayer.allow_list.functions()

    assert "WineCertificate.invalidate_nonces_with_signature" in functions
    assert "WineCertificate.invalidate_nonces" not in functions  # the relayer would void its own nonces


def test_custodial_nonce_invalidation__my_action_still_being_relayed__409_conflict_then_voidable_once_failed(
        client, w3, cert, lot, winery, relayer):
    me = client.account
    token_id = lot.token(3)
    cert.transferFrom(winery, me["address"], token_id, sender=winery)
    with manual_mining(w3):
        flag = client.post("/me/relay/flags", json={"token_id": token_id, "reason_hash": "0x" + REASON.hex()},
                           headers=idempotency_key()).json()
        front = {"to": cert.address, "data": "0x" + bytes(cert.flag.encode_input(token_id, REASON)).hex(),
                 "nonce": w3.eth.get_transaction_count(winery.address), "gas": 200_000, "value": 0,
                 "maxFeePerGas": 500 * 10**9, "maxPriorityFeePerGas": 100 * 10**9, "chainId": w3.eth.chain_id}
        w3.eth.send_raw_transaction(Account.sign_transaction(front, winery.private_key).raw_transaction)
        before = outbox(w3, relayer)

        # The flag goes out before anything else of mine: it cannot be called back.
        busy = client.post("/me/relay/nonce-invalidations", json={}, headers=idempotency_key())

        assert busy.status_code == 409 and busy.json()["error"] == "conflict"
        assert "still being relayed" in busy.json()["detail"]
        assert outbox(w3, relayer) == before
        node_rpc(w3, "evm_mine")
    wait_for_status(client, flag["request_id"], "failed")

    done = client.post("/me/relay/nonce-invalidations", json={}, headers=idempotency_key())

    wait_for_status(client, done.json()["request_id"], "confirmed")
    assert cert.nonces(me["address"]) == 1
