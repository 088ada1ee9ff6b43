"""Training and evaluation samples for the generative retriever (point-in-time).

A sample is one engagement (click / cart / purchase; Amazon reviews are purchases):
the target item, the user's earlier engagements (strictly earlier timestamp, at most
T, most recent last) and the task = (behaviour, scene) for the Task-Conditioned BOS.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.retriever.paths import ItemPaths
from models.space import BEHAVIOURS, FeatureSpace, task_names


@dataclass
class Samples:
    """Encoded samples as aligned arrays (n rows)."""

    user_id: np.ndarray  # (n,) object
    item_id: np.ndarray  # (n,) object: target item
    event_type: np.ndarray  # (n,) object
    scene: np.ndarray  # (n,) object
    day: np.ndarray  # (n,) datetime64[D]
    hist: np.ndarray  # (n, T) item-table rows, 0 = padding, most recent last
    hist_type: np.ndarray  # (n, T) event-type ids (1 + BEHAVIOURS index), 0 = padding
    profile: dict[str, np.ndarray] = field(default_factory=dict)  # user fields, (n,) each

    def __len__(self) -> int:
        return len(self.item_id)

    def subset(self, mask: np.ndarray) -> Samples:
        """Rows where `mask` (bool or index array) selects."""
        return Samples(
            **{k: v[mask] for k, v in self.__dict__.items() if k != "profile"},
            profile={k: v[mask] for k, v in self.profile.items()},
        )


def engaged(events: pd.DataFrame) -> pd.DataFrame:
    """Click / cart / purchase events sorted by user and time."""
    missing = {"user_id", "item_id", "ts", "event_type", "scene"} - set(events.columns)
    if missing:
        raise ValueError(f"events lack column(s) {sorted(missing)}")
    ev = events[events["event_type"].isin(BEHAVIOURS)]
    sort = ["user_id", "ts"] + (["event_id"] if "event_id" in ev.columns else [])
    return ev.sort_values(sort, kind="stable").reset_index(drop=True)


def build_samples(
    events: pd.DataFrame, space: FeatureSpace, history_len: int, min_history: int = 0
) -> Samples:
    """One sample per engagement with its strictly earlier engagements as history."""
    ev = engaged(events)
    n = len(ev)
    rows = space.ids("item_id", ev["item_id"].astype(str))
    types = ev["event_type"].map({b: i + 1 for i, b in enumerate(BEHAVIOURS)}).to_numpy(np.int64)
    ts = pd.to_datetime(ev["ts"], utc=True).dt.tz_convert(None).to_numpy()
    ts = ts.astype("datetime64[ns]").view(np.int64)  # (n,) ns since epoch
    users = ev["user_id"].to_numpy()
    hist = np.zeros((n, history_len), np.int64)
    hist_type = np.zeros((n, history_len), np.int64)
    keep = np.zeros(n, bool)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], n], strict=True):
        ends = s + np.searchsorted(ts[s:e], ts[s:e], side="left")  # strictly earlier ts
        for i in range(s, e):
            lo = max(s, ends[i - s] - history_len)
            k = ends[i - s] - lo
            if k:
                hist[i, -k:] = rows[lo : ends[i - s]]
                hist_type[i, -k:] = types[lo : ends[i - s]]
            keep[i] = k >= min_history
    day = pd.to_datetime(ev["ts"], utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[D]")
    out = Samples(
        user_id=users.astype(object),
        item_id=ev["item_id"].to_numpy().astype(object),
        event_type=ev["event_type"].to_numpy().astype(object),
        scene=ev["scene"].to_numpy().astype(object),
        day=day,
        hist=hist,
        hist_type=hist_type,
    )
    return out.subset(keep)


def samples_from_histories(
    frame: pd.DataFrame,
    space: FeatureSpace,
    history_len: int,
    event_type: str = "purchase",
    scene: str = "review",
) -> Samples:
    """Samples from rows with user_id, item_id, ts and a `history` list (Amazon split)."""
    n = len(frame)
    hist = np.zeros((n, history_len), np.int64)
    for i, h in enumerate(frame["history"]):
        ids = space.ids("item_id", list(h)[-history_len:])
        if len(ids):
            hist[i, -len(ids) :] = ids
    hist_type = np.where(hist > 0, BEHAVIOURS.index(event_type) + 1, 0)
    day = (
        pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(None).to_numpy().astype("datetime64[D]")
    )
    return Samples(
        user_id=frame["user_id"].to_numpy().astype(object),
        item_id=frame["item_id"].to_numpy().astype(object),
        event_type=np.full(n, event_type, object),
        scene=np.full(n, scene, object),
        day=day,
        hist=hist,
        hist_type=hist_type,
    )


def time_split(samples: Samples, day: dt.date) -> tuple[Samples, Samples]:
    """Train = engagements before `day`, eval = engagements on `day`.

    On the first day of a window (nothing earlier) it falls back to a per-user
    leave-last-out split inside the day, so every partition has an evaluation.
    """
    d = np.datetime64(day, "D")
    train, test = samples.day < d, samples.day == d
    if train.any():
        return samples.subset(train), samples.subset(test)
    idx = np.flatnonzero(test)
    last = np.zeros(len(samples), bool)
    users = samples.user_id[idx]
    is_last = np.r_[users[1:] != users[:-1], True]  # samples are sorted by user, time
    last[idx[is_last]] = True
    return samples.subset(test & ~last), samples.subset(last)


def serving_behaviour(event_types: pd.Series | np.ndarray) -> str:
    """The behaviour serving's Task-Conditioned BOS asks with (serving/recommender.py): click
    when the log holds clicks, else its most common engagement (a review log's purchase)."""
    engaged = pd.Series(np.asarray(event_types, dtype=object))
    engaged = engaged[engaged.isin(BEHAVIOURS)]
    if engaged.empty or (engaged == "click").any():
        return "click"
    return str(engaged.value_counts().idxmax())


def encode_batch(
    samples: Samples,
    space: FeatureSpace,
    paths: ItemPaths | None,
    profile_fields: list[str],
    weights: dict[str, float] | None = None,
    bos_behaviour: str | None = None,
) -> dict[str, torch.Tensor]:
    """Tensors for the model: profile, hist, hist_type, task, target (-1 = no path), weight.

    The task (Task-Conditioned BOS, UniRec §3.2) is (the sample's behaviour, its scene), or
    (`bos_behaviour`, its scene) when given: what serving asks with, which cannot know whether
    the engagement it is asked to predict will be a click or a purchase.
    """
    n = len(samples)
    profile = np.zeros((n, len(profile_fields)), np.int64)
    for i, f in enumerate(profile_fields):
        if f == "user_id":
            profile[:, i] = space.ids("user_id", samples.user_id)
        elif f in samples.profile:
            profile[:, i] = space.ids(f, samples.profile[f])
    tasks = {t: i for i, t in enumerate(task_names(space.scenes))}
    asked = samples.event_type if bos_behaviour is None else [bos_behaviour] * n
    task_key = [f"{b}/{s}" for b, s in zip(asked, samples.scene, strict=True)]
    unknown = sorted({k for k in task_key if k not in tasks})
    if unknown:
        raise ValueError(f"samples hold tasks {unknown[:3]} outside {list(tasks)[:6]}...")
    out = {
        "profile": torch.from_numpy(profile),
        "hist": torch.from_numpy(samples.hist),
        "hist_type": torch.from_numpy(samples.hist_type),
        "task": torch.tensor([tasks[k] for k in task_key], dtype=torch.long),
    }
    if paths is not None:
        rows = paths.rows(samples.item_id)
        target = np.where(rows[:, None] >= 0, paths.codes[np.maximum(rows, 0)], -1)
        out["target"] = torch.from_numpy(target)
        out["item_row"] = torch.from_numpy(rows)
    w = weights or {}
    out["weight"] = torch.tensor([w.get(e, 1.0) for e in samples.event_type], dtype=torch.float)
    return out


def attach_profiles(samples: Samples, users: pd.DataFrame, fields: list[str]) -> Samples:
    """Add user profile columns (e.g. age_bucket, region) as attributes of `samples`."""
    prof = users.drop_duplicates("user_id").set_index("user_id")
    for f in fields:
        if f != "user_id" and f in prof.columns:
            samples.profile[f] = prof[f].reindex(samples.user_id).to_numpy()
    return samples
