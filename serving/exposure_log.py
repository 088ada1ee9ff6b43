"""The exposure log: every response the service gives, as canonical `events` rows.

One parquet file per written batch under `<exposure log>/day=<d>/` (`Workdir.exposure_logs`:
`serving.exposure_log_dir`, else `<workdir>/serving/logs`), written to a temp
file, fsynced and renamed before the response is acknowledged, so a crash never loses an
acknowledged line nor leaves half a file. Besides the canonical columns a row carries the
bucket, the model tag that produced it and the retrieval path (`candidates`: nearline, live,
or empty for the popularity fallback; serving/nearline.py). The contract keeps only canonical
columns.
`land_day` hands a day's log to ingestion as a raw events batch: the closed loop.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.canonical import write_parquet_atomic
from serving.recommender import Served

EXTRA = ["bucket", "model", "candidates"]  # besides the canonical columns


def log_dir(logs: Path, day: dt.date) -> Path:
    """The folder of one day's exposure log (`logs`: the log's folder, `Workdir.exposure_logs`)."""
    return Path(logs) / f"day={day.isoformat()}"


SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("request_id", pa.string()),
        ("scene", pa.string()),
        ("event_type", pa.string()),
        ("position", pa.int64()),
        ("price", pa.float64()),
        ("bucket", pa.string()),
        ("model", pa.string()),
        ("candidates", pa.string()),
    ]
)


def exposure_rows(
    served: list[Served], times: list[pd.Timestamp], prices: dict[str, float]
) -> dict[dt.date, pa.Table]:
    """The canonical exposure events of a batch of responses (`served[i]` answered at
    `times[i]`), one table per UTC day (position = 0-based rank shown). Built column by
    column: this runs on every request."""
    by_day: dict[dt.date, list[tuple[Served, pd.Timestamp]]] = {}
    for s, ts in zip(served, times, strict=True):
        by_day.setdefault(pd.Timestamp(ts).tz_convert("UTC").date(), []).append((s, ts))
    tables = {}
    for day, group in by_day.items():
        cols: dict[str, list] = {name: [] for name in SCHEMA.names}
        for s, ts in group:
            items = s.rec.items
            n = len(items)
            cols["event_id"] += [f"{s.request_id}-{p}-exposure" for p in range(n)]
            cols["ts"] += [ts] * n
            for name in ("user_id", "request_id", "scene", "bucket", "model"):
                cols[name] += [getattr(s, name)] * n
            cols["item_id"] += items
            cols["event_type"] += ["exposure"] * n
            cols["position"] += range(n)
            cols["price"] += [prices.get(i) for i in items]
            cols["candidates"] += [s.rec.candidates] * n
        tables[day] = pa.table(cols, schema=SCHEMA)
    return tables


def append(logs: Path, tables: dict[dt.date, pa.Table]) -> Path | None:
    """Durably write one batch of exposure rows (a file per day); returns the last file."""
    path = None
    for day, table in tables.items():
        if not table.num_rows:
            continue
        folder = log_dir(logs, day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{dt.datetime.now(dt.UTC):%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{path.name}.tmp"
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
    return path


def read_day(logs: Path, day: dt.date) -> pd.DataFrame:
    """Every logged exposure of `day` (empty frame when none)."""
    files = sorted(log_dir(logs, day).glob("*.parquet"))
    if not files:
        return SCHEMA.empty_table().to_pandas()
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def land_day(logs: Path, raw_dir: Path, day: dt.date, name: str = "served.parquet") -> Path:
    """Write the day's log as one raw events batch (canonical columns) for ingestion."""
    log = read_day(logs, day)
    return write_parquet_atomic(log.drop(columns=EXTRA, errors="ignore"), raw_dir / name)
