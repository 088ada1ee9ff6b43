"""When the daily job runs: the `daily_retrain` schedule and the `new_data_sensor`.

- `daily_retrain`: every day at `lifecycle.schedule_hour` UTC (or on `lifecycle.schedule_cron`),
  the daily job for yesterday's partition; when yesterday's data has not arrived (the source
  holds no event of that day and nothing was landed for it), or a run of the daily job for
  that day is already queued, running or done (the sensor saw the data first), the tick is
  skipped with the reason, never failed.
- `new_data_sensor` (every `lifecycle.sensor_interval_s` at most): starts the daily job for a
  day as soon as new data for it appears: a
  new event day in the source's folder (e.g. `events/day=YYYY-MM-DD/*.parquet` dropped in),
  more rows for a day it already ran, or a raw batch landed beside the source's (the closed
  loop's exposure log, a partner drop). Before any daily run, it starts the history backfill
  when the history batch has not been loaded.
Both are RUNNING in the `deployment` profile (dagster-daemon runs them) and STOPPED locally
(turn them on in the UI).
Backfills: select partitions of `daily_pipeline` in the UI, or `sidflow run`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg

from ingestion.calendar import partition_start, resolve_calendar
from ingestion.sources import Source, make_source, source_fingerprint
from orchestration.assets.history import history_signature
from sidflow.config import Params
from sidflow.workdir import Workdir

_SOURCES: dict[str, Source] = {}  # fingerprint -> source, read again only when files change


def current_source(params: Params) -> Source:
    """The configured source, read once per distinct set of its files."""
    key = f"{params.model_dump_json()}:{source_fingerprint(params)}"
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = make_source(params)
    return _SOURCES[key]


def _status(params: Params) -> tuple[dg.DefaultScheduleStatus, dg.DefaultSensorStatus]:
    on = params.lifecycle.profile == "deployment"
    return (
        dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED,
        dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED,
    )


def landed_batches(workdir: Path) -> dict[str, list[str]]:
    """Per day, the raw events batch files landed for it (name:size), sorted."""
    out = {}
    for folder in sorted((Path(workdir) / "raw" / "events").glob("day=*")):
        day = folder.name.split("=", 1)[1]
        files = sorted(
            f"{p.name}:{p.stat().st_size}"
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )
        if files:
            out[day] = files
    return out


def day_signatures(params: Params, source: Source, first: dt.date, last: dt.date) -> dict:
    """Per day in [first, last] with data: a digest of the source's events of the day and of
    the batches landed for it. A day's signature changes exactly when its data changes."""
    landed = landed_batches(Workdir(params.workdir).root)
    source_days = {d for d in source.days() if first <= d <= last}
    days = set(source_days)
    days |= {dt.date.fromisoformat(d) for d in landed if first.isoformat() <= d <= last.isoformat()}
    out = {}
    for day in sorted(days):
        own = source.day_signature(day) if day in source_days else "-"
        landed_here = "|".join(landed.get(day.isoformat(), []))
        out[day.isoformat()] = hashlib.sha1(f"{own}/{landed_here}".encode()).hexdigest()[:16]
    return out


def has_data(params: Params, source: Source, day: dt.date) -> bool:
    """Whether the source holds events of `day` or a raw batch was landed for it."""
    return day in set(source.days()) or day.isoformat() in landed_batches(
        Workdir(params.workdir).root
    )


# a run in these states covers its partition: the schedule does not request it again
COVERING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
]


def covering_run(instance: dg.DagsterInstance, job_name: str, day: dt.date) -> str | None:
    """Why a run of `job_name` for `day` already covers it (queued, running or done), or None."""
    runs = instance.get_runs(
        dg.RunsFilter(
            job_name=job_name,
            tags={"dagster/partition": day.isoformat()},
            statuses=COVERING,
        ),
        limit=1,
    )
    if not runs:
        return None
    run = runs[0]
    trigger = run.tags.get("sidflow/trigger", "by hand")
    return f"run {run.run_id[:8]} ({trigger}, {run.status.value.lower()}) covers {day}"


def daily_retrain(job: dg.JobDefinition, params: Params) -> dg.ScheduleDefinition:
    """Yesterday's partition of the daily job on the configured cron (UTC), if its data came
    and no run covers it yet."""
    status, _ = _status(params)

    @dg.schedule(
        job=job,
        name="daily_retrain",
        cron_schedule=params.lifecycle.cron,
        execution_timezone="UTC",
        default_status=status,
        description="Runs yesterday's partition every day; skips (with the reason) a day whose "
        "data has not arrived or that a run already covers.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - dt.timedelta(days=1)).date()
        start = partition_start(params)
        if day < start:
            return dg.SkipReason(f"{day} is before the first daily partition {start}")
        source = current_source(params)
        if not has_data(params, source, day):
            days = source.days()
            held = f"{days[0]}..{days[-1]}" if days else "no events"
            return dg.SkipReason(
                f"no data for {day} yet: source {source.name} holds {held} and nothing was "
                f"landed in raw/events/day={day}"
            )
        covered = covering_run(context.instance, job.name, day)
        if covered:
            return dg.SkipReason(covered)
        return dg.RunRequest(
            run_key=f"daily:{day}",
            partition_key=day.isoformat(),
            tags={"sidflow/trigger": "schedule"},
        )

    return _schedule


def new_data_sensor(
    job: dg.JobDefinition,
    history_job: dg.JobDefinition,
    params: Params,
    partitions: dg.PartitionsDefinition,
) -> dg.SensorDefinition:
    """A run request per day whose data changed since the cursor (see the module doc)."""
    _, status = _status(params)

    @dg.sensor(
        jobs=[job, history_job],
        name="new_data_sensor",
        minimum_interval_seconds=params.lifecycle.sensor_interval_s,
        default_status=status,
        description="Runs the daily job for a day when new data for it lands in the source's "
        "folder or the raw landing folder; loads the history batch first.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        source = current_source(params)
        cal = resolve_calendar(params, source)
        if cal.history is not None:
            want = history_signature(source, cal)
            event = context.instance.get_latest_materialization_event(dg.AssetKey("history_events"))
            meta = event.asset_materialization.metadata if event else {}
            got = meta.get("signature")
            if (got.value if got else None) != want:
                yield dg.RunRequest(
                    run_key=f"history:{want}",
                    job_name=history_job.name,
                    tags={"sidflow/trigger": "history"},
                )
                return  # daily runs follow once the history is in the warehouse
        keys = partitions.get_partition_keys(dynamic_partitions_store=context.instance)
        if not keys:
            return
        first, last = dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
        now = day_signatures(params, source, first, last)
        if context.cursor:
            seen = json.loads(context.cursor)
        else:  # first evaluation: days already materialized count as seen
            done = context.instance.get_materialized_partitions(dg.AssetKey("warehouse_events"))
            seen = {d: s for d, s in now.items() if d in done}
        changed = {d: s for d, s in now.items() if seen.get(d) != s}
        for day, sig in sorted(changed.items()):
            yield dg.RunRequest(
                run_key=f"{day}:{sig}",
                partition_key=day,
                job_name=job.name,
                tags={"sidflow/trigger": "new-data"},
            )
        context.update_cursor(json.dumps({**seen, **now}))

    return _sensor
