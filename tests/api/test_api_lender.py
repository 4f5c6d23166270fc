"""The lender's actions for a custodial account (``/me/offers``, ``/me/lending-allowance``,
``/me/loans/{loan_id}/foreclose``) on the test deployment (anvil): offers the service signs
with the account's key, accepted on chain by a holder, cancelled and foreclosed from the
account's own address; every refusal checked to have changed nothing."""

from __future__ import annotations

import pytest
from api_fixtures import USD, bearer, sign_up

from amphora import eip712
from api.lender import YEAR, repayment_for_rate

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

ETH = 10**18
DAY = 24 * 3600
PRINCIPAL = 1_000 * USD


@pytest.fixture(scope="session")
def deployed_lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def business_lender(client, admin, mint_stablecoin):
    """A new custodial account with gas and 5,000 of the stablecoin: (headers, address)."""
    account = sign_up(client)
    admin.transfer(account["address"], ETH)
    mint_stablecoin(account["address"], 5 * PRINCIPAL)
    return bearer(account["token"]), account["address"]


@pytest.fixture
def approved_lender(client, business_lender, deployed_stablecoin, deployed_lending):
    """The lender with the lending contract allowed to take 5,000."""
    headers, address = business_lender
    response = client.post("/me/lending-allowance", json={"amount": str(5 * PRINCIPAL)}, headers=headers)
    assert response.status_code == 200, response.text
    assert deployed_stablecoin.allowance(address, deployed_lending) == 5 * PRINCIPAL
    return headers, address


def terms(lot, chain, **changes) -> dict:
    body = {"lot_id": lot.lot_id, "token_id": lot.token(1), "principal": PRINCIPAL, "repayment": 1_050 * USD,
            "duration": 30 * DAY, "grace_period": 7 * DAY, "expiry": chain.pending_timestamp + DAY}
    return {**body, **changes}


def board(client, token_id: int) -> list[dict]:
    response = client.get("/offers", params={"token_id": token_id})
    assert response.status_code == 200, response.text
    return response.json()["offers"]


def test_repayment_for_rate__a_year_at_five_percent__adds_five_percent_rounded_up():
    assert repayment_for_rate(1_000_000, 500, YEAR) == 1_050_000
    assert repayment_for_rate(1_000_000, 500, DAY) == 1_000_137  # 136.98.. rounded up
    assert repayment_for_rate(1_000_000, 0, YEAR) == 1_000_000


# ------------------------------------------------------------------ offers


def test_offer__signed_by_the_service__on_the_board_and_accepted_on_chain(
        client, approved_lender, create_lot, cert, winery, holder, deployed_lending, deployed_stablecoin, chain,
        chain_id):
    headers, address = approved_lender
    lot = create_lot(2)
    cert.transferFrom(winery, holder, lot.token(1), sender=winery)

    response = client.post("/me/offers", json=terms(lot, chain), headers=headers)

    assert response.status_code == 201, response.text
    posted = response.json()
    offer = posted["offer"]
    assert offer["lender"] == address and offer["currency"] == deployed_stablecoin.address
    assert [o["offer_hash"] for o in board(client, lot.token(1))] == [posted["offer_hash"]]
    message = eip712.loan_offer_message(**{"lender": address, "currency": offer["currency"],
                                           **{k: int(offer[k]) for k in ("lot_id", "token_id", "principal",
                                                                         "repayment", "duration", "grace_period",
                                                                         "max_ltv_bps", "expiry", "nonce")}})
    assert bytes(deployed_lending.offer_hash(eip712.loan_offer_args(message))).hex() == posted["offer_hash"][2:]
    deployed_lending.accept_offer(eip712.loan_offer_args(message), bytes.fromhex(posted["signature"][2:]),
                                  lot.token(1), sender=holder)
    assert deployed_stablecoin.balanceOf(holder) >= PRINCIPAL and cert.ownerOf(lot.token(1)) == holder.address
    assert deployed_lending.nonce_used(address, int(offer["nonce"]))
    mine = client.get("/me/offers", headers=headers).json()
    assert [o["spent"] for o in mine["offers"]] == [True] and int(mine["balance"]) == 4 * PRINCIPAL


def test_offer__yearly_rate__turned_into_the_repayment(client, approved_lender, create_lot, chain):
    headers, _ = approved_lender
    lot = create_lot(1)
    body = terms(lot, chain, repayment=None, yearly_rate_bps=1_200, duration=YEAR // 12, token_id=0)

    response = client.post("/me/offers", json=body, headers=headers)

    assert response.status_code == 201, response.text
    assert int(response.json()["offer"]["repayment"]) == PRINCIPAL + PRINCIPAL // 100
    assert int(response.json()["offer"]["token_id"]) == 0


def test_offer__same_terms_and_nonce_twice__one_offer(client, approved_lender, create_lot, chain):
    headers, _ = approved_lender
    lot = create_lot(1)
    body = terms(lot, chain, nonce=77)

    first = client.post("/me/offers", json=body, headers=headers)
    second = client.post("/me/offers", json=body, headers=headers)
    other = client.post("/me/offers", json={**body, "principal": PRINCIPAL // 2}, headers=headers)

    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert other.status_code == 409 and "nonce 77" in other.json()["detail"]
    assert len(client.get("/me/offers", headers=headers).json()["offers"]) == 1


def test_offer__without_the_allowance__409_in_words_not_on_the_board(client, business_lender, create_lot, chain):
    headers, address = business_lender
    lot = create_lot(1)

    response = client.post("/me/offers", json=terms(lot, chain), headers=headers)

    assert response.status_code == 409 and response.json()["error"] == "offer_unusable"
    assert "approved 0 units" in response.json()["detail"]
    assert board(client, lot.token(1)) == []


@pytest.mark.parametrize(("changes", "words"), [
    ({"yearly_rate_bps": 500}, "exactly one"),
    ({"repayment": None}, "exactly one"),
    ({"repayment": PRINCIPAL - 1}, "at least a non-zero principal"),
    ({"token_id": 5 << 32 | 1}, "token_id: not a bottle of this lot"),
    ({"lot_id": 0, "token_id": 0}, "lot_id: not a lot number"),
    ({"lot_id": 999_999, "token_id": 0}, "lot_id: no such lot"),
    ({"max_ltv_bps": 10_001}, "max_ltv_bps"),
])
def test_offer__bad_terms__422_in_words_nothing_posted(client, approved_lender, create_lot, chain, changes, words):
    headers, _ = approved_lender
    lot = create_lot(1)

    response = client.post("/me/offers", json=terms(lot, chain, **changes), headers=headers)

    assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert client.get("/me/offers", headers=headers).json()["offers"] == []


def test_offer__naming_another_lender__422_the_service_signs_only_for_the_account(
        client, approved_lender, create_lot, chain, lender):
    headers, _ = approved_lender
    lot = create_lot(1)

    response = client.post("/me/offers", json={**terms(lot, chain), "lender": lender.address}, headers=headers)

    assert response.status_code == 422
    assert client.get("/me/offers", headers=headers).json()["offers"] == []


def test_lender_routes__anonymous__401(make_client):
    anonymous = make_client(auth=False)

    answers = [anonymous.get("/me/offers"), anonymous.post("/me/offers", json={}),
               anonymous.post("/me/offers/1/cancel"), anonymous.post("/me/lending-allowance", json={"amount": 1}),
               anonymous.post("/me/loans/1/foreclose")]

    assert [a.status_code for a in answers] == [401] * 5


def test_lender_routes__read_only_token__403_nothing_sent(client, approved_lender, deployed_stablecoin,
                                                          deployed_lending):
    headers, address = approved_lender
    token = client.post("/auth/api-tokens", json={"name": "books", "scope": "read"}, headers=headers)
    assert token.status_code == 201, token.text
    reader = bearer(token.json()["token"])

    allowance = client.post("/me/lending-allowance", json={"amount": "0"}, headers=reader)
    cancel = client.post("/me/offers/5/cancel", headers=reader)

    assert allowance.status_code == cancel.status_code == 403
    assert client.get("/me/offers", headers=reader).status_code == 200
    assert deployed_stablecoin.allowance(address, deployed_lending) == 5 * PRINCIPAL
    assert not deployed_lending.nonce_used(address, 5)


# ------------------------------------------------------------------ cancel


def test_cancel__my_offer__nonce_spent_and_off_the_board(client, approved_lender, create_lot, chain,
                                                         deployed_lending):
    headers, address = approved_lender
    lot = create_lot(1)
    offer = client.post("/me/offers", json=terms(lot, chain, nonce=9), headers=headers).json()
    assert len(board(client, lot.token(1))) == 1

    response = client.post("/me/offers/9/cancel", headers=headers)
    again = client.post("/me/offers/9/cancel", headers=headers)

    assert response.status_code == 200 and response.json()["block_number"] is not None
    assert deployed_lending.nonce_used(address, 9)
    assert board(client, lot.token(1)) == [] and offer["offer_hash"]
    assert again.status_code == 409 and "already used by a loan or cancelled" in again.json()["detail"]


def test_cancel__without_gas__409_gas_unfunded_nothing_sent(client, mint_stablecoin, deployed_lending):
    account = sign_up(client)

    response = client.post("/me/offers/3/cancel", headers=bearer(account["token"]))

    assert response.status_code == 409 and response.json()["error"] == "gas_unfunded"
    assert account["address"] in response.json()["detail"]
    assert not deployed_lending.nonce_used(account["address"], 3)


@pytest.mark.parametrize("nonce", ["-1", "x", str(2**256)])
def test_cancel__not_a_nonce__422(client, approved_lender, nonce):
    headers, _ = approved_lender

    assert client.post(f"/me/offers/{nonce}/cancel", headers=headers).status_code == 422


def test_allowance__not_an_amount__422_nothing_sent(client, approved_lender, deployed_stablecoin, deployed_lending):
    headers, address = approved_lender

    answers = [client.post("/me/lending-allowance", json=body, headers=headers) for body in
               ({"amount": "-1"}, {"amount": "ten"}, {"amount": 1, "spender": address}, {})]

    assert [a.status_code for a in answers] == [422] * 4
    assert deployed_stablecoin.allowance(address, deployed_lending) == 5 * PRINCIPAL


# --------------------------------------------------------------- foreclose


@pytest.fixture
def open_loan(client, approved_lender, create_lot, cert, winery, holder, deployed_lending, chain):
    """The lender's loan of 1,000 on a holder's bottle: (headers, address, loan_id, token_id)."""
    headers, address = approved_lender
    lot = create_lot(1)
    cert.transferFrom(winery, holder, lot.token(1), sender=winery)
    posted = client.post("/me/offers", json=terms(lot, chain), headers=headers).json()
    offer = posted["offer"]
    message = eip712.loan_offer_message(address, offer["currency"], lot.lot_id, lot.token(1), PRINCIPAL,
                                        1_050 * USD, 30 * DAY, 7 * DAY, 0, int(offer["expiry"]),
                                        int(offer["nonce"]))
    deployed_lending.accept_offer(eip712.loan_offer_args(message), bytes.fromhex(posted["signature"][2:]),
                                  lot.token(1), sender=holder)
    loan_id = int(deployed_lending.loan_id_of(lot.token(1)))
    return headers, address, loan_id, lot.token(1)


def test_foreclose__grace_period_over__the_bottle_is_the_lenders(client, open_loan, cert, chain):
    headers, address, loan_id, token_id = open_loan
    early = client.post(f"/me/loans/{loan_id}/foreclose", headers=headers)
    assert early.status_code == 409 and "the grace period ends at" in early.json()["detail"]
    assert cert.ownerOf(token_id) != address

    chain.pending_timestamp += 37 * DAY + 1
    chain.mine(1)
    response = client.post(f"/me/loans/{loan_id}/foreclose", headers=headers)

    assert response.status_code == 200, response.text
    assert cert.ownerOf(token_id) == address
    assert client.get(f"/loans/{loan_id}").json()["loan"]["state"] == "foreclosed"
    again = client.post(f"/me/loans/{loan_id}/foreclose", headers=headers)
    assert again.status_code == 409 and "is foreclosed" in again.json()["detail"]


def test_foreclose__someone_elses_loan__403_nothing_sent(client, open_loan, cert, chain, admin, holder):
    _, _, loan_id, token_id = open_loan
    thief = sign_up(client)
    admin.transfer(thief["address"], ETH)
    chain.pending_timestamp += 37 * DAY + 1
    chain.mine(1)

    response = client.post(f"/me/loans/{loan_id}/foreclose", headers=bearer(thief["token"]))

    assert response.status_code == 403 and "only its lender forecloses" in response.json()["detail"]
    assert cert.ownerOf(token_id) == holder.address


def test_foreclose__a_loan_that_never_existed__404(client, approved_lender):
    headers, _ = approved_lender

    response = client.post(f"/me/loans/{1 << 96 | 12345 << 32 | 1}/foreclose", headers=headers)

    assert response.status_code == 404
