"""The events contract over small hand-made batches: every bad row is quarantined with its file,
row (line), column and rule; every good row is kept; whole-batch problems name the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from handmade import (
    DAY,
    ITEMS,
    SCENES,
    USERS,
    csv_lines,
    engagements,
    exposures,
    items,
    parquet_bytes,
)
from handmade import write as _write

from data_contracts.gx_project import INTERRUPTED, cut_config_files, gx_context
from data_contracts.runner import validate_table
from sidflow.config import ContractParams


def _validate(workdir, files, **kw):
    files = [Path(f) for f in files]
    kw = {
        "day": DAY,
        "main": files[0],
        "scenes": SCENES,
        "items": ITEMS,
        "users": USERS,
        "limits": ContractParams(),
        **kw,
    }
    return validate_table("events", files, workdir.gx_root, **kw)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _at7(column, value):
    return lambda df: df.assign(**{column: df[column].where(df.index != 7, value)})


# Row defects of one row (7) of 40 exposures: (name, break, rule, column, other rules broken)
ROW_DEFECTS = [
    ("null user", _at7("user_id", None), "user_id is null", "user_id", []),
    ("negative price", _at7("price", -3.0), "price outside [0, 1,000,000]", "price", []),
    (
        "position out of range",
        _at7("position", 5000),
        "position outside [0, 1,000]",
        "position",
        [],
    ),
    ("unknown item", _at7("item_id", "i-nope"), "item_id not in the catalogue", "item_id", []),
    ("unknown user", _at7("user_id", "u-nope"), "user_id not among known users", "user_id", []),
    (
        "duplicate event_id",
        _at7("event_id", "e0006"),
        "duplicate event_id (first kept)",
        "event_id",
        [],
    ),
    (
        "future timestamp",
        lambda df: df.assign(ts=df.ts.where(df.index != 7, df.ts[7] + pd.Timedelta(days=3))),
        "ts outside the partition day (future or late)",
        "ts",
        [],
    ),
    ("unknown scene", _at7("scene", "telepathy"), "unknown scene", "scene", []),
    ("unknown event_type", _at7("event_type", "teleport"), "unknown event_type", "event_type", []),
    (
        "over-long text",
        _at7("request_id", "r" * 201),
        "request_id longer than 200 characters",
        "request_id",
        [],
    ),
    (
        "over-long id",  # and so not a known user either
        _at7("user_id", "u" * 65),
        "user_id longer than 64 characters",
        "user_id",
        ["user_id not among known users"],
    ),
]


@pytest.mark.parametrize(
    ("name", "breaker", "rule", "column", "also"), ROW_DEFECTS, ids=[d[0] for d in ROW_DEFECTS]
)
def test_row_defect_is_quarantined_and_nothing_good_is_lost(
    workdir, name, breaker, rule, column, also
):
    good = exposures(40)
    f = _write(workdir.raw_dir("events", DAY) / "batch.parquet", breaker(good.copy()))
    before = _sha(f)
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (39, 1), report.summary()
    q = report.quarantined.iloc[0]
    assert (q["_rule"], q["_column"], q["_row"], q["_file"]) == (rule, column, 7, str(f))
    assert report.failed_rules == {r: 1 for r in [rule, *also]}
    assert q["_rules"] == "; ".join([rule, *also])
    assert set(good.drop(index=7)["event_id"]) <= set(report.valid["event_id"])
    assert report.gate.passed and report.batches[0].status == "accepted"
    assert _sha(f) == before, "raw input must be kept as received"


def test_a_row_breaking_two_rules_counts_once_under_each_with_the_first_as_reason(workdir):
    bad = exposures(40)
    bad.loc[3, ["price", "scene"]] = [-1.0, "telepathy"]
    f = _write(workdir.raw_dir("events", DAY) / "b.parquet", bad)
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (39, 1)
    assert report.failed_rules == {"price outside [0, 1,000,000]": 1, "unknown scene": 1}
    q = report.quarantined.iloc[0]
    assert q["_rule"] == "price outside [0, 1,000,000]"
    assert q["_rules"] == "price outside [0, 1,000,000]; unknown scene"
    assert q["_reason"] == "price outside [0, 1,000,000]: -1.0"


def test_undecodable_csv_line_is_one_quarantined_record_and_the_file_goes_on(workdir):
    lines = csv_lines(exposures(40))
    lines[5] = lines[5].replace(b"feed", b"f\xe9ed")  # record 4, physical line 6
    f = _write(workdir.raw_dir("events", DAY) / "partner.csv", b"".join(lines))
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (39, 1)
    q = report.quarantined.iloc[0]
    assert (q["_file"], q["_line"], q["_row"], q["_rule"]) == (str(f), 6, 4, "line cannot be read")
    assert q["_reason"].startswith("not valid UTF-8 (invalid continuation byte at byte ")
    assert "f\\xe9ed" in q["_raw"] and q["_raw"].startswith("e0004,")
    assert report.failed_rules == {"line cannot be read": 1}, "its empty values are not nulls"


def test_csv_lines_that_do_not_split_cost_one_line_each(workdir):
    lines = csv_lines(exposures(40))
    lines[3] = b"e-short,2026-01-01\n"  # too few fields
    lines[9] = lines[9].replace(b",feed,", b',"feed,')  # a quote never closed
    f = _write(workdir.raw_dir("events", DAY) / "split.csv", b"".join(lines))
    report = _validate(workdir, [f], limits=ContractParams(max_quarantine_fraction=0.1))
    assert (len(report.valid), len(report.quarantined)) == (38, 2)
    assert report.quarantined["_line"].tolist() == [4, 10]
    assert "has 2 fields, the header has 9" in report.quarantined["_reason"].iloc[0]


def test_truncated_csv_keeps_complete_rows(workdir):
    text = b"".join(csv_lines(exposures(40))).decode()
    cut = text[: text.rfind(",", 0, len(text) - 5)]  # stop in the middle of the last row
    f = _write(workdir.raw_dir("events", DAY) / "cut.csv", cut)
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (39, 1)
    assert report.quarantined["_line"].iloc[0] == 41


def test_jsonl_lines_that_do_not_parse_are_quarantined_one_each(workdir):
    text = exposures(40).to_json(orient="records", lines=True, date_format="iso")
    lines = text.splitlines(keepends=True)
    lines[2] = lines[2][:30] + "\n"  # JSON cut short
    lines[7] = "[1, 2, 3]\n"  # not an object
    f = _write(workdir.raw_dir("events", DAY) / "feed.jsonl", "".join(lines))
    report = _validate(workdir, [f], limits=ContractParams(max_quarantine_fraction=0.1))
    assert (len(report.valid), len(report.quarantined)) == (38, 2)
    assert report.quarantined["_line"].tolist() == [3, 8]
    assert "not a JSON object (a list)" in report.quarantined["_reason"].iloc[1]


def test_a_value_that_does_not_parse_names_column_and_value_and_counts_once(workdir):
    df = exposures(40).astype({"price": object, "ts": object})
    df.loc[3, "price"] = "twelve"
    df.loc[5, "ts"] = "yesterday"
    f = _write(workdir.raw_dir("events", DAY) / "typo.csv", df)
    report = _validate(workdir, [f], limits=ContractParams(max_quarantine_fraction=0.1))
    assert (len(report.valid), len(report.quarantined)) == (38, 2)
    assert report.failed_rules == {"price: not a float": 1, "ts: not a timestamp": 1}
    q = report.quarantined.set_index("_row")
    assert q.loc[3, "_reason"] == "price: not a float ('twelve')" and q.loc[3, "_column"] == "price"
    assert q.loc[5, "_reason"] == "ts: not a timestamp ('yesterday')" and q.loc[5, "_line"] == 7


def test_json_values_of_no_canonical_type_are_quarantined_one_row_each(workdir):
    """A JSON object, list or boolean is no id, price or time: its row breaks the parse rule."""
    lines = exposures(40).to_json(orient="records", lines=True, date_format="iso").splitlines()
    broken = {2: ("user_id", [1, 2]), 5: ("price", True), 9: ("position", {"at": 1})}
    for k, (column, value) in broken.items():
        row = json.loads(lines[k])
        row[column] = value
        lines[k] = json.dumps(row)
    f = _write(workdir.raw_dir("events", DAY) / "odd.jsonl", "\n".join(lines) + "\n")
    report = _validate(workdir, [f], limits=ContractParams(max_quarantine_fraction=0.1))
    assert (len(report.valid), len(report.quarantined)) == (37, 3)
    assert report.failed_rules == {
        "user_id: not a string": 1,
        "price: not a float": 1,
        "position: not an int": 1,
    }
    q = report.quarantined.set_index("_row")
    assert q.loc[2, "_reason"] == "user_id: not a string ('[1, 2]')" and q.loc[2, "_line"] == 3
    assert q.loc[9, "_column"] == "position"


def test_a_value_longer_than_csv_allows_is_judged_by_its_length_rule(workdir):
    """Python's csv stops at 131,072 characters a field; the contract's limit decides."""
    df = items(80)
    df.loc[5, "title"] = "t" * 1_000_000
    f = _write(workdir.raw_dir("items", DAY) / "partner.csv", df)
    report = validate_table("items", [f], workdir.gx_root, day=DAY, main=f)
    assert (len(report.valid), len(report.quarantined)) == (79, 1)
    [example] = report.examples(1)
    assert example["message"] == (
        "partner.csv, line 7, column 'title': title longer than 1000 characters: " + "t" * 80
    )


def _paris(df):
    return df.assign(ts=[t.tz_convert("Europe/Paris").isoformat() for t in df["ts"]])


# Text files as partners write them: (name, file, content, rows kept, rows quarantined)
TEXT_VARIANTS = [
    (
        "windows line ends",
        "crlf.csv",
        lambda d: d.to_csv(index=False, lineterminator="\r\n"),
        40,
        0,
    ),
    (
        "byte-order mark",
        "bom.csv",
        lambda d: b"\xef\xbb\xbf" + d.to_csv(index=False).encode(),
        40,
        0,
    ),
    ("extra column, reordered", "x.csv", lambda d: d.assign(note="n").iloc[:, ::-1], 40, 0),
    ("times with an offset", "tz.csv", _paris, 40, 0),
    (
        "price inf",
        "inf.csv",
        lambda d: d.astype({"price": object}).assign(
            price=lambda f: f["price"].where(f.index != 3, "inf")
        ),
        39,
        1,
    ),
    (
        "price NaN",
        "nan.csv",
        lambda d: d.astype({"price": object}).assign(
            price=lambda f: f["price"].where(f.index != 3, "NaN")
        ),
        39,
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "fname", "make", "kept", "quarantined"),
    TEXT_VARIANTS,
    ids=[v[0] for v in TEXT_VARIANTS],
)
def test_text_files_as_partners_write_them(workdir, name, fname, make, kept, quarantined):
    good = exposures(40)
    f = _write(workdir.raw_dir("events", DAY) / fname, make(good))
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (kept, quarantined), report.summary()
    if not quarantined:
        assert report.valid["ts"].tolist() == good["ts"].tolist()
        assert report.valid["event_id"].tolist() == good["event_id"].tolist()


def test_a_batch_that_breaks_the_reader_is_set_aside_and_the_day_goes_on(workdir, monkeypatch):
    import data_contracts.runner as runner

    folder = workdir.raw_dir("events", DAY)
    source = _write(folder / "world.parquet", exposures(40))
    odd = _write(folder / "odd.parquet", exposures(10, "o"))
    conform = runner.conform

    def fragile(batch, *a, **kw):
        if batch.file == odd:
            raise RuntimeError("an unforeseen file")
        return conform(batch, *a, **kw)

    monkeypatch.setattr(runner, "conform", fragile)
    report = _validate(workdir, [source, odd])
    assert (len(report.valid), len(report.quarantined)) == (40, 0)
    [aside] = report.rejected_batches
    assert (aside.file, aside.rule) == (str(odd), "file cannot be read")
    assert aside.reason == "cannot be read (RuntimeError: an unforeseen file)"
    assert report.gate.passed


def _good_and(workdir, bad_name, make_bad):
    folder = workdir.raw_dir("events", DAY)
    ok = _write(folder / "a_good.parquet", exposures(40))
    bad = make_bad(folder / bad_name)
    return ok, bad


# name: (file, how to break it, (column, line, rule, reason, rows in))
BATCH_DEFECTS = {
    "missing column": (
        "b.parquet",
        lambda p: _write(p, exposures(10).drop(columns="price")),
        ("price", None, "missing required column", "missing required column", 10),
    ),
    "wrong type": (
        "b.parquet",
        lambda p: _write(p, exposures(10).assign(price="cheap")),
        ("price", None, "column of the wrong type", "has type object, expected float", 10),
    ),
    "empty file": (
        "b.parquet",
        lambda p: _write(p, b""),
        (None, None, "file is empty", "file is empty (0 bytes)", 0),
    ),
    "truncated parquet": (
        "b.parquet",
        lambda p: _write(p, parquet_bytes(exposures(10))[:500]),
        (None, None, "file cannot be read", "unreadable or truncated .parquet file", None),
    ),
    "csv without a header": (
        "b.csv",
        lambda p: _write(p, b"\n\n"),
        (None, 1, "has no header line", "has no header line", 0),
    ),
    "csv naming a column twice": (
        "b.csv",
        lambda p: _write(p, b"event_id,ts,event_id\ne1,2026-01-01,e2\n"),
        ("event_id", 1, "header names a column twice", "header names a column twice", 1),
    ),
    "unsupported file": (
        "b.xlsx",
        lambda p: _write(p, b"PK"),
        (None, None, "unsupported file type", "unsupported file type '.xlsx'", None),
    ),
}


@pytest.mark.parametrize("name", list(BATCH_DEFECTS))
def test_bad_batch_is_rejected_whole_naming_file_and_column(workdir, name):
    bad_name, make_bad, (column, line, rule, reason, rows) = BATCH_DEFECTS[name]
    ok, bad = _good_and(workdir, bad_name, make_bad)
    report = _validate(workdir, [ok, bad])
    [rejected] = report.rejected_batches
    assert (rejected.file, rejected.column, rejected.line, rejected.rows) == (
        str(bad),
        column,
        line,
        rows,
    )
    assert (rejected.status, rejected.rule) == ("rejected", rule) and reason in rejected.reason
    where = (
        str(bad) + (f", line {line}" if line else "") + (f", column '{column}'" if column else "")
    )
    assert rejected.message.startswith(f"{where}: rejected: {reason}")
    assert rejected.to_json()["rule"] == rule
    assert len(report.valid) == 40, "the good batch beside it must pass whole"
    assert report.quarantined_rows == (rows or 0) and len(report.quarantined) == 0
    assert report.gate.passed, "a batch beside the source's does not stop the day"
    assert bad.exists(), "the rejected raw file is kept"


def test_header_only_csv_holds_nothing_wrong(workdir):
    f = _write(workdir.raw_dir("events", DAY) / "h.csv", csv_lines(exposures(1))[0])
    report = _validate(workdir, [f], day=None)
    assert report.gate.passed and report.rows_in == 0 and not report.rejected_batches
    # As a day's only batch it leaves no good row: the floor stops the day.
    report = _validate(workdir, [f])
    assert not report.gate.passed
    assert "0 good rows, fewer than contracts.min_valid_rows = 1" in report.gate.message


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_epoch_timestamps_are_declared_by_ts_unit(workdir, unit):
    df = exposures(40)
    epoch = df["ts"].astype("int64") // (10**9 if unit == "s" else 10**6)
    folder = workdir.raw_dir("events", DAY)
    typed = _write(folder / "epoch.parquet", df.assign(ts=epoch))
    text = _write(folder / "epoch.csv", df.assign(ts=epoch))
    for f in (typed, text):
        report = _validate(workdir, [f])
        [rejected] = report.rejected_batches
        assert rejected.column == "ts" and rejected.rows == 40
        assert "holds numbers" in rejected.reason
        assert "declare data.ts_unit: s (epoch seconds) or ms (epoch milliseconds)" in (
            rejected.reason
        )
        report = _validate(workdir, [f], ts_unit=unit)
        assert (len(report.valid), len(report.quarantined)) == (40, 0)
        assert report.valid["ts"].tolist() == df["ts"].tolist()


def test_quarantine_frame_names_file_row_line_column_rule(workdir):
    lines = csv_lines(exposures(40).astype({"price": object}))
    lines[2] = lines[2].replace(b",9.5", b",-2.0")
    f = _write(workdir.raw_dir("events", DAY) / "p.csv", b"".join(lines))
    report = _validate(workdir, [f])
    [example] = report.examples(5)
    assert example == {
        "file": str(f),
        "row": 1,
        "line": 3,
        "column": "price",
        "rule": "price outside [0, 1,000,000]",
        "reason": "price outside [0, 1,000,000]: -2.0",
        "message": "p.csv, line 3, column 'price': price outside [0, 1,000,000]: -2.0",
    }
    assert report.summary(5)["quarantined"] == [example]


def test_every_engagement_needs_no_exposure_to_be_kept(workdir):
    shown = exposures(40)
    clicks = engagements(shown.head(2))
    orphan = engagements(shown.head(1), prefix="o").assign(request_id="never-logged")
    f = _write(workdir.raw_dir("events", DAY) / "b.parquet", pd.concat([shown, clicks, orphan]))
    report = _validate(workdir, [f])
    assert (len(report.valid), len(report.quarantined)) == (43, 0)
    assert report.warnings == {"click/cart/purchase without a kept exposure in the same request": 1}


GX_CONFIG_FILES = [
    "great_expectations.yml",
    "uncommitted/config_variables.yml",
    "expectations/events.json",
    "checkpoints/events_checkpoint.json",
    "validation_definitions/events_contract.json",
]


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_gx_files_cut_by_a_killed_run_are_set_aside_and_written_again(workdir, cut):
    """GX writes in place: a run killed mid-write leaves a file cut short. The next run moves it
    to gx/uncommitted/interrupted/ (kept) and validates as before."""
    f = _write(workdir.raw_dir("events", DAY) / "good.parquet", exposures(40))
    first = _validate(workdir, [f])
    gx_dir = workdir.gx_root / "gx"
    left = {}
    for rel in GX_CONFIG_FILES:
        whole = (gx_dir / rel).read_bytes()
        left[rel] = whole[: len(whole) // 2] if cut == "half" else b""
        (gx_dir / rel).write_bytes(left[rel])
    gx_context.cache_clear()  # as in the next process
    again = _validate(workdir, [f])
    assert again.success and len(again.valid) == len(first.valid) == 40
    assert not cut_config_files(gx_dir)
    kept = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for folder in (gx_dir / INTERRUPTED).iterdir()
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert kept == left, "every cut file is kept as it was left"
