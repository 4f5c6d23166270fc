"""Scrubbing node URLs and credentials out of messages that are stored or shown.

A node URL often carries the provider's API key (``https://host/v3/<key>``,
``https://user:password@host``), and the HTTP libraries quote it in their
errors (``502 Server Error: Bad Gateway for url: https://host/v3/<key>``,
``HTTPConnectionPool(host=..., port=...): Max retries exceeded with url:
/v3/<key>``). Relay errors are public (``GET /relay/{id}`` answers anyone who
knows the id or the transaction hash), so every error text passes through
:func:`scrub` before it is stored, returned or logged.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "<redacted>"

#: Anything that looks like an absolute URL (``scheme://...``).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{},]+")
#: What urllib3 and requests say after a path: ``url: /v3/<key>``, ``for url: ...``.
_URL_FIELD = re.compile(r"(?i)\burl: *[^\s'\"<>()\[\]{},]+")


def secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that may be a credential: the whole URL, its user
    info, its path and its query (longest first)."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [url, url.rstrip("/")]
    if "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
    if parts.path.strip("/"):
        found.append(parts.path)
        found.append(parts.path.strip("/"))
    if parts.query:
        found.append(parts.query)
    return sorted({item for item in found if len(item) >= 4}, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """``text`` without any URL, ``url: ...`` field, or part of the ``urls``
    given (the configured node URLs) that could carry a credential."""
    for url in urls:
        for secret in secrets_of(url):
            text = text.replace(secret, REDACTED)
    text = _URL_FIELD.sub(f"url: {REDACTED}", text)
    return _URL.sub(REDACTED, text)


class ScrubFilter(logging.Filter):
    """A logger filter that scrubs URLs out of each record's message and
    traceback (an HTTP library's exception quotes the URL it failed on). Added
    to the loggers of the modules that talk to the node or to webhooks."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True
