"""`sidflow simulate`: the closed loop, day by day, with the world as ground truth.

1. Bootstrap (once): the world's logged days through the data job, the last one through the
   whole graph, so a first candidate is gated and promoted.
2. Each served day d: the world's users send their requests. A stable share of the users
   (`simulation.status_quo_share`) is the status-quo arm: the world's logging policy answers
   them, as it did on the logged days. The serving code answers everyone else (A/B bucket,
   retriever, Feast online features, ranker) and logs the exposures; the world responds
   (clicks, carts, purchases); the exposure log, the status quo's exposures and every
   response land as day d's raw events; the daily job ingests them, retrains, gates and
   decides the A/B test (`serving/abstats.py`), promoting the candidate or not.
3. The report: per day and arm CTR, purchases, GMV; each arm's lift over control and the
   models' lifts over the status quo with 95% intervals over users; the SRM check; the
   promotion decision; HR@K of the day's candidate; which gates missed; what serves after.
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
from ingestion.world.closed_loop import day_requests, responses_to_events, status_quo_lists
from lifecycle.closed_loop.report import (
    STATUS_QUO,
    ab_analysis,
    bucket_metrics,
    decision_text,
    srm_text,
    write_report,
)
from orchestration import gate_rules as gates
from orchestration.runner import run_days
from serving.ab import unit_interval
from serving.abstats import LABELS
from serving.exposure_log import land_day, log_dir
from serving.recommender import Request
from serving.router import ServingApp
from sidflow.config import Params
from sidflow.registry import Registry
from sidflow.workdir import Workdir

SERVED_BATCH = "served.parquet"  # a served day's exposure log, landed as a raw events batch
STATUS_QUO_BATCH = "status_quo.parquet"  # the status-quo arm's exposures (the logging policy)
STATUS_QUO_MODEL = "logging-policy"
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
    everyone = day_requests(world, day, params.simulation.user_fraction)
    sq = status_quo_users(params, everyone["user_id"])
    requests = everyone[~sq]
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
    status_quo = status_quo_lists(world, everyone[sq], day, params.simulation.seed)
    shown.append(status_quo.assign(bucket=STATUS_QUO, model=STATUS_QUO_MODEL, fallback=False))
    shown_df = pd.concat(shown, ignore_index=True)
    responses = responses_to_events(world, shown_df, seed=params.simulation.seed + day.toordinal())
    raw = wd.raw_dir("events", day)
    land_day(wd.exposure_logs, raw, day, SERVED_BATCH)  # the exposure log, as the service wrote it
    write_parquet_atomic(_exposures(world, status_quo), raw / STATUS_QUO_BATCH)
    write_parquet_atomic(responses, raw / RESPONSES_BATCH)  # the users' clicks, carts, buys
    return shown_df, responses


def status_quo_users(params: Params, user_ids: pd.Series) -> pd.Series:
    """True for the users of the status-quo arm: a stable hash of (salt, user id), apart from
    the serving buckets' hash (`serving/ab.py`)."""
    salt = f"{params.serving.salt}:status-quo"
    share = params.simulation.status_quo_share
    return user_ids.map(lambda u: unit_interval(salt, u) < share).astype(bool)


def arm_shares(params: Params) -> dict[str, float]:
    """The configured share of each arm: the status quo's, the buckets' of the rest."""
    sq = params.simulation.status_quo_share
    shares = {b.name: (1 - sq) * b.share for b in params.serving.buckets}
    return {**shares, STATUS_QUO: sq} if sq > 0 else shares


def _exposures(world: World, shown: pd.DataFrame) -> pd.DataFrame:
    """The status-quo arm's shown slots as canonical exposure events."""
    price = pd.Series(world.catalog.item_price, index=world.catalog.item_ids).round(2)
    return pd.DataFrame(
        {
            "event_id": shown["request_id"] + "-" + shown["position"].astype(str) + "-exposure",
            "ts": shown["ts"],
            "user_id": shown["user_id"],
            "item_id": shown["item_id"],
            "request_id": shown["request_id"],
            "scene": shown["scene"],
            "event_type": "exposure",
            "position": shown["position"].astype("int64"),
            "price": price.reindex(shown["item_id"]).to_numpy(),
        }
    )


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
        decision = wd.reports / "ab" / f"day={day}.json"
        rows.append(
            {
                "day": day.isoformat(),
                "buckets": buckets.to_dict("records"),
                **ab_analysis(shown, responses, arm_shares(params), params.serving.ab),
                "decision": json.loads(decision.read_text()) if decision.exists() else None,
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
        for c in d.get("lifts", []):
            out.append(
                f"  {d['day']}  {c['arm'] + ' vs ' + c['reference']:<24} {LABELS[c['metric']]:<14}"
                f"lift {c['lift']:+7.1%} [{c['lift_low']:+7.1%}, {c['lift_high']:+7.1%}]"
                + ("  *" if c["significant"] else "")
            )
        out.append(f"  {d['day']}  SRM {srm_text(d.get('srm'))}")
        out.append(f"  {d['day']}  A/B {decision_text(d)}")
        gates_text = "gates passed" if not d["missed"] else f"gates MISSED ({len(d['missed'])})"
        out.append(f"  {d['day']}  retrain {d['run']}, {gates_text}; serving now: {d['registry']}")
    out.append(f"  report           {result['paths'].get('md', '')}")
    if "plot" in result["paths"]:
        out.append(f"  plot             {result['paths']['plot']}")
    if "lifts" in result["paths"]:
        out.append(f"  lifts            {result['paths']['lifts']}")
    return out


def report_folder(params: Params) -> Path:
    """Where the simulation report is written."""
    return Workdir(params.workdir).reports / "simulation"
