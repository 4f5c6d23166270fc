"""A throwaway PostgreSQL server for the tests of the relayer's shared database.

Not a ``conftest.py`` (see ``tests/api/api_fixtures.py``): a test module that
needs it declares ``pytest_plugins = ["pg"]``.

The server is Debian's (``make test`` installs the ``postgresql`` package when
the machine has none). One cluster per session, in a temporary directory,
listening on 127.0.0.1 only, trusting local connections and skipping
durability: its data ends with the session. initdb and postgres refuse to run
as root, so when the tests do, the cluster belongs to the ``postgres`` system
user the package creates.

When PostgreSQL is missing or does not start, the fixtures fail; they never
skip, so a run cannot pass without the tests that need a server."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

#: Where Debian puts each major version's server binaries (outside PATH).
DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
#: Durability is pointless for data that ends with the session; the relayer's
#: instances and the tests' pools need more than the default 100 connections.
SERVER_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``url(name)`` addresses one of its databases."""

    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new, empty, uniquely named database; returns its URL."""
        name = f"amphora_{secrets.token_hex(6)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _bindir() -> Path:
    """The directory holding initdb and pg_ctl: Debian's newest version, else
    wherever PATH finds initdb. (``pg_config --bindir`` may name the client's.)"""

    def version(bindir: Path) -> tuple[int, str]:
        name = bindir.parent.name
        return (int(name), name) if name.isdigit() else (-1, name)

    installed = sorted((p.parent for p in DEBIAN_BINDIRS.glob("*/bin/initdb")), key=version)
    if installed:
        return installed[-1]
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL server not found (no initdb in PATH or /usr/lib/postgresql/*/bin): "
                    "`make postgres` installs Debian's package", pytrace=False)
    return Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], cwd: Path, log: Path | None = None) -> None:
    """Run a server command, as the ``postgres`` user when we are root; fail the
    test with the command's output (and the server's ``log``) when it fails."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        server_log = log.read_text() if log is not None and log.exists() else ""
        pytest.fail(f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
                    f"{server_log}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session, stopped and deleted at its end."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="amphora-pg-"))
    data, log = root / "data", root / "server.log"
    try:
        if os.geteuid() == 0:
            try:
                shutil.chown(root, user="postgres", group="postgres")
            except LookupError:
                pytest.fail("PostgreSQL refuses to run as root and there is no `postgres` user to run it",
                            pytrace=False)
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], cwd=root)
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} {SERVER_SETTINGS}"
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"],
                 cwd=root, log=log)
            yield PostgresServer(port=port)
        finally:
            # Also after a start that timed out: the server may be up all the same.
            if (data / "postmaster.pid").exists():
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], cwd=root, log=log)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database of its own for each test."""
    return postgres_server.create_database()
