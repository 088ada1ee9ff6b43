"""Warm start of the daily retrain: yesterday's retriever as today's initial weights.

A retriever retrained every day need not start from random weights: the catalogue, the users
and the SID codes mostly carry over (incremental SIDs freeze the old items' codes), so the
previous day's weights plus a short pass over the newest engagements give a model as good as
a cold start on the whole window, in a fraction of the steps.

Vocabularies change between days (new items, a new brand), and ids are positions in sorted
vocabularies, so rows are copied by the value they stand for, not by position:

    inputs.field_emb.<field>   sparse-field embeddings      rows keyed by the field's values
    tok.<t>, prefix.<t>        path-token input embeddings  rows keyed by step t's tokens
    heads.<t>.logits           step t's output layer        rows keyed by step t's tokens
    nodes.{emb,bias}.<t>       trie-edge output vectors     rows keyed by the edge's path
    item_head.{emb,bias}       item-head output vectors     rows keyed by the path's item id

Step t's tokens are attribute values on Chain-of-Attribute steps (PathSpec.attr_values) and
codes on SID / dedup steps (same code, same row). Every other tensor is copied when its
name and shape match; what could not be copied keeps its fresh initialisation and is
reported. The item feature buffers always come from today's catalogue.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from models.retriever.model import UniRec
from models.retriever.paths import ItemPaths, PathSpec, load_item_paths
from models.retriever.train import load_checkpoint
from models.training import WarmPlan, cold
from sidflow.config import WarmStartParams

# today's catalogue, never copied
FRESH_BUFFERS = (
    "inputs.item_fields",
    "inputs.item_sids",
    "nodes.codes",
    "nodes.item_ids",
    "item_head.item_ids",
)


def row_pairs(old: list[str], new: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (new_rows, old_rows) of the values present in both vocabularies (lists by row)."""
    at = {v: i for i, v in enumerate(old)}
    pairs = [(i, at[v]) for i, v in enumerate(new) if v in at]
    if not pairs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    new_rows, old_rows = zip(*pairs, strict=True)
    return torch.tensor(new_rows), torch.tensor(old_rows)


def field_rows(vocab: dict[str, int]) -> list[str]:
    """A FeatureSpace vocabulary (value -> id, 0 = missing) as a list by row."""
    rows = [""] * (len(vocab) + 1)
    rows[0] = "\0missing"  # row 0: missing / unseen on both days
    for value, i in vocab.items():
        rows[i] = value
    return rows


def step_rows(spec: PathSpec, t: int) -> list[str]:
    """Step t's tokens as a list by row: attribute values, or the codes themselves."""
    field = spec.fields[t]
    if field in spec.attr_values:
        return list(spec.attr_values[field])
    return [str(c) for c in range(spec.vocab_sizes[t])]


def _keyed_rows(
    name: str, old: UniRec, new: UniRec, old_vocab: dict, new_vocab: dict
) -> tuple[list[str], list[str]] | None:
    """The (old, new) row vocabularies of a vocabulary-keyed tensor, None for other tensors."""
    m = re.fullmatch(r"inputs\.field_emb\.(\w+)\.weight", name)
    if m:
        f = m.group(1)
        return field_rows(old_vocab.get(f, {})), field_rows(new_vocab[f])
    m = re.fullmatch(r"(?:tok|prefix)\.(\d+)\.weight|heads\.(\d+)\.logits\.(?:weight|bias)", name)
    if m:
        t = int(m.group(1) or m.group(2))
        if old.cfg.path.fields != new.cfg.path.fields:
            return None
        return step_rows(old.cfg.path, t), step_rows(new.cfg.path, t)
    m = re.fullmatch(r"nodes\.(?:emb|bias)\.(\d+)\.weight", name)
    if m and old.nodes is not None and old.cfg.path.fields == new.cfg.path.fields:
        t = int(m.group(1))
        return tuple(  # type: ignore[return-value]
            model.nodes.edge_names(t, [step_rows(model.cfg.path, j) for j in range(t + 1)])
            for model in (old, new)
        )
    if re.fullmatch(r"item_head\.(?:emb|bias)\.weight", name) and old.item_head is not None:
        old_ids, new_ids = (
            field_rows(old_vocab.get("item_id", {})),
            field_rows(new_vocab["item_id"]),
        )
        return (
            [old_ids[i] for i in old.item_head.item_ids.tolist()],
            [new_ids[i] for i in new.item_head.item_ids.tolist()],
        )
    return None


@torch.no_grad()
def warm_start(
    new: UniRec,
    old: UniRec,
    new_vocab: dict[str, dict[str, int]],
    old_vocab: dict[str, dict[str, int]],
) -> dict[str, list[str]]:
    """Copy `old`'s weights into `new` in place; returns the tensor names per outcome.

    `*_vocab` are the FeatureSpace vocabularies (field -> value -> id) the models were built
    with. Outcomes: "copied" (same name and shape), "remapped" (rows matched by value),
    "fresh" (no counterpart: keeps its initialisation).
    """
    return copy_weights(
        new,
        old,
        lambda name: _keyed_rows(name, old, new, old_vocab, new_vocab),
        skip=lambda name: name in FRESH_BUFFERS,
    )


@torch.no_grad()
def copy_weights(
    new: torch.nn.Module,
    old: torch.nn.Module,
    keyed_rows: Callable[[str], tuple[list[str], list[str]] | None],
    skip: Callable[[str], bool],
) -> dict[str, list[str]]:
    """Copy `old`'s tensors into `new` in place (shared by the retriever and ranker warm starts).

    `keyed_rows(name)` gives the (old, new) row vocabularies of a vocabulary-keyed tensor
    (rows are copied by value) or None (copied whole when name and shape match); `skip(name)`
    marks tensors never copied. Returns tensor names per outcome: "copied", "remapped",
    "fresh" (no counterpart: keeps its initialisation).
    """
    old_state = old.state_dict()
    report: dict[str, list[str]] = {"copied": [], "remapped": [], "fresh": []}
    for name, tensor in new.state_dict().items():
        if skip(name):
            continue
        src = old_state.get(name)
        if src is None or src.shape[1:] != tensor.shape[1:]:
            report["fresh"].append(name)
            continue
        keyed = keyed_rows(name)
        if keyed is None:
            if src.shape == tensor.shape:
                tensor.copy_(src)
                report["copied"].append(name)
            else:
                report["fresh"].append(name)
            continue
        new_rows, old_rows = row_pairs(keyed[0], keyed[1])
        ok = (old_rows < src.shape[0]) & (new_rows < tensor.shape[0])
        tensor[new_rows[ok]] = src[old_rows[ok]].to(tensor.dtype)
        report["remapped"].append(name)
    return report


def warm_plan(
    ws: WarmStartParams, prev: Path, model: UniRec, paths: ItemPaths, day: dt.date
) -> WarmPlan:
    """Whether today's run (`model` over `paths`) may start from `prev`'s weights.

    Cold when warm starts are off, the previous run is incomplete or built with other model
    settings, `cold_every_days` have passed since the chain's last cold start, or the SID
    table re-learned the old items' codes (rows keyed by code would mean other items).
    """
    if not ws.enabled:
        return cold("retriever.warm_start.enabled is false")
    info = json.loads((prev / "train.json").read_text())
    cold_day = dt.date.fromisoformat(info.get("cold_day", info["day"]))
    if (day - cold_day).days >= ws.cold_every_days:
        return cold(f"last cold start {cold_day}: every {ws.cold_every_days} days")
    if not (prev / "vocab.json").exists():
        return cold(f"{prev} has no vocab.json")
    old = load_checkpoint(prev / "model.safetensors")
    chosen = {"item_head_weight"}  # set on validation by each run, not a setting that changed
    if old.cfg.model.model_dump(exclude=chosen) != model.cfg.model.model_dump(exclude=chosen):
        return cold("retriever.model settings changed")
    old_paths = load_item_paths(prev / "item_paths.parquet", old.cfg.path)
    sid = [f for f in paths.spec.fields if f not in paths.spec.chain]
    if [f for f in old.cfg.path.fields if f not in old.cfg.path.chain] != sid:
        return cold("the SID layers changed")
    chain_old, chain_new = len(old.cfg.path.chain), len(paths.spec.chain)
    before = pd.DataFrame(old_paths.codes[:, chain_old:], columns=sid, index=old_paths.item_ids)
    now = pd.DataFrame(paths.codes[:, chain_new:], columns=sid, index=paths.item_ids)
    common = before.index.intersection(now.index)
    kept = float((before.loc[common] == now.loc[common]).all(axis=1).mean()) if len(common) else 0
    if kept < ws.min_sid_kept:
        return cold(f"only {kept:.1%} of the old items kept their SID")
    vocab = json.loads((prev / "vocab.json").read_text())
    return WarmPlan("warm", "", str(prev), cold_day.isoformat(), round(kept, 4), old, vocab)
