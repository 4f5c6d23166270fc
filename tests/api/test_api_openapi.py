"""The OpenAPI document: every route promises the error statuses it can send."""

from __future__ import annotations

import pytest

from api.main import create_app
from api.settings import Settings

#: (method, path) => the error statuses the route can answer.
EXPECTED_ERRORS = {
    ("get", "/health"): {"503"},
    ("get", "/certificates/{token_id}"): {"404", "422", "503"},
    ("get", "/verify/{token_id}"): {"404", "422", "503"},
    ("post", "/relay/transfers"): {"409", "422", "503"},
    ("get", "/relay/typed-data/transfer"): {"422", "503"},
    ("get", "/relay/{tx_hash}"): {"404", "422", "503"},
    ("get", "/metadata/{token_id}"): {"404", "422", "503"},
    ("get", "/lots/{lot_id}/metadata.json"): {"404", "409", "422", "503"},
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
    assert errors == EXPECTED_ERRORS[(method, path)]
    for status in errors:
        content = responses[status]["content"]
        if path.startswith("/verify/"):
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


def test_openapi__info__names_license_and_version(openapi):
    assert openapi["info"]["license"] == {"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"}
    assert openapi["info"]["version"]
