"""The merchant's endpoints (``GET /merchant``, ``POST /merchant/issuances``,
``POST /merchant/redemptions``, ``GET /merchant/statements``) on the test
deployment: a custodial account registered as a merchant on chain issues and
redeems from its own address; every refusal is checked to have sent nothing."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pypdfium2
import pytest
from api_fixtures import SCALE, USD, bearer, sign_up, wait_indexed
from web3.logs import DISCARD

from api import merchant as merchant_service
from api.errors import Conflict, InvalidRequest
from api.merchant import ActionLog, money, parse_money

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
CAP = 100 * USD * SCALE


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


@pytest.fixture
def shop(client, deployed_points, mint_stablecoin, admin):
    """A custodial account registered as the merchant "Corner Shop" (cap 100 points), with ETH for
    its gas and 50 USD: (client signed in as it, its address)."""
    address = client.account["address"]
    deployed_points.register_merchant(address, "Corner Shop", CAP, sender=admin)
    admin.transfer(address, ETH)
    mint_stablecoin(address, 50 * USD)
    return client, address


@pytest.fixture
def patron(client):
    """Another custodial account, the customer: its sign-up answer (name in ``identifier``)."""
    name = f"patron-{uuid.uuid4().hex[:8]}"
    return {**sign_up(client, name), "identifier": name}


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address)


# ------------------------------------------------------------------ money


@pytest.mark.parametrize(("units", "text"), [(12_500_000, "12.50"), (1, "0.000001"), (0, "0.00"),
                                             (30 * USD, "30.00"), (-12 * USD, "-12.00"), (1_234_567, "1.234567")])
def test_money__two_decimals_at_least_more_when_needed(units, text):
    assert money(units, 6) == text


@pytest.mark.parametrize(("text", "units"), [("12.50", 12_500_000), ("12,5", 12_500_000), (" 3 ", 3 * USD),
                                             ("0.000001", 1)])
def test_parse_money__as_a_person_types_it(text, units):
    assert parse_money(text, 6, "USDC") == units


@pytest.mark.parametrize(("text", "says"), [("0", "more than 0"), ("-5", "not an amount"), ("1e3", "not an amount"),
                                            ("12.5000001", "6 decimals"), ("", "not an amount"), ("1.2.3", "not"),
                                            ("NaN", "not an amount"), (".5", "not an amount")])
def test_parse_money__not_money__refused_in_words(text, says):
    with pytest.raises(InvalidRequest) as refused:
        parse_money(text, 6, "USDC")

    assert says in refused.value.detail and refused.value.detail.startswith("amount: ")


def test_action_log__same_key_other_request__conflict_and_the_first_answer_kept():
    log = ActionLog()
    calls: list[int] = []

    assert log.run("a", "k", ("x",), lambda: calls.append(1) or "first") == "first"
    assert log.run("a", "k", ("x",), lambda: calls.append(2) or "second") == "first"
    assert log.run("b", "k", ("x",), lambda: "other account") == "other account"
    with pytest.raises(Conflict):
        log.run("a", "k", ("y",), lambda: "changed")
    assert calls == [1]


# ------------------------------------------------------------------ roles


#: Every merchant route with a request it would otherwise accept.
ROUTES = [("GET", "/merchant", None), ("POST", "/merchant/issuances", {"customer": "0x" + "1" * 40, "amount": "1"}),
          ("POST", "/merchant/redemptions", {"amount": "1"}),
          ("GET", "/merchant/statements?from_date=2026-01-01&to_date=2026-01-02", None)]


def test_merchant_routes__without_credentials__401(make_client):
    anonymous = make_client(auth=False)

    for method, path, body in ROUTES:
        response = anonymous.request(method, path, json=body, headers=key())
        assert response.status_code == 401 and response.json()["error"] == "unauthorized", path


def test_merchant_routes__an_account_not_a_merchant__403_in_words_nothing_sent(client, w3, admin):
    address = client.account["address"]
    admin.transfer(address, ETH)

    for method, path, body in ROUTES:
        response = client.request(method, path, json=body, headers=key())
        assert response.status_code == 403 and response.json()["error"] == "forbidden", path
        assert "does not hold the merchant role" in response.json()["detail"]
    assert nonce(w3, address) == 0


def test_merchant__removed_on_chain__refused_at_the_next_request(shop, deployed_points, admin, w3, patron):
    client, address = shop
    deployed_points.remove_merchant(address, sender=admin)

    response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"},
                           headers=key())

    assert response.status_code == 403 and nonce(w3, address) == 0


def test_merchant__read_only_api_token__cannot_issue(shop, w3, patron):
    client, address = shop
    token = client.post("/auth/api-tokens", json={"name": "books", "scope": "read"}).json()["token"]

    response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"},
                           headers={**bearer(token), **key()})

    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert nonce(w3, address) == 0


# ------------------------------------------------------------- the state


def test_my_merchant__cap_balances_and_reserve_as_money(shop, deployed_points):
    client, address = shop

    body = client.get("/merchant").json()

    assert body["address"] == address and body["name"] == "Corner Shop"
    assert body["balance"] == "50.00" and body["points_balance"] == "0.00"
    assert body["cap"] == "100.00" and body["room"] == "100.00" and body["issued"] == "0.00"
    assert body["reserve"] == money(deployed_points.reserve(), 6) and body["currency"] == "tUSD"


# ---------------------------------------------------------------- issuing


def test_issue__to_an_account_name__stablecoin_into_the_reserve_points_to_the_customer(
        shop, patron, deployed_points, deployed_stablecoin, w3):
    client, address = shop
    reserve = deployed_points.reserve()

    response = client.post("/merchant/issuances", json={"customer": patron["identifier"], "amount": "12.50"},
                           headers=key())

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["customer"] == patron["address"] and body["amount"] == body["points"] == "12.50"
    assert deployed_points.balanceOf(patron["address"]) == 12_500_000 * SCALE
    assert deployed_stablecoin.balanceOf(address) == 37_500_000
    assert deployed_points.reserve() == reserve + 12_500_000
    receipt = w3.eth.get_transaction_receipt(body["tx_hash"])
    assert receipt["from"] == address and receipt["blockNumber"] == body["block_number"]
    points = w3.eth.contract(deployed_points.address, abi=deployed_points.contract_type.model_dump(mode="json")["abi"])
    event = points.events.PointsIssued().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert event["merchant"] == address and event["customer"] == patron["address"]
    assert event["stablecoin_paid_in"] == 12_500_000
    assert client.get("/merchant").json()["room"] == "87.50"


def test_issue__to_a_0x_address_with_allowance_already__no_second_approve(shop, patron, deployed_points,
                                                                          deployed_stablecoin, w3):
    client, address = shop
    first = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"}, headers=key())
    sent = nonce(w3, address)
    client.post("/merchant/issuances", json={"customer": patron["address"].lower(), "amount": "1"}, headers=key())

    assert first.json()["approve_tx_hash"] is not None
    assert deployed_points.balanceOf(patron["address"]) == 2 * USD * SCALE
    assert nonce(w3, address) in (sent + 1, sent + 2)  # exact approve of 1 used up: a second approve is due


def test_issue__same_idempotency_key_twice__one_issuance(shop, patron, deployed_points, w3):
    client, address = shop
    headers = key()
    body = {"customer": patron["address"], "amount": "2"}

    first = client.post("/merchant/issuances", json=body, headers=headers)
    second = client.post("/merchant/issuances", json=body, headers=headers)
    other = client.post("/merchant/issuances", json={**body, "amount": "3"}, headers=headers)

    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert other.status_code == 409 and other.json()["error"] == "conflict"
    assert deployed_points.balanceOf(patron["address"]) == 2 * USD * SCALE


def test_issue__two_at_once__each_approves_and_issues_its_own_amount(shop, patron, deployed_points):
    client, _ = shop
    user = client.app.state.users.authenticate(client.headers["Authorization"].removeprefix("Bearer "))
    errors: list[BaseException] = []

    def issue(units: int) -> None:
        try:
            merchant_service.issue(client.app.state.chain, client.app.state.business, user, patron["address"], units)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=issue, args=(units,)) for units in (3 * USD, 4 * USD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and deployed_points.balanceOf(patron["address"]) == 7 * USD * SCALE


def test_issue__without_idempotency_key__422_nothing_sent(shop, patron, w3):
    client, address = shop

    response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"})

    assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"]
    assert nonce(w3, address) == 0


@pytest.mark.parametrize(("customer", "amount", "says"), [
    ("patron", "50.01", "more than your tUSD balance of 50.00"),
    ("patron", "0", "more than 0"),
    ("patron", "-1", "not an amount of money"),
    ("patron", "1.0000001", "6 decimals"),
    ("nobody-by-that-name", "1", "no account has this name"),
    ("0x1234", "1", "not an account number"),
    ("0x" + "0" * 40, "1", "zero address"),
])
def test_issue__bad_input__422_in_words_nothing_sent(shop, patron, deployed_points, w3, customer, amount, says):
    client, address = shop
    who = patron["identifier"] if customer == "patron" else customer

    response = client.post("/merchant/issuances", json={"customer": who, "amount": amount}, headers=key())

    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]
    assert nonce(w3, address) == 0 and deployed_points.balanceOf(patron["address"]) == 0


def test_issue__above_the_room_under_the_cap__422_says_how_much_is_left(shop, patron, mint_stablecoin, w3):
    client, address = shop
    mint_stablecoin(address, 100 * USD)

    response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "100.01"},
                           headers=key())

    assert response.status_code == 422 and "above your cap: you may issue 100.00 more" in response.json()["detail"]
    assert nonce(w3, address) == 0


def test_issue__while_paused__409_with_the_contracts_reason(shop, patron, deployed_points, admin, w3):
    client, address = shop
    deployed_stablecoin_allowance = nonce(w3, address)
    deployed_points.pause(sender=admin)
    try:
        response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"},
                               headers=key())
    finally:
        deployed_points.unpause(sender=admin)

    assert response.status_code == 409 and response.json()["error"] == "would_revert"
    assert deployed_points.balanceOf(patron["address"]) == 0
    assert nonce(w3, address) <= deployed_stablecoin_allowance + 1  # at most the approve, never the issue


def test_issue__an_address_without_eth__409_gas_unfunded(client, deployed_points, mint_stablecoin, admin, patron, w3):
    address = client.account["address"]
    deployed_points.register_merchant(address, "Dry Shop", CAP, sender=admin)
    mint_stablecoin(address, 5 * USD)

    response = client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "1"},
                           headers=key())

    assert response.status_code == 409 and response.json()["error"] == "gas_unfunded"
    assert address in response.json()["detail"] and nonce(w3, address) == 0


def test_issue__trying_names__limited_per_account_so_accounts_cannot_be_listed(shop, w3):
    client, address = shop
    answers = [client.post("/merchant/issuances", json={"customer": f"guess-{i}", "amount": "1"},
                           headers=key()).status_code for i in range(21)]

    assert answers[:20] == [422] * 20 and answers[20] == 429
    assert nonce(w3, address) == 0


# ---------------------------------------------------------------- redeeming


def test_redeem__points_accepted__burnt_and_paid_out_of_the_reserve(shop, deployed_points, deployed_stablecoin,
                                                                    issue_points, customer):
    client, address = shop
    issue_points(customer, 20 * USD)
    deployed_points.transfer(address, 8 * USD * SCALE, sender=customer)
    reserve = deployed_points.reserve()

    response = client.post("/merchant/redemptions", json={"amount": "5.25"}, headers=key())

    assert response.status_code == 201, response.text
    assert response.json()["amount"] == response.json()["points"] == "5.25"
    assert deployed_points.balanceOf(address) == 2_750_000 * SCALE
    assert deployed_stablecoin.balanceOf(address) == 50 * USD + 5_250_000
    assert deployed_points.reserve() == reserve - 5_250_000


def test_redeem__bad_input__422_in_words_nothing_sent(shop, w3):
    client, address = shop

    for amount, says in (("0.01", "more than the 0.00 points you hold"), ("0", "more than 0"),
                         ("abc", "not an amount of money")):
        response = client.post("/merchant/redemptions", json={"amount": amount}, headers=key())
        assert response.status_code == 422 and says in response.json()["detail"], amount
    assert nonce(w3, address) == 0


# ---------------------------------------------------------------- statements


def today(w3) -> date:
    return datetime.fromtimestamp(w3.eth.get_block("latest")["timestamp"], UTC).date()


def test_statement__today__as_money_and_reconciled_with_the_chain(shop, patron, deployed_points, w3):
    client, address = shop
    before = deployed_points.reserve()
    client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "7.50"}, headers=key())
    wait_indexed(w3, client)
    day = today(w3).isoformat()

    body = client.get("/merchant/statements", params={"from_date": day, "to_date": day}).json()

    mine = next(line for line in body["merchants"] if line["merchant"] == address)
    assert mine == {"merchant": address, "name": "Corner Shop", "points_issued": "7.50", "points_redeemed": "0.00",
                    "paid_in": "7.50", "paid_out": "0.00", "net": "7.50"}
    assert body["reconciled"] is True and body["to_block"] == w3.eth.block_number
    movement = parse_money(body["reserve_movement"], 6, "USDC") if body["reserve_movement"] != "0.00" else 0
    assert sum(parse_money(m["net"], 6, "USDC") if not m["net"].startswith("-") else
               -parse_money(m["net"][1:], 6, "USDC") for m in body["merchants"]) == movement
    assert parse_money(body["reserve_after"], 6, "USDC") == deployed_points.reserve()
    assert deployed_points.reserve() - before == 7_500_000


def test_statement__csv_and_pdf__the_same_figures(shop, patron, w3):
    client, address = shop
    client.post("/merchant/issuances", json={"customer": patron["address"], "amount": "3"}, headers=key())
    wait_indexed(w3, client)
    day = today(w3).isoformat()

    as_csv = client.get("/merchant/statements", params={"from_date": day, "to_date": day, "format": "csv"})
    as_pdf = client.get("/merchant/statements", params={"from_date": day, "to_date": day, "format": "pdf"})

    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == f'attachment; filename="points-statement-{day}-{day}.csv"'
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {"merchant": address, "name": "Corner Shop", "points_issued": "3.00", "points_redeemed": "0.00",
            "paid_in": "3.00", "paid_out": "0.00", "net": "3.00"} in rows
    assert rows[-1]["merchant"] == "TOTAL"
    assert as_pdf.headers["content-type"] == "application/pdf"
    text = pypdfium2.PdfDocument(as_pdf.content)[0].get_textpage().get_text_range()
    assert "Points clearing statement" in text and "Corner Shop" in text and "Reconciled" in text
    assert rows[-1]["net"] in text


@pytest.mark.parametrize(("first", "last", "says"), [
    (2, 1, "is before from_date"), (400, 401, "no block of the points token is stamped")])
def test_statement__inverted_or_empty_days__422_in_words(shop, w3, first, last, says):
    client, _ = shop
    base = today(w3)

    response = client.get("/merchant/statements", params={"from_date": (base + timedelta(days=first)).isoformat(),
                                                          "to_date": (base + timedelta(days=last)).isoformat()})

    assert response.status_code == 422 and says in response.json()["detail"]


def test_statement__the_widest_days__from_the_deploy_block_to_the_latest(shop, w3, manifest):
    client, _ = shop

    body = client.get("/merchant/statements", params={"from_date": "0001-01-01", "to_date": "9999-12-31"}).json()

    assert body["from_block"] == manifest.contract("PointsToken")["deploy_block"]
    assert body["to_block"] == w3.eth.block_number and body["reconciled"] is True


def test_statement__malformed_query__422(shop):
    client, _ = shop

    for params in ({"from_date": "2026-13-01", "to_date": "2026-12-01"}, {"from_date": "2026-12-01"},
                   {"from_date": "2026-12-01", "to_date": "2026-12-01", "format": "xls"}):
        assert client.get("/merchant/statements", params=params).status_code == 422, params
