"""Train and evaluate the retriever for one as-of day: the entry point Dagster, DVC, the CLI
and the benchmarks share.

A run folder (`<workdir>/models/retriever/day=<d>/`, or `.../<variant>/` for ablations):
- `model.safetensors`: weights + config (metadata), `item_paths.parquet`: the catalogue's
  decoding paths (serving rebuilds the trie from it), `vocab.json`: the feature space's
  vocabularies (the next day's warm start maps rows by them), `loss.png`, `train.json`
  (written last: a folder without it is an unfinished run);
- `eval.safetensors` + `eval_meta.json`: the held-out samples (models/retriever/protocol.py);
- `metrics.json` and `eval_topk.jsonl` (after `evaluate_run`): what the retriever gates read,
  and the evaluated lists.

`train_run` in steps: `prepare` (feature space, model, samples and their split), `plan_start`
(warm or cold), `fit` (training with model selection on validation; in `train.nproc_per_node`
torchrun processes when > 1), `save`, `track` (the MLflow run, models/tracking.py).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.retriever.build import RetrieverParts, build_retriever
from models.retriever.evaluate import beam_candidates, evaluate
from models.retriever.ikd import integrated_targets, load_integrated
from models.retriever.paths import ItemPaths, load_item_paths, save_item_paths
from models.retriever.protocol import Split, split_samples
from models.retriever.samples import (
    Samples,
    attach_profiles,
    build_samples,
    encode_batch,
    serving_behaviour,
)
from models.retriever.train import (
    TrainResult,
    load_checkpoint,
    plot_losses,
    save_checkpoint,
    train,
    train_distributed,
)
from models.retriever.trie import PathTrie
from models.retriever.validation import BestCheckpoint, choose_item_head_weight
from models.retriever.warm import warm_plan, warm_start
from models.tracking import RunLink, add_to_run, start_run
from models.training import WarmPlan, cold
from sidflow.atomic import write_text_atomic
from sidflow.config import Params, RetrieverModelParams

TOPK_FILE = "eval_topk.jsonl"  # per held-out sample: user, history, target, ranked item ids


@dataclass
class RetrieverRun:
    """What `train_run` did (also written as the run folder's train.json)."""

    day: str
    protocol: str
    start: str  # "warm" | "cold"
    train_samples: int
    train_targets_without_path: int
    eval_samples: int
    catalogue_paths: int
    path_fields: list[str]
    vocab_sizes: list[int]
    parameters: int
    steps: int
    train_seconds: float
    total_seconds: float
    final_loss: float | None
    sid_version: str | None
    cold_day: str
    selection: dict  # the checkpoint and item-head weight chosen on validation, never on test
    warm: dict  # the warm-start plan: reason, source run, rows copied
    world_size: int = 1  # training processes (train.nproc_per_node)
    mlflow: dict | None = None  # the MLflow run (models/tracking.RunLink)
    losses: list[tuple[int, float]] = field(default_factory=list)

    def summary(self) -> dict:
        """Every field but the loss curve."""
        return {k: v for k, v in asdict(self).items() if k != "losses"}


@dataclass
class RetrieverEval:
    """What `evaluate_run` measured (metrics.json holds `metrics` and the named fields)."""

    protocol: str
    samples: int
    beam_size: int
    seconds: float
    metrics: dict[str, float]  # hr@K (all / purchase), recall/ndcg@K, token hit ratio @3
    bos: str  # the Task BOS decoded with: "serving:<behaviour>" or "label" (an oracle)
    split: str = "test"  # the held-out split decoded (valid: a lever measured on validation)

    def to_json(self) -> dict:
        """The metrics.json content (flat: the gates read `hr@50` etc. at the top level)."""
        return {
            **self.metrics,
            "eval_seconds": self.seconds,
            "beam_size": self.beam_size,
            "protocol": self.protocol,
            "samples": self.samples,
            "bos": self.bos,
            "split": self.split,
        }


@dataclass
class Prepared:
    """The day's model, feature space and encoded samples, before training."""

    parts: RetrieverParts
    split: Split
    train: Samples
    held: Samples  # the evaluated samples (capped at retriever.eval.max_samples)
    held_data: dict[str, torch.Tensor]
    valid_data: dict[str, torch.Tensor] | None
    bos: str  # the Task BOS held-out and validation samples are decoded with (eval_bos)
    integrated: np.ndarray | None = None  # (N_paths, D) the paths' integrated embeddings (IKD)
    held_split: str = "test"  # which split `held` is (retriever.eval.held_out)


def warehouse_inputs(warehouse, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Engagement events up to `day`, the catalogue as of `day` and the users."""
    events = warehouse.query(
        "SELECT user_id, item_id, ts, scene, event_type, request_id, event_id FROM events "
        "WHERE day <= ? AND event_type IN ('click', 'cart', 'purchase')",
        [day],
    )
    items = warehouse.query("SELECT * FROM items WHERE first_seen <= ?", [day])
    users = warehouse.query("SELECT * FROM users")
    return events, items, users


def prepare(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    sid_frame: pd.DataFrame,
    day: dt.date,
    mp: RetrieverModelParams,
    codebook_size: int | None,
    protocol: str,
    sid_folder: Path | None = None,
) -> Prepared:
    """Feature space, model, samples split by `protocol`, held-out and validation tensors;
    with `retriever.model.ikd`, the integrated embeddings of `sid_folder` (the SID version the
    `sid_frame` comes from) as IKD's targets (unger §3.4.3)."""
    rp = params.retriever
    vectors = None
    if mp.ikd:
        if sid_folder is None:
            raise ValueError(
                "retriever.model.ikd needs the SID version folder (its embeddings.safetensors)"
            )
        vectors = load_integrated(sid_folder)
    torch.manual_seed(rp.train.seed)
    parts = build_retriever(
        mp,
        items,
        users,
        sid_frame,
        params.data.scenes,
        codebook_size,
        0 if vectors is None else vectors.shape[1],
    )
    integrated = None
    if vectors is not None:
        integrated = vectors.reindex(list(parts.paths.item_ids)).to_numpy(np.float32)
        if np.isnan(integrated).any():
            raise ValueError(f"{sid_folder}: items of the SID table without an embedding")
    samples = build_samples(events, parts.space, mp.history_len)
    samples = attach_profiles(samples, users, mp.profile_fields)
    split = split_samples(samples, day, protocol)
    held = split.test
    if rp.eval.held_out == "valid":  # a lever measured without touching test
        if split.valid is None:
            raise ValueError(
                f"retriever.eval.held_out=valid needs the leave_one_out protocol; '{protocol}' "
                "has no validation split"
            )
        held = split.valid
    if rp.eval.max_samples and len(held) > rp.eval.max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(held), rp.eval.max_samples, False))
        held = held.subset(pick)
    w = rp.train.engagement_weights
    bos, asked = eval_bos(params, events)
    held_data = encode_batch(held, parts.space, parts.paths, mp.profile_fields, w, asked)
    valid_data = None
    if split.valid is not None and len(split.valid):
        n_val = min(rp.eval.valid_samples, len(split.valid))
        pick = np.sort(np.random.default_rng(1).choice(len(split.valid), n_val, replace=False))
        valid = split.valid.subset(pick)
        valid_data = encode_batch(valid, parts.space, parts.paths, mp.profile_fields, w, asked)
    return Prepared(
        parts, split, split.train, held, held_data, valid_data, bos, integrated, rp.eval.held_out
    )


def eval_bos(params: Params, events: pd.DataFrame) -> tuple[str, str | None]:
    """The Task BOS held-out and validation samples are decoded with: serving's behaviour
    (`retriever.eval.bos: serving`, so offline HR is what serving delivers) or each target's
    own behaviour (`label`: an oracle, serving cannot know it) -> (label, behaviour or None)."""
    if params.retriever.eval.bos == "label":
        return "label", None
    behaviour = serving_behaviour(events["event_type"])
    return f"serving:{behaviour}", behaviour


def plan_start(params: Params, prep: Prepared, day: dt.date, warm_from: Path | None) -> WarmPlan:
    """Warm from `warm_from`'s weights (copied into the model, rows matched by value, and
    training narrowed to the newest days), or cold, with the reason."""
    ws = params.retriever.warm_start
    if warm_from is None:
        return cold("no earlier finished run")
    plan = warm_plan(ws, warm_from, prep.parts.model, prep.parts.paths, day)
    recent = prep.train.day >= np.datetime64(day - dt.timedelta(days=ws.days), "D")
    if plan.start == "warm" and not recent.any():
        return cold(f"no engagements in the {ws.days} day(s) before {day}")
    if plan.start == "warm":
        prep.train = prep.train.subset(recent)
        copied = warm_start(prep.parts.model, plan.model, prep.parts.space.vocab, plan.previous)
        plan.report = {k: len(v) for k, v in copied.items()}
    return plan


def fit(
    params: Params, prep: Prepared, plan: WarmPlan, progress: bool, scratch: Path
) -> tuple[TrainResult, dict, dict[str, torch.Tensor]]:
    """Train; keep the validation-best checkpoint and item-head weight (when validation
    exists and `retriever.train.eval_every` > 0). With `train.nproc_per_node` > 1, training
    runs in that many torchrun processes (hand-off folder `scratch`) and keeps the last step's
    weights: checkpoint selection on validation runs in one process only. Returns (result,
    selection, train data)."""
    rp, parts = params.retriever, prep.parts
    tp = rp.train
    if plan.start == "warm":
        ws = rp.warm_start
        tp = tp.model_copy(
            update={
                "epochs": ws.epochs,
                "lr": ws.lr,
                "max_steps": None,
                "warmup_steps": min(tp.warmup_steps, 10),
            }
        )
    mp = parts.model.cfg.model
    data = encode_batch(
        prep.train, parts.space, parts.paths, mp.profile_fields, tp.engagement_weights
    )
    if prep.integrated is not None:  # IKD's targets e_i+ (unger eq. 11), one row per sample
        data["integrated"] = integrated_targets(prep.integrated, data["item_row"])
    nproc = params.train.nproc_per_node
    every = tp.eval_every if prep.valid_data is not None and nproc == 1 else 0
    selector = BestCheckpoint(prep.valid_data, parts.trie, rp.eval.valid_beam) if every else None
    if nproc > 1:
        result = train_distributed(parts.model, data, tp, nproc, scratch)
    else:
        result = train(
            parts.model,
            data,
            tp,
            progress=progress,
            eval_fn=selector,
            eval_every=every,
            patience=tp.patience if every else 0,
        )
    selection: dict = {"checkpoint": f"last step ({result.steps})"}
    if selector is not None:
        selection["checkpoint"] = selector.restore(parts.model, result.evals)
        selection["validation_curve"] = result.evals
    if parts.model.item_head is not None and prep.valid_data is not None:
        w, curve = choose_item_head_weight(
            parts.model, prep.valid_data, parts.trie, rp.eval.valid_beam
        )
        selection["item_head_weight"], selection["item_head_ndcg@10"] = w, curve
    return result, selection, data


def save(out: Path, prep: Prepared, day: dt.date, protocol: str, result: TrainResult) -> None:
    """Weights, decoding paths, vocabularies, held-out samples and the loss curve."""
    parts = prep.parts
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(parts.model, out / "model.safetensors", {"day": day.isoformat()})
    save_item_paths(parts.paths, out / "item_paths.parquet")
    (out / "vocab.json").write_text(json.dumps(parts.space.vocab))
    save_held_out(out, prep, day, protocol)
    plot_losses(result, out / "loss.png", f"retriever loss, as of {day}")


def save_held_out(out: Path, prep: Prepared, day: dt.date, protocol: str) -> None:
    """The held-out samples (`eval.safetensors`) and what identifies them (`eval_meta.json`)."""
    save_file({k: v.contiguous() for k, v in prep.held_data.items()}, str(out / "eval.safetensors"))
    meta = eval_meta(prep.held, prep.parts.space, day, protocol, prep.bos, prep.held_split)
    write_text_atomic(json.dumps(meta), out / "eval_meta.json")


def train_run(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    sid_frame: pd.DataFrame,
    day: dt.date,
    out: Path,
    model_params: RetrieverModelParams | None = None,
    progress: bool = True,
    codebook_size: int | None = None,
    warm_from: Path | None = None,
    protocol: str = "day",
    sid_folder: Path | None = None,
) -> RetrieverRun:
    """Train on the protocol's training engagements as of `day`; write the run folder.

    `protocol` (models/retriever/protocol.py): `day` trains on engagements before `day` and
    holds out those on `day`; `leave_one_out` trains on every engagement through `day` but
    each user's last two, and evaluates on the last. With `warm_from` (an earlier run folder,
    see `previous_run`) and `retriever.warm_start` on, training starts from that run's weights
    and sees only the newest days' engagements, unless `warm_plan` says why it must start cold.
    `sid_folder`: the SID version folder of `sid_frame`, whose item vectors IKD distils
    (needed with `retriever.model.ikd` only).
    """
    t0 = time.perf_counter()
    mp = model_params or params.retriever.model
    prep = prepare(
        params, events, items, users, sid_frame, day, mp, codebook_size, protocol, sid_folder
    )
    plan = plan_start(params, prep, day, warm_from)
    result, selection, data = fit(params, prep, plan, progress, out / "torchrun")
    save(out, prep, day, protocol, result)
    parts = prep.parts
    run = RetrieverRun(
        day=day.isoformat(),
        protocol=protocol,
        start=plan.start,
        train_samples=int((data["target"] >= 0).all(1).sum()),
        train_targets_without_path=int((data["target"] < 0).any(1).sum()),
        eval_samples=len(prep.held),
        catalogue_paths=len(parts.paths),
        path_fields=parts.paths.spec.fields,
        vocab_sizes=parts.paths.spec.vocab_sizes,
        parameters=sum(p.numel() for p in parts.model.parameters()),
        steps=result.steps,
        train_seconds=round(result.seconds, 2),
        total_seconds=round(time.perf_counter() - t0, 2),
        final_loss=result.losses[-1][1] if result.losses else None,
        sid_version=str(sid_frame["version"].iloc[0]) if "version" in sid_frame else None,
        cold_day=plan.cold_day or day.isoformat(),
        selection=selection,
        warm=plan.summary(),
        world_size=result.world_size,
        losses=result.losses,
    )
    link = track(params, run, result, mp, out)
    run.mlflow = link.to_json() if link else None
    write_text_atomic(json.dumps(asdict(run), indent=2), out / "train.json")  # "finished"
    return run


def hold_out(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    sid_frame: pd.DataFrame,
    day: dt.date,
    out: Path,
    model_params: RetrieverModelParams | None = None,
    codebook_size: int | None = None,
    protocol: str = "day",
    sid_folder: Path | None = None,
) -> int:
    """Re-write a finished run folder's held-out samples for `retriever.eval.held_out`,
    without training: the test split of a configuration chosen on validation is then decoded
    once with the very weights validation chose. The inputs must be the run's own (the
    feature space is rebuilt and must equal the run's `vocab.json`). Returns the samples."""
    mp = model_params or params.retriever.model
    prep = prepare(
        params, events, items, users, sid_frame, day, mp, codebook_size, protocol, sid_folder
    )
    trained = json.loads((out / "vocab.json").read_text())
    if json.loads(json.dumps(prep.parts.space.vocab)) != trained:
        raise ValueError(
            f"{out / 'vocab.json'}: the run's feature space differs from the one these inputs "
            "build; its held-out samples cannot be re-written (different data or settings)"
        )
    save_held_out(out, prep, day, protocol)
    return len(prep.held)


def track(
    params: Params, run: RetrieverRun, result: TrainResult, mp: RetrieverModelParams, out: Path
) -> RunLink | None:
    """The run's MLflow record: settings, loss and validation curves, final figures."""
    curves = {"train_loss": result.losses}
    for step, metrics in result.evals:  # validation during training (model selection)
        for key, value in metrics.items():
            curves.setdefault(f"valid_{key}", []).append((step, value))
    return start_run(
        params,
        f"retriever {run.day}",
        {
            "model": mp.model_dump(),
            "train": params.retriever.train.model_dump(),
            "warm_start": params.retriever.warm_start.model_dump(),
            "nproc_per_node": params.train.nproc_per_node,
        },
        tags={
            "sidflow.stage": "retriever",
            "sidflow.day": run.day,
            "sidflow.sid_version": str(run.sid_version),
            "sidflow.start": run.start,
            "sidflow.protocol": run.protocol,
            "sidflow.run_folder": str(out),
        },
        curves=curves,
        metrics={
            "train_samples": run.train_samples,
            "steps": run.steps,
            "train_seconds": run.train_seconds,
            "final_loss": run.final_loss,
            "parameters": run.parameters,
            "world_size": run.world_size,
        },
        artifacts=[out / "loss.png"],
    )


def eval_meta(  # noqa: ANN001
    samples: Samples, space, day: dt.date, protocol: str, bos: str, split: str = "test"
) -> dict:
    """What identifies the held-out samples: their split (test, or valid for a lever), user,
    target, history (item ids, oldest first), the task decoded with (`bos`: see eval_bos) and
    whether it is a purchase, in `eval.safetensors` order."""
    items = {row: item for item, row in space.item_row.items()}  # item-table row -> item id
    asked = samples.event_type if bos == "label" else [bos.split(":", 1)[1]] * len(samples)
    return {
        "day": day.isoformat(),
        "protocol": protocol,
        "split": split,
        "bos": bos,
        "purchase": (samples.event_type == "purchase").tolist(),
        "users": [str(u) for u in samples.user_id],
        "targets": [str(i) for i in samples.item_id],
        "tasks": [f"{b}/{s}" for b, s in zip(asked, samples.scene, strict=True)],
        "histories": [[items[int(r)] for r in row if r > 0] for row in samples.hist],
    }


def evaluate_run(params: Params, out: Path, progress: bool = False) -> RetrieverEval:
    """Beam-search evaluation of a run folder's held-out samples -> metrics.json and the
    evaluated lists (`eval_topk.jsonl`)."""
    ev = params.retriever.eval
    model = load_checkpoint(out / "model.safetensors")
    paths = load_item_paths(out / "item_paths.parquet", model.cfg.path)
    trie = PathTrie(paths.codes, paths.spec.vocab_sizes)
    held = load_file(str(out / "eval.safetensors"))
    meta = json.loads((out / "eval_meta.json").read_text())
    t0 = time.perf_counter()
    ranked, _ = beam_candidates(model, held, trie, ev.beam_size, ev.batch_size, progress)
    metrics = evaluate(
        model,
        held,
        trie,
        beam_size=ev.beam_size,
        hr_ks=ev.hr_ks,
        rank_ks=ev.rank_ks,
        batch_size=ev.batch_size,
        purchase=np.array(meta["purchase"], bool),
        ranked=ranked,
    )
    result = RetrieverEval(
        meta.get("protocol", "day"),
        len(meta["purchase"]),
        ev.beam_size,
        round(time.perf_counter() - t0, 2),
        metrics,
        meta.get("bos", "label"),
        meta.get("split", "test"),
    )
    write_topk(out / TOPK_FILE, meta, paths, ranked)
    write_text_atomic(json.dumps(result.to_json(), indent=2), out / "metrics.json")
    trained = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else {}
    add_to_run(
        RunLink.from_json(trained.get("mlflow")),
        {f"{result.split}_{k}": v for k, v in metrics.items()},
    )
    return result


def write_topk(path: Path, meta: dict, paths: ItemPaths, ranked: np.ndarray) -> Path:
    """The evaluated lists as JSONL, one line per held-out sample, so anyone can score them
    (and serving can be checked against them): {"user", "history", "target", "items"}."""
    ids = paths.item_ids.astype(str)
    lines = []
    for i, row in enumerate(ranked):
        items = ids[row[row >= 0]].tolist()
        lines.append(
            json.dumps(
                {
                    "user": meta["users"][i],
                    "history": meta["histories"][i],
                    "target": meta["targets"][i],
                    "task": meta["tasks"][i],
                    "items": items,
                }
            )
        )
    return write_text_atomic("\n".join(lines) + "\n", path)
