"""Gas sponsorship policy: what the relayer pays for, how much, and how fast.

* :class:`AllowList`: only these contract functions are relayed, on the
  deployment's own contracts. Every relay path builds its call from this list,
  and the outbox refuses anything else, so a bug upstream cannot turn the
  relayer into a general-purpose gas faucet.
* :class:`Quotas`: actions and gas per UTC day, per account, per client
  network (an IP prefix: ``/24`` for IPv4, ``/56`` for IPv6 by default) and
  for the whole service, charged in the same database transaction that queues
  the request (a refused request is not charged; two instances cannot both
  take the last unit). No account or network may use more than
  ``quota_max_share`` of the service's day, whatever its own limit, so an
  abuser exhausts their own allowance, not everyone's. Operators change the
  limits through ``/admin/quotas``.
* :class:`RevertLedger`: the calls that reverted on chain at the relayer's
  cost. The same call is never paid for twice (409 ``already_reverted``), an
  on-chain actor whose reverted gas today reaches its budget is refused (429;
  a stricter budget for actors with code, whose ERC-1271 check can answer
  differently on chain than in the simulation), and the operator may allow
  only contract actors with known code hashes.
* :class:`Sponsorship`: the admission policy the outbox calls (the ledger and
  the quotas, in that order).
* :class:`BalanceGuard`: below ``relayer_min_balance_wei`` a relayer key
  refuses new work (503) and the shortfall shows in logs and ``/health``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from api.chain import ChainService
from api.errors import AlreadyReverted, InvalidRequest, RelayRefused, RelayUnavailable, TooManyRequests
from api.network import ip_prefix
from api.outbox import Simulation, Submission, fingerprint
from api.settings import Settings
from storage.db import Database

logger = logging.getLogger(__name__)

#: The relayed functions, by manifest contract name. Nothing else is sent.
RELAYED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "WineCertificate": ("transfer_with_signature", "create_gift_with_signature", "revoke_gift_with_signature",
                        "request_redemption_with_signature", "flag_with_signature", "claim_gift",
                        "invalidate_nonces_with_signature"),
    "PointsToken": ("transferWithAuthorization",),
    "PledgeLending": ("accept_offer_with_signature", "extend_loan", "repay_with_authorization"),
}
#: The same, for every contract of a type the manifest may record many times
#: under names of their own (one ``CaskShares`` per cask).
RELAYED_FUNCTIONS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "CaskShares": ("transferWithAuthorization", "claim_with_authorization", "claim_distribution"),
}

#: How far past the holder's current nonce a sponsored nonce invalidation may
#: reach: enough to void every signature a holder plausibly has pending, not
#: enough to burn the nonce space (the contract allows up to 2**64 - 1, which
#: a holder can still do directly with ``invalidate_nonces``, paying its gas).
MAX_NONCE_SKIP = 1_000


def check_nonce_invalidation(nonce: int, new_nonce: int) -> None:
    """Sponsor policy for ``invalidate_nonces_with_signature`` signed at ``nonce``:
    it must void something (``new_nonce`` above ``nonce``) and reach at most
    :data:`MAX_NONCE_SKIP` past it. :class:`InvalidRequest` (422) otherwise, before
    anything is simulated, charged or sent."""
    if new_nonce <= nonce:
        raise InvalidRequest(f"new_nonce: {new_nonce} is not above nonce {nonce}, so the invalidation would void "
                             f"nothing; {nonce + 1} voids the signature pending at nonce {nonce}")
    if new_nonce - nonce > MAX_NONCE_SKIP:
        raise InvalidRequest(f"new_nonce: {new_nonce} is more than {MAX_NONCE_SKIP} above nonce {nonce}; the "
                             f"relayer voids at most {MAX_NONCE_SKIP} nonces at once (up to {nonce + MAX_NONCE_SKIP})")


#: Pseudo-accounts of the quota tables: the service-wide total, the default
#: limit of an account without its own row, and that of a client network.
GLOBAL = "*"
DEFAULT = "default"
DEFAULT_NETWORK = "default-network"
#: Prefix of a client network's row in the quota tables (``net:203.0.113.0/24``).
NETWORK = "net:"

SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_usage (
    day TEXT NOT NULL,
    account TEXT NOT NULL,
    actions BIGINT NOT NULL,
    gas BIGINT NOT NULL,
    PRIMARY KEY (day, account)
);
CREATE TABLE IF NOT EXISTS relay_quotas (
    account TEXT PRIMARY KEY,
    actions_per_day BIGINT NOT NULL,
    gas_per_day BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_reverted (
    fingerprint TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    day TEXT NOT NULL,
    gas BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS relay_reverted_actor ON relay_reverted (actor, day)
"""


def network_of(host: str | None, v4_prefix: int = 24, v6_prefix: int = 56) -> str:
    """The quota key of a client's network: its address cut to the prefix
    (an IPv4-mapped IPv6 address counts as IPv4); a host that is not an
    address (a test client, a Unix socket) is its own network."""
    prefix = ip_prefix(host, v4_prefix, v6_prefix)
    return NETWORK + (prefix if prefix is not None else (host or "unknown")[:60])


class AllowList:
    """The (address, selector) pairs the relayer may call, read from the
    deployment's ABIs on first use."""

    def __init__(self, chain: ChainService) -> None:
        self._chain = chain
        self._allowed: dict[tuple[str, bytes], str] | None = None
        self._lock = threading.Lock()

    def _build(self) -> dict[tuple[str, bytes], str]:
        allowed: dict[tuple[str, bytes], str] = {}
        relayed = dict(RELAYED_FUNCTIONS)
        for name, record in self._chain.manifest.contracts.items():
            functions = RELAYED_FUNCTIONS_BY_TYPE.get(str(record.get("contract") or name))
            if functions:
                relayed[name] = functions
        for contract_name, functions in relayed.items():
            contract = self._chain.contract(contract_name)
            if contract is None:
                continue
            for function in functions:
                try:
                    selector, _ = self._chain.function_layout(contract, function)
                except ValueError:
                    continue  # an older deployment without it
                allowed[(contract.address.lower(), selector)] = f"{contract_name}.{function}"
        return allowed

    def check(self, to: str, data: str) -> str:
        """The allowed function ``data`` calls on ``to``; :class:`RelayRefused` otherwise."""
        with self._lock:
            if self._allowed is None:
                self._allowed = self._build()
        selector = bytes.fromhex(data[2:10]) if data.startswith("0x") else bytes.fromhex(data[:8])
        name = self._allowed.get((to.lower(), selector))
        if name is None:
            raise RelayRefused(f"the relayer does not pay for calls of 0x{selector.hex()} on "
                               f"{to_checksum_address(to)}: not on its allow-list")
        return name

    def functions(self) -> list[str]:
        with self._lock:
            if self._allowed is None:
                self._allowed = self._build()
            return sorted(self._allowed.values())


@dataclass(frozen=True)
class Limit:
    actions_per_day: int
    gas_per_day: int
    #: Whether ``quota_max_share`` of the service's limit cut it below the row's own.
    share_capped: bool = False


@dataclass(frozen=True)
class Usage:
    day: str
    account: str
    actions: int
    gas: int


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def seconds_to_midnight() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


class Quotas:
    """Per-account, per-network and service-wide daily limits, stored beside the outbox."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._defaults = {
            DEFAULT: Limit(settings.quota_account_actions_per_day, settings.quota_account_gas_per_day),
            DEFAULT_NETWORK: Limit(settings.quota_network_actions_per_day, settings.quota_network_gas_per_day),
            GLOBAL: Limit(settings.quota_global_actions_per_day, settings.quota_global_gas_per_day),
        }
        self.max_share = settings.quota_max_share
        db.migrate(SCHEMA)

    def _row(self, tx: Any, account: str) -> Limit | None:
        row = tx.one("SELECT actions_per_day, gas_per_day FROM relay_quotas WHERE account = ?", (account,))
        return Limit(int(row["actions_per_day"]), int(row["gas_per_day"])) if row is not None else None

    def limit(self, tx: Any, account: str) -> Limit:
        """The limit that applies to ``account`` (an account id, a ``net:`` network,
        ``default``, ``default-network`` or ``*``): its own row, else its kind's
        default row, else the settings; for anything but ``*``, at most
        ``quota_max_share`` of the service's limit."""
        if account == GLOBAL:
            return self._row(tx, GLOBAL) or self._defaults[GLOBAL]
        default = DEFAULT_NETWORK if account.startswith(NETWORK) or account == DEFAULT_NETWORK else DEFAULT
        own = self._row(tx, account) or self._row(tx, default) or self._defaults[default]
        service = self._row(tx, GLOBAL) or self._defaults[GLOBAL]
        actions = min(own.actions_per_day, int(service.actions_per_day * self.max_share))
        gas = min(own.gas_per_day, int(service.gas_per_day * self.max_share))
        capped = (actions, gas) != (own.actions_per_day, own.gas_per_day)
        return Limit(actions, gas, capped)

    def charge(self, tx: Any, account: str, gas: int, network: str | None = None) -> None:
        """Count one action of ``gas`` for the service, ``network`` (if known)
        and ``account``; raise 429 (rolling the transaction back) if any goes
        over its limit. The service is checked first: when it is the one used
        up, that is what the client is told."""
        day = today()
        charged = [(GLOBAL, "the service's")]
        if network is not None:
            charged.append((network, "your network's"))
        charged.append((account, "your account's"))
        for who, label in charged:
            row = tx.one(
                "INSERT INTO relay_usage (day, account, actions, gas) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (day, account) DO UPDATE SET actions = relay_usage.actions + 1,"
                " gas = relay_usage.gas + excluded.gas RETURNING actions, gas", (day, who, gas))
            assert row is not None
            limit = self.limit(tx, who)
            share = (f" ({self.max_share:.2%} of the service's, the most one account or network may use)"
                     if limit.share_capped else "")
            if int(row["actions"]) > limit.actions_per_day:
                raise TooManyRequests(f"{label} daily quota of {limit.actions_per_day} relayed actions{share} is "
                                      "used up; it resets at 00:00 UTC", seconds_to_midnight())
            if int(row["gas"]) > limit.gas_per_day:
                raise TooManyRequests(f"{label} daily gas quota of {limit.gas_per_day}{share} is used up (this "
                                      f"action needs {gas}); it resets at 00:00 UTC", seconds_to_midnight())

    def set_limit(self, account: str, limit: Limit,
                  audit: Callable[[Any, Limit], None] | None = None) -> Limit:
        """Set ``account``'s own limits; the limit that applied before. ``audit(tx,
        before)`` runs in the same transaction when the limits change, so the
        change and its audit record are kept together or not at all."""
        with self._db.transaction() as tx:
            before = self.limit(tx, account)
            tx.execute("INSERT INTO relay_quotas (account, actions_per_day, gas_per_day, updated_at)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                       " actions_per_day = excluded.actions_per_day, gas_per_day = excluded.gas_per_day,"
                       " updated_at = excluded.updated_at",
                       (account, limit.actions_per_day, limit.gas_per_day, time.time()))
            if audit is not None and (before.actions_per_day, before.gas_per_day) != (
                    limit.actions_per_day, limit.gas_per_day):
                audit(tx, before)
        logger.info("operator set the quota of %s to %d actions and %d gas per day", account,
                    limit.actions_per_day, limit.gas_per_day)
        return before

    def get_limit(self, account: str) -> Limit:
        with self._db.transaction() as tx:
            return self.limit(tx, account)

    def usage(self, day: str | None = None, account: str | None = None) -> list[Usage]:
        sql, params = "SELECT * FROM relay_usage WHERE day = ?", [day or today()]
        if account is not None:
            sql += " AND account = ?"
            params.append(account)
        with self._db.transaction() as tx:
            rows = tx.all(sql + " ORDER BY account", params)
        return [Usage(r["day"], r["account"], int(r["actions"]), int(r["gas"])) for r in rows]


@dataclass(frozen=True)
class RevertedUsage:
    actor: str
    calls: int
    gas: int


class RevertLedger:
    """The calls that reverted on chain at the relayer's cost, by call
    fingerprint (address and calldata) and by on-chain actor."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self.actor_budget = settings.relay_reverted_gas_per_actor
        self.contract_budget = settings.relay_contract_reverted_gas_per_actor
        hashes = settings.relay_contract_code_hashes
        self.code_hashes: frozenset[str] | None = frozenset(hashes.split(",")) if hashes else None
        db.migrate(SCHEMA)

    def check_call(self, to: str, data: str) -> None:
        """:class:`AlreadyReverted` if this exact call reverted on chain before."""
        with self._db.read() as tx:
            row = tx.one("SELECT request_id, created_at FROM relay_reverted WHERE fingerprint = ?",
                         (fingerprint(to, data),))
        if row is not None:
            when = dt.datetime.fromtimestamp(float(row["created_at"]), dt.UTC).isoformat(timespec="seconds")
            raise AlreadyReverted(f"this exact call reverted on chain in request {row['request_id']} ({when}); "
                                  "the relayer does not pay for the same call twice: sign a new one")

    def check_actor(self, tx: Any, actor: str, code_hash: str | None) -> None:
        """Refuse ``actor`` (``code_hash``: keccak256 of its code, ``None`` for
        an account without code) if its code is not allowed (409) or its
        reverted gas today reached its budget (429)."""
        if code_hash is not None and self.code_hashes is not None and code_hash.lower() not in self.code_hashes:
            raise RelayRefused(f"the relayer does not pay for actions of {actor}: its contract code (hash "
                               f"{code_hash}) is not on the operator's allow-list")
        budget = self.contract_budget if code_hash is not None else self.actor_budget
        row = tx.one("SELECT COALESCE(SUM(gas), 0) AS gas FROM relay_reverted WHERE actor = ? AND day = ?",
                     (actor.lower(), today()))
        spent = int(row["gas"]) if row is not None else 0
        if spent >= budget:
            kind = "a contract actor" if code_hash is not None else "an actor"
            raise TooManyRequests(f"{actor}'s relayed transactions reverted on chain for {spent} gas today, the "
                                  f"budget of {kind} is {budget}; the relayer takes its requests again at 00:00 "
                                  "UTC", seconds_to_midnight())

    def record(self, request_id: str, actor: str, to: str, data: str, gas: int) -> None:
        """Remember that ``request_id``'s call reverted on chain for ``gas``."""
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO relay_reverted (fingerprint, request_id, actor, day, gas, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
                       (fingerprint(to, data), request_id, actor.lower(), today(), gas, time.time()))
        logger.warning("request %s of %s reverted on chain for %d gas: the same call will be refused", request_id,
                       actor, gas)

    def usage(self, day: str | None = None) -> list[RevertedUsage]:
        """Each actor's reverted calls and gas on ``day`` (default today)."""
        with self._db.read() as tx:
            rows = tx.all("SELECT actor, COUNT(*) AS calls, SUM(gas) AS gas FROM relay_reverted WHERE day = ?"
                          " GROUP BY actor ORDER BY actor", (day or today(),))
        return [RevertedUsage(r["actor"], int(r["calls"]), int(r["gas"])) for r in rows]


class Sponsorship:
    """The outbox's admission policy: what the relayer pays for."""

    def __init__(self, quotas: Quotas, reverts: RevertLedger) -> None:
        self.quotas = quotas
        self.reverts = reverts

    def screen(self, submission: Submission) -> None:
        """Before the simulation: never the same reverted call twice."""
        self.reverts.check_call(submission.to, submission.data)

    def admit(self, tx: Any, submission: Submission, simulation: Simulation) -> None:
        """After it, in the transaction that queues the request: the actor's code
        and reverted-gas budget, then the quotas (charged)."""
        self.reverts.check_actor(tx, submission.actor, simulation.actor_code_hash)
        self.quotas.charge(tx, submission.account, simulation.estimate, submission.network)

    def reverted(self, request_id: str, actor: str, to: str, data: str, gas: int) -> None:
        self.reverts.record(request_id, actor, to, data, gas)


class BalanceGuard:
    """Refuses new work from a relayer key whose balance fell below the minimum;
    balances are read at most every ``refresh`` seconds."""

    def __init__(self, chain: ChainService, minimum_wei: int, refresh: float = 5.0) -> None:
        self._chain = chain
        self.minimum_wei = minimum_wei
        self._refresh = refresh
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def balance(self, address: str, fresh: bool = False) -> int:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(address)
        if seen is not None and not fresh and now - seen[0] < self._refresh:
            return seen[1]
        balance = self._chain.balance(address)
        with self._lock:
            self._seen[address] = (now, balance)
        return balance

    def low(self, address: str, fresh: bool = False) -> bool:
        return self.balance(address, fresh) < self.minimum_wei

    def require(self, address: str) -> None:
        balance = self.balance(address)
        if balance < self.minimum_wei:
            logger.error("ALERT relayer %s balance %d wei is below the minimum %d wei: refusing relays until it "
                         "is funded", address, balance, self.minimum_wei)
            raise RelayUnavailable(f"the relayer's balance is below its minimum of {self.minimum_wei} wei; "
                                   "the operator has been alerted")


__all__ = ["MAX_NONCE_SKIP", "AllowList", "BalanceGuard", "Limit", "Quotas", "RevertLedger", "RevertedUsage",
           "Sponsorship", "Usage", "check_nonce_invalidation", "network_of"]
