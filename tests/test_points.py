"""PointsToken: points pegged 1:1 to the stablecoin, issued by merchants
against stablecoin paid into the reserve and redeemed by merchants."""

from __future__ import annotations

import ape
import pytest

SCALE = 10**12  # 18-decimal points over a 6-decimal stablecoin
CAP = 1_000_000 * 10**18
USD = 10**6


@pytest.fixture
def stablecoin(project, admin, merchant, other_merchant):
    token = admin.deploy(project.MockPlainToken, 6, 0)
    for m in (merchant, other_merchant):
        token.mint(m, 1_000_000 * USD, sender=admin)
    return token


@pytest.fixture
def points(project, admin, stablecoin, merchant, other_merchant):
    token = admin.deploy(project.PointsToken, stablecoin, "Amphora Points", "PTS", 18, "Amphora Points", "1")
    token.register_merchant(merchant, "Wine Bar", CAP, sender=admin)
    token.register_merchant(other_merchant, "Cellar Shop", CAP, sender=admin)
    for m in (merchant, other_merchant):
        stablecoin.approve(token, 2**256 - 1, sender=m)
    return token


def test_issue__pays_reserve_and_mints_scaled_points(points, stablecoin, merchant, customer):
    tx = points.issue(customer, 25 * USD, sender=merchant)
    assert points.balanceOf(customer) == 25 * USD * SCALE
    assert points.reserve() == 25 * USD == stablecoin.balanceOf(points)
    assert points.totalSupply() == points.reserve() * SCALE
    events = list(tx.decode_logs(points.PointsIssued))
    assert len(events) == 1
    assert (events[0].merchant, events[0].customer) == (merchant, customer)
    assert (events[0].points, events[0].stablecoin_paid_in) == (25 * USD * SCALE, 25 * USD)
    record = points.merchants(merchant)
    assert (record.issued, record.paid_in) == (25 * USD * SCALE, 25 * USD)


def test_redeem__accepting_merchant_cashes_out_one_to_one(points, stablecoin, merchant, other_merchant, customer):
    points.issue(customer, 10 * USD, sender=merchant)
    points.transfer(other_merchant, 4 * USD * SCALE, sender=customer)
    before = stablecoin.balanceOf(other_merchant)

    tx = points.redeem(4 * USD * SCALE, sender=other_merchant)

    assert stablecoin.balanceOf(other_merchant) == before + 4 * USD
    assert points.reserve() == 6 * USD and points.totalSupply() == 6 * USD * SCALE
    events = list(tx.decode_logs(points.PointsRedeemed))
    assert (events[0].merchant, events[0].points, events[0].stablecoin_paid_out) == (
        other_merchant, 4 * USD * SCALE, 4 * USD)


def test_redeem__fraction_of_a_unit__remainder_stays_with_redeemer(points, stablecoin, merchant, other_merchant,
                                                                 customer):
    points.issue(customer, 3 * USD, sender=merchant)
    points.transfer(other_merchant, 2 * SCALE + 123, sender=customer)

    assert points.redeem(2 * SCALE + 123, sender=other_merchant).return_value == 2
    assert points.balanceOf(other_merchant) == 123
    assert points.reserve() * SCALE == points.totalSupply() - 0  # exact backing
    assert points.reserve() == 3 * USD - 2


def test_redeem__below_one_unit__reverts(points, merchant, customer, other_merchant):
    points.issue(customer, 1 * USD, sender=merchant)
    points.transfer(other_merchant, SCALE - 1, sender=customer)
    with ape.reverts("points: amount below one stablecoin unit"):
        points.redeem(SCALE - 1, sender=other_merchant)


def test_redeem__by_consumer__reverts(points, merchant, customer):
    points.issue(customer, 5 * USD, sender=merchant)
    with ape.reverts("points: only merchants redeem"):
        points.redeem(5 * USD * SCALE, sender=customer)
    assert points.balanceOf(customer) == 5 * USD * SCALE


def test_redeem__open_redemption_setting__consumer_may_cash_out(points, stablecoin, admin, merchant, customer):
    points.issue(customer, 5 * USD, sender=merchant)
    points.set_open_redemption(True, sender=admin)
    points.redeem(5 * USD * SCALE, sender=customer)
    assert stablecoin.balanceOf(customer) == 5 * USD and points.totalSupply() == 0


def test_redeem__more_than_balance__reverts(points, merchant, customer, other_merchant):
    points.issue(customer, 1 * USD, sender=merchant)
    with ape.reverts("points: redeem amount exceeds balance"):
        points.redeem(SCALE, sender=other_merchant)


def test_issue__by_non_merchant__reverts(points, customer, attacker):
    with ape.reverts("points: caller is not a merchant"):
        points.issue(customer, USD, sender=attacker)


def test_issue__beyond_cap__reverts_and_redeeming_frees_room(points, admin, merchant, customer):
    points.set_merchant_cap(merchant, 10 * USD * SCALE, sender=admin)
    points.issue(customer, 10 * USD, sender=merchant)
    with ape.reverts("points: merchant cap exceeded"):
        points.issue(customer, 1, sender=merchant)
    points.transfer(merchant, 3 * USD * SCALE, sender=customer)
    points.redeem(3 * USD * SCALE, sender=merchant)
    points.issue(customer, 3 * USD, sender=merchant)
    assert points.balanceOf(customer) == 10 * USD * SCALE


def test_issue__zero_or_to_zero_address__reverts(points, merchant, customer):
    with ape.reverts("points: amount is zero"):
        points.issue(customer, 0, sender=merchant)
    with ape.reverts("points: customer is the zero address"):
        points.issue("0x" + "00" * 20, USD, sender=merchant)


def test_issue__fee_on_transfer_stablecoin__refused(project, admin, merchant, customer):
    fee_token = admin.deploy(project.MockPlainToken, 6, 100)
    fee_token.mint(merchant, 100 * USD, sender=admin)
    token = admin.deploy(project.PointsToken, fee_token, "Amphora Points", "PTS", 18, "Amphora Points", "1")
    token.register_merchant(merchant, "Wine Bar", CAP, sender=admin)
    fee_token.approve(token, 2**256 - 1, sender=merchant)
    with ape.reverts("points: stablecoin paid in differs from amount"):
        token.issue(customer, 10 * USD, sender=merchant)
    assert token.totalSupply() == 0


def test_pause__stops_issue_and_redeem_but_not_transfers(points, admin, merchant, other_merchant, customer):
    points.issue(customer, 2 * USD, sender=merchant)
    points.pause(sender=admin)
    with ape.reverts("pausable: contract is paused"):
        points.issue(customer, USD, sender=merchant)
    points.transfer(other_merchant, USD * SCALE, sender=customer)
    with ape.reverts("pausable: contract is paused"):
        points.redeem(USD * SCALE, sender=other_merchant)
    assert points.balanceOf(other_merchant) == USD * SCALE
    points.unpause(sender=admin)
    points.redeem(USD * SCALE, sender=other_merchant)


@pytest.mark.parametrize("call", ["pause", "set_open_redemption", "register_merchant", "set_merchant_cap",
                                  "remove_merchant"])
def test_admin_functions__by_stranger__revert(points, attacker, merchant, call):
    args = {"pause": (), "set_open_redemption": (True,), "register_merchant": (attacker, "Me", CAP),
            "set_merchant_cap": (merchant, 0), "remove_merchant": (merchant,)}[call]
    with ape.reverts("ownable: caller is not the owner"):
        getattr(points, call)(*args, sender=attacker)


def test_remove_merchant__stops_it_but_points_stay_backed(points, admin, merchant, customer):
    points.issue(customer, 4 * USD, sender=merchant)
    points.remove_merchant(merchant, sender=admin)
    with ape.reverts("points: caller is not a merchant"):
        points.issue(customer, USD, sender=merchant)
    assert points.reserve() * SCALE == points.totalSupply()


def test_constructor__stablecoin_with_more_decimals__reverts(project, admin):
    eighteen = admin.deploy(project.MockPlainToken, 18, 0)
    with ape.reverts("points: fewer decimals than the stablecoin"):
        admin.deploy(project.PointsToken, eighteen, "P", "P", 6, "P", "1")


def test_surplus__stablecoin_sent_directly__not_counted_as_reserve(points, stablecoin, merchant, customer):
    points.issue(customer, 2 * USD, sender=merchant)
    stablecoin.transfer(points, 7, sender=merchant)
    assert points.reserve() == 2 * USD and points.surplus() == 7


def test_abi__no_mint_burn_or_renounce(points):
    names = {item.name for item in points.contract_type.abi if item.type == "function"}
    assert not names & {"mint", "burn", "burn_from", "set_minter", "renounce_ownership"}


# ------------------------------------------------ the merchant cap at its extremes (issue 12, item 23)

UNLIMITED = 2**256 - 1


def _cycle(points, merchant, customer, usd: int):
    """``merchant`` issues ``usd`` to ``customer``, takes it back and redeems it."""
    points.issue(customer, usd * USD, sender=merchant)
    points.transfer(merchant, usd * USD * SCALE, sender=customer)
    points.redeem(usd * USD * SCALE, sender=merchant)


@pytest.mark.parametrize("cap", [UNLIMITED, UNLIMITED - 1, UNLIMITED - 5 * USD * SCALE],
                         ids=["2**256-1", "2**256-2", "2**256-1 minus 5 USD of points"])
def test_issue__cap_near_unlimited_after_a_redemption__still_issues(points, admin, merchant, customer, cap):
    """``cap + redeemed`` overflowed once the merchant had redeemed anything:
    the sum saturates instead, so an unlimited cap stays unlimited."""
    points.set_merchant_cap(merchant, cap, sender=admin)
    _cycle(points, merchant, customer, 10)
    assert points.merchants(merchant).redeemed == 10 * USD * SCALE

    points.issue(customer, 20 * USD, sender=merchant)

    record = points.merchants(merchant)
    assert (record.issued, record.redeemed, record.cap) == (30 * USD * SCALE, 10 * USD * SCALE, cap)
    assert points.balanceOf(customer) == 20 * USD * SCALE


def test_issue__registered_unlimited__issues_and_redeems_repeatedly(points, stablecoin, admin, customer, accounts):
    shop = accounts[17]
    points.register_merchant(shop, "Unlimited Shop", UNLIMITED, sender=admin)
    stablecoin.mint(shop, 100 * USD, sender=admin)
    stablecoin.approve(points, UNLIMITED, sender=shop)
    for _ in range(3):
        _cycle(points, shop, customer, 5)
    assert points.merchants(shop).issued == points.merchants(shop).redeemed == 15 * USD * SCALE


def test_issue__finite_cap__exactly_at_the_cap_issues_one_unit_more_reverts(points, admin, merchant, customer):
    points.set_merchant_cap(merchant, 10 * USD * SCALE, sender=admin)
    _cycle(points, merchant, customer, 4)  # redeemed 4: room is cap + 4 - issued 4 = 10
    points.issue(customer, 10 * USD, sender=merchant)
    with ape.reverts("points: merchant cap exceeded"):
        points.issue(customer, 1, sender=merchant)


def test_issue__zero_cap__reverts_with_the_cap_message(points, admin, merchant, customer):
    points.set_merchant_cap(merchant, 0, sender=admin)
    with ape.reverts("points: merchant cap exceeded"):
        points.issue(customer, 1, sender=merchant)
