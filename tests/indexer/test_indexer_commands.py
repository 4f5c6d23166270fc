"""``python -m indexer run | rebuild | check`` as an operator runs them: real
processes on the test node and a SQLite file."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from contextlib import closing

import pytest
from ix_fixtures import command_env, cursor_block, indexer_command, start_indexer, wait_for

from storage.db import Database

#: The indexer fixtures.
pytest_plugins = ["ix_fixtures"]


@pytest.fixture
def synced(world, make_indexer, tmp_path):
    """An index of the test chain, at the head, in ``tmp_path / index.sqlite``."""
    path = tmp_path / "index.sqlite"
    indexer = make_indexer(path)
    indexer.run_until_synced()
    indexer.release_lease()
    return path


def _sql(path, sql: str, *params) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


def test_check__index_equal_to_the_chain__exits_0(synced, node_url, manifest):
    result = indexer_command(command_env(node_url, manifest, synced), "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the index equals a fresh scan of the chain up to block" in result.stdout


def test_check__tampered_rows__exits_1_and_names_each_difference(synced, node_url, manifest, world, attacker):
    token = world.token(3)
    _sql(synced, "UPDATE ix_tokens SET owner = ? WHERE token_id = ?", attacker.address, str(token))
    _sql(synced, "DELETE FROM ix_events WHERE rowid = (SELECT MAX(rowid) FROM ix_events WHERE event = 'LotIssued')")
    _sql(synced, "UPDATE ix_merchants SET points_issued = '1'")

    result = indexer_command(command_env(node_url, manifest, synced), "check")

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"certificate {token} (lot {world.lot_id}, bottle 3): owner is '{attacker.address}' in the index" in out
    assert "the LotIssued event of WineCertificate in block" in out and "is in a fresh scan but not in the index" \
        in out
    assert "merchant " in out and "points_issued is '1' in the index" in out
    assert "differences between the index and a fresh scan" in out


def test_rebuild__from_a_block__reindexes_from_there_and_repairs_what_was_lost(synced, node_url, manifest,
                                                                              assert_equals_rebuild):
    with closing(sqlite3.connect(synced)) as conn:
        block = conn.execute("SELECT MAX(block_number) FROM ix_events WHERE event = 'LotIssued'").fetchone()[0]
    _sql(synced, "DELETE FROM ix_events WHERE block_number >= ?", block)
    env = command_env(node_url, manifest, synced)
    assert indexer_command(env, "check").returncode == 1

    result = indexer_command(env, "rebuild", "--from-block", str(block))

    assert result.returncode == 0, result.stdout + result.stderr
    assert indexer_command(env, "check").returncode == 0
    db = Database(sqlite_path=synced)
    try:
        assert_equals_rebuild(db)
    finally:
        db.close()


def test_rebuild__lease_held_by_a_live_follower__take_over_rebuilds_anyway(synced, node_url, manifest,
                                                                          make_indexer):
    follower = make_indexer(synced, instance="live-follower", lease_seconds=600)
    follower.hold_lease()
    env = command_env(node_url, manifest, synced)

    result = indexer_command(env, "rebuild", "--from-block", "0", "--take-over")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "taking the lease from live-follower" in result.stderr
    assert follower.lease_holder() is None  # released at the end of the rebuild
    assert follower.step() is True


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run__signal__stops_cleanly_and_releases_the_lease(stop, world, node_url, manifest, tmp_path):
    path = tmp_path / "index.sqlite"
    env = command_env(node_url, manifest, path, index_poll_seconds=0.05)
    head = int(world.actions.signer.w3.eth.block_number)
    process = start_indexer(env, tmp_path / "indexer.log")
    try:
        wait_for(lambda: (cursor_block(path, manifest.chain_id) or -1) >= head, 60, "the indexer to reach the head")
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM ix_lease").fetchone()[0] == 1
        process.send_signal(stop)
        assert process.wait(timeout=20) == 0, (tmp_path / "indexer.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ix_lease").fetchone()[0] == 0
    assert "stopped; lease released" in (tmp_path / "indexer.log").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["run"], "no database for the index"),
    (["rebuild", "--from-block", "-1"], "--from-block must be 0 or more"),
])
def test_command__unusable_configuration__exits_2_with_the_reason(args, message, node_url, manifest, tmp_path):
    env = command_env(node_url, manifest, None if args == ["run"] else tmp_path / "index.sqlite")

    result = indexer_command(env, *args)

    assert result.returncode == 2
    assert message in result.stderr


def test_rebuild__from_a_block_beyond_the_index__skips_nothing(world, actors, signer, make_indexer,
                                                              assert_equals_rebuild):
    # Regression: the cursor jumped to the block before `from_block`, so the
    # blocks between the index's end and it were never ingested.
    indexer = make_indexer()
    indexer.run_until_synced()
    indexed = indexer.cursor().number
    head = signer.mine([[world.actions.transfer(world.token(18), actors.winery, actors.holder)],
                        [world.actions.issue_points(9)], [], []])

    indexer.rebuild(from_block=head)

    assert indexer.cursor().number == indexed
    indexer.run_until_synced()
    assert_equals_rebuild(indexer.db, head)


def test_check__index_left_on_a_dropped_branch__exits_1_naming_the_block_and_the_stale_rows(
        world, actors, signer, make_indexer, tmp_path, node_url, manifest):
    path = tmp_path / "index.sqlite"
    indexer = make_indexer(path)
    indexer.run_until_synced()
    fork = signer.snapshot()
    signer.mine([[world.actions.issue_points(11)], [world.actions.transfer(world.token(15), actors.winery,
                                                                             actors.holder)]])
    indexer.run_until_synced()
    indexer.release_lease()
    signer.revert(fork)
    head = signer.mine([[], []])  # as long, other blocks: the index was not told

    result = indexer_command(command_env(node_url, manifest, path), "check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"block {head} is 0x" in result.stdout and "in the index but 0x" in result.stdout
    assert "the PointsIssued event of PointsToken in block" in result.stdout
    assert (f"certificate {world.token(15)} (lot {world.lot_id}, bottle 15) is in the index but not in a fresh scan"
            in result.stdout)


def test_check__while_the_follower_writes_a_moving_chain__compares_one_snapshot_and_exits_0(
        world, signer, make_indexer, tmp_path, node_url, manifest):
    path = tmp_path / "index.sqlite"
    follower = make_indexer(path, poll_seconds=0.01)
    follower.run_until_synced()
    follower.start()
    done = threading.Event()

    def traffic() -> None:  # a block of points every 50 ms, until the check ends
        while not done.is_set():
            signer.mine([[world.actions.issue_points(1)]])
            time.sleep(0.05)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        result = indexer_command(command_env(node_url, manifest, path), "check")
    finally:
        done.set()
        thread.join()
        follower.stop()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the index equals a fresh scan of the chain up to block" in result.stdout
