"""The exposure log: every response the service gives, as canonical `events` rows.

One parquet file per written batch under `<workdir>/serving/logs/day=<d>/`, written to a temp
file, fsynced and renamed before the response is acknowledged, so a crash never loses an
acknowledged line nor leaves half a file. Besides the canonical columns a row carries the
bucket and the model tag that produced it (the contract keeps only canonical columns).
`land_day` hands a day's log to ingestion as a raw events batch: the closed loop.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import pandas as pd

from ingestion.canonical import write_parquet_atomic

EXTRA = ["bucket", "model"]


def log_dir(workdir: Path, day: dt.date) -> Path:
    """The folder of one day's exposure log."""
    return Path(workdir) / "serving" / "logs" / f"day={day.isoformat()}"


def exposure_rows(request_id: str, ts: pd.Timestamp, user_id: str, scene: str, bucket: str,
                  model: str, items: list[str], prices: dict[str, float]) -> pd.DataFrame:  # fmt: skip
    """The canonical exposure events of one response (position = 0-based rank shown)."""
    n = len(items)
    return pd.DataFrame(
        {
            "event_id": [f"{request_id}-{p}-exposure" for p in range(n)],
            "ts": [ts] * n,
            "user_id": [user_id] * n,
            "item_id": items,
            "request_id": [request_id] * n,
            "scene": [scene] * n,
            "event_type": ["exposure"] * n,
            "position": list(range(n)),
            "price": [prices.get(i) for i in items],
            "bucket": [bucket] * n,
            "model": [model] * n,
        }
    )


def append(workdir: Path, rows: pd.DataFrame) -> Path | None:
    """Durably write one batch of exposure rows (grouped by day); returns the last file."""
    if rows.empty:
        return None
    path = None
    days = pd.to_datetime(rows["ts"], utc=True).dt.date
    for day, part in rows.groupby(days):
        folder = log_dir(workdir, day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{dt.datetime.now(dt.UTC):%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{path.name}.tmp"
        part.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
    return path


def read_day(workdir: Path, day: dt.date) -> pd.DataFrame:
    """Every logged exposure of `day` (empty frame when none)."""
    files = sorted(log_dir(workdir, day).glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=["event_id", "ts", "user_id", "item_id", "request_id",
                                     "scene", "event_type", "position", "price", *EXTRA])  # fmt: skip
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def land_day(workdir: Path, raw_dir: Path, day: dt.date, name: str = "served.parquet") -> Path:
    """Write the day's log as one raw events batch (canonical columns) for ingestion."""
    log = read_day(workdir, day)
    return write_parquet_atomic(log.drop(columns=EXTRA), raw_dir / name)
