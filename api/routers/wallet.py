"""Wallet accounts: ``/auth/wallet/challenge`` and ``/auth/wallet/login``
(Sign-In with Ethereum, EIP-4361; see :mod:`api.wallet_auth`).

A person who keeps their own key in a browser wallet signs in by signing a
message; the service then knows their address, and its pages and the public
``/relay/*`` routes work for them as for a custodial account, except that every
action is signed in the wallet, never by the service, which holds no key for
such an account.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ChainDep, UsersDep
from api.errors import Conflict, InvalidRequest, TooManyRequests, Unauthorized, UpstreamUnavailable, error_responses
from api.ratelimit import RateLimiter, client_key
from api.routers.auth import _no_store, _session
from api.schemas import AccountSession, Address, SignatureHex
from api.wallet_auth import MAX_MESSAGE_CHARS, challenges_of

router = APIRouter(tags=["auth"])


class WalletChallengeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: Address = Field(description="The wallet's address (the account `eth_requestAccounts` answered).")


class WalletChallenge(BaseModel):
    """An EIP-4361 message to sign with `personal_sign`, once, before `expires_at`."""

    message: str = Field(description="The exact text to sign (EIP-191 `personal_sign`) and send back.")
    nonce: str = Field(description="The challenge's single-use nonce (also in the message).")
    expires_at: int = Field(description="Unix time after which the challenge no longer signs in.")


class WalletLoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(max_length=MAX_MESSAGE_CHARS, description="The challenge's message, unchanged.")
    signature: SignatureHex = Field(description="The wallet's `personal_sign` signature of the message as 0x "
                                    "hex: 65 bytes for a key, whatever the contract accepts for an ERC-1271 "
                                    "contract wallet.")


def _challenge_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter | None = getattr(request.app.state, "wallet_challenge_limiter", None)
    if limiter is None:
        per_minute = request.app.state.settings.wallet_challenges_per_minute
        limiter = RateLimiter(per_minute / 60, per_minute, request.app.state.settings.rate_limit_max_keys)
        request.app.state.wallet_challenge_limiter = limiter
    return limiter


@router.post(
    "/auth/wallet/challenge",
    response_model=WalletChallenge,
    summary="Sign in with a wallet, step 1: the message to sign",
    responses=error_responses(InvalidRequest, TooManyRequests, UpstreamUnavailable),
)
async def wallet_challenge(body: WalletChallengeRequest, request: Request, chain: ChainDep,
                           response: Response) -> WalletChallenge:
    """A Sign-In with Ethereum (EIP-4361) message for `address`, written by the
    service: its own host as `domain` (the host of `AMPHORA_PUBLIC_BASE_URL`,
    never the request's `Host`), its base URL as `URI`, the chain's id, a
    random single-use `nonce`, and an expiry five minutes on. Sign the
    `message` exactly as it is with the wallet (`personal_sign`) and send both
    to `POST /auth/wallet/login`.

    Anyone may ask, so challenges are limited per client network
    (`AMPHORA_WALLET_CHALLENGES_PER_MINUTE`, 429 with `Retry-After` beyond);
    an expired challenge is deleted when the next one is made."""
    _challenge_limiter(request).check(f"challenge:{client_key(request)}", "wallet sign-in challenges",
                                      per="a minute")
    chain_id = await run_in_threadpool(lambda: chain.chain_id)
    message, nonce, expires_at = await run_in_threadpool(challenges_of(request.app.state).issue, body.address,
                                                         chain_id)
    _no_store(response)
    return WalletChallenge(message=message, nonce=nonce, expires_at=int(expires_at))


@router.post(
    "/auth/wallet/login",
    response_model=AccountSession,
    summary="Sign in with a wallet, step 2: the signed message for a session token",
    responses=error_responses(Unauthorized, Conflict, InvalidRequest, TooManyRequests, UpstreamUnavailable),
)
def wallet_login(body: WalletLoginRequest, request: Request, chain: ChainDep, users: UsersDep,
                 response: Response) -> AccountSession:
    """A session token for the wallet account of the challenge's address, made
    at its first sign-in, like `POST /auth/login` answers for a password.

    401 `unauthorized` in words when the message is not a live challenge of
    this service to the byte (another domain, address, chain or expiry edited
    in, or a made-up nonce), was already used once (each challenge signs in
    once), has expired (five minutes after it was made), or when the signature is
    not the address's: for a key, recovered from the EIP-191 digest with `s`
    in the lower half of the curve order (the malleable twin is refused); for a
    contract account, its ERC-1271 `isValidSignature`. A refused attempt does
    not spend the challenge.

    A wallet account has no password and the service holds no key for it:
    `/me/relay/*`, `/me/key-export` and `/me/password` answer 403 for it in
    words; it signs in the wallet (`GET /relay/typed-data/*`) and submits to
    the public `/relay/*` routes with its session token. 409 when the address
    is a custodial account's (its key exported into a wallet): that account
    logs in with its name and password.

    Attempts are limited per client network like challenges
    (`AMPHORA_WALLET_CHALLENGES_PER_MINUTE`, 429 with `Retry-After`): a wrong
    signature costs the service a look at the chain (ERC-1271), which an
    anonymous client must not be able to repeat without bound."""
    _challenge_limiter(request).check(f"login:{client_key(request)}", "wallet sign-in attempts", per="a minute")
    address = challenges_of(request.app.state).verify(body.message, body.signature, chain)
    user, session = users.wallet_account(address)
    _no_store(response)
    return _session(user, session)
