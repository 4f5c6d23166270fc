"""Relayer throughput and latency against anvil, beside the node's own ceiling.

Run with ``make bench`` (after ``bench/gas.py``) or ``python bench/relayer.py``.
It starts its own anvil on a free port of 127.0.0.1, deploys with the
project's deploy code, and measures in the same run:

* **raw ceiling**: pre-signed EIP-3009 points transfers (the same contract
  call the relayer sends), sent straight to anvil as raw transactions by as
  many threads as the relayed run has clients, timed from the first send to
  the last receipt;
* **relayed**: custodial points transfers through the API (a real ``uvicorn``
  process, SQLite outbox, a pool of relayer keys), sent for ``--seconds`` by
  ``--clients`` concurrent clients, each timed from its HTTP request to its
  ``confirmed`` status (the row's ``updated_at`` when it became final);
  ``relayed_tps`` is the confirmed requests over the time from the first
  request to the last confirmation.

Then it audits the outbox and the chain (``tests/relay_harness.audit``):
``lost`` counts requests never stored, never answered 202 or never final;
``duplicated`` requests stored or transferred on chain more than once.
Prints a table with the ceiling and the 50 % target beside the relayed figure
and writes ``bench/results/relayer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from relay_harness import (  # noqa: E402  (after the path set-up)
    ApiServer,
    Client,
    Job,
    Outcome,
    RawChain,
    audit,
    free_port,
    fresh_keys,
    fund_points,
    outbox_rows,
    points_job,
    server_env,
    sign_up,
    submit,
    wait_final,
)

RESULTS = ROOT / "bench" / "results" / "relayer.json"
MNEMONIC = "test test test test test test test test test test test junk"
#: The target: relayed throughput at least this share of the raw ceiling.
TARGET_SHARE = 0.5
USD = 10**6


def start_anvil(workdir: Path, accounts: int = 20) -> tuple[subprocess.Popen[bytes], str]:
    """anvil on a free port of 127.0.0.1, automining, with Ape's test mnemonic
    (so Ape's test accounts are its funded accounts)."""
    anvil = shutil.which("anvil", path=str(ROOT / "node_modules" / ".bin")) or shutil.which("anvil")
    if anvil is None:
        raise SystemExit("anvil not found: run `make install`")
    port = free_port()
    log = (workdir / "anvil.log").open("wb")
    process = subprocess.Popen([anvil, "--host", "127.0.0.1", "--port", str(port), "--accounts", str(accounts),
                                "--mnemonic", MNEMONIC, "--hardfork", "prague", "--balance", "1000000"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    stop_anvil(process)
    raise SystemExit(f"anvil did not start:\n{(workdir / 'anvil.log').read_text()}")


def stop_anvil(process: subprocess.Popen[bytes]) -> None:
    """Kill anvil's process group: ``node_modules/.bin/anvil`` is a wrapper that
    starts the real binary as its child, which outlives a kill of the wrapper."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def deploy(url: str, workdir: Path) -> tuple[Path, list[str]]:
    """Deploy with Ape (connected to our anvil); the manifest's path and the
    private keys of Ape's test accounts."""
    os.environ["APE_FOUNDRY_HOST"] = url
    from ape import accounts, networks
    from ape.logging import logger as ape_logger

    from amphora.deploy import CertificateSettings, deploy_all

    ape_logger.set_level("WARNING")
    with networks.ethereum.local.use_provider("foundry"):
        people = list(accounts.test_accounts)
        manifest = deploy_all(people[0], directory=workdir, certificate=CertificateSettings(
            base_uri="https://verify.amphora.example/metadata/"))
        return manifest.path, [p.private_key for p in people]


def measure_ceiling(chain: RawChain, keys: list[str], payers: list[str], count_: int,
                    threads: int) -> dict[str, float | int]:
    """``count_`` pre-signed transferWithAuthorization transactions, each
    authorization by one of ``payers``, each transaction from one of ``keys``;
    sent by ``threads`` threads, one transaction per request; timed to the last
    receipt."""
    from eth_account import Account

    from amphora import eip712

    points = chain.contract("PointsToken")
    _, name, version, chain_id, verifying, _, _ = points.functions.eip712Domain().call()
    # Room for the base fee to rise while thousands of transactions wait in the pool.
    fees = {"maxFeePerGas": chain.fees()["maxFeePerGas"] + 100 * 10**9, "maxPriorityFeePerGas": 10**9}
    receiver = Account.create().address
    per_key: list[list[str]] = [[] for _ in keys]
    hashes: list[str] = []
    for i in range(count_):
        payer = Account.from_key(payers[i % len(payers)])
        nonce = (i // len(payers)).to_bytes(32, "big")  # the payer's bitmap word 0, as the API picks
        message = eip712.authorization_message(payer.address, receiver, 1 + i, 0, 2**40, nonce)
        data = eip712.typed_data("TransferWithAuthorization", message, chain_id, verifying, name=name,
                                 version=version)
        v, r, s = eip712.split_signature(eip712.sign(data, payer.key))
        call = points.functions.transferWithAuthorization(payer.address, receiver, 1 + i, 0, 2**40, nonce, v, r, s)
        raw = chain.sign(call, keys[i % len(keys)], fees, gas=150_000)
        per_key[i % len(keys)].append(raw)
    lanes: list[list[str]] = [[] for _ in range(threads)]
    for index, raws in enumerate(per_key):  # one key's transactions stay in order on one thread
        lanes[index % threads].extend(raws)

    def send(lane: list[str]) -> list[str]:
        out = []
        with httpx.Client(timeout=60.0) as client:
            for raw in lane:
                answer = client.post(chain.rpc_url, json={"jsonrpc": "2.0", "id": 1,
                                                          "method": "eth_sendRawTransaction", "params": [raw]})
                out.append(answer.json()["result"])
        return out

    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        for sent in pool.map(send, lanes):
            hashes.extend(sent)
    # anvil's automine mines as transactions arrive; a backlog left in its pool once the sending
    # stops waits for the next arrival, so a stall is nudged with evm_mine (counted), and what
    # anvil dropped from its pool under the burst is counted too, not waited for.
    found: set[str] = set()
    last_found, nudges = time.time(), 0
    with httpx.Client(timeout=60.0) as client:
        while len(found) < len(hashes):
            missing = [h for h in hashes if h not in found]
            for start in range(0, len(missing), 500):
                chunk = missing[start:start + 500]
                payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_getTransactionReceipt", "params": [h]}
                           for i, h in enumerate(chunk)]
                for answer in client.post(chain.rpc_url, json=payload).json():
                    receipt = answer.get("result")
                    if receipt:
                        if int(receipt["status"], 16) != 1:
                            raise SystemExit(f"ceiling: transaction {receipt['transactionHash']} reverted")
                        found.add(chunk[answer["id"]])
                        last_found = time.time()
            if len(found) < len(hashes) and time.time() - last_found > 1.0:
                if nudges == 3:
                    break
                nudges += 1
                chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            time.sleep(0.02)
    elapsed = last_found - started
    return {"tps": len(found) / elapsed, "transactions": len(found), "seconds": elapsed, "mine_nudges": nudges,
            "dropped": count_ - len(found)}



def measure_relayed(server: ApiServer, clients: list[Client], seconds: float, concurrency: int,
                    chain: RawChain, relay_db: Path, relayer_addresses: list[str]) -> dict[str, object]:
    """Custodial points transfers for ``seconds`` from ``concurrency`` clients;
    each client sends its next request when the last one was accepted (202)."""
    start_block = chain.w3.eth.block_number + 1
    start_nonces = {a: chain.nonce(a) for a in relayer_addresses}
    values = count(1)
    lock = threading.Lock()
    jobs: list[Job] = []
    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        with httpx.Client(timeout=60.0) as http:
            turn = 0
            while time.monotonic() < stop_at:
                payer = clients[(index + turn * concurrency) % len(clients)]
                payee = clients[(index + turn * concurrency + 1) % len(clients)]
                turn += 1
                with lock:
                    job = points_job(payer, payee.address, next(values))
                    jobs.append(job)
                outcome = submit(http, server.url, job)
                with lock:
                    outcomes.append(outcome)

    started = time.time()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = time.time() - started
    finals = wait_final(server.url, [o.request_id for o in outcomes if o.request_id], timeout=300)
    result = audit(chain, jobs, outcomes, outbox_rows(relay_db), start_block, start_nonces)
    latencies = []
    last_confirmed = started
    for outcome in outcomes:
        body = finals.get(outcome.request_id or "")
        if body is not None and body["status"] == "confirmed":
            latencies.append((float(body["updated_at"]) - outcome.sent_at) * 1000)
            last_confirmed = max(last_confirmed, float(body["updated_at"]))
    confirmed = len(latencies)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "tps": confirmed / (last_confirmed - started) if confirmed else 0.0,
        "accepted_per_second": len([o for o in outcomes if o.status_code == 202]) / submitted,
        "requests": len(jobs), "confirmed": confirmed, "p50_ms": quantiles[49], "p95_ms": quantiles[94],
        "lost": len(result.lost), "duplicated": len(result.duplicated), "problems": result.problems,
        "seconds": last_confirmed - started,
    }


def table(results: dict[str, object]) -> str:
    ceiling = float(results["raw_ceiling_tps"])  # type: ignore[arg-type]
    relayed = float(results["relayed_tps"])  # type: ignore[arg-type]
    target = TARGET_SHARE * ceiling
    rows = [
        f"{'measurement':<34}{'ours':>12}   {'reference':<40}",
        f"{'relayed_tps (HTTP -> confirmed)':<34}{relayed:>12.1f}   "
        f"{f'ceiling {ceiling:.1f}; target ≥ {target:.1f} (50 %)':<40}",
        f"{'raw_ceiling_tps (pre-signed)':<34}{ceiling:>12.1f}   {'anvil, same run, same call':<40}",
        f"{'relayed / ceiling':<34}{relayed / ceiling if ceiling else 0:>12.2f}   {'target ≥ 0.50':<40}",
        f"{'p50_ms':<34}{float(results['p50_ms']):>12.1f}   {'(no reference given)':<40}",  # type: ignore[arg-type]
        f"{'p95_ms':<34}{float(results['p95_ms']):>12.1f}   {'(no reference given)':<40}",  # type: ignore[arg-type]
        f"{'lost':<34}{results['lost']:>12}   {'target 0':<40}",
        f"{'duplicated':<34}{results['duplicated']:>12}   {'target 0':<40}",
    ]
    verdict = "met" if relayed >= target and results["lost"] == 0 and results["duplicated"] == 0 else "MISSED"
    rows.append(f"target (≥ 50 % of the ceiling, nothing lost or duplicated): {verdict}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the relayed load runs")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (more only queue: the "
                        "API process is CPU-bound at this load)")
    parser.add_argument("--accounts", type=int, default=50, help="custodial accounts paying each other")
    parser.add_argument("--keys", type=int, default=8, help="relayer keys in the pool")
    parser.add_argument("--poll", type=float, default=0.05, help="AMPHORA_RELAY_POLL_SECONDS")
    parser.add_argument("--ceiling-transactions", type=int, default=1_000)
    parser.add_argument("--ceiling-threads", type=int, default=8, help="threads sending the raw transactions")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="relayload-bench-"))
    anvil, url = start_anvil(workdir)
    try:
        manifest_path, people = deploy(url, workdir)
        chain = RawChain(url, manifest_path)
        admin, merchant = people[0], people[10]
        keys = fresh_keys(chain, args.keys)

        payers = fresh_keys(chain, args.accounts)
        fund_points(chain, admin, merchant, [a.address for a in map(_account, payers)], 1_000 * USD)
        ceiling = measure_ceiling(chain, keys, payers, args.ceiling_transactions, args.ceiling_threads)
        sys.stdout.write(f"raw ceiling: {ceiling['transactions']} transactions in {ceiling['seconds']:.1f} s\n")

        relay_db = workdir / "relay.sqlite"
        env = server_env(url, manifest_path, keys, relay_db=relay_db, poll_seconds=args.poll)
        with ApiServer(env, workdir / "api.log") as server:
            clients = sign_up(server.url, args.accounts)
            fund_points(chain, admin, people[11], [c.address for c in clients], 1_000 * USD)
            relayed = measure_relayed(server, clients, args.seconds, args.clients, chain, relay_db,
                                      [a.address for a in map(_account, keys)])
        results: dict[str, object] = {
            "relayed_tps": round(float(relayed["tps"]), 1),  # type: ignore[arg-type]
            "raw_ceiling_tps": round(ceiling["tps"], 1),
            "p50_ms": round(float(relayed["p50_ms"]), 1),  # type: ignore[arg-type]
            "p95_ms": round(float(relayed["p95_ms"]), 1),  # type: ignore[arg-type]
            "lost": relayed["lost"],
            "duplicated": relayed["duplicated"],
            "relayed_share_of_ceiling": round(float(relayed["tps"]) / ceiling["tps"], 3),  # type: ignore[arg-type]
            "relayed_requests": relayed["requests"],
            "relayed_seconds": round(float(relayed["seconds"]), 1),  # type: ignore[arg-type]
            "accepted_per_second": round(float(relayed["accepted_per_second"]), 1),  # type: ignore[arg-type]
            "ceiling_transactions": ceiling["transactions"],
            "ceiling_seconds": round(ceiling["seconds"], 2), "ceiling_threads": args.ceiling_threads,
            "ceiling_mine_nudges": ceiling["mine_nudges"], "ceiling_dropped": ceiling["dropped"],
            "clients": args.clients, "accounts": args.accounts, "relayer_keys": args.keys,
            "poll_seconds": args.poll, "cpus": os.cpu_count(),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        sys.stdout.write(table(results) + f"\n\nwritten to {RESULTS}\n")
        for problem in relayed["problems"][:20]:  # type: ignore[index]
            sys.stdout.write(f"audit: {problem}\n")
        return 0
    finally:
        stop_anvil(anvil)
        shutil.rmtree(workdir, ignore_errors=True)


def _account(key: str):  # noqa: ANN202
    from eth_account import Account

    return Account.from_key(key)


if __name__ == "__main__":
    raise SystemExit(main())
