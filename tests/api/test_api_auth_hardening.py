"""Accounts under abuse (issue 12, items 8 to 14): limits keyed on the
identifier as compared, failed logins that do not lock the owner out, a rate
limiter of bounded size, bounded password hashing, scoped and expiring API
tokens revoked by "log out everywhere" and a password change, the request-body
size limit, and signup probing limited per network.

Networks are played by giving the test client another address: the app reads
the client address from the connection, as behind no proxy."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from api_fixtures import bearer
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request

from api.errors import TooManyRequests
from api.ratelimit import LoginThrottle, RateLimiter, client_key
from api.users import identifier_key

pytest_plugins = ["api_fixtures", "pg"]

MASTER_KEY = "5e" * 16 + "c7" * 16
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a new passphrase of several words"
OWNER = "owner@example.org"
#: The same identifier in fullwidth letters: NFKC makes it OWNER.
OWNER_FULLWIDTH = "ｏｗｎｅｒ@ｅｘａｍｐｌｅ.ｏｒｇ"
CHEAP_ARGON2 = {"password_time_cost": 1, "password_memory_kib": 8, "password_parallelism": 1}


@pytest.fixture
def make_auth_client(make_client) -> Callable[..., TestClient]:
    """Builder: an anonymous client of an app with custodial accounts, ``overrides`` applied."""

    def _make(**overrides) -> TestClient:
        return make_client(auth=False, **{"master_key": SecretStr(MASTER_KEY), **CHEAP_ARGON2, **overrides})

    return _make


def from_network(client: TestClient, address: str) -> TestClient:
    """Another client of ``client``'s app, connecting from ``address``."""
    return TestClient(client.app, client=(address, 50_000))


def signup(client: TestClient, identifier: str = OWNER, password: str = PASSWORD) -> dict:
    response = client.post("/auth/signup", json={"identifier": identifier, "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def login(client: TestClient, identifier: str = OWNER, password: str = PASSWORD):
    return client.post("/auth/login", json={"identifier": identifier, "password": password})


class Clock:
    """A clock the test moves, for the limiters' waits."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------- item 8: the normalised identifier


def test_login__fullwidth_identifier__shares_the_limit(make_auth_client):
    # The account-wide limit (across networks) is the one a spelling could dodge: 3 failures an hour here.
    client = make_auth_client(login_account_failures_per_hour=3)
    signup(client)

    wrong = [login(from_network(client, f"198.51.100.{n}"), OWNER, "wrong guess").status_code for n in range(3)]
    fullwidth = login(from_network(client, "198.51.100.99"), OWNER_FULLWIDTH, "another wrong guess")

    assert wrong == [401, 401, 401]
    assert fullwidth.status_code == 429
    assert fullwidth.json()["error"] == "rate_limited"


def test_identifier_key__spellings_of_one_account__one_key():
    assert identifier_key(OWNER_FULLWIDTH) == identifier_key("  OWNER@Example.org ") == OWNER


# ------------------------------------ item 9: guessing does not lock the owner out


def test_login__stranger_guessing_from_one_network__owner_elsewhere_still_logs_in(make_auth_client):
    client = make_auth_client(password_attempts_per_minute=3)
    signup(client)
    attacker = from_network(client, "198.51.100.66")

    guesses = [login(attacker, OWNER, f"wrong guess {i}").status_code for i in range(12)]
    owner = login(from_network(client, "203.0.113.7"))
    owner_new_network = login(from_network(client, "192.0.2.44"))

    assert guesses[:3] == [401, 401, 401] and set(guesses[3:]) == {429}
    assert owner.status_code == 200
    assert owner_new_network.status_code == 200  # one network's guesses do not reach the account-wide limit


def test_login__guessing_from_many_networks__only_networks_that_logged_in_before_get_through(make_auth_client):
    client = make_auth_client(password_attempts_per_minute=3, login_account_failures_per_hour=6)
    signup(client)
    home = from_network(client, "203.0.113.7")
    assert login(home).status_code == 200  # the owner's network, recognised from now on

    guesses = [login(from_network(client, f"198.51.100.{n}"), OWNER, "wrong guess").status_code
               for n in range(1, 9)]
    stranger = login(from_network(client, "192.0.2.44"))
    owner = login(home)

    assert guesses[:6] == [401] * 6 and set(guesses[6:]) == {429}
    assert stranger.status_code == 429  # even with the right password: the account is under attack
    assert int(stranger.headers["Retry-After"]) >= 1
    assert owner.status_code == 200


def test_login_throttle__failures_beyond_the_allowance__the_wait_doubles_up_to_the_maximum():
    clock = Clock()
    throttle = LoginThrottle(allowance=2, account_failures_per_hour=1_000, max_backoff_seconds=100, clock=clock)
    waits = []
    for _ in range(5):
        throttle.check(OWNER, "198.51.100.66")  # the previous wait is over
        throttle.failed(OWNER, "198.51.100.66")
        try:
            throttle.check(OWNER, "198.51.100.66")
            waits.append(0)
        except TooManyRequests as refused:
            waits.append(refused.retry_after)
            clock.now += refused.retry_after

    assert waits == [0, 30, 60, 100, 100]  # 60 s / allowance, doubling, capped


def test_login_throttle__a_success__clears_the_networks_failures():
    clock = Clock()
    throttle = LoginThrottle(allowance=2, account_failures_per_hour=1_000, max_backoff_seconds=900, clock=clock)
    throttle.failed(OWNER, "198.51.100.66")
    throttle.failed(OWNER, "198.51.100.66")
    clock.now += 60  # the 30 s wait is over, and the network's minute allowance is back
    throttle.succeeded(OWNER, "198.51.100.66")
    throttle.failed(OWNER, "198.51.100.66")

    throttle.check(OWNER, "198.51.100.66")  # one failure since the success: no wait (three in a row would be)


def test_client_key__ipv6__the_64_prefix_ipv4_the_address():
    def key(address: str) -> str:
        return client_key(Request({"type": "http", "client": (address, 50_000), "headers": []}))

    assert key("2001:db8:1:2:aaaa::1") == key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert key("198.51.100.7") == key("::ffff:198.51.100.7") == "198.51.100.7"


# -------------------------------------- item 10: a rate limiter of bounded size


def test_rate_limiter__100000_distinct_keys__table_and_memory_stay_bounded():
    limiter = RateLimiter(rate=1.0, burst=5, max_keys=1_000)
    tracemalloc.start()
    try:
        for n in range(1_000):
            limiter.check(f"spray:{n}")
        filled, _ = tracemalloc.get_traced_memory()
        for n in range(1_000, 100_000):
            limiter.check(f"spray:{n}")
        flooded, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(limiter) == limiter.max_keys == 1_000
    # 99,000 more keys cost no more than the first 1,000 did (give or take the allocator's slack).
    assert flooded - filled < 256 * 1024
    assert peak - filled < 1024 * 1024


def test_login_throttle__100000_failures_on_distinct_identifiers__its_tables_stay_bounded():
    throttle = LoginThrottle(allowance=10, account_failures_per_hour=100, max_backoff_seconds=900, max_keys=1_000)

    for n in range(100_000):
        throttle.failed(f"user-{n}@example.org" * 40, f"198.51.{n // 256 % 256}.{n % 256}")  # 800+ characters

    assert len(throttle) <= 1_000  # the failures table (the trusted one is empty)
    assert len(throttle._per_account) == len(throttle._per_client) == 1_000


def test_rate_limiter__refused_key__refusal_stores_nothing_and_the_bucket_refills():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=100, clock=clock)
    limiter.check("k")
    limiter.check("k")

    with pytest.raises(TooManyRequests) as refused:
        limiter.check("k")
    for _ in range(50):
        with pytest.raises(TooManyRequests):
            limiter.check("k")
    clock.now += 1.0
    limiter.check("k")

    assert refused.value.status_code == 429 and refused.value.retry_after == 1
    assert len(limiter) == 1


def test_signup__flood_from_many_networks__the_apps_limiter_stays_at_its_bound(make_auth_client):
    client = make_auth_client(rate_limit_max_keys=100)
    signup(client)
    limiter = client.app.state.signup_limiter

    answers = {from_network(client, f"10.0.{n // 250}.{n % 250}").post(
        "/auth/signup", json={"identifier": OWNER, "password": PASSWORD}).status_code for n in range(300)}

    assert answers == {409}
    assert len(limiter) == limiter.max_keys == 100


# ---------------------------------------- item 11: bounded password hashing


def test_signup__many_at_once__hashing_bounded_others_503_busy_and_health_answers(make_auth_client):
    # Argon2id costly enough that hashes overlap; one slot and no waiting.
    client = make_auth_client(password_time_cost=2, password_memory_kib=32_768, password_parallelism=1,
                              password_hash_concurrency=1, password_hash_wait_seconds=0)
    start = threading.Barrier(9)
    answers: list = []
    health: list = []

    def sign_up(n: int) -> None:
        start.wait()
        answers.append(from_network(client, f"198.51.100.{n}").post(
            "/auth/signup", json={"identifier": f"crowd-{n}@example.org", "password": PASSWORD}))

    def check_health() -> None:
        start.wait()
        health.append(client.get("/health"))

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=check_health))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(a.status_code for a in answers)
    busy = [a for a in answers if a.status_code == 503]
    assert len(statuses) == 8 and set(statuses) <= {201, 503}
    assert 201 in statuses and busy, statuses
    assert busy[0].json()["error"] == "busy" and int(busy[0].headers["Retry-After"]) >= 1
    assert client.app.state.users.hashing_peak == 1
    assert [h.status_code for h in health] == [200]
    with client.app.state.db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM users")["n"] == statuses.count(201)


# --------------------------------- item 12: scoped, expiring, revocable tokens


@pytest.fixture
def owner(make_auth_client) -> tuple[TestClient, dict]:
    client = make_auth_client()
    return client, signup(client)


def new_token(client: TestClient, session: str, **fields) -> dict:
    response = client.post("/auth/api-tokens", json={"name": "script", **fields}, headers=bearer(session))
    assert response.status_code == 201, response.text
    return response.json()


def test_api_token__read_scope__reads_but_cannot_relay_export_or_mint(owner):
    client, account = owner
    read = new_token(client, account["token"], scope="read")["token"]

    me = client.get("/me", headers=bearer(read))
    listed = client.get("/auth/api-tokens", headers=bearer(read))
    relay = client.post("/me/relay/transfers", json={"to": account["address"], "token_id": 1}, headers=bearer(read))
    export = client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(read))
    mint_act = client.post("/auth/api-tokens", json={"name": "escalate", "scope": "act"}, headers=bearer(read))
    everywhere = client.post("/auth/logout-everywhere", headers=bearer(read))

    assert me.status_code == 200 and listed.status_code == 200
    for refused in (relay, export, mint_act, everywhere):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
    assert "read-only" in relay.json()["detail"]
    assert "private_key" not in export.text
    assert [t["name"] for t in client.get("/auth/api-tokens", headers=bearer(account["token"])).json()["tokens"]
            ] == ["script"]
    assert client.get("/me", headers=bearer(account["token"])).status_code == 200  # nothing revoked
    assert client.post("/auth/logout", headers=bearer(read)).status_code == 204  # it may log itself out
    assert client.get("/me", headers=bearer(read)).status_code == 401


def test_api_token__default__expires_after_the_configured_ttl(make_auth_client):
    client = make_auth_client(api_token_ttl_days=30)
    account = signup(client)

    token = new_token(client, account["token"])
    too_long = client.post("/auth/api-tokens", json={"name": "x", "expires_in_days": 31},
                           headers=bearer(account["token"]))
    short = new_token(client, account["token"], expires_in_days=1)

    assert token["expires_at"] == token["created_at"] + 30 * 86_400
    assert short["expires_at"] == short["created_at"] + 86_400
    assert too_long.status_code == 422 and "expires_in_days" in too_long.json()["detail"]


def test_api_token__past_its_expiry__401_and_no_longer_listed(owner):
    client, account = owner
    token = new_token(client, account["token"])
    with client.app.state.db.transaction() as tx:
        tx.execute("UPDATE credentials SET expires_at = ? WHERE id = ?", (time.time() - 1, token["id"]))

    response = client.get("/me", headers=bearer(token["token"]))

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "API token expired: create a new one"}
    assert client.get("/auth/api-tokens", headers=bearer(account["token"])).json() == {"tokens": []}


def test_api_token__stored_before_tokens_expired__expires_ttl_after_creation(make_client, tmp_path):
    # A database from before this change: no scope column, API tokens without expires_at.
    path = tmp_path / "relay.sqlite"
    old = make_client(auth=False, master_key=SecretStr(MASTER_KEY), relay_db=path, **CHEAP_ARGON2)
    account = signup(old)
    fresh, stale = new_token(old, account["token"]), new_token(old, account["token"])
    old.__exit__(None, None, None)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE credentials DROP COLUMN scope")
        db.execute("UPDATE credentials SET expires_at = NULL WHERE kind = 'api'")
        db.execute("UPDATE credentials SET created_at = ? WHERE id = ?", (time.time() - 91 * 86_400, stale["id"]))

    client = make_client(auth=False, master_key=SecretStr(MASTER_KEY), relay_db=path, **CHEAP_ARGON2)

    assert client.get("/me", headers=bearer(fresh["token"])).status_code == 200
    assert client.get("/me", headers=bearer(stale["token"])).json()["detail"] == "API token expired: create a new one"


def test_logout_everywhere__every_session_and_api_token__401(owner):
    client, account = owner
    other_session = login(client).json()["token"]
    token = new_token(client, account["token"])["token"]

    response = client.post("/auth/logout-everywhere", headers=bearer(other_session))

    assert response.status_code == 200
    assert response.json() == {"revoked": 3}
    for credential in (account["token"], other_session, token):
        assert client.get("/me", headers=bearer(credential)).status_code == 401
    assert login(client).status_code == 200  # the password still works


def test_password_change__revokes_every_credential_and_only_the_new_password_logs_in(owner):
    client, account = owner
    token = new_token(client, account["token"])["token"]

    response = client.post("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                           headers=bearer(account["token"]))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    session = response.json()
    assert session["user_id"] == account["user_id"] and session["token"].startswith("amph_s_")
    for credential in (account["token"], token):
        assert client.get("/me", headers=bearer(credential)).status_code == 401
    assert client.get("/me", headers=bearer(session["token"])).status_code == 200
    assert login(client).status_code == 401
    assert login(client, password=NEW_PASSWORD).status_code == 200


def test_password_change__wrong_current_password__403_and_nothing_changes(owner):
    client, account = owner

    response = client.post("/me/password", json={"current_password": "not the password", "new_password":
                                                  NEW_PASSWORD}, headers=bearer(account["token"]))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert client.get("/me", headers=bearer(account["token"])).status_code == 200
    assert login(client).status_code == 200


def test_postgresql__scopes_expiry_and_revoking_everything__as_on_sqlite(make_client, postgres_url):
    settings = {"master_key": SecretStr(MASTER_KEY), "database_url": SecretStr(postgres_url), **CHEAP_ARGON2}
    first = make_client(auth=False, **settings)
    account = signup(first)
    with first.app.state.db.transaction() as tx:  # play a database from before scopes existed
        tx.execute("ALTER TABLE credentials DROP COLUMN scope")
    client = make_client(auth=False, **settings)  # a second instance starting on it adds the column again
    assert client.app.state.db.postgres

    read = new_token(client, account["token"], scope="read", expires_in_days=7)
    refused = client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(read["token"]))
    changed = client.post("/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                          headers=bearer(account["token"]))
    everywhere = client.post("/auth/logout-everywhere", headers=bearer(changed.json()["token"]))

    assert read["expires_at"] == read["created_at"] + 7 * 86_400
    assert refused.status_code == 403
    assert changed.status_code == 200
    assert client.get("/me", headers=bearer(read["token"])).json()["detail"] == "API token revoked"
    assert everywhere.json() == {"revoked": 1}
    assert login(client, password=NEW_PASSWORD).status_code == 200


# ------------------------------------------------ item 13: request body size


def _accounts(client: TestClient) -> int:
    with client.app.state.db.transaction() as tx:
        return int(tx.one("SELECT COUNT(*) AS n FROM users")["n"])


def test_body__64_mib_anonymous__413_before_parsing(make_auth_client):
    client = make_auth_client()
    padding = "x" * (64 * 1024 * 1024)
    body = ('{"identifier": "big@example.org", "password": "' + PASSWORD + '", "pad": "' + padding + '"}').encode()

    response = client.post("/auth/signup", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large",
                               "detail": f"request body of {len(body)} bytes: at most 65536 bytes are accepted"}
    assert _accounts(client) == 0


def test_body__chunked_without_content_length__413_once_past_the_limit(make_auth_client):
    client = make_auth_client(max_body_bytes=1_000)

    def chunks() -> Iterator[bytes]:  # a generator: httpx sends it chunked, without Content-Length
        yield b'{"identifier": "chunked@example.org", "password": "' + PASSWORD.encode() + b'", "pad": "'
        for _ in range(100):
            yield b"y" * 100
        yield b'"}'

    response = client.post("/auth/signup", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert _accounts(client) == 0


def test_body__chunked_over_a_real_connection__413_before_the_client_has_sent_it_all(make_auth_client):
    client = make_auth_client()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(client.app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(listener.getsockname(), timeout=10) as connection:
            connection.sendall(b"POST /auth/signup HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(20):  # 80 KiB, and never the closing empty chunk: the body is not over
                connection.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
            answer = b""
            while b"}" not in answer:  # the status line, the headers, then the JSON body
                received = connection.recv(65_536)
                if not received:
                    break
                answer += received
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()

    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"payload_too_large"' in answer
    assert _accounts(client) == 0


def test_body__at_the_limit__reaches_the_route_one_byte_more__413(make_auth_client):
    client = make_auth_client(max_body_bytes=200)
    body = '{"identifier": "edge@example.org", "password": "' + PASSWORD + '"}'
    body = body[:-1] + " " * (200 - len(body)) + "}"
    assert len(body) == 200

    at_limit = client.post("/auth/signup", content=body, headers={"Content-Type": "application/json"})
    over = client.post("/auth/signup", content=body + " ", headers={"Content-Type": "application/json"})
    get_with_body = client.request("GET", "/me", content=b"z" * 201)

    assert at_limit.status_code == 201
    assert over.status_code == 413
    assert get_with_body.status_code == 413  # every route, before authentication


# ------------------------------------------- item 14: signup probing is limited


def test_signup__probing_identifiers_from_one_network__429_after_the_hourly_allowance(make_auth_client):
    client = make_auth_client(signup_attempts_per_hour=3)
    signup(from_network(client, "203.0.113.7"))
    prober = from_network(client, "198.51.100.66")

    probes = [prober.post("/auth/signup", json={"identifier": name, "password": PASSWORD})
              for name in (OWNER, "nobody@example.org", "alice@example.org", "bob@example.org")]

    assert [p.status_code for p in probes] == [409, 201, 201, 429]
    assert probes[-1].json()["error"] == "rate_limited"
    assert int(probes[-1].headers["Retry-After"]) >= 1000  # an hour's allowance: the wait is long
    assert signup(from_network(client, "192.0.2.44"), "carol@example.org")["identifier"] == "carol@example.org"
