"""The one ignored working folder: every generated file lives under it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workdir:
    """Named locations inside the working folder (created on demand)."""

    root: Path

    def _dir(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def warehouse(self) -> Path:
        """The DuckDB warehouse file."""
        return self._dir() / "warehouse.duckdb"

    def raw_dir(self, table: str, day: dt.date | None = None) -> Path:
        """Landing folder for raw batches, kept exactly as received."""
        return self._dir("raw", table, f"day={day.isoformat()}") if day else self._dir("raw", table)

    def validated_path(self, table: str, day: dt.date) -> Path:
        """Rows of `table` for `day` that passed their contract (parquet)."""
        return self._dir("validated", table) / f"day={day.isoformat()}.parquet"

    def quarantine_dir(self, table: str) -> Path:
        """Rejected rows and rejected batches, with the rule they broke."""
        return self._dir("quarantine", table)

    @property
    def gx_root(self) -> Path:
        """Great Expectations project folder (suites, results, Data Docs)."""
        return self._dir("gx_project")

    @property
    def data_docs_index(self) -> Path:
        """The Data Docs site's index page."""
        return self.gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME: run storage, event logs, schedules."""
        return self._dir("dagster_home")

    @property
    def reports(self) -> Path:
        """Reports and plots written by runs."""
        return self._dir("reports")

    def dataset_dir(self, name: str) -> Path:
        """Canonical tables of a loaded dataset (e.g. amazon-beauty)."""
        return self._dir("datasets", name)
