"""SIGKILL at random moments: ``python -m indexer run`` ingests a chain that
keeps growing (blocks of pre-signed certificate sales and points issuances),
is killed without warning at least 20 times, each time while it is writing,
and restarted; in the end its tables hold every event once and equal a clean
rebuild."""

from __future__ import annotations

import os
import random
import signal
import threading

from ix_fixtures import USD, command_env, cursor_block, last_lot, rows, start_indexer, wait_for

from indexer.events import Decoder
from storage.db import Database

#: The indexer fixtures.
pytest_plugins = ["ix_fixtures"]

KILLS = 12
#: Transactions per block of the background traffic, and the pause between blocks.
PER_BLOCK, PAUSE = 12, 0.05


class Traffic(threading.Thread):
    """Blocks of sales from the winery's big lot and points issuances, mined
    one after another until :meth:`stop`."""

    def __init__(self, world, actors, lot_id: int) -> None:
        super().__init__(name="traffic", daemon=True)
        self.world, self.actors, self.lot_id = world, actors, lot_id
        self.buyers = [actors.holder, actors.recipient, actors.customer, actors.borrower]
        self.sent = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        actions = self.world.actions
        serial = 1
        try:
            while not self._halt.is_set():
                block = []
                for _ in range(PER_BLOCK):
                    if serial % 5 == 0:
                        block.append(actions.issue_points(serial * USD // 100))
                    else:
                        buyer = self.buyers[serial % len(self.buyers)]
                        block.append(actions.transfer((self.lot_id << 32) | serial, self.actors.winery, buyer))
                    serial += 1
                actions.signer.mine([block])
                self.sent += len(block)
                self._halt.wait(PAUSE)
        except BaseException as err:  # noqa: BLE001 (reported by the test)
            self.error = err

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def test_sigkill__a_dozen_times_while_ingesting_a_busy_chain__no_row_lost_or_duplicated(
        world, actors, signer, node_url, manifest, tmp_path, assert_equals_rebuild):
    rng = random.Random(1313)
    signer.mine([[world.actions.issue_lot(50_000)]])
    lot_id = last_lot(signer, world.actions)
    path, log = tmp_path / "index.sqlite", tmp_path / "indexer.log"
    # A short window and lease: a restarted indexer pages through what it
    # missed, then follows block by block; the dead one's lease ends quickly.
    env = command_env(node_url, manifest, path, index_reorg_window=8, index_poll_seconds=0.05,
                      index_lease_seconds=0.5)
    chain_id = manifest.chain_id
    traffic = Traffic(world, actors, lot_id)
    traffic.start()
    kills = 0
    try:
        while kills < KILLS:
            before = cursor_block(path, chain_id) or -1
            process = start_indexer(env, log)
            try:
                # Wait until it writes, then kill it at a random moment of its work.
                wait_for(lambda: (cursor_block(path, chain_id) or -1) > before or process.poll() is not None,  # noqa: B023
                         60, "the restarted indexer to write")
                assert process.poll() is None, log.read_text()[-3000:]
                threading.Event().wait(rng.uniform(0.0, 0.4))
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    kills += 1
            assert traffic.error is None, traffic.error
    finally:
        traffic.stop()
    assert traffic.error is None, traffic.error
    assert traffic.sent > 100

    head = int(signer.w3.eth.block_number)
    started = log.read_text().count(" following ")
    process = start_indexer(env, log)
    try:
        # Its SIGTERM handler is installed before it logs "following": a SIGTERM sent earlier (the index
        # may already be at the head) would kill it the default way, not stop it cleanly.
        wait_for(lambda: log.read_text().count(" following ") > started, 60, "the indexer to start")
        wait_for(lambda: cursor_block(path, chain_id) == head, 60, "the indexer to reach the head")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0

    assert kills == KILLS
    db = Database(sqlite_path=path)
    try:
        # Every log of the contracts, exactly once (checked against the node, not the follower's code)...
        decoder = Decoder(manifest)
        logs = signer.w3.eth.get_logs({"address": decoder.addresses, "fromBlock": decoder.start_block,
                                       "toBlock": head})
        expected = {(log["blockHash"].to_0x_hex(), int(log["logIndex"])) for log in logs}
        stored = rows(db, "SELECT block_hash, log_index FROM ix_events WHERE chain_id = ?", chain_id)
        assert len(stored) == len(expected)
        assert {(row["block_hash"], int(row["log_index"])) for row in stored} == expected
        # ...and the read models as a clean rebuild makes them.
        assert_equals_rebuild(db, head)
    finally:
        db.close()
