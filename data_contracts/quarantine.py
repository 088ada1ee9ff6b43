"""The published quarantine of (table, day): rejected rows, rejected batches and the report.

Per (table, key) under the working folder's `quarantine/<table>/` (key `day=<d>`, `history`
or `snapshot`):
- `<key>.parquet`: the quarantined rows, values as text, with `_file`, `_row`, `_line`,
  `_column`, `_rule` (the first rule broken), `_rules` (all), `_reason` and `_raw`;
- `<key>.rejected_batches.json`: batches quarantined whole (their rows are in the parquet)
  or rejected whole (unusable schema: their rows stay only in `raw/`);
- `<key>.report.json`: the contract report (every batch's verdict, rule counts, warnings, the
  catalogue used, the gate).
These files are replaced together with the warehouse rows and the Data Docs of the day
(`publish.py`); the raw input stays untouched in the landing folder.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from data_contracts.report import day_key


def as_key(day: dt.date | str | None) -> str:
    """`day=<d>` for a day, a named batch as it is (`history`), `snapshot` for none."""
    if isinstance(day, str):
        return day
    return day_key(day) if day else "snapshot"


class Quarantine:
    """Where published contract rejects are, under the working folder's `quarantine/`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def rows_path(self, table: str, day: dt.date | str | None) -> Path:
        """Parquet of quarantined rows of (table, day)."""
        return self.root / table / f"{as_key(day)}.parquet"

    def batches_path(self, table: str, day: dt.date | str | None) -> Path:
        """JSON list of the batches of (table, day) quarantined or rejected whole."""
        return self.root / table / f"{as_key(day)}.rejected_batches.json"

    def report_path(self, table: str, day: dt.date | str | None) -> Path:
        """The contract report of (table, day) as published."""
        return self.root / table / f"{as_key(day)}.report.json"

    def read_rows(self, table: str, day: dt.date | str | None) -> pd.DataFrame:
        """Quarantined rows of (table, day); empty if none."""
        path = self.rows_path(table, day)
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    def read_batches(self, table: str, day: dt.date | str | None) -> list[dict]:
        """Batches of (table, day) quarantined or rejected whole."""
        path = self.batches_path(table, day)
        return json.loads(path.read_text()) if path.exists() else []

    def read_report(self, table: str, day: dt.date | str | None) -> dict:
        """The published contract report of (table, day); {} if none."""
        path = self.report_path(table, day)
        return json.loads(path.read_text()) if path.exists() else {}

    def quarantined_rows(self, table: str, day: dt.date | str | None) -> int:
        """Rows of (table, day) not kept: quarantined, or in batches rejected whole."""
        return int(self.read_report(table, day).get("quarantined_rows", 0))
