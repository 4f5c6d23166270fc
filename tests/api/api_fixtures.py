"""Fixtures for the HTTP API tests: apps built on the test deployment, talking
web3 to the same anvil node Ape runs, so whatever the API sends is reverted
with the rest of each test's chain state.

Not a ``conftest.py``: the suite's test modules import ``conftest`` by name
(rootless "prepend" imports), and a second conftest would shadow the first.
Each API test module imports the fixtures it uses from here."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from web3 import Web3

from api.main import create_app
from api.settings import Settings

PUBLIC_BASE_URL = "https://verify.amphora.example"


@pytest.fixture(scope="session")
def public_base_url() -> str:
    return PUBLIC_BASE_URL


@pytest.fixture(scope="session")
def rpc_url(chain) -> str:
    return chain.provider.uri


@pytest.fixture(scope="session")
def w3(rpc_url) -> Web3:
    """A plain web3 view of the node, as an outside observer sees it."""
    return Web3(Web3.HTTPProvider(rpc_url))


@pytest.fixture(scope="session")
def api_settings(rpc_url, manifest, relayer, public_base_url) -> Settings:
    return Settings(
        rpc_url=rpc_url,
        manifest_path=manifest.path,
        relayer_private_key=SecretStr(relayer.private_key),
        public_base_url=public_base_url,
        relay_gas_limit_cap=500_000,
    )


@pytest.fixture
def make_client(api_settings) -> Iterator[Callable[..., TestClient]]:
    """Builder: a client of an app with the test settings, ``overrides`` applied."""
    clients: list[TestClient] = []

    def _make(**overrides) -> TestClient:
        client = TestClient(create_app(api_settings.model_copy(update=overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
