"""Fixtures for the HTTP API tests: apps built on the test deployment, talking
web3 to the same anvil node Ape runs, so whatever the API sends is reverted
with the rest of each test's chain state.

Not a ``conftest.py``: the suite's test modules import ``conftest`` by name
(rootless "prepend" imports), and a second conftest would shadow the first.
Each API test module imports the fixtures it uses from here."""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from pydantic import SecretStr
from web3 import Web3

from amphora import lots
from amphora.demo import EXAMPLE_LOT
from api.main import create_app
from api.settings import Settings
from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from indexer.reader import IndexReader
from storage.db import Database

#: The demo's version 2 lot document: what the `issue_v2` builder starts from.
V2_DOCUMENT = json.loads(EXAMPLE_LOT.read_text())


def node_rpc(w3: Web3, method: str, *params):
    """One JSON-RPC call to the test node (anvil's own methods included); its result."""
    answer = w3.provider.make_request(method, list(params))
    assert "error" not in answer, answer
    return answer.get("result")



def until(predicate, timeout: float = 15.0, what: str = "condition"):
    """Poll ``predicate`` until it answers something true; that answer. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def idempotency_key(**headers: str) -> dict[str, str]:
    """A new action's headers: its own Idempotency-Key (required on custodial POSTs), plus ``headers``."""
    return {"Idempotency-Key": uuid.uuid4().hex, **headers}

@contextmanager
def manual_mining(w3: Web3) -> Iterator[None]:
    """Automine off for the block; on again whatever happens (the rest of the
    suite needs it)."""
    node_rpc(w3, "evm_setAutomine", False)
    try:
        yield
    finally:
        node_rpc(w3, "evm_setAutomine", True)


@contextmanager
def node_gateway(rpc_url: str, refuse: tuple[str, ...] = ()) -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP gateway in front of the test node, as a provider runs one: it
    records each HTTP request it gets (a JSON-RPC batch is one request) and
    forwards it, except that it answers `502 Bad Gateway` to a single call of a
    method in ``refuse`` (as a provider's gateway does when its backend is
    down). Yields (its URL, the request bodies seen)."""
    seen: list[bytes] = []
    session = requests.Session()

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(body)
            payload = json.loads(body)
            if isinstance(payload, dict) and payload.get("method") in refuse:
                self.send_response(502)
                self.end_headers()
                return
            answer = session.post(rpc_url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()

PUBLIC_BASE_URL = "https://verify.amphora.example"
#: Test-only secrets of the custodial accounts and the operator endpoints.
MASTER_KEY = "6d" * 32
ADMIN_TOKEN = "test-admin-token-" + "0" * 16
#: Test-only key that signs lender snapshots (not a relayer key, holds nothing).
SNAPSHOT_KEY = "0x" + "5a" * 32
PASSWORD = "correct horse battery staple"

#: One stablecoin unit per 10**6 (6 decimals); points have 18, so one stablecoin
#: unit issues SCALE points units.
USD = 10**6
SCALE = 10**12
#: What the test merchants may issue, and the stablecoin each holds.
MERCHANT_CAP = 1_000_000 * USD * SCALE
MERCHANT_FUNDS = 1_000 * USD


def outbox(w3: Web3, relayer) -> tuple[int, int]:
    """The relayer's nonce and the chain height: both unchanged when nothing was sent."""
    return w3.eth.get_transaction_count(relayer.address), w3.eth.block_number


@pytest.fixture(scope="session")
def public_base_url() -> str:
    return PUBLIC_BASE_URL


@pytest.fixture(scope="session")
def rpc_url(chain) -> str:
    return chain.provider.uri


@pytest.fixture(scope="session")
def w3(rpc_url) -> Web3:
    """A plain web3 view of the node, as an outside observer sees it."""
    return Web3(Web3.HTTPProvider(rpc_url))


@pytest.fixture(scope="session")
def index_file(tmp_path_factory) -> Path:
    """The SQLite file of the session's index, which every test app reads."""
    return tmp_path_factory.mktemp("index") / "index.sqlite"


@pytest.fixture(scope="session")
def shared_index(index_file, rpc_url, manifest) -> Iterator[Indexer]:
    """One follower for the whole session, in a thread, writing ``index_file``
    (as an indexer run as its own process would): the test apps only read it.
    Each test's chain is reverted after it (Ape's isolation), which the
    follower sees as reorgs; its window is wide enough to roll them back."""
    db = Database(sqlite_path=index_file)
    indexer = Indexer(db, Node(rpc_url), manifest,
                      IndexConfig(reorg_window=512, poll_seconds=0.02, lease_seconds=60))
    indexer.start()
    yield indexer
    indexer.stop()
    db.close()


def wait_indexed(w3: Web3, client: TestClient | None = None, timeout: float = 15.0) -> int:
    """Wait until the session's index holds the node's current head (same
    number, same hash); that block number."""
    reader = IndexReader(client.app.state.index.db) if client is not None else None
    assert reader is not None, "wait_indexed needs a client of an app reading the shared index"

    def caught_up() -> int | None:
        head = w3.eth.get_block("latest")
        status = reader.status(int(w3.eth.chain_id))
        if status.indexed_block == head["number"] and status.indexed_hash == head["hash"].to_0x_hex():
            return int(head["number"]) or -1
        return None

    return int(until(caught_up, timeout, "the index to reach the head"))


@pytest.fixture(scope="session")
def api_settings(rpc_url, manifest, relayer, public_base_url, shared_index, index_file) -> Settings:
    return Settings(
        index_worker=False,
        index_db=index_file,
        rpc_url=rpc_url,
        manifest_path=manifest.path,
        relayer_private_key=SecretStr(relayer.private_key),
        public_base_url=public_base_url,
        relay_gas_limit_cap=500_000,
        master_key=SecretStr(MASTER_KEY),
        admin_token=SecretStr(ADMIN_TOKEN),
        snapshot_signing_key=SecretStr(SNAPSHOT_KEY),
        # Cheap Argon2id for tests; the defaults are RFC 9106's low-memory profile.
        password_time_cost=1, password_memory_kib=64, password_parallelism=1,
        relay_poll_seconds=0.05,
    )


def sign_up(client: TestClient, identifier: str | None = None, password: str = PASSWORD) -> dict:
    """A new custodial account on ``client``'s app: the signup answer (with its
    session ``token`` and ``address``)."""
    response = client.post("/auth/signup", json={"identifier": identifier or f"user-{secrets.token_hex(6)}",
                                                 "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(client: TestClient, request_id: str, *statuses: str, timeout: float = 15.0) -> dict:
    """Poll ``GET /relay/{request_id}`` until its status is one of ``statuses``;
    the last body. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/relay/{request_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"request {request_id} still {body['status']} after {timeout} s (wanted {statuses}): {body}")
        time.sleep(0.05)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_client(api_settings) -> Iterator[Callable[..., TestClient]]:
    """Builder: a client of an app with the test settings, ``overrides`` applied,
    signed in as a fresh account (``auth=False``: anonymous)."""
    clients: list[TestClient] = []

    def _make(auth: bool = True, **overrides) -> TestClient:
        client = TestClient(create_app(api_settings.model_copy(update=overrides)))
        client.__enter__()
        clients.append(client)
        if auth:
            account = sign_up(client)
            client.headers["Authorization"] = f"Bearer {account['token']}"
            client.account = account  # type: ignore[attr-defined]
        return client

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def issue_v2(cert, winery, custodian, tmp_path) -> Callable[..., lots.IssuedLot]:
    """Builder: a version 2 lot of ``count`` bottles (the demo's document, ``changes`` applied) issued by the
    winery, its document deposited in ``tmp_path`` (a client's ``documents_dir``)."""

    def _issue(count: int = 5, **changes: object) -> lots.IssuedLot:
        fields = {**copy.deepcopy(V2_DOCUMENT), "bottle_count": count, "custodian": custodian.address, **changes}
        lot = lots.issue(cert, winery, lots.LotDescription.from_mapping(fields))
        lots.write_document(tmp_path / f"lot-{lot.lot_id}.json", lot.metadata)
        return lot

    return _issue


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def edited_manifest(manifest, tmp_path) -> Callable[..., Path]:
    """Builder: a copy of the test deployment's manifest with ``edit`` applied to
    its JSON (to play an older or stale deployment), for ``make_client(manifest_path=...)``."""

    def _edit(edit: Callable[[dict], None]) -> Path:
        data = json.loads(manifest.path.read_text())
        edit(data)
        path = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps(data))
        return path

    return _edit


# ---------------------------------------------------------------- tokens
# Named after the deployment, not `points`/`stablecoin`: the contract test
# modules have fixtures of those names for contracts they deploy themselves.


@pytest.fixture(scope="session")
def deployed_stablecoin(project, manifest):
    """The reference stablecoin (6 decimals) of the test deployment; its owner
    ``admin`` is its master minter."""
    return project.ReferenceStablecoin.at(manifest.address("Stablecoin"))


@pytest.fixture(scope="session")
def deployed_points(project, manifest):
    """The PointsToken (18 decimals, 1:1 to the stablecoin) of the test deployment."""
    return project.PointsToken.at(manifest.address("PointsToken"))


@pytest.fixture(scope="session")
def deployed_utility(project, manifest):
    """The UtilityToken of the test deployment; ``admin`` is a minter."""
    return project.UtilityToken.at(manifest.address("UtilityToken"))


@pytest.fixture
def mint_stablecoin(deployed_stablecoin, admin, minter) -> Callable[..., None]:
    """Builder: mint ``amount`` stablecoin units to ``account`` the way the fiat
    issuer does: the master minter (``admin``) configures ``minter``, who mints."""
    deployed_stablecoin.configureMinter(minter, 10**9 * USD, sender=admin)

    def _mint(account, amount: int) -> None:
        deployed_stablecoin.mint(account, amount, sender=minter)

    return _mint


@pytest.fixture
def points_merchants(deployed_points, deployed_stablecoin, mint_stablecoin, admin, merchant, other_merchant):
    """``merchant`` ("Wine Bar") and ``other_merchant`` ("Cellar Shop") registered
    on the points token, each holding MERCHANT_FUNDS stablecoin approved to it."""
    for account, name in ((merchant, "Wine Bar"), (other_merchant, "Cellar Shop")):
        deployed_points.register_merchant(account, name, MERCHANT_CAP, sender=admin)
        mint_stablecoin(account, MERCHANT_FUNDS)
        deployed_stablecoin.approve(deployed_points, MERCHANT_FUNDS, sender=account)
    return merchant, other_merchant


@pytest.fixture
def issue_points(deployed_points, points_merchants, merchant) -> Callable[..., object]:
    """Builder: ``issuer`` (default ``merchant``) issues the points worth
    ``stablecoin_amount`` to ``customer``; returns the receipt."""

    def _issue(customer, stablecoin_amount: int, issuer=None):
        return deployed_points.issue(customer, stablecoin_amount, sender=issuer or merchant)

    return _issue


# ---------------------------------------------------------------- relay


@pytest.fixture
def deadline(chain) -> int:
    return chain.pending_timestamp + 3_600


@pytest.fixture
def transfer_body(sign_transfer, deadline):
    """Builder: a relay request body signed by ``signer`` (default: the sender)."""

    def _body(sender, to, token_id: int, nonce: int = 0, deadline: int = deadline, signer=None) -> dict:
        signature = sign_transfer(signer or sender, sender.address, to.address, token_id, nonce, deadline)
        return {"from": sender.address, "to": to.address, "token_id": token_id, "nonce": nonce,
                "deadline": deadline, "signature": "0x" + signature.hex()}

    return _body
