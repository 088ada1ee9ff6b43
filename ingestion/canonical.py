"""The canonical tables every source must produce (`SCHEMAS`), and their atomic parquet write.

Reading a raw batch file into them is `ingestion/batches.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sidflow.atomic import replacing


@dataclass(frozen=True)
class Column:
    """One canonical column: name, logical kind and whether nulls are allowed."""

    name: str
    kind: str  # string | timestamp | int | float | date
    nullable: bool = False


SCHEMAS: dict[str, list[Column]] = {
    "events": [
        Column("event_id", "string"),
        Column("ts", "timestamp"),
        Column("user_id", "string"),
        Column("item_id", "string"),
        Column("request_id", "string", nullable=True),
        Column("scene", "string"),
        Column("event_type", "string"),
        Column("position", "int", nullable=True),
        Column("price", "float", nullable=True),
    ],
    "items": [
        Column("item_id", "string"),
        Column("title", "string", nullable=True),
        Column("cat_l1", "string", nullable=True),
        Column("cat_l2", "string", nullable=True),
        Column("cat_l3", "string", nullable=True),
        Column("brand", "string", nullable=True),
        Column("seller", "string", nullable=True),
        Column("price", "float", nullable=True),
        Column("first_seen", "date"),
    ],
    "users": [
        Column("user_id", "string"),
        Column("age_bucket", "string", nullable=True),
        Column("region", "string", nullable=True),
    ],
}
EVENT_TYPES = ("exposure", "click", "cart", "purchase")


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write parquet to a temp name and rename, so readers never see a half file."""
    with replacing(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path
