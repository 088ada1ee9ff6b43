"""Small hand-made batches for the contract tests: every row's fate is known in advance."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd

from data_contracts.references import Reference

DAY = dt.date(2026, 1, 1)
ITEMS = Reference(frozenset(f"i{k:03d}" for k in range(60)), "the test catalogue")
USERS = Reference(frozenset(f"u{k:03d}" for k in range(20)), "the test users")
SCENES = ["feed", "search", "similar"]


def exposures(n: int, prefix: str = "e", per_request: int = 10) -> pd.DataFrame:
    """`n` good exposures on DAY: `per_request` items per request, ids `<prefix>0000`..."""
    start = pd.Timestamp(DAY, tz="UTC") + pd.Timedelta(hours=8)
    return pd.DataFrame(
        {
            "event_id": [f"{prefix}{k:04d}" for k in range(n)],
            "ts": [start + pd.Timedelta(seconds=k) for k in range(n)],
            "user_id": [f"u{(k // per_request) % 20:03d}" for k in range(n)],
            "item_id": [f"i{k % 60:03d}" for k in range(n)],
            "request_id": [f"{prefix}-r{k // per_request}" for k in range(n)],
            "scene": "feed",
            "event_type": "exposure",
            "position": [k % per_request for k in range(n)],
            "price": 9.5,
        }
    )


def engagements(shown: pd.DataFrame, kind: str = "click", prefix: str = "c") -> pd.DataFrame:
    """One `kind` per row of `shown`, same request and item, a second later."""
    return shown.assign(
        event_id=[f"{prefix}{k:04d}" for k in range(len(shown))],
        ts=shown["ts"] + pd.Timedelta(seconds=1),
        event_type=kind,
        position=pd.NA,
    ).reset_index(drop=True)


def items(n: int) -> pd.DataFrame:
    """`n` good catalogue rows i000.."""
    return pd.DataFrame(
        {
            "item_id": [f"i{k:03d}" for k in range(n)],
            "title": [f"item {k}" for k in range(n)],
            "cat_l1": "c1",
            "cat_l2": "c2",
            "cat_l3": "c3",
            "brand": "b",
            "seller": "s",
            "price": 5.0,
            "first_seen": DAY,
        }
    )


def write(path: Path, content: bytes | str | pd.DataFrame) -> Path:
    """Write bytes, text or a frame (parquet or CSV by suffix) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        if path.suffix == ".parquet":
            content.to_parquet(path, index=False)
        else:
            content.to_csv(path, index=False)
    else:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def csv_lines(df: pd.DataFrame) -> list[bytes]:
    """A frame as CSV lines (header first), each ending in a line break."""
    return df.to_csv(index=False).encode().splitlines(keepends=True)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """A frame as parquet bytes."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()
