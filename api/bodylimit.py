"""The request-body size limit, for every route, before any parsing.

:class:`BodySizeLimit` is plain ASGI middleware in front of the whole app. A
declared ``Content-Length`` above the limit is refused at once; otherwise the
body is read as it arrives (chunked bodies have no ``Content-Length``) and
refused as soon as it passes the limit, so an anonymous client can make the
server hold at most ``max_bytes`` of its body. A body within the limit is
handed on to the app unchanged. Refusals are 413 ``payload_too_large``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge, error_body_response


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, what: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body {what}: at most {self.max_bytes} bytes are accepted")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await error_body_response(self._too_large(f"of {int(declared)} bytes"))(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await error_body_response(self._too_large("too large"))(scope, receive, send)
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
