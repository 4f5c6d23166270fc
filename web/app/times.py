"""The reader's time zone on the holder's pages.

The app's pages write dates and times in the reader's zone, named on the page
(``5:00:00 AM (China Standard Time)``). The zone is a preference kept in one
cookie, ``amphora_tz`` (an IANA name such as ``Asia/Shanghai``; ``Path=/app``,
``SameSite=Lax``, ``Secure`` on https, not ``HttpOnly``: the page's script may
set it). It is set two ways:

* on the account page, a list of every zone the server knows
  (:func:`zoneinfo.available_timezones`), sent as a form (no script needed);
* when there is no cookie yet, ``/static/tz.js`` (the one script of the app's
  pages, same origin) sets it once from the browser's own zone
  (``Intl.DateTimeFormat().resolvedOptions().timeZone``) and reloads the page
  if its zone differs.

A value that is not a zone the server knows (a forged or garbled cookie) is
ignored: the page is written in UTC, and names it. The verification and
e-label pages neither read nor set the cookie.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from starlette.requests import Request
from starlette.responses import Response

from api.settings import Settings
from web.app import session

#: The preference's cookie.
COOKIE = "amphora_tz"
#: How long the preference is kept (a year; the script sets it again when it is gone).
MAX_AGE = 365 * 24 * 3600
#: The longest zone name accepted (the longest IANA name is 32 characters).
MAX_NAME = 64


@cache
def zones() -> frozenset[str]:
    """Every zone name the server can write a time in."""
    return frozenset(available_timezones())


@cache
def zone_names() -> tuple[str, ...]:
    """The zones of the account page's list, sorted (``UTC`` first)."""
    return ("UTC", *sorted(name for name in zones() if name != "UTC"))


def known(name: str | None) -> str | None:
    """``name`` when it is a zone the server knows, else None."""
    if not name or len(name) > MAX_NAME:
        return None
    return name if name in zones() else None


def chosen(request: Request) -> str | None:
    """The zone of the request's cookie, when it is a known one."""
    return known(request.cookies.get(COOKIE))


def zone_of(request: Request) -> ZoneInfo:
    """The zone the app's page for ``request`` is written in: the reader's, or UTC."""
    return ZoneInfo(chosen(request) or "UTC")


def remember(response: Response, settings: Settings, name: str | None) -> None:
    """Keep ``name`` (a known zone) as the reader's preference, or forget it (None:
    the page's script then sets the browser's zone again)."""
    if name is None:
        response.delete_cookie(COOKIE, path="/app", secure=session.secure(settings), samesite="lax")
    else:
        response.set_cookie(COOKIE, name, max_age=MAX_AGE, path="/app", secure=session.secure(settings),
                            httponly=False, samesite="lax")
