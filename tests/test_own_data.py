"""A user's own review log with a real calendar through `sidflow run`: the history batch,
daily partitions, a promoted bundle; then the schedule, the sensor and `--day` on that calendar.

The log (tests/review_log.py) spans two years and ends on 2024-05-31; its last four days are
daily partitions (`data.daily_days: 4`), the rest lands as one history batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from quick_graph import LOOSE_GATES, QUICK_TRAINING
from review_log import LAST, RECENT_DAYS, START, drop_new_day, write_review_log

from ingestion.warehouse import Warehouse
from orchestration.definitions import build_definitions
from serving.bundle import bundle_path
from serving.recommender import Recommender, Request
from sidflow.config import PROJECT_ROOT, load_params, set_dotted
from sidflow.registry import Registry
from sidflow.workdir import Workdir

OWN_DATA = {
    "data.source": "parquet",
    "data.daily_days": RECENT_DAYS,
    "sid.K": 16,  # 120 items
    # no user-id embedding: a request from a new id with a held-out user's history is then the
    # same input as that user's evaluation sample (the served = measured check below)
    "retriever.model.profile_fields": [],
    "serving.beam_size": 200,  # the evaluation's beam width
}


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The review log, a params file pointing at it, and one `sidflow run` over it."""
    root = tmp_path_factory.mktemp("own-data")
    data, work = root / "data", root / "work"
    tables = write_review_log(data)
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for key, value in {
        **QUICK_TRAINING,
        **LOOSE_GATES,
        **OWN_DATA,
        "data.path": str(data),
        "workdir": str(work),
    }.items():
        set_dotted(raw, key, value)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    run = _sidflow(params_file, "run")
    return {
        "root": root,
        "data": data,
        "work": work,
        "params_file": params_file,
        "tables": tables,
        "run": run,
    }


def _sidflow(params_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIDFLOW_PARAMS": str(params_file)}
    env.pop("SIDFLOW_WORKDIR", None)
    return subprocess.run(
        [sys.executable, "-m", "lifecycle.cli.main", "--params", str(params_file), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _params(own: dict):  # noqa: ANN202
    return load_params(own["params_file"])


def test_history_batch_then_daily_partitions_to_a_promoted_bundle(own):
    run = own["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    first_daily = LAST - dt.timedelta(days=RECENT_DAYS - 1)
    assert f"{START}..{first_daily - dt.timedelta(days=1)}  history_backfill" in run.stdout
    daily = [line for line in run.stdout.splitlines() if line.strip().startswith("2024-")]
    assert [line.split()[0] for line in daily] == [
        str(first_daily + dt.timedelta(days=k)) for k in range(RECENT_DAYS)
    ]
    assert all(line.rstrip().endswith("ok") for line in daily), run.stdout
    # each asset's start and end as it runs: name, partition, seconds
    assert f"  [{LAST}]   sid_table                    started" in run.stdout
    ends = re.findall(rf"\[{LAST}\]   (\w+) +ok +([\d.]+)s", run.stdout)
    assert {"sid_table", "retriever_model", "promotion"} <= {name for name, _ in ends}
    assert any("history_events" in line and "ok" in line for line in run.stdout.splitlines())
    # every row of the source is in the warehouse, once
    wh = Warehouse(Workdir(own["work"]).warehouse)
    assert wh.counts()["events"] == len(own["tables"]["events"])
    assert pd.Timestamp(wh.query("SELECT min(day) AS d FROM events")["d"].iloc[0]).date() == START
    promoted = Registry(Workdir(own["work"]).registry).current()["promoted"]
    assert promoted["day"] == str(LAST) and promoted["task_behaviour"] == "purchase"
    assert promoted["parts"] == ["retriever"]  # no exposures: no ranker


def test_review_only_source_skips_exposure_stages_with_the_reason(own):
    wd = Workdir(own["work"])
    for folder in (wd.ranker_dir(LAST), wd.aligned_retriever_dir(LAST)):
        reason = json.loads((folder / "skipped.json").read_text())["skipped"]
        assert "no exposures" in reason
    gates = json.loads((wd.reports / "gates" / f"day={LAST}.json").read_text())
    assert gates["ranker"] == []  # the ranker gate passed as skipped, not failed
    metrics = json.loads((wd.retriever_dir(LAST) / "metrics.json").read_text())
    assert metrics["protocol"] == "leave_one_out"
    # each user with two or more reviews is one held-out sample (the log has 160 users)
    assert metrics["samples"] == own["tables"]["events"]["user_id"].nunique()


def test_served_top_k_equals_the_evaluated_list(own):
    wd = Workdir(own["work"])
    promoted = Registry(wd.registry).current()["promoted"]
    rec = Recommender(bundle_path(wd.root, promoted["tag"]), _params(own).serving.beam_size)
    lines = [
        json.loads(x) for x in (wd.retriever_dir(LAST) / "eval_topk.jsonl").read_text().splitlines()
    ][:25]
    reqs = [Request(f"new-user-{i}", "review", 10, x["history"]) for i, x in enumerate(lines)]
    served = rec.recommend(reqs)
    for line, answer in zip(lines, served, strict=True):
        assert answer.items == line["items"][:10], line["user"]


def test_day_outside_the_source_names_its_range(own):
    out = _sidflow(own["params_file"], "run", "--day", "2031-01-01")
    assert out.returncode == 2
    assert f"holds {START}..{LAST}" in out.stderr and "Traceback" not in out.stderr
    out = _sidflow(own["params_file"], "run", "--day", "2023-03-01")
    assert out.returncode == 2 and "history batch" in out.stderr


def test_schedule_asks_for_yesterday_and_skips_a_day_without_data(own, monkeypatch):
    monkeypatch.setenv("SIDFLOW_WORKDIR", str(own["work"]))
    defs = build_definitions(_params(own))
    schedule = defs.get_schedule_def("daily_retrain")
    repo = defs.get_repository_def()
    # a schedule's context needs a persistent instance (one with a ref); a fresh one holds no
    # run that already covers the day
    with dg.DagsterInstance.local_temp() as instance:

        def tick(day: dt.date):  # noqa: ANN202
            when = dt.datetime.combine(day, dt.time(2), dt.UTC)
            ctx = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=when, repository_def=repo
            )
            return schedule.evaluate_tick(ctx)

        inside = tick(LAST + dt.timedelta(days=1))
        assert [r.partition_key for r in inside.run_requests] == [str(LAST)]
        later = LAST + dt.timedelta(days=400)  # a deployment's schedule keeps running
        after = tick(later)
        assert not after.run_requests
        assert f"no data for {later - dt.timedelta(days=1)} yet" in after.skip_message


def test_sensor_starts_a_run_for_a_newly_dropped_day(own, monkeypatch):
    monkeypatch.setenv("SIDFLOW_WORKDIR", str(own["work"]))
    monkeypatch.setenv("DAGSTER_HOME", str(Workdir(own["work"]).dagster_home))
    defs = build_definitions(_params(own))
    sensor = defs.get_sensor_def("new_data_sensor")
    with dg.DagsterInstance.get() as instance:

        def evaluate(cursor: str | None):  # noqa: ANN202
            ctx = dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
            result = sensor.evaluate_tick(ctx)
            return result.run_requests or [], result.cursor

        runs, cursor = evaluate(None)
        assert runs == []  # every day with data is materialized; the history is loaded
        new_day = LAST + dt.timedelta(days=1)
        ev = own["tables"]["events"]
        drop_new_day(own["data"], new_day, list(ev["user_id"][:3]), list(ev["item_id"][:3]))
        runs, cursor = evaluate(cursor)
        assert [(r.partition_key, r.job_name) for r in runs] == [(str(new_day), "daily_pipeline")]
        assert evaluate(cursor)[0] == []  # the same files never trigger twice
    # the new day is now a daily partition `sidflow run --day` accepts
    out = _sidflow(own["params_file"], "run", "--day", str(new_day), "--data-only")
    assert out.returncode == 0, out.stdout + out.stderr
    got = Warehouse(Workdir(own["work"]).warehouse).query(
        "SELECT count(*) AS n FROM events WHERE day = ?", [new_day]
    )
    assert int(got["n"].iloc[0]) == 3
    assert pd.Timestamp(new_day) <= pd.Timestamp.now()
