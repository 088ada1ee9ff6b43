"""Train and evaluate the retriever for one as-of day: the entry point Dagster, DVC and the
CLI share.

A run folder (`<workdir>/models/retriever/day=<d>/`, or `.../<variant>/` for ablations):
- `model.safetensors`: weights + config (metadata), `item_paths.parquet`: the catalogue's
  decoding paths (serving rebuilds the trie from it), `loss.png`, `train.json`;
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

from models.data import attach_profiles, build_samples, encode_batch, time_split
from models.retriever.build import build_retriever
from models.retriever.evaluate import evaluate
from models.retriever.paths import ItemPaths, PathSpec
from models.retriever.trie import PathTrie
from models.train import load_checkpoint, plot_losses, save_checkpoint, train
from sidflow.config import Params, RetrieverModelParams


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


def train_run(params: Params, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
              sid_frame: pd.DataFrame, day: dt.date, out: Path,
              model_params: RetrieverModelParams | None = None, progress: bool = True,
              codebook_size: int | None = None) -> dict:  # fmt: skip
    """Train on engagements before `day`, hold out those on `day`; write the run folder."""
    t0 = time.perf_counter()
    rp = params.retriever
    mp = model_params or rp.model
    torch.manual_seed(rp.train.seed)
    parts = build_retriever(mp, items, users, sid_frame, params.data.scenes, codebook_size)
    samples = attach_profiles(build_samples(events, parts.space, mp.history_len), users,
                              mp.profile_fields)  # fmt: skip
    train_s, eval_s = time_split(samples, day)
    if rp.eval.max_samples and len(eval_s) > rp.eval.max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(eval_s), rp.eval.max_samples, False))
        eval_s = eval_s.subset(pick)
    w = rp.train.engagement_weights
    data = encode_batch(train_s, parts.space, parts.paths, mp.profile_fields, w)
    held = encode_batch(eval_s, parts.space, parts.paths, mp.profile_fields, w)
    result = train(parts.model, data, rp.train, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(parts.model, out / "model.safetensors", {"day": day.isoformat()})
    save_item_paths(parts.paths, out / "item_paths.parquet")
    save_file({k: v.contiguous() for k, v in held.items()}, str(out / "eval.safetensors"))
    (out / "eval_meta.json").write_text(json.dumps({
        "purchase": (eval_s.event_type == "purchase").tolist(), "day": day.isoformat()}))  # fmt: skip
    plot_losses(result, out / "loss.png", f"retriever loss, as of {day}")
    info = {
        "day": day.isoformat(),
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
    }
    (out / "train.json").write_text(json.dumps(info, indent=2))
    return info


def evaluate_run(params: Params, out: Path, progress: bool = False) -> dict:
    """Beam-search evaluation of a run folder under the pinned protocol -> metrics.json."""
    ev = params.retriever.eval
    model = load_checkpoint(out / "model.safetensors")
    paths = load_item_paths(out / "item_paths.parquet", model.cfg.path)
    trie = PathTrie(paths.codes, paths.spec.vocab_sizes)
    held = load_file(str(out / "eval.safetensors"))
    meta = json.loads((out / "eval_meta.json").read_text())
    t0 = time.perf_counter()
    metrics = evaluate(model, held, trie, beam_size=ev.beam_size, hr_ks=ev.hr_ks,
                       rank_ks=ev.rank_ks, batch_size=ev.batch_size,
                       purchase=np.array(meta["purchase"], bool), progress=progress)  # fmt: skip
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
    metrics["beam_size"] = ev.beam_size
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
