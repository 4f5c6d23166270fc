"""What the HTTP benchmarks share: a server process on a free port, closed-loop
clients that measure latency, and FastAPI's hello-world as the reference.

``python bench/load.py serve-hello --port N`` serves the reference (the
benchmarks start it as a subprocess, served by the same uvicorn the same way
as the API).
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


class Server:
    """A uvicorn process on a free port: the API, a stand-in or the reference."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("ab"),
                                        stderr=subprocess.STDOUT)
        self.log = log

    def wait(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def measure_reads(base_url: str, paths: Sequence[str], clients: int, seconds: float,
                  pace_ms: float, expect: int = 200) -> dict[str, float | int]:
    """``clients`` threads asking for ``paths`` (at random) for ``seconds``; each
    waits for its answer, then ``pace_ms`` minus the time it took, before the
    next. Latency percentiles, throughput, and answers other than ``expect``."""
    latencies: list[float] = []
    errors: Counter[int] = Counter()
    lock = threading.Lock()
    window = {"stop_at": 0.0, "started": 0.0}

    def open_window() -> None:
        window["started"] = time.monotonic()
        window["stop_at"] = window["started"] + seconds

    barrier = threading.Barrier(clients, action=open_window)

    host, port = base_url.removeprefix("http://").split(":")

    def get(connection: http.client.HTTPConnection, path: str) -> int:
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        return answer.status

    def client(index: int) -> None:
        # http.client, a keep-alive connection each: the lightest client the
        # standard library has (the load generator shares the machine's two cores).
        mine: list[float] = []
        rng = random.Random(index)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        get(connection, paths[0])  # connected before the clock starts
        barrier.wait()
        while time.monotonic() < window["stop_at"]:
            path = paths[rng.randrange(len(paths))]
            began = time.perf_counter()
            status = get(connection, path)
            took = time.perf_counter() - began
            if status != expect:
                with lock:
                    errors[status] += 1
            mine.append(took * 1000)
            if pace_ms:
                time.sleep(max(0.0, pace_ms / 1000 - took))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    # The clients are threads of this process: a thread whose answer has come
    # would otherwise wait up to 5 ms for the GIL, and that wait is not the server's.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    elapsed = time.monotonic() - window["started"]
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": q[49], "p99_ms": q[98], "requests": len(latencies), "per_second": len(latencies) / elapsed,
            "errors": sum(errors.values())}


def tear_down(servers: list[Server], stop_anvil: Any, anvil: Any, workdir: Path, keep: bool) -> None:
    """Stop a benchmark's servers and its node; remove its work directory unless ``keep``."""
    import shutil

    for server in servers:
        server.stop()
    stop_anvil(anvil)
    if keep:
        sys.stdout.write(f"work directory kept: {workdir}\n")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def rounded(figures: dict[str, float | int]) -> dict[str, float | int]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}


def hello_app() -> Any:
    """The reference: FastAPI's smallest JSON route, served by the same uvicorn the same way."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def start_hello(workdir: Path, env: dict[str, str]) -> Server:
    """The reference on a free port (``env``: the subprocess's environment)."""
    from relay_harness import free_port

    port = free_port()
    server = Server([sys.executable, str(Path(__file__).resolve()), "serve-hello", "--port", str(port)], env,
                    workdir / "hello.log", port)
    server.wait("/hello")
    return server


def main() -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description="serve the hello-world reference")
    parser.add_argument("command", choices=["serve-hello"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(hello_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
