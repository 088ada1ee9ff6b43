"""Run the daily Dagster job from Python (the CLI's `sidflow run`, tests, `make run`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from data_contracts.quarantine import Quarantine
from ingestion.calendar import SourceCalendar
from ingestion.sources import Source
from ingestion.warehouse import Warehouse
from orchestration.assets.history import HISTORY_JOB, history_signature
from orchestration.dagster_home import ensure_dagster_home
from orchestration.definitions import DAILY_JOB, DATA_JOB, build_definitions
from sidflow.config import Params
from sidflow.workdir import Workdir


@dataclass
class DayRun:
    """Outcome of one partition's run."""

    day: dt.date
    run_id: str
    success: bool
    failed_checks: list[str]
    job: str = DAILY_JOB


@dataclass
class HistoryRun:
    """Outcome of the history backfill (None run_id: it was up to date, nothing ran)."""

    first: dt.date
    last: dt.date
    run_id: str | None
    success: bool
    failed_checks: list[str]
    signature: str


STEP_END = {
    dg.DagsterEventType.STEP_SUCCESS: "ok",
    dg.DagsterEventType.STEP_FAILURE: "FAILED",
    dg.DagsterEventType.STEP_SKIPPED: "skipped",
}


@dataclass
class StepProgress:
    """A Dagster event listener (`DagsterInstance.add_event_listener`): one line when a step
    (an asset, an asset check) starts and one when it ends, with its partition and seconds,
    timed by the events' own timestamps."""

    partition: str
    out: Callable[[str], None]
    started: dict[str, float] = field(default_factory=dict)

    def __call__(self, entry) -> None:  # noqa: ANN001 - dagster EventLogEntry
        event = entry.dagster_event
        if event is None or not event.step_key:
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            self.started[event.step_key] = entry.timestamp
            self.out(f"  [{self.partition}]   {event.step_key:<28} started")
        elif kind in STEP_END:
            t0 = self.started.pop(event.step_key, entry.timestamp)
            self.out(
                f"  [{self.partition}]   {event.step_key:<28} {STEP_END[kind]:<8} "
                f"{entry.timestamp - t0:7.1f}s"
            )


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    log_level: str,
    partition: str | None,
    progress: Callable[[str], None] | None,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process`, reporting each step's start and end to `progress`."""
    run_id = str(uuid.uuid4())
    if progress is not None:
        instance.add_event_listener(run_id, StepProgress(partition or "history", progress))
    return job.execute_in_process(
        partition_key=partition,
        instance=instance,
        raise_on_error=False,
        run_id=run_id,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:"
        f"{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and not e.asset_check_evaluation_data.passed
    ]


def run_history(
    params: Params,
    source: Source,
    cal: SourceCalendar,
    overrides: dict[str, str] | None = None,
    log_level: str = "WARNING",
    progress: Callable[[str], None] | None = None,
) -> HistoryRun | None:
    """Load the history batch (the `history_backfill` job) unless the latest materialization
    of `history_events` holds the same content signature. None when there is no history.
    `progress` gets a line as each step starts and ends."""
    if cal.history is None:
        return None
    ensure_dagster_home(params)
    signature = history_signature(source, cal)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("history_events"))
        done = event.asset_materialization.metadata.get("signature") if event else None
        if done is not None and done.value == signature:
            return HistoryRun(*cal.history, None, True, [], signature)
        job = build_definitions(params, overrides).resolve_job_def(HISTORY_JOB)
        result = _execute(job, instance, log_level, None, progress)
    return HistoryRun(
        *cal.history, result.run_id, result.success, _failed_checks(result), signature
    )


def run_days(
    params: Params,
    days: list[dt.date],
    overrides: dict[str, str] | None = None,
    log_level: str = "WARNING",
    train_days: list[dt.date] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[DayRun]:
    """Materialize the daily job for each day, in order, on the working folder's instance.

    `train_days` (default: every day) get the whole graph; the other days only the data job
    (ingest, contracts, warehouse, features): catching up history without retraining daily.
    `progress` gets a line as each step (asset, asset check) starts and ends.
    """
    ensure_dagster_home(params)
    defs = build_definitions(params, overrides)
    full, data = defs.resolve_job_def(DAILY_JOB), defs.resolve_job_def(DATA_JOB)
    train = set(days if train_days is None else train_days)
    out = []
    with dg.DagsterInstance.get() as instance:
        for day in days:
            job = full if day in train else data
            if progress is not None:
                progress(f"  [{day}] {job.name}")
            result = _execute(job, instance, log_level, day.isoformat(), progress)
            out.append(DayRun(day, result.run_id, result.success, _failed_checks(result), job.name))
    return out


def summarize(params: Params, days: list[dt.date]) -> dict:
    """Row counts, quarantined rows and the Data Docs index after a run."""
    wd = Workdir(params.workdir)
    q = Quarantine(wd.root / "quarantine")
    quarantined = {
        t: sum(q.quarantined_rows(t, d) for d in [*days, "history"])
        for t in ("events", "items", "users")
    }
    return {
        "warehouse": str(wd.warehouse),
        "rows": Warehouse(wd.warehouse).counts(),
        "quarantined_rows": quarantined,
        "data_docs": str(wd.data_docs_index),
    }
