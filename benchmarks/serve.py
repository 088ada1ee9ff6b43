"""Serving benchmark: in-process latency, then HTTP against a real `bentoml serve` (loopback).

Prints JSON: in-process p50/p99 of one request through `ServingApp` (no logging), HTTP p50/p99,
throughput and errors at 1, 8 and 32 concurrent clients (`--seconds` each), and a sustained
run at 32 clients (`--sustained` seconds; goal: 0 errors, HTTP p50 <= in-process p50 + 3 ms).
Needs a promoted bundle in the working folder (`make run` first).

Usage: python benchmarks/serve.py [--seconds 15] [--sustained 60] [--port 3101]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # import the project's packages, not this folder's scripts

import sidflow  # noqa: E402,F401  (telemetry off)
from serving import launch  # noqa: E402
from serving.app import ServingApp  # noqa: E402
from serving.recommender import Request  # noqa: E402
from sidflow.config import load_params  # noqa: E402


def _ms(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)) * 1e3, 2) if xs else float("nan")


def in_process(users: list[str], n: int) -> dict:
    """One request at a time through the same code the service runs."""
    app = ServingApp(load_params(), log=False)
    times = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        app.handle([Request(users[i % len(users)], "feed", 10)])
        if i >= 20:  # warm-up
            times.append(time.perf_counter() - t0)
    return {"requests": len(times), "p50_ms": _ms(times, 50), "p99_ms": _ms(times, 99)}


async def load(url: str, users: list[str], clients: int, seconds: float) -> dict:
    """`clients` concurrent loops of POST /recommend for `seconds`."""
    times: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as c:

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                body = {"user_id": users[i % len(users)], "scene": "feed", "k": 10}
                t0 = time.perf_counter()
                try:
                    r = await c.post(f"{url}/recommend", json=body)
                    key = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as err:
                    key = type(err).__name__
                times.append(time.perf_counter() - t0)
                if key:
                    errors[key] = errors.get(key, 0) + 1
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(times), "rps": round(len(times) / wall, 1),
            "p50_ms": _ms(times, 50), "p99_ms": _ms(times, 99), "errors": errors}  # fmt: skip


def main() -> None:
    """Run the benchmark and print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--sustained", type=float, default=60)
    ap.add_argument("--port", type=int, default=3101)
    args = ap.parse_args()
    params = load_params()
    from ingestion.warehouse import Warehouse
    from sidflow.workdir import Workdir

    users = Warehouse(Workdir(params.workdir).warehouse).query(
        "SELECT user_id FROM users ORDER BY 1")["user_id"].tolist()  # fmt: skip
    result = {"in_process": in_process(users, 300)}
    env = {**os.environ, "SIDFLOW_WORKDIR": str(params.workdir), "BENTOML_DO_NOT_TRACK": "true"}
    proc = launch.start(args.port, env)
    url = f"http://127.0.0.1:{args.port}"
    try:
        launch.wait_ready(url, proc, timeout=300)
        result["http"] = [asyncio.run(load(url, users, c, args.seconds)) for c in (1, 8, 32)]
        result["sustained"] = asyncio.run(load(url, users, 32, args.sustained))
    finally:
        proc.terminate()
        proc.wait(30)
    one = result["http"][0]
    result["goals"] = {
        "zero_errors": not result["sustained"]["errors"],
        "http_p50_le_in_process_plus_3ms": one["p50_ms"] <= result["in_process"]["p50_ms"] + 3,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
