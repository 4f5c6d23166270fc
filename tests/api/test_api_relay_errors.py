"""Relay errors are public (`GET /relay/{id}`, or by transaction hash): they
must never carry the node's URL, which holds the provider's key."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from api_fixtures import node_gateway

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

PROVIDER_KEY = "k3y-0f-the-node-provider-5ecret"


@pytest.fixture
def keyed_gateway(rpc_url) -> Iterator[str]:
    """A node URL as a provider hands it out (`http://host/v3/<key>`): an HTTP
    gateway in front of the test node that forwards every JSON-RPC call, except
    that it answers `502 Bad Gateway` to `eth_sendRawTransaction`, as a
    provider's gateway does when its backend is down."""
    with node_gateway(rpc_url, refuse=("eth_sendRawTransaction",)) as (url, _seen):
        yield f"{url}/v3/{PROVIDER_KEY}"


def test_relay_error__node_url_carries_a_key__error_is_stored_shown_and_logged_without_it(
        make_client, keyed_gateway, held_token, holder, recipient, transfer_body, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(rpc_url=keyed_gateway)

    response = client.post("/relay/transfers", json=transfer_body(holder, recipient, held_token))

    assert response.status_code == 202, response.text
    body = response.json()
    assert PROVIDER_KEY not in response.text
    for path in (f"/relay/{body['request_id']}", f"/relay/{body['tx_hash']}"):
        status = client.get(path)
        assert status.status_code == 200, status.text
        assert status.json()["error"] is not None and "502" in status.json()["error"]
        assert PROVIDER_KEY not in status.text
        assert "/v3/" not in status.text
    relayer = client.app.state.relayer
    with relayer.outbox._db.transaction() as tx:
        stored = tx.all("SELECT error FROM relay_requests")
    assert stored and all(PROVIDER_KEY not in (row["error"] or "") for row in stored)
    # The API's own log lines (an HTTP library's DEBUG lines are the operator's choice to enable).
    ours = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith("api"))
    assert "broadcast of" in ours and PROVIDER_KEY not in ours


def test_log_scrubbing__exception_quoting_the_node_url__traceback_logged_without_it(caplog):
    caplog.set_level(logging.DEBUG)
    worker_log = logging.getLogger("api.outbox")
    try:
        raise requests.HTTPError(f"502 Server Error: Bad Gateway for url: http://node.example/v3/{PROVIDER_KEY}")
    except requests.HTTPError:
        worker_log.exception("relay worker pass failed")

    assert "relay worker pass failed" in caplog.text and "HTTPError: 502 Server Error" in caplog.text
    assert PROVIDER_KEY not in caplog.text and "node.example" not in caplog.text
