"""The relayer's transaction engine: a persistent outbox that loses nothing and
sends nothing twice.

A relayed action's life:

1. **Admission** (:meth:`Outbox.submit`, in the HTTP request). An idempotency
   key seen before returns the first request, never a second transaction. A
   call that already reverted on chain is refused (the policy's ``screen``).
   The call is simulated with the fields the transaction will carry (the
   relayer key as sender, the fee fields, no value: ``eth_estimateGas`` on the
   pending state, which reverts with the contract's reason; for an actor with
   code, once more with ``eth_call`` at the exact gas limit, so that a
   contract signer cannot tell the simulation from the real thing); a
   reverting call is refused before anything is written. The policy's
   ``admit`` checks the actor and charges the quotas, a relayer key is chosen
   (the same key for the same on-chain actor, so one holder's signed actions
   keep their order), its next nonce is taken from the database, and the
   transaction is signed. The row, the nonce and the signed bytes are
   committed in **one** database transaction: status ``queued``.
2. **Broadcast**, right after the commit. Only then is anything sent, and what
   is sent is exactly the committed bytes, so a crash between the two leaves a
   ``queued`` row that the worker broadcasts again (resending identical bytes
   cannot make a second transaction: same nonce, same hash). Status ``sent``.
3. **Tracking** (:meth:`Outbox.process`, a background worker; any number of
   instances may run it against one PostgreSQL, each row leased to one of them
   with ``SKIP LOCKED``): the receipt makes it ``mined``; enough confirmations
   on the canonical chain make it ``confirmed`` (or ``failed`` if it reverted).
   A transaction with no receipt after ``relay_stuck_seconds`` is replaced by
   the same nonce with fees raised by 1/8 (never above the fee cap); one the
   node no longer knows is broadcast again; one whose block was reorganised
   away goes back to ``sent`` and is broadcast again.

At most one request per call (contract and calldata) is in flight: the
table ``relay_in_flight`` holds each open request's call under a unique key, so
the same signature sent under another idempotency key or by another account is
refused (:class:`~api.errors.InFlight`, naming the first request) instead of
being paid for twice; a retry under the first request's own key gets that
request, in flight or not.

A key the node refuses for good (no funds for gas) is recorded in
``relay_key_faults``: its new work is refused (503) and ``/health`` shows it
until a transaction of it gets in again. Meanwhile the worker keeps offering
the stuck nonce; if the call there would revert by the time the key can pay,
it is replaced by a cancellation (a 0-value transfer to the key itself).

Nonces come from the database (``relay_nonces``), never from the node's
``pending`` count, so two instances sharing a key never pick the same nonce,
and a request never holds a nonce without its signed bytes being stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import is_hex_address, keccak, to_checksum_address

from api.chain import ChainService, node_errors, node_session
from api.errors import (
    Conflict,
    InFlight,
    NotFound,
    RelayRefused,
    RelayUnavailable,
    UpstreamUnavailable,
    WouldRevert,
)
from api.redact import ScrubFilter, scrub
from api.settings import Settings
from storage.db import Database, Row

logger = logging.getLogger(__name__)
logger.addFilter(ScrubFilter())  # node and webhook URLs carry credentials: never log one

SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_requests (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_nonce BIGINT,
    description TEXT NOT NULL,
    to_address TEXT NOT NULL,
    data TEXT NOT NULL,
    gas_limit BIGINT NOT NULL,
    status TEXT NOT NULL,
    relayer TEXT NOT NULL,
    nonce BIGINT,
    tx_hash TEXT,
    raw_tx TEXT,
    max_fee BIGINT,
    priority_fee BIGINT,
    broadcasts INTEGER NOT NULL DEFAULT 0,
    replacements INTEGER NOT NULL DEFAULT 0,
    block_number BIGINT,
    block_hash TEXT,
    gas_used BIGINT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    next_check_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS relay_requests_idempotency ON relay_requests (account, idempotency_key);
CREATE INDEX IF NOT EXISTS relay_requests_due ON relay_requests (status, next_check_at);
CREATE INDEX IF NOT EXISTS relay_requests_tx_hash ON relay_requests (tx_hash);
CREATE TABLE IF NOT EXISTS relay_attempts (
    tx_hash TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    max_fee BIGINT,
    priority_fee BIGINT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_attempts_request ON relay_attempts (request_id);
CREATE TABLE IF NOT EXISTS relay_nonces (
    address TEXT PRIMARY KEY,
    next_nonce BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_nonce_claims (
    scope TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, nonce)
);
CREATE TABLE IF NOT EXISTS relay_in_flight (
    call TEXT PRIMARY KEY,
    request_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_key_faults (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    since DOUBLE PRECISION NOT NULL
)
"""

#: Statuses, in order. ``confirmed`` and ``failed`` are final.
QUEUED, SENT, MINED, CONFIRMED, FAILED = "queued", "sent", "mined", "confirmed", "failed"
OPEN_STATUSES = (QUEUED, SENT, MINED)
#: Gas limit headroom over the node's estimate, in percent.
GAS_HEADROOM_PERCENT = 20
#: How long a worker holds a claimed row before another may take it over (a
#: worker that died holding rows delays them by at most this long).
LEASE_SECONDS = 10.0
#: Node answers that mean "this exact transaction is already there".
_ALREADY_KNOWN = ("already known", "already imported", "known transaction", "transaction already exists")
#: Node answers that mean "this key cannot pay": nothing it sends gets in until it is funded.
_INSUFFICIENT_FUNDS = ("insufficient funds", "insufficient balance")
#: How a cancelled request's error starts; a cancellation's gas limit (a plain transfer).
CANCELLED = "cancelled:"
CANCEL_GAS = 21_000
_NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "nonce has already been used")


@dataclass(frozen=True)
class Submission:
    """One action to relay: who asked, what to call, and for whom on chain."""

    account: str
    kind: str
    actor: str
    #: The contract called and the calldata (see :meth:`api.chain.ChainService.calldata`).
    to: str
    data: str
    description: str
    idempotency_key: str | None = None
    actor_nonce: int | None = None
    #: What makes a retry under the same idempotency key "the same request", when not the
    #: call itself: a request the service signs anew on each try (a custodial action gets a
    #: fresh nonce and deadline) is identified by what the client asked for.
    fingerprint: str | None = None
    #: The client's network (an IP prefix, see :func:`api.policy.network_of`), charged beside the account.
    network: str | None = None


@dataclass(frozen=True)
class Simulation:
    """What the admission simulation found: the node's gas estimate, the gas
    limit the transaction will carry, and keccak256 of the actor's code
    (``None`` when the actor has none or is not an address)."""

    estimate: int
    gas_limit: int
    actor_code_hash: str | None = None


class AdmissionPolicy(Protocol):
    """What the relayer pays for (:class:`api.policy.Sponsorship`)."""

    def screen(self, submission: Submission) -> None:
        """Before the simulation: raise to refuse."""

    def admit(self, tx: Any, submission: Submission, simulation: Simulation) -> None:
        """In the admission transaction, after the simulation: raise to refuse (nothing is stored)."""

    def reverted(self, request_id: str, actor: str, to: str, data: str, gas: int) -> None:
        """A request's transaction reverted on chain, having used ``gas``."""


@dataclass(frozen=True)
class RelayRecord:
    """A request as the outbox stores it."""

    request_id: str
    account: str
    kind: str
    actor: str
    description: str
    status: str
    relayer: str
    nonce: int | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    confirmations: int
    replacements: int
    error: str | None
    created_at: float
    updated_at: float
    actor_nonce: int | None = None

    @classmethod
    def from_row(cls, row: Row, latest_block: int | None = None) -> RelayRecord:
        confirmations = 0
        if row["block_number"] is not None and latest_block is not None:
            confirmations = max(0, latest_block - int(row["block_number"]) + 1)
        return cls(
            request_id=row["id"], account=row["account"], kind=row["kind"], actor=row["actor"],
            description=row["description"], status=row["status"], relayer=row["relayer"],
            nonce=_int(row["nonce"]), tx_hash=row["tx_hash"], block_number=_int(row["block_number"]),
            block_hash=row["block_hash"], gas_used=_int(row["gas_used"]), confirmations=confirmations,
            replacements=int(row["replacements"]),
            # Rows stored before errors were scrubbed may still quote a URL: never answer one.
            error=scrub(row["error"]) if row["error"] else None, created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]), actor_nonce=_int(row["actor_nonce"]),
        )


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def fingerprint(to: str, data: str) -> str:
    """What makes two submissions "the same request" for an idempotency key."""
    return hashlib.sha256(f"{to.lower()}:{data.lower()}".encode()).hexdigest()


def request_fingerprint(kind: str, fields: dict[str, Any]) -> str:
    """The fingerprint of a request the service signs itself: its kind and the
    client's fields, whatever nonce and deadline each try signs."""
    return hashlib.sha256(json.dumps({"kind": kind, **fields}, sort_keys=True, default=str).encode()).hexdigest()


class Outbox:
    """The outbox over ``db``, sending with the key pool ``keys`` through ``chain``.

    ``policy`` screens each new submission before its simulation, admits it
    inside the admission transaction (charging quotas there, so a refused
    request leaves no row and no charge behind), and hears of each request
    that reverted on chain. ``on_change`` is called with each record whose
    status changed (the webhook)."""

    def __init__(self, db: Database, chain: ChainService, keys: Sequence[LocalAccount], settings: Settings,
                 policy: AdmissionPolicy | None = None,
                 on_change: Callable[[RelayRecord], None] | None = None) -> None:
        if not keys:
            raise ValueError("the outbox needs at least one relayer key")
        self._db = db
        self._chain = chain
        self._keys: dict[str, LocalAccount] = {k.address: k for k in keys}
        self._key_order = [k.address for k in keys]
        self._settings = settings
        self._policy = policy
        self._on_change = on_change
        self._owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fees: tuple[float, dict[str, int]] | None = None
        self._fee_lock = threading.Lock()
        self._nonces_ready = False
        self._nonce_lock = threading.Lock()
        self._http = node_session()
        db.migrate(SCHEMA)

    # ------------------------------------------------------------ admission

    def key_for(self, actor: str) -> str:
        """The relayer key for ``actor``: always the same one, so an actor's
        actions are sent in order on one nonce sequence."""
        digest = hashlib.sha256(actor.lower().encode()).digest()
        return self._key_order[int.from_bytes(digest[:8], "big") % len(self._key_order)]

    def submit(self, submission: Submission) -> RelayRecord:
        """Admit, persist, sign and broadcast ``submission``; see the module docstring."""
        to, data = submission.to, submission.data
        call = fingerprint(to, data)
        print_ = submission.fingerprint or call
        if submission.idempotency_key is not None:
            existing = self._by_idempotency_key(submission.account, submission.idempotency_key)
            if existing is not None:
                return self._replay(existing, print_)
        replayed = self._replay_or_refuse_in_flight(submission, print_, call, look_up_key=False)
        if replayed is not None:  # the first try landed since the lookup above
            return replayed
        if self._policy is not None:
            self._policy.screen(submission)
        relayer = self.key_for(submission.actor)
        self._refuse_unpaid_key(relayer)
        self._ensure_nonces()
        fees = self._fee_fields()
        try:
            simulation = self._simulate(relayer, submission.actor, to, data, fees)
        except WouldRevert:
            # It may revert only because the same call is in flight already: a retry that
            # raced its first try gets the first request, a twin the in-flight answer.
            replayed = self._replay_or_refuse_in_flight(submission, print_, call)
            if replayed is not None:
                return replayed
            raise
        gas_limit = simulation.gas_limit
        now = time.time()
        request_id = uuid.uuid4().hex
        try:
            with self._db.transaction() as tx:
                if self._policy is not None:
                    self._policy.admit(tx, submission, simulation)
                # At most one request in flight per call: the unique key refuses a twin that
                # raced past the check above (another idempotency key, another account).
                tx.execute("INSERT INTO relay_in_flight (call, request_id) VALUES (?, ?)", (call, request_id))
                nonce = self._take_nonce(tx, relayer)
                raw, tx_hash = self._sign(relayer, to, data, gas_limit, nonce, fees)
                tx.execute(
                    "INSERT INTO relay_requests (id, account, idempotency_key, fingerprint, kind, actor, actor_nonce,"
                    " description, to_address, data, gas_limit, status, relayer, nonce, tx_hash, raw_tx, max_fee,"
                    " priority_fee, created_at, updated_at, next_check_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (request_id, submission.account, submission.idempotency_key, print_, submission.kind,
                     submission.actor, submission.actor_nonce, submission.description, to, data, gas_limit,
                     QUEUED, relayer, nonce, tx_hash, raw, fees["maxFeePerGas"], fees["maxPriorityFeePerGas"],
                     now, now, now + self._settings.relay_poll_seconds))
                tx.execute("INSERT INTO relay_attempts (tx_hash, request_id, max_fee, priority_fee, created_at)"
                           " VALUES (?, ?, ?, ?, ?)",
                           (tx_hash, request_id, fees["maxFeePerGas"], fees["maxPriorityFeePerGas"], now))
        except Exception as err:
            if _is_unique_violation(err):
                # The same key, or the same call under another key, raced in; the first one won.
                replayed = self._replay_or_refuse_in_flight(submission, print_, call)
                if replayed is not None:
                    return replayed
            raise
        logger.info("queued %s as %s: %s nonce %d (gas limit %d)", submission.description, request_id, relayer,
                    nonce, gas_limit)
        self._broadcast(request_id, raw, tx_hash)
        return self.get(request_id, count_confirmations=False)

    def _simulate(self, relayer: str, actor: str, to: str, data: str, fees: dict[str, int]) -> Simulation:
        """Simulate the call as the transaction will carry it: from ``relayer``,
        with ``fees``, no value, on the pending state (the block it would be
        mined in: deadlines are judged by its time). ``eth_estimateGas`` and the
        actor's code come in one JSON-RPC batch; an actor with code is
        simulated once more with ``eth_call`` at the exact gas limit (a
        contract's ERC-1271 check could tell a gas estimate by its gas).
        :class:`WouldRevert` with the contract's reason when either fails,
        :class:`RelayRefused` above the gas cap."""
        call: dict[str, Any] = {"from": relayer, "to": to, "data": data, "value": "0x0", "type": "0x2",
                                "maxFeePerGas": hex(fees["maxFeePerGas"]),
                                "maxPriorityFeePerGas": hex(fees["maxPriorityFeePerGas"])}
        calls: list[tuple[str, list[Any]]] = [("eth_estimateGas", [call, "pending"])]
        if is_hex_address(actor):
            calls.append(("eth_getCode", [actor, "pending"]))
        answers = self._rpc_answers(calls)
        error = answers[0].get("error")
        if error is not None and not _is_revert(error) and self._cannot_pay(relayer, error, fees):
            # The fee fields make the node check the key's balance: it cannot pay for this call.
            logger.error("ALERT relayer %s cannot pay for gas: refusing a new relay through it", relayer)
            raise RelayUnavailable(f"the relayer key {relayer} cannot pay for gas now; new relays through it are "
                                   "refused until it is funded, and the operator has been alerted")
        estimate = int(_result(answers[0]), 16)
        cap = self._settings.relay_gas_limit_cap
        if estimate > cap:
            raise RelayRefused(f"the transaction needs {estimate} gas, above the relayer's cap of {cap}")
        gas_limit = min(cap, estimate * (100 + GAS_HEADROOM_PERCENT) // 100)
        code = _result(answers[1]) if len(answers) > 1 else "0x"
        if code in ("0x", "", None):
            return Simulation(estimate, gas_limit)
        _result(self._rpc_answers([("eth_call", [{**call, "gas": hex(gas_limit)}, "pending"])])[0])
        return Simulation(estimate, gas_limit, "0x" + keccak(hexstr=code).hex())

    def _cannot_pay(self, relayer: str, error: dict[str, Any], fees: dict[str, int]) -> bool:
        """Whether a simulation's (non-revert) error means ``relayer`` cannot pay
        for the call: the node says so, or caps the gas at what the balance buys
        ("gas required exceeds allowance") and the balance is below the gas cap
        at these fees."""
        message = str(error.get("message", ""))
        if _refused_for_funds(message):
            return True
        if "allowance" not in message.lower():
            return False
        try:
            balance = int(self._rpc("eth_getBalance", [relayer, "pending"])["result"], 16)
        except Exception:  # the node cannot tell: report its error as it is
            return False
        return balance < self._settings.relay_gas_limit_cap * fees["maxFeePerGas"]

    def _rpc_answers(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Several JSON-RPC calls in one HTTP request, answered whole (errors
        included) in order; :class:`UpstreamUnavailable` if the node cannot be reached."""
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        try:
            response = self._http.post(self._settings.rpc_url, json=payload, timeout=self._settings.rpc_timeout)
            response.raise_for_status()
            answers = {item["id"]: item for item in response.json()}
        except (requests.RequestException, ValueError, TypeError, KeyError) as err:
            raise UpstreamUnavailable("the blockchain node cannot be reached") from err
        return [answers.get(i, {"error": {"message": "no answer"}}) for i in range(len(calls))]

    def _replay(self, row: Row, print_: str) -> RelayRecord:
        if row["fingerprint"] != print_:
            raise Conflict("Idempotency-Key: already used for a different request "
                           f"({row['id']}); use a new key for a new request")
        return RelayRecord.from_row(row, self._latest_block_or_none())

    def _replay_or_refuse_in_flight(self, submission: Submission, print_: str, call: str,
                                    look_up_key: bool = True) -> RelayRecord | None:
        """The first request when ``submission`` is a retry of a stored one (its
        idempotency key), in flight or not; :class:`InFlight` when the same
        call is in flight under another request; None when neither (the
        caller goes on, or raises its own error)."""
        with self._db.read() as tx:
            holder = tx.one("SELECT r.* FROM relay_in_flight f JOIN relay_requests r ON r.id = f.request_id"
                            " WHERE f.call = ?", (call,))
        key = submission.idempotency_key
        if holder is not None:
            if key is not None and (holder["account"], holder["idempotency_key"]) == (submission.account, key):
                return self._replay(holder, print_)
            raise InFlight(f"the same signed call is already in flight as request {holder['id']}; follow it at "
                           f"/relay/{holder['id']} (nothing was sent again)")
        if look_up_key and key is not None:
            existing = self._by_idempotency_key(submission.account, key)
            if existing is not None:
                return self._replay(existing, print_)
        return None

    # ------------------------------------------------------------ key health

    def _refuse_unpaid_key(self, relayer: str) -> None:
        """503 while the node refuses ``relayer``'s transactions for lack of
        funds: new work would only queue behind its stuck nonce."""
        with self._db.read() as tx:
            fault = tx.one("SELECT reason FROM relay_key_faults WHERE address = ?", (relayer,))
            stuck = fault is not None and tx.one(
                "SELECT id FROM relay_requests WHERE relayer = ? AND status = ? LIMIT 1", (relayer, QUEUED))
        if fault is None:
            return
        if not stuck:  # nothing waits on the key any more: the fault is history
            self._clear_fault(relayer)
            return
        logger.error("ALERT relayer %s cannot pay for gas (%s): refusing new relays through it", relayer,
                     fault["reason"])
        raise RelayUnavailable(f"the relayer key {relayer} cannot pay for gas (the node refused its transaction: "
                               f"{fault['reason']}); new relays through it are refused until it is funded, and "
                               "the operator has been alerted")

    def key_faults(self) -> dict[str, str]:
        """Relayer keys whose transactions the node refuses for good (no funds),
        with the node's reason: they refuse new work and show in ``/health``."""
        with self._db.read() as tx:
            rows = tx.all("SELECT address, reason FROM relay_key_faults")
        return {row["address"]: row["reason"] for row in rows}

    def _note_fault(self, request_id: str, reason: str) -> None:
        with self._db.transaction() as tx:
            row = tx.one("SELECT relayer, nonce FROM relay_requests WHERE id = ?", (request_id,))
            if row is None:
                return
            added = tx.execute("INSERT INTO relay_key_faults (address, reason, nonce, since) VALUES (?, ?, ?, ?)"
                               " ON CONFLICT (address) DO NOTHING",
                               (row["relayer"], self._scrub(reason)[:200], int(row["nonce"]), time.time()))
        if added:
            logger.error("ALERT relayer %s cannot pay for gas (%s): its nonce %s is stuck and new relays through "
                         "it are refused until it is funded", row["relayer"], self._scrub(reason), row["nonce"])

    def _clear_fault(self, relayer: str) -> None:
        """``relayer`` pays again: forget its fault and look at its waiting
        requests now rather than at their next back-off."""
        with self._db.transaction() as tx:
            cleared = tx.execute("DELETE FROM relay_key_faults WHERE address = ?", (relayer,))
            if cleared:
                tx.execute("UPDATE relay_requests SET next_check_at = ? WHERE relayer = ? AND status = ?",
                           (time.time(), relayer, QUEUED))
        if cleared:
            logger.warning("relayer %s pays for gas again: its stuck requests go out now", relayer)

    def _by_idempotency_key(self, account: str, key: str) -> Row | None:
        with self._db.read() as tx:
            return tx.one("SELECT * FROM relay_requests WHERE account = ? AND idempotency_key = ?", (account, key))

    def _ensure_nonces(self) -> None:
        """Start each key's sequence at the node's count, once per process, and
        move it forward when the key was used elsewhere (never backwards: a
        stored request may hold a nonce the node has not seen yet)."""
        if self._nonces_ready:
            return
        with self._nonce_lock:
            if self._nonces_ready:
                return
            for address in self._key_order:
                self._resync_nonce(address)
            self._nonces_ready = True

    def _resync_nonce(self, address: str) -> None:
        on_chain = self._chain.pending_nonce(address)
        with self._db.transaction() as tx:
            row = tx.one("SELECT next_nonce FROM relay_nonces WHERE address = ?" + self._db.for_update, (address,))
            if row is None:
                tx.execute("INSERT INTO relay_nonces (address, next_nonce) VALUES (?, ?)", (address, on_chain))
            elif int(row["next_nonce"]) < on_chain:
                logger.warning("relayer %s: nonce moved from %s to %d outside this relayer", address,
                               row["next_nonce"], on_chain)
                tx.execute("UPDATE relay_nonces SET next_nonce = ? WHERE address = ?", (on_chain, address))

    def _take_nonce(self, tx: Any, address: str) -> int:
        row = tx.one("UPDATE relay_nonces SET next_nonce = next_nonce + 1 WHERE address = ? RETURNING next_nonce",
                     (address,))
        if row is None:
            raise RuntimeError(f"relayer {address} has no nonce row")
        return int(row["next_nonce"]) - 1

    def _sign(self, relayer: str, to: str, data: str, gas_limit: int, nonce: int,
              fees: dict[str, int]) -> tuple[str, str]:
        transaction: dict[str, Any] = {
            "chainId": self._chain.chain_id, "to": to, "data": data, "value": 0, "gas": gas_limit,
            "nonce": nonce, "type": 2, **fees,
        }
        signed = self._keys[to_checksum_address(relayer)].sign_transaction(transaction)
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    def _fee_fields(self) -> dict[str, int]:
        """EIP-1559 fees for a new transaction: twice the base fee plus the
        node's tip, never above the fee cap. Read at most once a second."""
        with self._fee_lock:
            if self._fees is not None and time.monotonic() - self._fees[0] < 1.0:
                return dict(self._fees[1])
        fields = self._chain.fee_fields()
        cap = self._settings.relay_max_fee_per_gas
        if "gasPrice" in fields:  # a node without EIP-1559: express its price as 1559 fields
            fields = {"maxFeePerGas": fields["gasPrice"], "maxPriorityFeePerGas": fields["gasPrice"]}
        max_fee = min(cap, fields["maxFeePerGas"])
        fees = {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(fields["maxPriorityFeePerGas"], max_fee)}
        with self._fee_lock:
            self._fees = (time.monotonic(), fees)
        return dict(fees)

    # ------------------------------------------------------------ broadcast

    def _broadcast(self, request_id: str, raw: str, tx_hash: str) -> bool:
        """Send ``raw``; ``sent`` on success (or when the node already has it).
        A refusal leaves the row as it is for the worker to retry."""
        try:
            result = self._rpc("eth_sendRawTransaction", [raw])
        except Exception as err:  # node down: the worker retries
            logger.warning("broadcast of %s failed: %s", request_id, self._scrub(str(err)))
            self._note_error(request_id, f"broadcast failed: {err}")
            return False
        error = result.get("error")
        if error is not None:
            message = str(error.get("message", error))
            if any(text in message.lower() for text in _ALREADY_KNOWN):
                self._mark_sent(request_id, tx_hash)
                return True
            if any(text in message.lower() for text in _NONCE_TOO_LOW):
                # Either this very transaction was mined already (the receipt will say), or
                # another transaction took the nonce; the worker tells which.
                self._note_error(request_id, f"node: {message}")
                return False
            logger.warning("node refused %s: %s", request_id, self._scrub(message))
            self._note_error(request_id, f"node refused the transaction: {message}")
            if _refused_for_funds(message):
                self._note_fault(request_id, message)
            return False
        self._mark_sent(request_id, tx_hash)
        return True

    def _mark_sent(self, request_id: str, tx_hash: str) -> None:
        now = time.time()
        with self._db.transaction() as tx:
            changed = tx.execute(
                "UPDATE relay_requests SET status = ?, sent_at = ?, updated_at = ?, broadcasts = broadcasts + 1,"
                " error = CASE WHEN error LIKE ? THEN error ELSE NULL END WHERE id = ? AND status = ?",
                (SENT, now, now, CANCELLED + "%", request_id, QUEUED))
            if not changed:
                tx.execute("UPDATE relay_requests SET sent_at = ?, broadcasts = broadcasts + 1 WHERE id = ?",
                           (now, request_id))
            fault = tx.one("SELECT f.address FROM relay_key_faults f JOIN relay_requests r ON r.relayer = f.address"
                           " WHERE r.id = ?", (request_id,))
        if fault is not None:  # the node takes the key's transactions again
            self._clear_fault(fault["address"])
        if changed:
            self._changed(request_id)

    def _note_error(self, request_id: str, message: str) -> None:
        # Public at GET /relay/{id}: never store the node's URL (it carries the provider's key).
        with self._db.transaction() as tx:
            # A cancellation keeps its reason: it is what the request ends with.
            tx.execute("UPDATE relay_requests SET error = CASE WHEN error LIKE ? THEN error ELSE ? END,"
                       " updated_at = ? WHERE id = ?",
                       (CANCELLED + "%", self._scrub(message)[:500], time.time(), request_id))

    def _scrub(self, message: str) -> str:
        return scrub(message, [self._settings.rpc_url])

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        """One JSON-RPC call, answering the raw response (errors included)."""
        response = self._http.post(self._settings.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                                 "params": params},
                                   timeout=self._settings.rpc_timeout)
        response.raise_for_status()
        return dict(response.json())

    def _rpc_batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several JSON-RPC calls in one HTTP request; answers the results in
        order (``None`` for a call that failed or found nothing)."""
        if not calls:
            return []
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        response = self._http.post(self._settings.rpc_url, json=payload, timeout=self._settings.rpc_timeout)
        response.raise_for_status()
        answers = {item["id"]: item.get("result") for item in response.json()}
        return [answers.get(i) for i in range(len(calls))]

    # ------------------------------------------------------------ reading

    def get(self, request_id: str, count_confirmations: bool = True) -> RelayRecord:
        """A request by its id, or by the hash of any transaction sent for it,
        its confirmations counted to the node's latest block (not counted, and
        no node call, with ``count_confirmations`` false: a new request)."""
        with self._db.read() as tx:
            if request_id.startswith("0x"):
                row = tx.one("SELECT r.* FROM relay_requests r JOIN relay_attempts a ON a.request_id = r.id"
                             " WHERE a.tx_hash = ?", (request_id.lower(),))
            else:
                row = tx.one("SELECT * FROM relay_requests WHERE id = ?", (request_id,))
        if row is None:
            raise NotFound(f"the relayer has no request {request_id}")
        return RelayRecord.from_row(row, self._latest_block_or_none() if count_confirmations else None)

    def by_idempotency_key(self, account: str, key: str) -> RelayRecord | None:
        """The account's request stored under ``key``, or None."""
        row = self._by_idempotency_key(account, key)
        return RelayRecord.from_row(row) if row is not None else None

    def for_account(self, account: str, limit: int = 50) -> list[RelayRecord]:
        """The account's latest requests, newest first (confirmations not counted)."""
        with self._db.read() as tx:
            rows = tx.all("SELECT * FROM relay_requests WHERE account = ? ORDER BY created_at DESC LIMIT ?",
                          (account, limit))
        return [RelayRecord.from_row(row) for row in rows]

    def _latest_block_or_none(self) -> int | None:
        try:
            return self._chain.latest_block()
        except Exception:
            return None

    def next_actor_nonce(self, actor: str, open_only: bool = True) -> int:
        """One past the highest certificate nonce ``actor`` signed in a request
        still open in the outbox (0 if none): a custodial account's next
        action must not reuse a nonce that is queued but not yet mined. With
        ``open_only=False``, in any request ever stored, failed ones included
        (whose signatures stay valid until their deadline)."""
        sql, params = "SELECT MAX(actor_nonce) AS n FROM relay_requests WHERE actor = ?", [actor]
        if open_only:
            sql += " AND status IN (?, ?, ?)"
            params += OPEN_STATUSES
        with self._db.read() as tx:
            row = tx.one(sql, params)
        return int(row["n"]) + 1 if row is not None and row["n"] is not None else 0

    def actor_lock(self, actor: str) -> AbstractContextManager[None]:
        """Held around "read the actor's next certificate nonce, sign, queue"
        when the service signs for ``actor`` (a custodial account): in the
        database, so two instances never sign the same nonce."""
        return self._db.lock(f"actor-nonce:{actor.lower()}")

    def claim_nonce(self, scope: str, nonce: int, until: float) -> bool:
        """Reserve ``nonce`` in ``scope`` (say, one payer's EIP-3009 nonces on
        one token) until ``until``, for every instance sharing this database
        and across restarts; False when a live claim holds it already."""
        now = time.time()
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM relay_nonce_claims WHERE scope = ? AND expires_at <= ?", (scope, now))
            return tx.execute("INSERT INTO relay_nonce_claims (scope, nonce, expires_at) VALUES (?, ?, ?)"
                              " ON CONFLICT (scope, nonce) DO NOTHING", (scope, str(nonce), until)) == 1

    def counts(self) -> dict[str, int]:
        """How many requests are in each status."""
        with self._db.read() as tx:
            rows = tx.all("SELECT status, COUNT(*) AS n FROM relay_requests GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    # ------------------------------------------------------------ the worker

    def start(self) -> None:
        """Run :meth:`process` in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        if not self._db.postgres:
            # SQLite serves one instance: any lease in the file is a dead predecessor's.
            with self._db.transaction() as tx:
                tx.execute("UPDATE relay_requests SET next_check_at = ?, lease_owner = NULL WHERE status IN (?, ?, ?)",
                           (time.time(), *OPEN_STATUSES))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="relay-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.process()
            except Exception:
                logger.exception("relay worker pass failed")
                busy = 0
            if not busy:
                self._stop.wait(self._settings.relay_poll_seconds)

    def _claim(self, limit: int = 200) -> list[Row]:
        """Lease up to ``limit`` due rows to this worker (``SKIP LOCKED``:
        rows another instance is claiming right now are left to it)."""
        now = time.time()
        with self._db.transaction() as tx:
            rows = tx.all("SELECT * FROM relay_requests WHERE status IN (?, ?, ?) AND next_check_at <= ?"
                          " ORDER BY next_check_at LIMIT ?" + self._db.skip_locked,
                          (QUEUED, SENT, MINED, now, limit))
            for row in rows:
                tx.execute("UPDATE relay_requests SET next_check_at = ?, lease_owner = ? WHERE id = ?",
                           (now + LEASE_SECONDS, self._owner, row["id"]))
        return rows

    def process(self) -> int:
        """One pass over the due rows; returns how many were looked at."""
        rows = self._claim()
        if not rows:
            return 0
        self._ensure_nonces()
        hashes: dict[str, list[str]] = {}
        with self._db.transaction() as tx:
            for row in rows:
                attempts = tx.all("SELECT tx_hash FROM relay_attempts WHERE request_id = ? ORDER BY created_at",
                                  (row["id"],))
                hashes[row["id"]] = [a["tx_hash"] for a in attempts]
        calls: list[tuple[str, list[Any]]] = [("eth_blockNumber", [])]
        index: list[tuple[str, str]] = []
        for row in rows:
            for tx_hash in hashes[row["id"]]:
                calls.append(("eth_getTransactionReceipt", [tx_hash]))
                index.append((row["id"], tx_hash))
        with node_errors():
            results = self._rpc_batch(calls)
        latest = int(results[0], 16)
        receipts: dict[str, dict[str, Any]] = {}
        for (request_id, _tx_hash), receipt in zip(index, results[1:], strict=True):
            if receipt:
                receipts[request_id] = receipt
        for row in rows:
            try:
                self._advance(row, receipts.get(row["id"]), latest)
            except Exception:
                logger.exception("relay request %s: worker step failed", row["id"])
        return len(rows)

    def _advance(self, row: Row, receipt: dict[str, Any] | None, latest: int) -> None:
        request_id = row["id"]
        now = time.time()
        poll = self._settings.relay_poll_seconds
        if receipt is not None:
            block_number = int(receipt["blockNumber"], 16)
            block_hash = receipt["blockHash"]
            confirmations = latest - block_number + 1
            succeeded = int(receipt["status"], 16) == 1
            # A cancellation (a transfer to the relayer itself) ends the request failed, whatever its receipt.
            cancelled = str(row["to_address"]).lower() == str(row["relayer"]).lower()
            if confirmations >= self._settings.relay_confirmations:
                # The receipt was read in the same batch as the head: it is the
                # canonical chain's (a reorganised-away transaction has none, or
                # one in its new block), so no separate block check is needed.
                final = CONFIRMED if succeeded and not cancelled else FAILED
                error = row["error"] if cancelled else None if succeeded else "the transaction reverted on chain"
                self._update(request_id, final, now, tx_hash=receipt["transactionHash"], block_number=block_number,
                             block_hash=block_hash, gas_used=int(receipt["gasUsed"], 16), error=error)
                if not succeeded and self._policy is not None:
                    self._policy.reverted(request_id, row["actor"], row["to_address"], row["data"],
                                          int(receipt["gasUsed"], 16))
                return
            self._update(request_id, MINED, now + poll, tx_hash=receipt["transactionHash"],
                         block_number=block_number, block_hash=block_hash, gas_used=int(receipt["gasUsed"], 16))
            return
        if row["status"] == MINED:
            # Its receipt is gone: the block was reorganised away.
            self._reorged(row)
            return
        if row["status"] == QUEUED:
            if _refused_for_funds(row["error"] or "") and self._cancel_if_void(row, now):
                return
            if self._broadcast(request_id, row["raw_tx"], row["tx_hash"]):
                self._reschedule(request_id, now + poll)
            else:
                self._after_failed_broadcast(row, now)
            return
        # SENT, no receipt yet.
        sent_at = float(row["sent_at"] or row["created_at"])
        if now - sent_at >= self._settings.relay_stuck_seconds:
            self._replace(row, now)
        else:
            self._reschedule(request_id, now + poll)

    def _after_failed_broadcast(self, row: Row, now: float) -> None:
        """A ``queued`` row the node would not take. If the node's count has
        passed its nonce while none of its transactions has a receipt, the
        nonce went to something else: sign the request again on a new nonce."""
        relayer, nonce = row["relayer"], int(row["nonce"])
        try:
            mined_count = int(self._rpc("eth_getTransactionCount", [relayer, "latest"])["result"], 16)
        except Exception:
            mined_count = -1
        if mined_count > nonce:
            if self._any_receipt(row["id"]):
                # Its own transaction took the nonce: the submitting request broadcast it and it was
                # mined after this pass read the receipts. The next pass confirms it; signing again
                # would take a nonce that nothing ever uses, and every later nonce would wait behind it.
                self._reschedule(row["id"], now)
                return
            self._resync_nonce(relayer)
            fees = self._fee_fields()
            with self._db.transaction() as tx:
                new_nonce = self._take_nonce(tx, relayer)
                raw, tx_hash = self._sign(relayer, row["to_address"], row["data"], int(row["gas_limit"]), new_nonce,
                                          fees)
                tx.execute("UPDATE relay_requests SET status = ?, nonce = ?, raw_tx = ?, tx_hash = ?, max_fee = ?,"
                           " priority_fee = ?, updated_at = ?, next_check_at = ? WHERE id = ?",
                           (QUEUED, new_nonce, raw, tx_hash, fees["maxFeePerGas"], fees["maxPriorityFeePerGas"], now,
                            now, row["id"]))
                tx.execute("INSERT INTO relay_attempts (tx_hash, request_id, max_fee, priority_fee, created_at)"
                           " VALUES (?, ?, ?, ?, ?)",
                           (tx_hash, row["id"], fees["maxFeePerGas"], fees["maxPriorityFeePerGas"], now))
            logger.warning("request %s: nonce %d was taken outside the relayer; re-signed on nonce %d", row["id"],
                           nonce, new_nonce)
            return
        backoff = min(30.0, self._settings.relay_poll_seconds * 2 ** min(int(row["broadcasts"]) + 1, 8))
        self._reschedule(row["id"], now + backoff)

    def _cancel_if_void(self, row: Row, now: float) -> bool:
        """A request stuck because the node refused its key for lack of funds:
        if it holds the key's next nonce and its call would now revert (its
        deadline passed meanwhile, its token moved), replace it with a
        cancellation, a 0-value transfer to the relayer itself on the same
        nonce (21,000 gas), so the key is unblocked without paying for a
        revert. True when cancelled."""
        relayer, nonce = row["relayer"], int(row["nonce"])
        try:
            if int(self._rpc("eth_getTransactionCount", [relayer, "pending"])["result"], 16) != nonce:
                return False
            self._simulate(relayer, row["actor"], row["to_address"], row["data"], self._fee_fields())
            return False
        except WouldRevert as err:
            reason = err.detail
        except Exception:  # the node cannot tell now: try again later
            return False
        fees = self._fee_fields()
        raw, tx_hash = self._sign(relayer, relayer, "0x", CANCEL_GAS, nonce, fees)
        error = f"{CANCELLED} the relayer could not pay for gas, and by the time it could the call would revert: " \
                f"{reason}"
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO relay_attempts (tx_hash, request_id, max_fee, priority_fee, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (tx_hash, row["id"], fees["maxFeePerGas"],
                                                   fees["maxPriorityFeePerGas"], now))
            tx.execute("UPDATE relay_requests SET to_address = ?, data = ?, gas_limit = ?, raw_tx = ?, tx_hash = ?,"
                       " max_fee = ?, priority_fee = ?, error = ?, updated_at = ?, next_check_at = ? WHERE id = ?",
                       (relayer, "0x", CANCEL_GAS, raw, tx_hash, fees["maxFeePerGas"], fees["maxPriorityFeePerGas"],
                        self._scrub(error)[:500], now, now + self._settings.relay_poll_seconds, row["id"]))
            tx.execute("DELETE FROM relay_in_flight WHERE request_id = ?", (row["id"],))
        logger.warning("request %s: cancelled on nonce %d with %s: %s", row["id"], nonce, tx_hash, self._scrub(error))
        self._broadcast(row["id"], raw, tx_hash)
        return True

    def _any_receipt(self, request_id: str) -> bool:
        """Whether any transaction sent for ``request_id`` has a receipt now."""
        with self._db.transaction() as tx:
            attempts = tx.all("SELECT tx_hash FROM relay_attempts WHERE request_id = ?", (request_id,))
        with node_errors():
            receipts = self._rpc_batch([("eth_getTransactionReceipt", [a["tx_hash"]]) for a in attempts])
        return any(receipts)

    def _reorged(self, row: Row) -> None:
        """The block holding the request's transaction left the chain: back to
        ``sent`` and broadcast again (the node may have dropped it)."""
        logger.warning("request %s: block %s reorganised away; sending %s again", row["id"], row["block_number"],
                       row["tx_hash"])
        now = time.time()
        with self._db.transaction() as tx:
            tx.execute("UPDATE relay_requests SET status = ?, block_number = NULL, block_hash = NULL,"
                       " gas_used = NULL, sent_at = ?, updated_at = ?, next_check_at = ? WHERE id = ?",
                       (SENT, now, now, now + self._settings.relay_poll_seconds, row["id"]))
        self._changed(row["id"])
        self._resend(row["raw_tx"], row["id"])

    def _resend(self, raw: str, request_id: str | None = None) -> None:
        """Send ``raw`` again. If the node refuses it because the key cannot pay
        (it may have dropped the transaction for that reason), ``request_id``
        goes back to ``queued`` with the key's fault recorded, as a first
        broadcast refused for funds would: new work through the key is refused
        and the worker offers the request again until the key is funded."""
        try:
            result = self._rpc("eth_sendRawTransaction", [raw])
        except Exception as err:
            logger.warning("re-send failed: %s", self._scrub(str(err)))
            return
        error = result.get("error")
        if error is None or request_id is None:
            return
        message = str(error.get("message", error))
        if not _refused_for_funds(message):
            return
        logger.warning("node refused the re-send of %s: %s", request_id, self._scrub(message))
        with self._db.transaction() as tx:
            tx.execute("UPDATE relay_requests SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                       (QUEUED, time.time(), request_id, SENT))
        self._note_error(request_id, f"node refused the transaction: {message}")
        self._note_fault(request_id, message)

    def _replace(self, row: Row, now: float) -> None:
        """No receipt for ``relay_stuck_seconds``: if the node lost the
        transaction, send it again; otherwise replace it on the same nonce with
        fees raised by 1/8 (the minimum replacement bump nodes accept is 10%),
        never above the fee cap. At the cap, only re-send."""
        cap = self._settings.relay_max_fee_per_gas
        old_max, old_tip = int(row["max_fee"]), int(row["priority_fee"])
        current = self._fee_fields()
        new_max = min(cap, max(old_max + old_max // 8 + 1, current["maxFeePerGas"]))
        new_tip = min(new_max, max(old_tip + old_tip // 8 + 1, current["maxPriorityFeePerGas"]))
        if new_max <= old_max:
            self._resend(row["raw_tx"], row["id"])
            with self._db.transaction() as tx:
                tx.execute("UPDATE relay_requests SET sent_at = ?, next_check_at = ?, updated_at = ? WHERE id = ?",
                           (now, now + self._settings.relay_poll_seconds, now, row["id"]))
            return
        fees = {"maxFeePerGas": new_max, "maxPriorityFeePerGas": new_tip}
        raw, tx_hash = self._sign(row["relayer"], row["to_address"], row["data"], int(row["gas_limit"]),
                                  int(row["nonce"]), fees)
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO relay_attempts (tx_hash, request_id, max_fee, priority_fee, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (tx_hash, row["id"], new_max, new_tip, now))
            tx.execute("UPDATE relay_requests SET raw_tx = ?, tx_hash = ?, max_fee = ?, priority_fee = ?,"
                       " replacements = replacements + 1, sent_at = ?, updated_at = ?, next_check_at = ?"
                       " WHERE id = ?",
                       (raw, tx_hash, new_max, new_tip, now, now, now + self._settings.relay_poll_seconds,
                        row["id"]))
        logger.info("request %s: replaced stuck transaction with %s (max fee %d -> %d wei)", row["id"], tx_hash,
                    old_max, new_max)
        self._resend(raw, row["id"])

    def _reschedule(self, request_id: str, at: float) -> None:
        with self._db.transaction() as tx:
            tx.execute("UPDATE relay_requests SET next_check_at = ? WHERE id = ?", (at, request_id))

    def _update(self, request_id: str, status: str, next_check_at: float, **fields: Any) -> None:
        now = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._db.transaction() as tx:
            before = tx.one("SELECT status FROM relay_requests WHERE id = ?", (request_id,))
            tx.execute(f"UPDATE relay_requests SET status = ?, updated_at = ?, next_check_at = ?, {columns}"
                       " WHERE id = ?", (status, now, next_check_at, *fields.values(), request_id))
            if status in (CONFIRMED, FAILED):  # no longer in flight: the same call may be asked for again
                tx.execute("DELETE FROM relay_in_flight WHERE request_id = ?", (request_id,))
        if before is None or before["status"] != status:
            self._changed(request_id)

    def _changed(self, request_id: str) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.get(request_id))
        except Exception:
            logger.exception("status change hook failed for %s", request_id)


def _refused_for_funds(message: str) -> bool:
    return any(text in message.lower() for text in _INSUFFICIENT_FUNDS)


def _result(answer: dict[str, Any]) -> Any:
    """A JSON-RPC answer's result; :class:`WouldRevert` with the contract's
    reason for a revert, :class:`UpstreamUnavailable` for any other error
    (its text never carries a URL: the answer is public)."""
    error = answer.get("error")
    if error is not None:
        if _is_revert(error):
            raise WouldRevert(rpc_revert_reason(error))
        raise UpstreamUnavailable(scrub(f"the blockchain node answered with an error: "
                                        f"{error.get('message', error)}"))
    return answer.get("result")


def _is_revert(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return "revert" in message or error.get("code") == 3


def rpc_revert_reason(error: dict[str, Any]) -> str:
    """The contract's reason from a JSON-RPC error: the ``Error(string)`` in its
    data, a ``Panic(uint256)`` code, or the node's message without its
    ``execution reverted`` prefix."""
    data = error.get("data")
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x08c379a0") and len(data) >= 138:
        try:
            (reason,) = abi_decode(["string"], bytes.fromhex(data[10:]))
            return str(reason) or _NO_REASON
        except Exception:  # malformed: fall back to the message
            pass
    if isinstance(data, str) and data.startswith("0x4e487b71") and len(data) >= 74:
        return f"panic 0x{int(data[10:74], 16):02x}"
    message = str(error.get("message", "")).strip()
    if message.startswith("execution reverted"):
        message = message[len("execution reverted"):].lstrip(": ").strip()
    return message or _NO_REASON


_NO_REASON = "the transaction would revert (no reason given)"


def _is_unique_violation(err: Exception) -> bool:
    name = type(err).__name__
    return name in ("IntegrityError", "UniqueViolation") or "UNIQUE constraint" in str(err)


def record_json(record: RelayRecord) -> str:
    """A record as the webhook sends it."""
    return json.dumps({"request_id": record.request_id, "status": record.status, "kind": record.kind,
                       "tx_hash": record.tx_hash, "block_number": record.block_number,
                       "error": record.error}, sort_keys=True)


__all__ = ["AdmissionPolicy", "Outbox", "RelayRecord", "Simulation", "Submission", "fingerprint", "record_json",
           "request_fingerprint"]
