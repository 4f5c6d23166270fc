"""Custodial accounts, the wallet-less default: people, their keys and their tokens.

A person signs up with an identifier (an email or a username) and a password;
the service creates an Ethereum key for them and keeps it, encrypted, in the
relayer's database. It then signs that person's EIP-712 actions with their
key and relays them, so on chain the person's own address is the actor, not
the relayer's. The service could therefore act for them: what keeps that
honest is that every action is a signature recorded on chain, and that the
person can export the key (typing the password again) and leave with their
certificates.

At rest:

* passwords are Argon2id hashes, at the cost the settings name; a stored hash
  made with other parameters is replaced at the next successful login;
* keys are AES-256-GCM ciphertexts under a key derived (HKDF-SHA256) from
  ``AMPHORA_MASTER_KEY``, which lives only in the environment. The associated
  data binds each ciphertext to its row (user id and address), so a ciphertext
  copied into another account does not decrypt. Stored as ``v1:<base64>`` so
  a later scheme can sit beside it;
* session and API tokens are kept only as their SHA-256: a copy of the
  database holds no usable credential. The tokens are 256 random bits, so a
  fast hash suffices where a password needs a slow one.

Sessions last ``session_ttl_seconds``; API tokens ``api_token_ttl_days`` (or
less, as asked) and carry a scope, ``act`` or ``read``. Logging out
everywhere and changing the password revoke every credential of the account.
At most ``password_hash_concurrency`` Argon2id computations run at once (each
takes ``password_memory_kib``); beyond that a request gets 503 ``busy``.

A private key is in memory only for the one signature or export that needs it.
Nothing here logs or returns a password, a token (except to its new owner),
the master key, or a private key (except in the export to its owner).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from pydantic import SecretStr

from amphora import eip712
from api.errors import Conflict, Forbidden, InvalidRequest, NotFound, ServerBusy, ServiceUnavailable, Unauthorized
from api.settings import Settings
from storage.db import Database, Row, Transaction

logger = logging.getLogger(__name__)
#: Account creations and key exports, one line each, for the operator's audit trail.
audit = logging.getLogger("api.audit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    identifier TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    address TEXT UNIQUE NOT NULL,
    encrypted_key TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,
    name TEXT,
    token_hash TEXT UNIQUE NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION,
    scope TEXT
);
CREATE INDEX IF NOT EXISTS credentials_by_user ON credentials (user_id, kind)
"""

#: Token prefixes: they tell a session from an API token at a glance, and let
#: secret scanners recognise a leaked token.
SESSION_PREFIX = "amph_s_"
API_TOKEN_PREFIX = "amph_t_"
CredentialKind = Literal["session", "api"]
AccountKind = Literal["custodial", "wallet"]
#: What a credential may do: ``act`` everything the account can, ``read`` only
#: read (safe methods) and log itself out. Sessions act.
Scope = Literal["read", "act"]

IDENTIFIER_MIN_CHARS = 3
#: The longest email address that fits in SMTP's path limit.
IDENTIFIER_MAX_CHARS = 254
PASSWORD_MIN_CHARS = 10
#: Long enough for any passphrase, short enough that hashing cannot be used to tie up the server.
PASSWORD_MAX_CHARS = 1024
TOKEN_NAME_MAX_CHARS = 100
MASTER_KEY_MIN_BYTES = 32
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY_FORMAT = "v1"
_NONCE_BYTES = 12
_HKDF_INFO = b"amphora/custodial-keys/v1"
#: A credential's ``last_used_at`` is written at most this often (seconds), not on every request.
LAST_USED_RESOLUTION = 60

NOT_CONFIGURED = "custodial accounts are not configured: set AMPHORA_MASTER_KEY"
#: One message for an unknown identifier and a wrong password: a login must not tell which.
WRONG_LOGIN = "identifier or password is wrong"
#: What signing, exporting the key or changing the password answer for a wallet account.
WALLET_HOLDS_KEY = ("this is a wallet account: its key is in the person's own wallet and the service holds no "
                    "copy, so the service cannot sign for it, export it or change a password; sign in the wallet "
                    "and submit it through the public /relay/* routes")
_ADDRESS_IDENTIFIER = re.compile(r"^0x[0-9a-f]{40}$")
UNDECRYPTABLE = ("the stored key of this account cannot be decrypted: AMPHORA_MASTER_KEY is not the key it "
                 "was encrypted under, or the stored record was altered")


def _integrity_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.IntegrityError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is in the lock file
        return tuple(errors)
    errors.append(psycopg.IntegrityError)
    return tuple(errors)


#: What a UNIQUE violation raises on either database (two signups racing for one identifier).
INTEGRITY_ERRORS = _integrity_errors()


@dataclass(frozen=True)
class User:
    """A custodial account, as routes see it: never its key or password hash."""

    id: str
    identifier: str
    address: str
    created_at: float
    #: What the credential that authenticated this request may do.
    scope: Scope = "act"
    #: ``custodial`` (the service keeps the key) or ``wallet`` (the person's own
    #: wallet signs; the service has no key for it: see :meth:`UserStore.wallet_account`).
    kind: AccountKind = "custodial"

    @property
    def wallet(self) -> bool:
        """Whether the account signs in its own wallet (the service holds no key for it)."""
        return self.kind == "wallet"


@dataclass(frozen=True)
class IssuedToken:
    """A credential just created: the only time its token exists outside its owner's hands."""

    id: str
    kind: CredentialKind
    name: str | None
    created_at: float
    expires_at: float | None
    token: str = field(repr=False)
    scope: Scope = "act"


@dataclass(frozen=True)
class ApiToken:
    """An API token as its owner lists it: without the token."""

    id: str
    name: str
    created_at: float
    last_used_at: float | None
    scope: Scope
    expires_at: float


def identifier_key(value: str) -> str:
    """``value`` NFKC-normalised, trimmed and case-folded, valid or not: the
    key of every limit on an identifier, so that spellings that name one
    account (``ＡＬＩＣＥ@example.org``, ``alice@example.org``) share a limit."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).strip().casefold())


def normalize_identifier(value: str) -> str:
    """``value`` as stored and compared (:func:`identifier_key`), so
    ``Alice@Example.org `` and ``alice@example.org`` are one account.
    ValueError when the result is not 3 to 254 characters or holds
    whitespace or control characters."""
    identifier = identifier_key(value)
    if not IDENTIFIER_MIN_CHARS <= len(identifier) <= IDENTIFIER_MAX_CHARS:
        raise ValueError(f"must be {IDENTIFIER_MIN_CHARS} to {IDENTIFIER_MAX_CHARS} characters once trimmed")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in identifier):
        raise ValueError("must not contain spaces or control characters")
    return identifier


def check_password(password: str) -> str:
    """``password`` unchanged; ValueError when it is shorter than 10 or longer than 1024 characters."""
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise ValueError(f"must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")
    return password


def parse_master_key(text: str) -> bytes:
    """The master key's bytes from 64+ hex digits (``0x`` optional) or base64
    (standard or URL-safe, padding optional). ValueError, without the value,
    when it is neither or shorter than 32 bytes."""
    text = text.strip()
    digits = text.removeprefix("0x")
    if re.fullmatch(r"[0-9a-fA-F]+", digits):
        if len(digits) % 2:
            raise ValueError("is hex with an odd number of digits")
        raw = bytes.fromhex(digits)
    else:
        try:
            standard = text.replace("-", "+").replace("_", "/")
            raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is neither hex nor base64") from None
    if len(raw) < MASTER_KEY_MIN_BYTES:
        raise ValueError(f"is {len(raw)} bytes; it must be at least {MASTER_KEY_MIN_BYTES} random bytes "
                         f"(64 hex digits or 44 base64 characters)")
    return raw


def _key_cipher(master_key: SecretStr | None) -> tuple[AESGCM | None, str | None]:
    """The cipher of the stored keys, or why there is none (for the 503)."""
    if master_key is None or not master_key.get_secret_value().strip():
        return None, NOT_CONFIGURED
    try:
        raw = parse_master_key(master_key.get_secret_value())
    except ValueError as err:
        return None, f"custodial accounts are not configured: AMPHORA_MASTER_KEY {err}"
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(raw)
    return AESGCM(derived), None


def _new_private_key() -> bytes:
    """32 bytes from the OS's CSPRNG that form a valid secp256k1 private key."""
    while True:
        key = secrets.token_bytes(32)
        if 0 < int.from_bytes(key, "big") < SECP256K1_ORDER:
            return key


def _associated_data(user_id: str, address: str) -> bytes:
    return f"amphora-key:{user_id}:{address}".encode()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Row, scope: Scope = "act", kind_column: str = "kind") -> User:
    return User(id=row["id"], identifier=row["identifier"], address=row["address"],
                created_at=float(row["created_at"]), scope=scope,
                kind="wallet" if row[kind_column] == "wallet" else "custodial")


class UserStore:
    """Custodial accounts and their credentials in the relayer's database.

    Every method that fails for a client reason raises the API's errors
    (401, 403, 404, 409, 422, 503), so routes call it without translating."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._session_ttl = settings.session_ttl_seconds
        self._api_token_ttl = settings.api_token_ttl_days * 86_400
        # Each Argon2id hash holds password_memory_kib: only so many at once.
        self._hash_slots = threading.BoundedSemaphore(settings.password_hash_concurrency)
        self._hash_wait = settings.password_hash_wait_seconds
        self._hashing = 0
        self._hashing_lock = threading.Lock()
        #: The most password hashes that ran at once since start (for tests and operators).
        self.hashing_peak = 0
        self._hasher = PasswordHasher(time_cost=settings.password_time_cost,
                                      memory_cost=settings.password_memory_kib,
                                      parallelism=settings.password_parallelism, type=Type.ID)
        self._dummy_hash: str | None = None
        self._cipher, self._cipher_problem = _key_cipher(settings.master_key)
        db.migrate(SCHEMA)
        db.add_column("credentials", "scope", "TEXT")
        # NULL: custodial (every account made before wallet accounts existed); 'wallet': no key, no password.
        db.add_column("users", "kind", "TEXT")

    @property
    def configured(self) -> bool:
        """Whether a valid master key is set, so accounts can be created and their keys used."""
        return self._cipher is not None

    # ---------------------------------------------------------- accounts

    def signup(self, identifier: str, password: str) -> tuple[User, IssuedToken]:
        """A new account with a fresh key, and its first session. 409 when the
        identifier (after normalising) is taken; 503 without a master key."""
        cipher = self._require_cipher()
        identifier = _valid(normalize_identifier, "identifier", identifier)
        if _ADDRESS_IDENTIFIER.match(identifier):
            raise InvalidRequest("identifier: must not be an Ethereum address (those name wallet accounts)")
        _valid(check_password, "password", password)
        if self._row_by_identifier(identifier) is not None:  # before paying for the hash
            raise Conflict("identifier is already taken")
        password_hash = self._hash(password)
        user_id = str(uuid.uuid4())
        key = _new_private_key()
        address = Account.from_key(key).address
        encrypted_key = self._encrypt(cipher, key, user_id, address)
        del key
        now = time.time()
        try:
            with self._db.transaction() as tx:
                if tx.one("SELECT id FROM users WHERE identifier = ?", (identifier,)) is not None:
                    raise Conflict("identifier is already taken")
                tx.execute("INSERT INTO users (id, identifier, password_hash, address, encrypted_key, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (user_id, identifier, password_hash, address, encrypted_key, now))
                session = self._issue(tx, user_id, "session", None, now)
        except INTEGRITY_ERRORS as err:  # another instance inserted the same identifier first
            raise Conflict("identifier is already taken") from err
        audit.info("account created: user %s address %s", user_id, address)
        return User(user_id, identifier, address, now), session

    def login(self, identifier: str, password: str) -> tuple[User, IssuedToken]:
        """A new session for the account, if the password matches. An unknown
        identifier costs the same hash as a wrong password and gets the same
        401, so neither the answer nor its timing says which accounts exist."""
        try:
            row = self._row_by_identifier(normalize_identifier(identifier))
        except ValueError:
            row = None
        if row is None or row["kind"] == "wallet":  # a wallet account has no password
            self._verify(self._dummy(), password)
            raise Unauthorized(WRONG_LOGIN)
        if not self._verify(row["password_hash"], password):
            raise Unauthorized(WRONG_LOGIN)
        rehashed = self._hash(password) if self._hasher.check_needs_rehash(row["password_hash"]) else None
        now = time.time()
        with self._db.transaction() as tx:
            if rehashed is not None:  # the operator changed the cost: upgrade while the password is at hand
                tx.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                           (rehashed, row["id"], row["password_hash"]))
            session = self._issue(tx, row["id"], "session", None, now)
        return _user(row), session

    def authenticate(self, token: str) -> User:
        """The account a session or API token belongs to. 401 naming why when
        the token is malformed, unknown, revoked or expired."""
        if not token.startswith((SESSION_PREFIX, API_TOKEN_PREFIX)):
            raise Unauthorized(f"malformed token: expected a session token ({SESSION_PREFIX}...) or an API "
                               f"token ({API_TOKEN_PREFIX}...)")
        now = time.time()
        with self._db.read() as tx:
            row = tx.one(
                "SELECT c.id AS credential_id, c.kind, c.created_at AS issued_at, c.expires_at, c.revoked_at, "
                "c.last_used_at, c.scope, u.id, u.identifier, u.address, u.created_at, u.kind AS account_kind "
                "FROM credentials c JOIN users u ON u.id = c.user_id WHERE c.token_hash = ?",
                (_token_hash(token),))
        if row is None:
            raise Unauthorized("unknown token")
        what = "session" if row["kind"] == "session" else "API token"
        if row["revoked_at"] is not None:
            raise Unauthorized(f"{what} revoked" + (" (logged out): log in again" if what == "session" else ""))
        if self._expires_at(row["kind"], row["issued_at"], row["expires_at"]) <= now:
            raise Unauthorized("session expired: log in again" if what == "session" else
                               "API token expired: create a new one")
        if row["last_used_at"] is None or now - row["last_used_at"] >= LAST_USED_RESOLUTION:
            # Written at most once a resolution period, so most requests only read.
            with self._db.transaction() as tx:
                tx.execute("UPDATE credentials SET last_used_at = ? WHERE id = ?", (now, row["credential_id"]))
        return _user(row, "read" if row["scope"] == "read" else "act", kind_column="account_kind")

    def logout(self, token: str) -> None:
        """Revoke the credential ``token`` (a session, or an API token presented
        to log out); revoking one already revoked changes nothing."""
        with self._db.transaction() as tx:
            tx.execute("UPDATE credentials SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                       (time.time(), _token_hash(token)))

    def logout_everywhere(self, user: User) -> int:
        """Revoke every session and API token of ``user``; the number revoked."""
        with self._db.transaction() as tx:
            return self._revoke_all(tx, user.id, time.time())

    def change_password(self, user: User, current: str, new: str) -> IssuedToken:
        """Replace ``user``'s password (403 when ``current`` does not match),
        revoke every session and API token of the account, and answer a new
        session: whoever held a stolen credential is out."""
        _valid(check_password, "new_password", new)
        row = self._row_by_id(user.id)
        self._refuse_wallet(row)
        if not self._verify(row["password_hash"], current):
            raise Forbidden("current password does not match")
        password_hash = self._hash(new)
        now = time.time()
        with self._db.transaction() as tx:
            updated = tx.one("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ? RETURNING id",
                             (password_hash, user.id, row["password_hash"]))
            if updated is None:
                raise Conflict("the password was changed by another request at the same time; log in again")
            self._revoke_all(tx, user.id, now)
            session = self._issue(tx, user.id, "session", None, now)
        audit.info("password changed: user %s; every session and API token revoked", user.id)
        return session

    # -------------------------------------------------------- API tokens

    def create_api_token(self, user: User, name: str, scope: Scope = "act",
                         expires_in_days: int | None = None) -> IssuedToken:
        """A token for scripts and integrations, valid ``expires_in_days``
        (at most, and by default, ``api_token_ttl_days``) or until revoked.
        A ``read`` credential can only create ``read`` tokens (403 otherwise)."""
        name = _valid(_token_name, "name", name)
        if scope == "act" and user.scope != "act":
            raise Forbidden("a read-only token cannot create a token that acts; use a session")
        ttl = self._api_token_ttl
        if expires_in_days is not None:
            if not 1 <= expires_in_days * 86_400 <= ttl:
                raise InvalidRequest(f"expires_in_days: must be 1 to {ttl // 86_400}")
            ttl = expires_in_days * 86_400
        with self._db.transaction() as tx:
            return self._issue(tx, user.id, "api", name, time.time(), scope=scope, ttl=ttl)

    def list_api_tokens(self, user: User) -> list[ApiToken]:
        """``user``'s API tokens that are neither revoked nor expired, oldest first."""
        now = time.time()
        with self._db.transaction() as tx:
            rows = tx.all("SELECT id, name, created_at, expires_at, last_used_at, scope FROM credentials "
                          "WHERE user_id = ? AND kind = 'api' AND revoked_at IS NULL ORDER BY created_at, id",
                          (user.id,))
        tokens = [ApiToken(id=r["id"], name=r["name"] or "", created_at=float(r["created_at"]),
                           last_used_at=None if r["last_used_at"] is None else float(r["last_used_at"]),
                           scope="read" if r["scope"] == "read" else "act",
                           expires_at=self._expires_at("api", r["created_at"], r["expires_at"]))
                  for r in rows]
        return [t for t in tokens if t.expires_at > now]

    def revoke_api_token(self, user: User, credential_id: str) -> None:
        """Revoke one of ``user``'s API tokens; idempotent. Another account's
        token is 404 like an unknown id, so ids cannot be probed."""
        with self._db.transaction() as tx:
            row = tx.one("SELECT user_id, revoked_at FROM credentials WHERE id = ? AND kind = 'api'",
                         (credential_id,))
            if row is None or row["user_id"] != user.id:
                raise NotFound(f"no API token {credential_id!r} on this account")
            if row["revoked_at"] is None:
                tx.execute("UPDATE credentials SET revoked_at = ? WHERE id = ?", (time.time(), credential_id))

    # -------------------------------------------------------------- keys

    def export_key(self, user: User, password: str) -> str:
        """``user``'s private key as 0x hex, after the password is typed again
        (403 if it does not match): a stolen session alone cannot take the key."""
        cipher = self._require_cipher()
        row = self._row_by_id(user.id)
        self._refuse_wallet(row)
        if not self._verify(row["password_hash"], password):
            raise Forbidden("password does not match: the key is exported only after re-authentication")
        key = self._decrypt(cipher, row)
        try:
            audit.info("key exported: user %s address %s", user.id, row["address"])
            return "0x" + key.hex()
        finally:
            del key

    def address_of(self, identifier: str) -> str | None:
        """The address of the account named ``identifier`` (as normalised at
        sign-up), or None. Callers must rate-limit it: it tells whether a
        name is taken."""
        try:
            key = normalize_identifier(identifier)
        except ValueError:
            return None
        row = self._row_by_identifier(key)
        return str(row["address"]) if row is not None else None

    def sign_typed_data(self, user: User, data: dict[str, Any]) -> bytes:
        """The 65-byte EIP-712 signature of ``data`` by ``user``'s key: how the
        service acts for a wallet-less user with their own address."""
        cipher = self._require_cipher()
        row = self._row_by_id(user.id)
        self._refuse_wallet(row)
        key = self._decrypt(cipher, row)
        try:
            return eip712.sign(data, key)
        finally:
            del key

    def sign_transaction(self, user: User, transaction: dict[str, Any]) -> bytes:
        """The raw signed ``transaction`` from ``user``'s own address: how the
        service sends a business account's on-chain action (an issuer's lot, a
        custodian's confirmation), which the contracts accept only from the
        role holder itself. The account pays the gas from its own balance. A
        wallet account's key is in its wallet: 403 in words."""
        cipher = self._require_cipher()
        row = self._row_by_id(user.id)
        self._refuse_wallet(row)
        key = self._decrypt(cipher, row)
        try:
            return bytes(Account.sign_transaction(transaction, key).raw_transaction)
        finally:
            del key

    # ---------------------------------------------------- wallet accounts

    def wallet_account(self, address: str) -> tuple[User, IssuedToken]:
        """A new session for the wallet account of ``address`` (checksummed),
        created on its first sign-in; the caller has verified that the person
        controls ``address`` (a Sign-In with Ethereum signature). The account
        has no password and no key: its identifier is the address in lower
        case (custodial sign-ups cannot take one), and signing, key export and
        password change refuse for it. 409 when ``address`` is a custodial
        account's (its exported key in a wallet): that account logs in with
        its name and password."""
        now = time.time()
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM users WHERE address = ?", (address,))
        if row is not None and row["kind"] != "wallet":
            raise Conflict("this address is a custodial account's: log in with its account name and password")
        try:
            with self._db.transaction() as tx:
                if row is None:
                    user_id = str(uuid.uuid4())
                    tx.execute("INSERT INTO users (id, identifier, password_hash, address, encrypted_key, created_at,"
                               " kind) VALUES (?, ?, '', ?, '', ?, 'wallet')",
                               (user_id, address.lower(), address, now))
                    audit.info("wallet account created: user %s address %s", user_id, address)
                    user = User(user_id, address.lower(), address, now, kind="wallet")
                else:
                    user = _user(row)
                session = self._issue(tx, user.id, "session", None, now)
        except INTEGRITY_ERRORS as err:  # two first sign-ins of one address at once
            raise Conflict("this wallet account was created by another request at the same moment; sign in "
                           "again") from err
        return user, session

    # ---------------------------------------------------------- internal

    @staticmethod
    def _refuse_wallet(row: Row) -> None:
        if row["kind"] == "wallet":
            raise Forbidden(WALLET_HOLDS_KEY)

    def _require_cipher(self) -> AESGCM:
        if self._cipher is None:
            raise ServiceUnavailable(self._cipher_problem or NOT_CONFIGURED)
        return self._cipher

    def _encrypt(self, cipher: AESGCM, key: bytes, user_id: str, address: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = cipher.encrypt(nonce, key, _associated_data(user_id, address))
        return f"{KEY_FORMAT}:" + base64.b64encode(nonce + sealed).decode()

    def _decrypt(self, cipher: AESGCM, row: Row) -> bytes:
        version, _, payload = str(row["encrypted_key"]).partition(":")
        try:
            if version != KEY_FORMAT:
                raise ValueError(f"unknown key format {version!r}")
            blob = base64.b64decode(payload, validate=True)
            key = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _associated_data(row["id"], row["address"]))
            if Account.from_key(key).address != row["address"]:
                raise ValueError("the key does not match the address")
        except (InvalidTag, ValueError, binascii.Error) as err:
            logger.error("the stored key of user %s does not decrypt (%s)", row["id"],
                         type(err).__name__ if isinstance(err, InvalidTag) else err)
            raise ServiceUnavailable(UNDECRYPTABLE) from None
        return key

    def _verify(self, password_hash: str, password: str) -> bool:
        with self._hash_slot():
            try:
                return self._hasher.verify(password_hash, password)
            except VerificationError:
                return False
            except InvalidHashError:
                logger.error("a stored password hash is unreadable")
                return False

    def _hash(self, password: str) -> str:
        with self._hash_slot():
            return self._hasher.hash(password)

    @contextmanager
    def _hash_slot(self) -> Iterator[None]:
        """One of the ``password_hash_concurrency`` slots, or 503 ``busy`` after
        ``password_hash_wait_seconds``: Argon2id's memory stays bounded however
        many password requests arrive at once."""
        if not self._hash_slots.acquire(timeout=self._hash_wait):
            raise ServerBusy("too many password checks at once: every hashing slot is busy; retry after the wait "
                             "in Retry-After", 1)
        try:
            with self._hashing_lock:
                self._hashing += 1
                self.hashing_peak = max(self.hashing_peak, self._hashing)
            yield
        finally:
            with self._hashing_lock:
                self._hashing -= 1
            self._hash_slots.release()

    def _dummy(self) -> str:
        """A hash of a random password at the current cost, to verify against for unknown identifiers."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hash(secrets.token_urlsafe(24))
        return self._dummy_hash

    def _row_by_identifier(self, identifier: str) -> Row | None:
        with self._db.read() as tx:
            return tx.one("SELECT * FROM users WHERE identifier = ?", (identifier,))

    def _row_by_id(self, user_id: str) -> Row:
        with self._db.read() as tx:
            row = tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise Unauthorized("unknown account")
        return row

    def _issue(self, tx: Transaction, user_id: str, kind: CredentialKind, name: str | None,
               now: float, scope: Scope = "act", ttl: float | None = None) -> IssuedToken:
        token = (SESSION_PREFIX if kind == "session" else API_TOKEN_PREFIX) + secrets.token_urlsafe(32)
        expires_at = now + (ttl if ttl is not None else
                            self._session_ttl if kind == "session" else self._api_token_ttl)
        credential_id = str(uuid.uuid4())
        tx.execute("INSERT INTO credentials (id, user_id, kind, name, token_hash, created_at, expires_at, scope) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (credential_id, user_id, kind, name, _token_hash(token), now, expires_at, scope))
        return IssuedToken(id=credential_id, kind=kind, name=name, created_at=now, expires_at=expires_at,
                           token=token, scope=scope)

    def _expires_at(self, kind: str, created_at: Any, expires_at: Any) -> float:
        """When a credential expires; an API token stored before tokens
        expired (no ``expires_at``) lasts ``api_token_ttl_days`` from creation."""
        if expires_at is not None:
            return float(expires_at)
        return float(created_at) + (self._api_token_ttl if kind == "api" else self._session_ttl)

    @staticmethod
    def _revoke_all(tx: Transaction, user_id: str, now: float) -> int:
        rows = tx.all("UPDATE credentials SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL RETURNING id",
                      (now, user_id))
        return len(rows)


def _token_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= TOKEN_NAME_MAX_CHARS:
        raise ValueError(f"must be 1 to {TOKEN_NAME_MAX_CHARS} characters once trimmed")
    return name


def _valid(check: Callable[[str], str], what: str, value: str) -> str:
    """``check(value)``, its ValueError as the API's 422 naming ``what``."""
    try:
        return check(value)
    except ValueError as err:
        raise InvalidRequest(f"{what}: {err}") from None
