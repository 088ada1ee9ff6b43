"""What a reader hands back (`SourceTables`), the error it raises (`SourceError`), and the
finishing steps every folder reader shares: items and users derived from the events when
the source has no such table, `first_seen` from the first event, the report's counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ingestion.canonical import SCHEMAS


@dataclass
class SourceTables:
    """A source's canonical tables, what reading them found, and the files read."""

    name: str
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    report: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # every input file, for fingerprinting


class SourceError(ValueError):
    """A source cannot be read as configured; the message names the file, the column, the
    row where it applies, and says which setting (or file) to change."""

    def __init__(
        self,
        file: str | Path,
        reason: str,
        column: str | None = None,
        row: int | None = None,
        fix: str | None = None,
    ):
        self.file, self.reason, self.column, self.row, self.fix = (
            str(file),
            reason,
            column,
            row,
            fix,
        )
        where = self.file
        if column is not None:
            where += f", column '{column}'"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {reason}" + (f". To fix: {fix}" if fix else ""))


def new_report(folder: Path, fmt: str) -> dict:
    """An empty reader report; the readers fill it in as they go."""
    return {
        "source": str(folder),
        "format": fmt,
        "files": [],  # input files read, relative to the folder
        "rows": {},  # rows per canonical table
        "unparsed_ts": 0,  # event timestamps that did not parse (NaT: the contract quarantines)
        "unparsed_values": {},  # "<table>.<column>" -> values that did not parse (now null)
        "skipped_lines": [],  # CSV / RecBole lines that could not be decoded or split
        "ignored_columns": {},  # table -> source columns that are not canonical fields
        "derived": [],  # what the reader made up: event_id, items, users, first_seen
        "missing_metadata": {},  # items column -> null count
    }


def count(report: dict, key: str, n: int) -> None:
    """Add `n` to `report["unparsed_values"][key]` (kept only when non-zero)."""
    if n:
        values = report["unparsed_values"]
        values[key] = values.get(key, 0) + int(n)


def null_column(n: int, kind: str = "string") -> pd.Series:
    """`n` nulls of a canonical column kind."""
    if kind == "int":
        return pd.Series(pd.array([pd.NA] * n, dtype="Int64"))
    if kind == "float":
        return pd.Series([float("nan")] * n, dtype="float64")
    if kind == "timestamp":
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    return pd.Series([None] * n, dtype=object)


def empty_table(table: str) -> pd.DataFrame:
    """A canonical table with no rows."""
    return pd.DataFrame({c.name: null_column(0, c.kind) for c in SCHEMAS[table]})


def _first_event_days(events: pd.DataFrame) -> tuple[pd.Series, dt.date | None]:
    """UTC date of each item's first event, and of the source's first event."""
    ts = events["ts"].dropna()
    if ts.empty:
        return pd.Series(dtype=object), None
    days = ts.dt.date
    first = days.groupby(events.loc[ts.index, "item_id"]).min()
    return first, days.min()


def items_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """One item per distinct item id of the events (sorted), every metadata field null."""
    ids = sorted(events["item_id"].dropna().unique())
    items = pd.DataFrame({c.name: null_column(len(ids), c.kind) for c in SCHEMAS["items"]})
    items["item_id"] = pd.Series(ids, dtype=object)
    return items


def users_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """One user per distinct user id of the events (sorted), profile fields null."""
    ids = sorted(events["user_id"].dropna().unique())
    users = pd.DataFrame({c.name: null_column(len(ids), c.kind) for c in SCHEMAS["users"]})
    users["user_id"] = pd.Series(ids, dtype=object)
    return users


def fill_first_seen(items: pd.DataFrame, events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Fill null `first_seen` with the UTC date of the item's first event (items never in
    an event: the source's first event day). Returns the items and how many were filled."""
    missing = items["first_seen"].isna()
    if not missing.any():
        return items, 0
    first, source_first = _first_event_days(events)
    derived = items.loc[missing, "item_id"].map(first)
    derived = derived.where(derived.notna(), source_first)
    items = items.copy()
    first_seen = items["first_seen"].astype(object)
    first_seen[missing] = derived.astype(object)
    items["first_seen"] = first_seen.map(lambda d: None if pd.isna(d) else d).astype(object)
    return items, int(missing.sum())


def finish(
    name: str,
    events: pd.DataFrame,
    items: pd.DataFrame | None,
    users: pd.DataFrame | None,
    report: dict,
    files: list[Path],
) -> SourceTables:
    """Derive what the source lacks (items, users, first_seen), count rows and gaps."""
    if items is None:
        items = items_from_events(events)
        report["derived"].append("items")
    if users is None:
        users = users_from_events(events)
        report["derived"].append("users")
    items, filled = fill_first_seen(items, events)
    if filled:
        report["derived"].append("first_seen")
        report["first_seen_derived"] = filled
    report["rows"] = {"events": len(events), "items": len(items), "users": len(users)}
    report["missing_metadata"] = {
        c.name: int(items[c.name].isna().sum()) for c in SCHEMAS["items"] if c.nullable
    }
    return SourceTables(name, events, items, users, report, files)
