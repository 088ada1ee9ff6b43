"""Make a review-only dataset (a canonical parquet source folder) for `benchmarks/amazon.py`.

Two transformations, either or both:

- `--purchases-only`: keep only a log's purchases (as Amazon keeps only reviews), then the
  k-core filter Amazon's 5-core files use (every user and item with >= `--core` events,
  repeated until stable). Applied to the synthetic world (`sidflow world --size medium`) it
  gives the second category of the quality issue: a review log whose ground truth is known.
- `--messy`: a messy catalogue: titles removed, categories, brand and seller replaced by
  salted hashes (anonymised ids that keep which items share a value, not what it means), so
  text SIDs and the Chain-of-Attribute lose their footing.

Users and items are kept when they appear in the kept events. Prints JSON (counts, date range).

    python benchmarks/review_log.py --src WORLD_OR_PARQUET_FOLDER --out DIR \\
        [--purchases-only] [--core 5] [--messy] [--salt S]

`--source amazon` (or csv, recbole) reads --src through the product's own-data reader
(`ingestion.readers.read_source`) instead: e.g. Amazon Beauty with a messy catalogue,
`--source amazon --src ../shared/data/amazon-beauty-2014-5core --messy`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code

import pandas as pd  # noqa: E402

from ingestion.readers import read_source  # noqa: E402
from sidflow.config import load_params  # noqa: E402

ATTRIBUTES = ["cat_l1", "cat_l2", "cat_l3", "brand", "seller"]


def k_core(events: pd.DataFrame, core: int) -> pd.DataFrame:
    """Events whose user and item each have >= `core` events, repeated until stable."""
    while True:
        users = events.groupby("user_id").size()
        items = events.groupby("item_id").size()
        kept = events[
            events["user_id"].isin(users[users >= core].index)
            & events["item_id"].isin(items[items >= core].index)
        ]
        if len(kept) == len(events):
            return kept
        events = kept


def hashed(values: pd.Series, salt: str, field: str) -> pd.Series:
    """Salted 10-hex-digit hashes of the non-null values (null stays null)."""

    def one(v: object) -> object:
        if v is None or v != v:
            return v
        return hashlib.sha256(f"{salt}\x00{field}\x00{v}".encode()).hexdigest()[:10]

    return values.map(one)


def messy_catalogue(items: pd.DataFrame, salt: str) -> pd.DataFrame:
    """No titles; categories, brand and seller as anonymised ids."""
    out = items.copy()
    if "title" in out:
        out["title"] = None
    for field in ATTRIBUTES:
        if field in out:
            out[field] = hashed(out[field], salt, field)
    return out


def main(argv: list[str] | None = None) -> int:
    """Read --src (events/ folder or file, items.parquet, users.parquet), write --out."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--purchases-only", action="store_true")
    ap.add_argument("--core", type=int, default=5)
    ap.add_argument("--messy", action="store_true")
    ap.add_argument("--salt", default="sidflow-messy-1")
    ap.add_argument(
        "--source", default="parquet", help="data.source of --src (parquet, amazon, csv, recbole)"
    )
    args = ap.parse_args(argv)
    if args.source == "parquet":
        events = pd.read_parquet(args.src / "events")
        items = pd.read_parquet(args.src / "items.parquet")
        users = pd.read_parquet(args.src / "users.parquet")
    else:
        data = load_params(overrides={"data.source": args.source, "data.path": str(args.src)}).data
        tables = read_source(data)
        events, items, users = tables.events, tables.items, tables.users
    if args.purchases_only:
        events = k_core(events[events["event_type"] == "purchase"], args.core)
    items = items[items["item_id"].isin(events["item_id"])]
    users = users[users["user_id"].isin(events["user_id"])]
    if args.messy:
        items = messy_catalogue(items, args.salt)
    (args.out / "events").mkdir(parents=True, exist_ok=True)
    events.to_parquet(args.out / "events" / "part-0.parquet", index=False)
    items.to_parquet(args.out / "items.parquet", index=False)
    users.to_parquet(args.out / "users.parquet", index=False)
    ts = pd.to_datetime(events["ts"], utc=True)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "events": len(events),
                "event_types": events["event_type"].value_counts().to_dict(),
                "users": int(events["user_id"].nunique()),
                "items": int(events["item_id"].nunique()),
                "from": str(ts.min().date()),
                "to": str(ts.max().date()),
                "messy": args.messy,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
