"""Compute the feature tables of days [first_day, last_day] in DuckDB and write them as parquet.

The SQL lives in `features/sql/*.sql` (Jinja-templated over the windows). One call reads the
warehouse once (read-only), builds every view for every day of the range, and writes one file
per view and day, `<features_dir>/<view>/day=<d>.parquet`, replaced atomically: writing day d
again gives the same file (idempotent). The daily Dagster asset computes one day; backfills and
the benchmark compute a whole range in one pass.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import jinja2
import pandas as pd

from features.schema import TIMESTAMP, U2I_ATTRIBUTES, ViewSpec, view_specs
from ingestion.warehouse import Warehouse
from sidflow.atomic import replacing
from sidflow.config import FeaturesParams

SQL_DIR = Path(__file__).parent / "sql"
EVENT_FLAGS = {
    "exposure": "has_exposure",
    "click": "has_click",
    "cart": "has_cart",
    "purchase": "has_purchase",
}
# u2i_stats.sql sums a day's three counts packed in one BIGINT, this many bits each (3 x 21 < 63)
PACK_BITS = 21


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(SQL_DIR), undefined=jinja2.StrictUndefined
    )


def render_sql(template: str, **context: object) -> str:
    """Render `features/sql/<template>.sql` with the given template variables."""
    return _templates().get_template(f"{template}.sql").render(**context)


@dataclass
class FeatureTablesReport:
    """What one computation wrote: rows per view and day, null shares and empty features."""

    first_day: dt.date
    last_day: dt.date
    rows: dict[str, dict[str, int]]  # view -> day -> rows
    null_share: dict[str, dict[str, float]]  # view -> feature -> share of NULL values
    empty_features: dict[str, str]  # feature -> why it is empty (the source lacks its events)
    event_types: dict[str, bool]  # event type -> present in the source by last_day
    paths: dict[str, list[str]] = field(default_factory=dict)  # view -> files written
    seconds: float = 0.0
    seconds_per_view: dict[str, dict[str, float]] = field(default_factory=dict)  # build, write

    def summary(self) -> dict:
        """A JSON-friendly digest (for Dagster metadata and the CLI)."""
        return {
            "days": [self.first_day.isoformat(), self.last_day.isoformat()],
            "rows": {v: sum(d.values()) for v, d in self.rows.items()},
            "event_types_present": self.event_types,
            "empty_features": self.empty_features,
            "seconds": round(self.seconds, 3),
            "seconds_per_view": self.seconds_per_view,
        }


def _execute_script(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> None:
    """Run the statements of `sql` (split by DuckDB's parser, so a `;` inside a comment or a
    string literal is not a separator); `params` go to those that name a `$param`."""
    for statement in con.extract_statements(sql):
        con.execute(statement, params if params and statement.named_parameters else None)


def _key_sources(specs: dict[str, ViewSpec]) -> dict[str, str]:
    """Every join key of the views -> the table its values come from (items or events)."""
    keys = sorted({k for spec in specs.values() for k in spec.join_keys})
    return {k: "items" if k in U2I_ATTRIBUTES else "events" for k in keys}


def _keys_with_values(con: duckdb.DuckDBPyConnection, sources: dict[str, str]) -> list[str]:
    """The key columns that have a non-null value (an ENUM needs at least one member)."""
    return [
        k
        for k, table in sources.items()
        if con.execute(f"SELECT 1 FROM {table} WHERE {k} IS NOT NULL LIMIT 1").fetchone()
    ]


def _context(fp: FeaturesParams) -> dict:
    return {
        "windows": fp.windows_days,
        "max_window": fp.windows_days[-1],
        "m": repr(float(fp.prior_strength)),
    }


def u2i_pack_bits(con: duckdb.DuckDBPyConnection, name: str, fp: FeaturesParams) -> int | None:
    """PACK_BITS if every window sum of the view's daily counts fits in it, else None.

    A window holds at most `max_window` daily rows of a key, so the largest daily count times
    `max_window` bounds every sum; past it (e.g. bot traffic) the counts are summed one by one.
    """
    (largest,) = con.execute(
        f"SELECT max(greatest(exposures, clicks, purchases)) FROM fe_daily_{name}"
    ).fetchone()
    fits = (largest or 0) * fp.windows_days[-1] < 2**PACK_BITS
    return PACK_BITS if fits else None


def build_view(
    con: duckdb.DuckDBPyConnection,
    spec: ViewSpec,
    fp: FeaturesParams,
    days: dict,
    pack: bool = True,
) -> str:
    """Create temp table `fe_out_<view>` with the view's rows for every day; returns its name.

    `pack=False` sums the u2i counts one by one even when they fit packed (the same rows).
    """
    ctx = _context(fp)
    name, keys = spec.name, list(spec.join_keys)
    con.execute(render_sql("daily_counts", name=name, keys=keys, recency=spec.name == "user_stats"))
    con.execute(render_sql("changed_keys", name=name, keys=keys, **ctx), days)
    if spec.ttl_group != "u2i":
        sql = render_sql(spec.name, name=name, **ctx)
    else:
        bits = u2i_pack_bits(con, name, fp) if pack else None
        sql = render_sql(
            "u2i_stats",
            name=name,
            attribute=keys[1],
            prefix=f"u_{keys[1]}",
            pack_bits=bits,
            **ctx,
        )
    out = f"fe_out_{spec.name}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS {sql}")
    return out


def _write_day(
    con: duckdb.DuckDBPyConnection,
    table: str,
    spec: ViewSpec,
    day: dt.date,
    path: Path,
    enum_keys: list[str],
) -> None:
    """Write one day's rows of `table` to `path` atomically (temp file, then rename)."""
    # the keys are ENUMs (events_window.sql): written as plain strings, since parquet would
    # otherwise carry the whole ENUM dictionary in every file
    cols = ", ".join(
        f"CAST({c} AS VARCHAR) AS {c}" if c in spec.join_keys else c for c in spec.columns
    )
    # sorted by key value: an ENUM's codes follow its sorted values, and integers sort faster
    # than the strings (the same file, a third less time)
    order = ", ".join(f"enum_code({k})" if k in enum_keys else k for k in spec.join_keys)
    with replacing(path) as tmp:
        con.execute(
            f"COPY (SELECT {cols} FROM {table} WHERE d = DATE '{day.isoformat()}' "
            f"ORDER BY {order}) TO '{tmp.as_posix()}' (FORMAT parquet)"
        )


def _null_shares(con: duckdb.DuckDBPyConnection, table: str, spec: ViewSpec) -> dict[str, float]:
    exprs = ", ".join(f"count({f})" for f in spec.feature_names)
    n, *counts = con.execute(f"SELECT count(*), {exprs} FROM {table}").fetchone()
    return {f: (1 - c / n if n else 1.0) for f, c in zip(spec.feature_names, counts, strict=True)}


def compute_feature_tables(
    warehouse: Warehouse,
    features_dir: Path,
    fp: FeaturesParams,
    first_day: dt.date,
    last_day: dt.date | None = None,
    pack: bool = True,
    ingested_through: dt.date | None = None,
) -> FeatureTablesReport:
    """Compute and write every feature view for each day of [first_day, last_day].

    Row `event_timestamp` = end of day d; only events with day <= d feed a row of day d.
    Raises ValueError when the warehouse has no events up to `last_day` (ingest it first),
    unless the caller vouches that every day through `ingested_through` is ingested (the
    history batch, whose last days may hold no event).
    """
    last_day = last_day or first_day
    if last_day < first_day:
        raise ValueError(f"features: last_day {last_day} is before first_day {first_day}")
    t0 = time.perf_counter()
    specs = view_specs(fp)
    days = {"first_day": first_day, "last_day": last_day}
    with warehouse.connect(read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        (latest,) = con.execute("SELECT max(day) FROM events").fetchone()
        if latest is None or (latest < last_day and (ingested_through or latest) < last_day):
            raise ValueError(
                f"features for {last_day}: the warehouse {warehouse.path} has events only up to "
                f"{latest}; ingest that day first (warehouse_events)"
            )
        ctx = _context(fp)
        sources = _key_sources(specs)
        enum_keys = _keys_with_values(con, sources)
        script = render_sql("events_window", key_sources=sources, enum_keys=enum_keys, **ctx)
        _execute_script(con, script, days)
        con.execute(render_sql("day_context", **ctx), days)
        flags = con.execute(
            "SELECT has_exposure, has_click, has_cart, has_purchase FROM fe_day_context "
            "ORDER BY d DESC LIMIT 1"
        ).fetchone()
        present = dict(zip(EVENT_FLAGS, flags, strict=True))
        report = FeatureTablesReport(first_day, last_day, {}, {}, {}, present)
        for spec in specs.values():
            t_build = time.perf_counter()
            table = build_view(con, spec, fp, days, pack)
            t_write = time.perf_counter()
            per_day = dict(con.execute(f"SELECT d, count(*) FROM {table} GROUP BY d").fetchall())
            report.rows[spec.name] = {}
            report.paths[spec.name] = []
            day = first_day
            while day <= last_day:
                path = Path(features_dir) / spec.name / f"day={day.isoformat()}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_day(con, table, spec, day, path, enum_keys)
                report.rows[spec.name][day.isoformat()] = int(per_day.get(day, 0))
                report.paths[spec.name].append(str(path))
                day += dt.timedelta(days=1)
            report.seconds_per_view[spec.name] = {
                "build": round(t_write - t_build, 2),
                "write": round(time.perf_counter() - t_write, 2),
            }
            report.null_share[spec.name] = _null_shares(con, table, spec)
            for f in spec.features:
                missing = [t for t in f.needs if not present[t]]
                if missing:
                    report.empty_features[f.name] = (
                        f"the source has no {' or '.join(missing)} events up to {last_day}"
                    )
            for temp in (table, f"fe_daily_{spec.name}", f"fe_changed_{spec.name}"):
                con.execute(f"DROP TABLE {temp}")  # keep memory to one view at a time
    report.seconds = time.perf_counter() - t0
    return report


def read_feature_table(features_dir: Path, view: str, day: dt.date | None = None):  # noqa: ANN201
    """Read one view's rows (one day, or all days) as a DataFrame sorted by key and time."""

    folder = Path(features_dir) / view
    files = [folder / f"day={day.isoformat()}.parquet"] if day else sorted(folder.glob("*.parquet"))
    if not files or not files[0].exists():
        raise FileNotFoundError(f"no feature table for view '{view}' in {folder}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    keys = [
        c
        for c in frame.columns
        if c.endswith("_id") or c in ("cat_l2", "cat_l3", "brand", "seller")
    ]
    return frame.sort_values([*keys, TIMESTAMP], kind="stable").reset_index(drop=True)
