"""Two API instances on one PostgreSQL signing for one custodial account
(issue 12, item 6): the lock around "read the holder's certificate nonce,
sign, queue" is taken in the database, so concurrent actions of one account
sent to both instances are signed on distinct, consecutive nonces and all
confirm. The instances are real ``uvicorn`` processes (``relay_harness``)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from relay_harness import ApiServer, RawChain, server_env, sign_up, wait_final

from storage.db import Database, LockBusy

pytest_plugins = ["pg"]

#: Certificates of the one account, each transferred by its own request.
ACTIONS = 8


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="relaylock-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_custodial_nonce__two_instances_on_one_postgresql__concurrent_actions_of_one_account_all_confirm(
        chain, manifest, relayer, cert, lot, winery, recipient, workdir, postgres_url):
    raw_chain = RawChain(chain.provider.uri, manifest.path)
    env = server_env(raw_chain.rpc_url, manifest.path, [relayer.private_key], database_url=postgres_url)
    first, second = ApiServer(dict(env), workdir / "api-1.log"), ApiServer(dict(env), workdir / "api-2.log")
    with first, second:
        (account,) = sign_up(first.url, 1)
        tokens = [lot.token(position) for position in range(3, 3 + ACTIONS)]
        for token in tokens:
            cert.transferFrom(winery, account.address, token, sender=winery)
        barrier = threading.Barrier(ACTIONS)

        def transfer(index: int) -> httpx.Response:
            url = (first.url, second.url)[index % 2]  # every other action to the other instance
            with httpx.Client(timeout=60.0) as http:
                barrier.wait()
                return http.post(f"{url}/me/relay/transfers",
                                 json={"token_id": tokens[index], "to": recipient.address},
                                 headers={**account.headers, "Idempotency-Key": uuid.uuid4().hex})

        with ThreadPoolExecutor(ACTIONS) as pool:
            answers = list(pool.map(transfer, range(ACTIONS)))

        logs = f"{first.log_tail(30)}\n---- second\n{second.log_tail(30)}"
        assert [a.status_code for a in answers] == [202] * ACTIONS, [a.text for a in answers]
        finals = wait_final(second.url, [a.json()["request_id"] for a in answers], timeout=60)
        assert sorted(body["status"] for body in finals.values()) == ["confirmed"] * ACTIONS, logs
        assert cert.nonces(account.address) == ACTIONS
        assert all(cert.ownerOf(token) == recipient for token in tokens)


@pytest.mark.parametrize("shared", ["postgresql", "sqlite"])
def test_database_lock__held_by_one_holder__another_waits_then_times_out_then_gets_it(shared, request):
    if shared == "postgresql":
        url = request.getfixturevalue("postgres_url")
        one, other = Database(url=url), Database(url=url)  # two instances on one database
    else:
        one = other = Database()  # SQLite serves one instance: two threads of it
    try:
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with one.lock("actor-nonce:0xabc"):
                held.set()
                release.wait(10)

        thread = threading.Thread(target=holder)
        thread.start()
        assert held.wait(10)
        with pytest.raises(LockBusy), other.lock("actor-nonce:0xabc", timeout=0.3):
            pass
        with other.lock("actor-nonce:0xdef", timeout=0.3):  # another name is free
            pass
        release.set()
        thread.join(10)
        with other.lock("actor-nonce:0xabc", timeout=5):
            pass
    finally:
        one.close()
        if other is not one:
            other.close()
