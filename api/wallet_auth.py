"""Sign-In with Ethereum (EIP-4361) for people who keep their own key in a browser wallet.

A sign-in is two requests:

1. ``POST /auth/wallet/challenge`` with an address: the service writes the
   EIP-4361 message itself (its own host as ``domain``, its public base URL as
   ``URI``, the chain id, a 128-bit random nonce, ``Issued At`` and an
   ``Expiration Time`` :data:`CHALLENGE_TTL_SECONDS` later) and keeps it, keyed
   by the nonce, until it is used or expires.
2. ``POST /auth/wallet/login`` with that message and the wallet's
   ``personal_sign`` signature of it (EIP-191). The message must be the kept
   one to the byte, so nothing in it (domain, address, expiry, chain) can be
   changed by whoever relays it; the nonce is spent in the same statement that
   checks it is unspent and unexpired (one sign-in per challenge, even when two
   arrive at once); the signer must be the challenge's address: an EOA
   signature recovered with ``s`` in the lower half of the curve order (the
   other, malleable form is refused), or, for a contract account, its ERC-1271
   ``isValidSignature`` of the EIP-191 digest.

The message is built here with the grammar of EIP-4361 and checked with
eth-account's ``encode_defunct``/``recover_message``, not with the ``siwe``
package: siwe 4.4.0 does not import with the abnf release our lock resolves
(2.9, which refuses grammars that redefine RFC 5234's core rules), and pinning
an older abnf would add a second dependency for one message format.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from api.chain import ChainService
from api.errors import InvalidRequest, Unauthorized
from storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS wallet_challenges (
    nonce TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    message TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS wallet_challenges_by_expiry ON wallet_challenges (expires_at)
"""

#: How long a challenge can be signed and sent back (seconds).
CHALLENGE_TTL_SECONDS = 300
#: What the wallet shows the person above the fields.
STATEMENT = "Log in to Amphora with this wallet. Signing costs nothing and moves nothing."
#: The longest message a login accepts (ours are about 400 characters).
MAX_MESSAGE_CHARS = 2000
SECP256K1_HALF_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2
_NONCE = re.compile(r"^Nonce: ([A-Za-z0-9]{8,64})$", re.MULTILINE)
#: One answer for every message that is not a live challenge of this service: which check failed
#: is not the sender's business beyond that.
UNKNOWN = "this message is not a sign-in challenge of this service, or it was altered: ask for a new challenge"


def _iso(moment: float) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second (what EIP-4361's date-time fields hold)."""
    return datetime.fromtimestamp(int(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def siwe_message(domain: str, address: str, uri: str, chain_id: int, nonce: str, issued_at: float,
                 expires_at: float) -> str:
    """The EIP-4361 message for these fields, line for line as the EIP writes it."""
    return (f"{domain} wants you to sign in with your Ethereum account:\n{address}\n\n{STATEMENT}\n\n"
            f"URI: {uri}\nVersion: 1\nChain ID: {chain_id}\nNonce: {nonce}\n"
            f"Issued At: {_iso(issued_at)}\nExpiration Time: {_iso(expires_at)}")


def eip191_digest(message: str) -> bytes:
    """The digest ``personal_sign`` signs: keccak256 of the EIP-191 version 0x45 prefix and the message."""
    raw = message.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(raw)).encode() + raw)


def recover_signer(message: str, signature: bytes) -> str | None:
    """The address whose key made the 65-byte ``personal_sign`` ``signature`` of
    ``message``; None when it is not one (wrong length, unrecoverable, or ``s``
    in the upper half: the malleable twin of a valid signature is refused)."""
    if len(signature) != 65 or int.from_bytes(signature[32:64], "big") > SECP256K1_HALF_ORDER:
        return None
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=signature))
    except Exception:  # noqa: BLE001 - eth-keys raises several kinds for a bad signature
        return None


class WalletChallenges:
    """The challenges handed out and not yet expired, in the service's database
    (every instance sees them, so a sign-in may land on another one)."""

    def __init__(self, db: Database, public_base_url: str) -> None:
        self._db = db
        self._uri = public_base_url.rstrip("/")
        self._domain = urlsplit(public_base_url).netloc
        db.migrate(SCHEMA)

    def issue(self, address: str, chain_id: int) -> tuple[str, str, float]:
        """A new challenge for ``address``: (message, nonce, expires_at). Expired ones are dropped on the way."""
        now = time.time()
        nonce = secrets.token_hex(16)
        expires_at = float(int(now) + CHALLENGE_TTL_SECONDS)
        message = siwe_message(self._domain, to_checksum_address(address), self._uri, chain_id, nonce, now,
                               expires_at)
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM wallet_challenges WHERE expires_at < ?", (now,))
            tx.execute("INSERT INTO wallet_challenges (nonce, address, message, expires_at) VALUES (?, ?, ?, ?)",
                       (nonce, to_checksum_address(address), message, expires_at))
        return message, nonce, expires_at

    def verify(self, message: str, signature: bytes, chain: ChainService) -> str:
        """The checksummed address that signed the live challenge ``message``,
        its nonce spent. 401 naming the problem otherwise (see the module's doc);
        a refused attempt leaves the challenge as it was."""
        if len(message) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(f"message: longer than {MAX_MESSAGE_CHARS} characters")
        found = _NONCE.search(message)
        if found is None:
            raise Unauthorized(UNKNOWN)
        with self._db.read() as tx:
            row = tx.one("SELECT address, message, expires_at, used_at FROM wallet_challenges WHERE nonce = ?",
                         (found.group(1),))
        if row is None or row["message"] != message:
            raise Unauthorized(UNKNOWN)
        if row["used_at"] is not None:
            raise Unauthorized("this challenge was already used to sign in: ask for a new one")
        if row["expires_at"] <= time.time():
            raise Unauthorized("this challenge has expired: ask for a new one and sign it within "
                               f"{CHALLENGE_TTL_SECONDS // 60} minutes")
        address = str(row["address"])
        signer = recover_signer(message, signature)
        if signer != address and not chain.erc1271_valid(address, eip191_digest(message), signature):
            raise Unauthorized("the signature is not the challenge's account's signature of this message")
        with self._db.transaction() as tx:
            spent = tx.one("UPDATE wallet_challenges SET used_at = ? WHERE nonce = ? AND used_at IS NULL "
                           "AND expires_at > ? RETURNING nonce", (time.time(), found.group(1), time.time()))
        if spent is None:  # another request spent it (or it expired) since the read
            raise Unauthorized("this challenge was already used to sign in: ask for a new one")
        return address


def challenges_of(app_state: object) -> WalletChallenges:
    """The service's challenge store, made on first use (on the service's database)."""
    store = getattr(app_state, "wallet_challenges", None)
    if store is None:
        settings = app_state.settings  # type: ignore[attr-defined]
        store = WalletChallenges(app_state.db, settings.public_base_url)  # type: ignore[attr-defined]
        app_state.wallet_challenges = store  # type: ignore[attr-defined]
    return store
