"""The roles an address holds on chain (``GET /accounts/{address}/roles``,
``GET /me/roles``) and the business sender (:class:`api.business.BusinessSender`)
that acts for a custodial business account from its own address, on the test
deployment (anvil)."""

from __future__ import annotations

import threading

import pytest
from api_fixtures import bearer, sign_up
from eth_account import Account

from api.business import GasUnfunded
from api.errors import WouldRevert

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18


def roles(client, address: str) -> list[str]:
    response = client.get(f"/accounts/{address}/roles")
    assert response.status_code == 200, response.text
    return response.json()["roles"]


def test_roles__issuer_and_custodian__read_from_the_contracts(client, winery, custodian, w3):
    body = client.get(f"/accounts/{winery.address.lower()}/roles").json()

    assert body["address"] == winery.address and body["roles"] == ["issuer", "lender"]
    assert body["block_hash"] == "0x" + bytes(w3.eth.get_block(body["block_number"])["hash"]).hex()
    assert roles(client, custodian.address) == ["custodian", "lender"]


def test_roles__appraiser_and_merchant__from_lending_and_points(client, project, manifest, admin, points_merchants,
                                                                merchant):
    appraiser = Account.create().address
    assert roles(client, appraiser) == ["lender"]
    project.PledgeLending.at(manifest.address("PledgeLending")).set_appraiser(appraiser, True, sender=admin)

    assert roles(client, appraiser) == ["appraiser", "lender"]
    assert roles(client, merchant.address) == ["lender", "merchant"]


def test_roles__an_address_never_granted__may_only_lend(client):
    assert roles(client, Account.create().address) == ["lender"]


def test_roles__a_grant_on_chain__shows_at_the_next_read(client, cert, admin):
    account = sign_up(client)
    assert client.get("/me/roles", headers=bearer(account["token"])).json()["roles"] == ["lender"]

    cert.grant_issuer(account["address"], "Domaine des Roles", sender=admin)

    assert client.get("/me/roles", headers=bearer(account["token"])).json()["roles"] == ["issuer", "lender"]


@pytest.mark.parametrize("address", ["0x1234", "winery", "0x" + "g" * 40])
def test_roles__not_an_address__422_changes_nothing(client, address):
    response = client.get(f"/accounts/{address}/roles")

    assert response.status_code == 422 and response.json()["error"] in ("invalid_request", "validation_error")


def test_my_roles__without_a_session__401(make_client):
    response = make_client(auth=False).get("/me/roles")

    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


# ------------------------------------------------------------ the sender


@pytest.fixture
def business(client):
    """A new custodial account as the sender sees it: (sender, user, address)."""
    account = sign_up(client)
    user = client.app.state.users.authenticate(account["token"])
    return client.app.state.business, user, account["address"]


def test_send__funded_account__lands_from_its_own_address(business, deployed_stablecoin, admin, w3):
    sender, user, address = business
    admin.transfer(address, ETH)
    spender = Account.create().address

    sent = sender.send(user, w3.eth.contract(deployed_stablecoin.address, abi=STABLECOIN_ABI)
                       .functions.approve(spender, 5), "the stablecoin")

    receipt = w3.eth.get_transaction_receipt(sent.tx_hash)
    assert receipt["from"] == address and receipt["blockNumber"] == sent.block_number
    assert deployed_stablecoin.allowance(address, spender) == 5


def test_send__two_at_once__each_takes_its_own_nonce(business, deployed_stablecoin, admin, w3):
    sender, user, address = business
    admin.transfer(address, ETH)
    token = w3.eth.contract(deployed_stablecoin.address, abi=STABLECOIN_ABI)
    spenders = [Account.create().address for _ in range(2)]
    errors: list[BaseException] = []

    def approve(spender: str) -> None:
        try:
            sender.send(user, token.functions.approve(spender, 7), "the stablecoin")
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=approve, args=(s,)) for s in spenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [deployed_stablecoin.allowance(address, s) for s in spenders] == [7, 7]
    assert w3.eth.get_transaction_count(address) == 2


def test_send__a_call_that_would_revert__refused_with_the_reason_nothing_sent(business, cert, admin, w3):
    sender, user, address = business
    admin.transfer(address, ETH)
    contract = w3.eth.contract(cert.address, abi=cert.contract_type.model_dump(mode="json")["abi"])

    with pytest.raises(WouldRevert) as refused:
        sender.send(user, contract.functions.grant_issuer(address, "Self-made"))

    assert refused.value.detail and w3.eth.get_transaction_count(address) == 0
    assert not cert.is_issuer(address)


def test_send__an_address_without_eth__refused_in_words_nothing_sent(business, deployed_stablecoin, w3):
    sender, user, address = business
    token = w3.eth.contract(deployed_stablecoin.address, abi=STABLECOIN_ABI)

    with pytest.raises(GasUnfunded) as refused:
        sender.send(user, token.functions.approve(Account.create().address, 1), "the stablecoin")

    assert address in refused.value.detail and "fund" in refused.value.detail
    assert w3.eth.get_transaction_count(address) == 0


STABLECOIN_ABI = [{"type": "function", "name": "approve", "stateMutability": "nonpayable",
                   "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
                   "outputs": [{"name": "", "type": "bool"}]}]
