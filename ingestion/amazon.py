"""Loader for the Amazon 5-core benchmark folders (e.g. `amazon-beauty-2014-5core`).

How the staged files join is documented in the folder's SOURCE.md:
- PLRec/TiCoSeRec item id k = the k-th ASIN in sorted order of datamaps' `item2id`;
- TiCoSeRec uid k = datamaps `id2user[k]` (the reviewerID) = P5/S3-Rec uid k;
- S3-Rec `Beauty.txt` holds each user's sequence in the order the P5/TIGER
  leave-one-out split uses; TiCoSeRec holds the review days.

Reviews become `purchase` events (no exposures are invented). Reviews of one user on
the same day are one second apart in S3-Rec order, so time order equals the standard
sequence order. Missing metadata is kept as null and counted in the report.
"""

from __future__ import annotations

import ast
import csv
import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HISTORY_CAP = 20  # DESIGN.md evaluation protocol: history capped at 20 items


@dataclass
class AmazonDataset:
    """Canonical tables of a 5-core dataset plus its pinned leave-one-out split."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    split: pd.DataFrame
    report: dict = field(default_factory=dict)

    def write(self, out_dir: Path) -> dict[str, Path]:
        """Write every table as parquet and the report as JSON into `out_dir`."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("events", "items", "users", "split"):
            paths[name] = out_dir / f"{name}.parquet"
            getattr(self, name).to_parquet(paths[name], index=False)
        paths["report"] = out_dir / "report.json"
        paths["report"].write_text(json.dumps(self.report, indent=2))
        return paths


def _require(folder: Path, rel: str) -> Path:
    path = folder / rel
    if not path.exists():
        raise FileNotFoundError(f"Amazon 5-core folder {folder} lacks {rel} (see its SOURCE.md)")
    return path


def _read_items(folder: Path) -> pd.DataFrame:
    """PLRec item_description.csv: tab-separated with CSV quoting; ids 1..N."""
    path = _require(folder, "plrec/item_description.csv")
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = [h.split(":")[0] for h in next(reader)]
        for line_no, rec in enumerate(reader, start=2):
            if len(rec) != len(header):
                raise ValueError(f"{path}: record near line {line_no} has {len(rec)} fields")
            rows.append(dict(zip(header, rec, strict=True)))
    df = pd.DataFrame(rows)

    def path_of(s: str) -> list[str]:
        return list(ast.literal_eval("[" + s + "]")) if s else []

    cats = df["categories"].map(path_of)
    return pd.DataFrame(
        {
            "plrec_id": df["item_id"].astype(int),
            "title": df["title"].map(lambda t: html.unescape(t).strip() or None if t else None),
            "cat_l1": cats.map(lambda p: p[0] if len(p) > 0 else None),
            "cat_l2": cats.map(lambda p: p[1] if len(p) > 1 else None),
            "cat_l3": cats.map(lambda p: p[2] if len(p) > 2 else None),
            "brand": df["brand"].map(lambda b: html.unescape(b).strip() or None if b else None),
            "price": pd.to_numeric(df["price"].replace("", None), errors="coerce"),
        }
    )


def _read_sequences(path: Path) -> dict[int, list[int]]:
    seqs = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            seqs[int(parts[0])] = [int(x) for x in parts[1:]]
    return seqs


def load_amazon(folder: Path | str, name: str = "amazon") -> AmazonDataset:
    """Join the staged files into canonical events/items/users and the leave-one-out split."""
    folder = Path(folder)
    maps = json.loads(_require(folder, "p5-datamaps/datamaps.json").read_text())
    sorted_asins = sorted(maps["item2id"])  # PLRec id k -> sorted_asins[k-1]
    items_raw = _read_items(folder)
    items_raw["item_id"] = [sorted_asins[k - 1] for k in items_raw["plrec_id"]]

    t_items = _read_sequences(_require(folder, "ticoserec/Beauty_item_org_rank.txt"))
    t_times = _read_sequences(_require(folder, "ticoserec/Beauty_time_org_rank.txt"))
    p5_seqs = _read_sequences(_require(folder, "s3rec/Beauty.txt"))

    users, items, ts, seq_pos = [], [], [], []
    for uid, p5_items in p5_seqs.items():
        # Review days of this user's items, from TiCoSeRec (same user ids).
        days: dict[str, list[int]] = defaultdict(list)
        for plrec_id, t in zip(t_items[uid], t_times[uid], strict=True):
            days[sorted_asins[plrec_id - 1]].append(t)
        for v in days.values():
            v.sort()
        user = maps["id2user"][str(uid)]
        prev_day, k_in_day = None, 0
        for pos, p5 in enumerate(p5_items):
            asin = maps["id2item"][str(p5)]
            day = days[asin].pop(0)
            k_in_day = k_in_day + 1 if day == prev_day else 0
            prev_day = day
            users.append(user)
            items.append(asin)
            ts.append(day + k_in_day)
            seq_pos.append(pos)
    n = len(users)
    events = pd.DataFrame(
        {
            "event_id": [f"{name}-{i:07d}" for i in range(n)],
            "ts": pd.to_datetime(np.array(ts), unit="s", utc=True),
            "user_id": users,
            "item_id": items,
            "request_id": pd.Series([None] * n, dtype=object),
            "scene": "review",
            "event_type": "purchase",
            "position": pd.array([pd.NA] * n, dtype="Int64"),
        }
    )
    price_of = items_raw.set_index("item_id")["price"]
    events["price"] = events["item_id"].map(price_of).astype("float64")
    events["seq"] = seq_pos

    first_seen = events.groupby("item_id")["ts"].min().dt.date
    items_df = items_raw.drop(columns="plrec_id").assign(
        seller=pd.Series([None] * len(items_raw), dtype=object),
        first_seen=lambda d: d["item_id"].map(first_seen),
    )[["item_id", "title", "cat_l1", "cat_l2", "cat_l3", "brand", "seller", "price", "first_seen"]]
    users_df = pd.DataFrame(
        {
            "user_id": [maps["id2user"][str(u)] for u in sorted(p5_seqs)],
            "age_bucket": pd.Series([None] * len(p5_seqs), dtype=object),
            "region": pd.Series([None] * len(p5_seqs), dtype=object),
        }
    )
    split = leave_one_out_split(events)
    report = {
        "source": str(folder),
        "users": len(users_df),
        "items": len(items_df),
        "events": n,
        "missing_metadata": {c: int(items_df[c].isna().sum()) for c in items_df.columns},
        "exposures": "none: reviews are interactions without impressions",
    }
    return AmazonDataset(events.drop(columns="seq"), items_df, users_df, split, report)


def leave_one_out_split(events: pd.DataFrame) -> pd.DataFrame:
    """Pinned protocol: per user in time order, last item = test, second-to-last = valid.

    One row per (user, role) with the target and the previous `HISTORY_CAP` items
    as the history (a space-free list column), so every evaluation uses the same split.
    """
    ev = events.sort_values(["user_id", "ts", "event_id"], kind="stable")
    rows = []
    for user, g in ev.groupby("user_id", sort=True):
        seq = g["item_id"].tolist()
        ids = g["event_id"].tolist()
        times = g["ts"].tolist()
        for role, k in (("test", len(seq) - 1), ("valid", len(seq) - 2)):
            if k < 1:
                continue
            rows.append(
                {
                    "user_id": user,
                    "role": role,
                    "event_id": ids[k],
                    "item_id": seq[k],
                    "ts": times[k],
                    "history": seq[max(0, k - HISTORY_CAP) : k],
                }
            )
    return pd.DataFrame(rows)
