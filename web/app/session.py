"""The app's session cookie and its defence against cross-site requests.

The session token (``amph_s_...``, from :class:`api.users.UserStore`) lives in
one cookie, ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (a cross-site
POST does not carry it), ``Path=/``, and ``Secure`` when the public base URL is
https; then it is named ``__Host-amphora_session``, a name browsers accept only
from a secure origin without a ``Domain``, so a sibling subdomain cannot plant
or overwrite it. No other cookie is set.

Every POST of the app is checked twice:

* **same origin**: ``Sec-Fetch-Site`` when the browser sends it (every current
  browser does) must be ``same-origin``; otherwise ``Origin``, else ``Referer``,
  must name this service (the public base URL's origin, or the origin the
  request was addressed to). A request with none of them is refused. This is
  what protects the forms used before there is a session (log in, sign up:
  login CSRF would sign a victim into the attacker's account), since no other
  cookie may carry a token there.
* **a token in the form** (signed-in forms): ``HMAC-SHA256`` of the session
  token under a key derived from the master key. It is worthless without the
  cookie, changes with every session, and a page of another origin can neither
  read it nor compute it.

The app's pages send ``Referrer-Policy: same-origin``: under the API's
``no-referrer`` a browser sends ``Origin: null`` with a form POST, which the
check above could not tell from an attacker's sandboxed frame.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import cache
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

from api.settings import Settings
from api.users import SESSION_PREFIX, parse_master_key

#: The cookie on plain http (a developer's machine); on https the ``__Host-`` name.
COOKIE = "amphora_session"
SECURE_COOKIE = "__Host-amphora_session"
#: The hidden field of every signed-in form.
CSRF_FIELD = "csrf"
#: What the app's pages send instead of the API's ``no-referrer`` (see the module's doc).
REFERRER_POLICY = "same-origin"


def secure(settings: Settings) -> bool:
    """Whether the cookie is ``Secure`` (the public base URL is https)."""
    return settings.public_base_url.lower().startswith("https://")


def cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if secure(settings) else COOKIE


def set_session(response: Response, settings: Settings, token: str) -> None:
    """Carry ``token`` in the session cookie, for as long as the session lasts."""
    response.set_cookie(cookie_name(settings), token, max_age=settings.session_ttl_seconds, path="/",
                        secure=secure(settings), httponly=True, samesite="lax")


def clear_session(response: Response, settings: Settings) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(cookie_name(settings), path="/", secure=secure(settings), httponly=True, samesite="lax")


def session_token(request: Request, settings: Settings) -> str | None:
    """The session token of the request's cookie, if it looks like one."""
    token = request.cookies.get(cookie_name(settings))
    return token if token and token.startswith(SESSION_PREFIX) and len(token) <= 128 else None


@cache
def _process_key() -> bytes:
    return secrets.token_bytes(32)


@cache
def _derived_key(master_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"amphora app csrf v1").derive(parse_master_key(master_key))


def _csrf_key(settings: Settings) -> bytes:
    """The CSRF key: derived from the master key (the same on every instance);
    without a valid master key (no account can sign up then) a per-process key."""
    if settings.master_key is not None:
        try:
            return _derived_key(settings.master_key.get_secret_value())
        except ValueError:
            pass
    return _process_key()


def csrf_token(settings: Settings, token: str) -> str:
    """The form token of the session ``token``."""
    return hmac.new(_csrf_key(settings), token.encode(), hashlib.sha256).hexdigest()


def csrf_valid(settings: Settings, token: str, sent: str | None) -> bool:
    """Whether ``sent`` is the form token of the session ``token`` (in constant time)."""
    return bool(sent) and hmac.compare_digest(csrf_token(settings, token).encode(), str(sent).encode())


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    return f"{parts.scheme}://{parts.netloc.lower().removesuffix(default)}"


def _own_origins(request: Request, settings: Settings) -> set[str]:
    own = {f"{request.url.scheme}://{request.headers.get('host', '').lower()}"}
    public = _origin(settings.public_base_url)
    if public:
        own.add(public)
    return {_origin(origin) or origin for origin in own}


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a POST comes from this service's own pages (see the module's doc)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and _origin(origin) in _own_origins(request, settings)
    referer = request.headers.get("referer")
    if referer is not None:
        return _origin(referer) in _own_origins(request, settings)
    return False


#: A form's one-time key, as :func:`new_form_key` makes it: the Idempotency-Key of the action the
#: form asks for, so a form sent twice is one action.
FORM_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def new_form_key() -> str:
    """A fresh one-time key for a form (144 random bits, URL-safe)."""
    return secrets.token_urlsafe(18)
