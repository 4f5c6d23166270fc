"""The relayer for points: EIP-3009 transfers with authorization on the
PointsToken, relayed through the same submit path as certificate transfers,
and the typed data a holder signs for them."""

from __future__ import annotations

import re
import secrets

import pytest
from api_fixtures import SCALE, USD, outbox, wait_for_status
from eth_account import Account
from eth_account.messages import encode_typed_data

from amphora import eip712
from amphora.deploy import TokenSettings

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

#: What ``customer`` holds in points (smallest unit) in these tests.
CUSTOMER_POINTS = 50 * USD * SCALE
#: One and a half points.
VALUE = 3 * SCALE * USD // 2
TRANSFER_AUTH = "TransferWithAuthorization"


@pytest.fixture
def customer_points(issue_points, customer) -> int:
    """``customer`` holds CUSTOMER_POINTS points, issued by ``merchant``."""
    issue_points(customer, CUSTOMER_POINTS // SCALE)
    return CUSTOMER_POINTS


@pytest.fixture
def valid_before(chain) -> int:
    return chain.pending_timestamp + 3_600


@pytest.fixture
def points_domain(deployed_points, chain_id) -> dict:
    """The PointsToken's EIP-712 domain, as its ``eip712Domain()`` reports it."""
    _, name, version, domain_chain_id, contract, _, _ = deployed_points.eip712Domain()
    assert (domain_chain_id, contract) == (chain_id, deployed_points.address)
    return {"name": name, "version": version}


@pytest.fixture
def authorization_body(deployed_points, chain_id, points_domain, valid_before):
    """Builder: a relay request body for an authorization signed by ``signer``
    (default: the payer)."""

    def _body(sender, to, value: int = VALUE, *, valid_after: int = 0, valid_before: int = valid_before,
              nonce: bytes | None = None, signer=None) -> dict:
        nonce = nonce or secrets.token_bytes(32)
        message = eip712.authorization_message(sender.address, to.address, value, valid_after, valid_before, nonce)
        data = eip712.typed_data(TRANSFER_AUTH, message, chain_id, deployed_points.address, **points_domain)
        signature = eip712.sign(data, (signer or sender).private_key)
        return {"from": sender.address, "to": to.address, "value": value, "valid_after": valid_after,
                "valid_before": valid_before, "nonce": "0x" + nonce.hex(), "signature": "0x" + signature.hex()}

    return _body


def _relay(client, w3, body: dict) -> str:
    """Relay ``body``, expect 202, and wait until the node has mined it."""
    response = client.post("/relay/points-transfers", json=body)
    assert response.status_code == 202, response.text
    tx_hash = response.json()["tx_hash"]
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)["status"] == 1
    return tx_hash


def _without_eip3009(data: dict) -> None:
    """Play a PointsToken deployed before it had EIP-3009."""
    record = data["contracts"]["PointsToken"]
    record["abi"] = [item for item in record["abi"] if "Authorization" not in item.get("name", "")]


# ------------------------------------------------------------------ relay


def test_relay_points__valid_authorization__moves_points_relayer_pays_and_logs_authorization(
        client, chain, w3, deployed_points, customer_points, customer, recipient, relayer, authorization_body,
        public_base_url):
    body = authorization_body(customer, recipient)
    customer_eth, relayer_eth = customer.balance, relayer.balance

    response = client.post("/relay/points-transfers", json=body)

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "sent"
    assert accepted["status_url"] == f"{public_base_url}/relay/{accepted['request_id']}"
    receipt = w3.eth.wait_for_transaction_receipt(accepted["tx_hash"], timeout=10)
    assert receipt["status"] == 1
    assert receipt["from"] == relayer.address
    assert receipt["to"] == deployed_points.address
    assert deployed_points.balanceOf(customer) == CUSTOMER_POINTS - VALUE
    assert deployed_points.balanceOf(recipient) == VALUE
    assert customer.balance == customer_eth
    assert relayer_eth - relayer.balance == receipt["gasUsed"] * receipt["effectiveGasPrice"] > 0
    nonce = bytes.fromhex(body["nonce"][2:])
    assert deployed_points.authorizationState(customer, nonce) is True
    ape_receipt = chain.get_receipt(accepted["tx_hash"])
    used = list(ape_receipt.decode_logs(deployed_points.AuthorizationUsed))
    assert [(e.authorizer, bytes(e.nonce)) for e in used] == [(customer.address, nonce)]
    transfers = list(ape_receipt.decode_logs(deployed_points.Transfer))
    assert [(t.sender, t.receiver, t.value) for t in transfers] == [(customer.address, recipient.address, VALUE)]


def test_relay_status__relayed_points_transfer__confirmed(client, w3, customer_points, customer, recipient,
                                                         authorization_body):
    tx_hash = _relay(client, w3, authorization_body(customer, recipient))

    body = wait_for_status(client, tx_hash, "confirmed")

    assert body["kind"] == "points-transfer"
    assert body["tx_hash"] == tx_hash
    assert body["block_number"] == w3.eth.get_transaction_receipt(tx_hash)["blockNumber"]


def test_relay_points__replayed_nonce__409_and_nothing_sent(
        client, w3, deployed_points, customer_points, customer, recipient, relayer, authorization_body):
    body = authorization_body(customer, recipient)
    tx_hash = _relay(client, w3, body)
    wait_for_status(client, tx_hash, "confirmed")  # final: no longer in flight, judged by the chain
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=body)

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "eip3009: authorization is used or canceled"}
    assert outbox(w3, relayer) == before
    assert deployed_points.balanceOf(recipient) == VALUE


@pytest.mark.parametrize("case, reason", [
    ("expired", "eip3009: authorization is expired"),
    ("not yet valid", "eip3009: authorization is not yet valid"),
    ("signed by another key", "eip3009: invalid signature"),
    ("value changed after signing", "eip3009: invalid signature"),
    ("payee changed after signing", "eip3009: invalid signature"),
    ("more than the balance", "erc20: transfer amount exceeds balance"),
])
def test_relay_points__would_revert__409_with_reason_and_nothing_sent(
        client, chain, w3, deployed_points, customer_points, customer, recipient, attacker, relayer,
        authorization_body, case, reason):
    now = chain.pending_timestamp
    body = {
        "expired": lambda: authorization_body(customer, recipient, valid_before=now - 1),
        "not yet valid": lambda: authorization_body(customer, recipient, valid_after=now + 3_600,
                                                    valid_before=now + 7_200),
        "signed by another key": lambda: authorization_body(customer, recipient, signer=attacker),
        "value changed after signing": lambda: {**authorization_body(customer, recipient), "value": VALUE + 1},
        "payee changed after signing": lambda: {**authorization_body(customer, recipient), "to": attacker.address},
        "more than the balance": lambda: authorization_body(customer, recipient, value=CUSTOMER_POINTS + 1),
    }[case]()
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=body)

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": reason}
    assert outbox(w3, relayer) == before
    assert deployed_points.balanceOf(customer) == CUSTOMER_POINTS


def test_relay_points__signature_with_recovery_id_v__accepted(
        client, w3, deployed_points, customer_points, customer, recipient, authorization_body):
    body = authorization_body(customer, recipient)
    signature = bytes.fromhex(body["signature"][2:])
    body["signature"] = "0x" + (signature[:64] + bytes([signature[64] - 27])).hex()  # v 0 or 1

    _relay(client, w3, body)

    assert deployed_points.balanceOf(recipient) == VALUE


def test_relay_points__numbers_as_decimal_strings__accepted(
        client, w3, deployed_points, customer_points, customer, recipient, authorization_body):
    body = authorization_body(customer, recipient)
    body.update(value=str(VALUE), valid_after="0", valid_before=str(body["valid_before"]))

    _relay(client, w3, body)

    assert deployed_points.balanceOf(recipient) == VALUE


@pytest.mark.parametrize("case, field", [
    ("short address", "to"),
    ("bad checksum", "from"),
    ("nonce too short", "nonce"),
    ("nonce as integer", "nonce"),
    ("signature not hex", "signature"),
    ("signature of 64 bytes", "signature"),
    ("signature of 66 bytes", "signature"),
    ("negative value", "value"),
    ("value as float", "value"),
    ("valid_before as hex string", "valid_before"),
    ("missing valid_after", "valid_after"),
    ("unknown field", "deadline"),
])
def test_relay_points__malformed_body__422_and_nothing_sent(
        client, w3, customer_points, customer, recipient, relayer, authorization_body, case, field):
    body = authorization_body(customer, recipient)
    changes = {
        "short address": {"to": "0x1234"},
        "bad checksum": {"from": "0x" + customer.address[2:].swapcase()},
        "nonce too short": {"nonce": "0x" + "ab" * 31},
        "nonce as integer": {"nonce": 7},
        "signature not hex": {"signature": "0x" + "zz" * 65},
        "signature of 64 bytes": {"signature": body["signature"][:-2]},
        "signature of 66 bytes": {"signature": body["signature"] + "00"},
        "negative value": {"value": -1},
        "value as float": {"value": float(VALUE)},
        "valid_before as hex string": {"valid_before": hex(body["valid_before"])},
        "unknown field": {"deadline": 1},
    }
    if case == "missing valid_after":
        del body["valid_after"]
    else:
        body.update(changes[case])
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(f"{field}: ")
    assert outbox(w3, relayer) == before


def test_relay_points__without_relayer_key__503(make_client, customer_points, customer, recipient,
                                                authorization_body):
    client = make_client(relayer_private_key=None)

    response = client.post("/relay/points-transfers", json=authorization_body(customer, recipient))

    assert response.status_code == 503
    assert response.json() == {"error": "relay_unavailable",
                               "detail": "the relayer is not configured: set AMPHORA_RELAYER_PRIVATE_KEY"}


def test_relay_points__gas_above_cap__409_refused_and_nothing_sent(
        make_client, w3, deployed_points, customer_points, customer, recipient, relayer, authorization_body):
    client = make_client(relay_gas_limit_cap=30_000)
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=authorization_body(customer, recipient))

    assert response.status_code == 409
    assert response.json()["error"] == "relay_refused"
    assert "above the relayer's cap of 30000" in response.json()["detail"]
    assert outbox(w3, relayer) == before
    assert deployed_points.balanceOf(recipient) == 0


def test_relay_points__points_token_without_eip3009__503_not_deployed(
        make_client, edited_manifest, w3, customer_points, customer, recipient, relayer, authorization_body):
    client = make_client(manifest_path=edited_manifest(_without_eip3009))
    before = outbox(w3, relayer)

    response = client.post("/relay/points-transfers", json=authorization_body(customer, recipient))

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
    assert "transferWithAuthorization" in response.json()["detail"]
    assert outbox(w3, relayer) == before


def test_relay_points__points_address_without_code__503_not_deployed_and_nothing_sent(
        make_client, edited_manifest, w3, customer_points, customer, recipient, holder, relayer,
        authorization_body):
    path = edited_manifest(lambda data: data["contracts"]["PointsToken"].update(address=holder.address))
    before = outbox(w3, relayer)

    response = make_client(manifest_path=path).post("/relay/points-transfers",
                                                    json=authorization_body(customer, recipient))

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
    assert holder.address in response.json()["detail"]
    assert outbox(w3, relayer) == before


# ------------------------------------------------------------- typed data


def _typed_data_params(sender, to, value: int, valid_before: int, **extra) -> dict:
    return {"from": sender.address, "to": to.address, "value": value, "valid_before": valid_before, **extra}


def test_typed_data_points__signed_with_eth_account__relay_accepts(
        client, w3, deployed_points, customer_points, customer, recipient, valid_before):
    payload = client.get("/relay/typed-data/points-transfer",
                         params=_typed_data_params(customer, recipient, VALUE, valid_before)).json()
    signed = Account.sign_message(encode_typed_data(full_message=payload), customer.private_key)
    message = payload["message"]

    _relay(client, w3, {
        "from": message["from"], "to": message["to"], "value": message["value"],
        "valid_after": message["validAfter"], "valid_before": message["validBefore"], "nonce": message["nonce"],
        "signature": "0x" + bytes(signed.signature).hex()})

    assert deployed_points.balanceOf(recipient) == VALUE
    assert deployed_points.balanceOf(customer) == CUSTOMER_POINTS - VALUE


def test_typed_data_points__is_the_shared_eip712_payload_in_the_points_domain(
        client, chain, deployed_points, customer, recipient, valid_before):
    nonce = secrets.token_bytes(32)
    params = _typed_data_params(customer, recipient, VALUE, valid_before, valid_after=5, nonce="0x" + nonce.hex())
    params["from"] = customer.address.lower()

    response = client.get("/relay/typed-data/points-transfer", params=params)

    assert response.status_code == 200
    payload = response.json()
    expected = eip712.typed_data(
        TRANSFER_AUTH, eip712.authorization_message(customer.address, recipient.address, VALUE, 5, valid_before,
                                                    nonce),
        chain.chain_id, deployed_points.address, name=TokenSettings().points_name, version="1")
    assert payload["primaryType"] == TRANSFER_AUTH
    assert payload["types"] == expected["types"]
    assert payload["domain"] == expected["domain"] == {
        "name": "Amphora Points", "version": "1", "chainId": chain.chain_id,
        "verifyingContract": deployed_points.address}
    assert payload["message"] == {"from": customer.address, "to": recipient.address, "value": str(VALUE),
                                  "validAfter": "5", "validBefore": str(valid_before), "nonce": "0x" + nonce.hex()}
    assert eip712.digest(payload) == eip712.digest(expected)


def test_typed_data_points__nonce_omitted__distinct_nonces_in_the_first_bitmap_word(
        client, customer, recipient, valid_before):
    params = _typed_data_params(customer, recipient, VALUE, valid_before)

    payloads = [client.get("/relay/typed-data/points-transfer", params=params).json() for _ in range(20)]

    nonces = [p["message"]["nonce"] for p in payloads]
    assert all(re.fullmatch(r"0x[0-9a-f]{64}", n) for n in nonces)
    assert len(set(nonces)) == 20  # a handed-out nonce is reserved, not handed out again
    assert all(int(n, 16) < 256 for n in nonces)  # all in word 0: one storage word for the payer
    assert payloads[0]["message"]["validAfter"] == "0"  # valid at once by default


def test_typed_data_points__nonce_omitted__never_a_nonce_used_on_chain(
        client, w3, deployed_points, customer_points, customer, recipient, valid_before, authorization_body):
    for n in (0, 2, 4):
        _relay(client, w3, authorization_body(customer, recipient, SCALE, nonce=n.to_bytes(32, "big")))
    bitmap = deployed_points.authorization_bitmap(customer, 0)
    assert bitmap == 0b10101

    params = _typed_data_params(customer, recipient, VALUE, valid_before)
    picked = [int(client.get("/relay/typed-data/points-transfer", params=params).json()["message"]["nonce"], 16)
              for _ in range(30)]

    assert not set(picked) & {0, 2, 4}
    assert all(n < 256 for n in picked)
    assert all(not deployed_points.authorizationState(customer, n.to_bytes(32, "big")) for n in picked)


def test_relay_points__nonce_from_typed_data__costs_less_than_a_random_one(
        client, w3, deployed_points, customer_points, customer, recipient, valid_before, authorization_body):
    _relay(client, w3, authorization_body(customer, recipient, SCALE, nonce=(7).to_bytes(32, "big")))
    params = _typed_data_params(customer, recipient, SCALE, valid_before)
    nonce = bytes.fromhex(client.get("/relay/typed-data/points-transfer",
                                     params=params).json()["message"]["nonce"][2:])

    same_word = _relay(client, w3, authorization_body(customer, recipient, SCALE, nonce=nonce))
    new_word = _relay(client, w3, authorization_body(customer, recipient, SCALE,
                                                     nonce=b"\xa5" + secrets.token_bytes(31)))

    gas = [w3.eth.get_transaction_receipt(h)["gasUsed"] for h in (same_word, new_word)]
    assert gas[1] - gas[0] > 15_000  # a changed word (5,000) against a new one (22,100)


@pytest.mark.parametrize("change, field", [
    ({"from": "0x1234"}, "from"),
    ({"value": "-1"}, "value"),
    ({"value": "1.5"}, "value"),
    ({"nonce": "0x1234"}, "nonce"),
    ({"valid_before": None}, "valid_before"),
    ({"valid_after": "100", "valid_before": "100"}, "valid_before"),
])
def test_typed_data_points__malformed_query__422(client, customer, recipient, valid_before, change, field):
    params = {k: v for k, v in {**_typed_data_params(customer, recipient, VALUE, valid_before), **change}.items()
              if v is not None}

    response = client.get("/relay/typed-data/points-transfer", params=params)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(f"{field}: ")


def test_typed_data_points__points_token_without_eip3009__503(make_client, edited_manifest, customer, recipient,
                                                              valid_before):
    client = make_client(manifest_path=edited_manifest(_without_eip3009))

    response = client.get("/relay/typed-data/points-transfer",
                          params=_typed_data_params(customer, recipient, VALUE, valid_before))

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
