"""Ranker training samples: one row per exposure, point-in-time correct (issue 6, item 1).

A row is one item shown in one request: the click / cart / purchase labels of that item in
that request, the user's engagements strictly before the request (at most T, most recent
last), and every feature of the `ranker` Feast service as of the request, read through
`get_historical_features` (a request on day d sees the feature rows of day d-1, never its
own day). Sources without exposures (Amazon reviews) get sampled negatives instead: every
engagement is a positive and `negatives_per_positive` random catalogue items shown "in the
same request" are negatives, flagged `sampled_negative` in the table and the report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import RECENCY, TIMESTAMP, view_specs
from models.space import BEHAVIOURS
from sidflow.config import Params

LABELS = ["click", "cart", "purchase"]  # an engagement implies a click (the world logs it so)


@dataclass
class FeatureGroups:
    """Which feature columns feed which part of the ranker (DIG Table 1)."""

    user: list[str]  # Type-II request-level: user_stats counts/rates + recency (-> e_u)
    cross: list[str]  # Type-III: item_stats + u2i views (-> c_{u,v}; u2t at retrieval time)
    u2i: list[str]  # the u2i subset of `cross` (dropped by the no-u2i ablation)

    @classmethod
    def from_params(cls, params: Params) -> FeatureGroups:
        """Columns of the feature views, minus raw timestamps (recency is derived from them)."""
        specs = view_specs(params.features)

        def numeric(view: str) -> list[str]:
            return [f.name for f in specs[view].features if f.kind != "timestamp"]

        stamps = {f.name for f in specs["user_stats"].features if f.kind == "timestamp"}
        recency = [name for name, col in RECENCY.items() if col in stamps]
        u2i = [c for v in specs if v.startswith("user_") and v != "user_stats" for c in numeric(v)]
        return cls(user=numeric("user_stats") + recency, cross=numeric("item_stats") + u2i, u2i=u2i)


def exposure_rows(events: pd.DataFrame) -> pd.DataFrame:
    """Exposures with their labels: one row per (request, item) shown."""
    need = {"request_id", "user_id", "item_id", "ts", "scene", "event_type", "position", "price"}
    missing = need - set(events.columns)
    if missing:
        raise ValueError(f"ranker samples: events lack column(s) {sorted(missing)}")
    shown = events[events["event_type"] == "exposure"].drop_duplicates(["request_id", "item_id"])
    rows = shown[["request_id", "user_id", "item_id", "ts", "scene", "position", "price"]].copy()
    keys = ["request_id", "item_id"]
    for label in LABELS:
        hit = events.loc[events["event_type"] == label, keys].drop_duplicates()
        rows = rows.merge(hit.assign(**{label: 1}), "left", keys)
        rows[label] = rows[label].fillna(0).astype("int8")
    rows["click"] = rows[LABELS].max(axis=1).astype("int8")  # carts/purchases follow a click
    rows["sampled_negative"] = False
    return rows.reset_index(drop=True)


def sampled_negative_rows(
    events: pd.DataFrame, catalogue: np.ndarray, per_positive: int, seed: int = 0
) -> pd.DataFrame:
    """Engagements as positives plus `per_positive` uniformly sampled catalogue negatives each."""
    pos = events[events["event_type"].isin(BEHAVIOURS)].copy()
    pos["request_id"] = pos["event_id"].astype(str)  # a review is its own request
    base = pos[["request_id", "user_id", "item_id", "ts", "scene"]].assign(
        position=0, price=pos["price"]
    )
    for label in LABELS:
        base[label] = (pos["event_type"] == label).astype("int8").to_numpy()
    base["click"] = 1
    base["sampled_negative"] = False
    rng = np.random.default_rng(seed)
    neg = base.loc[base.index.repeat(per_positive)].copy()
    draw = rng.integers(0, len(catalogue), len(neg))
    clash = catalogue[draw] == neg["item_id"].to_numpy()
    draw[clash] = (draw[clash] + 1) % len(catalogue)  # never the positive itself
    neg["item_id"] = catalogue[draw]
    neg[LABELS] = 0
    neg["position"] = np.tile(np.arange(1, per_positive + 1), len(base))
    neg["price"] = np.nan
    neg["sampled_negative"] = True
    return pd.concat([base, neg], ignore_index=True)


def attach_history(rows: pd.DataFrame, events: pd.DataFrame, history_len: int) -> pd.DataFrame:
    """Add `history` (item ids) and `history_type`: engagements strictly before each row's ts."""
    eng = events[events["event_type"].isin(BEHAVIOURS)].sort_values(["user_id", "ts"])
    by_user = {
        u: (g["ts"].to_numpy(), g["item_id"].to_numpy(), g["event_type"].to_numpy())
        for u, g in eng.groupby("user_id", sort=False)
    }
    hist, types = [], []
    empty = (np.array([], "datetime64[ns]"), np.array([], object), np.array([], object))
    for user, ts in zip(rows["user_id"].to_numpy(), rows["ts"].to_numpy(), strict=True):
        t, items, kinds = by_user.get(user, empty)
        end = int(np.searchsorted(t, ts, side="left"))
        lo = max(0, end - history_len)
        hist.append(items[lo:end].tolist())
        types.append(kinds[lo:end].tolist())
    return rows.assign(history=hist, history_type=types)


def split_rows(rows: pd.DataFrame, day: dt.date, holdout: float = 0.2) -> np.ndarray:
    """True for held-out rows: day d's requests, or (first day) a hashed share of requests."""
    days = pd.to_datetime(rows["ts"], utc=True).dt.date.to_numpy()
    held = days == day
    if held.all() or not held.any():  # nothing earlier to train on: hold out whole requests
        h = pd.util.hash_pandas_object(rows["request_id"], index=False).to_numpy()
        held = (h % 1000) < holdout * 1000
    return held


def build_ranker_samples(
    params: Params, events: pd.DataFrame, items: pd.DataFrame, day: dt.date, store=None
) -> pd.DataFrame:  # noqa: ANN001
    """The sample table for the ranker of day `day` (train: the days before, eval: day d).

    `events`: canonical events of days (d - train_days .. d) plus all earlier engagements (for
    histories). Columns: request_id, user_id, item_id, ts, scene, position, price, labels,
    sampled_negative, eval, history, history_type, then every `ranker` feature.
    """
    # Feast is a heavy import; serving loads this module without needing it
    from features.store import training_frame

    rp = params.ranker
    first = day - dt.timedelta(days=rp.train_days)
    days = pd.to_datetime(events["ts"], utc=True).dt.date
    window = events[(days >= first) & (days <= day)]
    if (window["event_type"] == "exposure").any():
        rows = exposure_rows(window)
    else:
        catalogue = items["item_id"].astype(str).to_numpy()
        rows = sampled_negative_rows(window, catalogue, rp.negatives_per_positive, rp.seed)
    if rows.empty:
        raise ValueError(f"ranker samples: no exposures or engagements in {first}..{day}")
    rows = rows.sort_values(["ts", "request_id", "position"], kind="stable", ignore_index=True)
    rows["eval"] = split_rows(rows, day)
    held = np.flatnonzero(rows["eval"].to_numpy())
    requests = rows.loc[held, "request_id"].unique()
    if len(held) > rp.max_eval:  # keep whole requests (GAUC and DPO-style pairs need them)
        keep_n = max(1, int(len(requests) * rp.max_eval / len(held)))
        keep = np.random.default_rng(rp.seed).choice(requests, keep_n, replace=False)
        drop = rows["eval"] & ~rows["request_id"].isin(set(keep))
        rows = rows[~drop].reset_index(drop=True)
    rows = attach_history(rows, events, rp.history_len)
    entity = rows[["user_id", "item_id"]].assign(
        **{TIMESTAMP: pd.to_datetime(rows["ts"], utc=True)}
    )
    feats = training_frame(params, entity, "ranker", store=store)
    groups = FeatureGroups.from_params(params)
    cols = [c for c in groups.user + groups.cross if c in feats.columns]
    out = pd.concat([rows, feats[cols].reset_index(drop=True)], axis=1)
    missing = [c for c in groups.user + groups.cross if c not in feats.columns]
    for c in missing:  # e.g. recency for a source without timestamps: a constant column
        out[c] = np.nan
    return out


def sample_report(frame: pd.DataFrame) -> dict:
    """Counts of the sample table (what the asset metadata and closing notes show)."""
    ev = frame["eval"].to_numpy()
    return {
        "rows": len(frame),
        "train_rows": int((~ev).sum()),
        "eval_rows": int(ev.sum()),
        "requests": int(frame["request_id"].nunique()),
        "users": int(frame["user_id"].nunique()),
        "click_rate": float(frame["click"].mean()),
        "purchase_rate": float(frame["purchase"].mean()),
        "sampled_negatives": int(frame["sampled_negative"].sum()),
        "negatives": "sampled (source has no exposures)"
        if frame["sampled_negative"].any()
        else "logged exposures without a click",
        "mean_history": float(frame["history"].map(len).mean()),
    }
