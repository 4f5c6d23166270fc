"""GET /accounts/{address}/balances: what one account holds, read from the chain."""

from __future__ import annotations

import pytest
from api_fixtures import SCALE, USD

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

#: The ERC-20 selectors of ``symbol()`` and ``decimals()``.
METADATA_SELECTORS = {"0x95d89b41", "0x313ce567"}
TOKENS = ("Stablecoin", "PointsToken", "UtilityToken")


@pytest.fixture
def customer_holdings(cert, lot, winery, customer, deployed_utility, admin, mint_stablecoin, issue_points):
    """``customer`` holds two certificates, 25 USD of points, 7.5 USD and 3 AMPU."""
    cert.transferFrom(winery, customer, lot.token(1), sender=winery)
    cert.transferFrom(winery, customer, lot.token(2), sender=winery)
    issue_points(customer, 25 * USD)
    mint_stablecoin(customer, 7_500_000)
    deployed_utility.mint(customer, 3 * 10**18, sender=admin)
    return customer


def test_balances__account_holding_everything__exact_amounts_with_token_facts(
        client, chain, w3, cert, customer_holdings, deployed_stablecoin, deployed_points, deployed_utility):
    customer = customer_holdings

    response = client.get(f"/accounts/{customer.address}/balances")

    assert response.status_code == 200
    assert response.json() == {
        "address": customer.address,
        "block_number": chain.blocks.head.number,
        "eth_wei": str(w3.eth.get_balance(customer.address)),
        "certificates": {"address": cert.address, "symbol": "WINE", "count": "2"},
        "stablecoin": {"address": deployed_stablecoin.address, "symbol": "tUSD", "decimals": 6,
                       "balance": "7500000"},
        "points": {"address": deployed_points.address, "symbol": "PTS", "decimals": 18,
                   "balance": str(25 * USD * SCALE)},
        "utility": {"address": deployed_utility.address, "symbol": "AMPU", "decimals": 18,
                    "balance": "3000000000000000000"},
    }
    assert response.json()["points"]["balance"] == "25000000000000000000"  # beyond 2**53: a string


def test_balances__merchant_after_issuing__stablecoin_went_to_the_reserve(
        client, customer, merchant, issue_points):
    issue_points(customer, 40 * USD)

    body = client.get(f"/accounts/{merchant.address}/balances").json()

    assert body["stablecoin"]["balance"] == str(1_000 * USD - 40 * USD)
    assert body["points"]["balance"] == "0"
    assert body["certificates"]["count"] == "0"


def test_balances__unknown_account__all_zeros(client, fresh_key):
    response = client.get(f"/accounts/{fresh_key.address}/balances")

    assert response.status_code == 200
    body = response.json()
    assert body["eth_wei"] == "0"
    assert body["certificates"]["count"] == "0"
    assert [body[k]["balance"] for k in ("stablecoin", "points", "utility")] == ["0", "0", "0"]


def test_balances__zero_address__zeros_not_an_error(client):
    response = client.get("/accounts/0x" + "00" * 20 + "/balances")

    assert response.status_code == 200
    assert response.json()["certificates"]["count"] == "0"


def test_balances__lowercase_address__answered_checksummed(client, customer_holdings):
    response = client.get(f"/accounts/{customer_holdings.address.lower()}/balances")

    assert response.status_code == 200
    assert response.json()["address"] == customer_holdings.address
    assert response.json()["certificates"]["count"] == "2"


@pytest.mark.parametrize("raw", ["0x1234", "0x" + "zz" * 20, "90F79bf6EB2c4f870365E785982E1f101E93b906",
                                 "0x" + "ab" * 21, "checksum"])
def test_balances__malformed_address__422(client, customer, raw):
    if raw == "checksum":
        raw = "0x" + customer.address[2:].swapcase()

    response = client.get(f"/accounts/{raw}/balances")

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("address: ")


def test_balances__older_manifest_without_tokens__omits_them(make_client, edited_manifest, cert, customer):
    def drop_tokens(data: dict) -> None:
        for name in TOKENS:
            del data["contracts"][name]

    response = make_client(manifest_path=edited_manifest(drop_tokens)).get(f"/accounts/{customer.address}/balances")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"address", "block_number", "eth_wei", "certificates"}
    assert body["certificates"]["address"] == cert.address


def test_balances__token_recorded_without_code__503_not_deployed(make_client, edited_manifest, customer, holder):
    def stale_points(data: dict) -> None:
        data["contracts"]["PointsToken"]["address"] = holder.address

    response = make_client(manifest_path=edited_manifest(stale_points)).get(
        f"/accounts/{customer.address}/balances")

    assert response.status_code == 503
    assert response.json() == {
        "error": "not_deployed",
        "detail": "the PointsToken contract answered nothing: the manifest's address has no contract on this "
                  "chain (was the node reset? redeploy)",
    }


def test_balances__node_unreachable__503(make_client, customer):
    response = make_client(rpc_url="http://127.0.0.1:9", rpc_timeout=2).get(f"/accounts/{customer.address}/balances")

    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"


def test_balances__second_request__symbol_and_decimals_not_read_again(client, customer, monkeypatch):
    provider = client.app.state.chain.w3.provider
    make_request = provider.make_request
    selectors: list[list[str]] = []

    def counting(method, params):
        if method == "eth_call":
            selectors[-1].append(str(params[0].get("data") or params[0].get("input"))[:10])
        return make_request(method, params)

    monkeypatch.setattr(provider, "make_request", counting)  # before web3 builds its request chain
    for _ in range(2):
        selectors.append([])
        assert client.get(f"/accounts/{customer.address}/balances").status_code == 200

    first, second = selectors
    assert METADATA_SELECTORS <= set(first)
    assert len(second) == 1 + len(TOKENS)  # the certificate's balanceOf and each token's
    assert not METADATA_SELECTORS & set(second)
