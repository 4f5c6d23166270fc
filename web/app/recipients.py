"""Finding the account a person names as a recipient (a transfer of a bottle, a points
payment): by its account name, limited per account so that nobody can learn who has an
account by trying names, or by a 0x address."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from api.ratelimit import RateLimiter
from api.users import UserStore

#: Account names one account may look up per hour (in bursts of as many): enough for a
#: person, too few to learn who has an account by trying names.
LOOKUPS_PER_HOUR = 20


def _lookups(request: Request) -> RateLimiter:
    limiter = getattr(request.app.state, "recipient_lookups", None)
    if limiter is None:
        limiter = RateLimiter(LOOKUPS_PER_HOUR / 3600, LOOKUPS_PER_HOUR)
        request.app.state.recipient_lookups = limiter
    return limiter


async def account_address(request: Request, users: UserStore, user_id: str, name: str) -> str | None:
    """The address of the account named ``name``, or None; :class:`api.errors.TooManyRequests`
    when the account ``user_id`` has looked up too many names this hour (whether or not they exist)."""
    _lookups(request).check(f"account:{user_id}", "recipient lookups", "an hour")
    return await run_in_threadpool(users.address_of, name)
