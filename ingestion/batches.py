"""A raw batch file (parquet, CSV, JSON Lines) read into canonical rows: the contract's first step.

`read_batch` reads a landed file as it is; text files are read record by record
(`ingestion.textlines`), so a line that cannot be decoded or parsed becomes one row holding
its line number, raw bytes (escaped) and the reason in `_read_error`, and the file's other
rows go on. `conform` picks and types the canonical columns of a table. A batch whose
*schema* is wrong (a missing column, a typed column of the wrong type, epoch numbers without
`data.ts_unit`, an empty or unreadable file) is rejected whole with `BatchRejected`, naming
the file and the column. A value that does not parse in a text file is a row-level error
(`_type_error`, with the column and the value) that the contract quarantines.

Every row keeps where it came from: `_file`, `_row` (its record number in the file, from 0)
and, for text files, `_line` (its first physical line, from 1; the header is line 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.canonical import SCHEMAS
from ingestion.textlines import TextFileError, TextTable, read_delimited, read_jsonl
from ingestion.timestamps import FIX, EpochWithoutUnit, parse_ts

FILE, ROW, LINE, RAW = "_file", "_row", "_line", "_raw"
READ_ERROR = "_read_error"  # why a line could not be read (the row has no values)
TYPE_ERROR, TYPE_COLUMN, TYPE_VALUE = "_type_error", "_type_column", "_type_value"
TEXT_SUFFIXES = (".csv", ".jsonl", ".json")
VALUE_CHARS = 80  # characters of a value that did not parse kept in its row's reason
KIND_NAMES = {
    "string": "a string",
    "int": "an int",
    "float": "a float",
    "timestamp": "a timestamp",
    "date": "a date",
}


# the rule a batch rejected whole broke (a text file's header problems name their own)
NO_FILE = "file does not exist"
EMPTY = "file is empty"
UNREADABLE = "file cannot be read"
UNSUPPORTED = "unsupported file type"
MISSING_COLUMN = "missing required column"
WRONG_TYPE = "column of the wrong type"
EPOCH_WITHOUT_UNIT = "epoch times without data.ts_unit"


class BatchRejected(ValueError):
    """A whole batch is unusable: `rule` says which check it failed, `reason` why in words;
    `file`, `column` and `line` say where, `rows` how many rows it held (None: unknown, the
    file cannot be read)."""

    def __init__(
        self,
        file: str | Path,
        reason: str,
        column: str | None = None,
        rows: int | None = None,
        *,
        rule: str,
        line: int | None = None,
    ):
        self.file, self.column, self.reason, self.rows = str(file), column, reason, rows
        self.rule, self.line = rule, line
        where = self.file + (f", line {line}" if line else "")
        where += f", column '{column}'" if column else ""
        super().__init__(f"{where}: {reason}")


@dataclass
class RawBatch:
    """One landed file as read: its columns as they are, plus `_row`, `_line`, `_read_error`
    and `_raw` (unreadable lines); `typed`: parquet (types are the schema's business)."""

    file: Path
    frame: pd.DataFrame
    typed: bool
    header: list[str]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def unreadable(self) -> int:
        """Lines that could not be read."""
        return int(self.frame[READ_ERROR].notna().sum())


def _lines_after_header(path: Path) -> int:
    return max(sum(1 for line in path.read_bytes().splitlines() if line.strip()) - 1, 0)


def _text_frame(table: TextTable, csv: bool) -> pd.DataFrame:
    good = pd.DataFrame(table.rows, columns=table.header, dtype=object)
    if csv:
        good = good.where(good != "", None)
    good = good.assign(**{ROW: table.records, LINE: table.lines, READ_ERROR: None, RAW: None})
    bad = pd.DataFrame(
        {
            ROW: [b.record for b in table.bad],
            LINE: [b.line for b in table.bad],
            READ_ERROR: [b.reason for b in table.bad],
            RAW: [b.raw for b in table.bad],
        }
    )
    if not len(bad):
        return good
    frame = pd.concat([good.astype(object), bad.astype(object)], ignore_index=True)
    return frame.sort_values(ROW, kind="stable").reset_index(drop=True)


def read_batch(path: Path) -> RawBatch:
    """Read a raw batch (parquet, csv or jsonl) as it is; raises BatchRejected when the file
    cannot be read as a table at all (missing, empty, truncated parquet, no header)."""
    path = Path(path)
    if not path.exists():
        raise BatchRejected(path, "file does not exist", rule=NO_FILE)
    if path.stat().st_size == 0:
        raise BatchRejected(path, "file is empty (0 bytes)", rows=0, rule=EMPTY)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as e:
            raise BatchRejected(
                path, f"unreadable or truncated .parquet file: {e}", rule=UNREADABLE
            ) from None
        header = list(frame.columns)
        frame = frame.assign(**{ROW: range(len(frame)), LINE: None, READ_ERROR: None, RAW: None})
        return RawBatch(path, frame, True, header)
    if suffix in TEXT_SUFFIXES:
        try:
            if suffix == ".csv":
                table = read_delimited(path, final_newline=True)
            else:
                table = read_jsonl(path, final_newline=True)
        except TextFileError as e:
            rows = _lines_after_header(path)
            raise BatchRejected(
                path, e.reason, e.column, rows, rule=e.reason, line=e.line
            ) from None
        return RawBatch(path, _text_frame(table, suffix == ".csv"), False, table.header)
    raise BatchRejected(
        path, f"unsupported file type '{suffix}' (use parquet, csv or jsonl)", rule=UNSUPPORTED
    )


def _typed_ok(series: pd.Series, kind: str) -> bool:
    dt = series.dtype
    if series.isna().all():
        return True
    if kind == "string":
        return (
            pd.api.types.is_object_dtype(dt)
            or pd.api.types.is_string_dtype(dt)
            or pd.api.types.is_integer_dtype(dt)
        )
    if kind in ("int", "float"):
        return pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
    if kind == "timestamp":  # epoch numbers: parse_ts says whether data.ts_unit allows them
        numeric = pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
        return pd.api.types.is_datetime64_any_dtype(dt) or numeric
    if kind == "date":
        if pd.api.types.is_datetime64_any_dtype(dt):
            return True
        sample = series.dropna().iloc[:1]
        return len(sample) == 0 or hasattr(sample.iloc[0], "isoformat")
    raise ValueError(kind)


def _scalar(value: object) -> bool:
    """A value a column can hold: not missing, not a JSON object or list, not a boolean."""
    if isinstance(value, (dict, list, tuple, set, bool)):
        return False
    try:
        return not pd.isna(value)
    except (TypeError, ValueError):  # an array-like value
        return False


def _scalars(series: pd.Series) -> pd.Series:
    """`series` with JSON objects, lists and booleans (in an object column) as None: they
    are no value of any canonical type, and their rows break the parse rule."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return series
    plain = ("string", "empty", "integer", "floating", "mixed-integer-float", "decimal")
    if pd.api.types.infer_dtype(series, skipna=True) in plain:
        return series
    return series.map(lambda v: v if _scalar(v) else None)


def _coerce(series: pd.Series, kind: str) -> pd.Series:
    if kind == "string":
        return series.map(lambda v: None if v is None or pd.isna(v) else str(v)).astype(object)
    if kind == "float":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if kind == "int":
        num = pd.to_numeric(series, errors="coerce")
        num = num.where(num.isna() | (num == num.round()))
        return num.astype("Int64")
    if kind == "date":
        return pd.to_datetime(series, errors="coerce", format="mixed").dt.date
    raise ValueError(kind)


def conform(batch: RawBatch, table: str, ts_unit: str = "datetime") -> pd.DataFrame:
    """The canonical columns of `table`, typed, with the rows' provenance and errors.

    Raises BatchRejected for a missing column, a typed column of the wrong type, or epoch
    numbers in `ts` while `ts_unit` is `datetime` (the message says how to declare them).
    A header-only file conforms to no rows. In a text file a value that does not parse
    becomes null and its row gets `_type_error` (`price: not a float`), `_type_column` and
    `_type_value`; unreadable lines keep `_read_error` and null values.
    """
    df, file = batch.frame, batch.file
    readable = df[READ_ERROR].isna()
    header_known = batch.typed or file.suffix.lower() == ".csv" or readable.any()
    missing = [c.name for c in SCHEMAS[table] if c.name not in batch.header]
    if missing and header_known:
        raise BatchRejected(
            file,
            f"missing required column (expected {table} schema)",
            missing[0],
            len(df),
            rule=MISSING_COLUMN,
        )
    out = pd.DataFrame(index=df.index)
    errors = pd.DataFrame({TYPE_ERROR: None, TYPE_COLUMN: None, TYPE_VALUE: None}, index=df.index)
    for col in SCHEMAS[table]:
        raw = df[col.name] if col.name in df else pd.Series(None, index=df.index, dtype=object)
        if batch.typed and not _typed_ok(raw, col.kind):
            raise BatchRejected(
                file,
                f"has type {raw.dtype}, expected {col.kind}",
                col.name,
                len(df),
                rule=WRONG_TYPE,
            )
        raw_values = _scalars(raw)
        if col.kind == "timestamp":
            try:
                value = parse_ts(
                    raw_values.where(readable, None) if not batch.typed else raw_values, ts_unit
                )
            except EpochWithoutUnit as e:
                raise BatchRejected(
                    file, f"{e.reason}. To fix: {FIX}", col.name, len(df), rule=EPOCH_WITHOUT_UNIT
                ) from None
        else:
            value = _coerce(raw_values, col.kind)
        broke = raw.notna() & pd.Series(value, index=df.index).isna() & readable
        first = broke & errors[TYPE_ERROR].isna()
        if first.any():
            errors.loc[first, TYPE_ERROR] = f"{col.name}: not {KIND_NAMES[col.kind]}"
            errors.loc[first, TYPE_COLUMN] = col.name
            errors.loc[first, TYPE_VALUE] = raw[first].map(lambda v: str(v)[:VALUE_CHARS])
        out[col.name] = value
    out[FILE] = str(file)
    for c in (ROW, LINE, RAW, READ_ERROR):
        out[c] = df[c].astype(object).where(df[c].notna(), None)
    out[ROW] = df[ROW].astype("int64")
    return pd.concat([out, errors], axis=1).reset_index(drop=True)
