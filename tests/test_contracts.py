"""The data contracts catch a corpus of bad batches with clear messages, and lose no good row."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.gx_project import INTERRUPTED, cut_config_files, gx_context
from data_contracts.quarantine import Quarantine
from data_contracts.runner import validate_table
from ingestion.canonical import write_parquet_atomic


@pytest.fixture
def day_events(tiny_world) -> tuple[dt.date, pd.DataFrame]:
    day = tiny_world.days[0]
    return day, tiny_world.events(day).iloc[:400].reset_index(drop=True)


def _validate(workdir, tiny_world, day, files):
    return validate_table(
        "events",
        files,
        workdir.gx_root,
        Quarantine(workdir.root / "quarantine"),
        day=day,
        scenes=["feed", "search", "similar"],
        known_items=set(tiny_world.items(day)["item_id"]),
        known_users=set(tiny_world.users()["user_id"]),
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Row-level defects: (name, how to break row 7 (an exposure-free event is avoided), rule fragment)
ROW_DEFECTS = [
    (
        "null user",
        lambda df: df.assign(user_id=df.user_id.where(df.index != 7, None)),
        "user_id is null",
    ),
    (
        "negative price",
        lambda df: df.assign(price=df.price.where(df.index != 7, -3.0)),
        "price is negative",
    ),
    (
        "unknown item",
        lambda df: df.assign(item_id=df.item_id.where(df.index != 7, "i-nope")),
        "item_id not in the catalogue",
    ),
    (
        "duplicate event_id",
        lambda df: df.assign(event_id=df.event_id.where(df.index != 7, df.event_id[6])),
        "duplicate event_id (first occurrence kept)",
    ),
    (
        "future timestamp",
        lambda df: df.assign(ts=df.ts.where(df.index != 7, df.ts[7] + pd.Timedelta(days=3))),
        "ts outside the partition day",
    ),
    (
        "unknown scene",
        lambda df: df.assign(scene=df.scene.where(df.index != 7, "telepathy")),
        "unknown scene",
    ),
]


@pytest.mark.parametrize(("name", "breaker", "rule"), ROW_DEFECTS, ids=[d[0] for d in ROW_DEFECTS])
def test_row_defect_is_quarantined_and_nothing_good_is_lost(
    workdir, tiny_world, day_events, name, breaker, rule
):
    day, good = day_events
    good = good[good.event_type == "exposure"].reset_index(drop=True)  # no orphan clicks
    bad = breaker(good.copy())
    f = write_parquet_atomic(bad, workdir.raw_dir("events", day) / "batch.parquet")
    before = _sha(f)
    report = _validate(workdir, tiny_world, day, [f])
    assert len(report.quarantined) == 1, report.summary()
    assert rule in report.quarantined["_rule"].iloc[0]
    assert report.quarantined["_row"].iloc[0] == 7
    assert len(report.valid) + len(report.quarantined) == len(bad)
    untouched = good.drop(index=7)
    assert set(untouched["event_id"]) <= set(report.valid["event_id"])
    assert _sha(f) == before, "raw input must be kept as received"
    on_disk = Quarantine(workdir.root / "quarantine").read_rows("events", day)
    assert len(on_disk) == 1 and rule in on_disk["_rule"].iloc[0]


def test_click_without_exposure_is_quarantined(workdir, tiny_world, day_events):
    day, good = day_events
    click = good[good.event_type == "click"].iloc[:1].assign(request_id="r-orphan")
    f = write_parquet_atomic(pd.concat([good, click]), workdir.raw_dir("events", day) / "b.parquet")
    report = _validate(workdir, tiny_world, day, [f])
    assert report.quarantined["_rule"].str.contains("without an exposure").sum() == 1
    assert len(report.valid) == len(good)


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


BATCH_DEFECTS = {
    "missing column": (
        lambda df, p: write_parquet_atomic(df.drop(columns="price"), p),
        "column 'price': missing required column",
    ),
    "wrong type": (
        lambda df, p: write_parquet_atomic(df.assign(price="cheap"), p),
        "column 'price': has type",
    ),
    "empty file": (lambda df, p: _write(p, b""), "file is empty"),
    "truncated parquet": (
        lambda df, p: _write(p, _parquet_bytes(df)[:500]),
        "unreadable or truncated",
    ),
    "header only csv": (lambda df, p: _write(p.with_suffix(".csv"), b"event_id,ts\n"), "no rows"),
}


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


@pytest.mark.parametrize("name", list(BATCH_DEFECTS))
def test_bad_batch_is_rejected_whole_naming_file_and_column(workdir, tiny_world, day_events, name):
    day, good = day_events
    make_bad, message = BATCH_DEFECTS[name]
    folder = workdir.raw_dir("events", day)
    ok_file = write_parquet_atomic(good, folder / "a_good.parquet")
    bad_file = make_bad(good, folder / "b_bad.parquet")
    report = _validate(workdir, tiny_world, day, [ok_file, bad_file])
    assert len(report.rejected_batches) == 1
    rejected = report.rejected_batches[0]
    assert rejected["file"] == str(bad_file)
    assert (
        message in f"{rejected['file']}, column '{rejected['column']}': {rejected['reason']}"
        or message in rejected["reason"]
    )
    assert len(report.valid) == len(good), "the good batch beside it must pass whole"
    assert bad_file.exists(), "the rejected raw file is kept"
    assert Quarantine(workdir.root / "quarantine").read_batches("events", day)[0]["file"] == str(
        bad_file
    )


def test_truncated_csv_keeps_complete_rows(workdir, tiny_world, day_events):
    day, good = day_events
    good = good[good.event_type == "exposure"].reset_index(drop=True)
    text = good.to_csv(index=False)
    cut = text[: text.rfind(",", 0, len(text) - 5)]  # stop in the middle of the last row
    f = _write(workdir.raw_dir("events", day) / "cut.csv", cut.encode())
    report = _validate(workdir, tiny_world, day, [f])
    assert len(report.valid) == len(good) - 1
    assert len(report.quarantined) == 1
    assert report.quarantine_fraction == pytest.approx(1 / len(good))


def test_unparsable_csv_value_is_a_row_error(workdir, tiny_world, day_events):
    day, good = day_events
    good = good[good.event_type == "exposure"].reset_index(drop=True)
    text = good.assign(price=good.price.astype(str).where(good.index != 3, "twelve")).to_csv(
        index=False
    )
    f = _write(workdir.raw_dir("events", day) / "typo.csv", text.encode())
    report = _validate(workdir, tiny_world, day, [f])
    assert len(report.quarantined) == 1
    assert "price: not a float" in report.quarantined["_rule"].iloc[0]


def test_gate_and_data_docs(workdir, tiny_world, day_events):
    day, good = day_events
    f = write_parquet_atomic(good, workdir.raw_dir("events", day) / "good.parquet")
    report = _validate(workdir, tiny_world, day, [f])
    assert report.success and report.passes_gate(0.0)
    assert report.docs_index and report.docs_index.exists()
    assert "events" in report.docs_index.read_text().lower()
    # Half the rows broken: the gate closes.
    bad = good.assign(price=-1.0)
    f2 = write_parquet_atomic(bad, workdir.raw_dir("events", day) / "good.parquet")
    report = _validate(workdir, tiny_world, day, [f2])
    assert not report.passes_gate(0.05)


GX_CONFIG_FILES = [
    "great_expectations.yml",
    "uncommitted/config_variables.yml",
    "expectations/events.json",
    "checkpoints/events_checkpoint.json",
    "validation_definitions/events_contract.json",
]


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_gx_files_cut_by_a_killed_run_are_set_aside_and_written_again(
    workdir, tiny_world, day_events, cut
):
    """GX writes in place: a run killed mid-write leaves a file cut short. The next run moves it
    to gx/uncommitted/interrupted/ (kept) and validates as before."""
    day, good = day_events
    f = write_parquet_atomic(good, workdir.raw_dir("events", day) / "good.parquet")
    first = _validate(workdir, tiny_world, day, [f])
    gx_dir = workdir.gx_root / "gx"
    left = {}
    for rel in GX_CONFIG_FILES:
        whole = (gx_dir / rel).read_bytes()
        left[rel] = whole[: len(whole) // 2] if cut == "half" else b""
        (gx_dir / rel).write_bytes(left[rel])
    gx_context.cache_clear()  # as in the next process
    again = _validate(workdir, tiny_world, day, [f])
    assert again.success and len(again.valid) == len(first.valid) == len(good)
    assert not cut_config_files(gx_dir)
    kept = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for folder in (gx_dir / INTERRUPTED).iterdir()
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert kept == left, "every cut file is kept as it was left"
