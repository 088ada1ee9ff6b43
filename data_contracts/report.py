"""What a contract run decided: one verdict per batch, the gate, the kept and quarantined rows.

`ContractReport` is the typed hand-off between the runner (`runner.py`), the staging and
publishing of a day (`publish.py`), the Dagster checks and `sidflow validate`. Every message
names the file, and where it applies the column, the rule and the row (the line in a text
file): the same words in the CLI's JSON, the quarantine files and the Dagster metadata.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from ingestion.batches import BatchRejected

# besides the table's own columns, in every quarantined row
QUARANTINE_COLUMNS = [
    "_file",
    "_row",
    "_line",
    "_column",
    "_rule",
    "_rules",
    "_reason",
    "_raw",
    "_batch",
]
WHOLE_BATCH = "batch quarantined whole"  # the rule of a good row in a batch over the limit
OVER_LIMIT = "share of bad rows over contracts.max_quarantine_fraction"  # a batch's rule
Status = Literal["accepted", "quarantined", "rejected"]


def day_key(day: dt.date) -> str:
    """The name of a day's contract outcome: `day=YYYY-MM-DD`."""
    return f"day={day.isoformat()}"


def row_message(row: dict) -> str:
    """`feed.csv, line 6, column 'price': price: not a float ('twelve')` (row N for parquet)."""
    where = f"line {row['line']}" if row.get("line") is not None else f"row {row['row']}"
    column = f", column '{row['column']}'" if row.get("column") else ""
    return f"{Path(row['file']).name}, {where}{column}: {row['reason']}"


@dataclass(frozen=True)
class BatchVerdict:
    """One batch (file): accepted (its good rows kept), quarantined whole (over the limit: every
    row is in the quarantine file) or rejected whole (unusable schema: its rows stay in raw)."""

    file: str
    rows: int | None  # rows in, unreadable lines included (None: the file cannot be read)
    bad_rows: int  # rows that broke a rule
    status: Status
    reason: str | None = None
    column: str | None = None
    main: bool = False  # the source's own batch: the day stops when it fails
    rule: str | None = None  # the check a batch set aside failed
    line: int | None = None  # where in a text file (its header: line 1)

    @classmethod
    def rejected(cls, e: BatchRejected, main: bool) -> BatchVerdict:
        """The verdict on a batch that could not be used as a table."""
        return cls(
            e.file, e.rows, e.rows or 0, "rejected", e.reason, e.column, main, e.rule, e.line
        )

    @property
    def fraction(self) -> float | None:
        """Share of its rows that broke a rule (None when the file cannot be read)."""
        return self.bad_rows / self.rows if self.rows else (None if self.rows is None else 0.0)

    @property
    def message(self) -> str:
        """`file[, line n][, column 'c']: status: reason` (a batch quarantined whole: the
        reason gives the share and the limit)."""
        where = self.file + (f", line {self.line}" if self.line else "")
        where += f", column '{self.column}'" if self.column else ""
        return f"{where}: {self.status}" + (f": {self.reason}" if self.reason else "")

    def to_json(self) -> dict:
        """Plain values, for the quarantine's JSON and Dagster metadata."""
        return {**asdict(self), "message": self.message}


@dataclass(frozen=True)
class Gate:
    """The data gate of a day: passed, and why in one line (share and limit included)."""

    passed: bool
    message: str


@dataclass
class ContractReport:
    """What a contract run did to the batches of one (table, day or named batch)."""

    table: str
    key: str  # day=YYYY-MM-DD, history, snapshot
    day: dt.date | None
    valid: pd.DataFrame  # canonical columns
    quarantined: pd.DataFrame  # canonical columns as text + QUARANTINE_COLUMNS
    batches: list[BatchVerdict]
    gate: Gate
    failed_rules: dict[str, int] = field(default_factory=dict)  # rule -> rows that broke it
    warnings: dict[str, int] = field(default_factory=dict)  # warning rule -> rows (kept)
    references: dict[str, str] = field(
        default_factory=dict
    )  # column -> what it was checked against
    limit: float = 0.05
    validation: dict | None = None  # the GX validation result (JSON), published as Data Docs

    @property
    def rows_in(self) -> int:
        """Rows that arrived, unreadable lines included (rows of unreadable files unknown)."""
        return sum(b.rows or 0 for b in self.batches)

    @property
    def quarantined_rows(self) -> int:
        """Rows in the quarantine file plus rows of batches rejected whole (kept in raw)."""
        rejected = sum(b.rows or 0 for b in self.batches if b.status == "rejected")
        return len(self.quarantined) + rejected

    @property
    def quarantine_fraction(self) -> float:
        """Share of incoming rows that were not kept (0 when nothing came in)."""
        return self.quarantined_rows / self.rows_in if self.rows_in else 0.0

    @property
    def rejected_batches(self) -> list[BatchVerdict]:
        """Batches not accepted: quarantined or rejected whole."""
        return [b for b in self.batches if b.status != "accepted"]

    @property
    def success(self) -> bool:
        """Every batch accepted and every row passing every rule (warnings aside)."""
        return not self.rejected_batches and not self.failed_rules

    def examples(self, n: int) -> list[dict]:
        """`n` quarantined rows as {file, row, line, column, rule, reason[, raw], message}:
        rows that broke a rule first, then rows of batches quarantined whole."""
        q = self.quarantined
        if not len(q):
            return []
        head = q.iloc[q["_rule"].eq(WHOLE_BATCH).argsort(kind="stable")[:n]]
        out = []
        for _, r in head.iterrows():
            row = {
                "file": r["_file"],
                "row": None if pd.isna(r["_row"]) else int(r["_row"]),
                "line": None if pd.isna(r["_line"]) else int(r["_line"]),
                "column": None if pd.isna(r["_column"]) else r["_column"],
                "rule": r["_rule"],
                "reason": r["_reason"],
            }
            if not pd.isna(r["_raw"]):
                row["raw"] = r["_raw"]
            row["message"] = row_message(row)
            out.append(row)
        return out

    def summary(self, examples: int = 0) -> dict:
        """Plain numbers and messages for JSON, metadata and logs."""
        out = {
            "table": self.table,
            "batch": self.key,
            "rows_in": self.rows_in,
            "valid_rows": len(self.valid),
            "quarantined_rows": self.quarantined_rows,
            "quarantine_fraction": round(self.quarantine_fraction, 6),
            "max_quarantine_fraction": self.limit,
            "gate_passed": self.gate.passed,
            "gate": self.gate.message,
            "batches": [b.to_json() for b in self.batches],
            "failed_rules": self.failed_rules,
            "warnings": self.warnings,
            "checked_against": self.references,
        }
        if examples:
            out["quarantined"] = self.examples(examples)
        return out


def quarantine_frame(
    df: pd.DataFrame,
    columns: list[str],
    rule: pd.Series,
    rules: pd.Series,
    reason: pd.Series,
    column: pd.Series,
    key: str,
) -> pd.DataFrame:
    """Quarantined rows: canonical values as text (a bad value may not fit the type), where
    they came from and why (`_rule`: the first rule broken, `_rules`: every one)."""
    out = df[columns].astype("string")
    out["_file"] = df["_file"].astype("string")
    out["_row"] = df["_row"].astype("Int64")
    out["_line"] = pd.to_numeric(df["_line"], errors="coerce").astype("Int64")
    out["_column"] = column.astype("string")
    out["_rule"] = rule.astype("string")
    out["_rules"] = rules.astype("string")
    out["_reason"] = reason.astype("string")
    out["_raw"] = df["_raw"].astype("string")
    out["_batch"] = key
    return out.reset_index(drop=True)
