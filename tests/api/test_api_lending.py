"""The API's lending side on the real deployment: the lender's collateral view
(`/collateral`, `/loans`) read at one block and optionally signed, the offer
board (`/offers`), and the relayed acceptance and extension of loans, with
loans made directly through Ape and the chain's clock moved forward."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from api_fixtures import SNAPSHOT_KEY, USD, node_gateway, outbox, wait_for_status
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from pydantic import SecretStr

from amphora import eip712
from api.lending import recover_snapshot_signer

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

PRINCIPAL = 1_000 * USD
REPAYMENT = 1_050 * USD
VALUE = 2_000 * USD  # the appraisal: LTV of PRINCIPAL is 5,000 bps
DAY = 24 * 3600
DURATION = 30 * DAY
GRACE = 7 * DAY
MAX_AGE = 30 * DAY  # the deploy's default max appraisal age


@pytest.fixture(scope="session")
def deployed_lending(project, manifest):
    """The PledgeLending of the test deployment."""
    return project.PledgeLending.at(manifest.address("PledgeLending"))


@pytest.fixture
def funded(deployed_lending, deployed_stablecoin, mint_stablecoin, admin, lender, borrower, appraiser):
    """The lender and the borrower hold stablecoin and let the lending contract
    spend it; ``appraiser`` may post appraisals."""
    for account in (lender, borrower):
        mint_stablecoin(account, 100_000 * USD)
        deployed_stablecoin.approve(deployed_lending, 2**256 - 1, sender=account)
    deployed_lending.set_appraiser(appraiser, True, sender=admin)


@pytest.fixture
def bottles(funded, create_lot, cert, winery, borrower):
    """A lot of 5; bottles 1 to 3 sold to ``borrower``."""
    lot = create_lot(5)
    for serial in (1, 2, 3):
        cert.transferFrom(winery, borrower, lot.token(serial), sender=winery)
    return lot


@pytest.fixture
def appraised(deployed_lending, bottles, appraiser, chain):
    """The lot appraised at VALUE per bottle, as of the latest block; returns the
    appraisal's time (read once: the appraisal's own block may be a second later)."""
    appraised_at = chain.blocks.head.timestamp
    deployed_lending.post_appraisal(bottles.lot_id, VALUE, appraised_at, sender=appraiser)
    return appraised_at


@pytest.fixture
def make_offer(deployed_lending, deployed_stablecoin, lender, chain, chain_id) -> Callable[..., dict]:
    """Builder: an offer by ``lender`` (or the address ``by``), signed by ``lender``
    (or ``signer``), as the API takes it:
    ``{"offer": {...}, "signature": "0x..."}``."""

    def _make(lot_id: int, token_id: int = 0, *, principal=PRINCIPAL, repayment=REPAYMENT, max_ltv_bps=0,
              expiry=None, nonce=0, currency=None, signer=None, by=None) -> dict:
        message = eip712.loan_offer_message(
            by or lender.address, currency or deployed_stablecoin.address, lot_id, token_id, principal, repayment,
            DURATION, GRACE, max_ltv_bps, expiry if expiry is not None else chain.pending_timestamp + DAY, nonce)
        data = eip712.lending_typed_data("LoanOffer", message, chain_id, deployed_lending.address)
        signature = eip712.sign(data, (signer or lender).private_key)
        return {"offer": _api_offer(message), "signature": "0x" + signature.hex()}

    return _make


def _api_offer(message: dict) -> dict:
    names = {"lotId": "lot_id", "tokenId": "token_id", "gracePeriod": "grace_period", "maxLtvBps": "max_ltv_bps"}
    return {names.get(key, key): value for key, value in message.items()}


def _args(offer: dict) -> tuple:
    return tuple(offer[key] for key in ("lender", "currency", "lot_id", "token_id", "principal", "repayment",
                                        "duration", "grace_period", "max_ltv_bps", "expiry", "nonce"))


@pytest.fixture
def open_loan(deployed_lending, bottles, appraised, make_offer, borrower) -> tuple[int, int]:
    """A loan on bottle 1, accepted directly: (loan id, token id)."""
    token_id = bottles.token(1)
    posted = make_offer(bottles.lot_id, token_id)
    receipt = deployed_lending.accept_offer(_args(posted["offer"]), posted["signature"], token_id, sender=borrower)
    return receipt.return_value, token_id


def _mined(w3, response) -> dict:
    assert response.status_code == 202, response.text
    receipt = w3.eth.wait_for_transaction_receipt(response.json()["tx_hash"], timeout=10)
    assert receipt["status"] == 1
    return receipt


def _sign(client, account, path: str, params: dict) -> str:
    """Fetch typed data from the API and sign it with eth_account (an independent signer)."""
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    signature = Account.sign_message(encode_typed_data(full_message=response.json()), account.private_key).signature
    return "0x" + bytes(signature).hex()


# ------------------------------------------------------------ collateral


def test_collateral__open_loan__everything_at_one_block(
        client, w3, deployed_lending, open_loan, bottles, appraised, lender, borrower, custodian):
    loan_id, token_id = open_loan

    body = client.get(f"/collateral/{token_id}").json()

    block = w3.eth.get_block(body["block_number"])
    assert body["block_number"] == w3.eth.block_number
    assert body["block_hash"] == "0x" + bytes(block["hash"]).hex()
    assert body["block_timestamp"] == block["timestamp"]
    assert (body["chain_id"], body["lending_contract"]) == (w3.eth.chain_id, deployed_lending.address)
    assert (body["token_id"], body["lot_id"]) == (str(token_id), str(bottles.lot_id))
    loan = body["loan"]
    record = deployed_lending.loan(loan_id)
    assert loan == {
        "loan_id": str(loan_id), "token_id": str(token_id), "lot_id": str(bottles.lot_id), "state": "open",
        "lender": lender.address, "borrower": borrower.address, "principal": str(PRINCIPAL),
        "repayment": str(REPAYMENT), "started_at": record.started_at, "due_at": record.due_at,
        "grace_period": GRACE, "grace_ends_at": record.due_at + GRACE,
        "seconds_to_due": record.due_at - block["timestamp"],
        "seconds_to_grace_end": record.due_at + GRACE - block["timestamp"],
    }
    assert body["certificate"] == {"exists": True, "state": "pledged", "owner": borrower.address,
                                   "flagged": False, "flag_reason_hash": None}
    assert body["custody"]["custodian"] == custodian.address and body["custody"]["custodian_active"] is True
    assert body["appraisal"] == {"value_per_bottle": str(VALUE), "appraised_at": appraised,
                                 "age": block["timestamp"] - appraised, "stale": False}
    assert body["ltv_bps"] == "5000"
    assert body["borrower_credit"] == {"loans_taken": 1, "repaid_on_time": 0, "repaid_late": 0, "defaulted": 0,
                                       "open_loans": 1, "principal_borrowed": str(PRINCIPAL),
                                       "principal_repaid": "0"}
    assert (body["signer"], body["signature"]) == (None, None)


def test_collateral__never_pledged__no_loan_credit_or_ltv(client, bottles):
    body = client.get(f"/collateral/{bottles.token(2)}").json()

    assert body["loan"] is None and body["borrower_credit"] is None and body["ltv_bps"] is None
    assert body["appraisal"] is None
    assert body["certificate"]["state"] == "active"


@pytest.mark.parametrize("serial", [6, None])
def test_collateral__never_issued__404(client, bottles, serial):
    token_id = bottles.token(serial) if serial else 2**256 - 1
    response = client.get(f"/collateral/{token_id}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_collateral__manifest_without_lending__503_not_deployed(make_client, edited_manifest):
    path = edited_manifest(lambda data: data["contracts"].pop("PledgeLending"))

    response = make_client(manifest_path=path).get("/collateral/4294967297")

    assert response.status_code == 503 and response.json()["error"] == "not_deployed"


def test_collateral__past_due_then_repaid_late__timing_state_and_credit(
        client, chain, deployed_lending, open_loan, borrower):
    loan_id, token_id = open_loan
    due_at = deployed_lending.loan(loan_id).due_at
    chain.pending_timestamp = due_at + 100
    chain.mine()

    loan = client.get(f"/collateral/{token_id}").json()["loan"]
    assert (loan["seconds_to_due"], loan["seconds_to_grace_end"]) == (0, GRACE - 100)

    deployed_lending.repay(loan_id, sender=borrower)
    body = client.get(f"/loans/{loan_id}").json()
    assert body["loan"]["state"] == "repaid"
    assert (body["loan"]["seconds_to_due"], body["loan"]["seconds_to_grace_end"]) == (0, 0)
    assert body["certificate"]["state"] == "active"
    credit = body["borrower_credit"]
    assert (credit["repaid_late"], credit["open_loans"], credit["principal_repaid"]) == (1, 0, str(PRINCIPAL))


# ------------------------------------------------------------------ loans


def test_loan__by_id__the_collateral_snapshot(client, open_loan):
    loan_id, token_id = open_loan

    body = client.get(f"/loans/{loan_id}").json()

    assert body["loan"]["loan_id"] == str(loan_id) and body["token_id"] == str(token_id)


@pytest.mark.parametrize("which", ["next sequence", "sequence zero", "token never pledged", "largest id"])
def test_loan__id_that_never_existed__404(client, open_loan, bottles, which):
    loan_id, token_id = open_loan
    unknown = {"next sequence": loan_id + (1 << 96), "sequence zero": token_id,
               "token never pledged": (1 << 96) | bottles.token(2), "largest id": 2**256 - 1}[which]

    response = client.get(f"/loans/{unknown}")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"loan {unknown} never existed"}


def test_loan__superseded_by_a_newer_loan__404_names_it(
        client, deployed_lending, open_loan, make_offer, bottles, borrower):
    loan_id, token_id = open_loan
    deployed_lending.repay(loan_id, sender=borrower)
    again = make_offer(bottles.lot_id, token_id, nonce=1)
    newer = deployed_lending.accept_offer(_args(again["offer"]), again["signature"], token_id,
                                          sender=borrower).return_value

    response = client.get(f"/loans/{loan_id}")

    assert response.status_code == 404
    assert f"newer loan since ({newer})" in response.json()["detail"]


# -------------------------------------------------------- signed snapshots


def test_collateral__signed__verifies_offline_with_the_snapshot_key_not_the_gas_key(client, open_loan, relayer):
    _, token_id = open_loan
    snapshot_address = Account.from_key(SNAPSHOT_KEY).address

    body = client.get(f"/collateral/{token_id}", params={"signed": "true"}).json()

    assert body["signer"] == snapshot_address != relayer.address
    signature = body.pop("signature")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert Account.recover_message(encode_defunct(text=canonical), signature=signature) == snapshot_address
    assert recover_snapshot_signer({**body, "signature": signature}) == snapshot_address


@pytest.mark.parametrize("tamper", ["principal", "block_number", "state", "signer"])
def test_loan__signed_then_tampered__recovers_someone_else(client, open_loan, attacker, tamper):
    loan_id, _ = open_loan
    body = client.get(f"/loans/{loan_id}", params={"signed": True}).json()

    if tamper == "principal":
        body["loan"]["principal"] = str(PRINCIPAL // 2)
    elif tamper == "block_number":
        body["block_number"] += 1
    elif tamper == "state":
        body["loan"]["state"] = "repaid"
    else:
        body["signer"] = attacker.address

    recovered = recover_snapshot_signer(body)
    assert recovered != Account.from_key(SNAPSHOT_KEY).address and recovered != body["signer"]


def test_collateral__signed_without_snapshot_key__503_even_with_a_relayer_key_unsigned_still_served(
        make_client, open_loan):
    _, token_id = open_loan
    client = make_client(snapshot_signing_key=None)

    response = client.get(f"/collateral/{token_id}", params={"signed": True})

    assert response.status_code == 503 and response.json()["error"] == "service_unavailable"
    assert "AMPHORA_SNAPSHOT_SIGNING_KEY" in response.json()["detail"]
    assert client.get(f"/collateral/{token_id}").status_code == 200


def test_collateral__snapshot_key_is_the_relayer_key__refused_503(make_client, open_loan, relayer):
    _, token_id = open_loan
    client = make_client(snapshot_signing_key=SecretStr(relayer.private_key))

    response = client.get(f"/collateral/{token_id}", params={"signed": True})

    assert response.status_code == 503
    assert "not the gas key" in response.json()["detail"]
    assert relayer.private_key[2:] not in response.text


# ----------------------------------------------------------------- offers


def test_offers__posted__stored_with_the_contracts_hash_and_listed(client, deployed_lending, make_offer, bottles):
    posted = make_offer(bottles.lot_id, bottles.token(1))

    response = client.post("/offers", json=posted)

    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["offer_hash"] == "0x" + bytes(deployed_lending.offer_hash(_args(posted["offer"]))).hex()
    assert stored["signature"] == posted["signature"]
    assert stored["offer"] == {key: (str(value) if isinstance(value, int) else value)
                               for key, value in posted["offer"].items()}
    again = client.post("/offers", json=posted)
    assert again.status_code == 201 and again.json() == stored  # once on the board
    listing = client.get("/offers", params={"token_id": bottles.token(1)}).json()
    assert [o["offer_hash"] for o in listing["offers"]] == [stored["offer_hash"]]


def test_offers__listing__token_specific_and_lot_wide_cheapest_first(client, make_offer, bottles, create_lot):
    for_bottle_1 = make_offer(bottles.lot_id, bottles.token(1), nonce=1)
    lot_wide_dear = make_offer(bottles.lot_id, 0, repayment=1_100 * USD, nonce=2)
    lot_wide_cheap = make_offer(bottles.lot_id, 0, repayment=1_020 * USD, nonce=3)
    other_lot = create_lot(2)
    elsewhere = make_offer(other_lot.lot_id, 0, nonce=4)
    hashes = {}
    for name, posted in (("bottle 1", for_bottle_1), ("dear", lot_wide_dear), ("cheap", lot_wide_cheap),
                         ("elsewhere", elsewhere)):
        hashes[client.post("/offers", json=posted).json()["offer_hash"]] = name

    def listed(token_id: int) -> list[str]:
        return [hashes[o["offer_hash"]] for o in client.get("/offers", params={"token_id": token_id}).json()["offers"]]

    assert listed(bottles.token(1)) == ["cheap", "bottle 1", "dear"]
    assert listed(bottles.token(2)) == ["cheap", "dear"]
    assert listed(other_lot.token(1)) == ["elsewhere"]


def test_offers__listing__drops_cancelled_expired_and_over_ltv(
        client, chain, deployed_lending, make_offer, bottles, appraised, lender):
    within_ltv = make_offer(bottles.lot_id, max_ltv_bps=6_000, nonce=1)
    over_ltv = make_offer(bottles.lot_id, max_ltv_bps=4_000, nonce=2)
    cancelled = make_offer(bottles.lot_id, nonce=3)
    short = make_offer(bottles.lot_id, nonce=4, expiry=chain.pending_timestamp + 600)
    names = {client.post("/offers", json=p).json()["offer_hash"]: n for n, p in (
        ("within", within_ltv), ("over", over_ltv), ("cancelled", cancelled), ("short", short))}

    def listed() -> set[str]:
        return {names[o["offer_hash"]] for o in client.get("/offers", params={"token_id": bottles.token(2)}).json()[
            "offers"]}

    assert listed() == {"within", "cancelled", "short"}
    deployed_lending.cancel_offer(3, sender=lender)
    assert listed() == {"within", "short"}
    chain.pending_timestamp += 601
    chain.mine()
    assert listed() == {"within"}
    chain.pending_timestamp = appraised + MAX_AGE + 1  # the appraisal goes stale
    chain.mine()
    assert listed() == set()


def test_offers__contract_lender__accepted_by_its_erc1271_check(
        client, project, admin, make_offer, bottles, lender, attacker, mint_stablecoin, deployed_stablecoin,
        deployed_lending):
    wallet = project.MockERC1271Wallet.deploy(lender, sender=admin)  # lender's key is the wallet's owner
    mint_stablecoin(wallet, PRINCIPAL)  # the board lists only lenders that hold and approved the principal
    wallet.execute(deployed_stablecoin, deployed_stablecoin.approve.encode_input(deployed_lending, PRINCIPAL),
                   sender=lender)

    response = client.post("/offers", json=make_offer(bottles.lot_id, by=wallet.address))
    forged = client.post("/offers", json=make_offer(bottles.lot_id, by=wallet.address, signer=attacker, nonce=1))

    assert response.status_code == 201 and response.json()["offer"]["lender"] == wallet.address
    assert forged.status_code == 422 and "ERC-1271" in forged.json()["detail"]


def test_offers__listing__not_the_holders_own_and_says_when_pledged(
        client, deployed_lending, make_offer, bottles, borrower):
    own = make_offer(bottles.lot_id, by=borrower.address, signer=borrower)
    posted = make_offer(bottles.lot_id, nonce=1)
    assert client.post("/offers", json=own).status_code == 201
    offer_hash = client.post("/offers", json=posted).json()["offer_hash"]

    listing = client.get("/offers", params={"token_id": bottles.token(1)}).json()
    assert [o["offer_hash"] for o in listing["offers"]] == [offer_hash]
    assert listing["certificate_state"] == "active"

    deployed_lending.accept_offer(_args(posted["offer"]), posted["signature"], bottles.token(1), sender=borrower)
    assert client.get("/offers", params={"token_id": bottles.token(1)}).json()["certificate_state"] == "pledged"


def test_offers__listing__never_issued__404(client, bottles):
    assert client.get("/offers", params={"token_id": bottles.token(6)}).status_code == 404


@pytest.mark.parametrize("problem, detail", [
    ("signed by another", "signature: recovers"),
    ("other currency", "offer.currency"),
    ("repayment below principal", "offer.repayment"),
    ("token outside the lot", "offer.token_id"),
])
def test_offers__post__offer_the_contract_never_accepts__422(
        client, make_offer, bottles, attacker, deployed_points, problem, detail):
    posted = {
        "signed by another": lambda: make_offer(bottles.lot_id, signer=attacker),
        "other currency": lambda: make_offer(bottles.lot_id, currency=deployed_points.address),
        "repayment below principal": lambda: make_offer(bottles.lot_id, repayment=PRINCIPAL - 1),
        "token outside the lot": lambda: make_offer(bottles.lot_id, (bottles.lot_id + 1) << 32 | 1),
    }[problem]()

    response = client.post("/offers", json=posted)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request" and detail in response.json()["detail"]


def test_offers__post__expired_or_cancelled__409_offer_unusable(client, chain, deployed_lending, make_offer,
                                                                bottles, lender):
    expired = make_offer(bottles.lot_id, expiry=chain.blocks.head.timestamp)
    deployed_lending.cancel_offers_below(10, sender=lender)
    below_floor = make_offer(bottles.lot_id, nonce=9)

    for posted, detail in ((expired, "expired"), (below_floor, "used or cancelled")):
        response = client.post("/offers", json=posted)
        assert response.status_code == 409
        assert response.json()["error"] == "offer_unusable" and detail in response.json()["detail"]


def test_offers__post__lender_without_funds_or_allowance__409_offer_unusable(
        client, make_offer, bottles, deployed_stablecoin, deployed_lending, mint_stablecoin, accounts):
    broke = accounts[17]
    unfunded = client.post("/offers", json=make_offer(bottles.lot_id, by=broke.address, signer=broke))
    mint_stablecoin(broke, PRINCIPAL)
    unapproved = client.post("/offers", json=make_offer(bottles.lot_id, by=broke.address, signer=broke, nonce=1))
    deployed_stablecoin.approve(deployed_lending, PRINCIPAL, sender=broke)
    funded = client.post("/offers", json=make_offer(bottles.lot_id, by=broke.address, signer=broke, nonce=2))

    assert unfunded.status_code == 409 and unfunded.json()["error"] == "offer_unusable"
    assert "holds 0 units" in unfunded.json()["detail"]
    assert unapproved.status_code == 409 and "has approved 0 units" in unapproved.json()["detail"]
    assert funded.status_code == 201, funded.text


def test_offers__listing__lender_spent_or_revoked_after_posting__not_listed(
        client, make_offer, bottles, deployed_stablecoin, deployed_lending, mint_stablecoin, accounts, recipient):
    spender, revoker = accounts[17], accounts[18]
    names = {}
    for n, who in enumerate((spender, revoker)):
        mint_stablecoin(who, PRINCIPAL)
        deployed_stablecoin.approve(deployed_lending, PRINCIPAL, sender=who)
        posted = client.post("/offers", json=make_offer(bottles.lot_id, by=who.address, signer=who, nonce=n))
        names[posted.json()["offer_hash"]] = who.address

    def listed() -> set[str]:
        return {names[o["offer_hash"]] for o in client.get("/offers", params={"token_id": bottles.token(2)}).json()[
            "offers"] if o["offer_hash"] in names}

    assert listed() == {spender.address, revoker.address}
    deployed_stablecoin.transfer(recipient, 1, sender=spender)
    deployed_stablecoin.approve(deployed_lending, PRINCIPAL - 1, sender=revoker)
    assert listed() == set()


def test_offers__post__more_open_offers_than_the_cap__409_conflict_and_repost_still_answers(
        make_client, make_offer, bottles):
    client = make_client(auth=False, offer_max_open_per_lender=2)
    first, second, third = (make_offer(bottles.lot_id, nonce=n) for n in range(3))

    assert client.post("/offers", json=first).status_code == 201
    assert client.post("/offers", json=second).status_code == 201
    refused = client.post("/offers", json=third)
    again = client.post("/offers", json=first)

    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert "already has 2 open offers" in refused.json()["detail"]
    assert again.status_code == 201


def test_offers__expired__deleted_from_the_board_and_free_the_lenders_cap(make_client, chain, make_offer, bottles):
    client = make_client(auth=False, offer_max_open_per_lender=1)
    short = make_offer(bottles.lot_id, nonce=1, expiry=chain.pending_timestamp + 600)
    assert client.post("/offers", json=short).status_code == 201
    assert client.post("/offers", json=make_offer(bottles.lot_id, nonce=2)).status_code == 409

    chain.pending_timestamp += 601
    chain.mine()
    client.get("/offers", params={"token_id": bottles.token(1)})

    with client.app.state.offers._db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM offers")["n"] == 0
    assert client.post("/offers", json=make_offer(bottles.lot_id, nonce=2)).status_code == 201


def test_offers__listing__paginated_cheapest_first_with_next_offset(make_client, make_offer, bottles):
    client = make_client(auth=False)
    repayments = [1_090, 1_010, 1_070, 1_030, 1_050]
    hashes = {client.post("/offers", json=make_offer(bottles.lot_id, repayment=r * USD, nonce=n)).json()[
        "offer_hash"]: r for n, r in enumerate(repayments)}

    pages, offset = [], 0
    while offset is not None:
        page = client.get("/offers", params={"token_id": bottles.token(1), "limit": 2, "offset": offset}).json()
        pages.append([hashes[o["offer_hash"]] for o in page["offers"]])
        assert (page["offset"], page["limit"]) == (offset, 2)
        offset = page["next_offset"]

    assert pages == [[1_010, 1_030], [1_050, 1_070], [1_090]]
    too_big = client.get("/offers", params={"token_id": bottles.token(1), "limit": 101})
    assert too_big.status_code == 422


def test_offers__listing__node_requests_do_not_grow_with_the_offers_on_the_page(
        make_client, counting_gateway, make_offer, bottles):
    url, requests_seen = counting_gateway
    client = make_client(auth=False, rpc_url=url)
    client.post("/offers", json=make_offer(bottles.lot_id, nonce=0))

    def node_requests_for_listing() -> int:
        before = len(requests_seen)
        page = client.get("/offers", params={"token_id": bottles.token(1), "limit": 100})
        assert page.status_code == 200
        return len(requests_seen) - before

    one = node_requests_for_listing()
    for n in range(1, 12):
        client.post("/offers", json=make_offer(bottles.lot_id, nonce=n))
    twelve = node_requests_for_listing()

    assert len(client.get("/offers", params={"token_id": bottles.token(1)}).json()["offers"]) == 12
    assert twelve == one


@pytest.fixture
def counting_gateway(rpc_url):
    """A gateway in front of the test node that counts HTTP requests: (its URL, the requests)."""
    with node_gateway(rpc_url) as gateway:
        yield gateway


def test_offers__typed_data__signed_by_lender_and_posted(client, chain, bottles, lender):
    params = {"lender": lender.address, "lot_id": bottles.lot_id, "principal": PRINCIPAL, "repayment": REPAYMENT,
              "duration": DURATION, "grace_period": GRACE, "expiry": chain.pending_timestamp + DAY, "nonce": 7}
    signature = _sign(client, lender, "/relay/typed-data/loan-offer", params)
    payload = client.get("/relay/typed-data/loan-offer", params=params).json()

    offer = {**{k: v for k, v in params.items()}, "currency": payload["message"]["currency"], "token_id": 0,
             "max_ltv_bps": 0}
    response = client.post("/offers", json={"offer": offer, "signature": signature})

    assert response.status_code == 201, response.text


# ------------------------------------------------------------------ relay


def test_loan_acceptance__relayed__pledged_and_paid_borrower_pays_no_gas(
        client, w3, chain, deployed_lending, deployed_stablecoin, make_offer, bottles, borrower, lender):
    token_id = bottles.token(2)
    stored = client.post("/offers", json=make_offer(bottles.lot_id)).json()
    offer = client.get("/offers", params={"token_id": token_id}).json()["offers"][0]
    deadline = chain.pending_timestamp + 3_600
    borrower_signature = _sign(client, borrower, "/relay/typed-data/loan-acceptance", {
        "offer_hash": offer["offer_hash"], "token_id": token_id, "borrower": borrower.address,
        "deadline": deadline})
    eth_before = w3.eth.get_balance(borrower.address)
    cash_before = deployed_stablecoin.balanceOf(borrower)

    _mined(w3, client.post("/relay/loan-acceptances", json={
        "offer": offer["offer"], "lender_signature": offer["signature"], "token_id": token_id,
        "borrower": borrower.address, "deadline": deadline, "borrower_signature": borrower_signature}))

    loan = client.get(f"/collateral/{token_id}").json()["loan"]
    assert (loan["state"], loan["borrower"], loan["lender"]) == ("open", borrower.address, lender.address)
    assert deployed_stablecoin.balanceOf(borrower) == cash_before + PRINCIPAL
    assert w3.eth.get_balance(borrower.address) == eth_before
    assert stored["offer_hash"] == offer["offer_hash"]
    assert client.get("/offers", params={"token_id": token_id}).json()["offers"] == []  # nonce now used


def test_custodial_loan_acceptance__account_pledges_its_certificate_and_is_paid(
        client, w3, cert, deployed_stablecoin, make_offer, bottles, winery, lender):
    """``POST /me/relay/loan-acceptances``: the service signs the `AcceptOffer`
    with the account's own key and relays it."""
    account = client.account["address"]
    token_id = bottles.token(4)  # still the winery's
    cert.transferFrom(winery, account, token_id, sender=winery)
    posted = make_offer(bottles.lot_id, token_id)

    response = client.post("/me/relay/loan-acceptances", json={
        "offer": posted["offer"], "lender_signature": posted["signature"], "token_id": token_id},
        headers={"Idempotency-Key": "accept-1"})

    wait_for_status(client, response.json()["request_id"], "confirmed")
    loan = client.get(f"/collateral/{token_id}").json()["loan"]
    assert (loan["state"], loan["borrower"], loan["lender"]) == ("open", account, lender.address)
    assert deployed_stablecoin.balanceOf(account) == PRINCIPAL
    assert cert.ownerOf(token_id) == account and cert.locked(token_id) is True
    assert w3.eth.get_balance(account) == 0


def test_custodial_loan_repayment__account_repays_from_its_stablecoin_without_gas(
        client, w3, cert, deployed_stablecoin, mint_stablecoin, make_offer, bottles, winery, lender):
    """``POST /me/relay/loan-repayments``: the service signs the EIP-3009
    `ReceiveWithAuthorization` of the loan's repayment with the account's key."""
    account = client.account["address"]
    token_id = bottles.token(4)
    cert.transferFrom(winery, account, token_id, sender=winery)
    posted = make_offer(bottles.lot_id, token_id)
    accepted = client.post("/me/relay/loan-acceptances", json={
        "offer": posted["offer"], "lender_signature": posted["signature"], "token_id": token_id},
        headers={"Idempotency-Key": "accept-1"})
    wait_for_status(client, accepted.json()["request_id"], "confirmed")
    loan_id = int(client.get(f"/collateral/{token_id}").json()["loan"]["loan_id"])
    mint_stablecoin(account, REPAYMENT - PRINCIPAL)
    lender_before = deployed_stablecoin.balanceOf(lender)

    response = client.post("/me/relay/loan-repayments", json={"loan_id": loan_id},
                           headers={"Idempotency-Key": "repay-1"})

    done = wait_for_status(client, response.json()["request_id"], "confirmed")
    assert done["actor"] == account
    assert client.get(f"/loans/{loan_id}").json()["loan"]["state"] == "repaid"
    assert deployed_stablecoin.balanceOf(account) == 0
    assert deployed_stablecoin.balanceOf(lender) - lender_before == REPAYMENT
    assert cert.ownerOf(token_id) == account and cert.locked(token_id) is False
    assert w3.eth.get_balance(account) == 0
    again = client.post("/me/relay/loan-repayments", json={"loan_id": loan_id},
                        headers={"Idempotency-Key": "repay-2"})
    assert again.status_code == 404  # closed: nothing to sign, nothing sent


def test_loan_acceptance__signed_by_another__409_nothing_sent(
        client, w3, chain, make_offer, bottles, borrower, attacker, relayer):
    posted = make_offer(bottles.lot_id)
    offer_hash = client.post("/offers", json=posted).json()["offer_hash"]
    deadline = chain.pending_timestamp + 3_600
    forged = _sign(client, attacker, "/relay/typed-data/loan-acceptance", {
        "offer_hash": offer_hash, "token_id": bottles.token(2), "borrower": borrower.address, "deadline": deadline})
    before = outbox(w3, relayer)

    response = client.post("/relay/loan-acceptances", json={
        "offer": posted["offer"], "lender_signature": posted["signature"], "token_id": bottles.token(2),
        "borrower": borrower.address, "deadline": deadline, "borrower_signature": forged})

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "lending: invalid borrower signature"}
    assert outbox(w3, relayer) == before


def test_loan_acceptance__malformed__422(client, make_offer, bottles, borrower):
    posted = make_offer(bottles.lot_id)

    response = client.post("/relay/loan-acceptances", json={
        "offer": posted["offer"], "lender_signature": posted["signature"], "token_id": bottles.token(2),
        "borrower": "0x1234", "deadline": 1, "borrower_signature": "0x00"})

    assert response.status_code == 422 and "borrower" in response.json()["detail"]


def _extension(client, loan_id: int, due_at: int, deadline: int, lender_key, borrower_key) -> dict:
    params = {"loan_id": loan_id, "due_at": due_at, "repayment": REPAYMENT + 20 * USD, "deadline": deadline}
    return {**params, "lender_signature": _sign(client, lender_key, "/relay/typed-data/loan-extension", params),
            "borrower_signature": _sign(client, borrower_key, "/relay/typed-data/loan-extension", params)}


def test_loan_extension__relayed_with_both_signatures__due_date_and_repayment_move(
        client, w3, chain, deployed_lending, open_loan, lender, borrower):
    loan_id, _ = open_loan
    due_at = deployed_lending.loan(loan_id).due_at + 10 * DAY

    _mined(w3, client.post("/relay/loan-extensions", json=_extension(
        client, loan_id, due_at, chain.pending_timestamp + 3_600, lender, borrower)))

    loan = client.get(f"/loans/{loan_id}").json()["loan"]
    assert (loan["due_at"], loan["repayment"]) == (due_at, str(REPAYMENT + 20 * USD))
    assert loan["grace_ends_at"] == due_at + GRACE


def test_loan_extension__borrower_did_not_sign__409_nothing_sent(
        client, w3, chain, deployed_lending, open_loan, lender, attacker, relayer):
    loan_id, _ = open_loan
    due_at = deployed_lending.loan(loan_id).due_at + 10 * DAY
    body = _extension(client, loan_id, due_at, chain.pending_timestamp + 3_600, lender, attacker)
    before = outbox(w3, relayer)

    response = client.post("/relay/loan-extensions", json=body)

    assert response.status_code == 409
    assert response.json() == {"error": "would_revert", "detail": "lending: invalid borrower signature"}
    assert outbox(w3, relayer) == before


def _repayment_body(client, payer, loan_id: int, valid_before: int) -> dict:
    params = {"loan_id": loan_id, "payer": payer.address, "valid_before": valid_before}
    return {**params, "signature": _sign(client, payer, "/relay/typed-data/loan-repayment", params)}


def test_loan_repayment__relayed_authorization__lender_paid_borrower_needs_no_gas_nor_allowance(
        client, w3, chain, deployed_lending, deployed_stablecoin, open_loan, lender, borrower):
    loan_id, token_id = open_loan
    deployed_stablecoin.approve(deployed_lending, 0, sender=borrower)
    eth_before = w3.eth.get_balance(borrower.address)
    lender_before = deployed_stablecoin.balanceOf(lender)

    _mined(w3, client.post("/relay/loan-repayments",
                           json=_repayment_body(client, borrower, loan_id, chain.pending_timestamp + 3_600)))

    snapshot = client.get(f"/loans/{loan_id}").json()
    assert snapshot["loan"]["state"] == "repaid"
    assert snapshot["certificate"]["state"] == "active" and snapshot["certificate"]["owner"] == borrower.address
    assert deployed_stablecoin.balanceOf(lender) == lender_before + REPAYMENT
    assert w3.eth.get_balance(borrower.address) == eth_before


@pytest.mark.parametrize("length", [1, 64, 66])
def test_loan_repayment__signature_not_65_bytes__422_nothing_sent(client, w3, chain, open_loan, borrower, relayer,
                                                                 length):
    """EIP-3009 takes ``v, r, s``: only a 65-byte ECDSA signature can be split into them."""
    body = _repayment_body(client, borrower, open_loan[0], chain.pending_timestamp + 3_600)
    body["signature"] = (body["signature"] + "00")[:2 + 2 * length]
    before = outbox(w3, relayer)

    response = client.post("/relay/loan-repayments", json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith(f"signature: is {length} bytes")
    assert outbox(w3, relayer) == before


def test_loan_repayment__typed_data__stablecoin_domain_loan_nonce_and_current_repayment(
        client, chain, deployed_lending, deployed_stablecoin, open_loan, borrower):
    loan_id, _ = open_loan
    data = client.get("/relay/typed-data/loan-repayment", params={
        "loan_id": loan_id, "payer": borrower.address, "valid_before": chain.pending_timestamp + 60}).json()
    assert data["primaryType"] == "ReceiveWithAuthorization"
    assert data["domain"]["verifyingContract"] == deployed_stablecoin.address
    message = data["message"]
    assert (message["from"], message["to"], message["value"]) == (
        borrower.address, deployed_lending.address, str(REPAYMENT))
    assert message["nonce"] == "0x" + bytes(deployed_lending.repayment_nonce(loan_id)).hex()


def test_loan_repayment__signed_for_less_after_an_extension__409_nothing_sent(
        client, w3, chain, deployed_lending, open_loan, lender, borrower, relayer):
    """The payer signed the old amount; an extension raised the repayment."""
    loan_id, token_id = open_loan
    body = _repayment_body(client, borrower, loan_id, chain.pending_timestamp + 3_600)
    _mined(w3, client.post("/relay/loan-extensions", json=_extension(
        client, loan_id, deployed_lending.loan(loan_id).due_at + DAY, chain.pending_timestamp + 3_600,
        lender, borrower)))
    before = outbox(w3, relayer)

    response = client.post("/relay/loan-repayments", json=body)

    assert response.status_code == 409 and response.json()["error"] == "would_revert"
    assert outbox(w3, relayer) == before
    assert client.get(f"/loans/{loan_id}").json()["loan"]["state"] == "open"


@pytest.mark.parametrize("case", ["closed", "never"])
def test_loan_repayment__typed_data_for_a_loan_not_open__404(client, chain, deployed_lending, open_loan,
                                                             borrower, case):
    loan_id, _ = open_loan
    if case == "closed":
        deployed_lending.repay(loan_id, sender=borrower)
    else:
        loan_id += 1 << 96  # the next loan on the same bottle
    response = client.get("/relay/typed-data/loan-repayment", params={
        "loan_id": loan_id, "payer": borrower.address, "valid_before": chain.pending_timestamp + 60})
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_loan_repayment__typed_data_empty_window__422(client, open_loan, borrower):
    response = client.get("/relay/typed-data/loan-repayment", params={
        "loan_id": open_loan[0], "payer": borrower.address, "valid_before": 5, "valid_after": 5})
    assert response.status_code == 422 and "valid_before" in response.json()["detail"]


def test_lending_relay__without_relayer_key__503(make_client, open_loan, lender, borrower, chain,
                                                 deployed_lending):
    loan_id, _ = open_loan
    client = make_client(relayer_private_key=None)
    body = _extension(client, loan_id, deployed_lending.loan(loan_id).due_at + DAY, chain.pending_timestamp + 60,
                      lender, borrower)

    response = client.post("/relay/loan-extensions", json=body)

    assert response.status_code == 503 and response.json()["error"] == "relay_unavailable"


def test_lending_typed_data__lending_domain_and_shared_definition(client, deployed_lending, chain_id):
    payload = client.get("/relay/typed-data/loan-extension",
                         params={"loan_id": 5, "due_at": 6, "repayment": 7, "deadline": 8}).json()

    assert payload["domain"] == {"name": eip712.LENDING_DOMAIN_NAME, "version": eip712.LENDING_DOMAIN_VERSION,
                                 "chainId": chain_id, "verifyingContract": deployed_lending.address}
    assert payload["types"]["LoanExtension"] == eip712.TYPES["LoanExtension"]
    assert payload["message"] == {"loanId": "5", "dueAt": "6", "repayment": "7", "deadline": "8"}
    bad = client.get("/relay/typed-data/loan-acceptance",
                     params={"offer_hash": "0x12", "token_id": 1, "borrower": deployed_lending.address,
                             "deadline": 1})
    assert bad.status_code == 422
