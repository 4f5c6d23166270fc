"""The relayer under load, under SIGKILL, and as two instances on one
PostgreSQL: the API runs as real ``uvicorn`` processes (``relay_harness``) on
Ape's anvil, custodial accounts pay each other points, and every test audits
the outbox and the chain: each request confirmed exactly once, each relayer
key's nonces without gap or repeat, the balances adding up.

These tests assert outcomes, never timings (``bench/relayer.py`` measures).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest
from eth_account import Account

from relay_harness import (
    ApiServer,
    Audit,
    Client,
    Job,
    Outcome,
    RawChain,
    audit,
    fresh_keys,
    fund_points,
    outbox_rows,
    points_job,
    server_env,
    sign_up,
    submit,
    submit_all,
    wait_final,
)

pytest_plugins = ["pg"]

USD = 10**6
#: Stablecoin units each account's points are worth: far more than it sends.
FUNDS = 1_000 * USD


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="relayload-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def raw_chain(chain, manifest) -> RawChain:
    return RawChain(chain.provider.uri, manifest.path)


@pytest.fixture
def relayer_keys(raw_chain, relayer) -> list[str]:
    """The service key and three fresh pool keys."""
    return [relayer.private_key, *fresh_keys(raw_chain, 3)]


def addresses(keys: list[str]) -> list[str]:
    return [Account.from_key(k).address for k in keys]


def funded_clients(server_url: str, raw_chain: RawChain, admin, merchant, count_: int) -> list[Client]:
    clients = sign_up(server_url, count_)
    fund_points(raw_chain, admin.private_key, merchant.private_key, [c.address for c in clients], FUNDS)
    return clients


def ring_jobs(clients: list[Client], values: Iterator[int], n: int) -> list[Job]:
    """``n`` transfers, account i paying account i + 1, each of its own value
    (so the audit can tell each one apart on chain)."""
    return [points_job(clients[i % len(clients)], clients[(i + 1) % len(clients)].address, next(values))
            for i in range(n)]


def assert_balances_add_up(raw_chain: RawChain, clients: list[Client], jobs: list[Job]) -> None:
    points = raw_chain.contract("PointsToken")
    expected = {c.address: FUNDS * 10**12 for c in clients}
    for job in jobs:
        value = int(job.body["value"])
        expected[job.client.address] -= value
        expected[job.body["to"]] += value
    actual = {a: int(points.functions.balanceOf(a).call()) for a in expected}
    assert actual == expected


def assert_exactly_once(result: Audit, jobs: list[Job], server_logs: str) -> None:
    assert result.problems == [], "\n".join(result.problems) + "\n---- API log tail\n" + server_logs
    assert (result.requests, result.stored, result.confirmed) == (len(jobs), len(jobs), len(jobs))
    assert result.lost == [] and result.duplicated == []


@pytest.mark.slow
def test_relay__1000_concurrent_transfers_from_50_accounts__each_confirmed_exactly_once_without_nonce_gap(
        raw_chain, manifest, admin, merchant, relayer_keys, workdir):
    relay_db = workdir / "relay.sqlite"
    env = server_env(raw_chain.rpc_url, manifest.path, relayer_keys, relay_db=relay_db)
    with ApiServer(env, workdir / "api.log") as server:
        clients = funded_clients(server.url, raw_chain, admin, merchant, 50)
        start_block = raw_chain.w3.eth.block_number + 1
        start_nonces = {a: raw_chain.nonce(a) for a in addresses(relayer_keys)}
        jobs = ring_jobs(clients, count(1), 1_000)

        outcomes = submit_all(server.url, jobs, concurrency=50)
        finals = wait_final(server.url, [o.request_id for o in outcomes if o.request_id], timeout=180)
        result = audit(raw_chain, jobs, outcomes, outbox_rows(relay_db), start_block, start_nonces)

        assert_exactly_once(result, jobs, server.log_tail())
        assert sorted(b["status"] for b in finals.values()) == ["confirmed"] * 1_000
        assert_balances_add_up(raw_chain, clients, jobs)
        # The pool was used: the 50 accounts' requests went out through more than one key.
        assert sum(1 for n in start_nonces if raw_chain.nonce(n) > start_nonces[n]) > 1
