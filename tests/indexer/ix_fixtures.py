"""Fixtures for the indexer's tests: followers on Ape's anvil, the chain driven
with transactions signed here (so a block can hold exactly the transactions a
test wants, mined with ``evm_mine``), and the comparison with a clean rebuild.

Not a ``conftest.py`` (see ``tests/api/api_fixtures.py``): a test module
declares ``pytest_plugins = ["ix_fixtures"]``."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from amphora import eip712
from amphora.manifest import Manifest
from indexer.check import compare, fresh_index
from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from storage.db import Database

USD = 10**6
GAS = 1_000_000
BOTTLING_DATE = 1_717_200_000


class Signer:
    """Plain web3 on the node: contracts from the manifest, transactions signed
    here as raw bytes (nonces read from the node for each batch), anvil's
    mining controls."""

    def __init__(self, rpc_url: str, manifest: Manifest) -> None:
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
        self.w3.middleware_onion.clear()
        self.manifest = manifest
        self.chain_id = manifest.chain_id
        self._nonces: dict[str, int] = {}

    def contract(self, name: str) -> Any:
        entry = self.manifest.contracts[name]
        return self.w3.eth.contract(address=Web3.to_checksum_address(entry["address"]), abi=entry["abi"])

    def rpc(self, method: str, *params: Any) -> Any:
        answer = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in answer, answer
        return answer.get("result")

    def sign(self, call: Any, key: str) -> str:
        """``call`` from ``key`` on its next nonce (counted here until :meth:`forget_nonces`)."""
        account = Account.from_key(key)
        nonce = self._nonces.get(account.address)
        if nonce is None:
            nonce = int(self.w3.eth.get_transaction_count(account.address, "pending"))
        self._nonces[account.address] = nonce + 1
        tx = {"chainId": self.chain_id, "to": call.address, "data": call._encode_transaction_data(), "value": 0,
              "gas": GAS, "nonce": nonce, "type": 2, "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9}
        return "0x" + bytes(Account.from_key(key).sign_transaction(tx).raw_transaction).hex()

    def forget_nonces(self) -> None:
        """After a revert the node's nonces went back: read them again."""
        self._nonces.clear()

    def mine(self, blocks: Sequence[Sequence[str]]) -> int:
        """Mine one block per entry of ``blocks`` holding exactly those raw
        transactions (an empty entry: an empty block), each of which must
        succeed; the new head."""
        self.rpc("evm_setAutomine", False)
        try:
            for raws in blocks:
                hashes = [self.w3.eth.send_raw_transaction(raw) for raw in raws]
                self.rpc("evm_mine")
                for tx_hash in hashes:
                    receipt = self.w3.eth.get_transaction_receipt(tx_hash)
                    assert receipt["status"] == 1, f"transaction {tx_hash.hex()} reverted"
        finally:
            self.rpc("evm_setAutomine", True)
        return int(self.w3.eth.block_number)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot: str) -> None:
        assert self.rpc("evm_revert", snapshot) is True
        self.forget_nonces()


@dataclass
class Actors:
    """The test accounts' keys by role."""

    admin: str
    winery: str
    custodian: str
    holder: str
    recipient: str
    borrower: str
    lender: str
    merchant: str
    customer: str

    @staticmethod
    def address(key: str) -> str:
        return str(Account.from_key(key).address)


class Actions:
    """The raw transactions of the events the read models follow."""

    def __init__(self, signer: Signer, actors: Actors) -> None:
        self.signer = signer
        self.actors = actors
        self.cert = signer.contract("WineCertificate")
        self.lending = signer.contract("PledgeLending")
        self.points = signer.contract("PointsToken")
        self.stablecoin = signer.contract("Stablecoin")

    def issue_lot(self, bottles: int, key: str | None = None) -> str:
        """A ``LotIssued`` (and ``ConsecutiveTransfer``) of ``bottles`` bottles."""
        call = self.cert.functions.issue_lot(
            Actors.address(self.actors.custodian), bottles, 2019, 750, BOTTLING_DATE, secrets.token_bytes(32),
            secrets.token_bytes(32), "Domaine Test", "Cuvée Réorg", "Pauillac AOC", "ipfs://bafyreorg")
        return self.signer.sign(call, key or self.actors.winery)

    def transfer(self, token_id: int, sender_key: str, to_key: str) -> str:
        call = self.cert.functions.transferFrom(Actors.address(sender_key), Actors.address(to_key), token_id)
        return self.signer.sign(call, sender_key)

    def accept_loan(self, lot_id: int, token_id: int, nonce: int | None = None) -> str:
        """The borrower takes a loan from the lender on ``token_id`` (``LoanStarted``, ``CertificatePledged``)."""
        now = int(self.signer.w3.eth.get_block("latest")["timestamp"])
        message = eip712.loan_offer_message(
            Actors.address(self.actors.lender), self.stablecoin.address, lot_id, token_id, 100 * USD, 105 * USD,
            30 * 86_400, 7 * 86_400, 0, now + 86_400, nonce if nonce is not None else secrets.randbits(64))
        signature = eip712.sign(eip712.lending_typed_data("LoanOffer", message, self.signer.chain_id,
                                                          self.lending.address), self.actors.lender)
        call = self.lending.functions.accept_offer(eip712.loan_offer_args(message), signature, token_id)
        return self.signer.sign(call, self.actors.borrower)

    def issue_points(self, stablecoin_amount: int, customer_key: str | None = None) -> str:
        """The merchant issues points to the customer (``PointsIssued``)."""
        call = self.points.functions.issue(Actors.address(customer_key or self.actors.customer), stablecoin_amount)
        return self.signer.sign(call, self.actors.merchant)

    def transfer_points(self, value: int, to: str) -> str:
        call = self.points.functions.transfer(to, value)
        return self.signer.sign(call, self.actors.customer)


@pytest.fixture(scope="session")
def node_url(chain) -> str:
    return str(chain.provider.uri)


@pytest.fixture(scope="session")
def actors(admin, winery, custodian, holder, recipient, borrower, lender, merchant, customer) -> Actors:
    return Actors(admin.private_key, winery.private_key, custodian.private_key, holder.private_key,
                  recipient.private_key, borrower.private_key, lender.private_key, merchant.private_key,
                  customer.private_key)


@pytest.fixture
def signer(node_url, manifest) -> Signer:
    return Signer(node_url, manifest)


@dataclass
class World:
    """What the actions need on chain: a lot whose bottles 1 to 5 the borrower
    holds, a lender with stablecoin approved to the lending contract, a
    registered merchant with stablecoin approved to the points token."""

    lot_id: int
    actions: Actions

    def token(self, serial: int) -> int:
        return (self.lot_id << 32) | serial


@pytest.fixture
def world(signer, actors) -> Iterator[World]:
    """The world, removed again after the test by reverting to a snapshot taken
    before it: Ape's own isolation does not undo what the test mined with raw
    transactions in every collection of modules (with tests/test_demo.py
    collected beside these, the next test found the merchant registered)."""
    before = signer.snapshot()
    yield _build_world(signer, actors)
    # The test may have reverted further back itself (dropping this snapshot): then nothing is left to undo.
    signer.rpc("evm_revert", before)
    signer.forget_nonces()


def _build_world(signer: Signer, actors: Actors) -> World:
    actions = Actions(signer, actors)
    admin, lender, merchant = actors.admin, actors.lender, actors.merchant
    stablecoin, points, lending = actions.stablecoin, actions.points, actions.lending
    big = 10**9 * USD
    signer.mine([
        [signer.sign(stablecoin.functions.configureMinter(Actors.address(admin), 10 * big), admin),
         actions.issue_lot(20)],
        [signer.sign(stablecoin.functions.mint(Actors.address(lender), big), admin),
         signer.sign(stablecoin.functions.mint(Actors.address(merchant), big), admin),
         signer.sign(points.functions.register_merchant(Actors.address(merchant), "Réorg Bar", 2**255), admin)],
        [signer.sign(stablecoin.functions.approve(lending.address, 2**256 - 1), lender),
         signer.sign(stablecoin.functions.approve(points.address, 2**256 - 1), merchant)],
    ])
    issued = last_lot(signer, actions)
    signer.mine([[actions.transfer((issued << 32) | s, actors.winery, actors.borrower) for s in range(1, 6)]])
    return World(issued, actions)


def last_lot(signer: Signer, actions: Actions) -> int:
    """The id of the last lot issued in the last 20 blocks."""
    logs = actions.cert.events.LotIssued().get_logs(from_block=max(0, signer.w3.eth.block_number - 20))
    return int(logs[-1]["args"]["lot_id"])


@pytest.fixture
def make_indexer(node_url, manifest, tmp_path) -> Iterator[Callable[..., Indexer]]:
    """Builder: a follower of the test node into a SQLite file of its own
    (``path``; default a new one), with ``config`` overrides."""
    made: list[tuple[Indexer, Database]] = []

    def _make(path: Path | None = None, **config: Any) -> Indexer:
        db = Database(sqlite_path=path or tmp_path / f"index-{len(made)}.sqlite")
        settings = {"reorg_window": 64, "poll_seconds": 0.02, "lease_seconds": 60.0, **config}
        indexer = Indexer(db, Node(node_url), manifest, IndexConfig(**settings))
        made.append((indexer, db))
        return indexer

    yield _make
    for indexer, db in made:
        indexer.stop()
        indexer.node.close()
        db.close()


@pytest.fixture
def assert_equals_rebuild(node_url, manifest) -> Callable[..., None]:
    """Check: the index in ``db`` ends at the node's head and holds exactly
    the rows a clean rebuild of the chain up to there holds."""

    def _check(db: Database, block: int | None = None) -> None:
        head = block if block is not None else int(Web3(HTTPProvider(node_url)).eth.block_number)
        fresh = fresh_index(node_url, manifest, head)
        try:
            differences = compare(db, fresh, manifest.chain_id, head)
        finally:
            fresh.close()
        assert differences == [], "\n".join(differences)

    return _check


def rows(db: Database, sql: str, *params: Any) -> list[dict[str, Any]]:
    with db.read() as tx:
        return tx.all(sql, params)


REPO = Path(__file__).resolve().parents[2]


def command_env(node_url: str, manifest: Manifest, index_db: Path | None = None, database_url: str | None = None,
                **settings: Any) -> dict[str, str]:
    """The environment of ``python -m indexer`` on the test node and deployment:
    the index in the SQLite file ``index_db`` or the PostgreSQL ``database_url``;
    ``settings`` adds ``AMPHORA_<NAME>`` by lower-case name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPHORA_") and k != "DATABASE_URL"}
    env.update({"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
                "AMPHORA_RPC_URL": node_url, "AMPHORA_MANIFEST_PATH": str(manifest.path)})
    if index_db is not None:
        env["AMPHORA_INDEX_DB"] = str(index_db)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    for name, value in settings.items():
        env[f"AMPHORA_{name.upper()}"] = str(value)
    return env


def indexer_command(env: dict[str, str], *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m indexer ARGS`` to its end."""
    return subprocess.run([sys.executable, "-m", "indexer", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_indexer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m indexer run`` in the background, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "indexer", "run"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it answers something true; that answer. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def cursor_block(db_path: Path, chain_id: int) -> int | None:
    """The index's last block in the SQLite file ``db_path``, read on a connection of its own."""
    if not db_path.exists():
        return None
    with closing(sqlite3.connect(db_path, timeout=30)) as conn:
        try:
            row = conn.execute("SELECT block_number FROM ix_cursor WHERE chain_id = ?", (chain_id,)).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return None
    return int(row[0]) if row else None
