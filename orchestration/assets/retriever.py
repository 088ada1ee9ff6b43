"""Stage `retriever`: train the UniRec generative retriever on the day's SID table and
training samples, then evaluate it with trie-constrained beam search.

sid_table[d] + warehouse_events[d] -> retriever_model[d] -> retriever_eval[d]
`retriever_eval` writes `metrics.json` (HR@50/100/200 on all and purchase samples,
Recall/NDCG@5/10/20, token hit ratio @3 per step): the numbers the retriever gates read.
"""

import base64
import datetime as dt
import json
from pathlib import Path

import dagster as dg

from models.retriever.protocol import resolve_protocol
from models.retriever.stage import evaluate_run, train_run, warehouse_inputs
from models.tokenizer.table import load_sid_table
from orchestration.assets.cross_day import YESTERDAY, previous_note
from orchestration.resources import SidflowResource, WarehouseResource
from sidflow.workdir import previous_run

OWNER = "team:ml"


def _day(context: dg.AssetExecutionContext) -> dt.date:
    return dt.date.fromisoformat(context.partition_key)


def _png_md(path: Path, title: str) -> dg.MetadataValue:
    """A PNG inlined as Markdown (shown in the Dagster UI's metadata panel)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{data})")


def metrics_markdown(metrics: dict) -> str:
    """Metrics as a two-column Markdown table."""
    rows = "\n".join(
        f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in metrics.items()
    )
    return "| metric | value |\n|---|---|\n" + rows


def build_retriever_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """retriever_model and retriever_eval over `partitions`."""

    @dg.asset(
        group_name="train",
        partitions_def=partitions,
        deps=[
            "sid_table",
            "warehouse_events",
            dg.AssetDep("retriever_model", partition_mapping=YESTERDAY),  # the warm start
        ],
        kinds={"pytorch", "safetensors"},
        owners=[OWNER],
        description=(
            "UniRec generative retriever (Chain-of-Attribute, Task-Conditioned BOS, Content "
            "Summary, cross-attention MMoE decoder, per-step rank heads) trained on "
            "engagements before the day; the day's engagements are held out."
        ),
    )
    def retriever_model(
        context: dg.AssetExecutionContext, sidflow: SidflowResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:

        day = _day(context)
        params = sidflow.params
        protocol = resolve_protocol(params.retriever.eval.protocol, warehouse.warehouse, day)
        sid_folder = sidflow.paths.sid_dir / f"day={day.isoformat()}"
        sid = load_sid_table(sid_folder)
        events, items, users = warehouse_inputs(warehouse.warehouse, day)
        out = sidflow.paths.retriever_dir(day)
        prev = previous_run(out.parent, day)  # yesterday's weights: the daily warm start
        info = train_run(
            params,
            events,
            items,
            users,
            sid.frame,
            day,
            out,
            progress=False,
            codebook_size=sid.K,
            warm_from=prev,
            protocol=protocol,
            sid_folder=sid_folder,  # IKD's integrated embeddings (retriever.model.ikd)
        )
        if info.start == "cold" and prev is not None:
            context.log.info(f"retriever_model[{day}]: cold start ({info.warm.get('reason')})")
        summary = {k: v for k, v in info.summary().items() if k not in ("warm", "selection")}
        return dg.MaterializeResult(
            metadata={
                "train_samples": info.train_samples,
                "eval_samples": info.eval_samples,
                "catalogue_paths": info.catalogue_paths,
                "parameters": info.parameters,
                "steps": info.steps,
                "train_seconds": info.train_seconds,
                "protocol": protocol,  # held-out: day d's engagements, or leave-one-out
                "start": info.start,  # warm: from the previous day's weights
                "warm_from": previous_note(prev, day),
                "warm_start": dg.MetadataValue.json(info.warm),
                "final_loss": float(info.final_loss or 0.0),
                "decoding_path": " -> ".join(info.path_fields),
                "sid_version": str(info.sid_version),
                "model": dg.MetadataValue.path(str(out / "model.safetensors")),
                "loss_curve": _png_md(out / "loss.png", "training loss (eq. 19)"),
                "loss_curve_png": dg.MetadataValue.path(str(out / "loss.png")),
                "preview": dg.MetadataValue.md(metrics_markdown(summary)),
            }
        )

    @dg.asset(
        group_name="evaluate",
        partitions_def=partitions,
        deps=[retriever_model],
        kinds={"pytorch", "json"},
        owners=[OWNER],
        description=(
            "Beam-search evaluation of the day's retriever on held-out engagements: HR@K "
            "(all / purchase), Recall/NDCG@K, token hit ratio @3 per decoding step."
        ),
    )
    def retriever_eval(
        context: dg.AssetExecutionContext, sidflow: SidflowResource
    ) -> dg.MaterializeResult:

        day = _day(context)
        out = sidflow.paths.retriever_dir(day)
        result = evaluate_run(sidflow.params, out)
        metrics = result.to_json()
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        return dg.MaterializeResult(
            metadata={
                **{k.replace("@", "_at_"): v for k, v in numbers.items()},
                "metrics_json": dg.MetadataValue.path(str(out / "metrics.json")),
                "metrics": dg.MetadataValue.json(json.loads((out / "metrics.json").read_text())),
                "preview": dg.MetadataValue.md(metrics_markdown(metrics)),
            }
        )

    return [retriever_model, retriever_eval]
