"""The deployment profile on real engines: PostgreSQL-backed Dagster run by `dagster-daemon`,
Redis and a SQL registry (on the same PostgreSQL) for Feast.

PostgreSQL and Redis come from Debian's packages (installed with apt-get when missing) and
listen on 127.0.0.1 only; the test skips with the reason when they cannot start. The source is
the small review log of tests/review_log.py (two years up to LAST) with the daily calendar from
the day after it, so the history lands as one batch and every daily partition is new data.
The sensor runs the data job (`lifecycle.sensor_job: daily_data`, no training) and the
schedule ticks every minute, so the test stays about two minutes on two cores:

1. `dagster-daemon run` starts against the PostgreSQL instance; its sensor loads the history;
2. a new day's file lands in the source folder; the sensor's run materializes that day
   (multiprocess executor, the DuckDB writers in their pool of one slot);
3. the schedule's tick is recorded (skipped: yesterday has no data, with the reason);
4. the day is materialized into Redis through the SQL registry and served back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from review_log import LAST, drop_new_day, write_review_log
from services import postgres_server, redis_server

from orchestration.dagster_home import ensure_dagster_home
from sidflow.config import PROJECT_ROOT, load_params, set_dotted
from sidflow.workdir import Workdir

NEW_DAY = LAST + dt.timedelta(days=1)
DEADLINE_S = 900  # a guard against a hang; about two minutes when the machine is quiet


def _wait(what: str, check, timeline: dict, t0: float, log: Path, timeout: float):  # noqa: ANN001, ANN202
    """Poll `check()` until it returns something truthy; fail with the daemon's log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            timeline[what] = round(time.monotonic() - t0, 1)
            return got
        time.sleep(1.0)
    tail = log.read_text()[-3000:] if log.exists() else ""
    pytest.fail(f"timed out waiting for: {what}; timeline {timeline}\n--- daemon log ---\n{tail}")


def _runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=job)))


def _finished(instance: dg.DagsterInstance, job: str) -> dg.DagsterRun | None:
    for run in _runs(instance, job):
        if run.status == dg.DagsterRunStatus.FAILURE:
            pytest.fail(f"{job} run {run.run_id} failed")
        if run.status == dg.DagsterRunStatus.SUCCESS:
            return run
    return None


def _schedule_ticks(instance: dg.DagsterInstance) -> list:
    states = instance.all_instigator_state()  # the schedule's and the sensor's
    return [
        tick
        for state in states
        if state.instigator_name == "daily_retrain"
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)
    ]


def test_daemon_runs_sensor_and_schedule_on_postgres_with_redis(
    tmp_path, monkeypatch, capsys
) -> None:
    with (
        postgres_server(["sidflow_dagster", "sidflow_feast"]) as pg,
        redis_server(tmp_path) as redis,
    ):
        data, work = tmp_path / "data", tmp_path / "work"
        tables = write_review_log(data)
        raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
        for key, value in {
            "workdir": str(work),
            "lifecycle.profile": "deployment",
            "lifecycle.schedule_cron": "* * * * *",  # a tick every minute
            "lifecycle.sensor_interval_s": 5,
            "lifecycle.sensor_job": "daily_data",
            "data.source": "parquet",
            "data.path": str(data),
            "data.daily_from": NEW_DAY.isoformat(),  # the log so far is the history batch
            "dagster.postgres_url": f"postgresql+psycopg2://sidflow@127.0.0.1:{pg}/sidflow_dagster",
            "features.redis_address": redis,
            "features.registry_url": f"postgresql+psycopg2://sidflow@127.0.0.1:{pg}/sidflow_feast",
            "tracking.uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "dvc.remote_url": str(tmp_path / "dvc-remote"),
        }.items():
            set_dotted(raw, key, value)
        params_file = tmp_path / "params.yaml"
        params_file.write_text(yaml.safe_dump(raw))
        monkeypatch.delenv("SIDFLOW_WORKDIR", raising=False)
        monkeypatch.setenv("SIDFLOW_PARAMS", str(params_file))
        monkeypatch.setenv("DAGSTER_HOME", "")  # set below, restored after the test
        params = load_params(params_file)
        assert params.dagster.storage == "postgres" and params.dagster.executor == "multiprocess"
        assert params.features.online_store == "redis" and params.features.registry == "sql"
        home = ensure_dagster_home(params)
        instance_yaml = yaml.safe_load((home / "dagster.yaml").read_text())
        assert "postgres" in instance_yaml["storage"]

        log = tmp_path / "daemon.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
        daemon_bin = Path(sys.executable).parent / "dagster-daemon"
        timeline: dict[str, float] = {}
        t0 = time.monotonic()
        with log.open("w") as out:
            daemon = subprocess.Popen(
                [str(daemon_bin), "run", "-m", "orchestration.definitions"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its run workers are in its process group
            )
        try:
            with dg.DagsterInstance.get() as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                history = _wait(
                    "history_backfill run succeeded (sensor)",
                    lambda: _finished(instance, "history_backfill"),
                    timeline,
                    t0,
                    log,
                    DEADLINE_S,
                )
                assert history.tags.get("sidflow/trigger") == "history"
                assert _runs(instance, "daily_data") == []  # no daily data yet
                ev = tables["events"]
                drop_new_day(data, NEW_DAY, list(ev["user_id"][:3]), list(ev["item_id"][:3]))
                timeline["new day's file landed"] = round(time.monotonic() - t0, 1)
                run = _wait(
                    f"daily_data run for {NEW_DAY} succeeded (sensor)",
                    lambda: _finished(instance, "daily_data"),
                    timeline,
                    t0,
                    log,
                    DEADLINE_S - (time.monotonic() - t0),
                )
                assert run.tags["dagster/partition"] == NEW_DAY.isoformat()
                assert run.tags["sidflow/trigger"] == "new-data"
                for asset in ("warehouse_events", "feature_tables"):
                    done = instance.get_materialized_partitions(dg.AssetKey(asset))
                    assert NEW_DAY.isoformat() in done, asset
                ticks = _wait(
                    "daily_retrain schedule tick recorded",
                    lambda: _schedule_ticks(instance),
                    timeline,
                    t0,
                    log,
                    max(75.0, DEADLINE_S - (time.monotonic() - t0)),
                )
                tick = ticks[0]
                # yesterday (today's calendar) has no data in the log: skipped, with the reason
                assert tick.status.value in ("SKIPPED", "SUCCESS"), tick
                if tick.status.value == "SKIPPED":
                    assert "no data for" in (tick.skip_reason or ""), tick.skip_reason
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()

        # Feast in the deployment profile: the SQL registry the run's `feast apply` wrote (on
        # PostgreSQL) and the Redis online store serve the landed day.
        from features import store

        t1 = time.monotonic()
        fs = store.feature_store(params)
        assert fs.config.registry.registry_type == "sql"
        assert fs.config.online_store.type == "redis"
        assert "user_stats" in {v.name for v in fs.list_feature_views()}
        store.materialize_day(params, NEW_DAY)
        user = str(tables["events"]["user_id"].iloc[0])
        as_of = store.end_of_day(NEW_DAY) + dt.timedelta(hours=1)
        online = store.OnlineFeatures(params)
        frame = online.get(user, list(tables["items"]["item_id"][:20]), request_ts=as_of)
        assert frame["user_purchases_30d"].notna().all()
        timeline["Feast: materialized to Redis and read back"] = round(
            timeline[max(timeline, key=timeline.get)] + time.monotonic() - t1, 1
        )
        wd = Workdir(work)
        (wd.root / "deployment-test-timeline.json").write_text(json.dumps(timeline, indent=2))
        with capsys.disabled():
            print(f"\ndeployment profile timeline (s from daemon start): {json.dumps(timeline)}")
