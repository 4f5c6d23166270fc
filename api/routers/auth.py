"""Custodial accounts: ``/auth/signup``, ``/auth/login``, ``/auth/logout``,
``/auth/api-tokens``, ``/me`` and ``/me/key-export``.

The wallet-less default: the service creates and keeps each account's
Ethereum key, signs the account's actions with it and relays them, so on chain
the account's own address acts. The service holds the key; the account can
take it (``/me/key-export``) and leave with its certificates whenever it likes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from api.deps import TokenDep, UserDep, UsersDep
from api.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from api.policy import RateLimiter
from api.schemas import (
    AccountSession,
    AccountView,
    ApiTokenIssued,
    ApiTokenList,
    ApiTokenRequest,
    ApiTokenView,
    KeyExport,
    KeyExportRequest,
    LoginRequest,
    SignupRequest,
)
from api.users import IssuedToken, User

router = APIRouter(tags=["auth"])


def _no_store(response: Response) -> None:
    """Responses that carry a token or a key must not stay in a browser's or a proxy's cache."""
    response.headers["Cache-Control"] = "no-store"


def _session(user: User, session: IssuedToken) -> AccountSession:
    assert session.expires_at is not None
    return AccountSession(user_id=user.id, identifier=user.identifier, address=user.address, token=session.token,
                          expires_at=int(session.expires_at))


@router.post(
    "/auth/signup",
    status_code=201,
    response_model=AccountSession,
    summary="Create a custodial account",
    responses=error_responses(Conflict, InvalidRequest, TooManyRequests, ServiceUnavailable),
)
def signup(body: SignupRequest, users: UsersDep, response: Response, request: Request) -> AccountSession:
    """Create an account for a person without a wallet, and log it in.

    The service generates a fresh Ethereum key for the account and keeps it
    encrypted under its master key (`AMPHORA_MASTER_KEY`, which never leaves
    the server's environment). It signs the account's actions (transfers,
    gifts, redemptions...) with that key and relays them, paying the gas: on
    chain the account's own `address` is the actor, never the relayer. This is
    custodial: the service holds the key and could sign with it. In exchange
    the person needs no wallet, and `POST /me/key-export` hands them the key
    whenever they want to hold their certificates themselves.

    The identifier is compared trimmed and case-folded; 409 `conflict` when it
    is taken. The password (10 to 1,024 characters) is stored as an Argon2id
    hash. Answers a session token valid until `expires_at`. 503 when the
    master key is not configured."""
    _limiter(request, "rate_limiter").check(f"signup:{_client(request)}", "sign-ups")
    user, session = users.signup(body.identifier, body.password)
    _no_store(response)
    return _session(user, session)


@router.post(
    "/auth/login",
    response_model=AccountSession,
    summary="Log in: a new session token",
    responses=error_responses(Unauthorized, InvalidRequest, TooManyRequests),
)
def login(body: LoginRequest, users: UsersDep, response: Response, request: Request) -> AccountSession:
    """A new session token for the account, valid until `expires_at`
    (`AMPHORA_SESSION_TTL_SECONDS`, a day by default). An unknown identifier
    and a wrong password get the same 401 after the same work, so a login
    does not reveal which identifiers have accounts. Earlier sessions stay
    valid until they expire or log out. Password guessing is slowed: at most
    `AMPHORA_PASSWORD_ATTEMPTS_PER_MINUTE` attempts per identifier and per
    client address (429 with `Retry-After`)."""
    _limit_password_attempts(request, f"login:{body.identifier.strip().casefold()}")
    user, session = users.login(body.identifier, body.password)
    _no_store(response)
    return _session(user, session)


@router.post(
    "/auth/logout",
    status_code=204,
    summary="Log out: revoke this token",
    responses=error_responses(Unauthorized),
)
def logout(user: UserDep, token: TokenDep, users: UsersDep) -> None:
    """Revoke the token this request is authenticated with: from now on it is
    401. Other sessions and API tokens of the account stay valid (revoke API
    tokens with `DELETE /auth/api-tokens/{id}`)."""
    users.logout(token)


@router.get(
    "/me",
    response_model=AccountView,
    summary="The authenticated account",
    responses=error_responses(Unauthorized),
)
def me(user: UserDep) -> AccountView:
    """The account the bearer token belongs to, with the address the service
    signs for it (see `/accounts/{address}/balances` for what it holds)."""
    return AccountView(user_id=user.id, identifier=user.identifier, address=user.address,
                       created_at=int(user.created_at))


@router.post(
    "/auth/api-tokens",
    status_code=201,
    response_model=ApiTokenIssued,
    summary="Create an API token",
    responses=error_responses(Unauthorized, InvalidRequest),
)
def create_api_token(body: ApiTokenRequest, user: UserDep, users: UsersDep, response: Response) -> ApiTokenIssued:
    """A token for a script or an integration acting for this account: it
    authenticates like a session but does not expire; revoke it with
    `DELETE /auth/api-tokens/{id}`. It can do everything a session can except
    export the key, which also needs the password. The token is in this
    response only; the service keeps its SHA-256."""
    issued = users.create_api_token(user, body.name)
    _no_store(response)
    return ApiTokenIssued(id=issued.id, name=issued.name or "", token=issued.token,
                          created_at=int(issued.created_at))


@router.get(
    "/auth/api-tokens",
    response_model=ApiTokenList,
    summary="List the account's API tokens",
    responses=error_responses(Unauthorized),
)
def list_api_tokens(user: UserDep, users: UsersDep) -> ApiTokenList:
    """The account's API tokens that are not revoked, oldest first, with when
    each was last used; never the tokens themselves, which the service does
    not keep."""
    return ApiTokenList(tokens=[
        ApiTokenView(id=t.id, name=t.name, created_at=int(t.created_at),
                     last_used_at=None if t.last_used_at is None else int(t.last_used_at))
        for t in users.list_api_tokens(user)
    ])


@router.delete(
    "/auth/api-tokens/{id}",
    status_code=204,
    summary="Revoke an API token",
    responses=error_responses(Unauthorized, NotFound, InvalidRequest),
)
def revoke_api_token(
    credential_id: Annotated[str, Path(alias="id", max_length=64, description="The token's id from "
                                       "`POST /auth/api-tokens` or `GET /auth/api-tokens`.")],
    user: UserDep, users: UsersDep,
) -> None:
    """Revoke one of the account's API tokens: from now on it is 401.
    Revoking it again is a no-op. 404 for an id that is not one of this
    account's API tokens (another account's tokens cannot be revoked, nor
    their ids probed)."""
    users.revoke_api_token(user, credential_id)


@router.post(
    "/me/key-export",
    response_model=KeyExport,
    summary="Export the account's private key",
    responses=error_responses(Unauthorized, Forbidden, InvalidRequest, TooManyRequests, ServiceUnavailable),
)
def export_key(body: KeyExportRequest, user: UserDep, users: UsersDep, response: Response,
               request: Request) -> KeyExport:
    """The private key of the account's address, so its owner can leave: import
    it into any Ethereum wallet and the certificates, points and loans of the
    address are theirs to use without this service.

    Re-authentication: the password must be sent again (403 `forbidden` when
    it does not match), so a stolen session or API token alone cannot take
    the key. The response is `Cache-Control: no-store`; the export is logged
    for the operator's audit trail (account and address, never the key).
    The service keeps its copy: exporting does not close the account, and
    anyone holding the exported key controls the address. 503 when the master
    key is not configured or does not decrypt the stored key."""
    _limit_password_attempts(request, f"export:{user.id}")
    private_key = users.export_key(user, body.password)
    _no_store(response)
    return KeyExport(address=user.address, private_key=private_key)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _limiter(request: Request, name: str) -> RateLimiter:
    limiter: RateLimiter = getattr(request.app.state, name)
    return limiter


def _limit_password_attempts(request: Request, key: str) -> None:
    """Slow down password guessing, per target and per client address."""
    limiter = _limiter(request, "password_limiter")
    limiter.check(key, "password attempts")
    limiter.check(f"client:{_client(request)}", "password attempts")
