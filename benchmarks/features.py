"""Feature store benchmark: DuckDB SQL vs pandas over the `large` world, and online lookups.

Prints JSON:
- `compute`: seconds to compute every feature table of every day of the world in DuckDB
  (goal <= 60 s), the same tables from the pandas reference in the same run, and the ratio
  (goal >= 5x);
- `online`: p50/p99 latency of 1 user x 200 candidates through `features.store.OnlineFeatures`
  (goal p99 <= 10 ms), and through Feast's `get_online_features` for comparison, per online store
  (SQLite; Redis too when `redis-server` is installed). SQLite is timed twice: right after
  materialization (`cold_page_cache`: pages of the file may not be in memory yet) and with the
  file read once into the OS page cache, as a serving process has it after a while (the goal).

The world is generated once straight into a DuckDB file under the working folder
(`<workdir>/benchmarks/features-<size>/warehouse.duckdb`, no GX). The machine may be shared, so
timings can be pessimistic.

Usage: python benchmarks/features.py [--size large] [--requests 300] [--skip-pandas]
       [--skip-compute]  (the online part alone, on the tables of an earlier run)
       [--skip-compute --reuse-store]  (and on its materialized SQLite store: apply only)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's folder heads sys.path and its name would shadow the `features`
# package: drop the folder so `import features...` finds the project's package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import sidflow  # noqa: F401  (telemetry settings)
from features.compute import compute_feature_tables, read_feature_table
from features.reference import reference_feature_tables
from features.schema import view_specs
from ingestion.warehouse import Warehouse
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir


def build_warehouse(params: Params, wd: Workdir) -> tuple[Warehouse, dict]:
    """The world of `params` in a DuckDB warehouse (generated once; reused when complete)."""
    from ingestion.world import World

    wh = Warehouse(wd.warehouse)
    done = wd.root / "world.json"
    if done.exists():
        return wh, json.loads(done.read_text())
    t0 = time.perf_counter()
    world = World(params.world)
    wh.upsert("items", world.items())
    wh.upsert("users", world.users())
    for day in tqdm(world.days, desc=f"world {params.world.size}", file=sys.stderr):
        wh.write_events(world.events(day), [day])
    info = {**wh.counts(), "days": len(world.days), "seconds": round(time.perf_counter() - t0, 1)}
    done.write_text(json.dumps(info))
    return wh, info


def time_compute(params: Params, wh: Warehouse, out: Path, skip_pandas: bool) -> dict:
    """DuckDB over all days vs the pandas reference (loading from the same warehouse)."""
    days = params.world.days()
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    report = compute_feature_tables(wh, out, params.features, days[0], days[-1])
    duck_s = time.perf_counter() - t0
    result = {
        "days": len(days),
        "duckdb_seconds": round(duck_s, 2),
        "rows": {v: sum(r.values()) for v, r in report.rows.items()},
        "seconds_per_view": report.seconds_per_view,  # build (SQL) and write (parquet)
    }
    t0 = time.perf_counter()
    compute_feature_tables(wh, out, params.features, days[-1])  # what one daily run costs
    result["duckdb_one_day_seconds"] = round(time.perf_counter() - t0, 2)
    if skip_pandas:
        return result
    # pandas: the same tables from the same warehouse, each (view, day) written to parquet as
    # the SQL path does (and not kept, so memory stays bounded on a shared machine).
    scratch = out.parent / "features-pandas"
    shutil.rmtree(scratch, ignore_errors=True)

    def sink(view: str, day: dt.date, rows) -> None:  # noqa: ANN001 - DataFrame
        path = scratch / view / f"day={day.isoformat()}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(path, index=False)

    t0 = time.perf_counter()
    cols = "user_id, item_id, ts, event_type, price, day"  # what the features read
    items = wh.query("SELECT item_id, cat_l2, cat_l3, brand, seller FROM items")
    reference_feature_tables(
        wh.query(f"SELECT {cols} FROM events"), items, params.features, days[0], days[-1], sink=sink
    )
    pandas_s = time.perf_counter() - t0
    same = {
        name: _same_tables(out, scratch, spec, days)
        for name, spec in view_specs(params.features).items()
    }
    shutil.rmtree(scratch, ignore_errors=True)
    result |= {
        "pandas_seconds": round(pandas_s, 2),
        "speedup_vs_pandas": round(pandas_s / duck_s, 2),
        "pandas_agrees": same,
    }
    return result


def _same_tables(mine: Path, ref: Path, spec, days: list[dt.date]) -> bool:  # noqa: ANN001
    """Day by day: same row count and the same column sums (floats to 1e-6 relative)."""
    import pandas as pd

    cols = [f.name for f in spec.features if f.kind != "timestamp"]
    for day in days:
        a = pd.read_parquet(mine / spec.name / f"day={day}.parquet", columns=cols)
        b = pd.read_parquet(ref / spec.name / f"day={day}.parquet", columns=cols)
        if len(a) != len(b) or not np.allclose(
            a.astype(float).sum(), b.astype(float).sum(), rtol=1e-6, equal_nan=True
        ):
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_last_day(params: Params, day: dt.date) -> None:
    """Materialize only the rows stamped at the end of `day` (a fresh store would otherwise
    load every key of the TTL window; lookup latency does not depend on how many are online)."""
    import contextlib
    import io

    from features.schema import end_of_day
    from features.store import feature_store

    with contextlib.redirect_stdout(io.StringIO()):
        feature_store(params).materialize(start_date=end_of_day(day), end_date=end_of_day(day))


def time_online(params: Params, wh: Warehouse, n_requests: int, reuse: bool = False) -> dict:
    """Apply + materialize the last day into a fresh store (`reuse`: apply only, over the
    store an earlier run materialized); time 1 user x 200 candidates."""
    from features import store as fstore

    wd = Workdir(params.workdir)
    if not reuse:
        shutil.rmtree(wd.feast_dir, ignore_errors=True)
    last = params.world.days()[-1]
    fstore.apply(params)
    t0 = time.perf_counter()
    if not reuse:
        _load_last_day(params, last)
    mat_s = time.perf_counter() - t0
    rows = sum(
        len(read_feature_table(wd.features_dir, v, last)) for v in view_specs(params.features)
    )
    users = wh.query("SELECT DISTINCT user_id FROM events WHERE day = ? ORDER BY 1", [last])
    catalogue = wh.query("SELECT item_id FROM items ORDER BY 1")["item_id"].tolist()
    rng = np.random.default_rng(0)
    out = {"materialized_rows": rows}
    if not reuse:
        out |= {
            "materialize_seconds": round(mat_s, 1),
            "materialize_rows_per_second": int(rows / mat_s),
        }
    users = users["user_id"].tolist()
    # First the store as materialization left it (pages of the ~9 GB file may have been
    # evicted), then with the file in the page cache, as in a serving process that has run for
    # a while: every lookup is then a memory read, as in Redis. The goal is read on the latter.
    cold = _latencies(params, users, catalogue, rng, n_requests, sdk=False)
    fill_s = _fill_page_cache(fstore.sqlite_online_path(params))
    out["sqlite"] = {
        **_latencies(params, users, catalogue, rng, n_requests),
        "cold_page_cache": cold,
        "page_cache_fill_seconds": round(fill_s, 1),
    }
    if shutil.which("redis-server") and not reuse:
        port = _free_port()
        server = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            fp = params.features.model_copy(
                update={"online_store": "redis", "redis_address": f"127.0.0.1:{port}"}
            )
            p = params.model_copy(update={"features": fp})
            fstore.apply(p)
            t0 = time.perf_counter()
            _load_last_day(p, last)
            out["redis_materialize_seconds"] = round(time.perf_counter() - t0, 1)
            out["redis"] = _latencies(p, users, catalogue, rng, n_requests)
        finally:
            server.terminate()
            server.wait()
    return out


def _fill_page_cache(path: Path) -> float:
    """Read `path` once, so the OS page cache holds it; returns the seconds it took."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - t0


def _latencies(
    p: Params,
    users: list,
    catalogue: list,
    rng: np.random.Generator,
    n_requests: int,
    sdk: bool = True,
) -> dict:
    """p50/p99 of `OnlineFeatures.get` for random users x 200 random candidates (after 20
    warm-up requests), and of Feast's `get_online_features` on a fifth of them if `sdk`."""
    from features.schema import REQUEST_TS, end_of_day
    from features.store import MISSING_KEY, U2I_ATTRIBUTES, OnlineFeatures

    online = OnlineFeatures(p)
    online.refresh()
    request_ts = end_of_day(p.world.days()[-1]) + dt.timedelta(hours=10)
    requests = [
        (str(u), rng.choice(catalogue, 200, replace=False).tolist())
        for u in rng.choice(users, n_requests)
    ]
    for user, items in requests[:20]:  # warm-up
        online.get(user, items, request_ts)
    fast, cpu, sdk_times = [], [], []
    for user, items in tqdm(requests, desc=f"online {p.features.online_store}", file=sys.stderr):
        t0, c0 = time.perf_counter(), time.thread_time()
        online.get(user, items, request_ts)
        fast.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    service = online.store.get_feature_service("ranker")
    for user, items in requests[: max(20, n_requests // 5) if sdk else 0]:
        rows = {"user_id": [user] * len(items), "item_id": items, REQUEST_TS: [request_ts] * 200}
        rows |= {a: [online._attrs[a].get(i, MISSING_KEY) for i in items] for a in U2I_ATTRIBUTES}
        t0 = time.perf_counter()
        online.store.get_online_features(features=service, entity_rows=rows).to_df()
        sdk_times.append(time.perf_counter() - t0)

    def ms(xs: list[float], q: float) -> float:
        return round(float(np.percentile(xs, q)) * 1e3, 2)

    out = {"requests": len(fast), "candidates": 200, "p50_ms": ms(fast, 50), "p99_ms": ms(fast, 99)}
    # CPU time of the request's thread: what the code costs, less sensitive than the wall
    # clock to other processes on a shared machine (page cache filled: no waiting on disk)
    out |= {"cpu_p50_ms": ms(cpu, 50), "cpu_p99_ms": ms(cpu, 99)}
    if sdk_times:
        out["feast_sdk_get_online_features"] = {
            "requests": len(sdk_times),
            "p50_ms": ms(sdk_times, 50),
            "p99_ms": ms(sdk_times, 99),
        }
    return out


def main() -> None:
    """Run the benchmark and print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="large")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument(
        "--reuse-store",
        action="store_true",
        help="with --skip-compute: time the SQLite online store an earlier run materialized "
        "(feast apply only; no Redis)",
    )
    ap.add_argument(
        "--skip-compute",
        action="store_true",
        help="keep the feature tables of an earlier run of the same size; time the online path",
    )
    args = ap.parse_args()
    params = load_params(overrides={"world.size": args.size})
    folder = Workdir(params.workdir).root / "benchmarks" / f"features-{args.size}"
    params = params.model_copy(update={"workdir": folder})  # warehouse, tables, Feast state
    wd = Workdir(folder)
    wh, world = build_warehouse(params, wd)
    result = {
        "size": args.size,
        "world": world,
    }
    if not args.skip_compute:
        result["compute"] = time_compute(params, wh, wd.features_dir, args.skip_pandas)
    result["online"] = time_online(params, wh, args.requests, reuse=args.reuse_store)
    result["goals"] = {"online_p99_le_10ms": result["online"]["sqlite"]["p99_ms"] <= 10}
    if not args.skip_compute:
        result["goals"] |= {
            "compute_le_60s": result["compute"]["duckdb_seconds"] <= 60,
            "speedup_ge_5x": result["compute"].get("speedup_vs_pandas", 0) >= 5,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
