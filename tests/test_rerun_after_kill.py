"""Killing `sidflow run` mid-materialization and running it again leaves no duplicate rows and
no half-written artefact."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from quick_graph import quick_params_file

from ingestion.warehouse import Warehouse
from sidflow.config import PROJECT_ROOT
from sidflow.workdir import Workdir


def _run(params_file: Path, log: Path) -> subprocess.Popen:
    """`sidflow run` in its own process group, its output in `log`."""
    env = {**os.environ, "SIDFLOW_PARAMS": str(params_file)}
    env.pop("SIDFLOW_WORKDIR", None)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lifecycle.cli.main", "run"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_kill_mid_run_then_rerun(tmp_path):
    params_file = quick_params_file(tmp_path, tmp_path / "work")
    wd = Workdir(tmp_path / "work")

    proc = _run(params_file, tmp_path / "killed_run.log")
    deadline = time.time() + 300
    # Kill while the second day is being materialized (its raw batch has landed).
    while time.time() < deadline and proc.poll() is None:
        if list((wd.root / "raw" / "events").glob("day=2026-01-02/*.parquet")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    rerun_log = tmp_path / "rerun.log"
    rerun = _run(params_file, rerun_log)
    assert rerun.wait(900) == 0, rerun_log.read_text()[-6000:]
    wh = Warehouse(wd.warehouse)
    for table, key in (("events", "event_id"), ("items", "item_id"), ("users", "user_id")):
        dup = wh.query(f"SELECT count(*) - count(DISTINCT {key}) AS d FROM {table}")["d"].iloc[0]
        assert dup == 0, f"{table} has duplicate {key}"
    leftovers = [p for p in wd.root.rglob("*.tmp")] + [
        p for p in wd.root.rglob(".*.tmp") if p.is_file()
    ]
    assert not [p for p in leftovers if "dagster_home" not in p.parts], leftovers
    for path in [
        *wd.root.glob("features/*/*.parquet"),
        *wd.root.glob("validated/*/*.parquet"),
        *wd.root.glob("sid/day=*/artefacts/*.parquet"),
    ]:
        frame = pd.read_parquet(path)  # every file a reader sees is whole
        keys = [
            c
            for c in ("user_id", "item_id", "cat_l2", "cat_l3", "brand", "seller")
            if c in frame.columns
        ]
        if "features" in path.parts and keys:
            assert not frame.duplicated(keys).any(), path
