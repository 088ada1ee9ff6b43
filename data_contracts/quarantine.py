"""Quarantine: rejected rows (with the rule they broke) and rejected whole batches.

Rows are written per (table, day) as parquet and replaced on a re-run of that day,
so re-running never duplicates. Rejected batches are recorded in a JSON file per
(table, day); the raw file itself stays untouched in the landing folder.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from ingestion.canonical import write_parquet_atomic
from sidflow.atomic import write_text_atomic


class Quarantine:
    """Where contract rejects go, under the working folder's `quarantine/`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _key(self, day: dt.date | str | None) -> str:
        # a day, a named batch (the history batch: "history") or a bulk load ("snapshot")
        if isinstance(day, str):
            return day
        return f"day={day.isoformat()}" if day else "snapshot"

    def rows_path(self, table: str, day: dt.date | str | None) -> Path:
        """Parquet of rejected rows for `table` on `day`."""
        return self.root / table / f"{self._key(day)}.parquet"

    def batches_path(self, table: str, day: dt.date | str | None) -> Path:
        """JSON list of batches rejected whole for `table` on `day`."""
        return self.root / table / f"{self._key(day)}.rejected_batches.json"

    def write(
        self, table: str, day: dt.date | str | None, rows: pd.DataFrame, batches: list[dict]
    ) -> None:
        """Replace the quarantine of (table, day) by `rows` and `batches`."""
        rows_path, batches_path = self.rows_path(table, day), self.batches_path(table, day)
        if len(rows):
            # Keep values as text: a quarantined value may not fit the canonical type.
            write_parquet_atomic(rows.astype("string"), rows_path)
        elif rows_path.exists():
            rows_path.unlink()
        write_text_atomic(json.dumps(batches, indent=2, default=str), batches_path)

    def read_rows(self, table: str, day: dt.date | str | None) -> pd.DataFrame:
        """Quarantined rows of (table, day); empty if none."""
        path = self.rows_path(table, day)
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    def read_batches(self, table: str, day: dt.date | str | None) -> list[dict]:
        """Batches rejected whole for (table, day)."""
        path = self.batches_path(table, day)
        return json.loads(path.read_text()) if path.exists() else []
