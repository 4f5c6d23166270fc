"""The Amphora HTTP API: ``uvicorn api.main:app``.

:func:`create_app` builds an app from :class:`~api.settings.Settings`; building
it makes no network request, so importing this module (which builds ``app``
from the environment) works without a node.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.staticfiles import StaticFiles

from api.bodylimit import BodySizeLimit
from api.business import BusinessSender
from api.business_wallet import WalletTransactions
from api.chain import ChainService
from api.errors import PayloadTooLarge, error_responses, install_exception_handlers
from api.extensions import ExtensionBook
from api.issuer import TagKeyVault
from api.jobs import IssuanceJobs
from api.lending import SnapshotSigner
from api.offers import OfferBook
from api.ratelimit import LoginThrottle, RateLimiter
from api.relayer import Relayer
from api.routers import (
    accounts,
    admin,
    auth,
    business,
    business_wallet,
    casks,
    certificates,
    custodial,
    custodian,
    custody_console,
    elabel,
    epcis,
    health,
    index,
    issuer,
    lending,
    metadata,
    points,
    qr,
    relay,
    resolver,
    wallet,
)
from api.routers import extensions as extensions_api
from api.routers import issuer_jobs as issuer_jobs_api
from api.routers import lender as lender_api
from api.routers import merchant as merchant_api
from api.scans import ScanLog
from api.security import SecurityHeaders
from api.settings import Settings, get_settings
from api.users import UserStore
from indexer.follower import IndexConfig, ensure_schema
from indexer.reader import IndexReader
from indexer.service import IndexerService
from storage.db import Database
from web import STATIC_DIR
from web.app import gifts as holder_app_gifts
from web.app import loan_extension as holder_loan_extension
from web.app import money as holder_money
from web.app import moves as holder_moves
from web.app import preferences as holder_preferences
from web.app import routes as holder_app
from web.app import wallet as holder_wallet
from web.app.session import cookie_name
from web.console import appraiser as console_appraiser
from web.console import custodian as console_custodian
from web.console import issuer as console_issuer
from web.console import lender as console_lender
from web.console import lender_extension as console_lender_extension
from web.console import merchant as console_merchant
from web.console import operator as console_operator
from web.console import routes as console
from web.console import wallet_send as console_wallet

logger = logging.getLogger(__name__)

#: The routes that take a file larger than the body limit (with a credential): a cellar's storage report.
UPLOADS = (("PUT", re.compile(r"/custodian/lots/[0-9]+/storage-report")),
           ("POST", re.compile(r"/console/custodian/lots/[0-9]+/report")))

DESCRIPTION = """\
Public verification of Amphora digital wine certificates, the points economy
around them, and a relayer that lets holders without a wallet move their
certificates and points by signature.

* **certificates**: the verification view of one bottle's certificate, and an
  optional check of the bottle's tag against its lot's Merkle root.
* **verification page**: the HTML page a bottle's QR code opens.
* **accounts**: what one address holds: ETH, certificates, stablecoin, points
  and utility tokens.
* **points**: the clearing statement between merchants over a block range,
  reconciled with the points reserve on chain (JSON or CSV).
* **relay**: typed data to sign, submission of signed transfers of
  certificates and of points (EIP-3009), gas paid by the relayer, and
  transaction status.
* **lending**: the lender's view of a pledged certificate (`/collateral`,
  `/loans`), optionally signed with the block it was read at by the snapshot
  key (`AMPHORA_SNAPSHOT_SIGNING_KEY`, not the gas key); the loan offer board
  (`/offers`); relayed loan acceptances and extensions (`/relay/loan-*`).
* **auth**: custodial accounts for people without a wallet: signup and login
  with an identifier and a password, session and API tokens
  (`Authorization: Bearer <token>`), and export of the account's key. The
  service holds each account's key (encrypted at rest) and signs the
  account's actions with it, so on chain the account's own address acts;
  exporting the key lets its owner leave with their certificates.
* **casks**: cask shares (a security token per cask): a cask's facts and
  bottling backing, a holder's shares, eligibility and claimable
  distributions, whether a transfer is allowed (in words), and relayed share
  transfers, bottle claims and distribution claims.
* **e-label**: the tracking-free EU e-label of a lot (ingredients, allergens,
  nutrition per 100 ml) in English, Simplified Chinese or French, the page a
  bottle's code opens for a lot sold in the EU.
* **qr codes and labels**: the QR code of a bottle's GS1 Digital Link (SVG
  sized in millimetres, or PNG), of a gift's claim link (on a POST, never
  stored), and a lot's printable label sheet (PDF, A4 or letter).
* **metadata**: the NFT metadata each certificate's `tokenURI` points at, and
  each lot's metadata document, served only if it matches its on-chain hash.

Token ids, lot ids, nonces, deadlines, wei and token amounts are returned as decimal
strings (they exceed JavaScript's safe integers); requests accept integers or
decimal strings. Every error has the body `{"error": code, "detail": message}`.
"""


def _version() -> str:
    try:
        return version("amphora")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """An API app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    chain = ChainService(settings)
    db = Database(settings.database_url.get_secret_value() if settings.database_url else None, settings.relay_db)
    users = UserStore(db, settings)
    relayer = Relayer(chain, settings, db)
    # On PostgreSQL every instance shares the scans and the offer board too.
    scans = ScanLog(db if db.postgres else settings.scan_db, settings.scan_window_seconds,
                    settings.scan_burst_threshold, day_threshold=settings.scan_day_threshold,
                    clients_per_network=settings.scan_clients_per_network,
                    retention_days=settings.scan_retention_days)
    offers = OfferBook(db if db.postgres else settings.offer_db)
    # The index: in the relayer's database, unless a SQLite file of its own is named
    # (written by an indexer run as its own process, or shared by the tests).
    index_db = db if db.postgres or settings.index_db is None else Database(sqlite_path=settings.index_db)
    ensure_schema(index_db)
    follower = IndexerService(index_db, settings.rpc_url, settings.manifest_path, IndexConfig(
        reorg_window=settings.index_reorg_window, poll_seconds=settings.index_poll_seconds,
        lease_seconds=settings.index_lease_seconds)) if settings.index_worker else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("Amphora API starting; relayer %s",
                    relayer.address or ("invalid key" if relayer.configured else "not configured"))
        if not users.configured:
            logger.warning("custodial accounts are not configured: signup, key export and signing answer 503 "
                           "until AMPHORA_MASTER_KEY holds 32+ random bytes (hex or base64)")
        relayer.start()
        if follower is not None:
            follower.start()
        app.state.issuance_jobs.recover()
        yield
        app.state.issuance_jobs.stop()  # wallet jobs stop watching the chain; the next start recovers them
        app.state.issuance_jobs.wait(timeout=60)
        if follower is not None:
            follower.stop()
        relayer.stop()
        scans.close()
        offers.close()
        if index_db is not db:
            index_db.close()
        db.close()

    # /docs (Swagger UI) and /redoc load their scripts and styles from the
    # installed fastapi-offline package, under /static-offline-docs, not from a
    # CDN: the pages work on a machine without internet.
    app = FastAPIOffline(
        title="Amphora API",
        summary="Digital wine certificates and points: verification, balances, settlement and relaying.",
        description=DESCRIPTION,
        version=_version(),
        license_info={"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"},
        lifespan=lifespan,
        # Every route: the body-size limit answers before routing.
        responses=error_responses(PayloadTooLarge),
    )
    app.state.settings = settings
    app.state.chain = chain
    app.state.db = db
    app.state.users = users
    app.state.relayer = relayer
    app.state.index = IndexReader(index_db)
    app.state.follower = follower
    max_keys = settings.rate_limit_max_keys
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, max_keys)
    app.state.password_limiter = RateLimiter(settings.password_attempts_per_minute / 60,
                                             settings.password_attempts_per_minute, max_keys)
    app.state.signup_limiter = RateLimiter(settings.signup_attempts_per_hour / 3600,
                                           settings.signup_attempts_per_hour, max_keys)
    app.state.login_throttle = LoginThrottle(settings.password_attempts_per_minute,
                                             settings.login_account_failures_per_hour,
                                             settings.login_backoff_max_seconds, max_keys)
    # Outermost: a body above the limit is refused before anything reads or parses it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, uploads=UPLOADS,
                       upload_max_bytes=settings.max_upload_bytes, credential_cookies=(cookie_name(settings),))
    app.state.scans = scans
    app.state.snapshot_signer = SnapshotSigner(settings.snapshot_signing_key, relayer.addresses)
    app.state.offers = offers
    app.state.extensions = ExtensionBook(db)
    app.state.business = BusinessSender(chain, users, wallet=WalletTransactions(db, chain))
    app.state.tag_vault = TagKeyVault(db, settings)
    app.state.issuance_jobs = IssuanceJobs(db, chain, app.state.business, app.state.tag_vault, settings)
    install_exception_handlers(app)
    # Every response, errors included; the docs pages get their own policy (see api.security).
    docs_paths = {path for path in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if path}
    app.add_middleware(SecurityHeaders, docs_paths=docs_paths | {"/docs", "/redoc"},
                       hsts=settings.public_base_url.startswith("https://"))
    # The pages' stylesheet and images (web/static), never from a CDN.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(health.router)
    # Early: a request is matched against the routes in order, and the index reads are the busiest.
    app.include_router(index.router)
    app.include_router(certificates.router)
    app.include_router(certificates.page_router)
    # Before relay.router, whose /relay/typed-data/{action} would take /relay/typed-data/loan-*.
    app.include_router(lending.relay_router)
    app.include_router(relay.router)
    app.include_router(lending.router)
    app.include_router(metadata.router)
    app.include_router(accounts.router)
    app.include_router(points.router)
    app.include_router(auth.router)
    app.include_router(wallet.router)
    app.include_router(custodial.router)
    app.include_router(admin.router)
    app.include_router(casks.router)
    app.include_router(resolver.router)
    app.include_router(elabel.router)
    # The e-label and the Digital Links that open it leave no client address in the access log.
    elabel.install_access_log_filter()
    app.include_router(qr.router)
    app.include_router(epcis.router)
    app.include_router(holder_app.router)
    app.include_router(holder_app_gifts.router)
    app.include_router(holder_money.router)
    app.include_router(holder_moves.router)
    app.include_router(holder_preferences.router)
    app.include_router(holder_wallet.router)
    app.include_router(custodian.router)
    app.include_router(business.router)
    app.include_router(business_wallet.router)
    app.include_router(console.router)
    app.include_router(console_wallet.router)
    app.include_router(console_issuer.router)
    app.include_router(issuer.router)
    app.include_router(issuer_jobs_api.router)
    app.include_router(console_operator.router)
    app.include_router(console_lender.router)
    app.include_router(lender_api.router)
    app.include_router(console_lender_extension.router)
    app.include_router(extensions_api.router)
    app.include_router(holder_loan_extension.router)
    app.include_router(console_merchant.router)
    app.include_router(merchant_api.router)
    app.include_router(console_custodian.router)
    app.include_router(console_appraiser.router)
    app.include_router(custody_console.router)
    return app


app = create_app()
