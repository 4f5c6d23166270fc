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

import httpx
import pytest
from eth_account import Account
from relay_harness import (
    SCALE,
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
    expected = {c.address: FUNDS * SCALE for c in clients}
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


def test_custodial_retry__same_idempotency_key__answers_the_first_request_and_transfers_once(
        raw_chain, manifest, admin, merchant, relayer_keys, workdir):
    """Each try of a custodial action is signed anew (fresh nonce and deadline):
    the retry must still be recognised as the same request, not refused 409."""
    relay_db = workdir / "relay.sqlite"
    env = server_env(raw_chain.rpc_url, manifest.path, relayer_keys, relay_db=relay_db)
    with ApiServer(env, workdir / "api.log") as server, httpx.Client(timeout=30.0) as http:
        payer, payee = funded_clients(server.url, raw_chain, admin, merchant, 2)
        start_block = raw_chain.w3.eth.block_number + 1
        start_nonces = {a: raw_chain.nonce(a) for a in addresses(relayer_keys)}
        job = points_job(payer, payee.address, 7)

        first, retry = submit(http, server.url, job), submit(http, server.url, job)
        other = submit(http, server.url, Job(payer, {**job.body, "value": "8"}, key=job.key))

        assert (first.status_code, retry.status_code) == (202, 202)
        assert retry.request_id == first.request_id
        assert (other.status_code, other.body["error"]) == (409, "conflict")
        wait_final(server.url, [first.request_id])
        result = audit(raw_chain, [job], [first], outbox_rows(relay_db), start_block, start_nonces)
        assert_exactly_once(result, [job], server.log_tail())


#: SIGKILLs of the kill test, each at a random moment 0.1 to 1.0 s after the
#: server answered /health again.
KILLS = 12


@pytest.mark.slow
def test_relay__sigkilled_at_random_moments_and_restarted__every_request_ends_exactly_once_on_chain(
        raw_chain, manifest, admin, merchant, relayer_keys, workdir):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    relay_db = workdir / "relay.sqlite"
    env = server_env(raw_chain.rpc_url, manifest.path, relayer_keys, relay_db=relay_db)
    server = ApiServer(env, workdir / "api.log")
    server.start()
    try:
        server.wait_ready()
        clients = funded_clients(server.url, raw_chain, admin, merchant, 20)
        start_block = raw_chain.w3.eth.block_number + 1
        start_nonces = {a: raw_chain.nonce(a) for a in addresses(relayer_keys)}
        values, lock, stop = count(1), threading.Lock(), threading.Event()
        jobs: list[Job] = []
        outcomes: list[Outcome] = []

        def stream(index: int) -> None:
            """One client: a new request (its own key) as soon as the last was answered."""
            with httpx.Client(timeout=30.0) as http:
                turn = 0
                while not stop.is_set():
                    payer = clients[(index + turn) % len(clients)]
                    payee = clients[(index + turn + 1) % len(clients)]
                    turn += 1
                    with lock:
                        job = points_job(payer, payee.address, next(values))
                        jobs.append(job)
                    outcome = submit(http, server.url, job)
                    with lock:
                        outcomes.append(outcome)

        threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(12)]
        for thread in threads:
            thread.start()
        for _ in range(KILLS):  # the supervisor: wait until up, let it work a moment, kill, restart
            server.wait_ready()
            time.sleep(rng.uniform(0.1, 1.0))
            server.kill()
            server.start()
        server.wait_ready()
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        server.restart()  # once more with everything sent, then let it finish
        finals = wait_final(server.url, [o.request_id for o in outcomes if o.request_id], timeout=120)
        result = audit(raw_chain, jobs, outcomes, outbox_rows(relay_db), start_block, start_nonces)

        context = f"(random seed {seed}, {len(jobs)} requests)\n{server.log_tail()}"
        assert server.kills == KILLS + 1
        assert_exactly_once(result, jobs, context)
        assert sorted(b["status"] for b in finals.values()) == ["confirmed"] * len(jobs)
        assert_balances_add_up(raw_chain, clients, jobs)
        # The kills landed on requests in flight: some were answered only on a later try.
        assert any(o.attempts > 1 for o in outcomes), context
    finally:
        server.stop()


@pytest.mark.slow
def test_relay__two_instances_on_one_postgresql__share_the_key_pool_without_nonce_collision_or_gap(
        raw_chain, manifest, admin, merchant, relayer_keys, workdir, postgres_url):
    env = server_env(raw_chain.rpc_url, manifest.path, relayer_keys, database_url=postgres_url)
    first, second = ApiServer(dict(env), workdir / "api-1.log"), ApiServer(dict(env), workdir / "api-2.log")
    with first, second:
        clients = funded_clients(first.url, raw_chain, admin, merchant, 40)
        start_block = raw_chain.w3.eth.block_number + 1
        start_nonces = {a: raw_chain.nonce(a) for a in addresses(relayer_keys)}
        jobs = ring_jobs(clients, count(1), 400)

        # Alternate: every account's requests reach both instances.
        outcomes = submit_all(lambda i: (first.url, second.url)[i % 2], jobs, concurrency=32)
        finals = wait_final(second.url, [o.request_id for o in outcomes if o.request_id], timeout=180)
        rows = outbox_rows(database_url=postgres_url)
        result = audit(raw_chain, jobs, outcomes, rows, start_block, start_nonces)

        logs = f"{first.log_tail(40)}\n---- second\n{second.log_tail(40)}"
        assert_exactly_once(result, jobs, logs)
        assert sorted(b["status"] for b in finals.values()) == ["confirmed"] * len(jobs)
        assert_balances_add_up(raw_chain, clients, jobs)
        # Both instances' workers followed requests to the end (the last lease of each row).
        assert len({r["lease_owner"] for r in rows if r["lease_owner"]}) == 2, logs
