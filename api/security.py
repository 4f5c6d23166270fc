"""Security headers on every response: :class:`SecurityHeaders`, a plain ASGI
middleware (one pass over the response headers; nothing to configure beyond
the docs pages' paths).

Every response gets:

* ``Content-Security-Policy``: nothing may load (``default-src 'none'``), no
  script runs, the only styles allowed are the pages' stylesheets served from
  this origin (``/static/*.css``; no page has an inline style or a ``style``
  attribute), images only from this origin or ``data:`` URIs; a page cannot
  be framed (``frame-ancestors 'none'``), ``base-uri`` is closed, and forms
  may post only to this origin (``form-action 'self'``: the holder's app
  under ``/app``);
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (the
  app's pages send ``same-origin`` instead: see :mod:`web.app.session`),
  ``X-Frame-Options: DENY`` (for browsers without ``frame-ancestors``) and
  ``Cross-Origin-Opener-Policy: same-origin``;
* ``Strict-Transport-Security`` when the public address is ``https://``.

The interactive API docs (``/docs``, ``/redoc``) are pages the app renders
itself, from no request input: their policy allows same-origin scripts and
styles, each inline ``<script>`` of the page by its hash (computed from the
page as served), and the origins the page itself names in ``src``/``href``
(so it works with its assets served locally or from a CDN). Inline styles
are allowed there only, since the docs' renderers inject them at run time.
A route that sets its own ``Content-Security-Policy`` keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

#: The policy of every response except the docs pages.
DEFAULT_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")

_COMMON: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000")

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.IGNORECASE | re.DOTALL)
_EXTERNAL = re.compile(rb"""\b(?:src|href)\s*=\s*["'](https?://[^/"'\s]+)""", re.IGNORECASE)


def sha256_source(content: bytes) -> str:
    """A CSP hash source (``sha256-<base64>``) of an inline element's exact content."""
    return "sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode()


def docs_csp(page: bytes) -> str:
    """The policy of a docs page: same origin, its inline scripts by hash, and
    the external origins the page names."""
    hashes = " ".join(f"'{sha256_source(script)}'" for script in _INLINE_SCRIPT.findall(page))
    origins = " ".join(sorted({origin.decode() for origin in _EXTERNAL.findall(page)}))
    return (f"default-src 'none'; script-src 'self' {hashes} {origins}; "
            f"style-src 'self' 'unsafe-inline' {origins}; img-src 'self' data: {origins}; "
            f"font-src 'self' data: {origins}; connect-src 'self'; worker-src 'self' blob:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'").replace("  ", " ")


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP response."""

    def __init__(self, app: Any, docs_paths: Iterable[str] = (), hsts: bool = False) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)
        self.common = _COMMON + ((_HSTS,) if hsts else ())

    def _headers(self, headers: list[tuple[bytes, bytes]], csp: str) -> list[tuple[bytes, bytes]]:
        present = {name.lower() for name, _ in headers}
        added = [(name, value) for name, value in (*self.common, (b"content-security-policy", csp.encode()))
                 if name not in present]
        return [*headers, *added]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in self.docs_paths:
            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = self._headers(list(message.get("headers", [])), DEFAULT_CSP)
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return
        # A docs page: its policy depends on its body, so hold the start until the body is complete.
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_docs(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                start["headers"] = self._headers(list(start.get("headers", [])), docs_csp(body))
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_docs)
