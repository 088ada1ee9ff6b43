"""The near-line step: each active user's beam output, precomputed into the bundle.

The beam search is most of a request's CPU time (benchmarks/serve.py `cpu_breakdown`), and
for a user who sends no history of their own its input is fixed for the whole day: the
bundle's history of the user, the user's profile and the scene's Task-Conditioned BOS
(unirec §3.4). So the bundle step (`save_bundle` with `serving.nearline.enabled`) runs it
once per (active user, scene), in batches as the service would, and stores the result in the
bundle as `candidates.parquet` (serving/candidates.py). Active: an engagement in the
`serving.nearline.active_days` days up to the bundle's day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from models.retriever.beam import beam_search
from serving import candidates
from serving.recommender import Recommender, Request
from sidflow.config import ServingParams


def active_users(histories: pd.DataFrame, day: dt.date, days: int) -> list[str]:
    """Users with an engagement in the `days` days up to `day` (all with a history if days=0)."""
    if days <= 0:
        return histories["user_id"].drop_duplicates().astype(str).tolist()
    ts = pd.to_datetime(histories["ts"], utc=True)
    start = pd.Timestamp(day - dt.timedelta(days=days - 1), tz="UTC")
    return histories.loc[ts >= start, "user_id"].drop_duplicates().astype(str).tolist()


def add_nearline(folder: Path, day: dt.date, hist: pd.DataFrame, serving: ServingParams) -> int:
    """Write the near-line candidates of a (staged) bundle folder; returns their rows."""
    rec = Recommender(folder, beam_size=serving.beam_size)  # staged: no candidates yet
    rec.ranker = None  # retrieval only
    users = active_users(hist, day, serving.nearline.active_days)
    table = precompute_candidates(rec, users, rec.space.scenes, serving.nearline.batch)
    candidates.write(folder, table)
    return table.num_rows


@torch.no_grad()
def precompute_candidates(
    rec: Recommender, users: list[str], scenes: list[str], batch: int
) -> pa.Table:
    """The beam output of every (user, scene) with the bundle's history, `batch` requests per
    beam-search pass (as the service batches them)."""
    reqs = [Request(u, s, 1) for u in users for s in scenes]
    cols: dict[str, list] = {name: [] for name in candidates.SCHEMA.names}
    for start in range(0, len(reqs), batch):
        chunk = reqs[start : start + batch]
        inputs, known = rec._encode(chunk)
        idx = np.flatnonzero(known)
        if not len(idx):
            continue
        sub = {k: v[idx] for k, v in inputs.items()}
        rows, logp = beam_search(rec.model, sub, rec.trie, rec.beam_size)  # (B, W) each
        for b, (i, key) in enumerate(zip(idx, candidates.input_keys(sub), strict=True)):
            cols["user_id"].append(chunk[i].user_id)
            cols["scene"].append(chunk[i].scene)
            cols["input_key"].append(key)
            cols["rows"].append(rows[b].numpy().astype(np.int32))
            cols["logp"].append(logp[b].numpy().astype(np.float32))
    return candidates.table(cols, rec.beam_size)
