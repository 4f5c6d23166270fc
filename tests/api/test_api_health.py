"""GET /health, and how the app behaves before it can reach a node."""

from __future__ import annotations

import json

from api_fixtures import ADMIN_TOKEN, bearer
from pydantic import SecretStr

from api.main import create_app
from api.settings import Settings

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

#: The operator token: /health shows its detail to the operator only.
OPERATOR = bearer(ADMIN_TOKEN)
DEAD_RPC = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_health__node_up__reports_chain_contract_and_relayer(client, chain, cert, relayer):
    response = client.get("/health", headers=OPERATOR)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["node_reachable"] is True
    assert body["chain_id"] == chain.chain_id
    assert body["latest_block"] == chain.blocks.head.number
    assert body["certificate_address"] == cert.address
    assert body["relayer"] == {
        "address": relayer.address, "balance_wei": str(relayer.balance), "error": None,
        "keys": [{"address": relayer.address, "balance_wei": str(relayer.balance), "low_balance": False,
                  "fault": None}],
        "low_balance": False, "min_balance_wei": str(10**16), "requests": {}, "database": "sqlite"}


def test_health__without_relayer_key__reports_no_relayer(make_client):
    response = make_client(relayer_private_key=None).get("/health", headers=OPERATOR)

    assert response.status_code == 200
    assert response.json()["relayer"] is None


def test_health__invalid_relayer_key__reports_error_and_never_the_key(make_client):
    secret = "0xthis-is-not-a-key-but-still-secret"

    response = make_client(relayer_private_key=SecretStr(secret)).get("/health", headers=OPERATOR)

    assert response.status_code == 200
    assert response.json()["relayer"] == {
        "address": None, "balance_wei": None,
        "error": "AMPHORA_RELAYER_PRIVATE_KEY is not a valid private key",
        "keys": [], "low_balance": False, "min_balance_wei": str(10**16), "requests": {}, "database": "sqlite",
    }
    assert "still-secret" not in response.text


def test_health__node_unreachable__503(make_client):
    response = make_client(rpc_url=DEAD_RPC, rpc_timeout=2).get("/health", headers=OPERATOR)

    assert response.status_code == 503
    assert response.json() == {"error": "upstream_unavailable",
                               "detail": "the blockchain node cannot be reached"}


def test_health__manifest_missing__503_not_deployed(make_client, tmp_path):
    missing = tmp_path / "31337.json"

    response = make_client(manifest_path=missing).get("/health", headers=OPERATOR)

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
    assert str(missing) in response.json()["detail"]


def test_health__manifest_of_another_chain__503_not_deployed(make_client, manifest, tmp_path):
    data = json.loads(manifest.path.read_text())
    data["chain_id"] = 1
    other = tmp_path / "1.json"
    other.write_text(json.dumps(data))

    response = make_client(manifest_path=other).get("/health", headers=OPERATOR)

    assert response.status_code == 503
    assert response.json() == {"error": "not_deployed",
                               "detail": "the deploy manifest is for chain 1, but the node is chain 31337"}


def test_health__manifest_address_without_code__503_not_deployed(make_client, manifest, holder, tmp_path):
    data = json.loads(manifest.path.read_text())
    data["contracts"]["WineCertificate"]["address"] = holder.address
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(data))

    response = make_client(manifest_path=stale).get("/health", headers=OPERATOR)

    assert response.status_code == 503
    assert response.json()["error"] == "not_deployed"
    assert holder.address in response.json()["detail"]


def test_create_app__without_node__builds_and_documents_without_connecting():
    app = create_app(Settings(rpc_url=DEAD_RPC, relayer_private_key=None))

    assert app.openapi()["info"]["title"] == "Amphora API"
    assert app.state.chain._chain_id is None


def test_unknown_route__404_with_error_body(client):
    response = client.get("/no/such/route")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}
