"""Request dependencies, as ``Annotated`` aliases for route signatures.

The app built by :func:`api.main.create_app` keeps its settings and services on
``app.state``; routes reach them through these aliases, never through globals,
so tests can build apps with their own settings side by side.

Authentication is here too: :data:`UserDep` for routes a custodial account
calls with its session or API token, :data:`AdminDep` for operator routes.
Both read ``Authorization: Bearer <token>`` through FastAPI's ``HTTPBearer``
(without its own errors), so the OpenAPI document lists the security scheme
on exactly the routes that need it while the error bodies stay the API's.
"""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.business import BusinessSender
from api.chain import ChainService
from api.errors import Forbidden, ServiceUnavailable, Unauthorized
from api.offers import OfferBook
from api.policy import network_of
from api.ratelimit import RateLimiter
from api.relayer import Origin, Relayer
from api.scans import ScanLog
from api.settings import Settings
from api.users import User, UserStore
from indexer.reader import IndexReader
from storage.db import Database

#: Session tokens (`POST /auth/signup`, `POST /auth/login`) and API tokens (`POST /auth/api-tokens`).
user_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="accountToken",
    bearerFormat="amph_s_... (session) or amph_t_... (API token)",
    description="A custodial account's session token from `POST /auth/signup` or `POST /auth/login`, or one "
    "of its API tokens from `POST /auth/api-tokens`.",
)
#: The operator's token, `AMPHORA_ADMIN_TOKEN`.
admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The operator token set in `AMPHORA_ADMIN_TOKEN`.",
)


# The getters of the app's services are coroutines: FastAPI runs a plain
# function dependency in its thread pool, a thread hop per getter per request
# (about a third of a light request's time under load); these only read app.state.


async def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_chain(request: Request) -> ChainService:
    return cast(ChainService, request.app.state.chain)


async def get_db(request: Request) -> Database:
    return cast(Database, request.app.state.db)


async def get_index(request: Request) -> IndexReader:
    return request.app.state.index  # type: ignore[no-any-return]


async def get_relayer(request: Request) -> Relayer:
    return cast(Relayer, request.app.state.relayer)


async def get_scans(request: Request) -> ScanLog:
    return cast(ScanLog, request.app.state.scans)


async def get_offers(request: Request) -> OfferBook:
    return cast(OfferBook, request.app.state.offers)


async def get_users(request: Request) -> UserStore:
    return cast(UserStore, request.app.state.users)


async def get_business(request: Request) -> BusinessSender:
    return cast(BusinessSender, request.app.state.business)


def _bearer(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 saying whether the
    header is missing or not of that form."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing credentials: send Authorization: Bearer <token>")
    if credentials is None or not credentials.credentials or any(ch.isspace() for ch in credentials.credentials):
        raise Unauthorized("malformed Authorization header: expected Bearer <token>")
    return credentials.credentials


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(user_bearer)],
) -> str:
    """The bearer token of the request (not yet checked against the store)."""
    return _bearer(request, credentials)


#: What a read-only API token may do besides reading: log itself out.
READ_ONLY_ALLOWED = frozenset({("POST", "/auth/logout")})


def require_user(request: Request, token: Annotated[str, Depends(require_token)],
                 users: Annotated[UserStore, Depends(get_users)]) -> User:
    """The custodial account whose session or API token authenticates the
    request; 401 when it is missing, malformed, unknown, expired or revoked.
    A read-only API token gets 403 on every route that is not a read (GET,
    HEAD) except logging itself out: it cannot relay, sign, export the key or
    manage the account."""
    user = users.authenticate(token)
    route_path = getattr(request.scope.get("route"), "path", request.url.path)
    if (user.scope != "act" and request.method not in ("GET", "HEAD")
            and (request.method, route_path) not in READ_ONLY_ALLOWED):
        raise Forbidden("this API token is read-only: it can read but not act (relay, sign, export the key or "
                        "manage the account); use a session or an API token with scope `act`")
    return user


def require_admin(
    request: Request, settings: Annotated[Settings, Depends(get_app_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)],
) -> None:
    """Admit the operator: 503 while `AMPHORA_ADMIN_TOKEN` is unset (no token
    could be right), 401 without a bearer token, 403 with a wrong one. The
    comparison takes the same time wherever the tokens differ."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise ServiceUnavailable("operator endpoints are not configured: set AMPHORA_ADMIN_TOKEN")
    token = _bearer(request, credentials)
    if not hmac.compare_digest(token.encode(), settings.admin_token.get_secret_value().encode()):
        raise Forbidden("not the operator token")


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ChainDep = Annotated[ChainService, Depends(get_chain)]
DbDep = Annotated[Database, Depends(get_db)]
RelayerDep = Annotated[Relayer, Depends(get_relayer)]
IndexDep = Annotated[IndexReader, Depends(get_index)]
ScansDep = Annotated[ScanLog, Depends(get_scans)]
OffersDep = Annotated[OfferBook, Depends(get_offers)]
UsersDep = Annotated[UserStore, Depends(get_users)]
BusinessDep = Annotated[BusinessSender, Depends(get_business)]
#: The bearer token itself, for the route that revokes it (`POST /auth/logout`).
TokenDep = Annotated[str, Depends(require_token)]
#: The authenticated custodial account: a route taking it refuses requests without valid credentials.
UserDep = Annotated[User, Depends(require_user)]
#: An operator route: add ``_: AdminDep`` to its parameters (or ``dependencies=[Depends(require_admin)]``).
AdminDep = Annotated[None, Depends(require_admin)]


# ------------------------------------------------------------ relay origin
# (built on require_user above)


def _rate_limiter(request: Request) -> RateLimiter:
    return cast(RateLimiter, request.app.state.rate_limiter)


async def get_rate_limiter(request: Request) -> RateLimiter:
    return _rate_limiter(request)


def relay_origin(
    request: Request,
    user: UserDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=200,
        description="Any unique string of the client's (a UUID): a retry with the same key returns the first "
        "request instead of relaying again; the same key with a different request is 409.")] = None,
) -> Origin:
    """Who asks for a relayed action: the authenticated account (charged for
    it, rate-limited per account), its client's network (charged too) and its
    idempotency key."""
    _rate_limiter(request).check(f"account:{user.id}", "relay requests")
    settings: Settings = request.app.state.settings
    network = network_of(request.client.host if request.client else None, settings.quota_network_prefix_v4,
                         settings.quota_network_prefix_v6)
    return Origin(account=user.id, idempotency_key=idempotency_key, network=network)


OriginDep = Annotated[Origin, Depends(relay_origin)]


def custodial_origin(
    request: Request,
    user: UserDep,
    idempotency_key: Annotated[str, Header(
        alias="Idempotency-Key", min_length=1, max_length=200,
        description="Required on custodial actions: any unique string of the client's (a UUID), the same on "
        "every retry of one action. The service signs each try anew, so without it a retried action would be "
        "a second action, paid twice; with it a retry returns the first request (422 when missing, 409 when "
        "the same key comes with a different body).")],
) -> Origin:
    """Who asks for a custodial action: as :func:`relay_origin`, the
    idempotency key required."""
    _rate_limiter(request).check(f"account:{user.id}", "relay requests")
    return Origin(account=user.id, idempotency_key=idempotency_key)


CustodialOriginDep = Annotated[Origin, Depends(custodial_origin)]
