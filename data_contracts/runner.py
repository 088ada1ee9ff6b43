"""Run a table's contract over raw batches: read, validate (GX), judge each batch, decide the gate.

`validate_table` is the entry point Dagster, the CLI and tests call. It writes nothing:
staging and publishing the outcome is `publish.py`. Steps:
1. every batch is read and conformed (`ingestion/batches.py`); a batch with an unusable
   schema is rejected whole, an unreadable line is one row that breaks `line cannot be read`;
2. the rows of all other batches are validated by the table's GX suite (`suites.py`), and
   `rules.py` finds the rules each row broke, with no cascades;
3. each batch is judged on its own: one whose share of bad rows exceeds
   `contracts.max_quarantine_fraction` is quarantined whole; the others keep their good rows;
4. the gate: the day stops only when the source's own batch (`main`) is rejected or
   quarantined, or when fewer than `contracts.min_valid_rows` good rows are left.
Engagements whose exposure was never logged or not kept are kept, and counted by the
suite's warning-level expectation.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data_contracts.docs import result_json, validate_rows
from data_contracts.gx_project import gx_context
from data_contracts.references import Reference
from data_contracts.report import (
    OVER_LIMIT,
    WHOLE_BATCH,
    BatchVerdict,
    ContractReport,
    Gate,
    day_key,
    quarantine_frame,
)
from data_contracts.rules import RowRules
from data_contracts.suites import events_suite, items_suite, users_suite
from ingestion.batches import FILE, UNREADABLE, BatchRejected, conform, read_batch
from ingestion.canonical import SCHEMAS
from sidflow.config import ContractParams

log = logging.getLogger(__name__)
FLAG_COLUMNS = ["_item_known", "_user_known", "_exposed_in_request"]
NOT_CHECKED = Reference(None, "not checked: no reference given")


def _ordered(files: Sequence[Path], main: Path | None) -> list[Path]:
    """The source's batch first (its rows are the first occurrence of a repeated key)."""
    files = [Path(f) for f in files]
    return sorted(files, key=lambda f: (main is None or f != Path(main), str(f)))


def _read(
    table: str, files: list[Path], main: Path | None, ts_unit: str
) -> tuple[list[pd.DataFrame], list[BatchVerdict]]:
    frames, rejected = [], []
    for f in files:
        try:
            frames.append(conform(read_batch(f), table, ts_unit))
        except BatchRejected as e:
            log.warning("batch rejected: %s", e)
            rejected.append(BatchVerdict.rejected(e, f == main))
        except Exception as e:  # noqa: BLE001  (an unforeseen file: set aside, never a crash)
            log.exception("batch rejected: %s could not be read", f)
            why = BatchRejected(f, f"cannot be read ({type(e).__name__}: {e})", rule=UNREADABLE)
            rejected.append(BatchVerdict.rejected(why, f == main))
    return frames, rejected


def _exposed(df: pd.DataFrame, kept: pd.Series) -> pd.Series:
    """Whether each event is an exposure, or an engagement with a kept exposure of the same
    item in its request; rows not kept are not counted (True). Sources without exposures
    (reviews) cannot be checked: True."""
    exposures = (df["event_type"] == "exposure") & kept
    if not (df["event_type"] == "exposure").any():
        return pd.Series(True, index=df.index)
    shown = pd.MultiIndex.from_frame(df.loc[exposures, ["request_id", "item_id"]])
    key = pd.MultiIndex.from_frame(df[["request_id", "item_id"]])
    return (df["event_type"] == "exposure") | key.isin(shown) | ~kept


def _suite(table, limits, day, window, scenes, items, users):  # noqa: ANN001, ANN202
    if table != "events":
        return {"items": items_suite, "users": users_suite}[table](limits)
    if day is not None or window is not None:
        first, last = window or (day, day)
        start = pd.Timestamp(first, tz="UTC").to_pydatetime()
        end = pd.Timestamp(last, tz="UTC").to_pydatetime() + dt.timedelta(days=1)
    else:  # a bulk load: only reject timestamps in the future or before e-commerce
        start = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime.now(dt.UTC)
    return events_suite(limits, start, end, scenes, items.source, users.source)


def _over(
    df: pd.DataFrame, bad: pd.Series, files: list[Path], limit: float, skip: dict
) -> dict[str, tuple[int, str]]:
    """The batches (not in `skip`) whose share of bad rows exceeds `limit`: their bad rows
    and the reason."""
    out = {}
    for f in files:
        rows = df[FILE] == str(f)
        n, n_bad = int(rows.sum()), int((bad & rows).sum())
        if str(f) not in skip and n and n_bad / n > limit:
            why = f"{n_bad / n:.2%} of its {n:,} rows broke a rule (limit {limit:.2%})"
            out[str(f)] = (n_bad, why)
    return out


def _isolate(
    df: pd.DataFrame, rules: RowRules, files: list[Path], main: Path | None, limit: float
) -> tuple[list[BatchVerdict], pd.Series]:
    """Judge each batch; returns the verdicts and the rows of batches quarantined whole.

    A batch is first judged by its own rows (a key repeated only across batches does not
    count yet). Then a repeated key's kept original is chosen among the batches still in
    (the source's first) and the others are judged again, until none more goes over the
    limit: a good row is never counted a duplicate of a row that is not kept.
    """
    whole = pd.Series(False, index=df.index)
    rules.recount_duplicates(df, whole, within=df[FILE])
    reasons = _over(df, rules.bad, files, limit, {})
    while True:
        whole = df[FILE].isin(reasons)
        rules.recount_duplicates(df, whole)
        new = _over(df, rules.bad, files, limit, reasons)
        if not new:
            break
        reasons |= new  # grows every round, so the loop ends
    verdicts = []
    for f in files:
        rows = df[FILE] == str(f)
        n, n_bad = int(rows.sum()), int((rules.bad & rows).sum())
        if str(f) in reasons:  # as judged (its rows may since repeat kept ones)
            n_bad, reason = reasons[str(f)]
            verdicts.append(
                BatchVerdict(str(f), n, n_bad, "quarantined", reason, None, f == main, OVER_LIMIT)
            )
            continue
        reason = f"{n_bad:,} of {n:,} rows quarantined" if n_bad else None
        verdicts.append(BatchVerdict(str(f), n, n_bad, "accepted", reason, None, f == main))
    return verdicts, whole


def decide(
    batches: list[BatchVerdict], valid_rows: int, limits: ContractParams, floor: bool
) -> Gate:
    """The data gate: the source's batch accepted, and (days) at least the floor of good rows."""
    problems = [
        f"the source's batch {b.message}" for b in batches if b.main and b.status != "accepted"
    ]
    if floor and valid_rows < limits.min_valid_rows:
        problems.append(
            f"{valid_rows:,} good rows, fewer than contracts.min_valid_rows = "
            f"{limits.min_valid_rows:,}"
        )
    others = [b for b in batches if not b.main and b.status != "accepted"]
    aside = (
        f"; {len(others)} other batch(es) set aside: " + "; ".join(b.message for b in others)
        if others
        else ""
    )
    if problems:
        return Gate(False, "STOPPED: " + "; ".join(problems) + aside)
    main = next((b for b in batches if b.main), None)
    share = (
        f"; the source's batch {Path(main.file).name}: {main.fraction or 0:.2%} of rows "
        f"quarantined (limit {limits.max_quarantine_fraction:.2%})"
        if main
        else ""
    )
    return Gate(True, f"ok: {valid_rows:,} good rows{share}{aside}")


def validate_table(
    table: str,
    files: Sequence[Path],
    gx_root: Path,
    *,
    day: dt.date | None = None,
    batch: str | None = None,
    window: tuple[dt.date, dt.date] | None = None,
    limits: ContractParams | None = None,
    main: Path | None = None,
    scenes: list[str] | None = None,
    items: Reference = NOT_CHECKED,
    users: Reference = NOT_CHECKED,
    ts_unit: str = "datetime",
    floor: bool | None = None,
) -> ContractReport:
    """Validate the raw batches of (table, day) and decide what is kept; writes nothing.

    `window` = (first, last) day bounds the events' timestamps of a multi-day batch (the
    history batch); `day` bounds them to one day; neither: not in the future. `batch` names
    the outcome when there is no day (`history`, `snapshot`). `main`: the source's own batch,
    whose failure stops the day; the floor of good rows (`contracts.min_valid_rows`) applies
    to a day or a window unless `floor` is False (a check of given files, not of a day).
    `items` / `users`: the ids events are checked against (`references.py`).
    """
    limits = limits or ContractParams()
    key = day_key(day) if day is not None else (batch or "snapshot")
    files = _ordered(files, main)
    main = Path(main) if main is not None else None
    frames, rejected = _read(table, files, main, ts_unit)
    conformed = [f for f in files if str(f) not in {b.file for b in rejected}]
    cols = [c.name for c in SCHEMAS[table]]
    floor = (day is not None or window is not None) if floor is None else floor
    if not sum(len(f) for f in frames):  # nothing readable arrived (header-only files)
        batches = [BatchVerdict(str(f), 0, 0, "accepted", main=f == main) for f in conformed]
        batches += rejected
        return ContractReport(
            table,
            key,
            day,
            pd.DataFrame(columns=cols),
            pd.DataFrame(),
            batches,
            decide(batches, 0, limits, floor),
            limit=limits.max_quarantine_fraction,
        )
    df = pd.concat(frames, ignore_index=True)
    if table == "events":
        for flag, column, ref in (
            ("_item_known", "item_id", items),
            ("_user_known", "user_id", users),
        ):
            known = df[column].isna()  # a null id breaks its own rule, not this one
            df[flag] = known | df[column].isin(ref.ids) if ref.ids is not None else True
        df["_exposed_in_request"] = _exposed(df, pd.Series(True, index=df.index))
    gx_context(str(gx_root))  # a suite is built inside an active GX project
    suite = _suite(
        table, limits, day, window, scenes or ["feed", "search", "similar"], items, users
    )
    result = validate_rows(gx_root, table, suite, df)
    order = [(e.meta or {}).get("rule", e.expectation_type) for e in suite.expectations]
    rules = RowRules.from_result(result, df, order)
    judged, whole = _isolate(df, rules, conformed, main, limits.max_quarantine_fraction)
    bad = rules.bad | whole
    if table == "events":
        exposed = _exposed(df, ~bad)
        if not exposed.equals(df["_exposed_in_request"]):  # an exposure was not kept
            df["_exposed_in_request"] = exposed
            result = validate_rows(gx_root, table, suite, df)
    warnings = {
        (r.expectation_config.meta or {}).get("rule", r.expectation_config.type): int(
            r.result.get("unexpected_count") or 0
        )
        for r in result.results
        if not r.success and str(r.expectation_config.severity.value) != "critical"
    }
    first = rules.first(df)
    whole_only = whole & ~rules.bad
    reasons = {
        b.file: f"batch {Path(b.file).name} quarantined whole: {b.reason}"
        for b in judged
        if b.status == "quarantined"
    }
    extra = pd.DataFrame(
        {
            "rule": WHOLE_BATCH,
            "rules": WHOLE_BATCH,
            "column": None,
            "reason": df.loc[whole_only, FILE].map(reasons),
        },
        index=df.index[whole_only],
    )
    why = pd.concat([first, extra]).loc[df.index[bad]]
    quarantined = quarantine_frame(
        df[bad], cols, why["rule"], why["rules"], why["reason"], why["column"], key
    )
    batches = [*judged, *rejected]
    valid = df[~bad][cols].reset_index(drop=True)
    return ContractReport(
        table,
        key,
        day,
        valid,
        quarantined,
        sorted(batches, key=lambda b: (not b.main, b.file)),
        decide(batches, len(valid), limits, floor),
        rules.counts(df),
        warnings,
        {"item_id": items.source, "user_id": users.source} if table == "events" else {},
        limits.max_quarantine_fraction,
        result_json(result, table, key),
    )
