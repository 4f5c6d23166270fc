"""The relayer's webhook: each status change of a relayed request, pushed to
the operator's URL.

Every push is signed (a URL without a secret is refused at startup):

* ``X-Amphora-Timestamp: <unix seconds>`` when the push was signed;
* ``X-Amphora-Signature: t=<timestamp>,sha256=<hex>``, the HMAC-SHA256 under
  ``AMPHORA_RELAY_WEBHOOK_SECRET`` of ``"<timestamp>." + body``.

A receiver recomputes the HMAC (:func:`verify`), compares in constant time, and
refuses a timestamp more than ``relay_webhook_tolerance_seconds`` (default 300)
from its own clock, so a captured push cannot be replayed later. Within the
window a receiver that must never act twice deduplicates by
``(request_id, status)``, which the body carries.

Pushes wait in a bounded queue (``relay_webhook_queue_size``, default 1000) for
one background thread: when the receiver is slow or down and the queue is full,
new pushes are dropped and counted, never piling up in memory. Best effort
(three tries each): ``GET /relay/{request_id}`` is the record. The URL is never
logged (it may carry a token).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import time

import httpx

from api.outbox import RelayRecord, record_json
from api.redact import ScrubFilter

logger = logging.getLogger(__name__)
logger.addFilter(ScrubFilter())  # node and webhook URLs carry credentials: never log one

SIGNATURE_HEADER = "X-Amphora-Signature"
TIMESTAMP_HEADER = "X-Amphora-Timestamp"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Amphora-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={mac}"


def verify(secret: bytes, body: bytes, header: str, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """Whether ``header`` (``X-Amphora-Signature``) signs ``body`` under ``secret``
    within ``tolerance_seconds`` of ``now``: what a receiver checks."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    at = time.time() if now is None else now
    if abs(at - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class Webhook:
    """Pushes each status change to ``url`` from a background thread, signed,
    through a queue of at most ``max_queue`` pushes."""

    def __init__(self, url: str, secret: bytes, max_queue: int = 1000, timeout: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="relay-webhook", daemon=True)
        self._thread.start()

    def push(self, record: RelayRecord) -> None:
        """Queue ``record``'s push; dropped (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(record_json(record))
        except queue.Full:
            self.dropped += 1
            logger.warning("webhook queue full: dropped the push of %s %s (%d dropped so far)",
                           record.request_id, record.status, self.dropped)

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:  # the worker is stuck on a slow receiver: it is a daemon thread
            pass
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while (body := self._queue.get()) is not None:
                self._deliver(client, body.encode())

    def _deliver(self, client: httpx.Client, body: bytes) -> None:
        for _attempt in range(3):
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
                       SIGNATURE_HEADER: sign(self._secret, body, timestamp)}
            try:
                if client.post(self._url, content=body, headers=headers).status_code < 500:
                    return
            except httpx.HTTPError as err:
                logger.warning("webhook delivery failed: %s", type(err).__name__)
        logger.error("webhook: gave up on %s", body.decode())
