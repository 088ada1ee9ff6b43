"""Serving benchmark: CPU time per request by part, then HTTP load against `bentoml serve`.

Prints JSON:
- `cpu_breakdown`: CPU time (this thread's, `time.thread_time`: the machine may be shared,
  so wall clock would be inflated) per request of each part of `ServingApp.handle`, one
  request at a time, for the near-line path (precomputed candidates, serving/nearline.py)
  and the live path (beam search): encode, candidate lookup, beam search, Feast online
  features, ranker user side, ranker scoring, exposure log (rows + parquet + fsync), and
  the whole `handle` call;
- `open_loop`: requests sent at fixed rates (`--rates`, default 5 15 30 60 100 150 /s, for
  `--seconds` each) whatever the answers, latency counted from each request's scheduled
  send time (no coordinated omission): good rps (200 with k items within `--slo-ms`),
  p50, p99, errors, and the server's CPU ms per request (every `bentoml serve` process);
- `closed_loop`: `--clients` concurrent loops back to back for `--seconds`: the ceiling;
- `goals`: >= `--goal-rps` good rps at p99 <= `--slo-ms` and 0 errors at that rate;
- `context`: bundle, world, what answered (ranker / retriever / popularity; nearline /
  live), workers, CPU count and load average before and after.
The client runs in this process, on the same cores as the server.
Needs a promoted bundle in the working folder, built with near-line candidates for their path
(`sidflow --set serving.nearline.enabled=true run`; without them every request runs live). The served requests are
appended to the working folder's exposure log under today's date, like any served request:
point $SIDFLOW_WORKDIR at a scratch copy to keep them out of a real log.

Usage: python benchmarks/serve.py [--rates 5 15 30 60 100 150] [--seconds 20] [--clients 32]
       [--slo-ms 100] [--history-share 0.0] [--port 3101]
`--history-share` sends that share of requests with a one-item history of their own, which
the near-line candidates cannot answer (the live beam search serves them).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import psutil  # BentoML's own dependency

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # import the project's packages, not this folder's scripts

import sidflow  # noqa: E402,F401  (telemetry off)
from serving import launch  # noqa: E402
from serving.exposure_log import append, exposure_rows  # noqa: E402
from serving.recommender import Recommendation, Request, Served  # noqa: E402
from serving.router import ServingApp  # noqa: E402
from sidflow.config import Params, load_params  # noqa: E402

SCENE, K = "feed", 10
RATES = (5, 15, 30, 60, 100, 150)


def _ms(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)) * 1e3, 2) if xs else float("nan")


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_breakdown(params: Params, users: list[str], n: int) -> dict:
    """CPU ms per request (this thread) of each part of a request, near-line and live paths,
    one request at a time after 20 warm-up; `handle_ms`: the whole `ServingApp.handle` with
    the exposure log. The parts are the calls `Recommender.recommend` makes, timed one by one."""
    import torch

    from models.retriever.beam import beam_search
    from serving.candidates import input_keys

    torch.set_num_threads(params.serving.torch_threads)
    app = ServingApp(params, log=True)
    rec = app.bundle(app.version_for("promoted")["tag"])
    clk = time.thread_time
    out: dict = {}
    for path in ("nearline", "live"):
        if path == "nearline" and rec.nearline is None:
            out[path] = "the bundle has no near-line candidates"
            continue
        parts: dict[str, float] = collections.defaultdict(float)
        served = 0
        for i in range(n + 20):
            if i == 20:
                parts.clear()
            u = users[i % len(users)]
            req = Request(u, SCENE, K)
            t = clk()
            batch, known = rec._encode([req])
            parts["encode"] += clk() - t
            if not known[0]:
                continue
            served += i >= 20
            t = clk()
            key = input_keys(batch)[0]
            hit = rec.nearline.get(u, SCENE, key, rec.beam_size) if rec.nearline else None
            parts["candidate_lookup"] += clk() - t
            if path == "live" or hit is None:
                t = clk()
                rows, logp = beam_search(rec.model, batch, rec.trie, rec.beam_size)
                parts["beam_search"] += clk() - t
                rows = rows[0].numpy()
            else:
                rows = hit[0]
            items = rec.paths.item_ids[rows[rows >= 0]].astype(str).tolist()
            if rec.ranker is not None and rec.online is not None:
                t = clk()
                feats = rec.online.get(u, items)
                parts["feast_online"] += clk() - t
                t = clk()
                user = rec.ranker.user_side(u, rec._history.get(u, ([], []))[0], SCENE)
                parts["ranker_user_side"] += clk() - t
                t = clk()
                rec.ranker.score(user, items, feats)
                parts["ranker_score"] += clk() - t
            answer = Recommendation(items[:K], [0.0] * K, False, "ranker", path)
            t = clk()
            now = [pd.Timestamp.now(tz="UTC")]
            append(
                app.wd.exposure_logs,
                exposure_rows([Served("q-b", u, SCENE, "-", "-", answer)], now, {}),
            )
            parts["exposure_log"] += clk() - t
        keep = rec.nearline
        if path == "live":
            rec.nearline = None
        t = clk()
        for i in range(n):
            app.handle([Request(users[i % len(users)], SCENE, K)])
        handle = (clk() - t) / n
        rec.nearline = keep
        per = {k: round(v / max(served, 1) * 1e3, 3) for k, v in parts.items()}
        per["sum_of_parts"] = round(sum(per.values()), 3)
        per["handle_with_log"] = round(handle * 1e3, 3)
        out[path] = {"requests": served, "cpu_ms_per_request": per}
    return out


def _server_timing(header: str) -> dict[str, float]:
    """`queue;dur=0.1, handle;dur=80.2` -> {"queue": 0.0001, "handle": 0.0802} (seconds)."""
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur) / 1e3
    return out


class Tally:
    """Latencies, answers and errors of one load level."""

    def __init__(self, history_share: float = 0.0, items: list[str] | None = None) -> None:
        self.history_share, self.items = history_share, items or []
        self.rng = np.random.default_rng(0)
        self.times: list[float] = []
        self.good = 0
        self.errors: collections.Counter = collections.Counter()
        self.stages: collections.Counter = collections.Counter()
        self.server: dict[str, list[float]] = collections.defaultdict(list)

    async def post(self, c: aiohttp.ClientSession, url: str, user: str, t0: float, slo: float):
        """One request; latency from `t0` (its scheduled send time)."""
        body: dict = {"user_id": user, "scene": SCENE, "k": K}
        if self.items and self.rng.random() < self.history_share:  # a history of its own: live
            body["history"] = [str(self.rng.choice(self.items))]
        try:
            async with c.post(f"{url}/recommend", json=body) as r:
                payload = await r.read()
                elapsed = time.perf_counter() - t0
                answer = json.loads(payload) if r.status == 200 else {}
                if len(answer.get("items", [])) == K:
                    self.stages[f"{answer['stage']}/{answer.get('candidates') or '-'}"] += 1
                    self.good += elapsed <= slo
                    for name, dur in _server_timing(r.headers.get("server-timing", "")).items():
                        self.server[name].append(dur)
                else:
                    self.errors[f"http_{r.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as err:
            elapsed = time.perf_counter() - t0
            self.errors[type(err).__name__] += 1
        self.times.append(elapsed)

    def summary(self, wall: float) -> dict:
        """The level's row."""
        return {
            "requests": len(self.times),
            "seconds": round(wall, 1),
            "good_rps": round(self.good / wall, 1),
            "p50_ms": _ms(self.times, 50),
            "p99_ms": _ms(self.times, 99),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "stages": dict(self.stages),
            "server_timing_p50_ms": {k: _ms(v, 50) for k, v in self.server.items()},
        }


def _session(limit: int) -> aiohttp.ClientSession:
    # aiohttp (C HTTP parser): httpx's pure-Python one costs ~1.7 ms a request on this CPU
    connector = aiohttp.TCPConnector(limit=limit)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def open_loop(
    url: str, users: list[str], rate: float, seconds: float, slo: float, tally: Tally
) -> dict:
    """Requests at a fixed rate for `seconds`, each sent at its time whatever the answers."""
    n = max(1, int(rate * seconds))
    async with _session(limit=1000) as c:
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(tally.post(c, url, users[i % len(users)], due, slo)))
        await asyncio.gather(*tasks)
        wall = max(time.perf_counter() - start, seconds)
    return {"rate": rate, **tally.summary(wall)}


async def closed_loop(
    url: str, users: list[str], clients: int, seconds: float, slo: float, tally: Tally
) -> dict:
    """`clients` concurrent loops of POST /recommend, back to back, for `seconds`."""
    async with _session(limit=clients) as c:
        start = time.perf_counter()
        stop = start + seconds

        async def client(k: int) -> None:
            i = k
            while time.perf_counter() < stop:
                await tally.post(c, url, users[i % len(users)], time.perf_counter(), slo)
                i += clients

        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - start
    row = tally.summary(wall)
    row["rps"] = round(len(tally.times) / wall, 1)
    return {"clients": clients, **row}


def _server_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of the server and all its worker processes so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _with_cpu(proc: psutil.Process, run) -> dict:  # noqa: ANN001 - a coroutine factory
    before = _server_cpu(proc)
    row = asyncio.run(run())
    row["server_cpu_ms_per_request"] = round(
        (_server_cpu(proc) - before) / max(row["requests"], 1) * 1e3, 2
    )
    return row


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def main() -> None:
    """Run the benchmark and print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="open loop, /s")
    ap.add_argument("--seconds", type=float, default=20, help="per load level")
    ap.add_argument("--clients", type=int, default=32, help="closed loop: concurrent clients")
    ap.add_argument("--slo-ms", type=float, default=100, help="a good answer is this fast")
    ap.add_argument("--goal-rps", type=float, default=100, help="good rps wanted at p99 <= slo")
    ap.add_argument("--cpu-requests", type=int, default=200, help="cpu_breakdown, per path")
    ap.add_argument(
        "--history-share",
        type=float,
        default=0.0,
        help="share of requests sending a one-item history of their own (served live)",
    )
    ap.add_argument("--port", type=int, default=3101)
    args = ap.parse_args()
    if not _port_free(args.port):
        sys.exit(f"port {args.port} on 127.0.0.1 is in use: pass another with --port")
    params = load_params()
    from sidflow.registry import Registry
    from sidflow.workdir import Workdir

    wd = Workdir.of(params)
    promoted = Registry(wd.registry).current().get("promoted")
    if not promoted:
        sys.exit(f"no promoted bundle in {wd.root}: run the daily pipeline (`make run`) first")
    app = ServingApp(params, log=False)
    rec = app.bundle(promoted["tag"])
    users = sorted(rec._history)  # the bundle's users with a history (the served population)
    items = sorted(rec.catalogue)
    sp = params.serving
    slo = args.slo_ms / 1e3
    result: dict = {
        "context": {
            "world": params.world.size,
            "users": len(users),
            "bundle": promoted["tag"],
            "parts": promoted.get("parts"),
            "nearline_rows": len(rec.nearline) if rec.nearline is not None else 0,
            "scene": SCENE,
            "k": K,
            "beam_size": sp.beam_size,
            "workers": sp.workers,
            "history_share": args.history_share,
            "max_batch": sp.max_batch,
            "torch_threads": sp.torch_threads,
            "cpus": os.cpu_count(),
            "load_avg_before": _load_avg(),
            "exposure_log": str(wd.exposure_logs),
        }
    }
    del app, rec
    result["cpu_breakdown"] = cpu_breakdown(params, users, args.cpu_requests)
    print(f"cpu: {json.dumps(result['cpu_breakdown'])}", file=sys.stderr)
    env = {**os.environ, "SIDFLOW_WORKDIR": str(params.workdir), "BENTOML_DO_NOT_TRACK": "true"}
    server_log = wd.reports / "benchmarks" / "serve_server.log"
    server_log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    with open(server_log, "w") as out:
        proc = launch.start(args.port, env, out)
        try:
            t0 = time.perf_counter()
            launch.wait_ready(url, proc, timeout=300)
            result["context"]["server_ready_s"] = round(time.perf_counter() - t0, 1)
            server = psutil.Process(proc.pid)
            # warm-up: every worker, batches
            asyncio.run(closed_loop(url, users, 8, 3, slo, Tally()))

            def tally() -> Tally:
                return Tally(args.history_share, items)

            result["open_loop"] = []
            for rate in args.rates:
                row = _with_cpu(
                    server, lambda r=rate: open_loop(url, users, r, args.seconds, slo, tally())
                )
                result["open_loop"].append(row)
                print(f"open loop: {json.dumps(row)}", file=sys.stderr)
            result["closed_loop"] = _with_cpu(
                server, lambda: closed_loop(url, users, args.clients, args.seconds, slo, tally())
            )
            print(f"closed loop: {json.dumps(result['closed_loop'])}", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(30)
    result["context"]["load_avg_after"] = _load_avg()
    result["context"]["server_log"] = str(server_log)
    met = [
        r["rate"]
        for r in result["open_loop"]
        if r["good_rps"] >= args.goal_rps and r["p99_ms"] <= args.slo_ms and r["errors"] == 0
    ]
    result["goals"] = {
        "goal": f">= {args.goal_rps:g} good rps at p99 <= {args.slo_ms:g} ms, 0 errors",
        "met_at_rates": met,
        "met": bool(met),
        "zero_errors_all_levels": all(r["errors"] == 0 for r in result["open_loop"]),
        "table": [
            {k: r[k] for k in ("rate", "good_rps", "p50_ms", "p99_ms", "errors")}
            for r in result["open_loop"]
        ],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
