"""The follower as a service of a long-running process (the API, ``python -m indexer run``).

Building it makes no request: the thread it starts learns the node's chain id
and loads that chain's deploy manifest when the node answers, retrying until
it does, then follows the chain until stopped.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from amphora.manifest import Manifest, manifest_path
from indexer.follower import IndexConfig, Indexer
from indexer.node import Node
from storage.db import Database

logger = logging.getLogger(__name__)


class IndexerService:
    """Runs an :class:`Indexer` for the node at ``rpc_url`` in a background thread."""

    def __init__(self, db: Database, rpc_url: str, manifest_file: Path | None = None,
                 config: IndexConfig | None = None) -> None:
        self.db = db
        self.config = config or IndexConfig()
        self._rpc_url = rpc_url
        self._manifest_file = manifest_file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.indexer: Indexer | None = None
        self._error: str | None = None

    @property
    def last_error(self) -> str | None:
        """Why the follower is not following, if it is not (no node, no manifest, a failing step)."""
        return self.indexer.last_error if self.indexer is not None else self._error

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="amphora-indexer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        # The thread first, then the lease: released while the thread could
        # still begin a step, the lease would be taken again and held until it expired.
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.indexer is not None:
            self.indexer.stop(timeout)

    def _run(self) -> None:
        pause = self.config.poll_seconds
        while not self._stop.is_set() and self.indexer is None:
            node = Node(self._rpc_url)
            try:
                chain_id = node.chain_id()
                manifest = Manifest.load(self._manifest_file or manifest_path(chain_id))
                self.indexer = Indexer(self.db, node, manifest, self.config)
            except Exception as err:  # noqa: BLE001 (no node or manifest yet: say so, try again)
                node.close()
                self._error = f"{type(err).__name__}: {err}"
                logger.warning("indexer not started (retrying in %.0f s): %s", pause, self._error)
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)
        if self.indexer is not None and not self._stop.is_set():
            self.indexer.run_with(self._stop)
