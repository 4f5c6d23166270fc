"""The OpenAPI document: every route promises the error statuses it can send."""

from __future__ import annotations

import pytest

from api.main import create_app
from api.settings import Settings

#: What a relay submission can answer besides 202: bad input, no or bad
#: credentials, a read-only API token, would revert / refused / idempotency conflict, rate or quota, no relayer.
RELAY = {"401", "403", "409", "422", "429", "503"}

#: (method, path) => the error statuses the route can answer.
EXPECTED_ERRORS = {
    ("get", "/health"): {"503"},
    ("get", "/certificates/{token_id}"): {"404", "422", "503"},
    ("get", "/verify/{token_id}"): {"404", "422", "503"},
    ("post", "/relay/transfers"): RELAY,
    ("get", "/relay/typed-data/transfer"): {"422", "503"},
    ("post", "/relay/points-transfers"): RELAY,
    ("get", "/relay/typed-data/points-transfer"): {"422", "503"},
    ("get", "/relay/{request_id}"): {"404", "422", "503"},
    ("post", "/certificates/{token_id}/challenge"): {"404", "422", "503"},
    ("get", "/certificates/{token_id}/verify-tag"): {"404", "422", "503"},
    ("post", "/relay/gifts"): RELAY,
    ("post", "/relay/gift-revocations"): RELAY,
    ("post", "/relay/redemptions"): RELAY,
    ("post", "/relay/flags"): RELAY,
    ("post", "/relay/gift-claims"): RELAY,
    ("post", "/relay/gift-claims/by-secret"): RELAY,
    ("get", "/relay/typed-data/gift-claim"): {"422", "503"},
    ("get", "/relay/typed-data/{action}"): {"422", "503"},
    ("post", "/relay/nonce-invalidations"): RELAY,
    ("get", "/relay/typed-data/nonce-invalidation"): {"422", "503"},
    ("get", "/metadata/{token_id}"): {"404", "422", "503"},
    ("get", "/lots/{lot_id}/metadata.json"): {"404", "409", "422", "503"},
    ("get", "/accounts/{address}/balances"): {"422", "503"},
    ("get", "/points/settlement"): {"422", "503"},
    ("get", "/collateral/{token_id}"): {"404", "422", "503"},
    ("get", "/loans/{loan_id}"): {"404", "422", "503"},
    ("post", "/offers"): {"409", "422", "503"},
    ("get", "/offers"): {"404", "422", "503"},
    ("post", "/relay/loan-acceptances"): RELAY,
    ("post", "/relay/loan-extensions"): RELAY,
    ("post", "/relay/loan-repayments"): RELAY,
    ("get", "/relay/typed-data/loan-offer"): {"422", "503"},
    ("get", "/relay/typed-data/loan-acceptance"): {"422", "503"},
    ("get", "/relay/typed-data/loan-extension"): {"422", "503"},
    ("get", "/relay/typed-data/loan-repayment"): {"404", "422", "503"},
    ("post", "/auth/signup"): {"409", "422", "429", "503"},
    ("post", "/auth/login"): {"401", "422", "429", "503"},
    ("post", "/auth/wallet/challenge"): {"422", "429", "503"},
    ("post", "/auth/wallet/login"): {"401", "409", "422", "429", "503"},
    ("post", "/auth/logout"): {"401"},
    ("post", "/auth/logout-everywhere"): {"401", "403"},
    ("get", "/me"): {"401"},
    ("post", "/me/password"): {"401", "403", "409", "422", "429", "503"},
    ("post", "/auth/api-tokens"): {"401", "403", "422"},
    ("get", "/auth/api-tokens"): {"401"},
    ("delete", "/auth/api-tokens/{id}"): {"401", "403", "404", "422"},
    ("post", "/me/key-export"): {"401", "403", "422", "429", "503"},
    **{("post", f"/me/relay/{name}"): RELAY for name in (
        "transfers", "points-transfers", "gifts", "gift-revocations", "redemptions", "flags", "gift-claims",
        "loan-acceptances", "nonce-invalidations")},
    ("post", "/me/relay/loan-repayments"): RELAY | {"404"},
    ("get", "/admin/usage"): {"401", "403", "422", "503"},
    ("get", "/admin/quotas/{account}"): {"401", "403", "422", "503"},
    ("put", "/admin/quotas/{account}"): {"401", "403", "422", "503"},
    **{("get", f"/admin/{view}"): {"401", "403", "422", "503"} for view in (
        "relayer", "requests", "index", "gas", "audit")},
    ("get", "/custodian/notes/{note_hash}"): {"401", "403", "404", "422", "503"},
    # The cellar's and the appraiser's consoles (issue 16).
    ("get", "/custodian/redemptions"): {"401", "403", "503"},
    **{("post", f"/custodian/redemptions/{{token_id}}/{action}"): {"401", "403", "404", "409", "422", "502", "503"}
       for action in ("confirm", "reject")},
    ("put", "/custodian/lots/{lot_id}/storage-report"): {"401", "403", "404", "409", "422", "502", "503"},
    ("get", "/custodian/documents/{document_hash}"): {"404", "422"},
    ("post", "/custodian/reserve"): {"401", "403", "409", "422", "502", "503"},
    ("get", "/custodian/reserve-trees/{custodian}/{root}"): {"404", "422"},
    ("get", "/custodian/reserve-trees/{custodian}/{root}/proofs/{token_id}"): {"404", "422"},
    ("get", "/appraiser/lots"): {"401", "403", "422", "503"},
    ("post", "/appraiser/lots/{lot_id}/appraisals"): {"401", "403", "409", "422", "502", "503"},
    # The consoles' foundation (issue 16): the roles an address holds.
    ("get", "/accounts/{address}/roles"): {"422", "503"},
    ("get", "/me/roles"): {"401", "503"},
    # Business transactions a wallet account sends itself (issue 16).
    ("get", "/me/business/transactions/{prepared_id}"): {"401", "403", "404", "422", "503"},
    ("post", "/me/business/transactions/{prepared_id}/sent"): {"401", "403", "404", "409", "422", "502", "503"},
    ("get", "/casks"): {"503"},
    ("get", "/casks/{cask}"): {"404", "422", "503"},
    ("get", "/casks/{cask}/holders/{address}"): {"404", "422", "503"},
    ("get", "/casks/{cask}/transfer-check"): {"404", "422", "503"},
    ("get", "/casks/{cask}/typed-data/transfer"): {"404", "422", "503"},
    ("get", "/casks/{cask}/typed-data/claim"): {"404", "422", "503"},
    **{("post", path): RELAY | {"404"} for path in (
        "/casks/{cask}/relay/transfers", "/casks/{cask}/relay/claims", "/casks/{cask}/relay/distribution-claims",
        "/me/relay/casks/{cask}/transfers", "/me/relay/casks/{cask}/claims",
        "/me/relay/casks/{cask}/distribution-claims")},
    ("get", "/accounts/{address}/certificates"): {"422", "503"},
    ("get", "/me/certificates"): {"401", "422", "503"},
    ("get", "/me/points/history"): {"401", "422", "503"},
    ("get", "/certificates/{token_id}/history"): {"404", "422", "503"},
    ("get", "/lots"): {"422", "503"},
    ("get", "/lots/{lot_id}"): {"404", "422", "503"},
    ("get", "/loans"): {"422", "503"},
    ("get", "/lenders/{address}/portfolio"): {"422", "503"},
    ("get", "/merchants/{address}/ledger"): {"422", "503"},
    ("get", "/schemas/lot-document-v2.json"): set(),
    ("get", "/01/{gtin}"): {"400", "404", "422", "503"},
    ("get", "/01/{gtin}/{qualifiers}"): {"400", "404", "422", "503"},
    ("get", "/.well-known/gs1resolver"): set(),
    ("get", "/e-label/01/{gtin}/{qualifiers}"): {"400", "404", "422", "503"},
    ("get", "/certificates/{token_id}/qr"): {"404", "409", "422", "429", "503"},
    ("get", "/qr/01/{gtin}/{qualifiers}"): {"400", "404", "409", "422", "429", "503"},
    ("post", "/qr/gift-links"): {"422", "429"},
    ("get", "/lots/{lot_id}/labels.pdf"): {"404", "409", "422", "429", "503"},
    ("get", "/epcis/events"): {"400", "503"},
    ("post", "/issuer/lots/preview"): {"401", "403", "422", "503"},
    ("post", "/issuer/lots"): {"401", "403", "409", "422", "502", "503"},
    ("post", "/issuer/lot-jobs"): {"401", "403", "409", "422", "503"},
    ("get", "/issuer/jobs/{job_id}"): {"401", "403", "404", "422", "503"},
    ("get", "/issuer/lots/{lot_id}/bottles"): {"401", "403", "404", "422", "503"},
    ("post", "/issuer/certificates/{token_id}/flag"): {"401", "403", "409", "422", "502", "503"},
    ("post", "/issuer/certificates/{token_id}/clear-flag"): {"401", "403", "409", "422", "502", "503"},
    ("get", "/lots/{lot_id}/scans"): {"404", "422", "503"},
    # Issue 16: the lender's custodial actions.
    ("get", "/me/offers"): {"401", "503"},
    ("post", "/me/offers"): {"401", "403", "409", "422", "503"},
    **{("post", path): {"401", "403", "409", "422", "502", "503"} for path in (
        "/me/offers/{nonce}/cancel", "/me/lending-allowance")},
    ("post", "/me/loans/{loan_id}/foreclose"): {"401", "403", "404", "409", "422", "502", "503"},
    # Loan extensions: the lender offers more time, the borrower accepts (relayed).
    **{(method, path): {"401", "403", "404", "409", "422", "503"} for method, path in (
        ("post", "/lender/loans/{loan_id}/extensions"), ("post", "/lender/loans/{loan_id}/extensions/{n}/withdraw"),
        ("get", "/me/loans/{loan_id}/extensions"))},
    ("post", "/me/loans/{loan_id}/extensions/{n}/accept"): RELAY | {"404"},
    ("get", "/merchant"): {"401", "403", "503"},
    ("post", "/merchant/issuances"): {"401", "403", "409", "422", "429", "502", "503"},
    ("post", "/merchant/redemptions"): {"401", "403", "409", "422", "502", "503"},
    ("get", "/merchant/statements"): {"401", "403", "422", "503"},
}


@pytest.fixture(scope="module")
def openapi() -> dict:
    return create_app(Settings(relayer_private_key=None)).openapi()


def test_openapi__routes__exactly_the_documented_ones(openapi):
    routes = {(method, path) for path, item in openapi["paths"].items() for method in item}

    assert routes == set(EXPECTED_ERRORS)


@pytest.mark.parametrize("method, path", sorted(EXPECTED_ERRORS))
def test_openapi__every_route__declares_its_error_statuses_with_error_schema(openapi, method, path):
    responses = openapi["paths"][path][method]["responses"]

    errors = {status for status in responses if status >= "400"}
    # 413: every route refuses a body above AMPHORA_MAX_BODY_BYTES before routing.
    assert errors == EXPECTED_ERRORS[(method, path)] | {"413"}
    for status in errors:
        content = responses[status]["content"]
        if path.startswith(("/verify/", "/e-label/")):
            assert set(content) == {"text/html"}
        else:
            assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert "`" in responses[status]["description"]  # names its error codes


def test_openapi__error_body__has_error_and_detail(openapi):
    schema = openapi["components"]["schemas"]["ErrorBody"]

    assert set(schema["properties"]) == {"error", "detail"}
    assert set(schema["required"]) == {"error", "detail"}
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_openapi__large_numbers__strings_out_integer_or_string_in(openapi):
    schemas = openapi["components"]["schemas"]

    assert schemas["CertificateView"]["properties"]["token_id"]["type"] == "string"
    assert schemas["RelayerHealth"]["properties"]["balance_wei"]["anyOf"][0]["type"] == "string"
    token_in = schemas["TransferRelayRequest"]["properties"]["token_id"]["anyOf"]
    assert [t["type"] for t in token_in] == ["integer", "string"]
    assert schemas["TokenBalance"]["properties"]["balance"]["type"] == "string"
    assert schemas["AccountBalances"]["properties"]["eth_wei"]["type"] == "string"
    for token in ("stablecoin", "points", "utility"):  # left out when not deployed, never null
        assert schemas["AccountBalances"]["properties"][token]["$ref"] == "#/components/schemas/TokenBalance"
        assert token not in schemas["AccountBalances"]["required"]
    for name in ("SettlementLine", "SettlementTotals"):
        for field in ("points_issued", "points_redeemed", "stablecoin_paid_in", "stablecoin_paid_out"):
            assert schemas[name]["properties"][field]["type"] == "string"
        assert schemas[name]["properties"]["net_position"]["pattern"] == "^-?[0-9]+$"  # may be negative
    value_in = schemas["PointsTransferRelayRequest"]["properties"]["value"]["anyOf"]
    assert [t["type"] for t in value_in] == ["integer", "string"]
    assert schemas["AuthorizationMessage"]["properties"]["value"]["type"] == "string"
    for field in ("loan_id", "principal", "repayment"):
        assert schemas["LoanView"]["properties"][field]["type"] == "string"
    assert schemas["CollateralSnapshot"]["properties"]["block_number"]["type"] == "integer"
    principal_in = schemas["LoanOfferIn"]["properties"]["principal"]["anyOf"]
    assert [t["type"] for t in principal_in] == ["integer", "string"]


def test_openapi__lending_typed_data_routes__not_taken_by_the_lifecycle_action_route(openapi):
    paths = list(openapi["paths"])

    for name in ("loan-offer", "loan-acceptance", "loan-extension", "nonce-invalidation"):
        assert paths.index(f"/relay/typed-data/{name}") < paths.index("/relay/typed-data/{action}")


def test_openapi__settlement__answers_json_or_csv_and_documents_reconciliation(openapi):
    operation = openapi["paths"]["/points/settlement"]["get"]

    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/SettlementStatement"}
    assert content["text/csv"]["schema"] == {"type": "string"}
    statement = openapi["components"]["schemas"]["SettlementStatement"]["properties"]
    assert "reserve" in statement["reconciled"]["description"]
    assert "reserve" in statement["discrepancies"]["description"]


def test_openapi__tags__one_per_router(openapi):
    tags = {tag for item in openapi["paths"].values() for op in item.values() for tag in op["tags"]}

    assert tags == {"health", "certificates", "verification page", "relay", "metadata", "accounts", "points",
                    "lending", "auth", "custodial", "operator", "casks", "lots", "gs1 resolver", "e-label",
                    "qr codes and labels", "epcis", "roles", "issuer", "lender", "merchant", "custodian",
                    "appraiser", "business"}


def test_openapi__info__names_license_and_version(openapi):
    assert openapi["info"]["license"] == {"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"}
    assert openapi["info"]["version"]
