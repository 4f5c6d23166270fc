"""The API's configuration, read from ``AMPHORA_*`` environment variables.

Every setting has a working default for a local anvil node except the secrets:
without the relayer key the read-only endpoints work and the relay endpoints
answer 503; without the master key custodial accounts cannot be created or
used; without the admin token the operator endpoints answer 503. Secrets are
:class:`~pydantic.SecretStr`, so they never show in a repr, a log line or a
response.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMPHORA_", extra="ignore")

    rpc_url: str = Field(
        default="http://127.0.0.1:8545",
        description="JSON-RPC endpoint of the node the API reads from and relays to.",
    )
    rpc_timeout: float = Field(default=10.0, gt=0, description="Seconds before a node request fails.")
    manifest_path: Path | None = Field(
        default=None,
        description="Deploy manifest to read contract addresses and ABIs from. Unset: the "
        "manifest for the node's chain id in amphora.manifest.manifest_dir().",
    )
    relayer_private_key: SecretStr | None = Field(
        default=None,
        description="Hex private key of the account that pays gas for relayed transactions. "
        "Unset: the relay endpoints answer 503.",
    )
    relayer_pool_keys: SecretStr | None = Field(
        default=None,
        description="More relayer keys, comma-separated hex, to relay beyond one key's nonce sequence. Each "
        "on-chain actor always goes through the same key, so its actions keep their order.",
    )
    relayer_min_balance_wei: int = Field(
        default=10**16, ge=0,
        description="Below this balance a relayer key refuses new relays (503), logs an ALERT and shows "
        "`low_balance` in /health.",
    )
    relay_max_fee_per_gas: int = Field(
        default=500 * 10**9, gt=0,
        description="Fee cap in wei per gas: no relayed transaction, first or replacement, offers more.",
    )
    relay_confirmations: int = Field(
        default=1, ge=1,
        description="Blocks (the transaction's own included) before a mined request is `confirmed`.",
    )
    relay_poll_seconds: float = Field(
        default=0.25, gt=0, description="How often the outbox worker checks sent transactions.",
    )
    relay_stuck_seconds: float = Field(
        default=30.0, gt=0,
        description="Seconds without a receipt before a sent transaction is replaced with higher fees.",
    )
    relay_worker: bool = Field(
        default=True, description="Run the outbox worker in this process (at least one instance must).",
    )
    relay_webhook_url: str | None = Field(
        default=None,
        description="URL that gets a POST of each request's status change (JSON, signed with "
        "`relay_webhook_secret` over `<timestamp>.<body>` in `X-Amphora-Signature: t=<timestamp>,sha256=<hex>`). "
        "Requires `relay_webhook_secret`. Best effort: polling GET /relay/{request_id} is the record.",
    )
    relay_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key of the webhook's `X-Amphora-Signature` header (required "
        "with `relay_webhook_url`: pushes are always signed).",
    )
    relay_webhook_tolerance_seconds: int = Field(
        default=300, gt=0, description="Replay window of a webhook push: a receiver refuses a signature whose "
        "timestamp is further than this from its clock (`api.webhooks.verify`).",
    )
    relay_webhook_queue_size: int = Field(
        default=1000, gt=0, description="Pushes waiting for the webhook receiver; beyond it new pushes are dropped "
        "(and logged), never held in memory.",
    )
    relay_nonce_reservations_per_caller: int = Field(
        default=32, ge=1,
        description="EIP-3009 nonces the API keeps reserved per caller (account or client address) and payer "
        "after handing them out in typed data (the oldest is dropped first).",
    )
    relay_nonce_reservation_seconds: float = Field(
        default=900.0, gt=0,
        description="How long a handed-out EIP-3009 nonce stays reserved for its caller (or until the "
        "authorization's valid_before, if sooner).",
    )
    quota_account_actions_per_day: int = Field(
        default=500, ge=0, description="Relayed actions per account per UTC day (operators can change it).",
    )
    quota_account_gas_per_day: int = Field(
        default=50_000_000, ge=0, description="Relayed gas per account per UTC day.",
    )
    quota_global_actions_per_day: int = Field(
        default=1_000_000, ge=0, description="Relayed actions per UTC day for the whole service.",
    )
    quota_global_gas_per_day: int = Field(
        default=100_000_000_000, ge=0, description="Relayed gas per UTC day for the whole service.",
    )
    rate_limit_per_second: float = Field(
        default=20.0, gt=0, description="Sustained requests a second per account on state-changing endpoints.",
    )
    password_attempts_per_minute: int = Field(
        default=10, gt=0, description="Password attempts (login, key export) per minute per identifier and per "
        "client address; more get 429.",
    )
    rate_limit_burst: int = Field(
        default=100, gt=0, description="Requests an account may send at once before the rate limit applies.",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public address of this API, used to build verification URLs.",
    )
    documents_dir: Path | None = Field(
        default=None,
        description="Folder of lot metadata documents (`lot-<id>.json`) served at "
        "/lots/{lot_id}/metadata.json. Unset: `<deployments>/documents/<chain id>/`, where "
        "`ape run issue_lot` writes them.",
    )
    relay_gas_limit_cap: int = Field(
        default=500_000, gt=21_000,
        description="Highest gas limit the relayer will pay for in one transaction.",
    )
    relay_reverted_gas_per_actor: int = Field(
        default=1_000_000, ge=0,
        description="Gas of relayed transactions that reverted on chain, per on-chain actor (the signer) and UTC "
        "day, after which the relayer refuses that actor's requests (429) until 00:00 UTC.",
    )
    relay_contract_reverted_gas_per_actor: int = Field(
        default=100_000, ge=0,
        description="The same budget for an actor that has code (a smart-contract wallet or an EIP-7702 "
        "delegated account, whose signature check can behave differently on chain than in the simulation).",
    )
    relay_contract_code_hashes: str | None = Field(
        default=None,
        description="Comma-separated keccak256 hashes (0x + 64 hex) of the contract code the relayer accepts "
        "as an actor. Set: an actor with any other code is refused (409 `relay_refused`). Unset: any code, "
        "within `relay_contract_reverted_gas_per_actor`.",
    )
    quota_network_actions_per_day: int = Field(
        default=2_000, ge=0,
        description="Relayed actions per UTC day from one client network (see `quota_network_prefix_v4`).",
    )
    quota_network_gas_per_day: int = Field(
        default=200_000_000, ge=0, description="Relayed gas per UTC day from one client network.",
    )
    quota_network_prefix_v4: int = Field(
        default=24, ge=8, le=32, description="Prefix length that groups IPv4 client addresses into one network.",
    )
    quota_network_prefix_v6: int = Field(
        default=56, ge=16, le=128, description="Prefix length that groups IPv6 client addresses into one network.",
    )
    quota_max_share: float = Field(
        default=0.01, gt=0, le=1,
        description="Largest share of the service's daily actions and gas that one account or one network may "
        "use, whatever its own quota: an abuser exhausts their own allowance, not everyone's.",
    )
    scan_db: Path | None = Field(
        default=None,
        description="SQLite file of verification scans, shared by workers and kept across restarts (with "
        "`database_url`, scans are kept there instead). "
        "Unset: an in-memory database (counts start afresh with the process).",
    )
    offer_db: Path | None = Field(
        default=None,
        description="SQLite file of the loan offer board, shared by workers and kept across restarts (with "
        "`database_url`, offers are kept there instead). "
        "Unset: an in-memory database (posted offers are lost with the process).",
    )
    offer_max_open_per_lender: int = Field(
        default=20, gt=0, description="Unexpired offers one lender may have on the offer board; one more is 409.",
    )
    scan_window_seconds: int = Field(
        default=600, gt=0, description="Window, in seconds, in which the distinct clients that open a "
        "certificate's verification page are counted for the `burst` anomaly (a client's repeated views in it "
        "count once).",
    )
    scan_burst_threshold: int = Field(
        default=20, gt=0, description="More distinct clients than this within the window flag a `burst` (a "
        "copied code).",
    )
    scan_day_threshold: int = Field(
        default=100, gt=0, description="More distinct clients than this within 24 hours also flag a `burst`.",
    )
    scan_clients_per_network: int = Field(
        default=2, gt=0, description="Distinct clients (user agents) that count per network prefix (IPv4 /24, "
        "IPv6 /48): one network cannot raise the count by rotating user agents.",
    )
    scan_retention_days: int = Field(
        default=30, gt=0, description="Days a verification scan (its salted hashes and time) is kept.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AMPHORA_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL URL (`postgresql://user:password@host:port/db`) of the relayer's "
        "database: accounts, outbox, quotas. Several API instances may share it. Unset: SQLite "
        "(`relay_db`), for one instance.",
    )
    relay_db: Path | None = Field(
        default=None,
        description="SQLite file of the relayer's database when `database_url` is unset. Unset too: an "
        "in-memory database (accounts and queued requests end with the process; for tests only).",
    )
    index_worker: bool = Field(
        default=True,
        description="Run the chain follower (the indexer) in this process. With several instances on one "
        "PostgreSQL database each may run it: one indexes at a time (a lease), the others take over "
        "when it stops. Off: this instance only reads the index another process writes "
        "(`python -m indexer run`).",
    )
    index_db: Path | None = Field(
        default=None,
        description="SQLite file of the index when `database_url` is unset and the index lives apart from "
        "the relayer's database (an indexer run as its own process shares it this way). Unset: the "
        "index is in the relayer's database (`relay_db`).",
    )
    index_reorg_window: int = Field(
        default=64, ge=1, le=10_000,
        description="Blocks below the head a reorg may reach: newer rows are answered as `latest`, older "
        "as `final`, and the follower checks every block's parent hash within this window.",
    )
    index_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between the follower's polls of the node at the head.",
    )
    index_lease_seconds: float = Field(
        default=15.0, gt=0, le=600,
        description="Seconds the indexing lease lasts without renewal: a dead indexer is replaced within it.",
    )
    index_read_wait_seconds: float = Field(
        default=2.0, ge=0, le=30,
        description="How long an answer that must include a block just read from the node (a certificate's "
        "view and page, the points statement) waits for the index to reach that block. After it, the view "
        "answers as of the index (saying so) and the statement is 503 `index_behind`. An index that is "
        "empty, stopped or more than `index_max_lag_blocks` behind is not waited for.",
    )
    index_max_lag_blocks: int = Field(
        default=20, ge=1,
        description="An index more blocks than this behind the head answers /health `degraded`.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Master key of the custodial accounts: at least 32 random bytes, as 64+ hex digits or "
        "base64. Every account's Ethereum key is stored encrypted under a key derived from it. Unset or "
        "invalid: signing up, key export and signing for an account answer 503. Losing it loses every "
        "custodial key; changing it makes the stored keys undecryptable.",
    )
    snapshot_signing_key: SecretStr | None = Field(
        default=None,
        description="Hex private key that signs lender snapshots (`?signed=true` on /collateral and /loans). A "
        "key of its own that holds no funds, never a relayer key (refused). Unset: signed snapshots answer 503 "
        "(unsigned ones are served).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the operator endpoints. Unset: they answer 503.",
    )
    session_ttl_seconds: int = Field(
        default=86_400, gt=0, description="Seconds a session token from signup or login stays valid.",
    )
    password_time_cost: int = Field(
        default=3, ge=1, description="Argon2id passes over memory when hashing a password (RFC 9106 "
        "low-memory profile: 3). Stored hashes with other parameters are rehashed at the next login.",
    )
    password_memory_kib: int = Field(
        default=65_536, ge=8, description="Argon2id memory per password hash, in KiB (RFC 9106 low-memory "
        "profile: 65536, 64 MiB). Each concurrent login or signup uses this much.",
    )
    password_parallelism: int = Field(
        default=4, ge=1, description="Argon2id lanes per password hash (RFC 9106 low-memory profile: 4).",
    )
    password_hash_concurrency: int = Field(
        default=4, ge=1, description="Password hashes (signup, login, key export, password change) computed at "
        "once; each takes `password_memory_kib` of memory, so this bounds their memory (4 x 64 MiB). A request "
        "that finds every slot busy for `password_hash_wait_seconds` gets 503 `busy` with `Retry-After`.",
    )
    password_hash_wait_seconds: float = Field(
        default=1.0, ge=0, description="Seconds a request waits for a free password-hashing slot before 503.",
    )
    login_account_failures_per_hour: int = Field(
        default=100, gt=0, description="Failed logins an hour to one account from all networks together; "
        "beyond it only networks that logged in to the account successfully before get through (429 for the "
        "others). Per account and network `password_attempts_per_minute` failures are allowed, then the wait "
        "doubles with each failure up to `login_backoff_max_seconds`.",
    )
    login_backoff_max_seconds: float = Field(
        default=900.0, gt=0, description="Longest wait between failed logins to one account from one network.",
    )
    signup_attempts_per_hour: int = Field(
        default=20, gt=0, description="Sign-ups an hour per client network (an IPv4 address or an IPv6 /64), "
        "successful or not. Each answer says whether an identifier is taken, so this bounds how fast one "
        "network can test identifiers.",
    )
    wallet_challenges_per_minute: int = Field(
        default=10, gt=0, description="Sign-In with Ethereum challenges (`POST /auth/wallet/challenge`) a minute "
        "per client network; more get 429. Each one is a row kept until it expires.",
    )
    api_token_ttl_days: int = Field(
        default=90, gt=0, description="Days an API token stays valid (the most a token may ask for); tokens "
        "created before expiry existed expire this long after their creation.",
    )
    rate_limit_max_keys: int = Field(
        default=20_000, ge=100, description="Keys (accounts, client networks, identifiers) each in-memory rate "
        "limiter table remembers at most (about 250 bytes each; the app keeps seven such tables); beyond it the "
        "least recently used is forgotten, so memory stays bounded under a flood of distinct keys.",
    )
    max_body_bytes: int = Field(
        default=65_536, gt=0, description="Largest request body accepted, in bytes, on every route (413 "
        "`payload_too_large` above it, before the body is parsed; chunked bodies are counted as they arrive).",
    )
    max_upload_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="Largest body of the upload routes (a cellar's storage "
        "report: `PUT /custodian/lots/{lot_id}/storage-report` and its console form), in bytes, for a request "
        "that carries a bearer token or a session cookie; without one those routes keep `MAX_BODY_BYTES`.",
    )

    def documents_folder(self, chain_id: int) -> Path:
        """The folder of lot documents: ``documents_dir``, else the deployment's ``documents/<chain id>/``."""
        from amphora.lots import documents_dir  # the toolchain's layout, where `ape run issue_lot` writes

        return self.documents_dir or documents_dir(chain_id)

    def lot_document_path(self, chain_id: int, lot_id: int) -> Path:
        """Where lot ``lot_id``'s document is kept (`lot-<id>.json` in :meth:`documents_folder`)."""
        return self.documents_folder(chain_id) / f"lot-{lot_id}.json"

    @field_validator("relay_contract_code_hashes")
    @classmethod
    def _code_hashes(cls, value: str | None) -> str | None:
        # A typo here would refuse every contract wallet: fail at startup instead.
        if value is None or not value.strip():
            return None
        hashes = [h.strip().lower() for h in value.split(",") if h.strip()]
        for code_hash in hashes:
            if len(code_hash) != 66 or not code_hash.startswith("0x") or any(
                    c not in "0123456789abcdef" for c in code_hash[2:]):
                raise ValueError(f"relay_contract_code_hashes: {code_hash!r} is not 0x and 64 hex digits")
        return ",".join(hashes)

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> Settings:
        # An unsigned push could be forged by anyone who learns the URL: refuse at startup.
        if self.relay_webhook_url and (self.relay_webhook_secret is None
                                       or not self.relay_webhook_secret.get_secret_value()):
            raise ValueError("relay_webhook_url needs relay_webhook_secret: webhook pushes are always signed")
        return self

    @model_validator(mode="after")
    def _argon2_memory_covers_lanes(self) -> Settings:
        # Argon2 needs 8 KiB per lane; fail at startup rather than at the first signup.
        if self.password_memory_kib < 8 * self.password_parallelism:
            raise ValueError("password_memory_kib must be at least 8 * password_parallelism")
        return self


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read once from the environment."""
    return Settings()
