"""`sidflow simulate`: the closed loop, day by day, with the world as ground truth.

1. Bootstrap (once): the world's logged days through the data job, the last one through the
   whole graph, so a first candidate is gated and promoted.
2. Each served day d: the world's users send their requests; the serving code answers them
   (A/B bucket, retriever, Feast online features, ranker) and logs the exposures; the world
   responds (clicks, carts, purchases); exposures and responses land as day d's raw events;
   the daily job ingests them, retrains, gates and promotes (or not).
3. The report: per day and bucket CTR, purchases, GMV; HR@K of the day's candidate; which
   gates missed; what serves afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ingestion.canonical import write_parquet_atomic
from ingestion.world import World
from ingestion.world.closed_loop import day_requests, responses_to_events
from lifecycle.closed_loop.report import bucket_metrics, write_report
from orchestration import gate_rules as gates
from orchestration.runner import run_days
from serving.exposure_log import land_day, log_dir
from serving.recommender import Request
from serving.router import ServingApp
from sidflow.config import Params
from sidflow.registry import Registry
from sidflow.workdir import Workdir

SERVED_BATCH = "served.parquet"  # a served day's exposure log, landed as a raw events batch
RESPONSES_BATCH = "responses.parquet"  # the world's responses to it (client event stream)


def served_days(params: Params) -> list[dt.date]:
    """The days after the world's logged window that the loop serves."""
    last = params.world.days()[-1]
    return [last + dt.timedelta(days=i + 1) for i in range(params.simulation.days)]


def bootstrap(params: Params, overrides: dict[str, str]) -> list:
    """Logged days through the data job, the last through the whole graph (skipped when a
    model is already promoted)."""

    if Registry(Workdir.of(params).registry).current().get("promoted"):
        return []
    days = params.world.days()
    return run_days(params, days, overrides, train_days=days[-1:])


def serve_day(
    params: Params, world: World, day: dt.date, batch: int = 64
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Serve every request of `day` through the serving code; land its log and the responses.

    Returns (shown slots with bucket and model, the world's response events).
    """

    wd = Workdir.of(params)
    shutil.rmtree(
        log_dir(wd.exposure_logs, day), ignore_errors=True
    )  # a re-run serves the day afresh
    app = ServingApp(params)
    requests = day_requests(world, day, params.simulation.user_fraction)
    k = params.world.items_per_request
    shown = []
    for s in tqdm(range(0, len(requests), batch), desc=f"serving {day}", unit="batch", leave=False):
        part = requests.iloc[s : s + batch]
        reqs = [Request(u, sc, k) for u, sc in zip(part["user_id"], part["scene"], strict=True)]
        for (_, row), served in zip(part.iterrows(), app.handle(reqs, part["ts"]), strict=True):
            shown.append(
                pd.DataFrame(
                    {
                        "request_id": served.request_id,
                        "ts": row["ts"],
                        "user_id": served.user_id,
                        "scene": served.scene,
                        "item_id": served.rec.items,
                        "position": range(len(served.rec.items)),
                        "bucket": served.bucket,
                        "model": served.model,
                        "fallback": served.rec.fallback,
                    }
                )
            )
    shown_df = pd.concat(shown, ignore_index=True)
    responses = responses_to_events(world, shown_df, seed=params.simulation.seed + day.toordinal())
    raw = wd.raw_dir("events", day)
    land_day(wd.exposure_logs, raw, day, SERVED_BATCH)  # the exposure log, as the service wrote it
    write_parquet_atomic(responses, raw / RESPONSES_BATCH)  # the users' clicks, carts, buys
    return shown_df, responses


def simulate(params: Params, overrides: dict[str, str]) -> dict:
    """Run the loop for `params.simulation.days` served days; returns the report's paths/rows."""

    wd = Workdir.of(params)
    world = World(params.world)
    registry = Registry(wd.registry)
    t0 = time.perf_counter()
    boot = bootstrap(params, overrides)
    rows = []
    for day in tqdm(served_days(params), desc="served days", unit="day"):
        t_day = time.perf_counter()
        shown, responses = serve_day(params, world, day)
        [run] = run_days(params, [day], overrides)
        results = gates.read_day(wd.reports, day)
        metrics_file = wd.retriever_dir(day) / "metrics.json"
        state = registry.current()
        buckets = bucket_metrics(shown, responses)
        models = shown.groupby("bucket")["model"].first().to_dict()
        buckets["model"] = buckets["bucket"].map(models)
        rows.append(
            {
                "day": day.isoformat(),
                "buckets": buckets.to_dict("records"),
                "run": "ok" if run.success else "stopped",
                "missed": gates.failures(results),  # blocking gates that stopped promotion
                "failed_checks": run.failed_checks,  # every failed check, warnings included
                "hr": json.loads(metrics_file.read_text()) if metrics_file.exists() else None,
                "registry": _describe(state),
                "seconds": round(time.perf_counter() - t_day, 1),
            }
        )
    paths = write_report(rows, wd.reports / "simulation")
    return {
        "bootstrap": [(r.day.isoformat(), r.job, r.success) for r in boot],
        "days": rows,
        "paths": {k: str(v) for k, v in paths.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _describe(state: dict) -> str:
    promoted = (state.get("promoted") or {}).get("tag", "none")
    candidate = (state.get("candidate") or {}).get("tag", "none")
    return f"{promoted} / {candidate}"


def summary_lines(result: dict) -> list[str]:
    """The short version `make run` prints."""
    out = [
        f"closed-loop simulation: {len(result['days'])} served day(s) in {result['seconds']:.0f}s"
    ]
    for d in result["days"]:
        for b in d["buckets"]:
            out.append(
                f"  {d['day']}  {b['bucket']:<10} {str(b.get('model', '')):<28} "
                f"CTR {b['ctr']:.4f}  purchases {b['purchases']:>5,}  GMV {b['gmv']:>10,.0f}"
            )
        gates_text = "gates passed" if not d["missed"] else f"gates MISSED ({len(d['missed'])})"
        out.append(f"  {d['day']}  retrain {d['run']}, {gates_text}; serving now: {d['registry']}")
    out.append(f"  report           {result['paths'].get('md', '')}")
    if "plot" in result["paths"]:
        out.append(f"  plot             {result['paths']['plot']}")
    return out


def report_folder(params: Params) -> Path:
    """Where the simulation report is written."""
    return Workdir(params.workdir).reports / "simulation"
