"""The relayer: typed data, relayed signed transfers, transaction status."""

from __future__ import annotations

import threading

import pytest
from api_fixtures import outbox, wait_for_status
from eth_account import Account
from eth_account.messages import encode_typed_data

from amphora import eip712

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]


def _relay(client, w3, body: dict) -> str:
    """Relay ``body``, expect 202, and wait until the node has mined it."""
    response = client.post("/relay/transfers", json=body)
    assert response.status_code == 202, response.text
    tx_hash = response.json()["tx_hash"]
    w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    return tx_hash


def test_relay_transfer__valid_signature__moves_token_and_relayer_pays(
        client, cert, chain, w3, held_token, holder, recipient, relayer, transfer_body, public_base_url):
    holder_eth, relayer_eth = holder.balance, relayer.balance

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "sent"
    assert body["relayer"] == relayer.address
    assert body["status_url"] == f"{public_base_url}/relay/{body['request_id']}"
    receipt = w3.eth.wait_for_transaction_receipt(body["tx_hash"], timeout=10)
    assert receipt["status"] == 1
    assert receipt["from"] == relayer.address
    assert cert.ownerOf(held_token) == recipient
    assert cert.nonces(holder) == 1
    assert holder.balance == holder_eth
    assert relayer_eth - relayer.balance == receipt["gasUsed"] * receipt["effectiveGasPrice"] > 0
    transfers = list(chain.get_receipt(body["tx_hash"]).decode_logs(cert.Transfer))
    assert [(t.sender, t.receiver, t.token_id) for t in transfers] == [
        (holder.address, recipient.address, held_token)]


@pytest.mark.parametrize("unknown", ["0x" + "ab" * 32, "ab" * 16])
def test_relay_status__request_or_hash_unknown_to_relayer__404(client, unknown):
    response = client.get(f"/relay/{unknown}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("raw", ["0x1234", "ab" * 32, "0x" + "zz" * 32, "AB" * 16])
def test_relay_status__malformed_hash__422(client, raw):
    response = client.get(f"/relay/{raw}")

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("case, reason", [
    ("signed by another key", "certificate: invalid signature"),
    ("expired deadline", "certificate: signature expired"),
    ("wrong nonce", "certificate: invalid nonce"),
    ("signer does not hold the token", "certificate: transfer from incorrect owner"),
    ("locked token", "certificate: token is flagged"),
])
def test_relay_transfer__would_revert__409_with_reason_and_nothing_sent(
        client, cert, chain, w3, held_token, holder, recipient, attacker, relayer, transfer_body,
        case, reason):
    body = {
        "signed by another key": lambda: transfer_body(holder, recipient, held_token, signer=attacker),
        "expired deadline": lambda: transfer_body(holder, recipient, held_token,
                                                  deadline=chain.pending_timestamp - 1),
        "wrong nonce": lambda: transfer_body(holder, recipient, held_token, nonce=1),
        "signer does not hold the token": lambda: transfer_body(attacker, recipient, held_token),
        "locked token": lambda: transfer_body(holder, recipient, held_token),
    }[case]()
    if case == "locked token":
        cert.flag(held_token, b"\x03" * 32, sender=holder)
    before = outbox(w3, relayer)

    response = client.post("/relay/transfers", json=body)

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": reason}
    assert outbox(w3, relayer) == before
    assert cert.ownerOf(held_token) == holder


def test_relay_transfer__replayed__409_invalid_nonce(
        client, cert, w3, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    first = client.post("/relay/transfers", json=body)
    assert first.status_code == 202, first.text
    wait_for_status(client, first.json()["request_id"], "confirmed")  # no longer in flight: the chain judges

    response = client.post("/relay/transfers", json=body)

    assert response.status_code == 409
    assert response.json()["detail"] == "certificate: invalid nonce"
    assert cert.ownerOf(held_token) == recipient


def test_relay_transfer__numbers_as_decimal_strings__accepted(
        client, cert, w3, held_token, holder, recipient, transfer_body):
    body = transfer_body(holder, recipient, held_token)
    body.update(token_id=str(body["token_id"]), nonce="0", deadline=str(body["deadline"]))

    _relay(client, w3, body)

    assert cert.ownerOf(held_token) == recipient


@pytest.mark.parametrize("case, field", [
    ("short address", "to"),
    ("bad checksum", "from"),
    ("signature not hex", "signature"),
    ("signature too long", "signature"),
    ("negative token id", "token_id"),
    ("token id as float", "token_id"),
    ("nonce as hex string", "nonce"),
    ("missing deadline", "deadline"),
    ("unknown field", "value"),
])
def test_relay_transfer__malformed_body__422_and_nothing_sent(
        client, w3, held_token, holder, recipient, relayer, transfer_body, case, field):
    body = transfer_body(holder, recipient, held_token)
    if case == "short address":
        body["to"] = "0x1234"
    elif case == "bad checksum":
        body["from"] = "0x" + holder.address[2:].swapcase()
    elif case == "signature not hex":
        body["signature"] = "0x" + "zz" * 65
    elif case == "signature too long":
        body["signature"] = body["signature"] + "00"
    elif case == "negative token id":
        body["token_id"] = -1
    elif case == "token id as float":
        body["token_id"] = float(held_token)
    elif case == "nonce as hex string":
        body["nonce"] = "0x0"
    elif case == "missing deadline":
        del body["deadline"]
    elif case == "unknown field":
        body["value"] = 1
    before = outbox(w3, relayer)

    response = client.post("/relay/transfers", json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(f"{field}: ")
    assert outbox(w3, relayer) == before


@pytest.mark.parametrize("path", ["/relay/transfers", "/auth/login", "/offers", "/me/relay/transfers"])
@pytest.mark.parametrize("raw, detail", [
    (b'{"to": "\xe9"}', "body: cannot be read: send JSON in UTF-8"),
    (b'{"to": ', "body: not valid JSON (Expecting value at character 7)"),
])
def test_post__body_not_utf8_or_not_json__422_invalid_request(client, w3, relayer, path, raw, detail):
    before = outbox(w3, relayer)

    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_request", "detail": detail}
    assert outbox(w3, relayer) == before


def test_relay_transfer__without_relayer_key__503(make_client, held_token, holder, recipient, transfer_body):
    client = make_client(relayer_private_key=None)

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))

    assert response.status_code == 503
    assert response.json() == {"error": "relay_unavailable",
                               "detail": "the relayer is not configured: set AMPHORA_RELAYER_PRIVATE_KEY"}


def test_relay_transfer__gas_above_cap__409_refused_and_nothing_sent(
        make_client, cert, w3, held_token, holder, recipient, relayer, transfer_body):
    client = make_client(relay_gas_limit_cap=30_000)
    before = outbox(w3, relayer)

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))

    assert response.status_code == 409
    assert response.json()["error"] == "relay_refused"
    assert "above the relayer's cap of 30000" in response.json()["detail"]
    assert outbox(w3, relayer) == before
    assert cert.ownerOf(held_token) == holder


def test_relay_transfer__concurrent_relays__take_consecutive_nonces(
        client, cert, w3, lot, winery, holder, recipient, attacker, relayer, transfer_body):
    first, second = lot.token(4), lot.token(5)
    cert.transferFrom(winery, holder, first, sender=winery)
    cert.transferFrom(winery, recipient, second, sender=winery)
    bodies = [transfer_body(holder, attacker, first), transfer_body(recipient, attacker, second)]
    relayer_nonce = w3.eth.get_transaction_count(relayer.address)
    responses: list = []
    threads = [threading.Thread(target=lambda b=b: responses.append(client.post("/relay/transfers", json=b)))
               for b in bodies]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [202, 202]
    for r in responses:
        assert w3.eth.wait_for_transaction_receipt(r.json()["tx_hash"], timeout=10)["status"] == 1
    assert w3.eth.get_transaction_count(relayer.address) == relayer_nonce + 2
    assert cert.ownerOf(first) == cert.ownerOf(second) == attacker


def test_typed_data__signed_with_eth_account__relay_accepts(
        client, cert, w3, held_token, holder, recipient, deadline):
    params = {"from": holder.address, "to": recipient.address, "token_id": held_token, "deadline": deadline}
    payload = client.get("/relay/typed-data/transfer", params=params).json()
    signed = Account.sign_message(encode_typed_data(full_message=payload), holder.private_key)

    _relay(client, w3, {
        **{k: payload["message"][k] for k in ("from", "to", "nonce", "deadline")},
        "token_id": payload["message"]["tokenId"], "signature": "0x" + bytes(signed.signature).hex()})

    assert cert.ownerOf(held_token) == recipient


def test_typed_data__transfer__is_the_shared_eip712_payload_with_chain_nonce(
        client, cert, chain, w3, held_token, holder, recipient, transfer_body, deadline):
    _relay(client, w3, transfer_body(holder, recipient, held_token))  # nonce 0 -> 1
    params = {"from": holder.address.lower(), "to": recipient.address, "token_id": str(held_token),
              "deadline": deadline}

    payload = client.get("/relay/typed-data/transfer", params=params).json()

    expected = eip712.typed_data("Transfer", eip712.transfer_message(
        holder.address, recipient.address, held_token, 1, deadline), chain.chain_id, cert.address)
    assert payload["message"] == {"from": holder.address, "to": recipient.address, "tokenId": str(held_token),
                                  "nonce": "1", "deadline": str(deadline)}
    assert payload["domain"] == expected["domain"]
    assert payload["types"] == expected["types"]
    assert payload["primaryType"] == "Transfer"
    assert eip712.digest(payload) == eip712.digest(expected)


@pytest.mark.parametrize("params", [
    {"from": "0x1234", "to": "recipient", "token_id": "1", "deadline": "1"},
    {"from": "holder", "to": "recipient", "token_id": "abc", "deadline": "1"},
    {"from": "holder", "to": "recipient", "token_id": "1"},
])
def test_typed_data__malformed_query__422(client, holder, recipient, params):
    actors = {"holder": holder.address, "recipient": recipient.address}
    query = {k: actors.get(v, v) for k, v in params.items()}

    response = client.get("/relay/typed-data/transfer", params=query)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
