"""Event times to UTC timestamps, by the one setting that says how they are written.

`data.ts_unit` (params.yaml) is `datetime` (date-time strings or typed timestamps, the
default), `s` (epoch seconds) or `ms` (epoch milliseconds). The source readers
(`ingestion/readers/mapping.py`) and the contract's batch reader (`ingestion/canonical.py`)
both parse with `parse_ts`; numbers under `datetime` stop with `EpochWithoutUnit`, whose
message says how to declare them.
"""

from __future__ import annotations

import re

import pandas as pd

TS_UNITS = ("datetime", "s", "ms")
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_MAX_SECONDS = 9.2e9  # pandas' nanosecond timestamps end in 2262
FIX = (
    "declare data.ts_unit: s (epoch seconds) or ms (epoch milliseconds), in params.yaml or "
    "with --set data.ts_unit=s"
)


class EpochWithoutUnit(ValueError):
    """A time column holds numbers, but `data.ts_unit` is `datetime`."""

    def __init__(self, example: object, dtype: str):
        self.example, self.dtype = example, dtype
        self.reason = (
            f"holds numbers ({dtype}, e.g. {example}), but data.ts_unit is 'datetime' "
            "(date-time strings)"
        )
        super().__init__(f"{self.reason}. To fix: {FIX}")


def looks_numeric(series: pd.Series) -> bool:
    """Whether the values are numbers (typed, or strings that read as numbers)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return False
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.notna().any()
    values = series.dropna().head(1000)  # a sample decides: the log's format is uniform
    if values.empty:
        return False
    return all(_NUMBER.fullmatch(str(v)) is not None for v in values)


def parse_ts(series: pd.Series, unit: str) -> pd.Series:
    """UTC timestamps from datetimes, datetime strings (`unit` datetime; naive = UTC) or
    epoch numbers (`unit` s / ms, ints or floats); what does not parse becomes NaT.

    Raises EpochWithoutUnit for numbers when `unit` is `datetime`.
    """
    if unit not in TS_UNITS:
        raise ValueError(f"ts_unit {unit!r} is not one of {TS_UNITS}")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is None:
            return series.dt.tz_localize("UTC")
        return series.dt.tz_convert("UTC")
    if unit == "datetime":
        if looks_numeric(series):
            raise EpochWithoutUnit(series.dropna().iloc[0], str(series.dtype))
        return pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    num = pd.to_numeric(series, errors="coerce").astype("float64")
    limit = _MAX_SECONDS * (1000 if unit == "ms" else 1)
    num = num.where(num.abs() < limit)
    return pd.to_datetime(num, unit=unit, utc=True)
