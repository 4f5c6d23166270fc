"""Two API instances on one PostgreSQL database, each running the follower
(``index_worker`` on): exactly one holds the lease and writes; when it is
SIGKILLed the other takes over within the lease time, catches up, and its
/health shows the index following."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
from ix_fixtures import wait_for
from psycopg.rows import dict_row
from relay_harness import ApiServer, server_env

from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from storage.db import Database

#: The throwaway PostgreSQL server and the indexer fixtures.
pytest_plugins = ["pg", "ix_fixtures"]

ADMIN_TOKEN = "failover-admin-token-" + "0" * 12
LEASE_SECONDS = 2.0
#: Rounds of two instances racing for a free lease.
ROUNDS = 60


def _lease(url: str, chain_id: int) -> tuple[str | None, str | None, int | None]:
    """(lease holder, the cursor's last writer, the cursor's block)."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        try:
            lease = conn.execute("SELECT holder, expires_at FROM ix_lease WHERE name = %s",
                                 (f"indexer:{chain_id}",)).fetchone()
            cursor = conn.execute("SELECT holder, block_number FROM ix_cursor WHERE chain_id = %s",
                                  (chain_id,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None, None, None
    live = lease if lease is not None and float(lease["expires_at"]) > time.time() else None
    return (live["holder"] if live else None, cursor["holder"] if cursor else None,
            int(cursor["block_number"]) if cursor else None)


def _pid(instance: str) -> int:
    return int(instance.split(":")[1])


def test_two_api_instances_on_postgresql__one_indexes__the_other_takes_over_when_it_dies(
        world, actors, signer, node_url, manifest, relayer, postgres_url, tmp_path, assert_equals_rebuild):
    chain_id = manifest.chain_id
    env = server_env(node_url, manifest.path, [relayer.private_key], database_url=postgres_url,
                     index_worker="true", index_lease_seconds=LEASE_SECONDS, index_poll_seconds=0.1,
                     admin_token=ADMIN_TOKEN)
    servers = [ApiServer(dict(env), tmp_path / f"api-{i}.log") for i in range(2)]
    for server in servers:
        server.start()
    try:
        for server in servers:
            server.wait_ready()
        head = int(signer.w3.eth.block_number)
        wait_for(lambda: _lease(postgres_url, chain_id)[2] == head, 60, "the index to reach the head")

        # Exactly one instance writes, while the chain moves on.
        writers, holders = set(), set()
        for serial in range(12, 17):
            signer.mine([[world.actions.transfer(world.token(serial), actors.winery, actors.holder)]])
            time.sleep(0.3)
            holder, writer, _ = _lease(postgres_url, chain_id)
            holders.add(holder)
            writers.add(writer)
        assert len(holders) == 1 and holders == writers, (holders, writers)
        (holder,) = holders
        by_pid = {server.process.pid: server for server in servers if server.process is not None}
        dead = by_pid[_pid(holder)]
        survivor = next(server for server in servers if server is not dead)

        dead.kill()
        killed_at = time.monotonic()
        head = signer.mine([[world.actions.issue_points(5 * 10**6)],
                            [world.actions.transfer(world.token(17), actors.winery, actors.recipient)]])
        new_holder = wait_for(lambda: (lambda h: h if h and h != holder else None)(_lease(postgres_url, chain_id)[0]),
                              LEASE_SECONDS + 10, "the survivor to take the lease")
        took_over = time.monotonic() - killed_at
        wait_for(lambda: _lease(postgres_url, chain_id)[2] == head, 30, "the survivor to catch up")
        with httpx.Client(base_url=survivor.url, timeout=10) as client:
            health = client.get("/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    finally:
        for server in servers:
            server.stop()

    assert _pid(new_holder) == survivor.process.pid
    # Within the lease (plus a poll and a step): the dead holder's lease ran out, nothing more.
    assert took_over < LEASE_SECONDS + 3.0, took_over
    assert health["index"]["state"] == "following", health
    assert health["index"]["holder"] == new_holder
    assert health["index"]["indexed_block"] >= head
    db = Database(postgres_url)
    try:
        assert_equals_rebuild(db, health["index"]["indexed_block"])
    finally:
        db.close()


def _race(racer: Indexer, i: int, barrier: threading.Barrier, held: list[bool]) -> None:
    barrier.wait()
    held[i] = racer.hold_lease()


def test_lease__two_instances_race_for_a_free_lease__exactly_one_gets_it(postgres_url, manifest, node_url):
    # Regression: both saw no lease row; the loser's INSERT did nothing, yet it
    # counted itself the holder (and could clear the index on a manifest change).
    dbs = [Database(postgres_url) for _ in range(2)]
    racers = [Indexer(db, Node(node_url), manifest, IndexConfig(instance=f"racer-{i}")) for i, db in enumerate(dbs)]
    try:
        for _ in range(ROUNDS):
            barrier = threading.Barrier(2)
            held: list[bool] = [False, False]

            threads = [threading.Thread(target=_race, args=(racers[i], i, barrier, held)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(held) == [False, True]
            racers[held.index(True)].release_lease()
    finally:
        for racer, db in zip(racers, dbs, strict=True):
            racer.node.close()
            db.close()
