"""The cask routes: a cask's facts, a holder's shares and entitlements, the
transfer check in words, and relayed share transfers, bottle claims and
distribution claims (self-custody and custodial), with the attacks through
the relayer: a transfer to an ineligible address, a claim beyond the shares,
a distribution claimed twice."""

from __future__ import annotations

import secrets

import pytest
from api_fixtures import USD, idempotency_key, outbox, wait_for_status
from cask_fixtures import FAR, FRANCE, SUPPLY, declare

from amphora import eip712
from amphora.deploy import record_investor

#: The API fixtures and the cask fixtures (one cask per module, in its own manifest copy).
pytest_plugins = ["api_fixtures", "cask_fixtures"]


@pytest.fixture
def cask_client(make_client, cask_manifest, eligible):
    """A signed-in client of an app reading the manifest that records the cask."""
    return make_client(manifest_path=cask_manifest.path)


@pytest.fixture
def me(cask_client, eligible, agent, winery) -> str:
    """The client's custodial account: an eligible French investor holding 3,000 shares."""
    address = cask_client.account["address"]
    record_investor(eligible, agent, address, FRANCE, FAR)
    eligible.transfer(address, 3_000, sender=winery)
    return address


def _confirmed(client, response) -> dict:
    assert response.status_code == 202, response.text
    return wait_for_status(client, response.json()["request_id"], "confirmed")


def _authorization(cask, chain_id, signer, to: str, value: int) -> dict:
    nonce = secrets.token_bytes(32)
    message = eip712.authorization_message(signer.address, to, value, 0, FAR, nonce)
    data = eip712.typed_data("TransferWithAuthorization", message, chain_id, cask.address, name="Cask Test",
                             version="1")
    return {"from": signer.address, "to": to, "value": value, "valid_after": 0, "valid_before": FAR,
            "nonce": "0x" + nonce.hex(), "signature": "0x" + eip712.sign(data, signer.private_key).hex()}


# ------------------------------------------------------------------ reads


def test_list__names_the_manifest_casks(cask_client, eligible):
    response = cask_client.get("/casks")
    assert response.status_code == 200, response.text
    assert [(c["address"], c["symbol"]) for c in response.json()] == [(eligible.address, "CSKT")]


def test_cask__before_bottling__facts_supply_and_no_backing(cask_client, eligible, winery, agent, custodian):
    body = cask_client.get(f"/casks/{eligible.address}").json()
    assert body["total_supply"] == str(SUPPLY) and body["issuer"] == winery.address
    assert body["agent"] == agent.address and body["paused"] is False
    assert body["facts"]["cellar"] == custodian.address and body["facts"]["vintage"] == 2023
    assert body["facts"]["document_hash"] == "0x" + "ab" * 32
    assert body["bottling"]["bottled"] is False and body["backing"] is None


def test_cask__unknown_address__404(cask_client, attacker):
    response = cask_client.get(f"/casks/{attacker.address}")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_holder__shares_eligibility_and_claimable(cask_client, eligible, winery, me):
    eligible.deposit_distribution(1_000 * USD, sender=winery)
    body = cask_client.get(f"/casks/{eligible.address}/holders/{me}").json()
    assert body["shares"] == "3000" and body["eligible"] is True and body["country"] == FRANCE
    assert body["claimable_distribution"] == str(3 * USD) and body["claimable_bottles"] == "0"


def test_transfer_check__ineligible_recipient__says_why_in_words(cask_client, eligible, me, accounts):
    stranger = accounts[18].address
    body = cask_client.get(f"/casks/{eligible.address}/transfer-check",
                           params={"from": me, "to": stranger, "amount": 1}).json()
    assert body["allowed"] is False
    assert body["reason"] == "shares: recipient is not an eligible investor"
    assert "eligibility check" in body["explanation"]


def test_transfer_check__eligible_parties__allowed(cask_client, eligible, me, holder):
    body = cask_client.get(f"/casks/{eligible.address}/transfer-check",
                           params={"from": me, "to": holder.address, "amount": 1}).json()
    assert (body["allowed"], body["reason"], body["explanation"]) == (True, None, "The transfer is allowed now.")


# ------------------------------------------------------------------ self-custody relay


def test_relay_transfer__signed_by_holder__moves_shares_gas_paid(cask_client, eligible, winery, holder, recipient,
                                                                 chain_id):
    eligible.transfer(holder, 100, sender=winery)
    body = _authorization(eligible, chain_id, holder, recipient.address, 40)
    done = _confirmed(cask_client, cask_client.post(f"/casks/{eligible.address}/relay/transfers", json=body))
    assert done["actor"] == holder.address
    assert eligible.balanceOf(recipient) == 40


def test_attack__relay_transfer_to_ineligible__409_and_nothing_sent(cask_client, eligible, winery, holder, w3,
                                                                    relayer, accounts, chain_id):
    eligible.transfer(holder, 100, sender=winery)
    before = outbox(w3, relayer)
    body = _authorization(eligible, chain_id, holder, accounts[18].address, 40)
    response = cask_client.post(f"/casks/{eligible.address}/relay/transfers", json=body)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "would_revert"
    assert "shares: recipient is not an eligible investor" in response.json()["detail"]
    assert outbox(w3, relayer) == before


def test_relay_transfer__to_a_non_cask__404(cask_client, holder, recipient, chain_id, eligible, attacker):
    body = _authorization(eligible, chain_id, holder, recipient.address, 1)
    response = cask_client.post(f"/casks/{attacker.address}/relay/transfers", json=body)
    assert response.status_code == 404


def test_typed_data__claim__signed_and_relayed_delivers_the_bottle(cask_client, bottling_ready, eligible, winery,
                                                                    holder, cert):
    eligible.transfer(holder, 1_000, sender=winery)
    declare(eligible, winery, 1_000)
    data = cask_client.get(f"/casks/{eligible.address}/typed-data/claim",
                           params={"holder": holder.address, "bottles": 1, "valid_before": FAR}).json()
    assert data["primaryType"] == "ClaimBottles" and data["domain"]["verifyingContract"] == eligible.address
    signature = eip712.sign(data, holder.private_key)
    message = data["message"]
    body = {"holder": holder.address, "bottles": 1, "remainder": False, "valid_after": 0, "valid_before": FAR,
            "nonce": message["nonce"], "signature": "0x" + signature.hex()}
    _confirmed(cask_client, cask_client.post(f"/casks/{eligible.address}/relay/claims", json=body))
    assert cert.ownerOf(eligible.bottling().first_token_id) == holder.address


def test_typed_data__transfer__signed_and_relayed_moves_shares(cask_client, eligible, winery, holder, recipient):
    eligible.transfer(holder, 10, sender=winery)
    data = cask_client.get(f"/casks/{eligible.address}/typed-data/transfer",
                           params={"from": holder.address, "to": recipient.address, "value": 7,
                                   "valid_before": FAR}).json()
    signature = eip712.sign(data, holder.private_key)
    m = data["message"]
    body = {"from": holder.address, "to": recipient.address, "value": 7, "valid_after": 0, "valid_before": FAR,
            "nonce": m["nonce"], "signature": "0x" + signature.hex()}
    _confirmed(cask_client, cask_client.post(f"/casks/{eligible.address}/relay/transfers", json=body))
    assert eligible.balanceOf(recipient) == 7


def test_typed_data__inverted_window__422(cask_client, eligible, holder):
    response = cask_client.get(f"/casks/{eligible.address}/typed-data/claim",
                               params={"holder": holder.address, "bottles": 1, "valid_before": 5, "valid_after": 5})
    assert response.status_code == 422


def test_relay_distribution_claim__nothing_owed__409(cask_client, eligible, holder):
    response = cask_client.post(f"/casks/{eligible.address}/relay/distribution-claims",
                                json={"holder": holder.address})
    assert response.status_code == 409 and "shares: nothing to claim" in response.json()["detail"]


# ------------------------------------------------------------------ custodial


def test_custodial_transfer__my_shares__move_with_my_address_as_actor(cask_client, eligible, me, holder):
    done = _confirmed(cask_client, cask_client.post(f"/me/relay/casks/{eligible.address}/transfers",
                                                    json={"to": holder.address, "value": 500},
                                                    headers=idempotency_key()))
    assert done["actor"] == me
    assert eligible.balanceOf(me) == 2_500 and eligible.balanceOf(holder) == 500


def test_custodial_transfer__without_idempotency_key__422(cask_client, eligible, me, holder):
    response = cask_client.post(f"/me/relay/casks/{eligible.address}/transfers",
                                json={"to": holder.address, "value": 1})
    assert response.status_code == 422


def test_attack__custodial_transfer_to_ineligible__409(cask_client, eligible, me, accounts):
    response = cask_client.post(f"/me/relay/casks/{eligible.address}/transfers",
                                json={"to": accounts[18].address, "value": 1}, headers=idempotency_key())
    assert response.status_code == 409 and "recipient is not an eligible investor" in response.json()["detail"]
    assert eligible.balanceOf(me) == 3_000


def test_custodial_distribution_claim__pays_me_once(cask_client, eligible, winery, me, stablecoin):
    eligible.deposit_distribution(1_000 * USD, sender=winery)
    _confirmed(cask_client, cask_client.post(f"/me/relay/casks/{eligible.address}/distribution-claims", json={},
                                             headers=idempotency_key()))
    assert stablecoin.balanceOf(me) == 3 * USD
    again = cask_client.post(f"/me/relay/casks/{eligible.address}/distribution-claims", json={},
                             headers=idempotency_key())
    assert again.status_code == 409 and "shares: nothing to claim" in again.json()["detail"]


def test_custodial_bottle_claim__delivers_bottles_and_burns_shares(cask_client, bottling_ready, eligible, winery,
                                                                   me, cert):
    declare(eligible, winery, 1_000)
    first = eligible.bottling().first_token_id
    view = cask_client.get(f"/casks/{eligible.address}").json()
    assert view["backing"]["covered"] is True and view["bottling"]["bottles_issued"] == str(SUPPLY // 1_000)
    assert cask_client.get(f"/casks/{eligible.address}/holders/{me}").json()["claimable_bottles"] == "3"

    _confirmed(cask_client, cask_client.post(f"/me/relay/casks/{eligible.address}/claims", json={"bottles": 2},
                                             headers=idempotency_key()))

    assert cert.ownerOf(first) == me and cert.ownerOf(first + 1) == me
    assert eligible.balanceOf(me) == 1_000


def test_attack__custodial_claim_beyond_my_shares__409(cask_client, bottling_ready, eligible, winery, me):
    declare(eligible, winery, 1_000)
    response = cask_client.post(f"/me/relay/casks/{eligible.address}/claims", json={"bottles": 4},
                                headers=idempotency_key())
    assert response.status_code == 409 and "shares: claim exceeds unfrozen shares" in response.json()["detail"]


def test_relay_transfer__of_zero__refused_before_anything_is_paid(cask_client, eligible, holder, recipient, w3,
                                                                  relayer, chain_id):
    before = outbox(w3, relayer)
    body = _authorization(eligible, chain_id, holder, recipient.address, 0)
    response = cask_client.post(f"/casks/{eligible.address}/relay/transfers", json=body)
    assert response.status_code == 409 and response.json()["error"] == "relay_refused"
    assert outbox(w3, relayer) == before


def test_custodial_claim__of_nothing__refused(cask_client, eligible, me):
    response = cask_client.post(f"/me/relay/casks/{eligible.address}/claims", json={"bottles": 0},
                                headers=idempotency_key())
    assert response.status_code == 409 and response.json()["error"] == "relay_refused"


def test_anonymous__cannot_relay(make_client, cask_manifest, eligible, holder):
    anonymous = make_client(auth=False, manifest_path=cask_manifest.path)
    response = anonymous.post(f"/casks/{eligible.address}/relay/distribution-claims",
                              json={"holder": holder.address})
    assert response.status_code == 401
