"""Stage `ingest` and `quality`: raw data lands, contracts validate it, the warehouse keeps it.

raw_events[d] -> validated_events[d] -> warehouse_events[d], with items[d] and users[d]
(the catalogue and users as known on day d). Every batch landed for the day is checked: the
source's and any dropped in beside it. A contract stages its outcome and the blocking data
gate decides whether it is published (warehouse rows, validated file, quarantine and Data
Docs together): a failed gate publishes nothing and stops everything downstream of that day.
"""

import datetime as dt
from pathlib import Path

import dagster as dg

from data_contracts.publish import Published
from data_contracts.references import reference_ids
from data_contracts.report import day_key
from data_contracts.runner import validate_table
from ingestion.sources import land, raw_batches, source_batch
from orchestration.assets.contract_checks import (
    batches_check,
    contract_check,
    contract_metadata,
    preview,
    rules_check,
)
from orchestration.resources import DUCKDB_WRITERS, SidflowResource, WarehouseResource

OWNER = "team:data-platform"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _main(sidflow: SidflowResource, table: str, day: dt.date) -> Path | None:
    """The source's own batch of (table, day), when the source delivered one."""
    path = source_batch(sidflow.paths, table, day, sidflow.source.name)
    return path if path.exists() else None


def _where(published: Published | None, staged: Path | None) -> dict:
    md = {}
    if staged is not None:
        md["staged"] = dg.MetadataValue.path(str(staged))
    if published is not None:
        md["validated"] = dg.MetadataValue.path(str(published.validated))
        md["quarantine"] = dg.MetadataValue.path(str(published.quarantine))
        if published.data_docs:
            md["data_docs"] = dg.MetadataValue.url(published.data_docs.as_uri())
    return md


def build_ingest_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """raw_events, items, users, validated_events and warehouse_events over `partitions`."""

    @dg.asset(
        group_name="ingest",
        partitions_def=partitions,
        kinds={"parquet"},
        owners=[OWNER],
        description="Events as the source delivered them for the day, kept unchanged.",
    )
    def raw_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource
    ) -> dg.MaterializeResult:
        day = _day(context)
        frame = sidflow.source.events(day)
        if len(frame):  # served days: the closed loop's batch is already landed beside it
            land(sidflow.paths, "events", day, frame, sidflow.source.name)
        files = raw_batches(sidflow.paths, "events", day)
        return dg.MaterializeResult(
            metadata={
                "source": sidflow.source.name,
                "rows_from_source": len(frame),
                "batches": dg.MetadataValue.json([f.name for f in files]),
                "landing_folder": dg.MetadataValue.path(str(sidflow.paths.raw_dir("events", day))),
                "preview": preview(frame),
            }
        )

    def _table_asset(table: str) -> dg.AssetsDefinition:
        @dg.asset(
            name=table,
            group_name="ingest",
            partitions_def=partitions,
            kinds={"parquet", "duckdb"},
            owners=[OWNER],
            description=f"The {table} table as of the day: landed, contract-checked (the "
            "source's batch and any dropped in beside it), published when the gate passes.",
            pool=DUCKDB_WRITERS,
            check_specs=[
                dg.AssetCheckSpec(f"{table}_contract", asset=table, blocking=True),
                dg.AssetCheckSpec(
                    "every_batch_accepted", asset=table, description="warns on a batch set aside"
                ),
            ],
        )
        def _asset(
            context: dg.AssetExecutionContext,
            sidflow: SidflowResource,
            warehouse: WarehouseResource,
        ):
            day, params = _day(context), sidflow.params
            frame = sidflow.source.items(day) if table == "items" else sidflow.source.users()
            main = land(sidflow.paths, table, day, frame, sidflow.source.name)
            report = validate_table(
                table,
                raw_batches(sidflow.paths, table, day),
                sidflow.paths.gx_root,
                day=day,
                main=main,
                limits=params.contracts,
                ts_unit=params.data.ts_unit,
            )
            store = sidflow.contracts
            staged = store.stage(report, params.contracts.examples)
            published = (
                store.publish(table, report.key, warehouse.warehouse)
                if report.gate.passed
                else None
            )
            yield dg.MaterializeResult(
                metadata={
                    **contract_metadata(report, params.contracts),
                    **_where(published, None if published else staged),
                    "preview": preview(report.valid),
                }
            )
            yield contract_check(f"{table}_contract", report, params.contracts)
            yield batches_check(report)

        return _asset

    @dg.asset(
        group_name="quality",
        partitions_def=partitions,
        deps=["raw_events", "items", "users", "history_events"],
        kinds={"great_expectations", "parquet"},
        owners=[OWNER],
        description="The day's events checked by the events contract and staged (kept rows, "
        "quarantined rows, batches set aside); warehouse_events publishes them.",
        check_specs=[
            dg.AssetCheckSpec("events_contract", asset="validated_events", blocking=True),
            dg.AssetCheckSpec(
                "every_batch_accepted",
                asset="validated_events",
                description="warns on a batch set aside",
            ),
            dg.AssetCheckSpec(
                "every_rule_passed",
                asset="validated_events",
                description="warns on any quarantined row or kept orphan engagement",
            ),
        ],
    )
    def validated_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ):
        day, params, paths = _day(context), sidflow.params, sidflow.paths
        wh = warehouse.warehouse
        report = validate_table(
            "events",
            raw_batches(paths, "events", day),
            paths.gx_root,
            day=day,
            main=_main(sidflow, "events", day),
            limits=params.contracts,
            scenes=params.data.scenes,
            items=reference_ids("items", wh, day, raw_batches(paths, "items", day)),
            users=reference_ids("users", wh, None, raw_batches(paths, "users", day)),
            ts_unit=params.data.ts_unit,
        )
        staged = sidflow.contracts.stage(report, params.contracts.examples)
        yield dg.MaterializeResult(
            metadata={
                **contract_metadata(report, params.contracts),
                **_where(None, staged),
                "preview": preview(report.valid),
            }
        )
        yield contract_check("events_contract", report, params.contracts)
        yield batches_check(report)
        yield rules_check(report, params.contracts)

    @dg.asset(
        group_name="ingest",
        partitions_def=partitions,
        deps=[validated_events],
        kinds={"duckdb"},
        owners=[OWNER],
        pool=DUCKDB_WRITERS,
        description="The day's staged events published: the warehouse rows (the day replaced, "
        "never duplicated), validated file, quarantine and Data Docs change together.",
    )
    def warehouse_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        day = _day(context)
        published = sidflow.contracts.publish("events", day_key(day), warehouse.warehouse, [day])
        written = published.rows_written
        counts = warehouse.warehouse.counts()
        by_type = warehouse.warehouse.query(
            "SELECT event_type, count(*) AS n FROM events WHERE day = ? GROUP BY 1 ORDER BY 2 DESC",
            [day],
        )
        return dg.MaterializeResult(
            metadata={
                "rows_written": written,
                "warehouse_events_total": counts["events"],
                "warehouse_items_total": counts["items"],
                "warehouse_users_total": counts["users"],
                "by_event_type": preview(by_type),
                "warehouse": dg.MetadataValue.path(str(warehouse.warehouse.path)),
                **_where(published, None),
            }
        )

    return [
        raw_events,
        _table_asset("items"),
        _table_asset("users"),
        validated_events,
        warehouse_events,
    ]
