"""The consumer's first request: the verification page and the GS1 resolver under load,
beside FastAPI's hello-world served the same way in the same run.

Run with ``make bench`` or ``python bench/pages.py``. It starts its own anvil on a
free port, deploys with the project's deploy code, issues a version 2 lot of
1,000 bottles (the demo lot's document, its GS1 serials) from pre-signed raw
transactions, sells a fifth of them, flags a few and gifts a few, and serves the API (``uvicorn
api.main:app``, its indexer following the chain, the scan log recording every
page view as in production). Then, at ``--clients`` concurrent clients each
asking back to back for ``--seconds``:

* ``verify``: ``GET /verify/{token_id}`` of random bottles of the lot (the
  page in English, the history read from the index, the view counted);
* ``resolver``: ``GET /01/{gtin}/10/{lot}/21/{serial}`` of random bottles, the
  redirect (307) to the bottle's default link;
* ``hello``: FastAPI's smallest JSON route, the reference.

Targets: each at least half the hello-world's answers a second, p99 ≤ 50 ms.
Prints a table and writes ``bench/results/pages.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402  (after the path set-up)
from eth_account import Account  # noqa: E402
from load import Server, measure_reads, rounded, start_hello, tear_down  # noqa: E402
from rawchain import Builder  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pages.json"
TARGET_SHARE = 0.5
TARGET_P99_MS = 50.0
BOTTLES = 1_000
SERIAL_BITS = 32
#: The operator token of the benchmark's API (``/health`` shows the index's progress to the operator only).
ADMIN_TOKEN = "pages-bench-operator-token-0123456789"


def build_lot(url: str, manifest_path: Path, people: list[str], documents: Path) -> dict[str, Any]:
    """Roles, the version 2 lot and its history; its document in ``documents``."""
    from amphora import lots
    from amphora.demo import EXAMPLE_LOT

    builder = Builder(url, manifest_path)
    admin, winery, custodian = people[0], people[1], people[2]
    address = {key: Account.from_key(key).address for key in people}
    cert = builder.contract("WineCertificate")
    builder.add(cert.functions.grant_issuer(address[winery], "Domaine Amphora"), admin)
    builder.add(cert.functions.grant_custodian(address[custodian], "Cave Bench"), admin)
    builder.mine()
    data = {**copy.deepcopy(json.loads(EXAMPLE_LOT.read_text())), "bottle_count": BOTTLES,
            "custodian": address[custodian]}
    description = lots.LotDescription.from_mapping(data)
    doc = description.metadata_document()
    lot_id = int(builder.rpc("eth_call", {"to": cert.address, "data": cert.functions.lot_count().data},
                             "latest"), 16) + 1
    builder.add(cert.functions.issue_lot(
        description.custodian, BOTTLES, description.vintage, description.volume_ml, description.bottling_date,
        lots.metadata_hash(doc), os.urandom(32), description.producer, description.wine, description.region,
        description.metadata_uri), winery, gas=400_000)
    builder.mine()
    lots.write_document(documents / f"lot-{lot_id}.json", doc)
    sold = BOTTLES // 5
    holders = ["0x" + os.urandom(20).hex() for _ in range(sold)]
    for serial, holder in enumerate(holders, start=1):
        builder.add(cert.functions.transferFrom(address[winery], holder, lot_id << SERIAL_BITS | serial), winery,
                    gas=120_000)
    for serial in range(sold + 1, sold + 21):
        builder.add(cert.functions.flag(lot_id << SERIAL_BITS | serial, b"\x01" * 32), winery, gas=120_000)
    for serial in range(sold + 21, sold + 41):
        builder.add(cert.functions.create_gift(lot_id << SERIAL_BITS | serial, "0x" + os.urandom(20).hex(), 2**40),
                    winery, gas=150_000)
    builder.mine()
    return {"lot_id": lot_id, "document": doc, "transactions": builder.sent}


def start_api(workdir: Path, url: str, manifest_path: Path, keys: list[str], documents: Path) -> Server:
    from relay_harness import free_port, server_env

    port = free_port()
    env = server_env(url, manifest_path, keys[:1], relay_db=workdir / "relay.sqlite", index_worker="true",
                     index_db=str(workdir / "index.sqlite"), documents_dir=str(documents),
                     scan_db=str(workdir / "scans.sqlite"))
    env["AMPHORA_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    env["AMPHORA_ADMIN_TOKEN"] = ADMIN_TOKEN
    api = Server([sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--no-access-log"], env, workdir / "api.log", port)
    api.wait("/health")
    return api


def wait_indexed(api: Server, url: str) -> None:
    head = int(httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
               .json()["result"], 16)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        index = httpx.get(api.url + "/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                          timeout=10).json().get("index") or {}
        if (index.get("indexed_block") or -1) >= head:
            return
        time.sleep(0.2)
    raise RuntimeError("the index did not catch up with the chain in 120 s")


def paths(lot: dict[str, Any], count: int = 2_000) -> tuple[list[str], list[str]]:
    from amphora import lots

    rng = random.Random(14)
    serials = [rng.randint(1, BOTTLES) for _ in range(count)]
    verify = [f"/verify/{lots.token_id(lot['lot_id'], serial)}" for serial in serials]
    resolver = [lots.digital_link(lot["document"], serial).path() for serial in serials]
    return verify, resolver


def table(results: dict[str, Any]) -> str:
    hello = results["hello"]
    rows = [f"{'endpoint':<12}{'answers/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'× hello/s':>11}   target"]
    for name in ("verify", "resolver", "hello"):
        figures = results[name]
        share = figures["per_second"] / hello["per_second"]
        target = "reference" if name == "hello" else (
            f"≥ {TARGET_SHARE:g} × hello, p99 ≤ {TARGET_P99_MS:g} ms: "
            + ("met" if share >= TARGET_SHARE and figures["p99_ms"] <= TARGET_P99_MS else "MISSED"))
        rows.append(f"{name:<12}{figures['per_second']:>11,.0f}{figures['p50_ms']:>9.1f}{figures['p99_ms']:>9.1f}"
                    f"{share:>11.2f}   {target}")
    rows.append(f"{results['clients']} clients back to back, {results['seconds']:g} s each; "
                f"{results['cpus']} CPUs shared by clients, server and anvil")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of load per endpoint")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from relayer import deploy, start_anvil, stop_anvil

    workdir = Path(tempfile.mkdtemp(prefix="pages-bench-"))
    documents = workdir / "documents"
    documents.mkdir()
    began = time.monotonic()
    anvil, url = start_anvil(workdir)
    servers: list[Server] = []
    try:
        manifest_path, people = deploy(url, workdir)
        lot = build_lot(url, manifest_path, people, documents)
        api = start_api(workdir, url, manifest_path, people, documents)
        servers.append(api)
        wait_indexed(api, url)
        verify, resolver = paths(lot)
        measured = {"verify": measure_reads(api.url, verify, args.clients, args.seconds, 0),
                    "resolver": measure_reads(api.url, resolver, args.clients, args.seconds, 0, expect=307)}
        for name, figures in measured.items():
            if figures["errors"]:
                raise SystemExit(f"{name}: {figures['errors']} answers were not the expected status")
        api.stop()
        hello = start_hello(workdir, {**os.environ, "PYTHONPATH": str(ROOT)})
        servers.append(hello)
        measured["hello"] = measure_reads(hello.url, ["/hello"], args.clients, args.seconds, 0)
        results: dict[str, Any] = {
            **{name: rounded(figures) for name, figures in measured.items()},
            **{f"{name}_share_of_hello": round(measured[name]["per_second"] / measured["hello"]["per_second"], 3)
               for name in ("verify", "resolver")},
            "clients": args.clients, "seconds": args.seconds, "bottles": BOTTLES, "cpus": os.cpu_count(),
            "transactions": lot["transactions"], "seconds_total": round(time.monotonic() - began),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        sys.stdout.write(table(results) + f"\n\nwritten to {RESULTS}\n")
        return 0
    finally:
        tear_down(servers, stop_anvil, anvil, workdir, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
