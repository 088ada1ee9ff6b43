"""When the daily job runs: the `daily_retrain` schedule and the new-raw-day sensor.

- `daily_retrain`: the daily job for yesterday's partition at `lifecycle.schedule_hour` UTC;
  RUNNING in the `deployment` profile, STOPPED locally (turn it on in the UI).
- `new_raw_day_sensor`: starts the daily job for a day as soon as a raw events batch lands for
  it (the closed loop's exposure log, a partner drop) — once per distinct set of batches, so
  a new batch for the same day triggers a re-run and nothing else does.
Backfills: select partitions of `daily_pipeline` in the UI, or `sidflow backfill`.
"""

import json
from pathlib import Path

import dagster as dg

from sidflow.config import Params
from sidflow.workdir import Workdir


def daily_retrain(job: "dg.JobDefinition", params: Params) -> dg.ScheduleDefinition:
    """The partitioned daily job at the configured hour."""
    status = (dg.DefaultScheduleStatus.RUNNING if params.lifecycle.profile == "deployment"
              else dg.DefaultScheduleStatus.STOPPED)  # fmt: skip
    return dg.build_schedule_from_partitioned_job(
        job, name="daily_retrain", hour_of_day=params.lifecycle.schedule_hour,
        default_status=status,
    )  # fmt: skip


def landed_batches(workdir: Path, partitions: set[str]) -> dict[str, list[str]]:
    """Per partition day, the raw events batch files landed for it (name:size), sorted."""
    out = {}
    for folder in sorted((Path(workdir) / "raw" / "events").glob("day=*")):
        day = folder.name.split("=", 1)[1]
        files = sorted(f"{p.name}:{p.stat().st_size}" for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith("."))  # fmt: skip
        if day in partitions and files:
            out[day] = files
    return out


def new_raw_day_sensor(job: "dg.JobDefinition", params: Params,
                       partitions: dg.PartitionsDefinition) -> dg.SensorDefinition:  # fmt: skip
    """A run request per day whose landed batches changed since the cursor."""
    status = (dg.DefaultSensorStatus.RUNNING if params.lifecycle.profile == "deployment"
              else dg.DefaultSensorStatus.STOPPED)  # fmt: skip

    @dg.sensor(job=job, name="new_raw_day_sensor", minimum_interval_seconds=60,
               default_status=status,
               description="Runs the daily job for a day when a raw events batch lands for it.")  # fmt: skip
    def _sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        keys = set(partitions.get_partition_keys())
        landed = landed_batches(Workdir(params.workdir).root, keys)
        changed = {d: f for d, f in landed.items() if seen.get(d) != f}
        for day, files in sorted(changed.items()):
            yield dg.RunRequest(run_key=f"{day}:{'|'.join(files)}", partition_key=day,
                                tags={"sidflow/trigger": "raw-landed"})  # fmt: skip
        if changed:
            context.update_cursor(json.dumps({**seen, **changed}))

    return _sensor
