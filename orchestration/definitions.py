"""Dagster `Definitions` for sidflow: `dagster dev -m orchestration.definitions` loads `defs`."""

from __future__ import annotations

import dagster as dg

from ingestion.calendar import partition_end_offset, partition_start
from orchestration.assets.features import build_feature_assets
from orchestration.assets.gates import build_gate_checks
from orchestration.assets.history import HISTORY_JOB, build_history_assets
from orchestration.assets.ingest import build_ingest_assets
from orchestration.assets.ranker import build_ranker_assets
from orchestration.assets.retriever import build_retriever_assets
from orchestration.assets.serve import build_serve_assets
from orchestration.assets.sid import build_sid_assets
from orchestration.automation import daily_retrain, new_data_sensor
from orchestration.resources import SidflowResource, WarehouseResource
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir

DAILY_JOB = "daily_pipeline"
DATA_JOB = "daily_data"


def daily_partitions(params: Params) -> dg.DailyPartitionsDefinition:
    """A real daily calendar (UTC): from the source's first daily day, with no end.

    The world starts at `world.start_date`, a folder source at its recorded cut-off
    (ingestion/calendar.py); every day after that, up to yesterday, is a partition, so the
    schedule and the sensor keep finding new days.
    """
    return dg.DailyPartitionsDefinition(
        start_date=partition_start(params).isoformat(),
        end_offset=partition_end_offset(params),
        timezone="UTC",
    )


def build_definitions(
    params: Params | None = None, overrides: dict[str, str] | None = None
) -> dg.Definitions:
    """Assets, checks, jobs, schedule and resources for the given settings."""
    params = params or load_params(overrides=overrides)
    partitions = daily_partitions(params)
    history = build_history_assets()
    assets = build_ingest_assets(partitions) + build_feature_assets(partitions)
    assets += build_sid_assets(partitions)
    if any(dg.AssetKey("sid_table") in a.keys for a in assets):  # the retriever needs SIDs
        assets += build_retriever_assets(partitions)
        if params.lifecycle.train_ranker:
            assets += build_ranker_assets(partitions)
    if any(dg.AssetKey("retriever_eval") in a.keys for a in assets):
        assets += build_serve_assets(partitions, {k for a in assets for k in a.keys})
    checks = build_gate_checks(partitions, {k for a in assets for k in a.keys})
    daily_job = dg.define_asset_job(
        DAILY_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="The daily run: ingest, contracts, features, SIDs, training, gates, bundle, promotion.",
    )
    data_job = dg.define_asset_job(
        DATA_JOB,
        # The online store serves only the newest day: the next full run's online_features
        # catches up every skipped day in one incremental materialization.
        selection=dg.AssetSelection.groups("ingest", "quality", "features")
        - dg.AssetSelection.assets("online_features", *history),
        description="Ingest, contracts, warehouse and offline feature tables only: catching up "
        "past days (the online store is brought up to date by the next full run).",
    )
    history_job = dg.define_asset_job(
        HISTORY_JOB,
        selection=dg.AssetSelection.assets(*history),
        description="The source's days before the daily calendar as one batch: contracts, "
        "warehouse and the feature tables the first daily partition reads.",
    )
    return dg.Definitions(
        assets=[*history, *assets],
        asset_checks=checks,
        jobs=[daily_job, data_job, history_job],
        schedules=[daily_retrain(daily_job, params)],
        sensors=[
            new_data_sensor(
                data_job if params.lifecycle.sensor_job == DATA_JOB else daily_job,
                history_job,
                params,
                partitions,
            )
        ],
        resources={
            "sidflow": SidflowResource(
                params_path=str(params.source_path or ""),
                workdir=str(params.workdir),
                overrides={k: str(v) for k, v in (overrides or {}).items()},
            ),
            "warehouse": WarehouseResource(path=str(Workdir(params.workdir).warehouse)),
        },
        executor=executor(params),
    )


def executor(params: Params) -> dg.ExecutorDefinition:
    """The profile's executor: every step in the run's process (local), or a process per step
    with at most `dagster.max_concurrent` at a time (deployment; DuckDB writers one at a time
    through their pool)."""
    if params.dagster.executor == "multiprocess":
        # Steps fork from a server that imported this module once (torch, Feast, GX, DuckDB:
        # 62 s per process measured on 2 loaded cores) instead of each spawning a fresh
        # interpreter that imports it again; the import leaves one thread, so forking is safe.
        return dg.multiprocess_executor.configured(
            {
                "max_concurrent": params.dagster.max_concurrent,
                "start_method": {"forkserver": {"preload_modules": [__name__]}},
            }
        )
    return dg.in_process_executor


defs = build_definitions()
