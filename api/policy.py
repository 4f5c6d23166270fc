"""Gas sponsorship policy: what the relayer pays for, how much, and how fast.

* :class:`AllowList`: only these contract functions are relayed, on the
  deployment's own contracts. Every relay path builds its call from this list,
  and the outbox refuses anything else, so a bug upstream cannot turn the
  relayer into a general-purpose gas faucet.
* :class:`Quotas`: actions and gas per UTC day, per account and for the whole
  service, charged in the same database transaction that queues the request
  (a refused request is not charged; two instances cannot both take the last
  unit). Operators change the limits through ``/admin/quotas``.
* :class:`BalanceGuard`: below ``relayer_min_balance_wei`` a relayer key
  refuses new work (503) and the shortfall shows in logs and ``/health``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from api.chain import ChainService
from api.db import Database
from api.errors import InvalidRequest, RelayRefused, RelayUnavailable, TooManyRequests
from api.settings import Settings

logger = logging.getLogger(__name__)

#: The relayed functions, by manifest contract name. Nothing else is sent.
RELAYED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "WineCertificate": ("transfer_with_signature", "create_gift_with_signature", "revoke_gift_with_signature",
                        "request_redemption_with_signature", "flag_with_signature", "claim_gift",
                        "invalidate_nonces_with_signature"),
    "PointsToken": ("transferWithAuthorization",),
    "PledgeLending": ("accept_offer_with_signature", "extend_loan", "repay_with_authorization"),
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


#: Pseudo-accounts of the quota tables: the service-wide total, and the
#: default limit of an account without its own row.
GLOBAL = "*"
DEFAULT = "default"

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
)
"""


class AllowList:
    """The (address, selector) pairs the relayer may call, read from the
    deployment's ABIs on first use."""

    def __init__(self, chain: ChainService) -> None:
        self._chain = chain
        self._allowed: dict[tuple[str, bytes], str] | None = None
        self._lock = threading.Lock()

    def _build(self) -> dict[tuple[str, bytes], str]:
        allowed: dict[tuple[str, bytes], str] = {}
        for contract_name, functions in RELAYED_FUNCTIONS.items():
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
    """Per-account and service-wide daily limits, stored beside the outbox."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._defaults = {
            DEFAULT: Limit(settings.quota_account_actions_per_day, settings.quota_account_gas_per_day),
            GLOBAL: Limit(settings.quota_global_actions_per_day, settings.quota_global_gas_per_day),
        }
        db.migrate(SCHEMA)

    def limit(self, tx: Any, account: str) -> Limit:
        row = tx.one("SELECT actions_per_day, gas_per_day FROM relay_quotas WHERE account = ?", (account,))
        if row is None and account != GLOBAL:
            row = tx.one("SELECT actions_per_day, gas_per_day FROM relay_quotas WHERE account = ?", (DEFAULT,))
        if row is None:
            return self._defaults[GLOBAL if account == GLOBAL else DEFAULT]
        return Limit(int(row["actions_per_day"]), int(row["gas_per_day"]))

    def charge(self, tx: Any, account: str, gas: int) -> None:
        """Count one action of ``gas`` for ``account`` and for the service;
        raise 429 (rolling the transaction back) if either goes over its limit."""
        day = today()
        for who, label in ((account, "your account's"), (GLOBAL, "the service's")):
            row = tx.one(
                "INSERT INTO relay_usage (day, account, actions, gas) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (day, account) DO UPDATE SET actions = relay_usage.actions + 1,"
                " gas = relay_usage.gas + excluded.gas RETURNING actions, gas", (day, who, gas))
            assert row is not None
            limit = self.limit(tx, who)
            if int(row["actions"]) > limit.actions_per_day:
                raise TooManyRequests(f"{label} daily quota of {limit.actions_per_day} relayed actions is used "
                                      "up; it resets at 00:00 UTC", seconds_to_midnight())
            if int(row["gas"]) > limit.gas_per_day:
                raise TooManyRequests(f"{label} daily gas quota of {limit.gas_per_day} is used up (this action "
                                      f"needs {gas}); it resets at 00:00 UTC", seconds_to_midnight())

    def set_limit(self, account: str, limit: Limit) -> None:
        with self._db.transaction() as tx:
            tx.execute("INSERT INTO relay_quotas (account, actions_per_day, gas_per_day, updated_at)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                       " actions_per_day = excluded.actions_per_day, gas_per_day = excluded.gas_per_day,"
                       " updated_at = excluded.updated_at",
                       (account, limit.actions_per_day, limit.gas_per_day, time.time()))
        logger.info("operator set the quota of %s to %d actions and %d gas per day", account,
                    limit.actions_per_day, limit.gas_per_day)

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


__all__ = ["MAX_NONCE_SKIP", "AllowList", "BalanceGuard", "Limit", "Quotas", "Usage", "check_nonce_invalidation"]
