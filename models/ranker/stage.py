"""Train and evaluate the DIG ranker for one as-of day: what Dagster and the CLI call.

A run folder (`<workdir>/models/ranker/day=<d>/`, ablations in subfolders):
- `samples.parquet`: the point-in-time sample table (train rows and day d's held-out rows);
- `ranker.safetensors` + `config.json`: weights and what rebuilds and feeds the network
  (serving loads exactly these two files); `loss.png`, `train.json`.
The evaluation (`models/ranker_eval/day=<d>/`): `metrics.json` (the ranker gate reads it),
`roc.png`, and `ablations.json` when the ablations ran.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from models.ranker.checkpoint import load_ranker, save_ranker
from models.ranker.data import (
    ITEM_FIELDS,
    USER_FIELDS,
    RankerEncoding,
    encode_frame,
    item_tables,
)
from models.ranker.model import DIGRanker, RankerConfig
from models.ranker.samples import FeatureGroups, build_ranker_samples, sample_report
from models.ranker.train import (
    PARTS,
    RankerTrainResult,
    plot_loss_parts,
    plot_roc,
    predict,
    ranker_metrics,
    train_ranker,
    train_ranker_distributed,
)
from models.ranker.warm import warm_plan, warm_start
from models.space import FeatureSpace
from models.tracking import RunLink, add_to_run, curve, start_run
from models.training import cold
from sidflow.atomic import write_text_atomic
from sidflow.config import Params, RankerParams

SAMPLES = "samples.parquet"


@dataclass
class RankerRun:
    """What `train_run` did (also written as the run folder's train.json)."""

    day: str
    samples: dict  # rows, click rate, negatives of the sample table (samples.sample_report)
    cross_features: int
    user_features: int
    use_u2i: bool
    u2t: str
    parameters: int
    steps: int
    sample_seconds: float
    train_seconds: float
    first_loss: dict | None  # the loss parts (eq. 8) at the first and last logged steps
    final_loss: dict | None
    start: str  # "warm" | "cold"
    warm: dict  # the warm-start plan: reason, source run, rows copied
    cold_day: str
    world_size: int = 1  # training processes (train.nproc_per_node)
    sid: str = "fixed"  # ranker.sid: fixed (the table's codes) | learned (re-assigned, eq. 2-3)
    collision_start: float = 0.0  # items sharing a full code: the SID table's codes
    collision_final: float = 0.0  # ... the codes the ranker keeps (learned: its own)
    moved_from_table: float = 0.0  # share of items whose code the training moved
    mlflow: dict | None = None  # the MLflow run (models/tracking.RunLink)
    curve: list[dict] = field(default_factory=list)


@dataclass
class RankerEval:
    """What `evaluate_run` measured on day d's held-out exposures."""

    metrics: dict[str, float]  # rank AUC, retrieval AUC per layer, gap, grouped AUC, ...
    predict_seconds: float
    negatives: str | int

    def to_json(self) -> dict:
        """The metrics.json content (flat: the ranker gate reads `rank_auc`, `auc_gap`)."""
        return {
            **self.metrics,
            "predict_seconds": self.predict_seconds,
            "negatives": self.negatives,
        }


def warehouse_events(warehouse, day: dt.date, train_days: int) -> tuple[pd.DataFrame, ...]:  # noqa: ANN001
    """Events the samples need (the window's exposures, every engagement up to d), items, users."""
    first = day - dt.timedelta(days=train_days)
    events = warehouse.query(
        "SELECT event_id, ts, user_id, item_id, request_id, scene, event_type, position, price "
        "FROM events WHERE day <= ? AND (day >= ? OR event_type <> 'exposure')",
        [day, first],
    )
    items = warehouse.query("SELECT * FROM items WHERE first_seen <= ?", [day])
    users = warehouse.query("SELECT * FROM users")
    return events, items, users


def build_model(
    rp: RankerParams,
    enc: RankerEncoding,
    item_fields: torch.Tensor,
    item_sids: torch.Tensor,
    codebook_size: int,
) -> DIGRanker:
    """A fresh DIG ranker sized for the encoding and the SID table."""
    cfg = RankerConfig(
        field_vocab=enc.field_sizes(),
        item_fields=ITEM_FIELDS,
        user_fields=USER_FIELDS,
        n_user_dense=len(enc.user_cols),
        n_cross=len(enc.cross_cols),
        n_layers=item_sids.shape[1],
        codebook_size=codebook_size,
        d_emb=rp.d_emb,
        d_field=rp.d_field,
        cross_layers=rp.cross_layers,
        n_experts=rp.n_experts,
        expert_hidden=rp.expert_hidden,
        u2t_hidden=rp.u2t_hidden,
        u2t=rp.u2t,
        lambda_commit=rp.lambda_commit,
        lambda_sem=rp.lambda_sem,
        lambda_u2t=rp.lambda_u2t,
        ema_decay=rp.ema_decay,
        sid=rp.sid,
        tasks=list(rp.objectives),
        mari=rp.mari,
    )
    return DIGRanker(cfg, item_fields, item_sids)


def train_run(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    sid_frame: pd.DataFrame,
    codebook_size: int,
    day: dt.date,
    out: Path,
    rp: RankerParams | None = None,
    samples: pd.DataFrame | None = None,
    progress: bool = True,
    warm_from: Path | None = None,
) -> RankerRun:
    """Build the samples (unless given), train on the days before d, save the run folder.

    With `warm_from` (the previous day's run folder) and `ranker.warm_start` on, training
    starts from that run's weights and sees only the newest days' exposures, unless
    `models.ranker.warm.warm_plan` says why it must start cold.
    """
    t0 = time.perf_counter()
    rp = rp or params.ranker
    out.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = build_ranker_samples(params, events, items, day)
        samples.to_parquet(out / SAMPLES, index=False)
    t_samples = time.perf_counter() - t0
    space = FeatureSpace.build(items, users, params.data.scenes)
    enc = RankerEncoding.fit(samples, space, FeatureGroups.from_params(params), rp.use_u2i)
    fields, sids = item_tables(space, sid_frame)
    torch.manual_seed(rp.seed)
    model = build_model(rp, enc, fields, sids, codebook_size)
    train_rows = samples[~samples["eval"]].reset_index(drop=True)
    ws, train_params = rp.warm_start, rp
    plan = warm_plan(ws, warm_from, model, enc, day)
    if plan.start == "warm":
        first = pd.Timestamp(day - dt.timedelta(days=ws.days), tz="UTC")
        recent = pd.to_datetime(train_rows["ts"], utc=True) >= first
        if recent.sum() >= 2:
            train_rows = train_rows[recent.to_numpy()].reset_index(drop=True)
            report = warm_start(model, enc, plan.model, plan.previous)
            plan.report = {k: len(v) for k, v in report.items()}
            train_params = rp.model_copy(
                update={"epochs": ws.epochs, "lr": ws.lr, "max_steps": None}
            )
        else:
            plan = cold(f"no exposures in the {ws.days} day(s) before {day}")
    data = encode_frame(train_rows, enc, users, rp.history_len)
    nproc = params.train.nproc_per_node
    if nproc > 1:
        model, result = train_ranker_distributed(
            model, enc, rp.history_len, data, train_params, nproc, out / "torchrun"
        )
    else:
        result = train_ranker(model, data, train_params, progress=progress)
    save_ranker(model, enc, rp.history_len, out, {"day": day.isoformat()})
    plot_loss_parts(result, out / "loss.png", f"ranker loss parts (eq. 8), as of {day}")
    run = RankerRun(
        day=day.isoformat(),
        samples=sample_report(samples),
        cross_features=len(enc.cross_cols),
        user_features=len(enc.user_cols),
        use_u2i=rp.use_u2i,
        u2t=rp.u2t,
        parameters=sum(p.numel() for p in model.parameters()),
        steps=result.steps,
        sample_seconds=round(t_samples, 2),
        train_seconds=round(result.seconds, 2),
        first_loss=result.curve[0] if result.curve else None,
        final_loss=result.curve[-1] if result.curve else None,
        start=plan.start,
        warm=plan.summary(),
        cold_day=plan.cold_day or day.isoformat(),
        world_size=result.world_size,
        sid=result.sid,
        collision_start=round(result.collision_start, 5),
        collision_final=round(result.collision_final, 5),
        moved_from_table=round(result.moved_from_table, 5),
        curve=result.curve,
    )
    link = track(params, run, result, rp, sid_frame, out)
    run.mlflow = link.to_json() if link else None
    write_text_atomic(json.dumps(asdict(run), indent=2), out / "train.json")  # "finished"
    return run


def track(
    params: Params,
    run: RankerRun,
    result: RankerTrainResult,
    rp: RankerParams,
    sid_frame: pd.DataFrame,
    out: Path,
) -> RunLink | None:
    """The run's MLflow record: settings, each loss part's curve (eq. 8), sample figures."""
    sid_version = str(sid_frame["version"].iloc[0]) if "version" in sid_frame else "none"
    return start_run(
        params,
        f"ranker {run.day}",
        {"ranker": rp.model_dump(), "nproc_per_node": params.train.nproc_per_node},
        tags={
            "sidflow.stage": "ranker",
            "sidflow.day": run.day,
            "sidflow.sid_version": sid_version,
            "sidflow.start": run.start,
            "sidflow.run_folder": str(out),
        },
        curves={
            **{f"loss_{k}": curve(result.curve, k) for k in ("total", *PARTS)},
            "sid_collision": curve(result.curve, "collision"),
        },
        metrics={
            **{k: v for k, v in run.samples.items() if isinstance(v, int | float)},
            "steps": run.steps,
            "train_seconds": run.train_seconds,
            "parameters": run.parameters,
            "world_size": run.world_size,
            "collision_start": run.collision_start,
            "collision_final": run.collision_final,
            "moved_from_table": run.moved_from_table,
        },
        artifacts=[out / "loss.png"],
    )


def evaluate_run(run: Path, users: pd.DataFrame, out: Path | None = None) -> RankerEval:
    """Score day d's held-out exposures: metrics.json (+ roc.png) in `out` (default: run)."""
    out = out or run
    out.mkdir(parents=True, exist_ok=True)
    model, enc, raw = load_ranker(run)
    samples = pd.read_parquet(
        run.parent / SAMPLES if not (run / SAMPLES).exists() else run / SAMPLES
    )
    held = samples[samples["eval"]].reset_index(drop=True)
    if held.empty:
        raise ValueError(f"{run}: the sample table has no held-out rows")
    data = encode_frame(held, enc, users, raw["history_len"])
    t0 = time.perf_counter()
    scores = predict(model, data)
    y = held["click"].to_numpy()
    metrics = ranker_metrics(y, scores, held["user_id"].to_numpy(), held["purchase"].to_numpy() > 0)
    result = RankerEval(
        metrics, round(time.perf_counter() - t0, 3), sample_report(held)["negatives"]
    )
    write_text_atomic(json.dumps(result.to_json(), indent=2), out / "metrics.json")
    plot_roc(y, scores, out / "roc.png", f"ranker ROC, day {raw.get('day')}")
    trained = json.loads((run / "train.json").read_text()) if (run / "train.json").exists() else {}
    add_to_run(
        RunLink.from_json(trained.get("mlflow")),
        {f"eval_{k}": v for k, v in metrics.items()},
        artifacts=[out / "roc.png"],
    )
    return result
