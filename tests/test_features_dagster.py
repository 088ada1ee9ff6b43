"""The feature assets run in the daily job: two tiny days through Dagster, checks pass."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from features.compute import read_feature_table
from features.schema import end_of_day
from orchestration.dagster_home import ensure_dagster_home
from orchestration.definitions import DAILY_JOB, DATA_JOB, build_definitions
from sidflow.workdir import Workdir

FEATURE_ASSETS = ["feature_tables", "feast_registry", "online_features"]
INGEST_ASSETS = ["raw_events", "items", "users", "validated_events", "warehouse_events"]


def test_feature_assets_join_the_daily_job(tiny_params):
    defs = build_definitions(tiny_params, {"world.size": "tiny"})
    job = defs.resolve_job_def(DAILY_JOB)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert set(FEATURE_ASSETS) <= keys
    # the catch-up job keeps the offline tables only; the next full run loads the online store
    data = defs.resolve_job_def(DATA_JOB).asset_layer.executable_asset_keys
    assert {"feature_tables", "feast_registry"} <= {k.to_user_string() for k in data}
    assert "online_features" not in {k.to_user_string() for k in data}


def test_two_days_of_features_through_dagster(tiny_params, tiny_world):
    """Ingest and feature assets of the daily job (later stages left out: faster)."""
    days = tiny_world.days[:2]
    wd = Workdir(tiny_params.workdir)
    ensure_dagster_home(tiny_params)
    job = build_definitions(tiny_params, {"world.size": "tiny"}).resolve_job_def(DAILY_JOB)
    selection = [dg.AssetKey(k) for k in [*INGEST_ASSETS, *FEATURE_ASSETS]]
    with dg.DagsterInstance.get() as instance:
        for day in days:
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, asset_selection=selection
            )
            assert result.success, day
            checks = result.get_asset_check_evaluations()
            assert all(c.passed for c in checks), [c.check_name for c in checks]
            names = {c.check_name for c in checks}
            assert {"no_future_timestamps", "online_matches_offline"} <= names
    for day in days:
        table = read_feature_table(wd.features_dir, "user_cat_l3", day)
        assert len(table) > 0
        assert (table["event_timestamp"] == pd.Timestamp(end_of_day(day))).all()
    with dg.DagsterInstance.get() as instance:
        for name in FEATURE_ASSETS:
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None, name
            mat = event.asset_materialization
            assert mat.partition == days[-1].isoformat()
            assert "preview" in mat.metadata, name
        tables = instance.get_latest_materialization_event(dg.AssetKey("feature_tables"))
        md = tables.asset_materialization.metadata
        assert md["rows_total"].value > 0 and "null_shares" in md and "plot" in md
        assert md["feature_timestamp"].value == str(pd.Timestamp(end_of_day(days[-1])))
