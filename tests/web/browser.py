"""Driving the pages in a real browser: Debian's Chromium through Playwright, and the
test app served by uvicorn on a free port in a background thread.

Chromium is the system's (``/usr/bin/chromium``, installed by ``make test`` when
missing); Playwright's own browser download is never used. Screenshots go under
``build/screenshots/`` (kept out of git), as test artifacts to look at.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
#: Width x height of the two sizes every page is looked at.
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1 at a free port for the block; yields its base URL."""
    with _served(lambda base: app) as (_app, base):
        yield base


@contextmanager
def serve_settings(settings: Any) -> Iterator[tuple[Any, str]]:
    """The API app of ``settings`` served at a free port whose address is its public base URL
    (so the links and redirects it writes lead back to it); yields (app, base URL)."""
    from api.main import create_app

    with _served(lambda base: create_app(settings.model_copy(update={"public_base_url": base}))) as served:
        yield served


@contextmanager
def _served(make: Any) -> Iterator[tuple[Any, str]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make(base)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test app did not start")
        time.sleep(0.02)
    try:
        yield app, base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the block."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """A browser tab at one size that records every request and console error."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The pages (documents) the tab opened.
    documents: list[str] = field(default_factory=list)
    #: Sub-resources (stylesheets, images, icons) the server refused: "404 http://...".
    failed: list[str] = field(default_factory=list)


#: What the browser asks for on its own, not the page: base.html declares no icon, so Chromium tries this.
BROWSER_OWN = ("/favicon.ico",)


def _response(visit: Visit, response: Any) -> None:
    if response.request.resource_type == "document":
        visit.documents.append(response.url)
    elif response.status >= 400:
        visit.failed.append(f"{response.status} {response.url}")


def _console(visit: Visit, message: Any) -> None:
    # An error page's own status is reported too ("Failed to load resource: ... 404"): the test checks
    # the status itself, so only errors about anything else count.
    url = str(message.location.get("url", ""))
    if message.type == "error" and not url.endswith(BROWSER_OWN) and url not in visit.documents:
        visit.errors.append(f"{message.text} ({url})")


@contextmanager
def tab(browser: Browser, size: str, locale: str = "en-US") -> Iterator[Visit]:
    """A fresh context (no cookies, the size's viewport, the reader's ``locale``)."""
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height}, locale=locale,
                                  device_scale_factor=1, is_mobile=size == "phone", has_touch=size == "phone")
    page = context.new_page()
    visit = Visit(page)
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on("console", lambda message: _console(visit, message))
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    page.on("response", lambda response: _response(visit, response))
    try:
        yield visit
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page saved as ``build/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_up_in_browser(page: Page, base: str, identifier: str, password: str) -> None:
    """Create an account through the app's sign-up form, as a person would; the tab is then signed in."""
    page.goto(f"{base}/app/signup")
    page.get_by_label("Account name or email").fill(identifier)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("The same password again").fill(password)
    page.get_by_role("button", name="Create my account").click()
