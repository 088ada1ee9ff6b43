"""Loader for the Amazon 5-core benchmark folders (e.g. `amazon-beauty-2014-5core`).

Files are found by pattern anywhere under the folder, for one category `<Cat>`:
`<Cat>_item_org_rank.txt`, `<Cat>_time_org_rank.txt` (TiCoSeRec), `<Cat>.txt` (S3-Rec),
`datamaps.json` (P5) and, optional, `item_description.csv` (PLRec item metadata).
How the staged files join is documented in the Beauty folder's SOURCE.md:
- PLRec/TiCoSeRec item id k = the k-th ASIN in sorted order of datamaps' `item2id`;
- TiCoSeRec uid k = datamaps `id2user[k]` (the reviewerID) = P5/S3-Rec uid k;
- S3-Rec `<Cat>.txt` holds each user's sequence in the order the P5/TIGER
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

from ingestion.readers.tables import SourceError, SourceTables
from sidflow.config import DEFAULT_AMAZON, ITEM_FIELDS, PROJECT_ROOT, DataParams

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


RANK_SUFFIX = "_item_org_rank.txt"  # TiCoSeRec: <Cat>_item_org_rank.txt names the category
ITEM_COLUMNS = list(ITEM_FIELDS)
META_COLUMNS = ["title", "cat_l1", "cat_l2", "cat_l3", "brand"]


@dataclass
class AmazonFiles:
    """The staged files of one category, found by pattern."""

    category: str
    item_rank: Path
    time_rank: Path
    sequences: Path
    datamaps: Path
    items: Path | None  # PLRec item_description.csv; optional

    def paths(self) -> list[Path]:
        """Every file found, in a fixed order."""
        found = [self.item_rank, self.time_rank, self.sequences, self.datamaps, self.items]
        return [p for p in found if p is not None]


def _one(folder: Path, pattern: str, what: str, required: bool = True) -> Path | None:
    found = sorted(p for p in folder.rglob(pattern) if p.is_file())
    if len(found) > 1:
        names = [str(p.relative_to(folder)) for p in found]
        raise SourceError(
            folder,
            f"holds several {what} files {names}",
            fix="keep one category's files per folder",
        )
    if not found and required:
        raise SourceError(
            folder,
            f"lacks {what} ({pattern}); see the Beauty folder's SOURCE.md",
            fix="stage the file, or point data.path at a complete folder",
        )
    return found[0] if found else None


def find_files(folder: Path) -> AmazonFiles:
    """Locate one category's files under `folder`; several categories is an error."""
    if not folder.is_dir():
        raise SourceError(folder, "is not a folder", fix="set data.path to the Amazon folder")
    cats = sorted({p.name[: -len(RANK_SUFFIX)] for p in folder.rglob(f"*{RANK_SUFFIX}")})
    if len(cats) != 1:
        reason = f"holds several categories {cats}" if cats else f"has no *{RANK_SUFFIX}"
        raise SourceError(
            folder, reason, fix="point data.path at a folder with one category's files"
        )
    cat = cats[0]
    sequences = _one(folder, f"{cat}.txt", "S3-Rec sequence", required=False)
    if sequences is None:  # S3-Rec may spell the category out (Sports -> Sports_and_Outdoors)
        rank = {f"{cat}{RANK_SUFFIX}", f"{cat}_time_org_rank.txt"}
        spelled = sorted(p for p in folder.rglob(f"{cat}_*.txt") if p.name not in rank)
        sequences = spelled[0] if len(spelled) == 1 else _one(folder, f"{cat}.txt", "S3-Rec")
    return AmazonFiles(
        category=cat,
        item_rank=_one(folder, f"{cat}{RANK_SUFFIX}", "TiCoSeRec item"),
        time_rank=_one(folder, f"{cat}_time_org_rank.txt", "TiCoSeRec time"),
        sequences=sequences,
        datamaps=_one(folder, "datamaps.json", "P5 datamaps"),
        items=_one(folder, "item_description.csv", "PLRec item metadata", required=False),
    )


def _read_items(path: Path) -> pd.DataFrame:
    """PLRec item_description.csv: tab-separated with CSV quoting; ids 1..N."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = [h.split(":")[0] for h in next(reader)]
        for line_no, rec in enumerate(reader, start=2):
            if len(rec) != len(header):
                raise SourceError(
                    path,
                    f"record has {len(rec)} fields, the header {len(header)}",
                    row=line_no,
                    fix="re-stage the file from its source",
                )
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


def _with_metadata(sorted_asins: list[str], path: Path | None) -> pd.DataFrame:
    """The item file's rows in its order (PLRec id k = sorted_asins[k-1]), then the datamaps
    items it lacks (all of them without the optional file) with null metadata."""
    if path is not None:
        items = _read_items(path)
        items["item_id"] = [sorted_asins[k - 1] for k in items["plrec_id"]]
    else:
        items = pd.DataFrame({"plrec_id": pd.Series(dtype="int64")})
    have = set(items["plrec_id"])
    lacking = pd.DataFrame(
        {"plrec_id": [k for k in range(1, len(sorted_asins) + 1) if k not in have]}
    )
    lacking = lacking.assign(item_id=[sorted_asins[k - 1] for k in lacking["plrec_id"]])
    lacking = lacking.assign(**{c: None for c in META_COLUMNS}, price=np.nan)
    if items.empty:
        return lacking
    return pd.concat([items, lacking], ignore_index=True) if len(lacking) else items


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
    files = find_files(folder)
    maps = json.loads(files.datamaps.read_text())
    sorted_asins = sorted(maps["item2id"])  # PLRec id k -> sorted_asins[k-1]
    items_raw = _with_metadata(sorted_asins, files.items)

    t_items = _read_sequences(files.item_rank)
    t_times = _read_sequences(files.time_rank)
    p5_seqs = _read_sequences(files.sequences)

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
    )[ITEM_COLUMNS]
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
        "category": files.category,
        "files": [p.relative_to(folder).as_posix() for p in files.paths()],
        "item_metadata": files.items is not None,
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


def read_amazon(data: DataParams, name: str) -> SourceTables:
    """The category folder `data.path` (default: the Beauty folder beside the checkout) as
    canonical tables; the report names the category and counts missing metadata."""
    folder = Path(data.path) if data.path is not None else PROJECT_ROOT / DEFAULT_AMAZON
    ds = load_amazon(folder, name)
    report = {**ds.report, "format": "amazon"}
    report["rows"] = {"events": len(ds.events), "items": len(ds.items), "users": len(ds.users)}
    files = [folder / rel for rel in report["files"]]
    return SourceTables(name, ds.events, ds.items, ds.users, report, files)
