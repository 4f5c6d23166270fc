"""What the page tests share: a browser-like client of a fresh app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

#: The public base URL of the page tests' apps (https: the session cookie is ``__Host-`` and ``Secure``).
BASE = "https://testserver"


@pytest.fixture
def make_browser(api_settings) -> Iterator[Any]:
    """Builder: a cookie-keeping client of a fresh app (settings ``overrides`` applied), anonymous,
    following no redirect. (``api_settings`` comes from the API fixtures each test module loads.)"""
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(api_settings.model_copy(update=overrides)), base_url=BASE,
                            follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)
