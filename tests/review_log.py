"""A small review log with a real calendar (two years), written as a user would hand it over.

Canonical parquet: `items.parquet`, `users.parquet` and the interaction log in
`events/history.parquet` plus one `events/day=YYYY-MM-DD/part-0.parquet` per recent day (the
layout a daily export appends to). Users review items of a favourite category, mostly in the
category's order, so a retriever has something to learn; every event is a purchase in the
`review` scene and there are no exposures, like Amazon's review logs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

START = dt.date(2022, 6, 1)
LAST = dt.date(2024, 5, 31)  # the log's last day
RECENT_DAYS = 4  # the last days, each written to its own events/day=<d>/ folder


def review_log(users: int = 160, items: int = 120, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Canonical items, users and events (purchases in the review scene)."""
    rng = np.random.default_rng(seed)
    cats = 6
    item_ids = [f"B{i:05d}" for i in range(items)]
    cat = np.arange(items) % cats
    items_df = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"product {i} of line {c}" for i, c in enumerate(cat)],
            "cat_l1": "Shop",
            "cat_l2": [f"line {c}" for c in cat],
            "cat_l3": [f"line {c} / {i % 3}" for i, c in enumerate(cat)],
            "brand": [f"brand {i % 9}" for i in range(items)],
            "seller": None,
            "price": np.round(rng.uniform(3, 60, items), 2),
            "first_seen": START,
        }
    )
    span = (LAST - START).days
    recent = [LAST - dt.timedelta(days=k) for k in range(RECENT_DAYS)]
    rows = []
    for u in range(users):
        fav = rng.integers(cats)
        pool = np.flatnonzero(cat == fav)
        n = int(rng.integers(5, 11))
        start = int(rng.integers(len(pool)))
        seq = [
            pool[(start + k) % len(pool)] if rng.random() < 0.85 else rng.integers(items)
            for k in range(n)
        ]
        days = np.sort(rng.integers(0, span - RECENT_DAYS, n))
        when = [START + dt.timedelta(days=int(d)) for d in days]
        if u < 4 * RECENT_DAYS:  # a few users review on each recent day
            when[-1] = recent[u % RECENT_DAYS]
        for k, (item, day) in enumerate(zip(seq, when, strict=True)):
            ts = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=9, seconds=k)
            rows.append(
                (
                    f"r{u:04d}-{k:02d}",
                    ts,
                    f"U{u:04d}",
                    item_ids[item],
                    float(items_df["price"].iloc[item]),
                )
            )
    events = pd.DataFrame(rows, columns=["event_id", "ts", "user_id", "item_id", "price"])
    events = events.assign(
        request_id=None,
        scene="review",
        event_type="purchase",
        position=pd.array([pd.NA] * len(events), dtype="Int64"),
    )
    users_df = pd.DataFrame(
        {"user_id": sorted(events["user_id"].unique()), "age_bucket": None, "region": None}
    )
    cols = [
        "event_id",
        "ts",
        "user_id",
        "item_id",
        "request_id",
        "scene",
        "event_type",
        "position",
        "price",
    ]
    return {"items": items_df, "users": users_df, "events": events[cols]}


def write_review_log(folder: Path, **kwargs: int) -> dict[str, pd.DataFrame]:
    """Write the log as canonical parquet into `folder` (see the module doc); returns it."""
    tables = review_log(**kwargs)
    (folder / "events").mkdir(parents=True, exist_ok=True)
    tables["items"].to_parquet(folder / "items.parquet", index=False)
    tables["users"].to_parquet(folder / "users.parquet", index=False)
    ev = tables["events"]
    day = ev["ts"].dt.date
    first_recent = LAST - dt.timedelta(days=RECENT_DAYS - 1)
    ev[day < first_recent].to_parquet(folder / "events" / "history.parquet", index=False)
    for d in sorted(day[day >= first_recent].unique()):
        out = folder / "events" / f"day={d}"
        out.mkdir()
        ev[day == d].to_parquet(out / "part-0.parquet", index=False)
    return tables


def drop_new_day(folder: Path, day: dt.date, users: list[str], items: list[str]) -> Path:
    """A daily export for `day` landing in the source folder: one review per user."""
    ts = [
        pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=10, seconds=k) for k in range(len(users))
    ]
    frame = pd.DataFrame(
        {
            "event_id": [f"new-{day}-{k}" for k in range(len(users))],
            "ts": ts,
            "user_id": users,
            "item_id": items,
            "request_id": None,
            "scene": "review",
            "event_type": "purchase",
            "position": pd.array([pd.NA] * len(users), dtype="Int64"),
            "price": 10.0,
        }
    )
    out = folder / "events" / f"day={day}"
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "part-0.parquet", index=False)
    return out / "part-0.parquet"
