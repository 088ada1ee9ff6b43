"""A user's data folder in parquet or CSV: the interaction log plus optional item / user tables.

Layout of `data.path`:
- the log: `events.<ext>`, or every `events/**/*.<ext>` (`events/day=2014-07-24/part-0.parquet`,
  `events/2024-01.csv`, ...), read in sorted path order;
- optional `items.<ext>` and `users.<ext>`; without them items are the log's distinct item
  ids (metadata null) and users its distinct user ids.

CSV files are read as strings (empty = null). A line that is not UTF-8 or does not split
into the header's number of fields is skipped and recorded in `report["skipped_lines"]`;
every other row of the file is kept.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.readers.mapping import ROW_COLUMN, map_events, map_items, map_users
from ingestion.readers.tables import SourceError, SourceTables, empty_table, finish, new_report
from ingestion.textlines import TextFileError, read_delimited
from sidflow.config import DataParams


def source_folder(data: DataParams) -> Path:
    """`data.path`, checked to be an existing folder."""
    if data.path is None:
        raise SourceError(
            "data.path", "is not set", fix=f"set data.path to the {data.source} folder"
        )
    folder = Path(data.path)
    if not folder.is_dir():
        raise SourceError(folder, "is not a folder", fix="set data.path to the data folder")
    return folder


def read_text_table(path: Path, rel: str, report: dict, delimiter: str = ",") -> pd.DataFrame:
    """A delimited text file with a header line as strings (empty = null), CSV quoting.

    Records that are not UTF-8 or have the wrong number of fields are skipped and added to
    `report["skipped_lines"]` ({file, line (1-based physical), reason, raw}); the frame's
    `_row` column holds each kept record's number in the file (skipped ones counted). A
    broken record spanning several lines (a quote never closed) costs only its first line:
    reading resumes on the next one (`ingestion.textlines.read_delimited`).
    """
    try:
        table = read_delimited(path, delimiter)
    except TextFileError as e:
        fix = {
            "has no header line": "write the column names on the first line",
            "header line is not UTF-8": "save as UTF-8",
        }.get(e.reason, "name every column once")
        raise SourceError(
            path, e.reason, column=e.column, row=None if e.column else e.line, fix=fix
        ) from None
    for bad in table.bad:
        report["skipped_lines"].append(
            {"file": rel, "line": bad.line, "reason": bad.reason, "raw": bad.raw}
        )
    df = pd.DataFrame(table.rows, columns=table.header, dtype=object)
    df = df.where(df != "", None)
    df[ROW_COLUMN] = table.records
    return df


def read_table_file(path: Path, rel: str, fmt: str, report: dict) -> pd.DataFrame:
    """One parquet or CSV file as a raw frame with its record numbers in `_row`."""
    if fmt == "csv":
        return read_text_table(path, rel, report)
    try:
        df = pq.ParquetFile(path).read().to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise SourceError(
            path, f"unreadable parquet file ({e})", fix="re-export it, or move it out of the folder"
        ) from None
    df[ROW_COLUMN] = range(len(df))
    return df


def _visible(path: Path, folder: Path) -> bool:
    return not any(p.startswith((".", "_")) for p in path.relative_to(folder).parts)


def event_files(folder: Path, fmt: str) -> list[Path]:
    """`events.<ext>`, or every `events/**/*.<ext>` in sorted path order."""
    single, parts_dir = folder / f"events.{fmt}", folder / "events"
    parts = (
        sorted(p for p in parts_dir.rglob(f"*.{fmt}") if p.is_file() and _visible(p, folder))
        if parts_dir.is_dir()
        else []
    )
    if single.is_file() and parts:
        raise SourceError(
            folder,
            f"holds both events.{fmt} and events/ with {len(parts)} {fmt} file(s)",
            fix=f"keep the log in one place: events.{fmt} or events/**/*.{fmt}",
        )
    if single.is_file():
        return [single]
    if not parts:
        raise SourceError(
            folder,
            f"has no interaction log: neither events.{fmt} nor events/**/*.{fmt}",
            fix=f"put the log in events.{fmt} (or files under events/), or set data.source "
            "to the folder's format",
        )
    return parts


def read_folder(data: DataParams, fmt: str, name: str) -> SourceTables:
    """Canonical tables of a parquet or CSV folder (`fmt`), mapped by `data`."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"read_folder reads parquet or csv, not {fmt!r}")
    folder = source_folder(data)
    report = new_report(folder, fmt)
    files: list[Path] = []

    def load(path: Path) -> tuple[pd.DataFrame, str]:
        rel = path.relative_to(folder).as_posix()
        files.append(path)
        report["files"].append(rel)
        return read_table_file(path, rel, fmt, report), rel

    frames = []
    for path in event_files(folder, fmt):
        raw, rel = load(path)
        frames.append(map_events(raw, data, path, rel, report))
    events = pd.concat(frames, ignore_index=True) if frames else empty_table("events")
    tables: dict[str, pd.DataFrame | None] = {"items": None, "users": None}
    for table, mapper in (("items", map_items), ("users", map_users)):
        path = folder / f"{table}.{fmt}"
        if path.is_file():
            raw, _ = load(path)
            tables[table] = mapper(raw, data, path, report)
    return finish(name, events, tables["items"], tables["users"], report, files)
