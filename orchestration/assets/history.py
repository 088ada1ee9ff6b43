"""Stage `history`: every source day before the daily calendar, landed as one batch.

A source with years of history is not caught up one Dagster run per day. history_events
lands the events of [first day, daily_from) as one raw batch (`raw/events/history/`), checks
it with the same events contract as a day (timestamps bounded by the history window), and
writes it to the warehouse; items and users as of the last history day go through their
contracts too. history_features computes the feature tables of the history's last
`max(features.ttl_days)` days in one DuckDB pass (older rows are past every TTL at the first
daily partition, so nothing reads them). The daily partitions follow; the first one's SID
stage and training read the whole history from the warehouse.
"""

import datetime as dt
import hashlib

import dagster as dg
import pandas as pd

from data_contracts.references import reference_ids
from data_contracts.runner import validate_table
from features.compute import compute_feature_tables
from ingestion.calendar import SourceCalendar
from ingestion.sources import HISTORY, Source, land, raw_batches
from orchestration.assets.contract_checks import (
    batches_check,
    contract_check,
    contract_metadata,
    preview,
)
from orchestration.resources import DUCKDB_WRITERS, SidflowResource, WarehouseResource

OWNER = "team:data-platform"
HISTORY_JOB = "history_backfill"


def history_signature(source: Source, cal: SourceCalendar) -> str:
    """A digest of the history batch's content (events before daily_from, catalogue as of
    the day before): a re-run with the same signature would change nothing."""
    if cal.history is None:
        return f"none:{cal.daily_from}"
    events = source.events_before(cal.daily_from)
    items = source.items(cal.history[1])
    h = hashlib.sha1(f"{cal.source}:{cal.first_day}:{cal.daily_from}".encode())
    for frame in (events, items):
        h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def history_days(cal: SourceCalendar) -> list[dt.date]:
    """Every calendar day of the history window."""
    first, last = cal.history or (cal.daily_from, cal.daily_from - dt.timedelta(days=1))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def build_history_assets() -> list[dg.AssetsDefinition]:
    """history_events and history_features (not partitioned: one batch)."""

    @dg.asset(
        group_name="ingest",
        kinds={"parquet", "duckdb", "great_expectations"},
        owners=[OWNER],
        pool=DUCKDB_WRITERS,
        description="Every source day before the first daily partition, as one batch: "
        "landed as received, checked by the events, items and users contracts, written to "
        "the warehouse (replacing those days, never duplicating).",
        check_specs=[
            dg.AssetCheckSpec("history_contract", asset="history_events", blocking=True),
            dg.AssetCheckSpec(
                "every_batch_accepted",
                asset="history_events",
                description="warns on a batch set aside",
            ),
        ],
    )
    def history_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ):
        source, cal, paths = sidflow.source, sidflow.calendar, sidflow.paths
        signature = history_signature(source, cal)
        if cal.history is None:
            yield dg.MaterializeResult(
                metadata={"skipped": f"no history: {cal.describe()}", "signature": signature}
            )
            yield dg.AssetCheckResult(
                check_name="history_contract", passed=True, metadata={"reason": "no history batch"}
            )
            yield dg.AssetCheckResult(check_name="every_batch_accepted", passed=True)
            return
        first, last = cal.history
        wh, params, store = warehouse.warehouse, sidflow.params, sidflow.contracts
        limits = params.contracts
        gates = []
        for table, frame in (("items", source.items(last)), ("users", source.users())):
            main = land(paths, table, HISTORY, frame, source.name)
            report = validate_table(
                table,
                raw_batches(paths, table, HISTORY),
                paths.gx_root,
                batch=HISTORY,
                window=(first, last),
                main=main,
                limits=limits,
                ts_unit=params.data.ts_unit,
            )
            store.stage(report, limits.examples)
            if report.gate.passed:
                store.publish(table, HISTORY, wh)
            else:
                gates.append(f"{table}: {report.gate.message}")
            context.log.info(f"history {table}: {report.gate.message}")
        main = land(paths, "events", HISTORY, source.events_before(cal.daily_from), source.name)
        report = validate_table(
            "events",
            raw_batches(paths, "events", HISTORY),
            paths.gx_root,
            batch=HISTORY,
            window=(first, last),
            main=main,
            limits=limits,
            scenes=params.data.scenes,
            items=reference_ids("items", wh, last, raw_batches(paths, "items", HISTORY)),
            users=reference_ids("users", wh, None, raw_batches(paths, "users", HISTORY)),
            ts_unit=params.data.ts_unit,
        )
        staged = store.stage(report, limits.examples)
        passed = report.gate.passed and not gates
        published = store.publish("events", HISTORY, wh, history_days(cal)) if passed else None
        per_year = (
            pd.to_datetime(report.valid["ts"], utc=True).dt.year.value_counts().sort_index()
            if len(report.valid)
            else pd.Series(dtype=int)
        )
        yield dg.MaterializeResult(
            metadata={
                **contract_metadata(report, limits),
                "history": f"{first}..{last}",
                "daily_from": str(cal.daily_from),
                "days_with_events": int(
                    pd.to_datetime(report.valid["ts"], utc=True).dt.date.nunique()
                )
                if len(report.valid)
                else 0,
                "rows_written": published.rows_written if published else 0,
                # a batch stopped at the gate is loaded again by the next run
                "signature": signature if published else f"not loaded: {signature}",
                "published": dg.MetadataValue.path(str(published.validated))
                if published
                else "no: the gate did not pass",
                "staged": dg.MetadataValue.path(str(staged)),
                "events_per_year": dg.MetadataValue.md(
                    per_year.rename_axis("year").reset_index(name="events").to_markdown(index=False)
                    if len(per_year)
                    else "_no rows_"
                ),
                "preview": preview(report.valid),
            }
        )
        yield contract_check("history_contract", report, limits, gates)
        yield batches_check(report)

    @dg.asset(
        group_name="features",
        deps=[history_events],
        kinds={"duckdb", "parquet"},
        owners=[OWNER],
        description="Feature tables of the history's last max(ttl_days) days in one DuckDB "
        "pass (older rows are past every Feast TTL at the first daily partition).",
    )
    def history_features(sidflow: SidflowResource, warehouse: WarehouseResource):
        cal, params = sidflow.calendar, sidflow.params
        if cal.history is None:
            return dg.MaterializeResult(metadata={"skipped": f"no history: {cal.describe()}"})
        first, last = cal.history
        ttl = max(params.features.ttl_days.values())
        start = max(first, last - dt.timedelta(days=ttl - 1))
        report = compute_feature_tables(
            warehouse.warehouse,
            sidflow.paths.features_dir,
            params.features,
            start,
            last,
            ingested_through=last,  # the history batch holds every day up to its last
        )
        s = report.summary()
        return dg.MaterializeResult(
            metadata={
                "days": f"{start}..{last}",
                "rows": dg.MetadataValue.json(s["rows"]),
                "empty_features": dg.MetadataValue.json(s["empty_features"]),
                "seconds": s["seconds"],
            }
        )

    return [history_events, history_features]
