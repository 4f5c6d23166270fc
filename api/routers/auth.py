"""Custodial accounts: ``/auth/signup``, ``/auth/login``, ``/auth/logout``,
``/auth/logout-everywhere``, ``/auth/api-tokens``, ``/me``, ``/me/password``
and ``/me/key-export``.

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
    ServerBusy,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from api.ratelimit import LoginThrottle, RateLimiter, client_key
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
    LogoutEverywhere,
    PasswordChangeRequest,
    SignupRequest,
)
from api.users import IssuedToken, User, identifier_key

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
    responses=error_responses(Conflict, InvalidRequest, TooManyRequests, ServiceUnavailable, ServerBusy),
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

    The identifier is compared NFKC-normalised, trimmed and case-folded; 409
    `conflict` when it is taken. That answer tells whether an account exists
    (a username must be unique, and the service sends no email to answer
    uniformly), so sign-ups are limited per client network (an IPv4 address
    or an IPv6 /64): `AMPHORA_SIGNUP_ATTEMPTS_PER_HOUR` attempts, taken or
    not (429 with `Retry-After`). Logins never tell. The password (10 to
    1,024 characters) is stored as an Argon2id hash; 503 `busy` with
    `Retry-After` when every hashing slot is taken. Answers a session token
    valid until `expires_at`. 503 when the master key is not configured."""
    _limiter(request, "signup_limiter").check(f"signup:{client_key(request)}", "sign-ups from your network",
                                              per="an hour")
    user, session = users.signup(body.identifier, body.password)
    _no_store(response)
    return _session(user, session)


@router.post(
    "/auth/login",
    response_model=AccountSession,
    summary="Log in: a new session token",
    responses=error_responses(Unauthorized, InvalidRequest, TooManyRequests, ServerBusy),
)
def login(body: LoginRequest, users: UsersDep, response: Response, request: Request) -> AccountSession:
    """A new session token for the account, valid until `expires_at`
    (`AMPHORA_SESSION_TTL_SECONDS`, a day by default). An unknown identifier
    and a wrong password get the same 401 after the same work, so a login
    does not reveal which identifiers have accounts. Earlier sessions stay
    valid until they expire or log out.

    Password guessing is slowed without locking the owner out (429 with
    `Retry-After`); every limit is keyed on the identifier as compared
    (NFKC-normalised and case-folded), so other spellings share it. Per
    account and client network, `AMPHORA_PASSWORD_ATTEMPTS_PER_MINUTE`
    failures, then the wait doubles with each further failure up to
    `AMPHORA_LOGIN_BACKOFF_MAX_SECONDS`; a success clears it. Per network, as
    many failures a minute across accounts. Per account, across networks,
    `AMPHORA_LOGIN_ACCOUNT_FAILURES_PER_HOUR`; beyond it only networks that
    logged in to the account successfully before get through. 503 `busy`
    when every password-hashing slot is taken."""
    throttle = _login_throttle(request)
    key, client = identifier_key(body.identifier), client_key(request)
    throttle.check(key, client)
    try:
        user, session = users.login(body.identifier, body.password)
    except Unauthorized:
        throttle.failed(key, client)
        raise
    throttle.succeeded(key, client)
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
    tokens with `DELETE /auth/api-tokens/{id}`, or all of them with
    `POST /auth/logout-everywhere`). A read-only API token may log itself out."""
    users.logout(token)


@router.post(
    "/auth/logout-everywhere",
    response_model=LogoutEverywhere,
    summary="Log out everywhere: revoke every session and API token",
    responses=error_responses(Unauthorized, Forbidden),
)
def logout_everywhere(user: UserDep, users: UsersDep) -> LogoutEverywhere:
    """Revoke every session and every API token of the account, this one
    included: whoever holds a copy of any of them is out. Log in again
    afterwards. 403 for a read-only API token."""
    return LogoutEverywhere(revoked=users.logout_everywhere(user))


@router.post(
    "/me/password",
    response_model=AccountSession,
    summary="Change the password (revokes every session and API token)",
    responses=error_responses(Unauthorized, Forbidden, Conflict, InvalidRequest, TooManyRequests, ServerBusy),
)
def change_password(body: PasswordChangeRequest, user: UserDep, users: UsersDep, response: Response,
                    request: Request) -> AccountSession:
    """Replace the account's password. The current password must be sent
    again (403 `forbidden` when it does not match; these attempts are limited
    like key exports, 429). Every session and API token of the account is
    revoked, this one included, and the answer is a new session: a stolen
    session or token stops working. 403 for a read-only API token; 409 when
    another request changed the password at the same moment; 503 `busy` when
    every password-hashing slot is taken."""
    _limit_password_attempts(request, f"password:{user.id}")
    session = users.change_password(user, body.current_password, body.new_password)
    _no_store(response)
    return _session(user, session)


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
    responses=error_responses(Unauthorized, Forbidden, InvalidRequest),
)
def create_api_token(body: ApiTokenRequest, user: UserDep, users: UsersDep, response: Response) -> ApiTokenIssued:
    """A token for a script or an integration acting for this account: it
    authenticates like a session until `expires_at` (`expires_in_days`, at
    most and by default `AMPHORA_API_TOKEN_TTL_DAYS`, 90 days); revoke it
    earlier with `DELETE /auth/api-tokens/{id}`, and changing the password or
    `POST /auth/logout-everywhere` revokes it too. Scope `act` can do
    everything a session can except export the key, which also needs the
    password; scope `read` can only read (403 on routes that act). 403 when a
    read-only token asks for an `act` token. The token is in this response
    only; the service keeps its SHA-256."""
    issued = users.create_api_token(user, body.name, body.scope, body.expires_in_days)
    _no_store(response)
    assert issued.expires_at is not None
    return ApiTokenIssued(id=issued.id, name=issued.name or "", token=issued.token,
                          created_at=int(issued.created_at), scope=issued.scope, expires_at=int(issued.expires_at))


@router.get(
    "/auth/api-tokens",
    response_model=ApiTokenList,
    summary="List the account's API tokens",
    responses=error_responses(Unauthorized),
)
def list_api_tokens(user: UserDep, users: UsersDep) -> ApiTokenList:
    """The account's API tokens that are neither revoked nor expired, oldest
    first, with their scope, when each expires and when it was last used;
    never the tokens themselves, which the service does not keep."""
    return ApiTokenList(tokens=[
        ApiTokenView(id=t.id, name=t.name, created_at=int(t.created_at),
                     last_used_at=None if t.last_used_at is None else int(t.last_used_at), scope=t.scope,
                     expires_at=int(t.expires_at))
        for t in users.list_api_tokens(user)
    ])


@router.delete(
    "/auth/api-tokens/{id}",
    status_code=204,
    summary="Revoke an API token",
    responses=error_responses(Unauthorized, Forbidden, NotFound, InvalidRequest),
)
def revoke_api_token(
    credential_id: Annotated[str, Path(alias="id", max_length=64, description="The token's id from "
                                       "`POST /auth/api-tokens` or `GET /auth/api-tokens`.")],
    user: UserDep, users: UsersDep,
) -> None:
    """Revoke one of the account's API tokens: from now on it is 401.
    Revoking it again is a no-op. 404 for an id that is not one of this
    account's API tokens (another account's tokens cannot be revoked, nor
    their ids probed). 403 for a read-only API token."""
    users.revoke_api_token(user, credential_id)


@router.post(
    "/me/key-export",
    response_model=KeyExport,
    summary="Export the account's private key",
    responses=error_responses(Unauthorized, Forbidden, InvalidRequest, TooManyRequests, ServiceUnavailable,
                              ServerBusy),
)
def export_key(body: KeyExportRequest, user: UserDep, users: UsersDep, response: Response,
               request: Request) -> KeyExport:
    """The private key of the account's address, so its owner can leave: import
    it into any Ethereum wallet and the certificates, points and loans of the
    address are theirs to use without this service.

    Re-authentication: the password must be sent again (403 `forbidden` when
    it does not match), so a stolen session or API token alone cannot take
    the key, and a read-only API token gets 403 whatever it sends. The
    response is `Cache-Control: no-store`; the export is logged
    for the operator's audit trail (account and address, never the key).
    The service keeps its copy: exporting does not close the account, and
    anyone holding the exported key controls the address. 503 when the master
    key is not configured or does not decrypt the stored key."""
    _limit_password_attempts(request, f"export:{user.id}")
    private_key = users.export_key(user, body.password)
    _no_store(response)
    return KeyExport(address=user.address, private_key=private_key)


def _limiter(request: Request, name: str) -> RateLimiter:
    limiter: RateLimiter = getattr(request.app.state, name)
    return limiter


def _login_throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


def _limit_password_attempts(request: Request, key: str) -> None:
    """Slow down password guessing on an authenticated route (key export,
    password change), per account and per client network."""
    limiter = _limiter(request, "password_limiter")
    limiter.check(key, "password attempts", per="a minute")
    limiter.check(f"client:{client_key(request)}", "password attempts", per="a minute")
