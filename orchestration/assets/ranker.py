"""Stage `ranker` and alignment: the DIG ranker and the RFT + DPO aligned retriever.

feast_registry[d] + sid_table[d] -> ranker_model[d] -> ranker_eval[d]   (ranker gate)
retriever_eval[d] + ranker_model[d] -> aligned_retriever[d]   (the ranker's predictions give the
    RFT reward; served instead of the plain retriever only if HR@50 on the acceptance half of
    the held-out samples drops by <= max_hr_drop)
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from ingestion.warehouse import Warehouse
from models.alignment.run import align_run
from models.ranker.stage import evaluate_run, train_run, warehouse_events
from models.tokenizer.table import load_sid_table
from orchestration.assets.cross_day import YESTERDAY, previous_note
from orchestration.assets.retriever import _png_md, metrics_markdown
from orchestration.resources import SidflowResource, WarehouseResource
from sidflow.atomic import write_text_atomic
from sidflow.workdir import previous_run

OWNER = "team:ml"
SKIPPED = "skipped.json"  # a run folder holding this instead of a model: the stage was skipped


def exposure_gap(warehouse: Warehouse, day: dt.date, days: int, stage: str) -> str | None:
    """Why `stage`, which learns from exposures (impressions), cannot run on `day`: None when
    the `days` days before it hold exposures, else the reason (review-only sources)."""
    first = day - dt.timedelta(days=days)
    (n,) = warehouse.query(
        "SELECT count(*) AS n FROM events WHERE event_type = 'exposure' AND day >= ? AND day < ?",
        [first, day],
    )["n"]
    if n:
        return None
    return (
        f"{stage} skipped: no exposures in the {days} day(s) before {day} ({first}.."
        f"{day - dt.timedelta(days=1)}); the source logs no impressions (a review-only source "
        "such as Amazon), so there is nothing to learn a click model or DPO pairs from"
    )


def skip(folder: Path, reason: str, extra: dict | None = None) -> dg.MaterializeResult:
    """Mark a run folder as skipped (with the reason) and say so in the asset's metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("config.json", "metrics.json"):  # a re-run of a day that trained before
        (folder / stale).unlink(missing_ok=True)
    write_text_atomic(json.dumps({"skipped": reason, **(extra or {})}), folder / SKIPPED)
    return dg.MaterializeResult(metadata={"skipped": reason})


def skipped_reason(folder: Path) -> str | None:
    """The reason a run folder was skipped, or None."""
    marker = folder / SKIPPED
    return json.loads(marker.read_text())["skipped"] if marker.exists() else None


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def build_ranker_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """ranker_model, ranker_eval and aligned_retriever over `partitions`."""

    @dg.asset(
        group_name="train",
        partitions_def=partitions,
        deps=[
            "sid_table",
            "feast_registry",
            "warehouse_events",
            dg.AssetDep("ranker_model", partition_mapping=YESTERDAY),  # the warm start
        ],
        kinds={"pytorch", "feast", "safetensors"},
        owners=[OWNER],
        description=(
            "DIG ranker (DIN target attention, DCNv2, MoE) on point-in-time exposure samples "
            "with u2i cross features from Feast; its SID-embedding path with MLP_u2t doubles as "
            "a retriever (five-part loss, dig eq. 8-15). Day d's exposures are held out."
        ),
    )
    def ranker_model(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day, params = _day(context), sidflow.params
        out = sidflow.paths.ranker_dir(day)
        why = exposure_gap(warehouse.warehouse, day, params.ranker.train_days, "ranker")
        if why:
            return skip(out, why)
        (out / SKIPPED).unlink(missing_ok=True)
        sid = load_sid_table(sidflow.paths.sid_dir / f"day={day.isoformat()}")
        events, items, users = warehouse_events(warehouse.warehouse, day, params.ranker.train_days)
        prev = previous_run(out.parent, day)  # yesterday's weights: the daily warm start
        info = train_run(
            params,
            events,
            items,
            users,
            sid.frame,
            sid.K,
            day,
            out,
            progress=False,
            warm_from=prev,
        )
        s = info.samples
        final = info.final_loss or {}
        return dg.MaterializeResult(
            metadata={
                "train_rows": s["train_rows"],
                "eval_rows": s["eval_rows"],
                "click_rate": s["click_rate"],
                "negatives": s["negatives"],
                "cross_features": info.cross_features,
                "parameters": info.parameters,
                "steps": info.steps,
                "start": info.start,  # warm: from the previous day's weights
                "warm_from": previous_note(prev, day),
                "warm_start": dg.MetadataValue.json(info.warm),
                "train_seconds": info.train_seconds,
                **{f"final_loss_{k}": float(v) for k, v in final.items() if k != "step"},
                "samples": dg.MetadataValue.path(str(out / "samples.parquet")),
                "model": dg.MetadataValue.path(str(out / "ranker.safetensors")),
                "loss_curve": _png_md(out / "loss.png", "loss parts (eq. 8)"),
                "preview": dg.MetadataValue.md(metrics_markdown(s)),
            }
        )

    @dg.asset(
        group_name="evaluate",
        partitions_def=partitions,
        deps=[ranker_model],
        kinds={"pytorch", "json"},
        owners=[OWNER],
        description=(
            "Ranker on day d's held-out exposures: rank AUC, retrieval-path AUC per SID layer, "
            "their gap (DIG Table 4) and grouped AUC per user; ROC curves."
        ),
    )
    def ranker_eval(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day = _day(context)
        out = sidflow.paths.ranker_eval_dir(day)
        why = skipped_reason(sidflow.paths.ranker_dir(day))
        if why:
            result = skip(out, why)
            write_text_atomic(json.dumps({"skipped": why}), out / "metrics.json")  # the gate's
            return result
        (out / SKIPPED).unlink(missing_ok=True)
        users = warehouse.warehouse.query("SELECT * FROM users")
        metrics = evaluate_run(sidflow.paths.ranker_dir(day), users, out).to_json()
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        return dg.MaterializeResult(
            metadata={
                **numbers,
                "metrics_json": dg.MetadataValue.path(str(out / "metrics.json")),
                "roc": _png_md(out / "roc.png", "ROC: rank path and retrieval path per layer"),
                "preview": dg.MetadataValue.md(metrics_markdown(metrics)),
            }
        )

    @dg.asset(
        group_name="train",
        partitions_def=partitions,
        deps=["retriever_eval", ranker_model],
        kinds={"pytorch", "safetensors"},
        owners=[OWNER],
        description=(
            "The day's retriever aligned with RFT (reward: the ranker's predicted click, "
            "purchase and GMV, or the logged outcome, eq. 21) and DPO (pairs from the same "
            "request, layer-wise stop-gradient), unirec §3.6; acceptance decided on one half "
            "of the held-out users, HR@K before and after reported on the other."
        ),
    )
    def aligned_retriever(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day, params = _day(context), sidflow.params
        out = sidflow.paths.aligned_retriever_dir(day)
        why = exposure_gap(warehouse.warehouse, day, params.alignment.train_days, "alignment")
        if why:
            return skip(out, why)
        (out / SKIPPED).unlink(missing_ok=True)
        events, items, users = warehouse_events(
            warehouse.warehouse, day, params.alignment.train_days
        )
        m = align_run(
            params,
            events,
            items,
            users,
            day,
            sidflow.paths.retriever_dir(day),
            out,
            progress=False,
            ranker=sidflow.paths.ranker_dir(day),
        )
        table = "| metric | before | after |\n|---|---|---|\n" + "\n".join(
            f"| {k} | {m.before[k] or 0:.4f} | {m.after[k]:.4f} |" for k in m.after
        )
        return dg.MaterializeResult(
            metadata={
                "accepted": m.accepted,
                "hr50_drop": float(m.hr50_drop),
                **{f"after_{k.replace('@', '_at_')}": float(v) for k, v in m.after.items()},
                "reward": str(m.reward.get("source")),
                "reward_note": str(m.reward.get("note") or ""),
                "report_samples": int(m.report.get("samples", 0)),
                "acceptance_samples": int(m.acceptance.get("samples", 0)),
                "rft_samples": m.rft_samples,
                "dpo_pairs": m.dpo_pairs,
                "train_seconds": m.train_seconds,
                "metrics_json": dg.MetadataValue.path(str(out / "metrics.json")),
                "before_after": _png_md(out / "alignment.png", "HR@K before / after alignment"),
                "preview": dg.MetadataValue.md(table + "\n\n" + json.dumps(m.settings)),
            }
        )

    return [ranker_model, ranker_eval, aligned_retriever]
