"""Rotate the master key of the custodial accounts: re-encrypt every stored
account key under a new ``AMPHORA_MASTER_KEY``.

Usage (with the API instances stopped, see below)::

    AMPHORA_MASTER_KEY=<current key> AMPHORA_NEW_MASTER_KEY=<new key> \\
    AMPHORA_DATABASE_URL=postgresql://... python -m api.rotate_master_key

(or ``AMPHORA_RELAY_DB=relay.sqlite`` in place of ``AMPHORA_DATABASE_URL``);
then restart every instance with ``AMPHORA_MASTER_KEY=<new key>``. The keys are
read from the environment only (never from the command line, where ``ps``
shows them). Every key is decrypted under the current master key, checked
against its account's address, and encrypted under the new one, all in **one**
database transaction: either every account moves to the new key or none does.
A key already under the new master key (a second run) is left as it is; a key
that decrypts under neither aborts the rotation and names the account.

Instances still running with the old key would write new signups under it, and
could not decrypt the rotated keys (503 until restarted): stop them first, or
restart them all right after. On PostgreSQL the users table is locked while the
rotation runs, so no signup slips in between.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import sys
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from pydantic import SecretStr

from api import holder_notes
from api.settings import Settings
from api.users import _NONCE_BYTES, KEY_FORMAT, SCHEMA, _associated_data, _key_cipher, parse_master_key
from storage.db import Database, Row

NEW_KEY_VARIABLE = "AMPHORA_NEW_MASTER_KEY"


class RotationError(Exception):
    """The rotation cannot run, or a stored key does not decrypt; nothing was changed."""


@dataclass(frozen=True)
class Rotation:
    rotated: int
    already_new: int
    #: Delivery addresses and loss reports re-encrypted (:mod:`api.holder_notes`).
    notes: int = 0


def _open(cipher: AESGCM, row: Row) -> bytes | None:
    """The account's private key if ``cipher`` decrypts its stored key and the key
    is the account's; ``None`` otherwise."""
    version, _, payload = str(row["encrypted_key"]).partition(":")
    if version != KEY_FORMAT:
        return None
    try:
        blob = base64.b64decode(payload, validate=True)
        key = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated_data(row["id"], row["address"]))
    except (InvalidTag, ValueError, binascii.Error):
        return None
    return key if Account.from_key(key).address == row["address"] else None


def _seal(cipher: AESGCM, key: bytes, row: Row) -> str:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = cipher.encrypt(nonce, key, _associated_data(row["id"], row["address"]))
    return f"{KEY_FORMAT}:" + base64.b64encode(nonce + sealed).decode()


def _cipher(master_key: SecretStr | None, name: str) -> AESGCM:
    cipher, problem = _key_cipher(master_key)
    if cipher is None:
        raise RotationError(f"{name}: {problem}")
    return cipher


def rotate_master_key(db: Database, current: SecretStr | None, new: SecretStr | None) -> Rotation:
    """Re-encrypt every account key in ``db`` from ``current`` to ``new``, in one transaction."""
    old_cipher = _cipher(current, "AMPHORA_MASTER_KEY")
    new_cipher = _cipher(new, NEW_KEY_VARIABLE)
    assert current is not None and new is not None
    if parse_master_key(current.get_secret_value()) == parse_master_key(new.get_secret_value()):
        raise RotationError(f"{NEW_KEY_VARIABLE} is the current master key: nothing to rotate")
    db.migrate(SCHEMA)
    db.migrate(holder_notes.SCHEMA)
    rotated = already_new = 0
    with db.transaction() as tx:
        if db.postgres:  # no signup under the old key while the rotation runs
            tx.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        for row in tx.all("SELECT id, address, encrypted_key FROM users ORDER BY id"):
            key = _open(old_cipher, row)
            if key is None:
                if _open(new_cipher, row) is not None:
                    already_new += 1
                    continue
                raise RotationError(f"the stored key of account {row['id']} decrypts under neither master key: "
                                    "nothing was changed")
            tx.execute("UPDATE users SET encrypted_key = ? WHERE id = ?", (_seal(new_cipher, key, row), row["id"]))
            rotated += 1
        try:
            notes = holder_notes.reseal(tx, current, new)
        except ValueError as err:
            raise RotationError(f"{err}: nothing was changed") from None
    return Rotation(rotated, already_new, notes)


def main() -> int:
    settings = Settings()
    new = os.environ.get(NEW_KEY_VARIABLE)
    if settings.database_url is None and settings.relay_db is None:
        print("error: set AMPHORA_DATABASE_URL or AMPHORA_RELAY_DB to the database that holds the accounts",
              file=sys.stderr)
        return 2
    db = Database(settings.database_url.get_secret_value() if settings.database_url else None, settings.relay_db)
    try:
        result = rotate_master_key(db, settings.master_key, SecretStr(new) if new else None)
    except RotationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"re-encrypted {result.rotated} account keys and {result.notes} delivery addresses and loss reports "
          "under the new master key"
          f"{f' ({result.already_new} already were)' if result.already_new else ''}; "
          "now restart every instance with AMPHORA_MASTER_KEY set to the new key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
