"""The API's documentation pages, /docs (Swagger UI) and /redoc, work without
internet: every script, style sheet and icon they load is served by the API
itself, from the installed fastapi-offline package, not from a CDN."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings


class _Assets(HTMLParser):
    """Every URL an HTML page loads or links: src and href attributes, and the
    spec-url / url strings the page's own script passes on."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(relayer_private_key=None))) as c:
        yield c


def _assets(client: TestClient, page: str) -> list[str]:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(response.text)
    for host in ("cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com", "cdnjs"):
        assert host not in response.text, f"{page} loads from {host}"
    return parser.urls


@pytest.mark.parametrize("page, kinds", [
    ("/docs", {".js": "javascript", ".css": "text/css", ".png": "image/png"}),
    ("/redoc", {".js": "javascript", ".png": "image/png"}),
])
def test_docs_page__without_internet__loads_only_assets_the_api_serves(client, page, kinds):
    urls = _assets(client, page)

    assert {u[u.rindex("."):] for u in urls if "." in u.rsplit("/", 1)[-1]} >= set(kinds)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
        served = client.get(url)
        assert served.status_code == 200, url
        suffix = parts.path[parts.path.rindex("."):] if "." in parts.path.rsplit("/", 1)[-1] else None
        if suffix in kinds:
            assert kinds[suffix] in served.headers["content-type"], (url, served.headers["content-type"])
            assert len(served.content) > 1_000, url


def test_docs_page__swagger_ui__reads_the_apis_own_openapi_document(client):
    page = client.get("/docs").text

    assert "'/openapi.json'" in page or '"/openapi.json"' in page
    assert client.get("/openapi.json").json()["info"]["title"] == "Amphora API"
