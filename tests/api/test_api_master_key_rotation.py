"""Rotating the custodial accounts' master key (`python -m api.rotate_master_key`):
every stored key is re-encrypted under the new master key; afterwards the
accounts log in and act under the new key, and the old key no longer opens them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_fixtures import MASTER_KEY, PASSWORD, bearer, sign_up, wait_for_status
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from api.rotate_master_key import RotationError, rotate_master_key
from storage.db import Database

#: The API fixtures (apps and clients on the test deployment).
pytest_plugins = ["api_fixtures"]

NEW_MASTER_KEY = "a7" * 32
ROOT = Path(__file__).resolve().parents[2]


def _rotate(database: Path, current: str, new: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMPHORA_RELAY_DB": str(database), "AMPHORA_MASTER_KEY": current,
           "AMPHORA_NEW_MASTER_KEY": new}
    env.pop("AMPHORA_DATABASE_URL", None)
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "api.rotate_master_key"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _app(api_settings, database: Path, master_key: str) -> TestClient:
    return TestClient(create_app(api_settings.model_copy(update={"relay_db": database,
                                                                 "master_key": SecretStr(master_key)})))


def _login(client: TestClient, identifier: str) -> dict[str, str]:
    response = client.post("/auth/login", json={"identifier": identifier, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return bearer(response.json()["token"])


def test_rotate_master_key__then_login_and_act_with_the_new_key__old_key_refused(
        api_settings, tmp_path, cert, lot, winery, recipient):
    database = tmp_path / "relay.sqlite"
    with _app(api_settings, database, MASTER_KEY) as before:
        accounts = [sign_up(before, f"rotating-{n}") for n in range(3)]
    token_id = lot.token(3)
    cert.transferFrom(winery, accounts[0]["address"], token_id, sender=winery)

    rotation = _rotate(database, MASTER_KEY, NEW_MASTER_KEY)

    assert rotation.returncode == 0, rotation.stderr
    assert "re-encrypted 3 account keys" in rotation.stdout
    assert MASTER_KEY not in rotation.stdout + rotation.stderr and NEW_MASTER_KEY not in rotation.stdout
    with _app(api_settings, database, NEW_MASTER_KEY) as after:
        session = _login(after, "rotating-0")
        exported = after.post("/me/key-export", json={"password": PASSWORD}, headers=session)
        assert exported.status_code == 200, exported.text
        moved = after.post("/me/relay/transfers", json={"token_id": token_id, "to": recipient.address},
                           headers={**session, "Idempotency-Key": "rotation-1"})
        assert moved.status_code == 202, moved.text
        wait_for_status(after, moved.json()["request_id"], "confirmed")
    assert cert.ownerOf(token_id) == recipient
    with _app(api_settings, database, MASTER_KEY) as stale:
        refused = stale.post("/me/key-export", json={"password": PASSWORD}, headers=_login(stale, "rotating-1"))
        assert refused.status_code == 503
        assert refused.json()["error"] == "service_unavailable"


def test_rotate_master_key__run_twice__second_run_changes_nothing(api_settings, tmp_path):
    database = tmp_path / "relay.sqlite"
    with _app(api_settings, database, MASTER_KEY) as before:
        sign_up(before, "rotating-twice")
    db = Database(sqlite_path=database)
    try:
        first = rotate_master_key(db, SecretStr(MASTER_KEY), SecretStr(NEW_MASTER_KEY))
        second = rotate_master_key(db, SecretStr(MASTER_KEY), SecretStr(NEW_MASTER_KEY))
    finally:
        db.close()

    assert (first.rotated, first.already_new) == (1, 0)
    assert (second.rotated, second.already_new) == (0, 1)


def test_rotate_master_key__wrong_current_key__refused_and_nothing_changed(api_settings, tmp_path):
    database = tmp_path / "relay.sqlite"
    with _app(api_settings, database, MASTER_KEY) as before:
        sign_up(before, "rotating-wrong")
    db = Database(sqlite_path=database)
    try:
        with db.transaction() as tx:
            stored = tx.all("SELECT encrypted_key FROM users")
        with pytest.raises(RotationError, match="decrypts under neither"):
            rotate_master_key(db, SecretStr("5e" * 32), SecretStr(NEW_MASTER_KEY))
        with db.transaction() as tx:
            assert tx.all("SELECT encrypted_key FROM users") == stored
    finally:
        db.close()


def test_rotate_master_key__same_or_missing_new_key__refused(tmp_path):
    db = Database(sqlite_path=tmp_path / "relay.sqlite")
    try:
        with pytest.raises(RotationError, match="is the current master key"):
            rotate_master_key(db, SecretStr(MASTER_KEY), SecretStr(MASTER_KEY))
        with pytest.raises(RotationError, match="AMPHORA_NEW_MASTER_KEY"):
            rotate_master_key(db, SecretStr(MASTER_KEY), None)
    finally:
        db.close()
