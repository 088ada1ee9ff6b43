"""The Dagster skeleton: definitions validate, two tiny days materialize, gates block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from ingestion.warehouse import Warehouse
from orchestration.runner import run_days

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_validate(workdir):
    env = {**os.environ, "DAGSTER_HOME": str(workdir.dagster_home)}
    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.run(
        [dagster, "definitions", "validate", "-m", "orchestration.definitions"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_days_through_dagster(tiny_params, tiny_world):
    days = tiny_world.days[:2]
    runs = run_days(tiny_params, days, {"world.size": "tiny"}, train_days=[])
    assert all(r.success for r in runs), runs
    wh = Warehouse(Path(tiny_params.workdir) / "warehouse.duckdb")
    expected = sum(len(tiny_world.events(d)) for d in days)
    assert wh.counts()["events"] == expected
    assert wh.counts()["users"] == len(tiny_world.users())
    assert wh.counts()["items"] == len(tiny_world.items(days[1]))
    # Re-running a day replaces it: no duplicates.
    runs = run_days(tiny_params, days[:1], {"world.size": "tiny"}, train_days=[])
    assert runs[0].success
    assert wh.counts()["events"] == expected


def test_bad_batches_follow_the_data_gate(tiny_params, tiny_world):
    from sidflow.workdir import Workdir

    wd = Workdir(tiny_params.workdir)
    wh = Warehouse(wd.warehouse)
    d0, d1 = tiny_world.days[:2]
    # Day 0: a partner drops a small CSV without the price column. It is rejected whole,
    # but it is under the quarantine limit, so the day goes on (with a warning check).
    small = tiny_world.events(d0).drop(columns="price").head(20)
    small.to_csv(wd.raw_dir("events", d0) / "partner_feed.csv", index=False)
    [run] = run_days(tiny_params, [d0], {"world.size": "tiny"}, train_days=[])
    assert run.success and run.failed_checks == ["validated_events:every_rule_passed"]
    assert wh.counts()["events"] == len(tiny_world.events(d0))
    # Day 1: the bad batch is larger than the limit allows: the gate stops the day.
    big = tiny_world.events(d1).drop(columns="price")
    big.to_csv(wd.raw_dir("events", d1) / "partner_feed.csv", index=False)
    [run] = run_days(tiny_params, [d1], {"world.size": "tiny"}, train_days=[])
    assert not run.success
    assert "validated_events:events_contract" in run.failed_checks
    assert wh.days() == [d0], "warehouse_events must not run for a day that failed its gate"
    # Nothing is lost: the raw file is kept and the good rows were validated.
    assert (wd.raw_dir("events", d1) / "partner_feed.csv").exists()
    valid = pd.read_parquet(wd.validated_path("events", d1))
    assert len(valid) == len(tiny_world.events(d1))
