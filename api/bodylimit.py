"""The request-body size limit, for every route, before any parsing.

:class:`BodySizeLimit` is plain ASGI middleware in front of the whole app. A
declared ``Content-Length`` above the limit is refused at once; otherwise the
body is read as it arrives (chunked bodies have no ``Content-Length``) and
refused as soon as it passes the limit, so an anonymous client can make the
server hold at most ``max_bytes`` of its body. A body within the limit is
handed on to the app unchanged. Refusals are 413 ``payload_too_large``.

A few upload routes (a cellar's scanned storage report) take a larger body,
``upload_max_bytes``, and only from a request that carries a credential (a
bearer token or the app's session cookie): an anonymous client can still make
the server hold no more than ``max_bytes``. Whether the credential is valid is
the route's business, after the body; the larger limit only needs it present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge, error_body_response

#: An upload route: its method and a pattern its whole path matches.
Upload = tuple[str, "re.Pattern[str]"]


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413 (``upload_max_bytes``
    on the ``uploads`` routes, for a request with a credential)."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, uploads: Sequence[Upload] = (),
                 upload_max_bytes: int = 0, credential_cookies: Sequence[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = tuple(uploads)
        self.upload_max_bytes = max(upload_max_bytes, max_bytes)
        self.credential_cookies = tuple(name.encode() + b"=" for name in credential_cookies)

    def limit_for(self, scope: Scope, headers: dict[bytes, bytes]) -> int:
        """The limit of this request: the upload limit on an upload route for a request that
        carries a bearer token or a credential cookie, else ``max_bytes``."""
        method, path = scope.get("method", ""), scope.get("path", "")
        if not any(method == m and pattern.fullmatch(path) for m, pattern in self.uploads):
            return self.max_bytes
        bearer = headers.get(b"authorization", b"").lower().startswith(b"bearer ")
        cookies = headers.get(b"cookie", b"")
        if bearer or any(name in cookies for name in self.credential_cookies):
            return self.upload_max_bytes
        return self.max_bytes

    @staticmethod
    def _too_large(what: str, limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body {what}: at most {limit} bytes are accepted")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.limit_for(scope, headers)
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await error_body_response(self._too_large(f"of {int(declared)} bytes", limit))(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await error_body_response(self._too_large("too large", limit))(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


__all__ = ["BodySizeLimit"]
