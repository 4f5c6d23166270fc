"""A harness for the relayer under load and under SIGKILL: the API as a real
``uvicorn`` subprocess on a real node and a real database, custodial accounts
with points, many clients at once, and an audit of what reached the chain.

Used by ``tests/test_relayer_load.py`` and by ``bench/relayer.py`` (which puts
``tests/`` on ``sys.path``), so it imports neither pytest nor Ape: the chain is
reached with plain web3 and pre-signed transactions, far faster than Ape's
per-transaction round trips.

* :class:`ApiServer` starts ``python -m uvicorn api.main:app`` on 127.0.0.1,
  waits for ``/health``, SIGKILLs and restarts it on the same port and
  database, and keeps its output in a log file for failure messages.
* :func:`fund_points` has a merchant issue points to the accounts, the way the
  PointsToken is meant to be used.
* :func:`sign_up`, :func:`submit` and :func:`wait_final` are the clients:
  every relay request carries its own ``Idempotency-Key`` and is retried with
  it until the server answers.
* :func:`audit` compares what the clients asked for, what the outbox stored
  and what the chain holds: every request exactly once, no nonce gap.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3

REPO = Path(__file__).resolve().parents[1]
#: Test-only secrets.
MASTER_KEY = "4c" * 32
PASSWORD = "load test password 1"
#: One stablecoin unit per 10**6; one stablecoin unit issues SCALE points units.
SCALE = 10**12
POINTS_TRANSFER = "/me/relay/points-transfers"
FINAL = ("confirmed", "failed")
_TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
#: Gas limit of the harness's own transactions (funding, the bench's raw ceiling).
GAS = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(rpc_url: str, manifest_path: Path | str, relayer_keys: Sequence[str], *,
               relay_db: Path | None = None, database_url: str | None = None, poll_seconds: float = 0.05,
               **extra: Any) -> dict[str, str]:
    """The environment of an API process relaying with ``relayer_keys`` (the
    first is the service key, the rest its pool), with cheap Argon2 and quotas
    and rate limits far above what a load test sends. ``extra`` adds
    ``AMPHORA_<NAME>`` settings by lower-case name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPHORA_") and k != "DATABASE_URL"}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "AMPHORA_RPC_URL": rpc_url,
        "AMPHORA_MANIFEST_PATH": str(manifest_path),
        "AMPHORA_RELAYER_PRIVATE_KEY": relayer_keys[0],
        "AMPHORA_MASTER_KEY": MASTER_KEY,
        "AMPHORA_PASSWORD_TIME_COST": "1",
        "AMPHORA_PASSWORD_MEMORY_KIB": "64",
        "AMPHORA_PASSWORD_PARALLELISM": "1",
        "AMPHORA_QUOTA_ACCOUNT_ACTIONS_PER_DAY": str(10**9),
        "AMPHORA_QUOTA_ACCOUNT_GAS_PER_DAY": str(10**15),
        "AMPHORA_QUOTA_GLOBAL_ACTIONS_PER_DAY": str(10**9),
        "AMPHORA_QUOTA_GLOBAL_GAS_PER_DAY": str(10**15),
        # A load test sends everything from one address: its network may take the whole day.
        "AMPHORA_QUOTA_NETWORK_ACTIONS_PER_DAY": str(10**9),
        "AMPHORA_QUOTA_NETWORK_GAS_PER_DAY": str(10**15),
        "AMPHORA_QUOTA_MAX_SHARE": "1",
        "AMPHORA_RATE_LIMIT_PER_SECOND": str(10**6),
        "AMPHORA_RATE_LIMIT_BURST": str(10**6),
        # Every account signs up from this one machine.
        "AMPHORA_SIGNUP_ATTEMPTS_PER_HOUR": str(10**6),
        "AMPHORA_RELAY_POLL_SECONDS": str(poll_seconds),
    })
    if len(relayer_keys) > 1:
        env["AMPHORA_RELAYER_POOL_KEYS"] = ",".join(relayer_keys[1:])
    if relay_db is not None:
        env["AMPHORA_RELAY_DB"] = str(relay_db)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    for name, value in extra.items():
        env[f"AMPHORA_{name.upper()}"] = str(value)
    return env


class ApiServer:
    """``uvicorn api.main:app`` in a subprocess on a fixed port of 127.0.0.1;
    every start appends to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env.setdefault("AMPHORA_PUBLIC_BASE_URL", self.url)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "warning", "--no-access-log"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``GET /health`` answers 200; raises with the log's tail if the
        process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"the API exited ({self.process and self.process.returncode}):\n"
                                       f"{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not answer /health within {timeout} s:\n{self.log_tail()}")
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()
        self.wait_ready()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> ApiServer:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- the chain


class RawChain:
    """Plain web3 on the node: contracts from the deploy manifest, and
    transactions signed here and sent as raw bytes."""

    def __init__(self, rpc_url: str, manifest_path: Path | str) -> None:
        import json

        self.rpc_url = rpc_url
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
        self.w3.middleware_onion.clear()
        self.chain_id = int(self.w3.eth.chain_id)
        self._manifest = json.loads(Path(manifest_path).read_text())
        self._nonces: dict[str, int] = {}

    def contract(self, name: str) -> Any:
        entry = self._manifest["contracts"][name]
        return self.w3.eth.contract(address=to_checksum_address(entry["address"]), abi=entry["abi"])

    def fees(self) -> dict[str, int]:
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        return {"maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9}

    def sign(self, call: Any, key: str, fees: dict[str, int] | None = None, gas: int = GAS) -> str:
        """``call`` as a raw transaction from ``key`` on its next nonce (counted
        here, so many can be signed before any is sent)."""
        account = Account.from_key(key)
        nonce = self._nonces.get(account.address)
        if nonce is None:
            nonce = int(self.w3.eth.get_transaction_count(account.address, "pending"))
        self._nonces[account.address] = nonce + 1
        tx = {"chainId": self.chain_id, "to": call.address, "data": call._encode_transaction_data(), "value": 0,
              "gas": gas, "nonce": nonce, "type": 2, **(fees or self.fees())}
        return "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()

    def send(self, raws: Sequence[str], timeout: float = 120.0) -> list[dict[str, Any]]:
        """Send ``raws`` in order, wait for every receipt, and fail unless each succeeded."""
        hashes = [self.w3.eth.send_raw_transaction(raw).hex() for raw in raws]
        receipts = self.receipts(hashes, timeout)
        failed = [h for h, r in zip(hashes, receipts, strict=True) if int(r["status"], 16) != 1]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(hashes)} transactions reverted, e.g. {failed[0]}")
        return receipts

    def receipts(self, hashes: Sequence[str], timeout: float = 120.0) -> list[dict[str, Any]]:
        """The receipts of ``hashes`` (batched), waiting for the missing ones."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=60.0) as client:
            while True:
                missing = [h if h.startswith("0x") else "0x" + h for h in hashes if _hex(h) not in found]
                for chunk in _chunks(missing, 500):
                    payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
                               for i, h in enumerate(chunk)]
                    answers = {a["id"]: a.get("result") for a in client.post(self.rpc_url, json=payload).json()}
                    for i, tx_hash in enumerate(chunk):
                        if answers.get(i):
                            found[_hex(tx_hash)] = answers[i]
                if len(found) >= len(set(map(_hex, hashes))):
                    return [found[_hex(h)] for h in hashes]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(hashes) - len(found)} transactions without a receipt after {timeout} s")
                time.sleep(0.05)

    def set_balance(self, address: str, wei: int) -> None:
        self.w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]

    def nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(to_checksum_address(address), "latest"))

    def transfers(self, token: str, from_block: int, senders: Iterable[str]) -> list[tuple[str, str, int, str]]:
        """``(from, to, value, tx_hash)`` of every ``Transfer`` of ``token`` from
        ``senders`` since ``from_block``."""
        wanted = {to_checksum_address(s) for s in senders}
        logs = self.w3.eth.get_logs({"address": to_checksum_address(token), "fromBlock": from_block,
                                     "toBlock": "latest", "topics": [_TRANSFER_TOPIC]})
        out = []
        for log in logs:
            sender = to_checksum_address(log["topics"][1][-20:])
            if sender in wanted:
                out.append((sender, to_checksum_address(log["topics"][2][-20:]), int(log["data"].hex(), 16),
                            _hex(log["transactionHash"].hex())))
        return out


def _hex(value: str) -> str:
    value = value.lower()
    return value if value.startswith("0x") else "0x" + value


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def fresh_keys(chain: RawChain, count: int, wei: int = 10**22) -> list[str]:
    """``count`` new private keys, funded with ``wei`` each (``anvil_setBalance``)."""
    keys = []
    for _ in range(count):
        account = Account.create()
        chain.set_balance(account.address, wei)
        keys.append("0x" + bytes(account.key).hex())
    return keys


def fund_points(chain: RawChain, admin_key: str, merchant_key: str, recipients: Sequence[str],
                stablecoin_each: int) -> None:
    """The stablecoin's master minter and the points' owner (``admin_key``)
    mints stablecoin to a merchant (``merchant_key``, not yet registered) and
    registers it; the merchant issues points worth ``stablecoin_each`` to each
    recipient."""
    stablecoin, points = chain.contract("Stablecoin"), chain.contract("PointsToken")
    admin, merchant = Account.from_key(admin_key).address, Account.from_key(merchant_key).address
    total = stablecoin_each * len(recipients)
    fees = chain.fees()
    chain.send([
        chain.sign(stablecoin.functions.configureMinter(admin, total), admin_key, fees),
        chain.sign(stablecoin.functions.mint(merchant, total), admin_key, fees),
        chain.sign(stablecoin.functions.approve(points.address, total), merchant_key, fees),
    ])
    chain.send([chain.sign(points.functions.register_merchant(merchant, "Load test bar", total * SCALE),
                           admin_key, fees)])
    chain.send([chain.sign(points.functions.issue(to_checksum_address(r), stablecoin_each), merchant_key, fees)
                for r in recipients])


# ---------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Client:
    """A custodial account: its session token and address."""

    token: str
    address: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sign_up(base_url: str, count: int, workers: int = 8) -> list[Client]:
    """``count`` new custodial accounts."""

    def one(_: int) -> Client:
        with httpx.Client(base_url=base_url, timeout=30.0) as http:
            answer = http.post("/auth/signup", json={"identifier": f"load-{uuid.uuid4().hex[:12]}",
                                                     "password": PASSWORD})
        if answer.status_code != 201:
            raise RuntimeError(f"signup answered {answer.status_code}: {answer.text}")
        body = answer.json()
        return Client(body["token"], to_checksum_address(body["address"]))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


@dataclass
class Job:
    """One relay request: who sends it, where, with which body and key."""

    client: Client
    body: dict[str, Any]
    path: str = POINTS_TRANSFER
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Outcome:
    """How a job ended at the API: the final HTTP status and body, the tries it
    took, and when it was first sent and answered (``time.time()``)."""

    job: Job
    status_code: int
    body: dict[str, Any]
    attempts: int
    sent_at: float
    answered_at: float

    @property
    def request_id(self) -> str | None:
        return self.body.get("request_id") if self.status_code == 202 else None


def points_job(client: Client, to: str, value: int) -> Job:
    return Job(client, {"to": to, "value": str(value)})


def submit(http: httpx.Client, base_url: str, job: Job, give_up_after: float = 180.0) -> Outcome:
    """POST ``job`` with its ``Idempotency-Key`` until the server answers it:
    202 or a 4xx other than 429. Connection errors, 5xx and 429 (a server
    being killed, starting or busy) are retried with the same key."""
    sent_at = time.time()
    deadline = time.monotonic() + give_up_after
    attempts = 0
    while True:
        attempts += 1
        try:
            answer = http.post(base_url + job.path, json=job.body,
                               headers={**job.client.headers, "Idempotency-Key": job.key})
            if answer.status_code == 202 or (400 <= answer.status_code < 500 and answer.status_code != 429):
                return Outcome(job, answer.status_code, answer.json(), attempts, sent_at, time.time())
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return Outcome(job, 0, {"error": "no answer"}, attempts, sent_at, time.time())
        time.sleep(0.05)


def submit_all(base_url: str | Callable[[int], str], jobs: Sequence[Job], concurrency: int) -> list[Outcome]:
    """Every job, ``concurrency`` at a time (threads, one HTTP connection each);
    ``base_url`` may be a function of the job's index, to spread jobs over
    several servers."""
    local = threading.local()

    def run(index: int) -> Outcome:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(timeout=60.0)
        url = base_url(index) if callable(base_url) else base_url
        return submit(http, url, jobs[index])

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(run, range(len(jobs))))


def wait_final(base_url: str, request_ids: Iterable[str], timeout: float = 120.0,
               workers: int = 8) -> dict[str, dict[str, Any]]:
    """``GET /relay/{id}`` for each id until every one is final (``confirmed``
    or ``failed``) or ``timeout`` passes; the last body of each."""
    last: dict[str, dict[str, Any]] = {}
    pending = set(request_ids)
    deadline = time.monotonic() + timeout
    local = threading.local()

    def poll(request_id: str) -> tuple[str, dict[str, Any] | None]:
        http = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(base_url=base_url, timeout=30.0)
        try:
            answer = http.get(f"/relay/{request_id}")
        except httpx.HTTPError:
            return request_id, None
        return request_id, answer.json() if answer.status_code == 200 else None

    with ThreadPoolExecutor(workers) as pool:
        while pending and time.monotonic() < deadline:
            for request_id, body in pool.map(poll, sorted(pending)):
                if body is not None:
                    last[request_id] = body
                    if body["status"] in FINAL:
                        pending.discard(request_id)
            if pending:
                time.sleep(0.2)
    return last


# ---------------------------------------------------------------- the audit


def outbox_rows(relay_db: Path | None = None, database_url: str | None = None) -> list[dict[str, Any]]:
    """Every row of the outbox, read straight from its database."""
    from storage.db import Database

    db = Database(url=database_url, sqlite_path=relay_db, pool_size=1)
    try:
        with db.transaction() as tx:
            return tx.all("SELECT id, account, idempotency_key, actor, status, relayer, nonce, tx_hash, error,"
                          " created_at, updated_at, replacements, broadcasts, lease_owner FROM relay_requests")
    finally:
        db.close()


@dataclass
class Audit:
    """What happened to a set of requests, from the outbox and the chain."""

    requests: int
    stored: int
    confirmed: int
    lost: list[str]
    duplicated: list[str]
    problems: list[str]


def audit(chain: RawChain, jobs: Sequence[Job], outcomes: Sequence[Outcome], rows: Sequence[dict[str, Any]],
          start_block: int, start_nonces: dict[str, int]) -> Audit:
    """Check, for the ``jobs`` sent since ``start_block`` with relayer keys
    whose nonces were ``start_nonces``:

    * every job was answered 202 and is stored exactly once (by its key);
    * every stored request is ``confirmed``, its transaction mined successfully
      from its relayer on its nonce;
    * each key's stored nonces are exactly its starting nonce onwards, with no
      gap and no repeat, and the key sent nothing else on chain;
    * on chain, each job's transfer (its own ``(from, to, value)``) happened
      exactly once, and nothing else moved out of the accounts.

    ``lost``: keys of jobs that never got a 202, were not stored, or are not
    final. ``duplicated``: keys of jobs stored or transferred more than once."""
    problems: list[str] = []
    by_key = {job.key: job for job in jobs}
    answered = {o.job.key: o for o in outcomes}
    for key, job in by_key.items():
        outcome = answered.get(key)
        if outcome is None or outcome.status_code != 202:
            problems.append(f"job {key} ({job.body}) answered "
                            f"{outcome.status_code if outcome else 'never'}: {outcome.body if outcome else ''}")
    ours = [r for r in rows if r["idempotency_key"] in by_key]
    stored = Counter(r["idempotency_key"] for r in ours)
    lost = sorted({k for k in by_key if stored[k] == 0}
                  | {r["idempotency_key"] for r in ours if r["status"] not in FINAL})
    duplicated = {k for k, n in stored.items() if n > 1}
    for outcome in answered.values():
        rid = outcome.request_id
        row = next((r for r in ours if r["idempotency_key"] == outcome.job.key), None)
        if rid is not None and row is not None and row["id"] != rid:
            problems.append(f"job {outcome.job.key} was answered request {rid} but stored as {row['id']}")
    not_confirmed = [r for r in ours if r["status"] != "confirmed"]
    for row in not_confirmed[:10]:
        problems.append(f"request {row['id']} ended {row['status']}: {row['error']}")
    if len(not_confirmed) > 10:
        problems.append(f"... {len(not_confirmed)} requests not confirmed in all")

    # Nonces: per key, exactly start..start+n-1, and the key sent nothing else.
    relayed_txs = 0
    for address, start in start_nonces.items():
        nonces = sorted(int(r["nonce"]) for r in rows if r["relayer"] == address)
        expected = list(range(start, start + len(nonces)))
        if nonces != expected:
            repeats = [n for n, c in Counter(nonces).items() if c > 1]
            gaps = sorted(set(expected) - set(nonces))
            problems.append(f"relayer {address}: stored nonces are not {start}..{start + len(nonces) - 1} "
                            f"(repeated {repeats[:10]}, missing {gaps[:10]})")
        on_chain = chain.nonce(address)
        relayed_txs += on_chain - start
        if on_chain != start + len(nonces):
            problems.append(f"relayer {address}: nonce on chain moved {start} -> {on_chain}, "
                            f"but the outbox holds {len(nonces)} requests for it")

    # Every stored request's transaction: mined, successful, from its key, on its nonce.
    confirmed = [r for r in ours if r["status"] == "confirmed"]
    receipts = chain.receipts([r["tx_hash"] for r in confirmed], timeout=30.0) if confirmed else []
    transactions = _transactions(chain, [r["tx_hash"] for r in confirmed])
    for row, receipt, tx in zip(confirmed, receipts, transactions, strict=True):
        if int(receipt["status"], 16) != 1:
            problems.append(f"request {row['id']}: transaction {row['tx_hash']} reverted")
        if to_checksum_address(tx["from"]) != row["relayer"] or int(tx["nonce"], 16) != int(row["nonce"]):
            problems.append(f"request {row['id']}: transaction {row['tx_hash']} is from {tx['from']} nonce "
                            f"{int(tx['nonce'], 16)}, stored as {row['relayer']} nonce {row['nonce']}")

    # On chain: each job's transfer exactly once, nothing else out of these accounts.
    points = chain.contract("PointsToken")
    moved = Counter((f, t, v) for f, t, v, _ in chain.transfers(points.address, start_block,
                                                                 {j.client.address for j in jobs}))
    wanted = {key: (job.client.address, to_checksum_address(job.body["to"]), int(job.body["value"]))
              for key, job in by_key.items()}
    if len(set(wanted.values())) != len(wanted):
        raise ValueError("the audit needs every job's (from, to, value) to be unique")
    for key, transfer in wanted.items():
        times = moved.pop(transfer, 0)
        if times > 1:
            duplicated.add(key)
        if times != 1 and answered.get(key) is not None and answered[key].status_code == 202:
            problems.append(f"job {key}: its transfer {transfer} is on chain {times} times")
    for transfer, times in moved.items():
        problems.append(f"{times} transfer(s) {transfer} on chain that no job asked for")
    if relayed_txs != len(wanted):
        problems.append(f"the relayer keys sent {relayed_txs} transactions for {len(wanted)} requests")
    if duplicated:
        problems.append(f"{len(duplicated)} requests duplicated, e.g. {sorted(duplicated)[:3]}")
    if lost:
        problems.append(f"{len(lost)} requests lost (never stored or never final), e.g. {lost[:3]}")
    return Audit(requests=len(by_key), stored=len(ours), confirmed=len(confirmed), lost=lost,
                 duplicated=sorted(duplicated), problems=problems)


def _transactions(chain: RawChain, hashes: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with httpx.Client(timeout=60.0) as client:
        for chunk in _chunks(list(hashes), 500):
            payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionByHash", "params": [h]}
                       for i, h in enumerate(chunk)]
            answers = {a["id"]: a.get("result") for a in client.post(chain.rpc_url, json=payload).json()}
            out.extend(answers[i] for i in range(len(chunk)))
    return out
