"""Rate limits kept in memory, per instance, in tables of bounded size.

* :class:`RateLimiter`: a token bucket per key (an account, a client network).
* :class:`LoginThrottle`: failed password attempts, limited per account *and*
  client with exponential backoff, so that guessing is slow but a stranger's
  guesses do not lock the owner out.
* :func:`client_key`: the client a request comes from, as a network: the IPv4
  address, or the /64 prefix of an IPv6 address (one subscriber's whole
  allocation, so rotating addresses inside it gains nothing).

Every table is a :class:`cachetools.TTLCache` with a maximum number of keys:
an entry disappears once it is no different from a fresh one (a bucket that
has refilled, failures old enough to be forgiven), and when the table is full
the least recently used entry makes room. A flood of distinct keys therefore
costs a fixed amount of memory and every check stays O(1); the price, written
down in ``docs/hardening/accounts.md``, is that a flood larger than the table
can make the limiter forget its oldest keys. Refusals are 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable

from cachetools import TTLCache
from starlette.requests import Request

from api.errors import TooManyRequests
from api.network import ip_prefix

#: Keys a limiter remembers at most, unless its owner says otherwise: about 5 MiB of buckets.
DEFAULT_MAX_KEYS = 20_000


def _digest(*parts: str) -> bytes:
    """A 16-byte key for ``parts``: what a client sends (an identifier of up to
    1,024 characters) must not decide how much memory a key takes."""
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest()


def client_key(request: Request) -> str:
    """The network a request comes from: the IPv4 address, or the IPv6 /64."""
    host = request.client.host if request.client else "unknown"
    prefix = ip_prefix(host, 32, 64)
    return prefix if prefix is not None else host


class RateLimiter:
    """Token buckets: ``rate`` requests a second with bursts of ``burst``, for
    at most ``max_keys`` keys at once."""

    def __init__(self, rate: float, burst: int, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        # A bucket untouched for burst / rate seconds is full again: the same as no entry.
        self._buckets: TTLCache[str | bytes, tuple[float, float]] = TTLCache(max_keys, ttl=burst / rate,
                                                                             timer=clock)
        self._lock = threading.Lock()

    @property
    def max_keys(self) -> int:
        return int(self._buckets.maxsize)

    def __len__(self) -> int:
        """Keys remembered now (at most ``max_keys``)."""
        with self._lock:
            return len(self._buckets)

    def _tokens(self, key: str | bytes, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self._burst), now))
        return min(float(self._burst), tokens + (now - last) * self._rate)

    def wait(self, key: str | bytes) -> float:
        """Seconds until ``key`` may take a token (0: now), without taking one."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def take(self, key: str | bytes) -> None:
        """Take one token for ``key`` (down to zero: never refuses)."""
        now = self._clock()
        with self._lock:
            self._buckets[key] = (max(0.0, self._tokens(key, now) - 1.0), now)

    def check(self, key: str | bytes, what: str = "requests", per: str = "a second") -> None:
        """Take one token for ``key``, or raise 429 with the wait in
        ``Retry-After``. A refusal takes nothing and stores nothing new, so
        refused requests do not fill the table."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens < 1.0:
                wait = (1.0 - tokens) / self._rate
                raise TooManyRequests(f"too many {what}: at most {self._describe(per)} (bursts of {self._burst}); "
                                      "retry after the wait in Retry-After", math.ceil(wait))
            self._buckets[key] = (tokens - 1.0, now)

    def _describe(self, per: str) -> str:
        seconds = {"a second": 1, "a minute": 60, "an hour": 3600}.get(per, 1)
        return f"{self._rate * seconds:g} {per}"


class LoginThrottle:
    """Failed logins, limited so that guessing is slow and the owner still gets in.

    * Per account and client network: ``allowance`` failures, then each further
      failure doubles the wait before the next attempt (``base_seconds``,
      twice that, ... up to ``max_backoff_seconds``). A success clears it.
    * Per client network, across accounts: ``allowance`` failures a minute
      (one network guessing one password on many accounts).
    * Per account, across networks: ``account_failures_per_hour`` failures an
      hour (many networks guessing one account). When it is used up only
      networks that logged in to this account successfully before get
      through: a stranger's guesses cannot lock the owner out.

    Keys are normalised identifiers (see :func:`api.users.identifier_key`)."""

    def __init__(self, allowance: int, account_failures_per_hour: int, max_backoff_seconds: float,
                 max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.monotonic,
                 trusted_seconds: float = 90 * 86_400) -> None:
        self._allowance = allowance
        self._base = 60.0 / allowance
        self._max_backoff = max_backoff_seconds
        self._clock = clock
        # Consecutive failures are forgotten a day after the last one (or after the longest backoff).
        #: (consecutive failures, locked until) per account and network.
        self._failures: TTLCache[bytes, tuple[int, float]] = TTLCache(
            max_keys, ttl=max(86_400.0, max_backoff_seconds), timer=clock)
        self._per_client = RateLimiter(allowance / 60, allowance, max_keys, clock)
        self._per_account = RateLimiter(account_failures_per_hour / 3600, account_failures_per_hour, max_keys,
                                        clock)
        self._trusted: TTLCache[bytes, bool] = TTLCache(max_keys, ttl=trusted_seconds, timer=clock)
        self._lock = threading.Lock()

    def check(self, identifier: str, client: str) -> None:
        """Before verifying a password: 429 with ``Retry-After`` when this
        attempt must wait."""
        now = self._clock()
        pair = _digest(identifier, client)
        with self._lock:
            count, locked_until = self._failures.get(pair, (0, now))
            trusted = pair in self._trusted
        if locked_until > now:
            raise TooManyRequests(f"too many failed logins to this account from your network: {count} in a row; "
                                  "wait before the next attempt (the wait doubles with each failure)",
                                  math.ceil(locked_until - now))
        wait = self._per_client.wait(client)
        if wait > 0:
            raise TooManyRequests(f"too many failed logins from your network: at most {self._allowance} a minute",
                                  math.ceil(wait))
        wait = self._per_account.wait(_digest(identifier))
        if wait > 0 and not trusted:
            raise TooManyRequests("too many failed logins to this account from many networks; a network that "
                                  "logged in to it successfully before still gets through", math.ceil(wait))

    def failed(self, identifier: str, client: str) -> None:
        """Count a wrong password (or an unknown identifier)."""
        now = self._clock()
        pair = _digest(identifier, client)
        with self._lock:
            count, locked_until = self._failures.get(pair, (0, now))
            count += 1
            beyond = count - self._allowance
            if beyond >= 0:
                locked_until = now + min(self._max_backoff, self._base * 2.0 ** min(beyond, 32))
            self._failures[pair] = (count, locked_until)
        self._per_client.take(client)
        self._per_account.take(_digest(identifier))

    def succeeded(self, identifier: str, client: str) -> None:
        """A right password: forget this network's failures on the account and trust it there."""
        pair = _digest(identifier, client)
        with self._lock:
            self._failures.pop(pair, None)
            self._trusted[pair] = True

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures) + len(self._trusted)


__all__ = ["DEFAULT_MAX_KEYS", "LoginThrottle", "RateLimiter", "client_key"]
