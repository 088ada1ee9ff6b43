"""Train and evaluate the retriever for one as-of day: the entry point Dagster, DVC and the
CLI share.

A run folder (`<workdir>/models/retriever/day=<d>/`, or `.../<variant>/` for ablations):
- `model.safetensors`: weights + config (metadata), `item_paths.parquet`: the catalogue's
  decoding paths (serving rebuilds the trie from it), `vocab.json`: the feature space's
  vocabularies (the next day's warm start maps rows by them), `loss.png`, `train.json`
  (written last: a folder without it is an unfinished run);
- `eval.safetensors` + `eval_meta.json`: the held-out samples (engagements on day d);
- `metrics.json` (after `evaluate_run`): what the retriever gates read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.data import Samples, attach_profiles, build_samples, encode_batch
from models.retriever.build import build_retriever
from models.retriever.evaluate import beam_candidates, evaluate
from models.retriever.paths import ItemPaths, PathSpec
from models.retriever.protocol import split_samples
from models.retriever.trie import PathTrie
from models.retriever.validation import BestCheckpoint, choose_item_head_weight
from models.retriever.warm import warm_start
from models.train import load_checkpoint, plot_losses, save_checkpoint, train
from sidflow.atomic import write_text_atomic
from sidflow.config import Params, RetrieverModelParams, WarmStartParams


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


def save_item_paths(paths: ItemPaths, path: Path) -> Path:
    """The decoding path of every item as parquet (item_id + one column per path field)."""
    frame = pd.DataFrame(paths.codes, columns=paths.spec.fields)
    frame.insert(0, "item_id", paths.item_ids.astype(str))
    frame.to_parquet(path, index=False)
    return path


def load_item_paths(path: Path, spec: PathSpec) -> ItemPaths:
    """Inverse of `save_item_paths` (the spec comes from the checkpoint config)."""
    frame = pd.read_parquet(path)
    if list(frame.columns) != ["item_id", *spec.fields]:
        raise ValueError(f"{path}: columns {list(frame.columns)} do not match {spec.fields}")
    return ItemPaths(spec, frame["item_id"].to_numpy(object), frame[spec.fields].to_numpy())


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
) -> dict:
    """Train on engagements before `day`, hold out those on `day`; write the run folder.

    `protocol` (models/retriever/protocol.py): `day` as above; `leave_one_out` trains on
    every engagement through `day` but each user's last two, and evaluates on the last.

    With `warm_from` (an earlier run folder, see `previous_run`) and `retriever.warm_start`
    on, training starts from that run's weights and sees only the newest days' engagements,
    unless `warm_plan` says why it must start cold.
    """
    t0 = time.perf_counter()
    rp = params.retriever
    mp = model_params or rp.model
    torch.manual_seed(rp.train.seed)
    parts = build_retriever(mp, items, users, sid_frame, params.data.scenes, codebook_size)
    samples = attach_profiles(
        build_samples(events, parts.space, mp.history_len), users, mp.profile_fields
    )
    split = split_samples(samples, day, protocol)
    train_s, eval_s = split.train, split.test
    if rp.eval.max_samples and len(eval_s) > rp.eval.max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(eval_s), rp.eval.max_samples, False))
        eval_s = eval_s.subset(pick)
    w = rp.train.engagement_weights
    held = encode_batch(eval_s, parts.space, parts.paths, mp.profile_fields, w)
    valid = None
    if split.valid is not None and len(split.valid):
        n_val = min(rp.eval.valid_samples, len(split.valid))
        pick = np.sort(np.random.default_rng(1).choice(len(split.valid), n_val, replace=False))
        valid = encode_batch(
            split.valid.subset(pick), parts.space, parts.paths, mp.profile_fields, w
        )
    plan = warm_plan(rp.warm_start, warm_from, parts, day) if warm_from else {"start": "cold"}
    train_params = rp.train
    ws = rp.warm_start
    recent = train_s.day >= np.datetime64(day - dt.timedelta(days=ws.days), "D")
    if plan["start"] == "warm" and not recent.any():
        plan = {"start": "cold", "reason": f"no engagements in the {ws.days} day(s) before {day}"}
    if plan["start"] == "warm":
        train_s = train_s.subset(recent)
        plan["report"] = {
            k: len(v)
            for k, v in warm_start(
                parts.model, plan.pop("model"), parts.space.vocab, plan.pop("vocab")
            ).items()
        }
        train_params = rp.train.model_copy(
            update={
                "epochs": ws.epochs,
                "lr": ws.lr,
                "max_steps": None,
                "warmup_steps": min(rp.train.warmup_steps, 10),
            }
        )
    data = encode_batch(train_s, parts.space, parts.paths, mp.profile_fields, w)
    every = train_params.eval_every if valid is not None else 0
    selector = BestCheckpoint(valid, parts.trie, rp.eval.valid_beam) if every else None
    result = train(
        parts.model, data, train_params, progress=progress, eval_fn=selector, eval_every=every
    )
    selection: dict = {"checkpoint": f"last step ({result.steps})"}
    if selector is not None:
        selection["checkpoint"] = selector.restore(parts.model, result.evals)
        selection["validation_curve"] = result.evals
    if parts.model.item_head is not None and valid is not None:
        weight, curve = choose_item_head_weight(parts.model, valid, parts.trie, rp.eval.valid_beam)
        selection["item_head_weight"], selection["item_head_ndcg@10"] = weight, curve
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(parts.model, out / "model.safetensors", {"day": day.isoformat()})
    save_item_paths(parts.paths, out / "item_paths.parquet")
    (out / "vocab.json").write_text(json.dumps(parts.space.vocab))
    save_file({k: v.contiguous() for k, v in held.items()}, str(out / "eval.safetensors"))
    write_text_atomic(
        json.dumps(eval_meta(eval_s, parts.space, day, protocol)), out / "eval_meta.json"
    )
    plot_losses(result, out / "loss.png", f"retriever loss, as of {day}")
    info = {
        "day": day.isoformat(),
        "protocol": protocol,
        "train_samples": int((data["target"] >= 0).all(1).sum()),
        "train_targets_without_path": int((data["target"] < 0).any(1).sum()),
        "eval_samples": len(eval_s),
        "catalogue_paths": len(parts.paths),
        "path_fields": parts.paths.spec.fields,
        "vocab_sizes": parts.paths.spec.vocab_sizes,
        "parameters": sum(p.numel() for p in parts.model.parameters()),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "final_loss": result.losses[-1][1] if result.losses else None,
        "losses": result.losses,
        "sid_version": str(sid_frame["version"].iloc[0]) if "version" in sid_frame else None,
        "start": plan["start"],
        "selection": selection,  # chosen on the validation split, never on test
        "warm": {k: v for k, v in plan.items() if k != "start"},
        "cold_day": plan.get("cold_day", day.isoformat()),
    }
    write_text_atomic(json.dumps(info, indent=2), out / "train.json")  # the "finished" mark
    return info


def eval_meta(samples: Samples, space, day: dt.date, protocol: str) -> dict:  # noqa: ANN001
    """What identifies the held-out samples: user, target, history (item ids, oldest first),
    task and whether it is a purchase, in `eval.safetensors` order."""
    items = {row: item for item, row in space.item_row.items()}  # item-table row -> item id
    return {
        "day": day.isoformat(),
        "protocol": protocol,
        "purchase": (samples.event_type == "purchase").tolist(),
        "users": [str(u) for u in samples.user_id],
        "targets": [str(i) for i in samples.item_id],
        "tasks": [f"{b}/{s}" for b, s in zip(samples.event_type, samples.scene, strict=True)],
        "histories": [[items[int(r)] for r in row if r > 0] for row in samples.hist],
    }


def previous_run(runs: Path, day: dt.date) -> Path | None:
    """The latest finished run folder (`runs/day=<d'>`, d' < d, with train.json), if any."""
    done = [
        r
        for r in runs.glob("day=*")
        if (r / "train.json").exists() and r.name.removeprefix("day=") < day.isoformat()
    ]
    return max(done, key=lambda r: r.name) if done else None


def warm_plan(ws: WarmStartParams, prev: Path, parts, day: dt.date) -> dict:  # noqa: ANN001
    """Whether today's run may start from `prev`'s weights: {"start": "warm" | "cold", ...}.

    Cold when warm starts are off, the previous run is incomplete or built with other model
    settings, `cold_every_days` have passed since the chain's last cold start, or the SID
    table re-learned the old items' codes (rows keyed by code would mean other items).
    """
    if not ws.enabled:
        return {"start": "cold", "reason": "retriever.warm_start.enabled is false"}
    info = json.loads((prev / "train.json").read_text())
    cold_day = dt.date.fromisoformat(info.get("cold_day", info["day"]))
    base = {"from": str(prev), "cold_day": cold_day.isoformat()}
    if (day - cold_day).days >= ws.cold_every_days:
        return {
            "start": "cold",
            "reason": f"last cold start {cold_day}: every {ws.cold_every_days} days",
        }
    if not (prev / "vocab.json").exists():
        return {"start": "cold", "reason": f"{prev} has no vocab.json"}
    old = load_checkpoint(prev / "model.safetensors")
    chosen = ("item_head_weight",)  # set on validation by each run, not a setting that changed
    if {k: v for k, v in old.cfg.model.items() if k not in chosen} != {
        k: v for k, v in parts.model.cfg.model.items() if k not in chosen
    }:
        return {"start": "cold", "reason": "retriever.model settings changed"}
    old_paths = load_item_paths(prev / "item_paths.parquet", old.cfg.path)
    sid = [f for f in parts.paths.spec.fields if f not in parts.paths.spec.chain]
    if [f for f in old.cfg.path.fields if f not in old.cfg.path.chain] != sid:
        return {"start": "cold", "reason": "the SID layers changed"}
    before = pd.DataFrame(
        old_paths.codes[:, len(old.cfg.path.chain) :], columns=sid, index=old_paths.item_ids
    )
    now = pd.DataFrame(
        parts.paths.codes[:, len(parts.paths.spec.chain) :], columns=sid, index=parts.paths.item_ids
    )
    common = before.index.intersection(now.index)
    kept = float((before.loc[common] == now.loc[common]).all(axis=1).mean()) if len(common) else 0
    if kept < ws.min_sid_kept:
        return {"start": "cold", "reason": f"only {kept:.1%} of the old items kept their SID"}
    vocab = json.loads((prev / "vocab.json").read_text())
    return {"start": "warm", **base, "sid_kept": round(kept, 4), "model": old, "vocab": vocab}


def evaluate_run(params: Params, out: Path, progress: bool = False) -> dict:
    """Beam-search evaluation of a run folder under the pinned protocol -> metrics.json."""
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
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    metrics["beam_size"] = ev.beam_size
    metrics["protocol"] = meta.get("protocol", "day")
    metrics["samples"] = len(meta["purchase"])
    write_topk(out / TOPK_FILE, meta, paths, ranked)
    write_text_atomic(json.dumps(metrics, indent=2), out / "metrics.json")
    return metrics


TOPK_FILE = "eval_topk.jsonl"  # per held-out sample: user, history, target, ranked item ids


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
