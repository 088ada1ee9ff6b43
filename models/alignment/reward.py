"""The ranker's predicted engagement y^_k of RFT samples (unirec eq. 21).

An RFT sample is an engagement (u_i, x_i) inside one logged request. The day's DIG ranker
scored every exposure of its training window with the features of that request (its run
folder's `samples.parquet`, point-in-time from Feast), so a sample's y^_k are the ranker's
rank-path probabilities of its (request, item) exposure row, one per objective in
`ranker.objectives` (click, purchase, ...). The ranker saw these rows in training: y^_k are
its in-sample estimates, as a production ranker's are for yesterday's traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.ranker.checkpoint import load_ranker
from models.ranker.data import encode_frame
from models.ranker.stage import SAMPLES
from models.ranker.train import predict_tasks


@dataclass
class Predicted:
    """y^_k per RFT sample and how many samples found their exposure row."""

    probs: dict[str, np.ndarray]  # objective -> (n,) probability
    matched: np.ndarray  # (n,) bool: the (request, item) row was in the ranker's samples


def ranker_predictions(ranker: Path, users: pd.DataFrame, keys: pd.DataFrame) -> Predicted:
    """y^_k for `keys` (columns request_id, item_id; one row per RFT sample) from the ranker
    run folder `ranker`. Samples without an exposure row (outside the ranker's window) get
    the mean prediction of the matched ones (counted in `matched`)."""
    model, enc, raw = load_ranker(ranker)
    rows = pd.read_parquet(ranker / SAMPLES)
    rows = rows[~rows["eval"].to_numpy()].drop_duplicates(["request_id", "item_id"])
    wanted = keys[["request_id", "item_id"]].astype(str).drop_duplicates()
    rows = rows.assign(
        request_id=rows["request_id"].astype(str), item_id=rows["item_id"].astype(str)
    )
    rows = rows.merge(wanted, on=["request_id", "item_id"]).reset_index(drop=True)
    tasks = list(model.cfg.tasks)
    p = predict_tasks(model, encode_frame(rows, enc, users, raw["history_len"]))  # (m, tasks)
    scored = pd.DataFrame(p, columns=tasks).assign(
        request_id=rows["request_id"].to_numpy(), item_id=rows["item_id"].to_numpy()
    )
    joined = (
        keys[["request_id", "item_id"]]
        .astype(str)
        .merge(scored, on=["request_id", "item_id"], how="left")
    )
    matched = joined[tasks[0]].notna().to_numpy()
    probs = {}
    for t in tasks:
        col = joined[t].to_numpy(np.float64)
        fill = float(np.nanmean(col)) if matched.any() else 0.0
        probs[t] = np.where(matched, col, fill)
    return Predicted(probs, matched)
