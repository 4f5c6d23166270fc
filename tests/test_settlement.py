"""The clearing statement: per-merchant totals from the chain's events, and
reconciliation with the reserve, on randomly generated histories."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import HTTPProvider, Web3

from amphora.settlement import SettlementError, statement

SCALE = 10**12
USD = 10**6


@pytest.fixture
def stablecoin(project, admin, merchant, other_merchant):
    token = admin.deploy(project.MockPlainToken, 6, 0)
    for m in (merchant, other_merchant):
        token.mint(m, 10**9 * USD, sender=admin)
    return token


@pytest.fixture
def points(project, admin, stablecoin, merchant, other_merchant):
    token = admin.deploy(project.PointsToken, stablecoin, "Amphora Points", "PTS", 18, "Amphora Points", "1")
    token.register_merchant(merchant, "Wine Bar", 10**40, sender=admin)
    token.register_merchant(other_merchant, "Cellar Shop", 10**40, sender=admin)
    for m in (merchant, other_merchant):
        stablecoin.approve(token, 2**256 - 1, sender=m)
    return token


@pytest.fixture
def w3(chain):
    return Web3(HTTPProvider(chain.provider.uri))


def _abi(contract):
    return [a.model_dump(mode="json", by_alias=True, exclude_none=True) for a in contract.contract_type.abi]


def test_statement__issue_by_one_redeem_by_other__nets_and_reconciles(chain, w3, points, merchant,
                                                                     other_merchant, customer):
    start = chain.blocks.head.number + 1
    points.issue(customer, 30 * USD, sender=merchant)
    points.transfer(other_merchant, 12 * USD * SCALE, sender=customer)
    points.redeem(12 * USD * SCALE, sender=other_merchant)

    result = statement(w3, points.address, _abi(points), start, chain.blocks.head.number)

    by_merchant = {line.merchant: line for line in result.lines}
    issuer, acceptor = by_merchant[merchant.address], by_merchant[other_merchant.address]
    assert (issuer.name, issuer.points_issued, issuer.stablecoin_paid_in, issuer.net_position) == (
        "Wine Bar", 30 * USD * SCALE, 30 * USD, 30 * USD)
    assert (acceptor.points_redeemed, acceptor.stablecoin_paid_out, acceptor.net_position) == (
        12 * USD * SCALE, 12 * USD, -12 * USD)
    assert result.reserve_movement == 18 * USD and result.reconciled
    data = result.to_json()
    assert data["totals"]["net_position"] == 18 * USD and data["discrepancies"] == []
    json.dumps(data)
    rows = result.to_csv().splitlines()
    assert rows[0].startswith("merchant,name,points_issued") and rows[-1].startswith("TOTAL,")


def test_statement__range_excludes_earlier_activity(chain, w3, points, merchant, customer):
    points.issue(customer, 5 * USD, sender=merchant)
    start = chain.blocks.head.number + 1
    points.issue(customer, 7 * USD, sender=merchant)
    result = statement(w3, points.address, _abi(points), start, chain.blocks.head.number)
    assert [line.stablecoin_paid_in for line in result.lines] == [7 * USD]
    assert result.reserve_before == 5 * USD and result.reserve_after == 12 * USD and result.reconciled


def test_statement__tampered_line__reports_discrepancy(chain, w3, points, merchant, customer):
    start = chain.blocks.head.number + 1
    points.issue(customer, 5 * USD, sender=merchant)
    result = statement(w3, points.address, _abi(points), start, chain.blocks.head.number)
    result.lines[0].stablecoin_paid_in += 1
    assert not result.reconciled
    assert "but the reserve moved by 5000000" in result.discrepancies[0]


@pytest.mark.parametrize("bounds", [(10, 5), (-1, 3)])
def test_statement__bad_range__refused(chain, w3, points, bounds):
    with pytest.raises(SettlementError):
        statement(w3, points.address, _abi(points), *bounds)


def test_statement__beyond_head__refused(chain, w3, points):
    with pytest.raises(SettlementError, match="beyond the latest block"):
        statement(w3, points.address, _abi(points), 0, chain.blocks.head.number + 10)


OPS = st.lists(
    st.tuples(st.sampled_from(["issue", "redeem"]), st.integers(0, 1), st.integers(1, 50 * USD)),
    min_size=1, max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(ops=OPS, split=st.integers(0, 6))
def test_statement__random_history__matches_model_and_reconciles(chain, w3, points, merchant, other_merchant,
                                                                 customer, ops, split):
    merchants = [merchant, other_merchant]
    snapshot = chain.snapshot()
    try:
        start = chain.blocks.head.number + 1
        model = {m.address: [0, 0, 0, 0] for m in merchants}  # issued, redeemed, paid in, paid out
        boundary = None
        for i, (op, who, amount) in enumerate(ops):
            if i == split:
                boundary = chain.blocks.head.number
            m = merchants[who]
            if op == "issue":
                points.issue(customer, amount, sender=m)
                model[m.address][0] += amount * SCALE
                model[m.address][2] += amount
            else:
                held = points.balanceOf(customer) // SCALE
                if held == 0:
                    continue
                take = min(amount, held)
                points.transfer(m, take * SCALE, sender=customer)
                points.redeem(take * SCALE, sender=m)
                model[m.address][1] += take * SCALE
                model[m.address][3] += take
        end = chain.blocks.head.number
        if end < start:  # nothing happened (every redeem found no points)
            assert not any(any(v) for v in model.values())
            return
        whole = statement(w3, points.address, _abi(points), start, end)
        assert whole.reconciled, whole.discrepancies
        got = {line.merchant: [line.points_issued, line.points_redeemed, line.stablecoin_paid_in,
                               line.stablecoin_paid_out] for line in whole.lines}
        assert got == {k: v for k, v in model.items() if any(v)}
        if boundary is not None and start <= boundary < end:
            first = statement(w3, points.address, _abi(points), start, boundary)
            second = statement(w3, points.address, _abi(points), boundary + 1, end)
            assert first.reconciled and second.reconciled
            assert first.reserve_movement + second.reserve_movement == whole.reserve_movement
    finally:
        chain.restore(snapshot)
