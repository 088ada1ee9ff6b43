"""The schedule and the sensor that start the daily job."""

import dagster as dg
import pandas as pd

from orchestration.definitions import build_definitions
from sidflow.config import load_params


def _sensor_runs(defs: dg.Definitions, cursor: str | None) -> tuple[list, str | None]:
    sensor = defs.get_sensor_def("new_data_sensor")
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
        runs = list(sensor(ctx))
        return runs, ctx.cursor


def test_sensor_starts_one_run_per_new_landed_day(tiny_params, workdir):
    defs = build_definitions(tiny_params, {"world.size": "tiny"})
    world_days = [d.isoformat() for d in tiny_params.world.days()]
    # nothing materialized yet: the world's own days are new data
    first, cursor = _sensor_runs(defs, None)
    assert sorted(r.partition_key for r in first) == world_days
    assert _sensor_runs(defs, cursor)[0] == []
    d0, d1 = world_days[:2]
    batch = pd.DataFrame({"event_id": ["e1"]})
    batch.to_parquet(workdir.raw_dir("events", tiny_params.world.days()[0]) / "served.parquet")
    runs, cursor = _sensor_runs(defs, cursor)
    assert [r.partition_key for r in runs] == [d0]
    assert _sensor_runs(defs, cursor)[0] == []  # the same batches never trigger twice
    batch.to_parquet(workdir.raw_dir("events", tiny_params.world.days()[1]) / "partner.parquet")
    batch.to_parquet(workdir.raw_dir("events", tiny_params.world.days()[0]) / "late.parquet")
    runs, cursor = _sensor_runs(defs, cursor)
    assert sorted(r.partition_key for r in runs) == [d0, d1]
    assert len({r.run_key for r in runs}) == 2
    (workdir.root / "raw" / "events" / "day=2031-01-01").mkdir(parents=True)
    assert _sensor_runs(defs, cursor)[0] == []  # outside the partitions: ignored


def test_schedule_is_on_only_in_the_deployment_profile(workdir):
    local = build_definitions(load_params(overrides={"world.size": "tiny"}))
    deployed = build_definitions(
        load_params(overrides={"world.size": "tiny", "lifecycle.profile": "deployment"})
    )
    for defs, status in (
        (local, dg.DefaultScheduleStatus.STOPPED),
        (deployed, dg.DefaultScheduleStatus.RUNNING),
    ):
        schedule = defs.get_schedule_def("daily_retrain")
        assert schedule.default_status == status
        assert schedule.cron_schedule == "0 2 * * *"
        assert schedule.job_name == "daily_pipeline"
