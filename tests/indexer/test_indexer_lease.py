"""One indexer at a time: the lease, its fencing of a stalled instance, and
what /health says when the follower stops writing."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from ix_fixtures import rows
from pydantic import SecretStr

from api.main import create_app
from api.settings import Settings
from indexer.follower import LeaseLost
from indexer.node import Node, NodeError

#: The indexer fixtures.
pytest_plugins = ["ix_fixtures"]

ADMIN_TOKEN = "indexer-test-admin-token-" + "0" * 8
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class StallingNode(Node):
    """A node whose first answer to ``head()`` comes only after ``stall`` ran
    (an instance paused by a long GC, a frozen VM, a slow node)."""

    def __init__(self, url: str, stall) -> None:
        super().__init__(url)
        self._stall = stall

    def head(self) -> int:
        if self._stall is not None:
            stall, self._stall = self._stall, None
            stall()
        return super().head()


def _events(db, chain_id: int) -> int:
    return int(rows(db, "SELECT COUNT(*) AS n FROM ix_events WHERE chain_id = ?", chain_id)[0]["n"])


def test_lease__held_by_a_live_instance__the_other_only_reads(world, make_indexer, tmp_path, signer, actors,
                                                               manifest):
    path = tmp_path / "shared.sqlite"
    first = make_indexer(path, instance="first")
    second = make_indexer(path, instance="second")
    first.run_until_synced()
    head = signer.mine([[world.actions.transfer(world.token(12), actors.winery, actors.holder)]])

    assert second.step() is False
    assert second.cursor().number < head
    assert first.lease_holder() == "first"
    assert first.step() is True
    assert first.cursor().number == head


def test_fencing__lease_taken_while_the_holder_stalled__it_writes_nothing_and_stands_aside(
        world, make_indexer, tmp_path, signer, actors, node_url, manifest, assert_equals_rebuild):
    path = tmp_path / "shared.sqlite"
    stalled = make_indexer(path, instance="stalled", lease_seconds=0.5)
    successor = make_indexer(path, instance="successor", lease_seconds=30)
    stalled.run_until_synced()
    head = signer.mine([[world.actions.transfer(world.token(13), actors.winery, actors.holder)],
                        [world.actions.issue_points(7)]])
    before, events_before = stalled.cursor(), _events(stalled.db, manifest.chain_id)

    def lease_expires_and_is_taken() -> None:
        time.sleep(0.6)
        assert successor.hold_lease() is True

    stalled.node = StallingNode(node_url, lease_expires_and_is_taken)
    with pytest.raises(LeaseLost):
        stalled.step()

    assert stalled.cursor() == before
    assert _events(stalled.db, manifest.chain_id) == events_before
    assert stalled.step() is False  # it waits while the successor's lease lives
    successor.run_until_synced()
    assert successor.cursor().number == head
    assert successor.lease_holder() == "successor"
    assert_equals_rebuild(successor.db, head)


def test_take_lease__an_operator_takes_it_from_a_live_holder__the_holder_is_fenced(
        world, make_indexer, tmp_path, signer, actors):
    path = tmp_path / "shared.sqlite"
    holder = make_indexer(path, instance="holder")
    operator = make_indexer(path, instance="operator")
    holder.run_until_synced()
    signer.mine([[world.actions.transfer(world.token(14), actors.winery, actors.holder)]])

    operator.take_lease()

    assert holder.step() is False
    assert operator.lease_holder() == "operator"
    operator.release_lease()
    assert holder.step() is True


def _health_app(node_url: str, manifest, index_db) -> TestClient:
    return TestClient(create_app(Settings(
        index_worker=False, index_db=index_db, rpc_url=node_url, manifest_path=manifest.path,
        admin_token=SecretStr(ADMIN_TOKEN), index_max_lag_blocks=2)))


def test_health__follower_stops_writing__stopped_and_degraded(world, make_indexer, tmp_path, node_url, manifest,
                                                               monkeypatch):
    monkeypatch.setattr("indexer.reader.STALE_SECONDS", 1.0)
    path = tmp_path / "index.sqlite"
    follower = make_indexer(path, poll_seconds=0.05)
    follower.run_until_synced()
    follower.start()
    with _health_app(node_url, manifest, path) as client:
        following = client.get("/health", headers=OPERATOR).json()
        follower.stop()  # the process died: nothing writes any more
        time.sleep(1.2)
        stopped = client.get("/health", headers=OPERATOR).json()
        public = client.get("/health").json()

    assert following["status"] == "ok"
    assert following["index"]["state"] == "following"
    assert following["index"]["holder"] == follower.config.instance
    assert stopped["status"] == "degraded"
    assert stopped["index"]["state"] == "stopped"
    assert public == {"status": "degraded"}


class FailingNode(Node):
    """A node that stops answering log queries after ``answers`` of them."""

    def __init__(self, url: str, answers: int) -> None:
        super().__init__(url)
        self.answers = answers

    def logs_of_block(self, addresses, block_hash):
        if self.answers <= 0:
            raise NodeError("the node went away")
        self.answers -= 1
        return super().logs_of_block(addresses, block_hash)


def test_health__follower_lagging__behind_and_degraded(world, make_indexer, tmp_path, node_url, manifest, signer):
    path = tmp_path / "index.sqlite"
    follower = make_indexer(path)
    follower.run_until_synced()
    head = signer.mine([[] for _ in range(5)])
    follower.node = FailingNode(node_url, answers=1)
    with pytest.raises(NodeError):
        follower.step()  # one block indexed, then the node failed
    with _health_app(node_url, manifest, path) as client:
        body = client.get("/health", headers=OPERATOR).json()

    assert body["index"]["state"] == "behind"
    assert body["index"]["head_block"] == head
    assert body["index"]["lag"] == 4
    assert body["status"] == "degraded"


class SlowNode(Node):
    """A node that takes ``delay`` seconds over each log query."""

    def __init__(self, url: str, delay: float) -> None:
        super().__init__(url)
        self.delay = delay

    def logs(self, addresses, from_block, to_block):
        time.sleep(self.delay)
        return super().logs(addresses, from_block, to_block)


def test_lease__catch_up_longer_than_the_lease__the_busy_holder_keeps_it(world, make_indexer, tmp_path, node_url,
                                                                         signer):
    # Regression: the lease was renewed only at the start of a step, so a
    # catch-up longer than the lease lost it half-way to any waiting instance.
    path = tmp_path / "shared.sqlite"
    busy = make_indexer(path, instance="busy", lease_seconds=0.5, reorg_window=1, page_blocks=1, page_logs=1)
    rival = make_indexer(path, instance="rival", lease_seconds=0.5)
    busy.node = SlowNode(node_url, delay=0.05)
    signer.mine([[] for _ in range(40)])  # at least 40 pages of one block to catch up
    taken: list[bool] = []
    done = threading.Event()

    def rival_tries() -> None:
        while not done.is_set():
            taken.append(rival.hold_lease())
            time.sleep(0.05)

    started = time.monotonic()
    assert busy.hold_lease()
    thread = threading.Thread(target=rival_tries)
    thread.start()
    try:
        busy.step()
    finally:
        done.set()
        thread.join()

    assert time.monotonic() - started > 1.0  # several leases long
    assert busy.cursor().number == int(signer.w3.eth.block_number)
    assert taken and not any(taken)
