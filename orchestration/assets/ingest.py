"""Stage `ingest` and `quality`: raw data lands, contracts validate it, the warehouse keeps it.

raw_events[d] -> validated_events[d] -> warehouse_events[d], with items[d] and users[d]
(the catalogue and users as known on day d). Contracts run as blocking asset checks:
a failed data gate stops everything downstream of that day.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from data_contracts.runner import ContractReport, validate_table
from ingestion.canonical import write_parquet_atomic
from ingestion.sources import land, raw_batches
from orchestration.resources import DUCKDB_WRITERS, SidflowResource, WarehouseResource

OWNER = "team:data-platform"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def preview(df: pd.DataFrame, n: int = 8) -> dg.MetadataValue:
    """The first rows as a Markdown table (the asset's preview in the Dagster UI)."""
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False) if len(df) else "_no rows_")


def contract_metadata(report: ContractReport) -> dict:
    """Metadata shared by every contract-validated asset."""
    s = report.summary()
    rules = "\n".join(f"| {r} | {n} |" for r, n in report.failed_rules.items())
    md = {
        "rows_in": s["rows_in"],
        "valid_rows": s["valid_rows"],
        "quarantined_rows": s["quarantined_rows"],
        "quarantine_fraction": s["quarantine_fraction"],
        "rejected_batches": dg.MetadataValue.json(s["rejected_batches"]),
        "failed_rules": dg.MetadataValue.md(
            "| rule | rows |\n|---|---|\n" + rules if rules else "_every rule passed_"
        ),
    }
    if report.docs_index:
        md["data_docs"] = dg.MetadataValue.url(report.docs_index.as_uri())
    return md


def contract_check(name: str, report: ContractReport, max_fraction: float) -> dg.AssetCheckResult:
    """The blocking data gate for one contract run."""
    passed = report.passes_gate(max_fraction)
    reason = (
        "ok"
        if passed
        else f"quarantine fraction {report.quarantine_fraction:.4f} > {max_fraction}"
        if report.quarantine_fraction > max_fraction
        else "; ".join(f"{b['file']}: {b['reason']}" for b in report.rejected_batches)
        or "no rows arrived"
    )
    return dg.AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "quarantine_fraction": report.quarantine_fraction,
            "max_quarantine_fraction": max_fraction,
            "reason": reason,
        },
    )


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
            pool=DUCKDB_WRITERS,
            description=f"The {table} table as of the day: landed, contract-checked, upserted.",
            check_specs=[dg.AssetCheckSpec(f"{table}_contract", asset=table, blocking=True)],
        )
        def _asset(
            context: dg.AssetExecutionContext,
            sidflow: SidflowResource,
            warehouse: WarehouseResource,
        ):
            day = _day(context)
            frame = sidflow.source.items(day) if table == "items" else sidflow.source.users()
            path = land(sidflow.paths, table, day, frame, sidflow.source.name)
            report = validate_table(
                table, [path], sidflow.paths.gx_root, sidflow.quarantine, day=day
            )
            warehouse.warehouse.upsert(table, report.valid)
            yield dg.MaterializeResult(
                metadata={**contract_metadata(report), "preview": preview(report.valid)}
            )
            yield contract_check(
                f"{table}_contract", report, sidflow.params.contracts.max_quarantine_fraction
            )

        return _asset

    @dg.asset(
        group_name="quality",
        partitions_def=partitions,
        deps=["raw_events", "items", "users", "history_events"],
        kinds={"great_expectations", "parquet"},
        owners=[OWNER],
        description="Events that passed the events contract; rejects are quarantined.",
        check_specs=[
            dg.AssetCheckSpec("events_contract", asset="validated_events", blocking=True),
            dg.AssetCheckSpec(
                "every_rule_passed", asset="validated_events", description="warns on any reject"
            ),
        ],
    )
    def validated_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ):
        day = _day(context)
        wh = warehouse.warehouse
        known_items = set(
            wh.query("SELECT item_id FROM items WHERE first_seen <= ?", [day])["item_id"]
        )
        known_users = set(wh.query("SELECT user_id FROM users")["user_id"])
        report = validate_table(
            "events",
            raw_batches(sidflow.paths, "events", day),
            sidflow.paths.gx_root,
            sidflow.quarantine,
            day=day,
            scenes=sidflow.params.data.scenes,
            known_items=known_items,
            known_users=known_users,
        )
        out = write_parquet_atomic(report.valid, sidflow.paths.validated_path("events", day))
        yield dg.MaterializeResult(
            metadata={
                **contract_metadata(report),
                "path": dg.MetadataValue.path(str(out)),
                "quarantine": dg.MetadataValue.path(
                    str(sidflow.quarantine.rows_path("events", day))
                ),
                "preview": preview(report.valid),
            }
        )
        yield contract_check(
            "events_contract", report, sidflow.params.contracts.max_quarantine_fraction
        )
        yield dg.AssetCheckResult(
            check_name="every_rule_passed",
            passed=report.success,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failed_rules": dg.MetadataValue.json(report.failed_rules)},
        )

    @dg.asset(
        group_name="ingest",
        partitions_def=partitions,
        deps=[validated_events],
        kinds={"duckdb"},
        owners=[OWNER],
        pool=DUCKDB_WRITERS,
        description="The day's validated events in the DuckDB warehouse (replaced, never duplicated).",
    )
    def warehouse_events(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        day = _day(context)
        frame = pd.read_parquet(sidflow.paths.validated_path("events", day))
        written = warehouse.warehouse.write_events(frame, [day])
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
            }
        )

    return [
        raw_events,
        _table_asset("items"),
        _table_asset("users"),
        validated_events,
        warehouse_events,
    ]
