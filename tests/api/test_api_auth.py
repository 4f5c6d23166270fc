"""Custodial accounts: signup, login, sessions and API tokens, key export, the
key sealed at rest under the master key, and signing for an account with its
own key. ``holder`` and ``attacker`` are two people with accounts here."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable

import pytest
from api_fixtures import bearer, sign_up
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from fastapi.testclient import TestClient
from pydantic import SecretStr

from amphora import eip712
from api.deps import AdminDep
from api.errors import ServiceUnavailable
from api.users import UNDECRYPTABLE, WRONG_LOGIN

#: The API fixtures (apps and clients on the test deployment) and the throwaway PostgreSQL server.
pytest_plugins = ["api_fixtures", "pg"]

MASTER_KEY = "5e" * 16 + "c7" * 16  # 32 bytes as 64 hex digits
OTHER_MASTER_KEY = "a1" * 32
HOLDER = "holder@example.org"
ATTACKER = "attacker@example.org"
PASSWORD = "correct horse battery staple"
ATTACKER_PASSWORD = "tr0ub4dor&3 is not enough"
#: Argon2id at its cheapest, so the suite stays fast; production uses the RFC 9106 profile.
CHEAP_ARGON2 = {"password_time_cost": 1, "password_memory_kib": 8, "password_parallelism": 1}
ADMIN_TOKEN = "operator-token-that-is-long-enough"


@pytest.fixture
def make_auth_client(make_client) -> Callable[..., TestClient]:
    """Builder: an anonymous client (no account signed in) of an app with
    custodial accounts (this module's master key, cheap Argon2id), ``overrides`` applied."""

    def _make(**overrides) -> TestClient:
        return make_client(auth=False, **{"master_key": SecretStr(MASTER_KEY), **CHEAP_ARGON2, **overrides})

    return _make


@pytest.fixture
def auth_client(make_auth_client) -> TestClient:
    return make_auth_client()


@pytest.fixture
def signup(auth_client) -> Callable[..., dict]:
    """Builder: sign ``identifier`` up on ``client`` (default ``auth_client``); returns the 201 body."""

    def _signup(identifier: str = HOLDER, password: str = PASSWORD, client: TestClient | None = None) -> dict:
        response = (client or auth_client).post("/auth/signup", json={"identifier": identifier,
                                                                      "password": password})
        assert response.status_code == 201, response.text
        return response.json()

    return _signup


@pytest.fixture
def holder_account(signup) -> dict:
    return signup(HOLDER, PASSWORD)


@pytest.fixture
def attacker_account(signup) -> dict:
    return signup(ATTACKER, ATTACKER_PASSWORD)


def user_row(client: TestClient, user_id: str) -> dict:
    with client.app.state.db.transaction() as tx:
        return tx.one("SELECT * FROM users WHERE id = ?", (user_id,))


# ------------------------------------------------------------------ signup


def test_signup__new_identifier__201_with_session_token_and_own_address(auth_client, relayer):
    before = time.time()

    response = auth_client.post("/auth/signup", json={"identifier": "  Holder@Example.ORG ", "password": PASSWORD})

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"user_id", "identifier", "address", "token", "expires_at"}
    assert body["identifier"] == HOLDER  # trimmed and case-folded
    assert body["token"].startswith("amph_s_") and len(body["token"]) > 40
    assert body["address"] == to_checksum_address(body["address"])
    assert body["address"] != relayer.address  # the account's own address, not the relayer's
    assert int(before) + 86_400 <= body["expires_at"] <= int(time.time()) + 86_400
    me = auth_client.get("/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.json()["user_id"] == body["user_id"]
    assert me.json()["identifier"] == HOLDER
    assert me.json()["address"] == body["address"]
    assert int(before) <= me.json()["created_at"] <= time.time()


def test_signup__two_accounts__two_different_addresses(holder_account, attacker_account):
    assert holder_account["address"] != attacker_account["address"]
    assert holder_account["user_id"] != attacker_account["user_id"]


def test_signup__identifier_taken_in_another_case__409(auth_client, holder_account):
    response = auth_client.post("/auth/signup", json={"identifier": "HOLDER@example.org", "password": PASSWORD})

    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "detail": "identifier is already taken"}


@pytest.mark.parametrize("identifier, password, detail", [
    ("holder@example.org", "short", "password: String should have at least 10 characters"),
    ("holder@example.org", "x" * 1025, "password: String should have at most 1024 characters"),
    ("ab", PASSWORD, "identifier: String should have at least 3 characters"),
    ("  ab  ", PASSWORD, "identifier: must be 3 to 254 characters once trimmed"),
    ("holder @example.org", PASSWORD, "identifier: must not contain spaces or control characters"),
])
def test_signup__invalid_identifier_or_password__422(auth_client, identifier, password, detail):
    response = auth_client.post("/auth/signup", json={"identifier": identifier, "password": password})

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_request", "detail": detail}


def test_signup__without_master_key__503_and_no_account(make_auth_client):
    client = make_auth_client(master_key=None)

    response = client.post("/auth/signup", json={"identifier": HOLDER, "password": PASSWORD})

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable",
                               "detail": "custodial accounts are not configured: set AMPHORA_MASTER_KEY"}
    with client.app.state.db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM users")["n"] == 0


def test_signup__master_key_too_short__503_naming_the_rule_not_the_value(make_auth_client):
    short = "ab" * 16  # 16 bytes

    response = make_auth_client(master_key=SecretStr(short)).post(
        "/auth/signup", json={"identifier": HOLDER, "password": PASSWORD})

    assert response.status_code == 503
    assert response.json()["detail"] == (
        "custodial accounts are not configured: AMPHORA_MASTER_KEY is 16 bytes; it must be at least 32 random "
        "bytes (64 hex digits or 44 base64 characters)")
    assert short not in response.text


def test_signup__master_key_as_base64__accounts_work(make_auth_client, signup):
    client = make_auth_client(master_key=SecretStr(base64.b64encode(bytes.fromhex(OTHER_MASTER_KEY)).decode()))
    account = signup(client=client)

    response = client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(account["token"]))

    assert response.status_code == 200
    assert Account.from_key(response.json()["private_key"]).address == account["address"]


# ------------------------------------------------------------------- login


def test_login__right_password_any_case__new_session_for_the_same_account(auth_client, holder_account):
    response = auth_client.post("/auth/login", json={"identifier": " HOLDER@example.org", "password": PASSWORD})

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["user_id"], body["address"], body["identifier"]) == (
        holder_account["user_id"], holder_account["address"], HOLDER)
    assert body["token"].startswith("amph_s_")
    assert body["token"] != holder_account["token"]
    assert auth_client.get("/me", headers=bearer(body["token"])).json()["user_id"] == holder_account["user_id"]


def test_login__wrong_password_and_unknown_identifier__the_same_401(auth_client, holder_account, monkeypatch):
    users = auth_client.app.state.users
    verified: list[str] = []
    real_verify = users._verify
    monkeypatch.setattr(users, "_verify", lambda h, p: verified.append(h) or real_verify(h, p))

    wrong_password = auth_client.post("/auth/login", json={"identifier": HOLDER, "password": "not the password"})
    unknown = auth_client.post("/auth/login", json={"identifier": "nobody@example.org", "password": PASSWORD})
    malformed = auth_client.post("/auth/login", json={"identifier": "x", "password": PASSWORD})

    for response in (wrong_password, unknown, malformed):
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized", "detail": WRONG_LOGIN}
        assert response.headers["www-authenticate"] == 'Bearer realm="amphora"'
    assert len(verified) == 3  # the unknown identifiers cost an Argon2id verification too
    assert all(h.startswith("$argon2id$") for h in verified)


def test_login__after_the_cost_changed__rehashes_the_stored_password(make_auth_client, signup, tmp_path):
    database = tmp_path / "accounts.sqlite"
    account = signup(client=make_auth_client(relay_db=database))
    stronger = make_auth_client(relay_db=database, password_time_cost=2, password_memory_kib=16)
    assert user_row(stronger, account["user_id"])["password_hash"].startswith("$argon2id$v=19$m=8,t=1,p=1$")

    response = stronger.post("/auth/login", json={"identifier": HOLDER, "password": PASSWORD})

    assert response.status_code == 200
    assert user_row(stronger, account["user_id"])["password_hash"].startswith("$argon2id$v=19$m=16,t=2,p=1$")
    again = stronger.post("/auth/login", json={"identifier": HOLDER, "password": PASSWORD})
    assert again.status_code == 200


# ---------------------------------------------------------------- sessions


@pytest.mark.parametrize("headers, detail", [
    ({}, "missing credentials: send Authorization: Bearer <token>"),
    ({"Authorization": "Basic aG9sZGVyOnB3"}, "malformed Authorization header: expected Bearer <token>"),
    ({"Authorization": "Bearer"}, "malformed Authorization header: expected Bearer <token>"),
    ({"Authorization": "Bearer amph_s_a amph_s_b"}, "malformed Authorization header: expected Bearer <token>"),
    ({"Authorization": "Bearer not-one-of-ours"},
     "malformed token: expected a session token (amph_s_...) or an API token (amph_t_...)"),
    ({"Authorization": "Bearer amph_s_" + "A" * 43}, "unknown token"),
])
def test_me__missing_malformed_or_unknown_credentials__401_saying_which(auth_client, headers, detail):
    response = auth_client.get("/me", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": detail}
    assert response.headers["www-authenticate"] == 'Bearer realm="amphora"'


def test_logout__revokes_that_session_only(auth_client, holder_account):
    other = auth_client.post("/auth/login", json={"identifier": HOLDER, "password": PASSWORD}).json()["token"]

    response = auth_client.post("/auth/logout", headers=bearer(holder_account["token"]))

    assert response.status_code == 204
    assert response.content == b""
    after = auth_client.get("/me", headers=bearer(holder_account["token"]))
    assert after.status_code == 401
    assert after.json()["detail"] == "session revoked (logged out): log in again"
    assert auth_client.get("/me", headers=bearer(other)).json()["user_id"] == holder_account["user_id"]


def test_logout__without_credentials__401(auth_client):
    response = auth_client.post("/auth/logout")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_session__after_its_ttl__401_expired(make_auth_client, signup):
    client = make_auth_client(session_ttl_seconds=1)
    account = signup(client=client)
    assert client.get("/me", headers=bearer(account["token"])).status_code == 200

    time.sleep(1.2)
    response = client.get("/me", headers=bearer(account["token"]))

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "session expired: log in again"}


# -------------------------------------------------------------- API tokens


def test_api_token__created_listed_used_then_revoked(auth_client, holder_account):
    session = bearer(holder_account["token"])

    created = auth_client.post("/auth/api-tokens", json={"name": " shop integration "}, headers=session)

    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    token = created.json()
    assert token["name"] == "shop integration"
    assert token["token"].startswith("amph_t_")
    assert auth_client.get("/me", headers=bearer(token["token"])).json()["user_id"] == holder_account["user_id"]
    listed = auth_client.get("/auth/api-tokens", headers=session)
    [entry] = listed.json()["tokens"]
    assert entry == {"id": token["id"], "name": "shop integration", "created_at": token["created_at"],
                     "last_used_at": entry["last_used_at"], "scope": "act", "expires_at": token["expires_at"]}
    assert token["scope"] == "act" and token["expires_at"] == token["created_at"] + 90 * 86_400
    assert token["created_at"] <= entry["last_used_at"] <= time.time()  # the /me call just made
    assert token["token"] not in listed.text

    revoked = auth_client.delete(f"/auth/api-tokens/{token['id']}", headers=session)

    assert revoked.status_code == 204
    after = auth_client.get("/me", headers=bearer(token["token"]))
    assert after.status_code == 401
    assert after.json() == {"error": "unauthorized", "detail": "API token revoked"}
    assert auth_client.get("/auth/api-tokens", headers=session).json() == {"tokens": []}
    assert auth_client.delete(f"/auth/api-tokens/{token['id']}", headers=session).status_code == 204  # idempotent


def test_api_token__empty_name__422(auth_client, holder_account):
    response = auth_client.post("/auth/api-tokens", json={"name": "   "}, headers=bearer(holder_account["token"]))

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_request", "detail": "name: must be 1 to 100 characters once trimmed"}


def test_api_token__without_credentials__401_and_none_created(auth_client, holder_account):
    response = auth_client.post("/auth/api-tokens", json={"name": "sneaky"})

    assert response.status_code == 401
    assert auth_client.get("/auth/api-tokens", headers=bearer(holder_account["token"])).json() == {"tokens": []}


def test_revoke_api_token__another_accounts__404_and_it_keeps_working(auth_client, holder_account,
                                                                     attacker_account):
    token = auth_client.post("/auth/api-tokens", json={"name": "cellar app"},
                             headers=bearer(holder_account["token"])).json()

    response = auth_client.delete(f"/auth/api-tokens/{token['id']}", headers=bearer(attacker_account["token"]))

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"no API token '{token['id']}' on this account"}
    assert auth_client.get("/me", headers=bearer(token["token"])).json()["user_id"] == holder_account["user_id"]
    assert auth_client.get("/auth/api-tokens", headers=bearer(attacker_account["token"])).json() == {"tokens": []}


def test_revoke_api_token__a_session_id__404(auth_client, holder_account):
    with auth_client.app.state.db.transaction() as tx:
        session_id = tx.one("SELECT id FROM credentials WHERE kind = 'session'")["id"]

    response = auth_client.delete(f"/auth/api-tokens/{session_id}", headers=bearer(holder_account["token"]))

    assert response.status_code == 404
    assert auth_client.get("/me", headers=bearer(holder_account["token"])).status_code == 200


# -------------------------------------------------------------- key export


def test_key_export__right_password__the_key_of_the_accounts_address(auth_client, holder_account, caplog):
    caplog.set_level(logging.INFO)

    response = auth_client.post("/me/key-export", json={"password": PASSWORD},
                                headers=bearer(holder_account["token"]))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    me = auth_client.get("/me", headers=bearer(holder_account["token"])).json()
    assert body["address"] == me["address"] == holder_account["address"]
    assert Account.from_key(body["private_key"]).address == me["address"]
    audit = [r.getMessage() for r in caplog.records if r.name == "api.audit"]
    assert f"key exported: user {me['user_id']} address {me['address']}" in audit
    assert body["private_key"][2:] not in caplog.text


def test_key_export__wrong_password__403_without_the_key(auth_client, holder_account, caplog):
    caplog.set_level(logging.INFO)

    response = auth_client.post("/me/key-export", json={"password": ATTACKER_PASSWORD},
                                headers=bearer(holder_account["token"]))

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "password does not match: the key is exported "
                               "only after re-authentication"}
    assert "key exported" not in caplog.text


def test_key_export__without_credentials__401(auth_client, holder_account):
    response = auth_client.post("/me/key-export", json={"password": PASSWORD})

    assert response.status_code == 401
    assert "private_key" not in response.text


def test_key_export__each_account__only_its_own_key(auth_client, holder_account, attacker_account):
    # The attacker knows the holder's password but holds only their own session.
    response = auth_client.post("/me/key-export", json={"password": PASSWORD},
                                headers=bearer(attacker_account["token"]))
    own = auth_client.post("/me/key-export", json={"password": ATTACKER_PASSWORD},
                           headers=bearer(attacker_account["token"]))

    assert response.status_code == 403
    assert own.status_code == 200
    assert Account.from_key(own.json()["private_key"]).address == attacker_account["address"]
    assert own.json()["address"] != holder_account["address"]


# ------------------------------------------------------------- at rest


def test_database__holds_no_key_password_or_token_in_the_clear(auth_client, holder_account):
    key = auth_client.post("/me/key-export", json={"password": PASSWORD},
                           headers=bearer(holder_account["token"])).json()["private_key"]
    api_token = auth_client.post("/auth/api-tokens", json={"name": "ci"},
                                 headers=bearer(holder_account["token"])).json()["token"]

    row = user_row(auth_client, holder_account["user_id"])
    with auth_client.app.state.db.transaction() as tx:
        credentials = tx.all("SELECT * FROM credentials WHERE user_id = ?", (holder_account["user_id"],))

    assert row["encrypted_key"].startswith("v1:")
    assert key[2:] not in row["encrypted_key"].lower()
    assert key[2:] not in base64.b64decode(row["encrypted_key"][3:]).hex()
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert {c["token_hash"] for c in credentials} == {
        hashlib.sha256(t.encode()).hexdigest() for t in (holder_account["token"], api_token)}
    dump = repr(row) + repr(credentials)
    for secret in (key[2:], holder_account["token"], api_token, PASSWORD, MASTER_KEY):
        assert secret not in dump


def test_key_ciphertext__moved_to_another_account__does_not_decrypt(auth_client, holder_account,
                                                                     attacker_account):
    holder_ciphertext = user_row(auth_client, holder_account["user_id"])["encrypted_key"]
    with auth_client.app.state.db.transaction() as tx:
        tx.execute("UPDATE users SET encrypted_key = ? WHERE id = ?", (holder_ciphertext, attacker_account["user_id"]))

    response = auth_client.post("/me/key-export", json={"password": ATTACKER_PASSWORD},
                                headers=bearer(attacker_account["token"]))

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable", "detail": UNDECRYPTABLE}
    users = auth_client.app.state.users
    with pytest.raises(ServiceUnavailable, match="cannot be decrypted"):
        users.sign_typed_data(users.authenticate(attacker_account["token"]), {})
    holder_export = auth_client.post("/me/key-export", json={"password": PASSWORD},
                                     headers=bearer(holder_account["token"]))
    assert Account.from_key(holder_export.json()["private_key"]).address == holder_account["address"]


def test_key__under_another_master_key__503_not_a_crash(make_auth_client, signup, tmp_path):
    database = tmp_path / "accounts.sqlite"
    account = signup(client=make_auth_client(relay_db=database))
    rotated = make_auth_client(relay_db=database, master_key=SecretStr(OTHER_MASTER_KEY))

    response = rotated.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(account["token"]))

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable", "detail": UNDECRYPTABLE}
    assert rotated.get("/me", headers=bearer(account["token"])).status_code == 200  # login state is unaffected


def test_secrets__never_in_logs_or_other_responses(auth_client, caplog):
    caplog.set_level(logging.DEBUG)
    responses = [auth_client.post("/auth/signup", json={"identifier": HOLDER, "password": PASSWORD})]
    session = responses[0].json()["token"]
    responses.append(auth_client.post("/auth/login", json={"identifier": HOLDER, "password": "wrong password!"}))
    responses.append(auth_client.post("/auth/login", json={"identifier": HOLDER, "password": PASSWORD}))
    responses.append(auth_client.post("/auth/api-tokens", json={"name": "ci"}, headers=bearer(session)))
    api_token = responses[-1].json()["token"]
    responses.append(auth_client.get("/me", headers=bearer(api_token)))
    responses.append(auth_client.post("/me/key-export", json={"password": "wrong password!"},
                                      headers=bearer(session)))
    export = auth_client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(session))
    key = export.json()["private_key"]
    responses.append(auth_client.post("/auth/logout", headers=bearer(session)))
    responses.append(auth_client.get("/me", headers=bearer(session)))

    assert [r.status_code for r in responses] == [201, 401, 200, 201, 200, 403, 204, 401]
    assert "key exported" in caplog.text
    for secret in (MASTER_KEY, key[2:], PASSWORD, session, api_token):
        assert secret not in caplog.text
    for response in responses:
        assert MASTER_KEY not in response.text
        assert key[2:] not in response.text
    assert MASTER_KEY not in export.text


# ----------------------------------------------------------------- signing


def test_sign_typed_data__signed_by_the_accounts_own_key(auth_client, holder_account, attacker_account, chain_id,
                                                         cert, recipient):
    users = auth_client.app.state.users
    holder = users.authenticate(holder_account["token"])
    message = eip712.transfer_message(holder.address, recipient.address, 4_294_967_297, 0, 2**32)
    data = eip712.typed_data("Transfer", message, chain_id, cert.address)

    signature = users.sign_typed_data(holder, data)

    assert len(signature) == 65
    assert Account.recover_message(encode_typed_data(full_message=data), signature=signature) == \
        holder_account["address"]
    attacker = users.authenticate(attacker_account["token"])
    other = users.sign_typed_data(attacker, data)
    assert Account.recover_message(encode_typed_data(full_message=data), signature=other) == \
        attacker_account["address"]


# -------------------------------------------------------------- PostgreSQL


def test_postgresql__accounts_tokens_and_export__as_on_sqlite(make_auth_client, signup, postgres_url):
    client = make_auth_client(database_url=SecretStr(postgres_url))
    account = signup(client=client)
    assert client.app.state.db.postgres

    taken = client.post("/auth/signup", json={"identifier": HOLDER.upper(), "password": PASSWORD})
    login = client.post("/auth/login", json={"identifier": HOLDER, "password": PASSWORD})
    token = client.post("/auth/api-tokens", json={"name": "ci"}, headers=bearer(account["token"])).json()
    revoked = client.delete(f"/auth/api-tokens/{token['id']}", headers=bearer(account["token"]))
    export = client.post("/me/key-export", json={"password": PASSWORD}, headers=bearer(login.json()["token"]))

    assert taken.status_code == 409
    assert login.json()["user_id"] == account["user_id"]
    assert revoked.status_code == 204
    assert client.get("/me", headers=bearer(token["token"])).json()["detail"] == "API token revoked"
    assert Account.from_key(export.json()["private_key"]).address == account["address"]


def test_postgresql__two_instances_sign_up_one_identifier_at_once__one_account_one_409(make_auth_client,
                                                                                        postgres_url):
    first, second = (make_auth_client(database_url=SecretStr(postgres_url)) for _ in range(2))
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def sign_up(client: TestClient) -> None:
        barrier.wait()
        answers.append(client.post("/auth/signup", json={"identifier": HOLDER, "password": PASSWORD}).status_code)

    threads = [threading.Thread(target=sign_up, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [201, 409]
    with first.app.state.db.transaction() as tx:
        assert tx.one("SELECT COUNT(*) AS n FROM users WHERE identifier = ?", (HOLDER,))["n"] == 1


# --------------------------------------------------------------- operator


@pytest.fixture
def operator_client(make_auth_client) -> Callable[..., TestClient]:
    """Builder: an app with one operator route, ``GET /operator-check``, behind ``AdminDep``."""

    def _make(**overrides) -> TestClient:
        client = make_auth_client(**overrides)

        @client.app.get("/operator-check")
        def operator_check(_: AdminDep) -> dict[str, bool]:
            return {"operator": True}

        return client

    return _make


@pytest.mark.parametrize("headers, status, body", [
    ({}, 401, {"error": "unauthorized", "detail": "missing credentials: send Authorization: Bearer <token>"}),
    (bearer("wrong-operator-token"), 403, {"error": "forbidden", "detail": "not the operator token"}),
    (bearer(ADMIN_TOKEN), 200, {"operator": True}),
])
def test_admin__operator_token__admits_only_it(operator_client, headers, status, body):
    response = operator_client(admin_token=SecretStr(ADMIN_TOKEN)).get("/operator-check", headers=headers)

    assert response.status_code == status
    assert response.json() == body


def test_admin__user_session_token__403(operator_client, signup):
    client = operator_client(admin_token=SecretStr(ADMIN_TOKEN))
    account = signup(client=client)

    response = client.get("/operator-check", headers=bearer(account["token"]))

    assert response.status_code == 403


def test_admin__no_admin_token_configured__503_even_with_a_token(operator_client):
    response = operator_client(admin_token=None).get("/operator-check", headers=bearer(ADMIN_TOKEN))

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable",
                               "detail": "operator endpoints are not configured: set AMPHORA_ADMIN_TOKEN"}


# ----------------------------------------------------------------- OpenAPI


def test_openapi__account_routes__declare_the_bearer_scheme(auth_client):
    document = auth_client.get("/openapi.json").json()

    scheme = document["components"]["securitySchemes"]["accountToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    protected = {("post", "/auth/logout"), ("get", "/me"), ("post", "/auth/api-tokens"),
                 ("get", "/auth/api-tokens"), ("delete", "/auth/api-tokens/{id}"), ("post", "/me/key-export")}
    for method, path in protected:
        assert document["paths"][path][method]["security"] == [{"accountToken": []}]
    for method, path in (("post", "/auth/signup"), ("post", "/auth/login")):
        assert "security" not in document["paths"][path][method]
    # /health answers anyone; the operator token is optional (it adds the detail).
    assert document["paths"]["/health"]["get"]["security"] == [{"adminToken": []}, {}]
    assert "the service holds the key" in document["paths"]["/auth/signup"]["post"]["description"]
    assert "re-authentication" in document["paths"]["/me/key-export"]["post"]["description"].lower()


def test_login__password_guessing__429_with_retry_after_after_the_allowance(make_client):
    client = make_client(auth=False, password_attempts_per_minute=3)
    sign_up(client, identifier="guessed@example.org")

    answers = [client.post("/auth/login", json={"identifier": "guessed@example.org", "password": f"guess-{i}-xxxx"})
               for i in range(4)]

    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[-1].json()["error"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) >= 1
