"""The indexer's operator commands, for deployments that run it apart from the API.

* ``python -m indexer run``: follow the chain until SIGTERM or SIGINT (Ctrl-C),
  then stop cleanly and give the lease up, so another instance takes over at once.
* ``python -m indexer rebuild --from-block N``: forget every event from block
  ``N`` on, replay the read models from the events before it, and index the
  chain again up to the head.
* ``python -m indexer check``: index the chain afresh, in a temporary database
  in memory, up to the block the index has reached, and compare every table
  row by row; prints each difference and exits 1 when there is one.

They read the API's settings from the same environment variables
(:class:`api.settings.Settings`, without the HTTP app): ``AMPHORA_RPC_URL``,
``AMPHORA_DATABASE_URL`` / ``DATABASE_URL`` (PostgreSQL) or else the SQLite
file ``AMPHORA_INDEX_DB`` (or ``AMPHORA_RELAY_DB``, the relayer's database,
where the API keeps the index by default), ``AMPHORA_MANIFEST_PATH`` and the
``AMPHORA_INDEX_*`` settings. Exit status: 0 done, 1 a difference found
(``check``), 2 a configuration the command cannot run with.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError

from amphora.manifest import Manifest, manifest_path
from api.settings import Settings
from indexer.check import compare_snapshots, extend_index, read_index
from indexer.follower import IndexConfig, Indexer, LeaseLost, ensure_schema
from indexer.node import Node
from indexer.service import IndexerService
from storage.db import Database

logger = logging.getLogger("indexer")

#: Differences ``check`` prints before it only counts the rest.
MAX_SHOWN = 50


class ConfigError(Exception):
    """A setting the command cannot run with (exit status 2)."""


def open_database(settings: Settings) -> Database:
    """The index's database: PostgreSQL when a URL is set, else the SQLite file
    the API keeps it in (``index_db``, or the relayer's ``relay_db``)."""
    if settings.database_url is not None:
        return Database(settings.database_url.get_secret_value())
    path = settings.index_db or settings.relay_db
    if path is None:
        raise ConfigError("no database for the index: set AMPHORA_DATABASE_URL (or DATABASE_URL), "
                          "AMPHORA_INDEX_DB or AMPHORA_RELAY_DB")
    return Database(sqlite_path=path)


def index_config(settings: Settings) -> IndexConfig:
    return IndexConfig(reorg_window=settings.index_reorg_window, poll_seconds=settings.index_poll_seconds,
                       lease_seconds=settings.index_lease_seconds)


def load_manifest(settings: Settings, node: Node) -> Manifest:
    path = settings.manifest_path or manifest_path(node.chain_id())
    try:
        return Manifest.load(path)
    except Exception as err:  # noqa: BLE001 (missing, unreadable or invalid: all say the same to the operator)
        raise ConfigError(f"cannot read the deploy manifest {path}: {err}") from err


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(settings: Settings) -> int:
    """Follow the chain until SIGTERM/SIGINT; the lease is released on the way out."""
    db = open_database(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    service = IndexerService(db, settings.rpc_url, settings.manifest_path, index_config(settings))
    logger.info("following %s into %s as %s", settings.rpc_url, db.description, service.config.instance)
    service.start()
    try:
        stop.wait()
    finally:
        service.stop()
        db.close()
    logger.info("stopped; lease released")
    return 0


def rebuild(settings: Settings, from_block: int, take_over: bool, timeout: float) -> int:
    """Forget the index from ``from_block`` on and index the chain again up to the head."""
    db = open_database(settings)
    node = Node(settings.rpc_url)
    try:
        manifest = load_manifest(settings, node)
        indexer = Indexer(db, node, manifest, index_config(settings))
        holder = indexer.lease_holder()
        if holder is not None and holder != indexer.config.instance:
            if not take_over:
                logger.info("waiting for the lease held by %s (it expires %.0f s after its last renewal; "
                            "stop that indexer, or pass --take-over)", holder, settings.index_lease_seconds)
            else:
                logger.warning("taking the lease from %s: it stops writing until this rebuild ends", holder)
                indexer.take_lease()
        try:
            indexer.rebuild(from_block)
            logger.info("forgot the index from block %d on; indexing again up to the head", from_block)
            block = indexer.run_until_synced(timeout)
        except LeaseLost:
            logger.error("another instance took the lease during the rebuild: it goes on from where this one was")
            return 1
        finally:
            indexer.release_lease()  # also when interrupted: the followers need not wait for it to expire
        logger.info("the index is at block %d", block)
        return 0
    finally:
        node.close()
        db.close()


def check(settings: Settings) -> int:
    """Compare the index with a fresh scan of the chain up to the indexed block; 1 on a difference.

    The live index is read first, in one snapshot (the follower may go on
    writing meanwhile); the fresh index is then built up to that snapshot's
    block and compared with it."""
    db = open_database(settings)
    node = Node(settings.rpc_url)
    fresh = Database()
    try:
        manifest = load_manifest(settings, node)
        ensure_schema(db)
        live = read_index(db, manifest.chain_id, up_to_block=2**62)
        if live.block is None:
            print("the index is empty: nothing to check")
            return 1
        extend_index(fresh, settings.rpc_url, manifest, live.block, settings.index_reorg_window)
        differences = compare_snapshots(live, read_index(fresh, manifest.chain_id, live.block), live.block)
        for line in differences[:MAX_SHOWN]:
            print(line)
        if len(differences) > MAX_SHOWN:
            print(f"... and {len(differences) - MAX_SHOWN} more differences")
        if differences:
            print(f"{len(differences)} differences between the index and a fresh scan up to block {live.block}")
            return 1
        print(f"the index equals a fresh scan of the chain up to block {live.block}")
        return 0
    finally:
        node.close()
        fresh.close()
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="follow the chain until SIGTERM or SIGINT")
    rebuild_parser = commands.add_parser("rebuild", help="forget the index from a block on and index it again")
    rebuild_parser.add_argument("--from-block", type=int, required=True, metavar="N",
                                help="the first block to index again (0: everything)")
    rebuild_parser.add_argument("--take-over", action="store_true",
                                help="take the lease from the instance holding it instead of waiting for it")
    rebuild_parser.add_argument("--timeout", type=float, default=3600.0,
                                help="seconds to reach the head after the rebuild (default 3600)")
    commands.add_parser("check", help="compare the index with a fresh scan of the chain; exit 1 on a difference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        if args.command == "run":
            return run(settings)
        if args.command == "rebuild":
            if args.from_block < 0:
                raise ConfigError("--from-block must be 0 or more")
            return rebuild(settings, args.from_block, args.take_over, args.timeout)
        return check(settings)
    except ValidationError as err:
        print(f"invalid settings: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
