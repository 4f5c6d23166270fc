"""GET /points/settlement: the clearing statement between merchants, as JSON and CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pytest
from api_fixtures import SCALE, USD, node_gateway

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

CSV_HEADER = ["merchant", "name", "points_issued", "points_redeemed", "stablecoin_paid_in",
              "stablecoin_paid_out", "net_position"]


@dataclass
class History:
    first_block: int
    last_block: int


@pytest.fixture
def history(chain, deployed_points, issue_points, customer, merchant, other_merchant) -> History:
    """``merchant`` issues 30 USD of points to ``customer``, who spends 12 USD of
    them at ``other_merchant``, who redeems them."""
    first = chain.blocks.head.number + 1
    issue_points(customer, 30 * USD, issuer=merchant)
    deployed_points.transfer(other_merchant, 12 * USD * SCALE, sender=customer)
    deployed_points.redeem(12 * USD * SCALE, sender=other_merchant)
    return History(first, chain.blocks.head.number)


def _range(history: History) -> dict:
    return {"from_block": history.first_block, "to_block": history.last_block}


def test_settlement__issue_and_redeem__per_merchant_lines_totals_and_reconciled(
        client, history, deployed_points, merchant, other_merchant):
    response = client.get("/points/settlement", params=_range(history))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    lines = {
        merchant.address: {"merchant": merchant.address, "name": "Wine Bar",
                           "points_issued": str(30 * USD * SCALE), "points_redeemed": "0",
                           "stablecoin_paid_in": str(30 * USD), "stablecoin_paid_out": "0",
                           "net_position": str(30 * USD)},
        other_merchant.address: {"merchant": other_merchant.address, "name": "Cellar Shop",
                                 "points_issued": "0", "points_redeemed": str(12 * USD * SCALE),
                                 "stablecoin_paid_in": "0", "stablecoin_paid_out": str(12 * USD),
                                 "net_position": str(-12 * USD)},
    }
    assert response.json() == {
        "points": deployed_points.address,
        "from_block": history.first_block,
        "to_block": history.last_block,
        "merchants": [lines[a] for a in sorted(lines, key=str.lower)],
        "totals": {"points_issued": "30000000000000000000", "points_redeemed": "12000000000000000000",
                   "stablecoin_paid_in": "30000000", "stablecoin_paid_out": "12000000",
                   "net_position": "18000000"},
        "reserve": {"before": "0", "after": "18000000", "movement": "18000000"},
        "reconciled": True,
        "discrepancies": [],
    }
    assert deployed_points.reserve() == 18 * USD


def test_settlement__range_after_earlier_activity__counts_only_the_range_and_reserve_before(
        client, chain, history, issue_points, customer, merchant):
    first = chain.blocks.head.number + 1
    issue_points(customer, 5 * USD, issuer=merchant)

    body = client.get("/points/settlement", params={"from_block": first}).json()

    assert [(m["merchant"], m["stablecoin_paid_in"]) for m in body["merchants"]] == [
        (merchant.address, str(5 * USD))]
    assert body["reserve"] == {"before": str(18 * USD), "after": str(23 * USD), "movement": str(5 * USD)}
    assert body["to_block"] == chain.blocks.head.number
    assert body["reconciled"] is True


def test_settlement__no_range_given__from_points_deploy_block_to_latest(client, chain, manifest, history):
    response = client.get("/points/settlement")

    assert response.status_code == 200
    body = response.json()
    assert body["from_block"] == manifest.contract("PointsToken")["deploy_block"]
    assert body["to_block"] == chain.blocks.head.number
    assert body["totals"]["net_position"] == str(18 * USD)
    assert body["reconciled"] is True


def test_settlement__range_without_activity__empty_and_reconciled(client, chain, points_merchants):
    head = chain.blocks.head.number

    body = client.get("/points/settlement", params={"from_block": head, "to_block": head}).json()

    assert body["merchants"] == []
    assert body["totals"]["points_issued"] == "0"
    assert body["reconciled"] is True and body["discrepancies"] == []


def test_settlement__csv__header_merchant_rows_and_total_row(client, history, merchant, other_merchant):
    response = client.get("/points/settlement", params={**_range(history), "format": "csv"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="points-settlement-{history.first_block}-{history.last_block}.csv"')
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == CSV_HEADER
    by_merchant = {row[0]: row for row in rows[1:-1]}
    assert by_merchant == {
        merchant.address: [merchant.address, "Wine Bar", str(30 * USD * SCALE), "0", str(30 * USD), "0",
                           str(30 * USD)],
        other_merchant.address: [other_merchant.address, "Cellar Shop", "0", str(12 * USD * SCALE), "0",
                                 str(12 * USD), str(-12 * USD)],
    }
    assert rows[-1] == ["TOTAL", "", "30000000000000000000", "12000000000000000000", "30000000", "12000000",
                        "18000000"]


@pytest.mark.parametrize("case", ["inverted", "beyond head", "from beyond head"])
def test_settlement__bad_range__422_with_reason(client, chain, history, case):
    head = chain.blocks.head.number
    params, detail = {
        "inverted": ({"from_block": 10, "to_block": 5}, "from_block 10 to to_block 5 is not a range"),
        "beyond head": ({"from_block": 0, "to_block": head + 10},
                        f"to_block {head + 10} is beyond the latest block {head}"),
        "from beyond head": ({"from_block": head + 1}, f"from_block {head + 1} to to_block {head} is not a range"),
    }[case]

    response = client.get("/points/settlement", params=params)

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_request", "detail": detail}


@pytest.mark.parametrize("params, field", [
    ({"from_block": -1}, "from_block"),
    ({"to_block": "latest"}, "to_block"),
    ({"format": "xml"}, "format"),
])
def test_settlement__malformed_query__422(client, params, field):
    response = client.get("/points/settlement", params=params)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(f"{field}: ")


def test_settlement__manifest_without_points__503_not_deployed(make_client, edited_manifest):
    path = edited_manifest(lambda data: data["contracts"].pop("PointsToken"))

    response = make_client(manifest_path=path).get("/points/settlement")

    assert response.status_code == 503
    assert response.json() == {"error": "not_deployed",
                               "detail": "the deploy manifest for chain 31337 records no PointsToken: "
                                         "deploy it with `ape run deploy`"}


def test_settlement__points_address_without_code__503_not_deployed(make_client, edited_manifest, holder):
    path = edited_manifest(lambda data: data["contracts"]["PointsToken"].update(address=holder.address))

    response = make_client(manifest_path=path).get("/points/settlement")

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
    assert holder.address in response.json()["detail"]


def test_settlement__node_unreachable__503(make_client):
    response = make_client(rpc_url="http://127.0.0.1:9", rpc_timeout=2).get("/points/settlement")

    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"



def test_points_reserve__before_the_deploy_block__zero_without_asking_the_node(make_client, rpc_url):
    """A statement from the token's first day reads the reserve just before its deploy block: the answer is 0
    by definition, and a node that kept no state that old (a pruned node; anvil after it let old states go)
    could not give it, so the node is not asked."""
    with node_gateway(rpc_url) as (url, seen):
        chain = make_client(auth=False, rpc_url=url).app.state.chain
        deployed = chain.deploy_block_of("PointsToken")
        assert deployed > 0
        chain.points_reserve(deployed)  # warm up: the manifest and the contract are read once
        asked = len(seen)

        assert chain.points_reserve(deployed - 1) == 0
        assert len(seen) == asked
