"""The API's side of a certificate's life: holder actions relayed from signed
typed data (gift, revocation, redemption request, flag), gift claims by the
claim key's signature and by the claim link's secret, the grown verification
view (state details, custody, history, scans), and proof of possession by a
tag's answer to a fresh challenge."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.constants import SECPK1_N
from eth_utils import keccak

from amphora import eip712
from amphora.merkle import ReserveTree

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ORDER = keccak(text="deliver to 1 rue du Chai, Bordeaux")
REASON = keccak(text="police report 2026-118")


@pytest.fixture
def deadline(chain) -> int:
    return chain.pending_timestamp + 3_600


@pytest.fixture
def claim_key():
    return Account.create()


def _mined(w3, response) -> dict:
    assert response.status_code == 202, response.text
    receipt = w3.eth.wait_for_transaction_receipt(response.json()["tx_hash"], timeout=10)
    assert receipt["status"] == 1
    return receipt


def _signed_body(client, holder, action: str, token_id: int, deadline: int, **fields) -> dict:
    """Fetch the action's typed data from the API, sign it as ``holder`` with
    eth_account (an independent signer), and build the relay body."""
    params = {"holder": holder.address, "token_id": token_id, "deadline": deadline, **fields}
    response = client.get(f"/relay/typed-data/{action}", params=params)
    assert response.status_code == 200, response.text
    payload = response.json()
    signature = Account.sign_message(encode_typed_data(full_message=payload), holder.private_key).signature
    return {"holder": holder.address, "token_id": token_id, "nonce": int(payload["message"]["nonce"]),
            "deadline": deadline, "signature": "0x" + bytes(signature).hex(), **fields}


def _gift(client, w3, holder, token_id, claim_key, deadline, expiry) -> None:
    body = _signed_body(client, holder, "gift", token_id, deadline, claim_key=claim_key.address, expiry=expiry)
    _mined(w3, client.post("/relay/gifts", json=body))


# ------------------------------------------------------------------ gifts


def test_gift__relayed_then_claimed_by_secret__certificate_moves_and_view_shows_it(
        client, w3, cert, held_token, holder, recipient, claim_key, deadline):
    expiry = deadline + 86_400
    _gift(client, w3, holder, held_token, claim_key, deadline, expiry)

    view = client.get(f"/certificates/{held_token}").json()
    assert view["state"] == "gift_pending" and view["locked"] is True
    assert view["gift"] == {"claim_key": claim_key.address, "expiry": expiry, "expired": False}

    _mined(w3, client.post("/relay/gift-claims/by-secret", json={
        "token_id": held_token, "recipient": recipient.address, "claim_secret": "0x" + claim_key.key.hex()}))

    assert cert.ownerOf(held_token) == recipient.address
    view = client.get(f"/certificates/{held_token}").json()
    assert (view["state"], view["gift"], view["owner"]) == ("active", None, recipient.address)
    events = [e["event"] for e in view["history"]]
    assert events[-2:] == ["GiftClaimed", "Transfer"] or events[-2:] == ["Transfer", "GiftClaimed"]
    assert "GiftCreated" in events


def test_gift_claim__self_signed_with_claim_key__relayer_only_submits(
        client, w3, cert, held_token, holder, recipient, claim_key, deadline):
    _gift(client, w3, holder, held_token, claim_key, deadline, deadline + 86_400)
    payload = client.get("/relay/typed-data/gift-claim",
                         params={"token_id": held_token, "recipient": recipient.address}).json()
    signature = Account.sign_message(encode_typed_data(full_message=payload), claim_key.key).signature

    _mined(w3, client.post("/relay/gift-claims", json={
        "token_id": held_token, "recipient": recipient.address, "signature": "0x" + bytes(signature).hex()}))

    assert cert.ownerOf(held_token) == recipient.address


def test_gift_claim__signature_redirected_to_attacker__409_and_nothing_sent(
        client, w3, cert, held_token, holder, recipient, attacker, claim_key, deadline, relayer):
    _gift(client, w3, holder, held_token, claim_key, deadline, deadline + 86_400)
    domain = client.get("/relay/typed-data/gift-claim",
                        params={"token_id": held_token, "recipient": recipient.address}).json()
    signature = Account.sign_message(encode_typed_data(full_message=domain), claim_key.key).signature
    sent_before = w3.eth.get_transaction_count(relayer.address)

    response = client.post("/relay/gift-claims", json={
        "token_id": held_token, "recipient": attacker.address, "signature": "0x" + bytes(signature).hex()})

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "certificate: invalid claim signature"}
    assert w3.eth.get_transaction_count(relayer.address) == sent_before
    assert cert.ownerOf(held_token) == holder.address


def test_gift_claim_by_secret__malformed_secret__422(client, held_token, recipient):
    response = client.post("/relay/gift-claims/by-secret", json={
        "token_id": held_token, "recipient": recipient.address, "claim_secret": "0x" + "00" * 32})
    assert response.status_code == 422
    assert "claim_secret" in response.json()["detail"]
    assert "00" * 32 not in response.json()["detail"]


def test_gift_revocation__relayed__unlocks(client, w3, cert, held_token, holder, claim_key, deadline):
    _gift(client, w3, holder, held_token, claim_key, deadline, deadline + 86_400)
    body = _signed_body(client, holder, "gift-revocation", held_token, deadline)

    _mined(w3, client.post("/relay/gift-revocations", json=body))

    assert cert.state_of(held_token) == 0 and cert.ownerOf(held_token) == holder.address


# ------------------------------------------------------ redemption, flags


def test_redemption__relayed_then_confirmed__view_shows_redeemed_record(
        client, w3, cert, held_token, holder, custodian, deadline):
    body = _signed_body(client, holder, "redemption", held_token, deadline, order_hash="0x" + ORDER.hex())
    _mined(w3, client.post("/relay/redemptions", json=body))
    assert client.get(f"/certificates/{held_token}").json()["redemption"] == {
        "order_hash": "0x" + ORDER.hex(), "redeemed_at": None, "redeemed_by": None}

    cert.confirm_redemption(held_token, sender=custodian)

    view = client.get(f"/certificates/{held_token}").json()
    assert (view["state"], view["exists"], view["owner"]) == ("redeemed", False, None)
    assert view["redemption"]["redeemed_by"] == custodian.address and view["redemption"]["redeemed_at"] > 0
    assert "redeemed" in view["scans"]["anomalies"]
    assert [e["event"] for e in view["history"]][-1] in ("CertificateRedeemed", "Transfer")


def test_flag__relayed__view_shows_flag_and_scan_anomaly(client, w3, held_token, holder, deadline):
    body = _signed_body(client, holder, "flag", held_token, deadline, reason_hash="0x" + REASON.hex())

    _mined(w3, client.post("/relay/flags", json=body))

    view = client.get(f"/certificates/{held_token}").json()
    assert view["state"] == "flagged"
    assert view["flag"] == {"reason_hash": "0x" + REASON.hex(), "by_issuer": False}
    assert view["scans"]["anomalies"] == ["flagged"]


def test_holder_action__signed_by_stranger__409_names_the_problem(client, held_token, holder, attacker, deadline):
    body = _signed_body(client, attacker, "flag", held_token, deadline, reason_hash="0x" + REASON.hex())
    body["holder"] = holder.address

    response = client.post("/relay/flags", json=body)

    assert response.status_code == 409 and response.json()["error"] == "would_revert"


def test_holder_action__locked_certificate__409_names_the_state(
        client, w3, held_token, holder, claim_key, deadline):
    _gift(client, w3, holder, held_token, claim_key, deadline, deadline + 86_400)
    body = _signed_body(client, holder, "redemption", held_token, deadline, order_hash="0x" + ORDER.hex())

    response = client.post("/relay/redemptions", json=body)

    assert response.status_code == 409
    assert response.json()["detail"] == "certificate: token is gift pending"


@pytest.mark.parametrize("action, params, problem", [
    ("gift", {}, "claim_key: required for gift"),
    ("flag", {"order_hash": "0x" + "11" * 32, "reason_hash": "0x" + "22" * 32}, "order_hash: not taken by flag"),
    ("redemption", {}, "order_hash: required for redemption"),
])
def test_typed_data__missing_or_foreign_field__422(client, held_token, holder, deadline, action, params, problem):
    response = client.get(f"/relay/typed-data/{action}",
                          params={"holder": holder.address, "token_id": held_token, "deadline": deadline, **params})
    assert response.status_code == 422
    assert problem in response.json()["detail"]


def test_typed_data__is_the_shared_definition_with_the_holders_nonce(
        client, cert, chain_id, held_token, holder, deadline):
    payload = client.get("/relay/typed-data/redemption", params={
        "holder": holder.address, "token_id": held_token, "deadline": deadline,
        "order_hash": "0x" + ORDER.hex()}).json()
    expected = eip712.typed_data("RequestRedemption", eip712.request_redemption_message(
        holder.address, held_token, ORDER, cert.nonces(holder), deadline), chain_id, cert.address)
    assert eip712.digest(payload) == eip712.digest(expected)


# ---------------------------------------------------------------- custody


def test_view__custody_attestation_and_reserve_root(client, registry, lot, custodian, held_token):
    registry.attest_storage(lot.lot_id, keccak(text="cellar report"), "ipfs://report", sender=custodian)
    tree = ReserveTree.build([lot.token(s) for s in range(1, 11)])
    registry.post_reserve_root(tree.root, 10, "ipfs://holdings", sender=custodian)

    custody = client.get(f"/certificates/{held_token}").json()["custody"]

    assert custody["storage_document_hash"] == "0x" + keccak(text="cellar report").hex()
    assert custody["storage_document_uri"] == "ipfs://report"
    assert custody["storage_attested_by"] == custodian.address
    assert custody["reserve_root"] == "0x" + tree.root.hex() and custody["reserve_bottle_count"] == 10
    assert registry.verify_reserve(held_token, tree.proof(held_token))


# ------------------------------------------------------------ tag challenge


def _answer(client, lot, serial: int, key: str) -> tuple[dict, str]:
    challenge = client.post(f"/certificates/{lot.token(serial)}/challenge").json()
    signature = Account.sign_message(encode_typed_data(full_message=challenge["typed_data"]), key).signature
    return challenge, "0x" + bytes(signature).hex()


def _proof(lot, serial: int) -> str:
    return ",".join("0x" + p.hex() for p in lot.tree.proof(serial))


def test_verify_tag__genuine_tag__valid(client, lot):
    challenge, signature = _answer(client, lot, 3, lot.keys[2])

    answer = client.get(f"/certificates/{lot.token(3)}/verify-tag", params={
        "block_number": challenge["block_number"], "signature": signature, "proof": _proof(lot, 3)}).json()

    assert answer["valid"] is True and answer["reason"] is None
    assert answer["tag"] == Account.from_key(lot.keys[2]).address


@pytest.mark.parametrize("attack", ["wrong key", "another token's challenge", "proof for another bottle"])
def test_verify_tag__forgeries__invalid_with_reason(client, lot, attack):
    key = "0x" + secrets.token_bytes(32).hex() if attack == "wrong key" else lot.keys[2]
    challenge, signature = _answer(client, lot, 4 if attack == "another token's challenge" else 3, key)
    proof = _proof(lot, 5 if attack == "proof for another bottle" else 3)

    answer = client.get(f"/certificates/{lot.token(3)}/verify-tag", params={
        "block_number": challenge["block_number"], "signature": signature, "proof": proof}).json()

    assert answer["valid"] is False and "not this bottle's tag" in answer["reason"]


def test_verify_tag__stale_challenge__invalid(client, chain, lot):
    challenge, signature = _answer(client, lot, 3, lot.keys[2])
    chain.mine(challenge["valid_until_block"] - challenge["block_number"] + 1)

    answer = client.get(f"/certificates/{lot.token(3)}/verify-tag", params={
        "block_number": challenge["block_number"], "signature": signature, "proof": _proof(lot, 3)}).json()

    assert answer["valid"] is False and "new challenge" in answer["reason"]


@pytest.mark.parametrize("malformed", ["all zero", "high s"])
def test_verify_tag__signature_no_key_recovers_from__invalid_not_500(client, lot, malformed):
    challenge, signature = _answer(client, lot, 3, lot.keys[2])
    raw = bytes.fromhex(signature[2:])
    if malformed == "all zero":
        raw = bytes(65)
    else:  # the same signature in its malleable twin: s -> n - s, v flipped
        s = SECPK1_N - int.from_bytes(raw[32:64], "big")
        raw = raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])

    response = client.get(f"/certificates/{lot.token(3)}/verify-tag", params={
        "block_number": challenge["block_number"], "signature": "0x" + raw.hex(), "proof": _proof(lot, 3)})

    assert response.status_code == 200
    assert response.json()["valid"] is False
    assert "not this bottle's tag" in response.json()["reason"]


def test_challenge__never_issued__404(client):
    assert client.post(f"/certificates/{(999_999 << 32) | 1}/challenge").status_code == 404


# Scans (distinct clients, bots, retention, the page's wording): tests/api/test_api_scans.py
