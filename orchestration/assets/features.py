"""Stage `features`: u2i cross features and exposure counts (DuckDB SQL), managed by Feast.

feature_tables[d] (DuckDB SQL over the warehouse -> parquet) -> feast_registry[d] (feast apply)
-> online_features[d] (feast materialize). Checks: no row of day d is stamped after the end of
day d or holds a later event (blocking), and online equals offline for a sample of requests.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from features.compute import compute_feature_tables, read_feature_table
from features.consistency import compare_online_offline, online_as_of, sample_requests
from features.report import (
    empty_markdown,
    future_rows,
    plot_png,
    png_markdown,
    preview_markdown,
    tables_markdown,
)
from features.schema import end_of_day, view_specs
from features.store import apply, feature_store, materialize_day
from orchestration.resources import SidflowResource, WarehouseResource

OWNER = "team:ml-features"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def build_feature_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """feature_tables, feast_registry and online_features over `partitions`."""

    @dg.asset(
        group_name="features",
        partitions_def=partitions,
        deps=["warehouse_events", "items", "history_features"],
        kinds={"duckdb", "parquet"},
        owners=[OWNER],
        description="Item exposure stats, user stats and u2i cross stats (user x cat_l2, "
        "cat_l3, brand, seller) of the day, computed in DuckDB SQL from the warehouse; one "
        "parquet file per view, rows stamped end of day (DIG §3.1, UniRec §3.2).",
        check_specs=[
            dg.AssetCheckSpec(
                "no_future_timestamps",
                asset="feature_tables",
                blocking=True,
                description="rows are stamped end of day d and hold no later event",
            )
        ],
    )
    def feature_tables(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ):
        day = _day(context)
        params, paths = sidflow.params, sidflow.paths
        report = compute_feature_tables(
            warehouse.warehouse, paths.features_dir, params.features, day
        )
        tables = {v: read_feature_table(paths.features_dir, v, day) for v in report.rows}
        png = plot_png(report, tables["item_stats"], paths.reports / "features" / f"day={day}.png")
        freshness = max(
            (t["event_timestamp"].max() for t in tables.values() if len(t)), default=None
        )
        yield dg.MaterializeResult(
            metadata={
                "rows_total": sum(len(t) for t in tables.values()),
                **{f"rows_{v}": len(t) for v, t in tables.items()},
                "null_share_mean": round(
                    sum(sum(s.values()) / len(s) for s in report.null_share.values())
                    / len(report.null_share),
                    4,
                ),
                "null_shares": dg.MetadataValue.md(tables_markdown(report)),
                "empty_features": dg.MetadataValue.md(empty_markdown(report)),
                "event_types_present": dg.MetadataValue.json(report.event_types),
                "feature_timestamp": str(freshness) if freshness is not None else "no rows",
                "events_through": str(end_of_day(day)),
                "seconds": round(report.seconds, 3),
                "seconds_per_view": dg.MetadataValue.json(report.seconds_per_view),
                "folder": dg.MetadataValue.path(str(paths.features_dir)),
                "preview": dg.MetadataValue.md(preview_markdown(tables["item_stats"])),
                "preview_u2i": dg.MetadataValue.md(preview_markdown(tables["user_cat_l3"])),
                "plot": dg.MetadataValue.md(png_markdown(png, "feature rows and item CTR")),
                "plot_path": dg.MetadataValue.path(str(png)),
            }
        )
        broken = {v: {k: n for k, n in future_rows(t, day).items() if n} for v, t in tables.items()}
        broken = {v: b for v, b in broken.items() if b}
        yield dg.AssetCheckResult(
            check_name="no_future_timestamps",
            passed=not broken,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "end_of_day": str(end_of_day(day)),
                "violations": dg.MetadataValue.json(broken),
            },
        )

    @dg.asset(
        group_name="features",
        partitions_def=partitions,
        deps=[feature_tables],
        kinds={"feast"},
        owners=[OWNER],
        description="`feast apply`: entities, parquet sources, feature views (with TTLs) and "
        "feature services (ranker, retriever, sid_weights) in the Feast registry.",
    )
    def feast_registry(sidflow: SidflowResource) -> dg.MaterializeResult:
        summary = apply(sidflow.params)
        views = pd.DataFrame(
            [
                {
                    "feature_view": v,
                    "features": n,
                    "entities": ", ".join(s.join_keys),
                    "ttl_days": sidflow.params.features.ttl_days[s.ttl_group],
                }
                for (v, n), s in zip(
                    summary["feature_views"].items(),
                    view_specs(sidflow.params.features).values(),
                    strict=True,
                )
            ]
        )
        return dg.MaterializeResult(
            metadata={
                "project": summary["project"],
                "online_store": summary["online_store"],
                "feature_views": len(summary["feature_views"]),
                "features": sum(summary["feature_views"].values()),
                "feature_services": dg.MetadataValue.json(summary["feature_services"]),
                "entities": dg.MetadataValue.json(summary["entities"]),
                "registry": dg.MetadataValue.path(summary["registry"]),
                "preview": dg.MetadataValue.md(views.to_markdown(index=False)),
            }
        )

    @dg.asset(
        group_name="features",
        partitions_def=partitions,
        deps=[feast_registry, feature_tables],
        kinds={"feast"},
        owners=[OWNER],
        description="`feast materialize` of the day's rows into the online store (SQLite, or "
        "Redis with features.online_store: redis) for serving.",
        check_specs=[
            dg.AssetCheckSpec(
                "online_matches_offline",
                asset="online_features",
                blocking=True,
                description="online features of sampled requests equal the point-in-time "
                "historical features at the same time",
            )
        ],
    )
    def online_features(context: dg.AssetExecutionContext, sidflow: SidflowResource):
        day = _day(context)
        params = sidflow.params
        store = feature_store(params)
        info = materialize_day(params, day, store)
        as_of = online_as_of(params, day, store)
        requests = sample_requests(params, day)
        result = compare_online_offline(params, requests, as_of, store)
        tables = {
            v: read_feature_table(sidflow.paths.features_dir, v, day)
            for v in view_specs(params.features)
        }
        yield dg.MaterializeResult(
            metadata={
                "online_store": store.config.online_store.type,
                "materialized_from": info["start"],
                "materialized_to": info["end"],
                "feature_timestamp_online": str(as_of),
                "rows_materialized": sum(len(t) for t in tables.values()),
                **{f"rows_{v}": len(t) for v, t in tables.items()},
                "seconds": info["seconds"],
                "preview": dg.MetadataValue.md(preview_markdown(result["sample"], max_cols=12)),
            }
        )
        yield dg.AssetCheckResult(
            check_name="online_matches_offline",
            passed=not result["mismatches"] and result.get("keys_equal", True),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "requests": len(requests),
                "values_compared": result["compared"],
                "as_of": str(as_of),
                "mismatches": dg.MetadataValue.json(result["mismatches"][:20]),
            },
        )

    return [feature_tables, feast_registry, online_features]
