"""Run a table's contract over raw batches: schema gate, GX checkpoint, quarantine, Data Docs.

`validate_table` is the entry point Dagster, the CLI and tests call. It reads every raw
batch, rejects unusable batches whole, validates the remaining rows with a Great
Expectations checkpoint (Data Docs are updated by the checkpoint's action), moves
rows that break a rule to quarantine with the rule's name, and returns the valid rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import pandas as pd

from data_contracts.gx_project import gx_context
from data_contracts.quarantine import Quarantine
from data_contracts.suites import events_suite, items_suite, users_suite
from ingestion.canonical import SCHEMAS, TYPE_ERROR_COLUMN, BatchRejected, conform, read_batch

log = logging.getLogger(__name__)
SOURCE_COLUMNS = ["_source_file", "_row"]
FLAG_COLUMNS = ["_item_known", "_user_known", "_exposed_in_request"]


@dataclass
class ContractReport:
    """What a contract run did to one (table, day)."""

    table: str
    day: dt.date | None
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    rejected_batches: list[dict]
    rows_in: int
    failed_rules: dict[str, int] = field(default_factory=dict)
    docs_index: Path | None = None

    @property
    def quarantined_rows(self) -> int:
        """Rows quarantined individually plus rows of batches rejected whole."""
        return len(self.quarantined) + sum(b.get("rows") or 0 for b in self.rejected_batches)

    @property
    def quarantine_fraction(self) -> float:
        """Share of incoming rows that did not pass (0 when nothing came in)."""
        return self.quarantined_rows / self.rows_in if self.rows_in else 0.0

    @property
    def success(self) -> bool:
        """Every batch readable with the right schema and every row passing every rule."""
        return not self.rejected_batches and not self.failed_rules

    def passes_gate(self, max_fraction: float) -> bool:
        """The data gate: no batch unreadable, and quarantined share within the limit."""
        unreadable = any(b.get("rows") is None for b in self.rejected_batches)
        return not unreadable and self.rows_in > 0 and self.quarantine_fraction <= max_fraction

    def summary(self) -> dict:
        """Plain numbers for metadata and logs."""
        return {
            "table": self.table,
            "day": self.day.isoformat() if self.day else None,
            "rows_in": self.rows_in,
            "valid_rows": len(self.valid),
            "quarantined_rows": self.quarantined_rows,
            "quarantine_fraction": round(self.quarantine_fraction, 6),
            "rejected_batches": [f"{b['file']}: {b['reason']}" for b in self.rejected_batches],
            "failed_rules": self.failed_rules,
        }


def _run_checkpoint(
    ctx: gx.data_context.FileDataContext, table: str, suite: gx.ExpectationSuite, df: pd.DataFrame
) -> gx.checkpoint.CheckpointResult:
    source = ctx.data_sources.add_or_update_pandas("sidflow")
    asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(
        table
    )
    batch = next(
        (b for b in asset.batch_definitions if b.name == "day"), None
    ) or asset.add_batch_definition_whole_dataframe("day")
    suite = ctx.suites.add_or_update(suite)
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{table}_contract", data=batch, suite=suite)
    )
    checkpoint = ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{table}_checkpoint",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE"},
        )
    )
    return checkpoint.run(batch_parameters={"dataframe": df})


def _rows_breaking(
    result: gx.checkpoint.CheckpointResult, df: pd.DataFrame
) -> tuple[pd.Series, dict]:
    """Map each failing row (by index) to the rules it broke, from a COMPLETE result."""
    rules = pd.Series("", index=df.index, dtype=object)
    counts: dict[str, int] = {}
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            cfg = r.expectation_config
            rule = (cfg.meta or {}).get("rule", cfg.type)
            idx = pd.Index(r.result.get("unexpected_index_list") or [])
            if cfg.type == "expect_column_values_to_be_unique" and len(idx):
                # Quarantine the repeats; the first occurrence of a key stays valid.
                repeat = df[cfg.kwargs["column"]].duplicated(keep="first")
                idx = idx[repeat.loc[idx].to_numpy()]
                rule = f"{rule} (first occurrence kept)"
            counts[rule] = counts.get(rule, 0) + max(len(idx), 1)
            if not len(idx):
                continue
            # Type/read errors carry a per-row message naming the column.
            why = (
                df.loc[idx, TYPE_ERROR_COLUMN]
                if cfg.kwargs.get("column") == TYPE_ERROR_COLUMN
                else pd.Series(rule, index=idx)
            )
            rules.loc[idx] = [
                f"{s}; {w}" if s else w for s, w in zip(rules.loc[idx], why, strict=True)
            ]
    return rules, counts


def validate_table(
    table: str,
    files: Sequence[Path],
    workdir_gx: Path,
    quarantine: Quarantine,
    day: dt.date | None = None,
    scenes: list[str] | None = None,
    known_items: set[str] | None = None,
    known_users: set[str] | None = None,
    extra_flags: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    batch: str | None = None,
) -> ContractReport:
    """Validate all raw batches of (table, day); quarantine rejects; return the valid rows.

    `window` = (first, last) day bounds the events' timestamps of a multi-day batch (the
    history batch); `day` bounds them to one day; neither: not in the future. `batch` names
    the quarantine entry when there is no day (e.g. "history").
    """
    where = day if day is not None else batch
    frames, rejected, rows_in = [], [], 0
    for f in files:
        try:
            raw, typed = read_batch(Path(f))
        except BatchRejected as e:
            rejected.append(_rejection(e, rows=e.rows))
            continue
        rows_in += len(raw)
        try:
            frame = conform(raw, table, f, typed)
        except BatchRejected as e:
            rejected.append(_rejection(e, rows=len(raw)))
            continue
        frame["_source_file"] = str(f)
        frame["_row"] = range(len(frame))
        frames.append(frame)
    cols = [c.name for c in SCHEMAS[table]]
    if not frames:
        empty = pd.DataFrame(columns=cols)
        quarantine.write(table, where, pd.DataFrame(), rejected)
        return ContractReport(table, day, empty, pd.DataFrame(), rejected, rows_in)
    df = pd.concat(frames, ignore_index=True)
    ctx = gx_context(str(workdir_gx))  # suites need an active context
    if table == "events":
        df = _event_flags(df, known_items, known_users)
        if day is not None or window is not None:
            first, last = window or (day, day)
            start = pd.Timestamp(first, tz="UTC").to_pydatetime()
            end = pd.Timestamp(last, tz="UTC").to_pydatetime() + dt.timedelta(days=1)
        else:  # a bulk load: only reject timestamps in the future or before e-commerce
            start = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
            end = dt.datetime.now(dt.UTC)
        suite = events_suite(start, end, scenes or ["feed", "search", "similar"])
    else:
        suite = {"items": items_suite, "users": users_suite}[table]()
    if extra_flags:
        df = extra_flags(df)
    result = _run_checkpoint(ctx, table, suite, df)
    rules, counts = _rows_breaking(result, df)
    bad = rules != ""
    quarantined = (
        df[bad]
        .drop(columns=[c for c in FLAG_COLUMNS if c in df.columns])
        .assign(_rule=rules[bad], _day=day.isoformat() if day else batch)
    )
    valid = df[~bad][cols].reset_index(drop=True)
    quarantine.write(table, where, quarantined, rejected)
    docs = Path(workdir_gx) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return ContractReport(table, day, valid, quarantined, rejected, rows_in, counts, docs)


def _rejection(e: BatchRejected, rows: int | None) -> dict:
    log.warning("batch rejected: %s", e)
    return {"file": e.file, "column": e.column, "reason": e.reason, "rows": rows}


def _event_flags(
    df: pd.DataFrame, known_items: set[str] | None, known_users: set[str] | None
) -> pd.DataFrame:
    """Referential and request-consistency flags the events suite checks."""
    df = df.copy()
    df["_item_known"] = df["item_id"].isin(known_items) if known_items is not None else True
    df["_user_known"] = df["user_id"].isin(known_users) if known_users is not None else True
    exposures = df["event_type"] == "exposure"
    if exposures.any():
        shown = pd.MultiIndex.from_frame(df.loc[exposures, ["request_id", "item_id"]])
        key = pd.MultiIndex.from_frame(df[["request_id", "item_id"]])
        df["_exposed_in_request"] = exposures | key.isin(shown)
    else:
        # Sources without impressions (reviews) cannot be checked for exposure.
        df["_exposed_in_request"] = True
    return df
