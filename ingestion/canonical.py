"""The canonical tables every source must produce, and reading a raw batch file into them.

`conform` is the first line of the data contract: a batch whose *schema* is wrong
(missing column, a typed file with a column of the wrong type, empty or unreadable
file) is rejected whole with `BatchRejected`, naming the file and column. Values that
cannot be parsed in an untyped (CSV/JSON) file are not fatal: they become row-level
errors that the contract quarantines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
TYPE_ERROR_COLUMN = "_type_error"
READ_ERROR_COLUMN = "_read_error"


class BatchRejected(ValueError):
    """A whole batch is unusable; `file` and `column` say where."""

    def __init__(
        self, file: str | Path, reason: str, column: str | None = None, rows: int | None = None
    ):
        # rows: how many rows the batch held if known (None: unreadable, rows may be lost)
        self.file, self.column, self.reason, self.rows = str(file), column, reason, rows
        where = f"{self.file}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {reason}")


def read_batch(path: Path) -> tuple[pd.DataFrame, bool]:
    """Read a raw batch (parquet, csv or jsonl); returns the frame and whether it is typed."""
    path = Path(path)
    if not path.exists():
        raise BatchRejected(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BatchRejected(path, "file is empty (0 bytes)", rows=0)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path).to_pandas(), True
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            df[READ_ERROR_COLUMN] = _short_csv_rows(path, len(df))
            return df, False
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False), False
    except pd.errors.EmptyDataError:
        raise BatchRejected(path, "file has no header and no rows", rows=0) from None
    except (pa.ArrowInvalid, OSError, ValueError, pd.errors.ParserError) as e:
        raise BatchRejected(path, f"unreadable or truncated {suffix} file: {e}") from None
    raise BatchRejected(path, f"unsupported file type '{suffix}' (use parquet, csv or jsonl)")


def _short_csv_rows(path: Path, n_rows: int) -> list[str | None]:
    """Flag rows with fewer fields than the header (a truncated write leaves one at the end)."""

    errors: list[str | None] = [None] * n_rows
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        width = len(next(reader, []))
        for i, rec in enumerate(reader):
            if i < n_rows and rec and len(rec) < width:
                errors[i] = f"truncated row: {len(rec)} of {width} fields"
    if n_rows and not path.read_bytes().endswith(b"\n") and errors[-1] is None:
        errors[-1] = "truncated row: file ends mid-line"
    return errors


def _typed_ok(series: pd.Series, kind: str) -> bool:
    dt = series.dtype
    if series.isna().all():
        return True
    if kind == "string":
        return (
            pd.api.types.is_object_dtype(dt)
            or pd.api.types.is_string_dtype(dt)
            or (pd.api.types.is_integer_dtype(dt))
        )
    if kind in ("int", "float"):
        return pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
    if kind == "timestamp":
        return pd.api.types.is_datetime64_any_dtype(dt)
    if kind == "date":
        if pd.api.types.is_datetime64_any_dtype(dt):
            return True
        sample = series.dropna().iloc[:1]
        return len(sample) == 0 or hasattr(sample.iloc[0], "isoformat")
    raise ValueError(kind)


def _coerce(series: pd.Series, kind: str) -> pd.Series:
    if kind == "string":
        return series.map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    if kind == "float":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if kind == "int":
        num = pd.to_numeric(series, errors="coerce")
        num = num.where(num.isna() | (num == num.round()))
        return num.astype("Int64")
    if kind == "timestamp":
        return pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    if kind == "date":
        return pd.to_datetime(series, errors="coerce", format="mixed").dt.date
    raise ValueError(kind)


def conform(df: pd.DataFrame, table: str, file: str | Path, typed: bool) -> pd.DataFrame:
    """Select and type the canonical columns of `table`.

    Raises BatchRejected for an empty batch, a missing column, or (typed files) a column
    of the wrong type. For untyped files, values that fail to parse become null and the
    row gets a `_type_error` naming the column, for the contract to quarantine.
    """
    schema = SCHEMAS[table]
    if len(df) == 0:
        raise BatchRejected(file, "batch has a header but no rows")
    missing = [c.name for c in schema if c.name not in df.columns]
    if missing:
        raise BatchRejected(file, f"missing required column (expected {table} schema)", missing[0])
    out = pd.DataFrame(index=df.index)
    type_error = (
        df[READ_ERROR_COLUMN].astype(object)
        if READ_ERROR_COLUMN in df
        else pd.Series(None, index=df.index, dtype=object)
    )
    for col in schema:
        raw = df[col.name]
        if typed and not _typed_ok(raw, col.kind):
            raise BatchRejected(file, f"has type {raw.dtype}, expected {col.kind}", col.name)
        value = _coerce(raw, col.kind)
        if col.kind == "timestamp" and typed and value.dt.tz is None:
            value = value.dt.tz_localize("UTC")
        broke = raw.notna() & pd.Series(value, index=df.index).isna()
        if broke.any():
            type_error = type_error.where(
                ~broke | type_error.notna(), f"{col.name}: not a {col.kind}"
            )
        out[col.name] = value
    out[TYPE_ERROR_COLUMN] = type_error
    return out.reset_index(drop=True)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write parquet to a temp name and rename, so readers never see a half file."""
    with replacing(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path
