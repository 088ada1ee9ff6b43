"""Apply `data:` settings (`DataParams`) to one raw frame: pick the source's columns for the
canonical fields (`columns`, `item_columns`, `user_columns`), add `constants`, turn the time
column into UTC timestamps (`ts_unit`), fill absent optional fields with nulls and derive an
`event_id` when the log has none.

Rows are never dropped here: a value that does not parse becomes null (timestamps: NaT) and
is counted in the report, and the data contract quarantines the row. Event types outside
the canonical four are passed through unchanged for the same reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ingestion import timestamps
from ingestion.canonical import EVENT_TYPES, SCHEMAS
from ingestion.readers.tables import SourceError, count, null_column
from sidflow.config import DataParams

ROW_COLUMN = "_row"  # a raw frame's record number in its file (0-based), set by the readers
REQUIRED = {"events": ("user_id", "item_id", "ts"), "items": ("item_id",), "users": ("user_id",)}
SETTING = {"events": "columns", "items": "item_columns", "users": "user_columns"}
HOLDS = {"user_id": "the user", "item_id": "the item", "ts": "the event time"}


def as_strings(series: pd.Series) -> pd.Series:
    """Values as python strings (None for nulls); integral floats lose their '.0'."""
    if pd.api.types.is_float_dtype(series.dtype):
        whole = series.dropna()
        if (whole == whole.round()).all() and (whole.abs() < 2**53).all():
            series = series.astype("Int64")
    series = series.astype(object)  # nullable ints: python ints, not floats, when mapped
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series.where(series.notna(), None)  # strings already
    return series.map(lambda v: None if pd.isna(v) else str(v))


def _numbers(series: pd.Series, kind: str) -> pd.Series:
    """Floats or nullable ints; what does not parse (or is not whole, for ints) is null."""
    num = pd.to_numeric(series, errors="coerce")
    if pd.api.types.is_bool_dtype(num.dtype):
        num = num.astype("float64")
    if kind == "float":
        return num.astype("float64")
    num = num.astype("float64")
    num = num.where((num == num.round()) & (num.abs() < 2**53))
    return num.astype("Int64")


def event_ids(rel: str, rows: pd.Series) -> pd.Series:
    """Stable ids for a log without any: sha1 of the file's relative path + record number,
    so adding files never renames old events and (ts, event_id) order keeps file order."""
    prefix = hashlib.sha1(rel.encode()).hexdigest()[:8]
    return pd.Series([f"{prefix}-{int(r):09d}" for r in rows], index=rows.index, dtype=object)


def parse_ts(series: pd.Series, unit: str, file: Path, column: str) -> pd.Series:
    """UTC timestamps by `data.ts_unit` (`ingestion.timestamps.parse_ts`); numbers under
    `datetime` stop with a SourceError naming the file, the column and the setting."""
    try:
        return timestamps.parse_ts(series, unit)
    except timestamps.EpochWithoutUnit as e:
        raise SourceError(file, e.reason, column=column, fix=timestamps.FIX) from None


def _pick(
    raw: pd.DataFrame, table: str, mapping: dict[str, str], file: Path, report: dict
) -> dict[str, pd.Series]:
    """The source's column for each canonical field of `table` that it has (after renames);
    a renamed column that is absent is an error; unused source columns are reported."""
    key = SETTING[table]
    picked: dict[str, pd.Series] = {}
    for col in SCHEMAS[table]:
        src = mapping.get(col.name, col.name)
        if src in raw.columns:
            picked[col.name] = raw[src]
        elif col.name in mapping:
            cols = [c for c in raw.columns if c != ROW_COLUMN]
            raise SourceError(
                file,
                f"has no column '{src}' (data.{key}.{col.name})",
                column=src,
                fix=f"set data.{key}.{col.name} to one of the file's columns {cols}",
            )
    used = {mapping.get(c, c) for c in picked}
    ignored = [c for c in raw.columns if c not in used and c != ROW_COLUMN]
    if ignored:
        have = report["ignored_columns"].setdefault(table, [])
        have.extend(c for c in ignored if c not in have)
    return picked


def _missing_required(table: str, field: str, file: Path, raw: pd.DataFrame) -> SourceError:
    key = SETTING[table]
    cols = [c for c in raw.columns if c != ROW_COLUMN]
    return SourceError(
        file,
        f"no column for the {table} field '{field}' (the file's columns are {cols})",
        column=field,
        fix=f"set data.{key}.{field} to the column that holds {HOLDS.get(field, field)}",
    )


def _typed(table: str, picked: dict[str, pd.Series], n: int, report: dict) -> pd.DataFrame:
    """Canonical column types; absent optional fields are null."""
    out = {}
    for col in SCHEMAS[table]:
        if col.name not in picked:
            out[col.name] = null_column(n, col.kind)
            continue
        raw = picked[col.name].reset_index(drop=True)
        if col.kind in ("int", "float"):
            value = _numbers(raw, col.kind)
            count(report, f"{table}.{col.name}", (raw.notna() & value.isna()).sum())
        elif col.kind == "date":
            stamp = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
            value = stamp.dt.date.map(lambda d: None if pd.isna(d) else d).astype(object)
            count(report, f"{table}.{col.name}", (raw.notna() & stamp.isna()).sum())
        elif col.kind == "timestamp":
            value = raw  # parsed by the caller
        else:
            value = as_strings(raw)
        out[col.name] = value
    return pd.DataFrame(out)


def map_events(
    raw: pd.DataFrame,
    data: DataParams,
    file: Path,
    rel: str,
    report: dict,
    *,
    columns: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
    ts_unit: str | None = None,
) -> pd.DataFrame:
    """Canonical events of one raw log file.

    `rel` is the file's path relative to the source folder (for derived event ids);
    `columns` / `ts_unit` override `data`'s, `defaults` are constants used only when
    neither `data.columns`, `data.constants` nor the file provide the field.
    """
    mapping = data.columns if columns is None else columns
    picked = _pick(raw, "events", mapping, file, report)
    n = len(raw)
    constant: dict[str, str] = {}
    for name, value in {**(defaults or {}), **data.constants}.items():
        if name in data.constants or name not in picked:
            picked[name] = pd.Series([value] * n, index=raw.index, dtype=object)
            constant[name] = value
    for name in REQUIRED["events"]:
        if name not in picked:
            raise _missing_required("events", name, file, raw)
    if "event_type" not in picked:
        raise SourceError(
            file,
            "no event_type column and no data.constants.event_type",
            column="event_type",
            fix=f"set data.constants.event_type to one of {list(EVENT_TYPES)} "
            "(e.g. purchase for a review or order log), or data.columns.event_type",
        )
    if "scene" not in picked:
        raise SourceError(
            file,
            "no scene column and no data.constants.scene",
            column="scene",
            fix=f"set data.constants.scene to one of data.scenes {data.scenes}, "
            "or data.columns.scene",
        )
    scene = constant.get("scene")
    if scene is not None and scene not in data.scenes:
        raise SourceError(
            file,
            f"the constant scene '{scene}' is not one of data.scenes {data.scenes}",
            column="scene",
            fix="set data.constants.scene to one of data.scenes, or add it to data.scenes",
        )
    events = _typed("events", picked, n, report)
    ts_raw = picked["ts"].reset_index(drop=True)
    events["ts"] = parse_ts(ts_raw, ts_unit or data.ts_unit, file, mapping.get("ts", "ts"))
    report["unparsed_ts"] += int((ts_raw.notna() & events["ts"].isna()).sum())
    if "event_id" not in picked:
        rows = raw[ROW_COLUMN] if ROW_COLUMN in raw else pd.Series(range(n))
        events["event_id"] = event_ids(rel, rows.reset_index(drop=True)).to_numpy()
        if "event_id" not in report["derived"]:
            report["derived"].append("event_id")
    return events


def map_items(raw: pd.DataFrame, data: DataParams, file: Path, report: dict) -> pd.DataFrame:
    """Canonical items of a raw item table (`data.item_columns`); every row is kept."""
    picked = _pick(raw, "items", data.item_columns, file, report)
    if "item_id" not in picked:
        raise _missing_required("items", "item_id", file, raw)
    return _typed("items", picked, len(raw), report)


def map_users(raw: pd.DataFrame, data: DataParams, file: Path, report: dict) -> pd.DataFrame:
    """Canonical users of a raw user table (`data.user_columns`); every row is kept."""
    picked = _pick(raw, "users", data.user_columns, file, report)
    if "user_id" not in picked:
        raise _missing_required("users", "user_id", file, raw)
    return _typed("users", picked, len(raw), report)
