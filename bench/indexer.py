"""The indexer at catch-up and under read load, against anvil, beside the node's own ceiling.

Run with ``make bench`` (after ``bench/relayer.py``) or ``python bench/indexer.py``.
It starts its own anvil on a free port of 127.0.0.1 (automine off: blocks of
a few dozen transactions are mined with ``anvil_mine``), deploys with the
project's deploy code, and builds a synthetic chain from pre-signed raw
transactions:

* an issuer's lot of 1,000,000 bottles (one ``ConsecutiveTransfer``), 10,000 of
  them sold to 10,000 holders;
* lifecycle: issuers flag and clear their unsold bottles, holders create and
  revoke gifts, request redemptions that the custodian rejects;
* points: merchants issue points to holders, holders pay merchants with them.

Then it measures, in the same run:

* ``raw_getlogs_events_per_s``, the ceiling: plain ``eth_getLogs`` paging of
  every event of the deployment's contracts, the same page size the follower
  starts with, each page's JSON parsed;
* ``ingest_events_per_s``: a fresh :class:`indexer.follower.Indexer` on a fresh
  SQLite file catching up on the same chain (``run_until_synced``), the whole
  chain far below the head (the last 64 blocks are empty), so every event goes
  through the catch-up path; the target is half the ceiling;
* ``rows_per_million_bottle_lot``: the rows of every ``ix_*`` table added by
  indexing one more 1,000,000-bottle lot (its block alone);
* ``my_certificates_*_ms`` and ``history_*_ms``: ``GET /accounts/{address}/certificates``
  and ``GET /certificates/{token_id}/history`` at ``--clients`` concurrent
  clients over HTTP, each client asking one after another (random holders and
  bottles of the big lot, and the issuer itself, whose 990,000 unsold bottles
  are ranges). The server is the API (``uvicorn api.main:app`` reading the
  index, ``index_worker`` off) when its OpenAPI has both routes; otherwise a
  stand-in (this file's ``serve`` command, the same queries over the ``ix_*``
  tables), and the output says so.

Prints a table with the reference beside each figure and writes
``bench/results/indexer.json``. ``--scale`` shrinks the chain for a quick try.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The repository first: ``indexer`` must be the package, not this file.
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import httpx  # noqa: E402  (after the path set-up)
from eth_account import Account  # noqa: E402
from load import Server, measure_reads, rounded, start_hello, tear_down  # noqa: E402
from rawchain import BATCH, Builder  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "indexer.json"
#: The ingestion target: at least this share of the raw eth_getLogs ceiling.
TARGET_SHARE = 0.5
#: The read target (ms, p99) for both endpoints.
TARGET_P99_MS = 20.0
#: Ponder's published aim for its indexer on large machines, for scale.
PONDER_EVENTS_PER_S = 100_000
USD = 10**6
#: Gas per block of the synthetic chain: a few dozen transactions, about 40 events.
BLOCK_GAS = 3_000_000
MY_CERTIFICATES = "/accounts/{address}/certificates"
HISTORY = "/certificates/{token_id}/history"
SERIAL_BITS = 32
STANDIN_PAGE = 50


# ---------------------------------------------------------------- the chain


def build_chain(builder: Builder, people: list[str], scale: float) -> dict[str, Any]:
    """The synthetic chain; what it holds (counts of each kind of action, the
    big lot, its holders)."""
    admin, winery, custodian = people[0], people[1], people[2]
    issuers = [people[1], people[3], people[4], people[5]]
    merchants = [people[10], people[11]]
    cert, points, stable = builder.contract("WineCertificate"), builder.contract("PointsToken"), \
        builder.contract("Stablecoin")
    address = {key: Account.from_key(key).address for key in people}
    holders_n = max(10, int(10_000 * scale))
    flag_cycles = max(4, int(10_000 * scale))
    gift_cycles = max(4, int(3_000 * scale))
    redemption_cycles = max(4, int(1_000 * scale))
    point_issues = max(4, int(6_000 * scale))
    point_payments = max(4, int(3_000 * scale))
    holder_keys = ["0x" + os.urandom(32).hex() for _ in range(holders_n)]
    holders = [Account.from_key(k).address for k in holder_keys]
    done: Counter[str] = Counter()

    # Roles, money and the lots.
    for issuer in issuers:
        builder.add(cert.functions.grant_issuer(address[issuer], f"Domaine {address[issuer][:8]}"), admin)
    builder.add(cert.functions.grant_custodian(address[custodian], "Cave Bench"), admin)
    total = 10**12
    builder.add(stable.functions.configureMinter(address[admin], total), admin)
    for merchant in merchants:
        builder.add(stable.functions.mint(address[merchant], total // 4), admin)
        builder.add(stable.functions.approve(points.address, 2**256 - 1), merchant)
        builder.add(points.functions.register_merchant(address[merchant], f"Bar {address[merchant][:8]}",
                                                       10**40), admin)
    builder.mine()
    big_lot = issue_lot(builder, cert, winery, address[custodian], 1_000_000, "Grand Vin")
    small_lots = {issuer: issue_lot(builder, cert, issuer, address[custodian], 1 + flag_cycles // len(issuers),
                                    "Second Vin") for issuer in issuers}
    builder.mine()
    done["lots"] += 1 + len(small_lots)

    # Holders: gas for the ones that act, then one bottle each from the big lot.
    acting = max(gift_cycles, redemption_cycles, point_payments)
    payload = [{"jsonrpc": "2.0", "id": i, "method": "anvil_setBalance", "params": [h, hex(10**20)]}
               for i, h in enumerate(holders[:acting] + holders[-redemption_cycles:])]
    for start in range(0, len(payload), BATCH):
        builder.http.post(builder.url, json=payload[start:start + BATCH])
    for serial, holder in enumerate(holders, start=1):
        builder.add(cert.functions.transferFrom(address[winery], holder, big_lot << SERIAL_BITS | serial), winery,
                    gas=120_000)
        done["certificate transfers"] += 1
    builder.mine()

    # Lifecycle, first halves: flags by issuers on their unsold bottles, gifts and
    # redemption requests by holders, points issued to holders.
    for i in range(flag_cycles):
        issuer = issuers[i % len(issuers)]
        token = small_lots[issuer] << SERIAL_BITS | (1 + i // len(issuers))
        builder.add(cert.functions.flag(token, b"\x01" * 32), issuer, gas=120_000)
        builder.add(cert.functions.clear_flag(token), issuer, gas=120_000)
        done["flags"] += 1
        done["flags cleared"] += 1
    gifts = [(holder_keys[i], big_lot << SERIAL_BITS | (i + 1)) for i in range(gift_cycles)]
    for key, token in gifts:
        builder.add(cert.functions.create_gift(token, "0x" + os.urandom(20).hex(), 2**40), key, gas=150_000)
        done["gifts"] += 1
    redemptions = [(holder_keys[-1 - i], big_lot << SERIAL_BITS | (holders_n - i)) for i in range(redemption_cycles)]
    for key, token in redemptions:
        builder.add(cert.functions.request_redemption(token, b"\x02" * 32), key, gas=150_000)
        done["redemption requests"] += 1
    for i in range(point_issues):
        builder.add(points.functions.issue(holders[i % holders_n], 1 + i % 97), merchants[i % len(merchants)],
                    gas=200_000)
        done["points issued"] += 1
    builder.mine()
    # Second halves: gifts revoked, redemptions rejected, holders pay merchants in points.
    for key, token in gifts:
        builder.add(cert.functions.revoke_gift(token), key, gas=120_000)
        done["gifts revoked"] += 1
    for _, token in redemptions:
        builder.add(cert.functions.reject_redemption(token, b"\x03" * 32), custodian, gas=120_000)
        done["redemptions rejected"] += 1
    for i in range(point_payments):
        builder.add(points.functions.transfer(address[merchants[i % len(merchants)]], 10**12), holder_keys[i],
                    gas=120_000)
        done["points payments"] += 1
    builder.mine()
    return {"big_lot": big_lot, "holders": holders, "issuer": address[winery], "done": dict(done),
            "custodian": address[custodian], "winery_key": winery}


def issue_lot(builder: Builder, cert: Any, issuer_key: str, custodian: str, bottles: int, wine: str) -> int:
    if builder.next_lot is None:
        builder.next_lot = int(builder.rpc("eth_call", {"to": cert.address, "data": cert.functions.lot_count().data},
                                           "latest"), 16) + 1
    lot_id, builder.next_lot = builder.next_lot, builder.next_lot + 1
    builder.add(cert.functions.issue_lot(custodian, bottles, 2020, 750, 1_717_200_000, b"\x04" * 32,
                                         os.urandom(32), "Domaine Bench", wine, "Pauillac AOC",
                                         "ipfs://bafybench"), issuer_key, gas=400_000)
    return lot_id


# ---------------------------------------------------------------- measurements


def index_rows(path: Path) -> dict[str, int]:
    """Rows in each ``ix_*`` table of the index at ``path``."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name LIKE 'ix_%' ORDER BY name")]
        return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}


def measure_ceiling(url: str, manifest_path: Path, head: int) -> dict[str, float | int]:
    """Plain ``eth_getLogs`` over the deployment's contracts, paged as the
    follower pages (its first span, halved above its page size, doubled well
    below it), each page's JSON parsed; nothing else."""
    from amphora.manifest import Manifest
    from indexer.events import Decoder
    from indexer.follower import IndexConfig
    from indexer.node import Node

    decoder, config, node = Decoder(Manifest.load(manifest_path)), IndexConfig(), Node(url)
    span, start, events, pages = config.page_blocks, decoder.start_block, 0, 0
    started = time.perf_counter()
    while start <= head:
        end = min(head, start + span - 1)
        logs = node.logs(decoder.addresses, start, end)
        events += len(logs)
        pages += 1
        if len(logs) > config.page_logs:
            span = max(1, span // 2)
        elif len(logs) < config.page_logs // 4:
            span = min(span * 2, 1_000_000)
        start = end + 1
    seconds = time.perf_counter() - started
    node.close()
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds, "pages": pages}


def measure_ingest(url: str, manifest_path: Path, db_path: Path, profile: bool) -> dict[str, Any]:
    """A fresh follower on a fresh SQLite file, from nothing to the head."""
    from amphora.manifest import Manifest
    from indexer.follower import IndexConfig, Indexer
    from indexer.node import Node
    from storage.db import Database

    db = Database(sqlite_path=db_path)
    indexer = Indexer(db, Node(url), Manifest.load(manifest_path), IndexConfig(lease_seconds=600))
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    indexed = indexer.run_until_synced(timeout=900)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    indexer.release_lease()
    db.close()
    events = index_rows(db_path)["ix_events"]
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(35)
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds, "indexed_block": indexed}


def catch_up(url: str, manifest_path: Path, db_path: Path) -> None:
    from amphora.manifest import Manifest
    from indexer.follower import IndexConfig, Indexer
    from indexer.node import Node
    from storage.db import Database

    db = Database(sqlite_path=db_path)
    indexer = Indexer(db, Node(url), Manifest.load(manifest_path), IndexConfig(lease_seconds=600))
    indexer.run_until_synced(timeout=300)
    indexer.release_lease()
    db.close()


def measure_lot_rows(builder: Builder, manifest_path: Path, db_path: Path, custodian: str, issuer_key: str,
                     bottles: int) -> dict[str, int]:
    """Rows of each ``ix_*`` table added by indexing one lot of ``bottles`` (its block only)."""
    before = index_rows(db_path)
    issue_lot(builder, builder.contract("WineCertificate"), issuer_key, custodian, bottles, "Lot size probe")
    builder.mine()
    catch_up(builder.url, manifest_path, db_path)
    after = index_rows(db_path)
    return {table: after[table] - before.get(table, 0) for table in after if after[table] != before.get(table, 0)}


# ---------------------------------------------------------------- reads over HTTP


class StandIn:
    """The two read endpoints' queries over the ``ix_*`` tables, until the API
    has them: what a reader must ask (an index behind each), on one read-only
    connection."""

    LOT_EVENTS = ("LotIssued", "ConsecutiveTransfer", "CustodyMoved", "SuccessorIssuerNamed", "BatchMetadataUpdate")

    def __init__(self, db_path: Path, chain_id: int) -> None:
        self.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.chain_id = chain_id

    def indexed_block(self) -> int:
        row = self.conn.execute("SELECT block_number FROM ix_cursor WHERE chain_id = ?", (self.chain_id,)).fetchone()
        return int(row[0])

    def my_certificates(self, address: str, after: str | None = None, limit: int = STANDIN_PAGE) -> dict[str, Any]:
        """A page of the bottles ``address`` holds (by lot and serial), and its
        unsold stock as ranges: each of its lots minus the bottles that have rows."""
        conn, chain_id = self.conn, self.chain_id
        lot_after, serial_after = (int(x) for x in after.split(":")) if after else (-1, -1)
        rows = conn.execute(
            "SELECT t.token_id, t.lot_id, t.serial, t.state, l.wine, l.vintage FROM ix_tokens t "
            "JOIN ix_lots l ON l.chain_id = t.chain_id AND l.lot_id = t.lot_id "
            "WHERE t.chain_id = ? AND t.owner = ? AND (t.lot_id, t.serial) > (?, ?) "
            "ORDER BY t.lot_id, t.serial LIMIT ?", (chain_id, address, lot_after, serial_after, limit)).fetchall()
        certificates = [dict(r) for r in rows]
        ranges: list[dict[str, int]] = []
        for lot in conn.execute("SELECT lot_id, bottle_count FROM ix_lots WHERE chain_id = ? AND issuer = ? "
                                "ORDER BY lot_id LIMIT ?", (chain_id, address, limit)).fetchall():
            ranges += self.unsold_ranges(int(lot["lot_id"]), int(lot["bottle_count"]), limit - len(ranges))
            if len(ranges) >= limit:
                break
        last = certificates[-1] if len(certificates) == limit else None
        return {"indexed_block": self.indexed_block(), "certificates": certificates, "unsold_ranges": ranges,
                "next": f"{last['lot_id']}:{last['serial']}" if last else None}

    def unsold_ranges(self, lot_id: int, bottle_count: int, limit: int) -> list[dict[str, int]]:
        """The first ``limit`` runs of a lot's serials without an ``ix_tokens``
        row (never moved): each starts at serial 1 or just after a row whose
        successor has none, and ends before the next row or at the lot's end."""
        conn, chain_id = self.conn, self.chain_id
        starts = [] if conn.execute("SELECT 1 FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND serial = 1",
                                    (chain_id, lot_id)).fetchone() else [1]
        starts += [int(r[0]) for r in conn.execute(
            "SELECT t.serial + 1 FROM ix_tokens t WHERE t.chain_id = ? AND t.lot_id = ? AND t.serial < ? "
            "AND NOT EXISTS (SELECT 1 FROM ix_tokens u WHERE u.chain_id = t.chain_id AND u.lot_id = t.lot_id "
            "AND u.serial = t.serial + 1) ORDER BY t.serial LIMIT ?", (chain_id, lot_id, bottle_count, limit))]
        ranges = []
        for first in starts[:limit]:
            after = conn.execute("SELECT MIN(serial) FROM ix_tokens WHERE chain_id = ? AND lot_id = ? AND serial > ?",
                                 (chain_id, lot_id, first)).fetchone()[0]
            ranges.append({"lot_id": lot_id, "first_serial": first,
                           "last_serial": int(after) - 1 if after is not None else bottle_count})
        return ranges

    def history(self, token_id: str) -> dict[str, Any] | None:
        """Every event of the bottle and of its lot, in chain order; None for no such bottle."""
        conn, chain_id = self.conn, self.chain_id
        token = int(token_id)
        lot = token >> SERIAL_BITS
        columns = "block_number, log_index, block_time, tx_hash, contract, event, args"
        rows = conn.execute(f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND token_id = ?",
                            (chain_id, str(token))).fetchall()
        marks = ", ".join("?" for _ in self.LOT_EVENTS)
        # ``+lot_id``: not the lot index, which holds every event of every bottle of the lot.
        rows += conn.execute(f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND contract = 'WineCertificate' "
                             f"AND event IN ({marks}) AND +lot_id = ?", (chain_id, *self.LOT_EVENTS, lot)).fetchall()
        rows += conn.execute(f"SELECT {columns} FROM ix_events WHERE chain_id = ? AND contract = 'CustodyRegistry' "
                             "AND event IN ('StorageAttested', 'ReserveRootPosted') "
                             "AND (+lot_id = ? OR lot_id IS NULL)", (chain_id, lot)).fetchall()
        if not rows and not conn.execute("SELECT 1 FROM ix_lots WHERE chain_id = ? AND lot_id = ?",
                                         (chain_id, lot)).fetchone():
            return None
        events = sorted((dict(r) for r in rows), key=lambda r: (r["block_number"], r["log_index"]))
        for event in events:
            event["args"] = json.loads(event["args"])
        return {"indexed_block": self.indexed_block(), "token_id": str(token), "events": events}


def standin_app(db_path: Path, chain_id: int) -> Any:
    """:class:`StandIn` over HTTP (FastAPI, answers serialized once)."""
    from fastapi import FastAPI, HTTPException, Response

    queries = StandIn(db_path, chain_id)
    app = FastAPI(title="indexer bench stand-in")

    @app.get(MY_CERTIFICATES)
    async def my_certificates(address: str, after: str | None = None, limit: int = STANDIN_PAGE) -> Response:
        return Response(json.dumps(queries.my_certificates(address, after, limit)), media_type="application/json")

    @app.get(HISTORY)
    async def history(token_id: str) -> Response:
        body = queries.history(token_id)
        if body is None:
            raise HTTPException(404, "no such certificate")
        return Response(json.dumps(body), media_type="application/json")

    return app


def measure_queries(db_path: Path, chain_id: int, mine: list[str], history: list[str]) -> dict[str, float]:
    """The stand-in's queries alone, one after another in this process: what the database costs."""
    queries = StandIn(db_path, chain_id)
    out: dict[str, float] = {}
    for name, paths, run in (("my_certificates", mine, queries.my_certificates),
                             ("history", history, queries.history)):
        took = []
        for path in paths[:1_000]:
            began = time.perf_counter()
            run(path.split("/")[2])
            took.append((time.perf_counter() - began) * 1000)
        q = statistics.quantiles(took, n=100)
        out[f"{name}_query_p50_ms"], out[f"{name}_query_p99_ms"] = round(q[49], 2), round(q[98], 2)
    queries.conn.close()
    return out


def start_reader(workdir: Path, url: str, manifest_path: Path, db_path: Path, keys: list[str],
                 chain_id: int) -> tuple[Server, str]:
    """The API reading the index if it serves both routes, else the stand-in; and which one it is."""
    from relay_harness import free_port, server_env

    port = free_port()
    env = server_env(url, manifest_path, keys[:1], relay_db=workdir / "relay.sqlite", index_worker="false",
                     index_db=str(db_path))
    env["AMPHORA_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    api = Server([sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--no-access-log"], env, workdir / "api.log", port)
    try:
        api.wait("/health")
        paths = httpx.get(api.url + "/openapi.json", timeout=30).json().get("paths", {})
        if MY_CERTIFICATES in paths and HISTORY in paths:
            return api, "API (uvicorn api.main:app)"
    except RuntimeError as err:
        sys.stdout.write(f"the API did not start ({str(err)[:200]}); using the stand-in\n")
    api.stop()
    port = free_port()
    standin = Server([sys.executable, str(Path(__file__).resolve()), "serve", "--db", str(db_path), "--port",
                      str(port), "--chain-id", str(chain_id)],
                     {**os.environ, "PYTHONPATH": str(ROOT)}, workdir / "standin.log", port)
    standin.wait("/docs")
    return standin, "stand-in over the ix_* tables (the API has no such routes yet)"


def read_paths(chain: dict[str, Any], count: int = 2_000) -> tuple[list[str], list[str]]:
    """Whose certificates and which histories the clients ask for: mostly
    holders and their bottles, sometimes the issuer (ranges) and unsold bottles."""
    rng = random.Random(13)
    holders, lot = chain["holders"], chain["big_lot"]
    mine = [MY_CERTIFICATES.format(address=chain["issuer"]) if i % 20 == 0
            else MY_CERTIFICATES.format(address=rng.choice(holders)) for i in range(count)]
    sold = len(holders)
    history = [HISTORY.format(token_id=lot << SERIAL_BITS | (rng.randint(sold + 1, 1_000_000) if i % 10 == 0
                                                             else rng.randint(1, sold))) for i in range(count)]
    return mine, history


# ---------------------------------------------------------------- the report


def table(results: dict[str, Any]) -> str:
    ceiling, ingest = results["raw_getlogs_events_per_s"], results["ingest_events_per_s"]
    rows = [f"{'measurement':<36}{'ours':>12}   {'reference':<48}"]

    def row(name: str, value: float | int, reference: str, fmt: str = ",.0f") -> None:
        rows.append(f"{name:<36}{value:>12{fmt}}   {reference:<48}")

    row("ingest_events_per_s (catch-up)", ingest, f"target ≥ {TARGET_SHARE * ceiling:,.0f} (50 % of the ceiling)")
    row("raw_getlogs_events_per_s", ceiling, "ceiling: eth_getLogs, same node, same run")
    row("ingest / ceiling", ingest / ceiling, "target ≥ 0.50", ".2f")
    row("  (for scale) Ponder's aim", PONDER_EVENTS_PER_S, "events/s, big machines; ours: 2 shared cores")
    row("events indexed", results["events"], "target ≥ 100,000")
    row("rows_per_million_bottle_lot", results["rows_per_million_bottle_lot"],
        f"target: a handful; a 1-bottle lot: {results['rows_per_one_bottle_lot']}")
    for name in ("my_certificates", "history"):
        for q in ("p50", "p99"):
            row(f"{name}_{q}_ms", results[f"{name}_{q}_ms"], f"target ≤ {TARGET_P99_MS:g} ms" if q == "p99" else
                f"{results['read_clients']} clients back to back", ".1f")
        row(f"  {name} SQL alone, p99 ms", results[f"{name}_query_p99_ms"],
            f"p50 {results[f'{name}_query_p50_ms']:.2f} ms; the queries in-process, no HTTP", ".2f")
        paced = results["paced"][name]
        row(f"  paced {name}_p99_ms", paced["p99_ms"], f"each client one request per {results['pace_ms']:g} ms",
            ".1f")
        row(f"  {name} answers/s", results["reads"][name]["per_second"], "back to back", ",.0f")
    hello = results["hello_world"]
    row("FastAPI hello-world p99 ms", hello["closed"]["p99_ms"],
        f"p50 {hello['closed']['p50_ms']:.1f}; the reference, same clients, same run", ".1f")
    row("  paced hello-world p99 ms", hello["paced"]["p99_ms"], "each client one request per "
        f"{results['pace_ms']:g} ms", ".1f")
    row("  hello-world answers/s", hello["closed"]["per_second"], "back to back", ",.0f")
    met = (ingest >= TARGET_SHARE * ceiling, results["my_certificates_p99_ms"] <= TARGET_P99_MS,
           results["history_p99_ms"] <= TARGET_P99_MS, results["events"] >= 100_000)
    rows.append(f"reads served by: {results['read_server']}")
    rows.append("targets (ingest ≥ 50 % of the ceiling; reads p99 ≤ 20 ms; ≥ 100,000 events): "
                + ", ".join("met" if m else "MISSED" for m in met))
    return "\n".join(rows)


def serve(argv: list[str]) -> int:
    """The stand-in read server (run as a subprocess by :func:`start_reader`)."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chain-id", type=int, required=True)
    args = parser.parse_args(argv)
    app = standin_app(args.db, args.chain_id)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        return serve(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the synthetic chain (1.0: ≥ 100,000 events)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients")
    parser.add_argument("--read-seconds", type=float, default=8.0, help="seconds of load per endpoint and mode")
    parser.add_argument("--pace-ms", type=float, default=100.0, help="the paced mode: one request per client per")
    parser.add_argument("--profile", action="store_true", help="print the ingestion's cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from relayer import deploy, start_anvil, stop_anvil

    workdir = Path(tempfile.mkdtemp(prefix="indexer-bench-"))
    began = time.monotonic()
    anvil, url = start_anvil(workdir)
    servers: list[Server] = []
    try:
        manifest_path, people = deploy(url, workdir)
        builder = Builder(url, manifest_path)
        builder.rpc("evm_setAutomine", False)
        builder.rpc("evm_setBlockGasLimit", hex(BLOCK_GAS))
        # Full blocks would raise the base fee 12.5 % a block, past any fee cap; a zero base fee stays zero.
        builder.rpc("anvil_setNextBlockBaseFeePerGas", "0x0")
        chain = build_chain(builder, people, args.scale)
        # Every event far below the head: the follower catches up on all of it.
        builder.rpc("anvil_mine", hex(100))
        head = int(builder.rpc("eth_blockNumber"), 16)
        sys.stdout.write(f"chain: {builder.sent:,} transactions up to block {head} "
                         f"in {time.monotonic() - began:.0f} s; {chain['done']}\n")
        ceiling = measure_ceiling(url, manifest_path, head)
        db_path = workdir / "index.sqlite"
        ingest = measure_ingest(url, manifest_path, db_path, args.profile)
        if ingest["events"] != ceiling["events"]:
            raise SystemExit(f"the index holds {ingest['events']} events, eth_getLogs gave {ceiling['events']}")
        sys.stdout.write(f"ingested {ingest['events']:,} events in {ingest['seconds']:.1f} s; eth_getLogs paged "
                         f"them in {ceiling['seconds']:.1f} s ({ceiling['pages']} pages)\n")
        lot_rows = measure_lot_rows(builder, manifest_path, db_path, chain["custodian"], chain["winery_key"],
                                    1_000_000)
        one_rows = measure_lot_rows(builder, manifest_path, db_path, chain["custodian"], chain["winery_key"], 1)
        chain_id = builder.chain_id
        mine, history = read_paths(chain)
        direct = measure_queries(db_path, chain_id, mine, history)
        server, which = start_reader(workdir, url, manifest_path, db_path, people, chain_id)
        servers.append(server)
        reads: dict[str, dict[str, float | int]] = {}
        paced: dict[str, dict[str, float | int]] = {}
        for name, paths in (("my_certificates", mine), ("history", history)):
            reads[name] = measure_reads(server.url, paths, args.clients, args.read_seconds, 0)
            paced[name] = measure_reads(server.url, paths, args.clients, args.read_seconds, args.pace_ms)
            if reads[name]["errors"] or paced[name]["errors"]:
                raise SystemExit(f"{name}: {reads[name]['errors'] + paced[name]['errors']} answers were not 200")
        server.stop()
        hello = start_hello(workdir, {**os.environ, "PYTHONPATH": str(ROOT)})
        servers.append(hello)
        reference = {"closed": measure_reads(hello.url, ["/hello"], args.clients, args.read_seconds, 0),
                     "paced": measure_reads(hello.url, ["/hello"], args.clients, args.read_seconds, args.pace_ms)}
        results: dict[str, Any] = {
            "ingest_events_per_s": round(ingest["events_per_s"]),
            "raw_getlogs_events_per_s": round(ceiling["events_per_s"]),
            "ingest_share_of_ceiling": round(ingest["events_per_s"] / ceiling["events_per_s"], 3),
            "events": ingest["events"], "ingest_seconds": round(ingest["seconds"], 2),
            "getlogs_seconds": round(ceiling["seconds"], 2), "getlogs_pages": ceiling["pages"],
            "rows_per_million_bottle_lot": sum(lot_rows.values()), "rows_by_table_million_bottle_lot": lot_rows,
            "rows_per_one_bottle_lot": sum(one_rows.values()),
            **{f"{name}_{q}_ms": round(float(reads[name][f"{q}_ms"]), 1) for name in reads for q in ("p50", "p99")},
            "reads": {name: rounded(r) for name, r in reads.items()},
            "paced": {name: rounded(r) for name, r in paced.items()},
            "hello_world": {mode: rounded(r) for mode, r in reference.items()},
            **direct, "read_server": which, "read_clients": args.clients, "read_seconds": args.read_seconds,
            "pace_ms": args.pace_ms, "transactions": builder.sent, "blocks": head, "chain": chain["done"],
            "holders": len(chain["holders"]), "scale": args.scale, "cpus": os.cpu_count(),
            "seconds_total": round(time.monotonic() - began),
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        if args.scale == 1.0:
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        sys.stdout.write(table(results) + (f"\n\nwritten to {RESULTS}\n" if args.scale == 1.0 else
                                           "\n\n(--scale below 1: not written)\n"))
        return 0
    finally:
        tear_down(servers, stop_anvil, anvil, workdir, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
