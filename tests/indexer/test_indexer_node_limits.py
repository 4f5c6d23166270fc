"""A node (or provider) that refuses ``eth_getLogs`` over more than a few
blocks: the follower pages down until the node answers, and the index is the
same as one built without the limit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from ix_fixtures import USD

from indexer.follower import Indexer
from indexer.node import Node

#: The indexer fixtures.
pytest_plugins = ["ix_fixtures"]

#: The provider's limit, as hosted providers word it.
MAX_RANGE = 2


@contextmanager
def range_limited_gateway(node_url: str, max_range: int) -> Iterator[tuple[str, list[int]]]:
    """An HTTP gateway in front of the test node that answers a JSON-RPC error
    to ``eth_getLogs`` over more than ``max_range`` blocks, as providers do.
    Yields its URL and the spans it refused."""
    refused: list[int] = []
    session = requests.Session()

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            payload = json.loads(body)
            calls = payload if isinstance(payload, list) else [payload]
            for call in calls:
                params = call.get("params") or [{}]
                if call.get("method") == "eth_getLogs" and "fromBlock" in params[0]:
                    span = int(params[0]["toBlock"], 16) - int(params[0]["fromBlock"], 16) + 1
                    if span > max_range:
                        refused.append(span)
                        error = {"jsonrpc": "2.0", "id": call.get("id"), "error": {
                            "code": -32005, "message": f"query exceeds max block range {max_range}"}}
                        self._answer(json.dumps(error if isinstance(payload, dict) else [error]).encode())
                        return
            answer = session.post(node_url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            self._answer(answer.content)

        def _answer(self, content: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", refused
    finally:
        server.shutdown()
        server.server_close()


def test_catch_up__node_refuses_wide_log_ranges__pages_down_and_misses_nothing(
        world, actors, signer, node_url, manifest, make_indexer, assert_equals_rebuild):
    actions = world.actions
    # Events spread over several blocks, so a page of MAX_RANGE blocks sees only some of them.
    signer.mine([[actions.transfer(world.token(8), actors.winery, actors.holder)], [],
                 [actions.issue_points(5 * USD)], [], [],
                 [actions.transfer(world.token(9), actors.winery, actors.recipient)]])
    follower = make_indexer(reorg_window=1, page_blocks=100)
    with range_limited_gateway(node_url, MAX_RANGE) as (url, refused):
        limited = Indexer(follower.db, Node(url), manifest, follower.config)
        limited.run_until_synced()
        limited.node.close()

    assert refused and max(refused) > MAX_RANGE  # it asked for more first, and was told no
    assert_equals_rebuild(follower.db)
