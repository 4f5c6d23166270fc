"""The relayer's webhook: always signed with a timestamp (a replay window), a
bounded queue, and never its URL in a log line."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from api.main import create_app
from api.outbox import RelayRecord, record_json
from api.settings import Settings
from api.webhooks import Webhook, sign, verify

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

SECRET = b"hook-secret"
URL_TOKEN = "t0ken-in-the-hook-url"


def _record(n: int = 0, status: str = "sent") -> RelayRecord:
    return RelayRecord(request_id=f"req-{n}", account="acct", kind="transfer", actor="0x" + "11" * 20,
                       description="a transfer", status=status, relayer="0x" + "22" * 20, nonce=n,
                       tx_hash=None, block_number=None, block_hash=None, gas_used=None, confirmations=0,
                       replacements=0, error=None, created_at=0.0, updated_at=0.0)


def test_webhook_settings__url_without_secret__refused_at_startup():
    with pytest.raises(ValidationError, match="relay_webhook_secret"):
        Settings(relay_webhook_url="https://hooks.example/amphora")


def test_webhook_relayer__url_without_secret__refused(api_settings):
    settings = api_settings.model_copy(update={"relay_webhook_url": "https://hooks.example/amphora",
                                               "relay_webhook_secret": None})
    with pytest.raises(ValueError, match="always signed"):
        create_app(settings)


def test_webhook_signature__covers_timestamp_and_body__refused_outside_the_replay_window():
    body = record_json(_record()).encode()
    now = 1_800_000_000
    header = sign(SECRET, body, now)

    assert header.startswith(f"t={now},sha256=")
    assert verify(SECRET, body, header, tolerance_seconds=300, now=now + 299)
    assert not verify(SECRET, body, header, tolerance_seconds=300, now=now + 301)  # a replay, later
    assert not verify(SECRET, body + b" ", header, now=now)  # another body
    assert not verify(b"other-secret", body, header, now=now)
    forged = header.replace(f"t={now}", f"t={now + 1000}")  # a fresh timestamp on an old signature
    assert not verify(SECRET, body, forged, now=now + 1000)


class _SlowHook(BaseHTTPRequestHandler):
    release = threading.Event()
    received: list[tuple[bytes, str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).release.wait(10)
        type(self).received.append((body, self.headers.get("X-Amphora-Signature", ""),
                                    self.headers.get("X-Amphora-Timestamp", "")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_queue__receiver_stalls__queue_stays_bounded_and_pushes_are_signed_with_a_timestamp():
    _SlowHook.release = threading.Event()
    _SlowHook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = Webhook(f"http://127.0.0.1:{server.server_port}/hook", SECRET, max_queue=3)
    try:
        for n in range(50):
            hook.push(_record(n))
        assert hook._queue.qsize() <= 3
        assert hook.dropped >= 50 - 3 - 1  # at most 3 waiting and 1 in delivery
        _SlowHook.release.set()
        deadline = time.monotonic() + 10
        while len(_SlowHook.received) < 50 - hook.dropped and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hook.close()
        server.shutdown()

    assert len(_SlowHook.received) == 50 - hook.dropped
    for body, signature, timestamp in _SlowHook.received:
        assert signature.startswith(f"t={timestamp},")
        assert verify(SECRET, body, signature)


def test_webhook_logs__receiver_unreachable__url_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    hook = Webhook(f"http://127.0.0.1:9/hooks/{URL_TOKEN}", SECRET)  # the discard port: refused
    hook.push(_record())
    deadline = time.monotonic() + 10
    while "gave up" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    hook.close()

    assert "gave up" in caplog.text
    assert URL_TOKEN not in caplog.text and "127.0.0.1:9" not in caplog.text
