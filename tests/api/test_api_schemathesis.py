"""Schemathesis against the OpenAPI document: every operation, fed generated
valid and invalid requests, never answers 5xx, answers only statuses its
document declares, and answers bodies that match the declared schemas.

The app answering is built on the test deployment (the anvil node Ape runs),
so requests reach real contracts: a relay request that passes validation is
usually refused by the chain (409 ``would_revert``), a documented answer.
Protected routes get a fresh account's bearer token, ``/admin/*`` the
operator token; schemathesis' own coverage cases still drop the header to
check the 401s. Generated data rarely reaches a success answer that needs
state (a loan, a relayed request, a deposited lot document), so the last
test sends those requests with real values through the same checks.

Nothing is excluded: every operation of the document is fuzzed. The HTML
verification page is checked for 5xx only: its one declared schema is "a
string", which says nothing a check could hold it to.
"""

from __future__ import annotations

import json
import time

import pytest
import schemathesis
from api_fixtures import ADMIN_TOKEN, PASSWORD, USD, bearer, sign_up
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.config import SchemathesisConfig
from schemathesis.python.asgi import shutdown_lifespans

from amphora import eip712, lots
from api.main import create_app
from api.settings import Settings

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

#: Generated requests per operation (besides the document's examples and the
#: coverage phase's boundary and missing-value cases). With about 150
#: operations, 25 keeps the file to a few minutes on two cores; 50 took twice
#: as long and found nothing more.
MAX_EXAMPLES = 25
#: Seconds a request may take: a relay's simulation on a busy two-core machine
#: can take longer than schemathesis' default of 10.
REQUEST_TIMEOUT = 60

#: The document the app serves. It does not depend on the settings, so a
#: node-less app gives it at collection time; the first test checks that the
#: app on the test deployment serves this same document.
OPENAPI = create_app(Settings(relayer_private_key=None)).openapi()

#: Positive and negative generation, explicitly: a schemathesis.toml found in
#: the working directory must not change what this test does.
schema = schemathesis.openapi.from_dict(OPENAPI, config=SchemathesisConfig.from_dict({"generation": {"mode": "all"}}))

JSON_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
HTML_CHECKS = [not_a_server_error]

#: The lending terms of the success-answers test (as in test_api_lending).
PRINCIPAL, REPAYMENT = 1_000 * USD, 1_050 * USD
DAY = 86_400


@pytest.fixture
def fuzz_app(api_settings, create_lot, tmp_path):
    """An app on the test deployment with a lot of ten bottles issued (lot 1:
    the document's example token id 4294967298 is its bottle 2), rate limits
    out of the way (the fuzzer sends hundreds of relay requests a second), and
    the tokens each operation needs. One app and one chain snapshot per
    operation, shared by that operation's examples."""
    lot = create_lot(10)
    app = create_app(api_settings.model_copy(update={
        "rate_limit_per_second": 1_000.0, "rate_limit_burst": 100_000, "documents_dir": tmp_path}))
    account = sign_up(TestClient(app))
    app.state.fuzz_account = account
    app.state.fuzz_lot = lot
    app.state.fuzz_headers = {"accountToken": bearer(account["token"]), "adminToken": bearer(ADMIN_TOKEN)}
    yield app
    # Schemathesis starts the app's lifespan (the relayer's worker) on the
    # first request and keeps it until exit: stop it before the chain reverts.
    shutdown_lifespans()


def _headers(case, app) -> dict[str, str]:
    """The credentials the operation's `security` names."""
    headers: dict[str, str] = {}
    for requirement in case.operation.definition.raw.get("security", []):
        for scheme in requirement:
            headers.update(app.state.fuzz_headers[scheme])
    return headers


def test_openapi__served_by_the_test_deployment_app__is_the_document_fuzzed(fuzz_app):
    served = TestClient(fuzz_app).get("/openapi.json")

    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(OPENAPI))
    assert len(list(schema.get_all_operations())) == sum(len(item) for item in OPENAPI["paths"].values())


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, max_examples=MAX_EXAMPLES,
          # The app and its chain snapshot are per operation on purpose, not per example.
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api__generated_requests__no_5xx_documented_status_and_schema(case, fuzz_app):
    checks = HTML_CHECKS if case.path.startswith("/verify/") else JSON_CHECKS
    case.call_and_validate(app=fuzz_app, headers=_headers(case, fuzz_app), checks=checks,
                           timeout=REQUEST_TIMEOUT)


# ------------------------------------------------------ success answers


def _call(app, method: str, path: str, status: int, **parts) -> dict:
    """Send one request built from real values through the fuzzing's checks;
    its JSON body (empty for 204)."""
    case = schema[path][method].Case(**parts)
    response = case.call_and_validate(app=app, headers=_headers(case, app), checks=JSON_CHECKS,
                                      timeout=REQUEST_TIMEOUT)
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def _confirmed(app, request_id: str) -> dict:
    deadline = time.monotonic() + 15
    while (body := _call(app, "GET", "/relay/{request_id}", 200,
                         path_parameters={"request_id": request_id}))["status"] != "confirmed":
        assert body["status"] != "failed" and time.monotonic() < deadline, body
        time.sleep(0.05)
    return body


def test_api__success_answers_generated_data_cannot_reach__match_their_schemas(
        fuzz_app, api_settings, tmp_path, project, manifest, cert, chain, winery, custodian, holder, recipient, lender,
        deployed_stablecoin, mint_stablecoin, sign_transfer):
    app, lot, account = fuzz_app, fuzz_app.state.fuzz_lot, fuzz_app.state.fuzz_account
    lending = project.PledgeLending.at(manifest.address("PledgeLending"))

    # A lot's metadata document, deposited.
    issued = lots.issue(cert, winery, lots.LotDescription.from_mapping({
        "producer": "Domaine Test", "wine": "Cuvée Essai", "region": "Pauillac AOC", "bottle_count": 2,
        "volume_ml": 750, "bottling_date": 1_717_200_000, "custodian": custodian.address}))
    lots.write_document(tmp_path / f"lot-{issued.lot_id}.json", issued.metadata)
    document = _call(app, "GET", "/lots/{lot_id}/metadata.json", 200, path_parameters={"lot_id": issued.lot_id})
    assert document["wine"] == "Cuvée Essai"

    # A signed transfer relayed, then followed to its confirmation.
    token = lot.token(2)
    cert.transferFrom(winery, holder, token, sender=winery)
    deadline = chain.pending_timestamp + 3_600
    signature = sign_transfer(holder, holder.address, recipient.address, token, 0, deadline)
    accepted = _call(app, "POST", "/relay/transfers", 202, body={
        "from": holder.address, "to": recipient.address, "token_id": token, "nonce": 0, "deadline": deadline,
        "signature": "0x" + signature.hex()})
    assert _confirmed(app, accepted["request_id"])["actor"] == holder.address
    assert cert.ownerOf(token) == recipient.address

    # The account's own certificate, moved by the service's signature.
    token = lot.token(3)
    cert.transferFrom(winery, account["address"], token, sender=winery)
    accepted = _call(app, "POST", "/me/relay/transfers", 202, body={"token_id": token, "to": holder.address},
                     headers={"Idempotency-Key": "fuzz-custodial-transfer"})
    _confirmed(app, accepted["request_id"])
    assert cert.ownerOf(token) == holder.address

    # The holder's pending signatures voided through the relay, then the account's.
    payload = _call(app, "GET", "/relay/typed-data/nonce-invalidation", 200,
                    query={"holder": holder.address, "deadline": deadline})
    accepted = _call(app, "POST", "/relay/nonce-invalidations", 202, body={
        "holder": holder.address, "nonce": int(payload["message"]["nonce"]),
        "new_nonce": int(payload["message"]["newNonce"]), "deadline": deadline,
        "signature": "0x" + eip712.sign(payload, holder.private_key).hex()})
    _confirmed(app, accepted["request_id"])
    accepted = _call(app, "POST", "/me/relay/nonce-invalidations", 202, body={},
                     headers={"Idempotency-Key": "fuzz-custodial-invalidation"})
    _confirmed(app, accepted["request_id"])
    assert cert.nonces(holder) == 2 and cert.nonces(account["address"]) == 2

    # Login, key export, an API token made and revoked.
    session = _call(app, "POST", "/auth/login", 200,
                    body={"identifier": account["identifier"], "password": PASSWORD})
    assert session["address"] == account["address"]
    exported = _call(app, "POST", "/me/key-export", 200, body={"password": PASSWORD})
    assert exported["address"] == account["address"]
    issued_token = _call(app, "POST", "/auth/api-tokens", 201, body={"name": "fuzz"})
    _call(app, "DELETE", "/auth/api-tokens/{id}", 204, path_parameters={"id": issued_token["id"]})

    # A loan offer posted to the board and accepted on chain: the loan's views.
    mint_stablecoin(lender, PRINCIPAL)
    deployed_stablecoin.approve(lending, PRINCIPAL, sender=lender)
    token = lot.token(4)
    cert.transferFrom(winery, holder, token, sender=winery)
    message = eip712.loan_offer_message(lender.address, deployed_stablecoin.address, lot.lot_id, token, PRINCIPAL,
                                        REPAYMENT, 30 * DAY, 7 * DAY, 0, chain.pending_timestamp + DAY, 0)
    offer_signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, chain.chain_id, lending.address),
                                  lender.private_key)
    names = {"lotId": "lot_id", "tokenId": "token_id", "gracePeriod": "grace_period", "maxLtvBps": "max_ltv_bps"}
    offer = {names.get(key, key): value for key, value in message.items()}
    posted = _call(app, "POST", "/offers", 201, body={"offer": offer, "signature": "0x" + offer_signature.hex()})
    listed = _call(app, "GET", "/offers", 200, query={"token_id": token})
    assert [o["offer_hash"] for o in listed["offers"]] == [posted["offer_hash"]]
    terms = tuple(offer[key] for key in ("lender", "currency", "lot_id", "token_id", "principal", "repayment",
                                         "duration", "grace_period", "max_ltv_bps", "expiry", "nonce"))
    loan_id = lending.accept_offer(terms, offer_signature, token, sender=holder).return_value
    snapshot = _call(app, "GET", "/loans/{loan_id}", 200, path_parameters={"loan_id": loan_id})
    assert (snapshot["loan"]["state"], snapshot["loan"]["borrower"]) == ("open", holder.address)
    signed = _call(app, "GET", "/collateral/{token_id}", 200, path_parameters={"token_id": token},
                   query={"signed": "true"})
    assert signed["loan"]["loan_id"] == str(loan_id) and signed["signature"]
    repayment = _call(app, "GET", "/relay/typed-data/loan-repayment", 200, query={
        "loan_id": loan_id, "payer": holder.address, "valid_before": chain.pending_timestamp + 3_600})
    assert repayment["message"]["value"] == str(REPAYMENT)

    # The index's answers about all of the above (once the index holds the head).
    reader = app.state.index
    head = chain.blocks.head.number
    deadline = time.monotonic() + 15
    while (reader.status(chain.chain_id).indexed_block or -1) < head:
        assert time.monotonic() < deadline, "the index did not reach the head"
        time.sleep(0.05)
    stock = _call(app, "GET", "/accounts/{address}/certificates", 200, path_parameters={"address": winery.address},
                  query={"lot": lot.lot_id})
    assert stock["ranges"] and stock["indexed_block"] >= head
    mine = _call(app, "GET", "/me/certificates", 200)
    assert mine["address"] == account["address"]
    history = _call(app, "GET", "/certificates/{token_id}/history", 200, path_parameters={"token_id": token})
    assert "LoanStarted" in [entry["event"] for entry in history["history"]]
    _call(app, "GET", "/lots", 200, query={"issuer": winery.address, "limit": 2})
    assert _call(app, "GET", "/lots/{lot_id}", 200, path_parameters={"lot_id": lot.lot_id})["lot"]["counts"]["pledged"]
    loans = _call(app, "GET", "/loans", 200, query={"lender": lender.address, "state": "open"})
    assert str(loan_id) in [item["loan_id"] for item in loans["loans"]]
    assert _call(app, "GET", "/lenders/{address}/portfolio", 200,
                 path_parameters={"address": lender.address})["loans"]["open"] >= 1
    _call(app, "GET", "/merchants/{address}/ledger", 200, path_parameters={"address": lender.address})
