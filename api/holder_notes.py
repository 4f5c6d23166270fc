"""What a holder writes for the custodian, kept off chain: a delivery address
(redemption) or the reason of a loss or theft report (flag).

Only a hash goes on chain: the redemption's ``order_hash`` or the flag's
``reason_hash`` is ``keccak256`` of the note's *canonical form*, the UTF-8 of
compact JSON with sorted keys::

    {"fields":{...},"kind":"delivery","salt":"0x...","token_id":"...","v":1}

whose ``fields`` are the form's text NFC-normalised, lines trimmed, runs of
spaces collapsed and line ends as ``\\n``. The ``salt`` (32 bytes, an HMAC of
the account and the form's one-time key under a key derived from the master
key) keeps a guessable address from being found by hashing guesses against
the public hash, and is the same for a form sent twice, so a double submit is
one note and one action. The custodian reads the canonical form with the
operator token (``GET /custodian/notes/{hash}``) and can check it against the
chain by hashing it.

At rest a note is AES-256-GCM under a key derived (HKDF-SHA256) from
``AMPHORA_MASTER_KEY`` like the custodial keys (:mod:`api.users`), its hash,
kind and bottle bound as associated data, so a row moved to another bottle
or swapped with another does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import keccak
from pydantic import SecretStr

from api.errors import NotFound, ServiceUnavailable
from api.users import NOT_CONFIGURED, parse_master_key
from storage.db import Database, Transaction

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS holder_notes (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    token_id TEXT NOT NULL,
    account TEXT NOT NULL,
    sealed TEXT NOT NULL,
    request_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS holder_notes_by_token ON holder_notes (token_id, account, kind)
"""

NoteKind = Literal["delivery", "flag"]
FORMAT = "v1"
_NONCE_BYTES = 12
_SEAL_INFO = b"amphora/holder-notes/v1"
_SALT_INFO = b"amphora/holder-notes/salt/v1"
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")


def clean(text: str) -> str:
    """``text`` as the canonical form keeps it: NFC, ``\\n`` line ends, each
    line trimmed with its runs of spaces collapsed, no empty lines at the ends."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def canonical(kind: NoteKind, token_id: int, fields: dict[str, str], salt: bytes) -> bytes:
    """The bytes whose keccak256 goes on chain (see the module's doc)."""
    document = {"v": 1, "kind": kind, "token_id": str(token_id), "salt": "0x" + salt.hex(),
                "fields": {name: clean(value) for name, value in fields.items()}}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def note_hash(document: bytes) -> str:
    return "0x" + keccak(document).hex()


@dataclass(frozen=True)
class Note:
    hash: str
    kind: str
    token_id: int
    account: str
    document: bytes
    request_id: str | None
    created_at: float

    @property
    def fields(self) -> dict[str, str]:
        return dict(json.loads(self.document)["fields"])


class NoteStore:
    """The ``holder_notes`` table in the service's database."""

    def __init__(self, db: Database, master_key: SecretStr | None) -> None:
        self._db = db
        self._seal: AESGCM | None = None
        self._salt_key: bytes | None = None
        if master_key is not None and master_key.get_secret_value().strip():
            try:
                raw = parse_master_key(master_key.get_secret_value())
            except ValueError:
                raw = None
            if raw is not None:
                self._seal = AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                         info=_SEAL_INFO).derive(raw))
                self._salt_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SALT_INFO).derive(raw)
        db.migrate(SCHEMA)

    def _cipher(self) -> tuple[AESGCM, bytes]:
        if self._seal is None or self._salt_key is None:
            raise ServiceUnavailable(NOT_CONFIGURED)
        return self._seal, self._salt_key

    def salt(self, account: str, form_key: str) -> bytes:
        """The salt of one form submission (the same when the form is sent twice)."""
        _, key = self._cipher()
        return hmac.new(key, f"{account}\n{form_key}".encode(), hashlib.sha256).digest()

    @staticmethod
    def _associated(hash_: str, kind: str, token_id: int) -> bytes:
        return f"amphora-note:{hash_}:{kind}:{token_id}".encode()

    def keep(self, kind: NoteKind, token_id: int, account: str, document: bytes) -> tuple[str, bool]:
        """Store ``document`` sealed; its hash and whether it is new (False: the same form sent again)."""
        seal, _ = self._cipher()
        hash_ = note_hash(document)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = f"{FORMAT}:" + base64.b64encode(
            nonce + seal.encrypt(nonce, document, self._associated(hash_, kind, token_id))).decode()
        with self._db.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO holder_notes (hash, kind, token_id, account, sealed, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                (hash_, kind, str(token_id), account, sealed, time.time()))
        return hash_, inserted == 1

    def relayed(self, hash_: str, request_id: str) -> None:
        """Note the relayed request that put ``hash_`` on chain."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE holder_notes SET request_id = ? WHERE hash = ?", (request_id, hash_))

    def forget(self, hash_: str) -> None:
        """Drop a note whose action was refused before anything was sent."""
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM holder_notes WHERE hash = ? AND request_id IS NULL", (hash_,))

    def get(self, hash_: str) -> Note:
        """The note of ``hash_`` decrypted; 404 when there is none."""
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM holder_notes WHERE hash = ?", (hash_.lower(),))
        if row is None:
            raise NotFound(f"no note has the hash {hash_}")
        return self._open(row)

    def latest(self, kind: NoteKind, token_id: int, account: str) -> Note | None:
        """The account's latest relayed note of ``kind`` on the bottle, or None."""
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM holder_notes WHERE token_id = ? AND account = ? AND kind = ?"
                         " AND request_id IS NOT NULL ORDER BY created_at DESC LIMIT 1",
                         (str(token_id), account, kind))
        return self._open(row) if row is not None else None

    def _open(self, row: dict) -> Note:
        seal, _ = self._cipher()
        version, _, payload = str(row["sealed"]).partition(":")
        try:
            if version != FORMAT:
                raise ValueError(f"unknown note format {version!r}")
            blob = base64.b64decode(payload, validate=True)
            document = seal.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:],
                                    self._associated(row["hash"], row["kind"], int(row["token_id"])))
        except (InvalidTag, ValueError) as err:
            logger.error("the note %s does not decrypt (%s)", row["hash"], type(err).__name__)
            raise ServiceUnavailable("a stored note cannot be decrypted: AMPHORA_MASTER_KEY is not the key it was "
                                     "encrypted under, or the stored record was altered") from None
        return Note(hash=row["hash"], kind=row["kind"], token_id=int(row["token_id"]), account=row["account"],
                    document=document, request_id=row["request_id"], created_at=float(row["created_at"]))


def notes_of(app_state: object) -> NoteStore:
    """The app's note store, made on first use (on the service's database)."""
    store = getattr(app_state, "holder_notes", None)
    if store is None:
        settings = app_state.settings  # type: ignore[attr-defined]
        store = NoteStore(app_state.db, settings.master_key)  # type: ignore[attr-defined]
        app_state.holder_notes = store  # type: ignore[attr-defined]
    return store


def _seal_cipher(master_key: SecretStr) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=_SEAL_INFO).derive(parse_master_key(master_key.get_secret_value())))


def reseal(tx: Transaction, current: SecretStr, new: SecretStr) -> int:
    """Re-encrypt every note from ``current`` to ``new`` inside the master key
    rotation's transaction (:mod:`api.rotate_master_key`); how many moved. A
    note already under ``new`` is left as it is; ValueError names a note that
    opens under neither (the caller then changes nothing)."""
    old, fresh = _seal_cipher(current), _seal_cipher(new)
    moved = 0
    for row in tx.all("SELECT hash, kind, token_id, sealed FROM holder_notes ORDER BY hash"):
        version, _, payload = str(row["sealed"]).partition(":")
        blob = base64.b64decode(payload) if version == FORMAT else b""
        associated = NoteStore._associated(row["hash"], row["kind"], int(row["token_id"]))
        try:
            document = old.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated)
        except (InvalidTag, ValueError):
            try:
                fresh.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated)
            except (InvalidTag, ValueError):
                raise ValueError(f"the note {row['hash']} decrypts under neither master key") from None
            continue
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = f"{FORMAT}:" + base64.b64encode(nonce + fresh.encrypt(nonce, document, associated)).decode()
        tx.execute("UPDATE holder_notes SET sealed = ? WHERE hash = ?", (sealed, row["hash"]))
        moved += 1
    return moved
