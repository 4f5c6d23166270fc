"""Request dependencies, as ``Annotated`` aliases for route signatures.

The app built by :func:`api.main.create_app` keeps its settings and services on
``app.state``; routes reach them through these aliases, never through globals,
so tests can build apps with their own settings side by side.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Header, Request

from api.chain import ChainService
from api.db import Database
from api.offers import OfferBook
from api.policy import RateLimiter
from api.relayer import Origin, Relayer
from api.scans import ScanLog
from api.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_chain(request: Request) -> ChainService:
    return cast(ChainService, request.app.state.chain)


def get_db(request: Request) -> Database:
    return cast(Database, request.app.state.db)


def get_relayer(request: Request) -> Relayer:
    return cast(Relayer, request.app.state.relayer)


def get_scans(request: Request) -> ScanLog:
    return cast(ScanLog, request.app.state.scans)


def get_offers(request: Request) -> OfferBook:
    return cast(OfferBook, request.app.state.offers)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ChainDep = Annotated[ChainService, Depends(get_chain)]
DbDep = Annotated[Database, Depends(get_db)]
RelayerDep = Annotated[Relayer, Depends(get_relayer)]
ScansDep = Annotated[ScanLog, Depends(get_scans)]
OffersDep = Annotated[OfferBook, Depends(get_offers)]


# ------------------------------------------------------------ relay origin
# (built on require_user; see api.users)


def get_rate_limiter(request: Request) -> RateLimiter:
    return cast(RateLimiter, request.app.state.rate_limiter)


def relay_origin(
    request: Request,
    user: UserDep,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=200,
        description="Any unique string of the client's (a UUID): a retry with the same key returns the first "
        "request instead of relaying again; the same key with a different request is 409.")] = None,
) -> Origin:
    """Who asks for a relayed action: the authenticated account (charged for
    it, rate-limited per account) and its idempotency key."""
    get_rate_limiter(request).check(f"account:{user.id}", "relay requests")
    return Origin(account=user.id, idempotency_key=idempotency_key)


OriginDep = Annotated[Origin, Depends(relay_origin)]
