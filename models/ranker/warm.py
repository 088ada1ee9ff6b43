"""Warm start of the daily ranker retrain: yesterday's DIG ranker as today's initial weights.

As for the retriever (models/retriever/warm.py), most of what the ranker learned carries
over a day: users, items, SID codes (incremental SIDs freeze the old items' codes) and the
feature columns. Starting from yesterday's weights, one short pass over the newest day's
exposures replaces a full pass over the whole window.

Rows of vocabulary-keyed tables are copied by the value they stand for:

    enc.emb.<i>        item-field embeddings (item_id, seller, brand, cat_l1-3)
    user_emb.<i>       user-field embeddings (user_id, age_bucket, region)
    scene_emb          scene embeddings

Every other tensor is copied when its name and shape match (the SID embeddings are keyed by
code, which the plan requires to be unchanged). Today's catalogue buffers (item fields, SID
codes) and the bucket-mean tables are never copied: training refits the bucket means and
the codebooks from today's catalogue. With learned SIDs (`ranker.sid: learned`) the codes
are the ranker's own: the old items keep yesterday's learned codes (copied by item id, new
items keep the table's) and the plan does not compare them with today's table, so the SIDs
stay stable across versions (dig §3.2) and the retrain continues from them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch

from models.ranker.checkpoint import load_ranker
from models.ranker.data import RankerEncoding
from models.ranker.model import DIGRanker
from models.retriever.warm import copy_weights, field_rows
from models.training import WarmPlan, cold
from sidflow.config import WarmStartParams

FRESH = ("item_fields", "item_sids", "codebooks", "bucket_")  # name prefixes never copied
SAME_CONFIG_EXCEPT = ("field_vocab", "mari")  # vocabularies grow daily; rows are remapped;
# mari only picks how serving computes the same function


def _scene_rows(enc: RankerEncoding) -> list[str]:
    return ["\0unknown", *enc.scenes]  # row 0: unknown scene


def _keyed_rows(name: str, model: DIGRanker, enc: RankerEncoding) -> list[str] | None:
    """The row vocabulary of a vocabulary-keyed tensor (list by row), None for other tensors."""
    parts = name.split(".")
    if parts[0] == "enc" and parts[1] == "emb":
        return field_rows(enc.vocab[model.cfg.item_fields[int(parts[2])]])
    if parts[0] == "user_emb":
        return field_rows(enc.vocab[model.cfg.user_fields[int(parts[1])]])
    if parts[0] == "scene_emb":
        return _scene_rows(enc)
    return None


def sid_kept(
    old: DIGRanker, old_enc: RankerEncoding, new: DIGRanker, new_enc: RankerEncoding
) -> float:
    """Share of the items in both catalogues whose SID codes are unchanged."""
    old_rows = old_enc.vocab["item_id"]
    common = [(r, old_rows[v]) for v, r in new_enc.vocab["item_id"].items() if v in old_rows]
    if not common:
        return 0.0
    new_idx, old_idx = (torch.tensor(x) for x in zip(*common, strict=True))
    same = (new.item_sids[new_idx] == old.item_sids[old_idx]).all(dim=1)
    return float(same.float().mean())


def warm_plan(
    ws: WarmStartParams, prev: Path | None, new: DIGRanker, new_enc: RankerEncoding, day: dt.date
) -> WarmPlan:
    """Whether today's ranker may start from `prev`'s weights.

    Cold when warm starts are off, there is no previous run, `cold_every_days` have passed
    since the chain's last cold start, the network or feature columns changed, or the SID
    table re-learned the old items' codes.
    """
    if not ws.enabled:
        return cold("ranker.warm_start.enabled is false")
    if prev is None:
        return cold("no earlier ranker run")
    info = json.loads((prev / "train.json").read_text())
    cold_day = dt.date.fromisoformat(info.get("cold_day", info["day"]))
    if (day - cold_day).days >= ws.cold_every_days:
        return cold(f"last cold start {cold_day}: every {ws.cold_every_days} days")
    old, old_enc, _ = load_ranker(prev)
    skip = set(SAME_CONFIG_EXCEPT)
    a = {k: v for k, v in json.loads(old.cfg.to_json()).items() if k not in skip}
    b = {k: v for k, v in json.loads(new.cfg.to_json()).items() if k not in skip}
    if a != b:
        return cold("ranker settings changed")
    if (old_enc.user_cols, old_enc.cross_cols) != (new_enc.user_cols, new_enc.cross_cols):
        return cold("the feature columns changed")
    if new.cfg.sid == "learned":  # the ranker's own codes carry over (`warm_start`)
        kept = 1.0
    else:
        kept = sid_kept(old, old_enc, new, new_enc)
    if kept < ws.min_sid_kept:
        return cold(f"only {kept:.1%} of the old items kept their SID")
    return WarmPlan("warm", "", str(prev), cold_day.isoformat(), round(kept, 4), old, old_enc)


@torch.no_grad()
def warm_start(
    new: DIGRanker, new_enc: RankerEncoding, old: DIGRanker, old_enc: RankerEncoding
) -> dict[str, list[str]]:
    """Copy `old`'s weights into `new` in place; tensor names per outcome
    ("copied", "remapped" by value, "fresh": keeps its initialisation)."""

    def keyed(name: str) -> tuple[list[str], list[str]] | None:
        rows = _keyed_rows(name, new, new_enc)
        return None if rows is None else (_keyed_rows(name, old, old_enc), rows)

    report = copy_weights(new, old, keyed, skip=lambda name: name.startswith(FRESH))
    if new.cfg.sid == "learned" and old.cfg.sid == "learned":
        old_rows = old_enc.vocab["item_id"]
        pairs = [(r, old_rows[v]) for v, r in new_enc.vocab["item_id"].items() if v in old_rows]
        if pairs:
            new_idx, old_idx = (torch.tensor(x) for x in zip(*pairs, strict=True))
            new.item_sids[new_idx] = old.item_sids[old_idx]
            report.setdefault("remapped", []).append("item_sids")
    return report
