"""Loan extensions (``/lender/loans/{id}/extensions``, ``/me/loans/{id}/extensions``) on the test
deployment (anvil): a custodial lender offers more time, the service keeps its signature, the
custodial borrower accepts and the relayer sends ``extend_loan`` with both signatures; the chain's
due date and repayment are asserted. Every refusal is checked to have changed nothing, and each
attacker of the new routes has a test: a replayed acceptance, a withdrawn or replaced proposal
accepted, a third party accepting, a forged lender signature."""

from __future__ import annotations

import pytest
from api_fixtures import PASSWORD, USD, bearer, outbox, sign_up, wait_for_status

from amphora import eip712
from api.extensions import ACCEPTED, PENDING, WITHDRAWN, ExtensionBook
from api.schemas import LoanState, LoanView
from storage.db import Database

#: The API fixtures (apps and clients on the test deployment) and a throwaway PostgreSQL.
pytest_plugins = ["api_fixtures", "pg"]

ETH = 10**18
DAY = 24 * 3600
PRINCIPAL = 1_000 * USD
REPAYMENT = 1_050 * USD
GRACE = 7 * DAY


@pytest.fixture(scope="session")
def deployed_lending(project, manifest):
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def loan(client, admin, mint_stablecoin, create_lot, cert, winery):
    """A custodial lender's loan of 1,000 (repay 1,050 in 30 days) to a custodial borrower:
    (lender headers, borrower headers, loan_id, lender address, borrower address)."""
    lender = sign_up(client)
    lender_headers = bearer(lender["token"])
    admin.transfer(lender["address"], ETH)
    mint_stablecoin(lender["address"], PRINCIPAL)
    allowed = client.post("/me/lending-allowance", json={"amount": str(PRINCIPAL)}, headers=lender_headers)
    assert allowed.status_code == 200, allowed.text
    borrower = sign_up(client)
    borrower_headers = bearer(borrower["token"])
    lot = create_lot(1)
    cert.transferFrom(winery, borrower["address"], lot.token(1), sender=winery)
    expiry = client.get(f"/collateral/{lot.token(1)}").json()["block_timestamp"] + DAY
    posted = client.post("/me/offers", headers=lender_headers, json={
        "lot_id": lot.lot_id, "token_id": lot.token(1), "principal": PRINCIPAL, "repayment": REPAYMENT,
        "duration": 30 * DAY, "grace_period": GRACE, "expiry": expiry})
    assert posted.status_code == 201, posted.text
    accepted = client.post("/me/relay/loan-acceptances", headers={**borrower_headers, "Idempotency-Key": "take"},
                           json={"offer": posted.json()["offer"], "lender_signature": posted.json()["signature"],
                                 "token_id": lot.token(1)})
    assert accepted.status_code == 202, accepted.text
    wait_for_status(client, accepted.json()["request_id"], "confirmed")
    loan_id = int(client.get(f"/collateral/{lot.token(1)}").json()["loan"]["loan_id"])
    return lender_headers, borrower_headers, loan_id, lender["address"], borrower["address"]


def on_chain(client, loan_id: int) -> tuple[int, int]:
    """The loan's due date and repayment, as the chain has them now."""
    loan = client.get(f"/loans/{loan_id}").json()["loan"]
    return loan["due_at"], int(loan["repayment"])


def offer(client, loan_id: int, headers: dict, **changes):
    due_at, repayment = on_chain(client, loan_id)
    now = client.get(f"/loans/{loan_id}").json()["block_timestamp"]
    body = {"due_at": due_at + 30 * DAY, "repayment": str(repayment + 30 * USD), "deadline": now + 7 * DAY}
    body = {k: v for k, v in {**body, **changes}.items() if v is not None}
    return client.post(f"/lender/loans/{loan_id}/extensions", json=body, headers=headers)


def accept(client, loan_id: int, n: int, headers: dict, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/me/loans/{loan_id}/extensions/{n}/accept", headers={**headers, **extra})


def proposals(client, loan_id: int, headers: dict) -> list[dict]:
    response = client.get(f"/me/loans/{loan_id}/extensions", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["extensions"]


# ------------------------------------------------------------------ the journey


def test_extension__lender_offers_borrower_accepts__due_date_and_repayment_move_on_chain(
        client, loan, deployed_lending):
    lender, borrower, loan_id, lender_address, borrower_address = loan
    due_at, _ = on_chain(client, loan_id)

    made = offer(client, loan_id, lender)
    seen = proposals(client, loan_id, borrower)
    answer = accept(client, loan_id, 1, borrower)

    assert made.status_code == 201, made.text
    assert (made.json()["n"], made.json()["state"], made.json()["lender"]) == (1, "pending", lender_address)
    assert "lender_signature" not in made.json() and "lender_signature" not in seen[0]
    assert [(p["n"], p["state"], p["due_at"], p["previous_due_at"]) for p in seen] == [
        (1, "pending", due_at + 30 * DAY, due_at)]
    assert answer.status_code == 202, answer.text
    assert answer.json()["extension"]["state"] == "accepted"
    done = wait_for_status(client, answer.json()["relay"]["request_id"], "confirmed")
    assert done["kind"] == "loan-extension"
    assert on_chain(client, loan_id) == (due_at + 30 * DAY, REPAYMENT + 30 * USD)
    chain_loan = deployed_lending.loan(loan_id)
    assert (chain_loan.due_at, chain_loan.repayment, chain_loan.borrower) == (
        due_at + 30 * DAY, REPAYMENT + 30 * USD, borrower_address)
    assert client.get(f"/loans/{loan_id}").json()["loan"]["grace_ends_at"] == due_at + 30 * DAY + GRACE
    assert proposals(client, loan_id, lender)[0]["request_id"] == answer.json()["relay"]["request_id"]


def test_extension__yearly_rate__the_added_time_priced_on_the_principal(client, loan):
    lender, _, loan_id, _, _ = loan
    due_at, _ = on_chain(client, loan_id)

    made = offer(client, loan_id, lender, repayment=None, yearly_rate_bps=1_200, due_at=due_at + 365 * DAY // 12)

    assert made.status_code == 201, made.text
    assert int(made.json()["repayment"]) == REPAYMENT + PRINCIPAL // 100  # 12 % a year for a month of 1,000


def test_extension__same_terms_twice__one_proposal(client, loan):
    lender, borrower, loan_id, _, _ = loan
    due_at, _ = on_chain(client, loan_id)
    deadline = client.get(f"/loans/{loan_id}").json()["block_timestamp"] + DAY

    first = offer(client, loan_id, lender, due_at=due_at + DAY, deadline=deadline)
    second = offer(client, loan_id, lender, due_at=due_at + DAY, deadline=deadline)

    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert len(proposals(client, loan_id, borrower)) == 1


def test_extension__lender_with_its_own_signature__accepted_forged_one_refused(client, loan):
    lender, borrower, loan_id, _, _ = loan
    due_at, repayment = on_chain(client, loan_id)
    deadline = client.get(f"/loans/{loan_id}").json()["block_timestamp"] + DAY
    terms = {"loan_id": loan_id, "due_at": due_at + DAY, "repayment": repayment, "deadline": deadline}
    data = client.get("/relay/typed-data/loan-extension", params=terms).json()
    key = client.post("/me/key-export", json={"password": PASSWORD}, headers=lender).json()["private_key"]
    other = client.post("/me/key-export", json={"password": PASSWORD}, headers=borrower).json()["private_key"]

    forged = offer(client, loan_id, lender, due_at=due_at + DAY, deadline=deadline, repayment=str(repayment),
                   lender_signature="0x" + eip712.sign(data, other).hex())
    own = offer(client, loan_id, lender, due_at=due_at + DAY, deadline=deadline, repayment=str(repayment),
                lender_signature="0x" + eip712.sign(data, key).hex())

    assert forged.status_code == 422 and "lender_signature: not the lender" in forged.json()["detail"]
    assert own.status_code == 201, own.text
    answer = accept(client, loan_id, own.json()["n"], borrower)
    wait_for_status(client, answer.json()["relay"]["request_id"], "confirmed")
    assert on_chain(client, loan_id) == (due_at + DAY, repayment)


# ------------------------------------------------------------------ roles


def test_extension_routes__anonymous__401(make_client):
    anonymous = make_client(auth=False)

    answers = [anonymous.post("/lender/loans/1/extensions", json={"due_at": 1, "repayment": 1, "deadline": 1}),
               anonymous.post("/lender/loans/1/extensions/1/withdraw"), anonymous.get("/me/loans/1/extensions"),
               anonymous.post("/me/loans/1/extensions/1/accept")]

    assert [a.status_code for a in answers] == [401] * 4


def test_extension__offered_by_the_borrower_or_a_stranger__403_nothing_kept(client, loan):
    lender, borrower, loan_id, _, _ = loan
    stranger = bearer(sign_up(client)["token"])

    answers = [offer(client, loan_id, borrower), offer(client, loan_id, stranger)]

    assert [a.status_code for a in answers] == [403, 403]
    assert "only its lender may offer more time" in answers[0].json()["detail"]
    assert proposals(client, loan_id, lender) == []


def test_extension__accepted_by_a_third_party_or_the_lender__403_nothing_sent(client, loan, w3, relayer):
    lender, borrower, loan_id, _, _ = loan
    stranger = bearer(sign_up(client)["token"])
    assert offer(client, loan_id, lender).status_code == 201
    before, terms = outbox(w3, relayer), on_chain(client, loan_id)

    answers = [accept(client, loan_id, 1, stranger), accept(client, loan_id, 1, lender)]
    look = client.get(f"/me/loans/{loan_id}/extensions", headers=stranger)

    assert [a.status_code for a in answers] == [403, 403]
    assert "only its borrower may accept" in answers[0].json()["detail"]
    assert look.status_code == 403
    assert outbox(w3, relayer) == before and on_chain(client, loan_id) == terms
    assert proposals(client, loan_id, borrower)[0]["state"] == "pending"


def test_extension__read_only_token__403_nothing_kept(client, loan):
    lender, _, loan_id, _, _ = loan
    token = client.post("/auth/api-tokens", json={"name": "books", "scope": "read"}, headers=lender)
    assert token.status_code == 201, token.text

    answer = offer(client, loan_id, bearer(token.json()["token"]))

    assert answer.status_code == 403
    assert proposals(client, loan_id, lender) == []


# ------------------------------------------------------------------ bad input


BAD_TERMS = [
    ({"due_at": 0}, "not later than today"),
    ({"due_at": "current"}, "not later than the loan's current due date"),
    ({"repayment": str(REPAYMENT - 1)}, "below the loan's current repayment"),
    ({"deadline": 1}, "deadline: 1 has passed"),
    ({"deadline": 2**200}, "deadline: at most"),
    ({"due_at": 2**200}, "due_at: at most"),
    ({"yearly_rate_bps": 500}, "exactly one"),
    ({"repayment": None}, "exactly one"),
]


def test_extension__bad_terms__422_in_words_nothing_kept(client, loan):
    lender, _, loan_id, _, _ = loan
    current = on_chain(client, loan_id)[0]

    answers = [offer(client, loan_id, lender, **{k: current if v == "current" else v for k, v in changes.items()})
               for changes, _ in BAD_TERMS]

    assert [(a.status_code, words in a.json()["detail"]) for a, (_, words) in zip(answers, BAD_TERMS, strict=True)] \
        == [(422, True)] * len(BAD_TERMS), [a.text for a in answers]
    assert proposals(client, loan_id, lender) == []


@pytest.mark.parametrize(("path", "field"), [
    ("/lender/loans/x/extensions", "loan_id"), (f"/lender/loans/{2**256}/extensions", "loan_id"),
    ("/me/loans/1/extensions/0/accept", "n"), ("/me/loans/1/extensions/x/accept", "n")])
def test_extension__not_a_loan_id_or_number__422(client, path, field):
    lender = bearer(sign_up(client)["token"])
    body = {"due_at": 1, "repayment": 1, "deadline": 1} if path.startswith("/lender") else None

    answer = client.post(path, json=body, headers=lender)

    assert answer.status_code == 422 and field in answer.json()["detail"], answer.text


def test_extension__a_loan_that_never_existed__404(client, loan):
    lender = loan[0]

    assert offer(client, loan[2], lender).status_code == 201  # the real loan takes offers
    answer = client.post(f"/lender/loans/{1 << 96 | 12345 << 32 | 1}/extensions",
                         json={"due_at": 1, "repayment": 1, "deadline": 1}, headers=lender)
    assert answer.status_code == 404


def test_extension__loan_foreclosed__409_nothing_kept(client, loan, chain):
    lender, _, loan_id, _, _ = loan
    chain.pending_timestamp += 37 * DAY + 1
    chain.mine(1)
    assert client.post(f"/me/loans/{loan_id}/foreclose", headers=lender).status_code == 200

    answer = offer(client, loan_id, lender, due_at=on_chain(client, loan_id)[0] + 400 * DAY,
                   deadline=chain.pending_timestamp + DAY)

    assert answer.status_code == 409 and "is foreclosed" in answer.json()["detail"]
    assert proposals(client, loan_id, lender) == []


# ------------------------------------------------------------------ attackers


def test_extension__accepted_twice__relayed_once_the_replay_409(client, loan, w3, relayer):
    lender, borrower, loan_id, _, _ = loan
    due_at, _ = on_chain(client, loan_id)
    assert offer(client, loan_id, lender).status_code == 201
    first = accept(client, loan_id, 1, borrower, key="once")
    wait_for_status(client, first.json()["relay"]["request_id"], "confirmed")
    before = outbox(w3, relayer)

    again = accept(client, loan_id, 1, borrower, key="twice")

    assert again.status_code == 409 and "already accepted" in again.json()["detail"]
    assert outbox(w3, relayer) == before
    assert on_chain(client, loan_id) == (due_at + 30 * DAY, REPAYMENT + 30 * USD)


def test_extension__withdrawn_then_accepted__409_nothing_sent(client, loan, w3, relayer):
    lender, borrower, loan_id, _, _ = loan
    assert offer(client, loan_id, lender).status_code == 201
    terms = on_chain(client, loan_id)

    withdrawn = client.post(f"/lender/loans/{loan_id}/extensions/1/withdraw", headers=lender)
    by_borrower = client.post(f"/lender/loans/{loan_id}/extensions/1/withdraw", headers=borrower)
    before = outbox(w3, relayer)
    answer = accept(client, loan_id, 1, borrower)

    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    assert by_borrower.status_code == 403
    assert answer.status_code == 409 and "withdrawn by the lender" in answer.json()["detail"]
    assert outbox(w3, relayer) == before and on_chain(client, loan_id) == terms
    assert client.post(f"/lender/loans/{loan_id}/extensions/9/withdraw", headers=lender).status_code == 404


def test_extension__accepted__cannot_be_withdrawn(client, loan):
    lender, borrower, loan_id, _, _ = loan
    assert offer(client, loan_id, lender).status_code == 201
    wait_for_status(client, accept(client, loan_id, 1, borrower).json()["relay"]["request_id"], "confirmed")

    answer = client.post(f"/lender/loans/{loan_id}/extensions/1/withdraw", headers=lender)

    assert answer.status_code == 409 and "accepted by the borrower" in answer.json()["detail"]


def test_extension__lender_changes_terms_after_the_borrower_looked__the_terms_shown_or_nothing(client, loan):
    lender, borrower, loan_id, _, _ = loan
    due_at, _ = on_chain(client, loan_id)
    assert offer(client, loan_id, lender, repayment=str(REPAYMENT + 10 * USD)).status_code == 201
    shown = proposals(client, loan_id, borrower)[0]  # the borrower reads proposal 1
    assert offer(client, loan_id, lender, repayment=str(REPAYMENT + 90 * USD)).status_code == 201  # then 2

    stale = accept(client, loan_id, shown["n"], borrower)

    assert stale.status_code == 409 and "withdrawn by the lender" in stale.json()["detail"]
    assert on_chain(client, loan_id) == (due_at, REPAYMENT)
    assert [(p["n"], p["state"]) for p in proposals(client, loan_id, borrower)] == [(2, "pending"), (1, "withdrawn")]
    current = accept(client, loan_id, 2, borrower)
    wait_for_status(client, current.json()["relay"]["request_id"], "confirmed")
    assert on_chain(client, loan_id) == (due_at + 30 * DAY, REPAYMENT + 90 * USD)


def test_extension__accepted_after_its_deadline__409_nothing_sent(client, loan, chain, w3, relayer):
    lender, borrower, loan_id, _, _ = loan
    assert offer(client, loan_id, lender).status_code == 201
    chain.pending_timestamp += 8 * DAY
    chain.mine(1)
    before, terms = outbox(w3, relayer), on_chain(client, loan_id)

    answer = accept(client, loan_id, 1, borrower)

    assert answer.status_code == 409 and "expired" in answer.json()["detail"]
    assert proposals(client, loan_id, borrower)[0]["state"] == "expired"
    assert outbox(w3, relayer) == before and on_chain(client, loan_id) == terms


# ------------------------------------------------------------------ the store


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_store__new_terms_withdraw_the_pending_one_and_a_proposal_is_decided_once(engine, request):
    db = Database(url=request.getfixturevalue("postgres_url")) if engine == "postgresql" else Database()
    book = ExtensionBook(db)
    loan = LoanView(loan_id=1 << 96 | 7, token_id=7, lot_id=0, state=LoanState.open, lender="0x" + "1" * 40,
                    borrower="0x" + "2" * 40, principal=PRINCIPAL, repayment=REPAYMENT, started_at=0,
                    due_at=1_000, grace_period=GRACE, grace_ends_at=1_000 + GRACE, seconds_to_due=0,
                    seconds_to_grace_end=0)
    try:
        first = book.propose(loan, 2_000, REPAYMENT + 1, 5_000, "0xaa")
        again = book.propose(loan, 2_000, REPAYMENT + 1, 5_000, "0xaa")
        second = book.propose(loan, 3_000, 2**127, 5_000, "0xbb")

        assert (first.n, again.n, second.n) == (1, 1, 2) and second.repayment == 2**127
        assert [(p.n, p.state) for p in book.for_loan(int(loan.loan_id))] == [(2, PENDING), (1, WITHDRAWN)]
        assert book.decide(int(loan.loan_id), 2, ACCEPTED) is True
        assert book.decide(int(loan.loan_id), 2, ACCEPTED) is False  # the second acceptance finds it decided
        assert book.decide(int(loan.loan_id), 1, ACCEPTED) is False  # a withdrawn one is never accepted
        assert book.get(int(loan.loan_id), 2).state == ACCEPTED and book.get(int(loan.loan_id), 3) is None
    finally:
        db.close()
