"""Online equals offline: the same (user, candidates) through both paths, compared feature by feature."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.schema import RECENCY, TIMESTAMP, U2I_ATTRIBUTES, end_of_day, view_specs
from features.store import OnlineFeatures, item_attributes, training_frame
from ingestion.warehouse import Warehouse
from sidflow.config import Params
from sidflow.workdir import Workdir


def sample_requests(
    params: Params, day: dt.date, n_users: int = 5, n_items: int = 20, seed: int = 0
) -> list[tuple[str, list[str]]]:
    """Users active on `day` with items they were shown (plus a few never-shown items)."""
    wh = Warehouse(Workdir(params.workdir).warehouse)
    events = wh.query(
        "SELECT DISTINCT user_id, item_id FROM events WHERE day = ? ORDER BY 1, 2", [day]
    )
    catalogue = wh.query("SELECT item_id FROM items ORDER BY 1")["item_id"].tolist()
    rng = np.random.default_rng(seed)
    users = sorted(events["user_id"].unique())
    picked = rng.choice(users, size=min(n_users, len(users)), replace=False) if users else []
    out = []
    for user in picked:
        seen = events.loc[events["user_id"] == user, "item_id"].tolist()[:n_items]
        others = rng.choice(catalogue, size=min(3, len(catalogue)), replace=False).tolist()
        out.append((str(user), list(dict.fromkeys(seen + others))))
    return out


def compare_online_offline(
    params: Params,
    requests: list[tuple[str, list[str]]],
    as_of: dt.datetime,
    store: FeatureStore | None = None,
) -> dict:
    """Features of each (user, items) request at `as_of`, online vs `training_frame`.

    Returns the number of values compared and the mismatches (feature, user, item, both values).
    Floats agree to 1e-9 relative; nulls must be null on both sides.
    """
    attrs = item_attributes(params)
    online = OnlineFeatures(params, attrs=attrs)
    names = [f.name for s in view_specs(params.features).values() for f in s.features]
    names += list(RECENCY)  # the on-demand view user_recency, at the request time
    frames_on, frames_off = [], []
    for user, items in requests:
        frames_on.append(online.get(user, items, request_ts=as_of))
        rows = pd.DataFrame({"user_id": user, "item_id": items, TIMESTAMP: as_of})
        frames_off.append(training_frame(params, rows, store=store or online.store, attrs=attrs))
    if not frames_on:
        return {
            "compared": 0,
            "rows": 0,
            "keys_equal": True,
            "mismatches": [],
            "sample": pd.DataFrame(),
        }
    on, off = pd.concat(frames_on, ignore_index=True), pd.concat(frames_off, ignore_index=True)
    mismatches = []
    for name in names:
        a, b = _as_float(on[name]), _as_float(off[name])
        same = np.isclose(a, b, rtol=1e-9, atol=1e-12) | (np.isnan(a) & np.isnan(b))
        for k in np.flatnonzero(~same)[:5]:
            mismatches.append(
                {
                    "feature": name,
                    "user_id": on.at[k, "user_id"],
                    "item_id": on.at[k, "item_id"],
                    "online": float(a[k]),
                    "offline": float(b[k]),
                }
            )
    keys_equal = all(
        on[a].fillna("").tolist() == off[a].fillna("").tolist() for a in U2I_ATTRIBUTES
    )
    return {
        "compared": int(len(on) * len(names)),
        "rows": len(on),
        "keys_equal": keys_equal,
        "mismatches": mismatches,
        "sample": frames_on[0],
    }


def _as_float(values: pd.Series) -> np.ndarray:
    """Numbers as float64, timestamps as epoch seconds; null -> NaN."""
    if pd.api.types.is_datetime64_any_dtype(values):
        epoch = pd.Timestamp(0, tz="UTC")
        return ((pd.to_datetime(values, utc=True) - epoch) / pd.Timedelta(seconds=1)).to_numpy()
    return values.astype("float64").to_numpy()


def online_as_of(params: Params, day: dt.date, store: FeatureStore) -> dt.datetime:
    """The time the online store reflects: the latest materialized end (at least end of day)."""
    ends = [store.get_feature_view(n).most_recent_end_time for n in view_specs(params.features)]
    ends = [e.astimezone(dt.UTC) for e in ends if e is not None]
    return max([end_of_day(day), *ends])
