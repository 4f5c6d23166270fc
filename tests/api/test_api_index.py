"""The read API over the index: an address's certificates (an issuer's unsold
stock as ranges), a certificate's history in words, lots with their counts,
loans and a lender's portfolio, a merchant's points ledger, and the points
statement from the index agreeing with the chain-scanning one.

Every test acts on the chain (Ape, reverted after the test), waits until the
session's index holds the head (``wait_indexed``), then reads."""

from __future__ import annotations

import time

import pytest
from api_fixtures import SCALE, USD, wait_indexed
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_lending import (  # noqa: F401 (fixtures)
    PRINCIPAL,
    REPAYMENT,
    appraised,
    bottles,
    deployed_lending,
    funded,
    make_offer,
    open_loan,
)

from amphora.merkle import ReserveTree
from amphora.settlement import statement as chain_statement
from indexer import ledgers
from indexer.reader import IndexReader, encode_cursor

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ZERO = "0x" + "00" * 20


def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def pages(client, path: str, key: str | tuple[str, ...], **params) -> tuple[list, int]:
    """Every item of a paginated list, following `next_cursor`; and how many pages it took."""
    keys = (key,) if isinstance(key, str) else key
    items, cursor, count = [], None, 0
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        for name in keys:
            items += body[name]
        count += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, count


@pytest.fixture
def other_custodian(accounts, cert, admin):
    """A second registered cellar."""
    account = accounts[9]
    cert.grant_custodian(account, "Entrepôt Autre", sender=admin)
    return account


# ------------------------------------------------------------- holdings


def test_certificates__issuer_after_sales__unsold_stock_as_ranges_and_sold_bottles_with_holder(
        client, w3, cert, create_lot, winery, holder):
    lot = create_lot(10)
    for serial in (3, 7):
        cert.transferFrom(winery, holder, lot.token(serial), sender=winery)
    wait_indexed(w3, client)

    issuer = client.get(f"/accounts/{winery.address}/certificates", params={"lot": lot.lot_id}).json()
    bought = client.get(f"/accounts/{holder.address.lower()}/certificates", params={"lot": lot.lot_id}).json()

    assert issuer["certificates"] == []
    assert [(r["first_serial"], r["last_serial"], r["count"]) for r in issuer["ranges"]] == [
        (1, 2, 2), (4, 6, 3), (8, 10, 3)]
    assert issuer["ranges"][1]["first_token_id"] == str(lot.token(4))
    assert issuer["ranges"][1]["last_token_id"] == str(lot.token(6))
    assert {(r["wine"], r["vintage"], r["producer"], r["state"]) for r in issuer["ranges"]} == {
        ("Cuvée Essai", 2019, "Domaine Test", "active")}
    assert bought["address"] == holder.address
    assert [(c["token_id"], c["serial"], c["state"], c["wine"]) for c in bought["certificates"]] == [
        (str(lot.token(3)), 3, "active", "Cuvée Essai"), (str(lot.token(7)), 7, "active", "Cuvée Essai")]
    assert bought["ranges"] == []
    latest = bought["certificates"][1]
    assert latest["confirmations"] == bought["head_block"] - latest["block_number"] + 1 >= 1
    assert latest["final"] is False  # within the reorg window
    assert bought["indexed_block"] >= latest["block_number"] and bought["lag"] == (
        bought["head_block"] - bought["indexed_block"])


def test_certificates__bottle_moved_back_to_issuer__listed_as_a_bottle_between_its_ranges(
        client, w3, cert, create_lot, winery, holder):
    lot = create_lot(5)
    cert.transferFrom(winery, holder, lot.token(2), sender=winery)
    cert.transferFrom(holder, winery, lot.token(2), sender=holder)
    wait_indexed(w3, client)

    body = client.get(f"/accounts/{winery.address}/certificates", params={"lot": lot.lot_id}).json()

    assert [c["serial"] for c in body["certificates"]] == [2]
    assert [(r["first_serial"], r["last_serial"]) for r in body["ranges"]] == [(1, 1), (3, 5)]
    lot_view = client.get(f"/lots/{lot.lot_id}").json()["lot"]
    assert lot_view["counts"]["in_stock"] == 5 and lot_view["counts"]["held"] == 0
    assert lot_view["counts"]["holders"] == 1


def test_certificates__paginated__every_item_once_in_lot_serial_order(
        client, w3, cert, create_lot, winery, holder):
    first, second = create_lot(6), create_lot(4)
    for lot, serial in ((first, 2), (first, 5), (second, 1), (second, 3)):
        cert.transferFrom(winery, holder, lot.token(serial), sender=winery)
    wait_indexed(w3, client)
    path = f"/accounts/{winery.address}/certificates"
    whole = client.get(path, params={"limit": 200}).json()

    items, count = pages(client, path, ("certificates", "ranges"), limit=2)

    expected = [(r["lot_id"], r["first_serial"], r["last_serial"]) for r in whole["ranges"]]
    assert sorted((r["lot_id"], r["first_serial"], r["last_serial"]) for r in items) == sorted(expected)
    assert len(items) == len(expected)  # no range twice, none lost
    mine = [(int(r["lot_id"]), r["first_serial"], r["last_serial"]) for r in items
            if int(r["lot_id"]) in (first.lot_id, second.lot_id)]
    assert mine == [(first.lot_id, 1, 1), (first.lot_id, 3, 4), (first.lot_id, 6, 6), (second.lot_id, 2, 2),
                    (second.lot_id, 4, 4)]
    assert count == -(-len(expected) // 2)


def test_certificates__state_filter__only_that_state(client, w3, cert, create_lot, winery, holder):
    lot = create_lot(4)
    for serial in (1, 2):
        cert.transferFrom(winery, holder, lot.token(serial), sender=winery)
    cert.flag(lot.token(2), b"\x01" * 32, sender=holder)
    wait_indexed(w3, client)
    path = f"/accounts/{holder.address}/certificates"

    flagged = client.get(path, params={"lot": lot.lot_id, "state": "flagged"}).json()
    active = client.get(path, params={"lot": lot.lot_id, "state": "active"}).json()
    issuer_flagged = client.get(f"/accounts/{winery.address}/certificates",
                                params={"lot": lot.lot_id, "state": "flagged"}).json()

    assert [(c["serial"], c["state"]) for c in flagged["certificates"]] == [(2, "flagged")]
    assert [(c["serial"], c["state"]) for c in active["certificates"]] == [(1, "active")]
    assert issuer_flagged["ranges"] == [] and issuer_flagged["certificates"] == []


def test_me_certificates__custodial_account__its_own_bottles(make_client, w3, cert, create_lot, winery):
    client = make_client()
    lot = create_lot(3)
    cert.transferFrom(winery, client.account["address"], lot.token(2), sender=winery)
    wait_indexed(w3, client)

    body = client.get("/me/certificates").json()

    assert body["address"] == client.account["address"]
    assert [c["token_id"] for c in body["certificates"]] == [str(lot.token(2))]


def test_me_certificates__anonymous__401(make_client):
    response = make_client(auth=False).get("/me/certificates")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("params, where", [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": encode_cursor(1)}, "cursor"),  # a cursor of another list (lots)
    ({"cursor": "c1.!!!"}, "cursor"),
    ({"limit": 0}, "limit"),
    ({"limit": 201}, "limit"),
    ({"state": "lost"}, "state"),
    ({"lot": 2**63}, "lot"),
])
def test_certificates__bad_query__422_naming_it(client, winery, params, where):
    response = client.get(f"/accounts/{winery.address}/certificates", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request" and where in response.json()["detail"]


def test_certificates__mixed_case_address_with_wrong_checksum__422(client, winery):
    address = winery.address
    wrong = address[:2] + (address[2:].swapcase() if address[2:] != address[2:].swapcase() else address[2:])
    response = client.get(f"/accounts/{wrong}/certificates")
    assert response.status_code == 422 and "checksum" in response.json()["detail"]


# -------------------------------------------------------------- history


def test_history__gift_created_then_revoked__own_and_lot_events_in_order_with_words(
        client, w3, cert, create_lot, winery, holder, recipient, chain):
    lot = create_lot(4)
    token_id = lot.token(2)
    cert.transferFrom(winery, holder, token_id, sender=winery)
    claim_key = recipient  # any address stands for the one-time claim key here
    expiry = chain.pending_timestamp + 86_400
    cert.create_gift(token_id, claim_key, expiry, sender=holder)
    cert.revoke_gift(token_id, sender=holder)
    wait_indexed(w3, client)

    body = client.get(f"/certificates/{token_id}/history").json()

    events = [entry["event"] for entry in body["history"]]
    assert events == ["ConsecutiveTransfer", "LotIssued", "Transfer", "GiftCreated", "GiftRevoked"]
    assert "Locked" not in events and "MetadataUpdate" not in events  # echoes are left out
    words = [entry["summary"] for entry in body["history"]]
    assert words[2] == f"Moved from {short(winery.address)} to {short(holder.address)}"
    assert words[3].startswith("Gift created for claim until 20")
    assert words[4] == f"Gift revoked by {short(holder.address)}; back with {short(holder.address)}"
    positions = [(e["block_number"], e["log_index"]) for e in body["history"]]
    assert positions == sorted(positions)
    gift = body["history"][3]
    assert gift["args"]["expiry"] == str(expiry) and gift["args"]["claim_key"] == claim_key.address
    assert gift["block_time_iso"].endswith("+00:00") and gift["block_time"] > 0
    assert body["token_id"] == str(token_id) and body["lot_id"] == str(lot.lot_id)


def test_history__paginated_one_at_a_time__same_entries_as_one_page(
        client, w3, cert, create_lot, winery, holder, recipient):
    lot = create_lot(3)
    token_id = lot.token(1)
    cert.transferFrom(winery, holder, token_id, sender=winery)
    cert.transferFrom(holder, recipient, token_id, sender=holder)
    cert.transferFrom(recipient, holder, token_id, sender=recipient)
    wait_indexed(w3, client)
    path = f"/certificates/{token_id}/history"

    one_page = client.get(path).json()["history"]
    items, count = pages(client, path, "history", limit=1)

    assert items == one_page and count == len(one_page) == 5


def test_history__reserve_roots__only_those_of_the_custodian_holding_the_lot_then(
        client, w3, cert, registry, create_lot, admin, custodian, other_custodian):
    lot = create_lot(2)
    token_id = lot.token(1)
    tree = ReserveTree.build([lot.token(1), lot.token(2)])
    registry.post_reserve_root(tree.root, 2, "ipfs://before", sender=custodian)
    registry.post_reserve_root(tree.root, 2, "ipfs://elsewhere", sender=other_custodian)  # not this lot's cellar
    cert.move_custody(lot.lot_id, other_custodian, sender=admin)
    registry.post_reserve_root(tree.root, 2, "ipfs://old-cellar-after", sender=custodian)  # no longer its cellar
    registry.post_reserve_root(tree.root, 2, "ipfs://after", sender=other_custodian)
    registry.attest_storage(lot.lot_id, keccak(text="report"), "ipfs://report", sender=other_custodian)
    wait_indexed(w3, client)

    history = client.get(f"/certificates/{token_id}/history").json()["history"]

    reserves = [entry["args"]["tree_uri"] for entry in history if entry["event"] == "ReserveRootPosted"]
    assert reserves == ["ipfs://before", "ipfs://after"]
    moved = next(entry for entry in history if entry["event"] == "CustodyMoved")
    assert moved["summary"] == f"Custody moved from {short(custodian.address)} to {short(other_custodian.address)}"
    assert history[-1]["event"] == "StorageAttested" and "ipfs://report" in history[-1]["summary"]


def test_history__serial_beyond_the_lot__404_and_lot_zero__404(client, w3, create_lot):
    lot = create_lot(2)
    wait_indexed(w3, client)

    assert client.get(f"/certificates/{lot.token(3)}/history").status_code == 404
    assert client.get("/certificates/7/history").json()["error"] == "not_found"


def test_history__pledged_for_a_loan__says_so(client, w3, open_loan, deployed_lending, lender):  # noqa: F811
    loan_id, token_id = open_loan
    wait_indexed(w3, client)

    history = client.get(f"/certificates/{token_id}/history").json()["history"]

    started = next(entry for entry in history if entry["event"] == "LoanStarted")
    assert started["summary"].startswith(f"Pledged as collateral for loan {loan_id}: {PRINCIPAL} stablecoin units "
                                         f"lent by {short(lender.address)}")
    assert "AppraisalPosted" in [entry["event"] for entry in history]


def test_view__history_from_the_index_matches_the_history_endpoint(client, w3, cert, held_token, holder):
    cert.flag(held_token, b"\x02" * 32, sender=holder)

    view = client.get(f"/certificates/{held_token}").json()
    history = client.get(f"/certificates/{held_token}/history").json()["history"]

    assert view["history_complete"] is True and view["indexed_block"] >= view["block_number"]
    assert [(e["event"], e["tx_hash"], e["summary"]) for e in view["history"]] == [
        (e["event"], e["tx_hash"], e["summary"]) for e in history]
    assert view["history"][-1]["summary"] == f"Reported lost or stolen by {short(holder.address)}"


def test_view__index_stopped_behind__says_history_incomplete(make_client, create_lot, w3, tmp_path):
    """An app reading an index that never reached the certificate answers the chain's record, without the
    lot's text, and says its history is incomplete, at once: an empty or stopped index is not waited for
    (else every view would hold a worker for `index_read_wait_seconds` while the follower is down)."""
    lot = create_lot(2)
    stale = make_client(index_db=tmp_path / "empty-index.sqlite", index_read_wait_seconds=10)

    started = time.monotonic()
    view = stale.get(f"/certificates/{lot.token(1)}").json()

    assert time.monotonic() - started < 3  # an index that cannot catch up is not waited for

    assert view["owner"] is not None and view["lot"]["wine"] is None
    assert view["history"] == [] and view["history_complete"] is False and view["indexed_block"] is None


# ----------------------------------------------------------------- lots


def test_lot__counts_by_state_and_holders(client, w3, cert, create_lot, winery, holder, recipient, chain,
                                          custodian):
    lot = create_lot(8)
    for serial, to in ((1, holder), (2, holder), (3, recipient), (4, holder), (5, holder)):
        cert.transferFrom(winery, to, lot.token(serial), sender=winery)
    cert.flag(lot.token(2), b"\x03" * 32, sender=holder)
    cert.create_gift(lot.token(3), holder, chain.pending_timestamp + 3_600, sender=recipient)
    cert.request_redemption(lot.token(4), b"\x04" * 32, sender=holder)
    cert.request_redemption(lot.token(5), b"\x05" * 32, sender=holder)
    cert.confirm_redemption(lot.token(5), sender=custodian)
    wait_indexed(w3, client)

    body = client.get(f"/lots/{lot.lot_id}").json()

    assert body["lot"]["counts"] == {"in_stock": 3, "held": 1, "gift_pending": 1, "pledged": 0,
                                     "redemption_requested": 1, "redeemed": 1, "flagged": 1, "holders": 3}
    facts = body["lot"]
    assert (facts["wine"], facts["producer"], facts["region"], facts["bottle_count"], facts["vintage"]) == (
        "Cuvée Essai", "Domaine Test", "Pauillac AOC", 8, 2019)
    assert (facts["first_token_id"], facts["last_token_id"]) == (str(lot.token(1)), str(lot.token(8)))
    assert facts["issuer"] == winery.address and facts["custodian"] == custodian.address
    assert body["indexed_block"] >= facts["issued_block"]


def test_lots__listed_and_paginated_by_issuer(client, w3, create_lot, other_winery, admin, cert):
    cert.grant_issuer(other_winery, "Autre Domaine", sender=admin)
    ids = [create_lot(2, issuer=other_winery).lot_id for _ in range(3)]
    wait_indexed(w3, client)

    items, count = pages(client, "/lots", "lots", issuer=other_winery.address, limit=2)

    assert [int(item["lot_id"]) for item in items] == ids and count == 2
    assert all(item["counts"]["in_stock"] == 2 and item["counts"]["holders"] == 1 for item in items)


def test_lot__unknown__404_and_bad_cursor__422(client, w3):
    wait_indexed(w3, client)
    assert client.get(f"/lots/{10**9}").status_code == 404
    assert client.get(f"/lots/{2**200}").json()["error"] == "not_found"
    assert client.get("/lots", params={"cursor": encode_cursor(1, 2)}).status_code == 422


# ---------------------------------------------------------------- loans


def test_loans__by_lender_borrower_state__and_portfolio(client, w3, open_loan, lender, borrower):  # noqa: F811
    loan_id, token_id = open_loan
    wait_indexed(w3, client)

    mine = client.get("/loans", params={"lender": lender.address, "state": "open"}).json()
    theirs = client.get("/loans", params={"borrower": borrower.address}).json()
    none = client.get("/loans", params={"lender": lender.address, "state": "repaid"}).json()
    portfolio = client.get(f"/lenders/{lender.address}/portfolio").json()

    loan = next(item for item in mine["loans"] if item["loan_id"] == str(loan_id))
    assert (loan["token_id"], loan["state"], loan["principal"], loan["repayment"], loan["borrower"]) == (
        str(token_id), "open", str(PRINCIPAL), str(REPAYMENT), borrower.address)
    assert str(loan_id) in [item["loan_id"] for item in theirs["loans"]]
    assert str(loan_id) not in [item["loan_id"] for item in none["loans"]]
    assert portfolio["loans"]["open"] >= 1
    assert int(portfolio["principal_outstanding"]) >= PRINCIPAL and int(portfolio["repayment_due"]) >= REPAYMENT


def test_portfolio__loan_repaid__moves_from_open_to_repaid(client, w3, open_loan, deployed_lending,  # noqa: F811
                                                           lender, borrower):
    loan_id, _ = open_loan
    wait_indexed(w3, client)
    before = client.get(f"/lenders/{lender.address}/portfolio").json()
    deployed_lending.repay(loan_id, sender=borrower)
    wait_indexed(w3, client)

    after = client.get(f"/lenders/{lender.address}/portfolio").json()
    repaid = client.get("/loans", params={"lender": lender.address, "state": "repaid"}).json()

    assert after["loans"]["open"] == before["loans"]["open"] - 1
    assert after["loans"]["repaid"] == before["loans"]["repaid"] + 1
    assert int(before["principal_outstanding"]) - int(after["principal_outstanding"]) == PRINCIPAL
    assert str(loan_id) in [item["loan_id"] for item in repaid["loans"]]


def test_loans__bad_filter__422(client):
    assert client.get("/loans", params={"lender": "0x123"}).status_code == 422
    assert client.get("/loans", params={"state": "unknown"}).status_code == 422
    assert client.get("/loans", params={"cursor": encode_cursor(1, 1)}).status_code == 422


# --------------------------------------------------------------- points


def test_ledger__issued_accepted_redeemed__with_totals(client, w3, deployed_points, issue_points, customer,
                                                       merchant, other_merchant):
    issue_points(customer, 30 * USD, issuer=merchant)
    deployed_points.transfer(other_merchant, 12 * USD * SCALE, sender=customer)
    deployed_points.redeem(12 * USD * SCALE, sender=other_merchant)
    wait_indexed(w3, client)

    issuer = client.get(f"/merchants/{merchant.address}/ledger").json()
    shop = client.get(f"/merchants/{other_merchant.address}/ledger").json()

    assert [(e["kind"], e["points"], e["stablecoin"], e["counterparty"]) for e in issuer["entries"]][-1] == (
        "issued", str(30 * USD * SCALE), str(30 * USD), customer.address)
    assert [(e["kind"], e["points"], e["counterparty"]) for e in shop["entries"]][-2:] == [
        ("accepted", str(12 * USD * SCALE), customer.address), ("redeemed", str(12 * USD * SCALE), None)]
    totals = shop["totals"]
    assert (totals["name"], totals["registered"], totals["points_accepted"], totals["stablecoin_paid_out"]) == (
        "Cellar Shop", True, str(12 * USD * SCALE), str(12 * USD))
    assert int(totals["net_position"]) == int(totals["stablecoin_paid_in"]) - int(totals["stablecoin_paid_out"])


def test_ledger__paginated__same_entries(client, w3, issue_points, customer, merchant):
    for amount in (1, 2, 3):
        issue_points(customer, amount * USD, issuer=merchant)
    wait_indexed(w3, client)
    path = f"/merchants/{merchant.address}/ledger"

    whole = client.get(path, params={"limit": 200}).json()["entries"]
    items, _ = pages(client, path, "entries", limit=2)

    assert items == whole and len(whole) >= 3


def test_ledger__never_a_merchant__no_totals_no_entries(client, w3, attacker):
    wait_indexed(w3, client)
    body = client.get(f"/merchants/{attacker.address}/ledger").json()
    assert body["totals"] is None and body["entries"] == []


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=st.lists(st.tuples(st.sampled_from(["issue", "spend", "redeem"]), st.sampled_from([0, 1]),
                                  st.integers(min_value=1, max_value=20)), min_size=1, max_size=6),
       cut=st.floats(min_value=0, max_value=1))
def test_statement__random_histories__index_equals_chain_scan(
        client, w3, manifest, deployed_points, points_merchants, customer, chain, actions, cut):
    merchants = points_merchants
    first = chain.blocks.head.number + 1
    for action, which, amount in actions:
        shop = merchants[which]
        balance = deployed_points.balanceOf(shop)
        if action == "issue":
            deployed_points.issue(customer, amount * USD, sender=shop)
        elif action == "spend" and deployed_points.balanceOf(customer) >= amount * SCALE:
            deployed_points.transfer(shop, amount * SCALE, sender=customer)
        elif action == "redeem" and balance > 0:
            deployed_points.redeem(balance, sender=shop)
    chain.mine(1)  # the range has a block even when every action was skipped
    last = chain.blocks.head.number
    start = first + int(cut * (last - first))
    wait_indexed(w3, client)
    record = manifest.contract("PointsToken")
    expected = chain_statement(w3, record["address"], record["abi"], start, last)
    reader = IndexReader(client.app.state.index.db)

    from_index = reader.answer(chain.chain_id, lambda tx, _: ledgers.statement(
        tx, chain.chain_id, record["address"], start, last,
        lambda block: client.app.state.chain.points_reserve(block))).value
    answered = client.get("/points/settlement", params={"from_block": start, "to_block": last}).json()

    assert from_index == expected
    assert answered == expected.to_json() | {
        "merchants": [{k: str(v) if isinstance(v, int) else v for k, v in line.items()}
                      for line in expected.to_json()["merchants"]],
        "totals": {k: str(v) for k, v in expected.to_json()["totals"].items()},
        "reserve": {k: str(v) for k, v in expected.to_json()["reserve"].items()}}


# ------------------------------------------------------------------ page


def test_verify_page__history_from_the_index__newest_first_and_escaped(
        client, w3, cert, registry, held_token, lot, holder, custodian):
    registry.attest_storage(lot.lot_id, keccak(text="r"), "ipfs://<script>alert(1)</script>", sender=custodian)
    cert.flag(held_token, b"\x06" * 32, sender=holder)

    page = client.get(f"/verify/{held_token}").text

    assert "<h2>The bottle&#39;s story</h2>" in page
    assert page.index(f"Reported lost or stolen by {short(holder.address)}") < page.index("Storage checked by")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---------------------------------------------------------------- abuse


def test_me_certificates__read_only_api_token__may_read(make_client, w3, cert, create_lot, winery):
    client = make_client()
    token = client.post("/auth/api-tokens", json={"name": "reader", "scope": "read"}).json()["token"]
    lot = create_lot(2)
    cert.transferFrom(winery, client.account["address"], lot.token(1), sender=winery)
    wait_indexed(w3, client)

    body = client.get("/me/certificates", headers={"Authorization": f"Bearer {token}"}).json()

    assert [c["token_id"] for c in body["certificates"]] == [str(lot.token(1))]


def test_history__token_id_beyond_any_lot__404_without_touching_the_database(client):
    response = client.get(f"/certificates/{2**255}/history")
    assert response.status_code == 404 and "never issued" in response.json()["detail"]


def test_lots__more_than_fifty_a_page__422(client):
    response = client.get("/lots", params={"limit": 51})
    assert response.status_code == 422 and "limit" in response.json()["detail"]


def test_settlement__index_not_there__503_index_behind_at_once(make_client, tmp_path, points_merchants):
    stale = make_client(index_db=tmp_path / "empty-index.sqlite", index_read_wait_seconds=10)

    started = time.monotonic()
    response = stale.get("/points/settlement")

    assert response.status_code == 503 and response.json()["error"] == "index_behind"
    assert "not yet to_block" in response.json()["detail"] and time.monotonic() - started < 3


def test_ledger__points_sent_after_removal__received_not_accepted_and_not_in_totals(
        client, w3, deployed_points, issue_points, customer, merchant, other_merchant, admin):
    issue_points(customer, 10 * USD, issuer=merchant)
    deployed_points.transfer(other_merchant, 1 * USD * SCALE, sender=customer)
    deployed_points.remove_merchant(other_merchant, sender=admin)
    deployed_points.transfer(other_merchant, 2 * USD * SCALE, sender=customer)
    wait_indexed(w3, client)

    body = client.get(f"/merchants/{other_merchant.address}/ledger").json()

    assert [(e["kind"], e["points"]) for e in body["entries"]][-2:] == [
        ("accepted", str(1 * USD * SCALE)), ("received", str(2 * USD * SCALE))]
    assert body["totals"]["registered"] is False
    assert body["totals"]["points_accepted"] == str(1 * USD * SCALE)


def test_history__transfer_reorganised_away__gone_from_history_and_holdings(
        client, w3, chain, cert, create_lot, winery, holder, recipient):
    lot = create_lot(3)
    token_id = lot.token(1)
    cert.transferFrom(winery, holder, token_id, sender=winery)
    snapshot = chain.snapshot()
    cert.transferFrom(holder, recipient, token_id, sender=holder)
    wait_indexed(w3, client)
    assert client.get(f"/certificates/{token_id}/history").json()["history"][-1]["args"]["receiver"] == (
        recipient.address)

    chain.restore(snapshot)
    chain.mine(2)  # another branch, longer than the one abandoned
    wait_indexed(w3, client)

    history = client.get(f"/certificates/{token_id}/history").json()["history"]
    held = client.get(f"/accounts/{recipient.address}/certificates", params={"lot": lot.lot_id}).json()
    assert history[-1]["summary"] == f"Moved from {short(winery.address)} to {short(holder.address)}"
    assert held["certificates"] == []
