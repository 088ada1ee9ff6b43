"""One state per day: a contract outcome is staged, then published whole or not at all.

`stage` writes what a contract run decided for (table, key) into
`staging/<table>/<key>/` (one folder, renamed into place): the kept rows, the quarantined
rows, the rejected batches, the report and the GX validation result. Nothing a reader uses
changes. `publish`, run only when the data gate passed, swaps it in: the warehouse rows (one
transaction: the day's events replaced, or items / users upserted), then
`validated/<table>/<key>.parquet` and the quarantine files (each renamed over the old one),
then the Data Docs page of the day (`docs.py`). A day stopped at the gate keeps its previous
warehouse rows, files and Data Docs together, and its staged folder says why. A run killed
between the warehouse and the files leaves the staged folder; the day's next run stages and
publishes again, to the same state.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data_contracts.docs import publish_validation
from data_contracts.quarantine import Quarantine
from data_contracts.report import ContractReport
from ingestion.warehouse import Warehouse
from sidflow.atomic import staged_folder

VALID, ROWS, BATCHES, REPORT, VALIDATION = (
    "valid.parquet",
    "quarantine.parquet",
    "rejected_batches.json",
    "report.json",
    "validation.json",
)


@dataclass(frozen=True)
class Published:
    """Where a published (table, key) now lives."""

    validated: Path
    quarantine: Path
    rows_written: int
    data_docs: Path | None


class ContractStore:
    """Staged and published contract outcomes under a working folder (`root`)."""

    def __init__(self, root: Path, gx_root: Path, staging: str = "staging"):
        self.root, self.gx_root, self.staging = Path(root), Path(gx_root), staging
        self.quarantine = Quarantine(self.root / "quarantine")

    def staged_dir(self, table: str, key: str) -> Path:
        """The staged outcome of (table, key): `staging/<table>/<key>/` (`sidflow validate`
        stages in `checks/` instead, so a check never becomes a day's outcome)."""
        return self.root / self.staging / table / key

    def validated_path(self, table: str, key: str) -> Path:
        """The published kept rows of (table, key)."""
        return self.root / "validated" / table / f"{key}.parquet"

    def stage(self, report: ContractReport, examples: int = 20) -> Path:
        """Write `report`'s outcome to its staged folder (replacing an earlier one)."""
        folder = self.staged_dir(report.table, report.key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with staged_folder(folder) as tmp:
            report.valid.to_parquet(tmp / VALID, index=False)
            if len(report.quarantined):
                report.quarantined.to_parquet(tmp / ROWS, index=False)
            batches = [b.to_json() for b in report.rejected_batches]
            (tmp / BATCHES).write_text(json.dumps(batches, indent=2, default=str))
            summary = report.summary(examples)
            (tmp / REPORT).write_text(json.dumps(summary, indent=2, default=str))
            if report.validation is not None:
                (tmp / VALIDATION).write_text(json.dumps(report.validation, default=str))
        return folder

    def staged_report(self, table: str, key: str) -> dict:
        """The staged report of (table, key); raises when nothing is staged."""
        path = self.staged_dir(table, key) / REPORT
        if not path.exists():
            raise FileNotFoundError(
                f"nothing staged for {table} {key} ({path.parent}): run its contract first"
            )
        return json.loads(path.read_text())

    def publish(
        self, table: str, key: str, warehouse: Warehouse, days: list[dt.date] | None = None
    ) -> Published:
        """Swap the staged outcome of (table, key) in: warehouse, files, Data Docs.

        `days`: the event days the batch covers (their warehouse rows are replaced); None:
        the days of its kept rows."""
        self.staged_report(table, key)
        folder = self.staged_dir(table, key)
        valid = pd.read_parquet(folder / VALID)
        if table == "events":
            if days is None:
                days = sorted(pd.to_datetime(valid["ts"], utc=True).dt.date.unique())
            written = warehouse.write_events(valid, days)
        else:
            written = warehouse.upsert(table, valid)
        validated = self.validated_path(table, key)
        validated.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / VALID, validated)
        q = self.quarantine
        rows = q.rows_path(table, key)
        rows.parent.mkdir(parents=True, exist_ok=True)
        if (folder / ROWS).exists():
            os.replace(folder / ROWS, rows)
        else:
            rows.unlink(missing_ok=True)
        os.replace(folder / BATCHES, q.batches_path(table, key))
        docs = None
        if (folder / VALIDATION).exists():
            result = json.loads((folder / VALIDATION).read_text())
            docs = publish_validation(self.gx_root, table, key, result)
        os.replace(folder / REPORT, q.report_path(table, key))
        shutil.rmtree(folder, ignore_errors=True)
        return Published(validated, rows, written, docs)

    def publish_report(
        self,
        report: ContractReport,
        warehouse: Warehouse,
        days: list[dt.date] | None = None,
        examples: int = 20,
    ) -> Published:
        """Stage `report` and publish it at once (items, users, bulk loads)."""
        self.stage(report, examples)
        return self.publish(report.table, report.key, warehouse, days)
