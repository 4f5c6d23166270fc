"""The appraiser's API (issue 16, :mod:`api.routers.custody_console`): post a
lot's value per bottle in stablecoin as money, and list the lots with their
latest appraisal and its age, on the test deployment (anvil)."""

from __future__ import annotations

import pytest
from api_fixtures import bearer, node_rpc, sign_up, wait_indexed

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18


@pytest.fixture(scope="session")
def lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def appraiser_account(client, lending, admin):
    """A custodial account appointed appraiser on chain and funded: (headers, address)."""
    account = sign_up(client)
    lending.set_appraiser(account["address"], True, sender=admin)
    admin.transfer(account["address"], ETH)
    return bearer(account["token"]), account["address"]


def test_post_appraisal__money_in_stablecoin__recorded_in_units_from_the_appraisers_address(
        client, appraiser_account, lending, lot, deployed_stablecoin, w3):
    headers, address = appraiser_account
    decimals = deployed_stablecoin.decimals()

    sent = client.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": "45.5"},
                       headers=headers)

    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["value_per_bottle_units"] == str(455 * 10 ** (decimals - 1))
    assert w3.eth.get_transaction_receipt(body["tx_hash"])["from"] == address
    on_chain = lending.appraisal(lot.lot_id)
    assert on_chain.value_per_bottle == 455 * 10 ** (decimals - 1)
    assert on_chain.appraised_at == w3.eth.get_block(body["block_number"] - 1)["timestamp"]


def test_lots__latest_appraisal_and_its_age(client, appraiser_account, lot, w3):
    headers, _ = appraiser_account
    client.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": "120"}, headers=headers)
    node_rpc(w3, "evm_increaseTime", 3600)
    node_rpc(w3, "evm_mine")
    wait_indexed(w3, client)

    body = client.get("/appraiser/lots", headers=headers).json()

    mine = [entry for entry in body["lots"] if entry["lot_id"] == lot.lot_id]
    assert mine and mine[0]["value_per_bottle"] == "120" and mine[0]["age_seconds"] >= 3600
    assert body["currency"] and mine[0]["appraised_at"] is not None


def test_lots__a_lot_never_appraised__shows_none(client, appraiser_account, lot, w3):
    headers, _ = appraiser_account
    wait_indexed(w3, client)

    body = client.get("/appraiser/lots", headers=headers).json()

    [entry] = [e for e in body["lots"] if e["lot_id"] == lot.lot_id]
    assert entry["value_per_bottle"] is None and entry["age_seconds"] is None


def test_post_appraisal__a_second_one__replaces_the_first_with_a_later_date(client, appraiser_account, lending,
                                                                            lot, w3):
    headers, address = appraiser_account
    path = f"/appraiser/lots/{lot.lot_id}/appraisals"

    first = client.post(path, json={"value_per_bottle": "10"}, headers=headers).json()
    node_rpc(w3, "evm_increaseTime", 60)  # a later appraisal: within one second the contract refuses it (409)
    node_rpc(w3, "evm_mine")
    second = client.post(path, json={"value_per_bottle": "12.25"}, headers=headers).json()

    assert second["appraised_at"] > first["appraised_at"]
    assert lending.appraisal(lot.lot_id).value_per_bottle == int(second["value_per_bottle_units"])
    assert w3.eth.get_transaction_count(address) == 2


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.1234567", "", "1e5"])
def test_post_appraisal__not_a_positive_amount__422_nothing_sent(client, appraiser_account, lot, w3, value):
    headers, address = appraiser_account

    refused = client.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": value},
                          headers=headers)

    assert refused.status_code == 422 and w3.eth.get_transaction_count(address) == 0


def test_post_appraisal__lot_never_issued__409_with_the_contracts_reason(client, appraiser_account, w3):
    headers, address = appraiser_account

    refused = client.post("/appraiser/lots/987654/appraisals", json={"value_per_bottle": "10"}, headers=headers)

    assert refused.status_code == 409 and "lot does not exist" in refused.json()["detail"]
    assert w3.eth.get_transaction_count(address) == 0


def test_appraiser_routes__a_holder_403_in_words__anonymous_401(make_client, lot):
    holder, anonymous = make_client(), make_client(auth=False)

    refused = holder.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": "10"})

    assert refused.status_code == 403 and "does not hold the appraiser role" in refused.json()["detail"]
    assert holder.get("/appraiser/lots").status_code == 403
    assert anonymous.get("/appraiser/lots").status_code == 401
    assert anonymous.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": "1"}).status_code == 401


def test_appraiser_role_revoked__403_before_anything_is_sent(client, appraiser_account, lending, admin, lot, w3):
    headers, address = appraiser_account
    lending.set_appraiser(address, False, sender=admin)

    refused = client.post(f"/appraiser/lots/{lot.lot_id}/appraisals", json={"value_per_bottle": "10"},
                          headers=headers)

    assert refused.status_code == 403 and w3.eth.get_transaction_count(address) == 0
