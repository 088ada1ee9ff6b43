"""Stage `tokenizer`: the day's Semantic ID table (capacity-constrained RQ-KMeans, UniRec §3.2).

sid_table[d] covers the catalogue listed on day d, learnt from events through day d-1
(day d's engagements are what the retriever evaluates on). It runs the same entry point
as `sidflow sid build` and the DVC stages (`models.tokenizer.stage.run_sid_stage`),
starting from the latest earlier version (incremental or warm-started rebuild). The version is
added to the working folder's DVC store and pushed to `dvc.remote_url`
(models/tokenizer/versions.py); its DVC directory hash is the asset's data version.
"""

import base64
import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from features.store import item_weights
from models.retriever.protocol import held_out_event_ids, resolve_protocol
from models.tokenizer.metrics import concentration_table
from models.tokenizer.stage import previous_day_dir, run_sid_stage
from models.tokenizer.versions import add_version
from orchestration.assets.cross_day import YESTERDAY, previous_note
from orchestration.resources import SidflowResource, WarehouseResource

OWNER = "team:ml-tokenizer"


def _png_md(path: Path, alt: str) -> dg.MetadataValue:
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def _layers_md(metrics: dict) -> str:
    rows = []
    for method in ("capacity", "plain"):
        if method not in metrics:
            continue
        rep = metrics[method]
        for level, lay in enumerate(rep["layers"]):
            rows.append(
                {
                    "method": method,
                    "layer": level,
                    "utilisation": lay["utilisation"],
                    "max load / C_cap": lay["max_load_ratio"],
                    "codes over tau*C_cap": lay["codes_over_capacity"],
                    "recon. error": rep["reconstruction_error"][level],
                }
            )
    return pd.DataFrame(rows).to_markdown(index=False)


def exposure_weights(params, day: dt.date) -> tuple[pd.Series | None, str]:  # noqa: ANN001
    """The feature store's item weights through day d-1 (`features.store.item_weights`).

    Returns (weights, source), or (None, reason) when the store cannot answer (no
    item_stats for d-1, e.g. on the first day): the stage then counts exposures (or
    interactions) itself from the warehouse (models/tokenizer/weights.py).
    """
    try:
        series = item_weights(params, day - dt.timedelta(days=1))
    except FileNotFoundError:
        return None, "warehouse counts (no feature-store item_stats for the previous day)"
    except Exception as e:  # noqa: BLE001 - any store failure: fall back, and say why
        return None, f"warehouse counts (feature store failed: {type(e).__name__}: {e})"
    return series, f"feature store item_weights ({series.name})"


def build_sid_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """sid_table over `partitions` (deps: the day's items and the previous days' events)."""

    @dg.asset(
        name="sid_table",
        group_name="sid",
        partitions_def=partitions,
        deps=[
            "items",
            "warehouse_events",  # the stage reads events through d-1 from the warehouse
            dg.AssetDep("feature_tables", partition_mapping=YESTERDAY),  # weights through d-1
            dg.AssetDep("sid_table", partition_mapping=YESTERDAY),  # the version it updates
        ],
        kinds={"pytorch", "parquet", "safetensors"},
        owners=[OWNER],
        description=(
            "Semantic IDs of the day's catalogue: fused item embeddings (MiniLM text + SASRec "
            "ids, UNGER §3.3) quantised by capacity-constrained residual k-means (UniRec "
            "Alg. 1) with a dedup level; versioned by its DVC content hash."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "sid_unique",
                asset="sid_table",
                blocking=True,
                description="SID -> item is one-to-one (serving needs it)",
            ),
            dg.AssetCheckSpec(
                "sid_capacity",
                asset="sid_table",
                description="no code over tau * C_cap except where the repair found no room "
                "(infeasible load); incremental days warn when frozen codes drift over it",
            ),
        ],
    )
    def sid_table(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ):

        day = dt.date.fromisoformat(context.partition_key)
        params, paths, wh = sidflow.params, sidflow.paths, warehouse.warehouse
        previous = previous_day_dir(paths.sid_dir, day)
        protocol = resolve_protocol(params.retriever.eval.protocol, wh, day)
        if protocol == "leave_one_out":
            # every engagement through d but the held-out ones; weights counted from them
            held_out = held_out_event_ids(wh, day, protocol)
            weights, weights_source = None, "warehouse counts without the held-out engagements"
            through = day
        else:  # day d's engagements are held out: the SIDs learn from d-1 and before
            held_out, through = None, day - dt.timedelta(days=1)
            weights, weights_source = exposure_weights(params, day)
            if weights is None:
                context.log.warning(f"sid_table[{day}]: {weights_source}")
        res = run_sid_stage(
            params,
            wh.path,
            paths.sid_dir / f"day={day}",
            as_of=day,
            previous=previous,
            weights=weights,
            events_through=through,
            held_out=held_out,
        )
        version = add_version(params, res.artefacts)  # dvc add + dvc push
        if version.md5 != res.data_version:
            raise RuntimeError(
                f"DVC hashed {res.artefacts} {version.md5}, sidflow {res.data_version}"
            )
        m = res.metrics
        main = m[m["table_method"]]
        churn = m["churn"] or {}
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(version.md5),
            metadata={
                "version": m["version"],
                "dvc_hash": version.md5,
                "dvc_path": version.path,  # in the working folder's DVC store (sid/)
                "dvc_remote": version.remote or "not pushed (dvc.push: false)",
                "mode": m["mode"],
                "mode_reason": m["mode_reason"],
                "previous": previous_note(previous, day),
                "items": m["items"],
                "new_items": m["new_items"] or 0,
                "embedding": m["embedding"],
                "weights": m["weights"],
                "weights_source": weights_source,
                "protocol": protocol,
                "held_out_events": m.get("held_out_events", 0),
                "collision_rate_before_dedup": m["collision_rate_before_dedup"],
                "max_dedup": m["max_dedup"],
                "max_load_ratio": dg.MetadataValue.json(
                    [x["max_load_ratio"] for x in main["layers"]]
                ),
                "utilisation": dg.MetadataValue.json([x["utilisation"] for x in main["layers"]]),
                "infeasible_items": main["infeasible_items"],
                "sid_changed_share": churn.get("sid_changed_share"),
                "churn": dg.MetadataValue.json(churn),
                "layers": dg.MetadataValue.md(_layers_md(m)),
                "concentration": dg.MetadataValue.md(concentration_table(m)),
                "concentration_plot": _png_md(res.plots["concentration"], "UniRec Fig. 3"),
                "loads_plot": _png_md(res.plots["loads"], "code loads / C_cap"),
                "plots": dg.MetadataValue.path(str(res.plots["concentration"].parent)),
                "artefacts": dg.MetadataValue.path(str(res.artefacts)),
                "seconds": dg.MetadataValue.json(m["seconds"]),
                "preview": dg.MetadataValue.md(res.table.frame.head(8).to_markdown(index=False)),
            },
        )
        yield dg.AssetCheckResult(
            check_name="sid_unique",
            passed=bool(m["unique_after_dedup"]),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"items": m["items"], "max_dedup": m["max_dedup"]},
        )
        over = [x["codes_over_capacity"] for x in main["layers"]]
        placed = m["unplaceable"] or [0] * len(over)  # None: incremental, nothing re-placed
        yield dg.AssetCheckResult(
            check_name="sid_capacity",
            # A code may exceed tau * C_cap only by taking an item no code had room for.
            passed=(not params.sid.capacity)
            or all(o <= u for o, u in zip(over, placed, strict=True)),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "codes_over_capacity": dg.MetadataValue.json(over),
                "unplaceable_items": dg.MetadataValue.json(m["unplaceable"]),
                "infeasible_items": main["infeasible_items"],
                "mode": m["mode"],
                "tau": params.sid.tau,
            },
        )

    return [sid_table]
