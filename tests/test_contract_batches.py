"""Each batch is judged on its own, no good row is quarantined because another row was bad,
items and users have limits, and a day's outcome is published whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from handmade import DAY, ITEMS, SCENES, USERS, engagements, exposures, items, write

from data_contracts.docs import docs_pages
from data_contracts.publish import ContractStore
from data_contracts.references import reference_ids
from data_contracts.report import day_key
from data_contracts.runner import validate_table
from data_contracts.suites import ORPHAN_RULE
from ingestion.warehouse import Warehouse
from sidflow.config import ContractParams

PRICE = "price outside [0, 1,000,000]"


def _events(workdir, files, main, **kw):
    kw = {"scenes": SCENES, "items": ITEMS, "users": USERS, **kw}
    return validate_table(
        "events", [Path(f) for f in files], workdir.gx_root, day=DAY, main=main, **kw
    )


def _bad_prices(df: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    return df.assign(price=df["price"].where(~df.index.isin(rows), -1.0))


def test_a_batch_over_the_limit_is_quarantined_whole_and_the_day_goes_on(workdir):
    folder = workdir.raw_dir("events", DAY)
    source = write(folder / "world.parquet", exposures(40))
    partner = write(folder / "partner.parquet", _bad_prices(exposures(20, "p"), [0, 1, 2, 3, 4]))
    report = _events(workdir, [partner, source], source)
    assert (len(report.valid), len(report.quarantined)) == (40, 20)
    assert report.failed_rules == {PRICE: 5}
    rules = report.quarantined["_rule"].value_counts().to_dict()
    assert rules == {PRICE: 5, "batch quarantined whole": 15}
    verdict = {Path(b.file).name: b for b in report.batches}
    assert verdict["world.parquet"].status == "accepted" and verdict["world.parquet"].main
    assert verdict["partner.parquet"].status == "quarantined"
    assert verdict["partner.parquet"].reason == "25.00% of its 20 rows broke a rule (limit 5.00%)"
    assert report.gate.passed and "1 other batch(es) set aside" in report.gate.message


def test_the_source_batch_over_the_limit_stops_the_day_and_says_share_and_limit(workdir):
    folder = workdir.raw_dir("events", DAY)
    source = write(folder / "world.parquet", _bad_prices(exposures(100), list(range(6))))
    partner = write(folder / "partner.parquet", exposures(20, "p"))
    report = _events(workdir, [source, partner], source)
    assert (len(report.valid), len(report.quarantined)) == (20, 100)
    assert not report.gate.passed
    assert report.gate.message == (
        f"STOPPED: the source's batch {source}: quarantined: 6.00% of its 100 rows broke a "
        "rule (limit 5.00%)"
    )


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("position", 5000, "position outside [0, 1,000]"),
        ("event_type", "teleport", "unknown event_type"),
        ("item_id", "i-nope", "item_id not in the catalogue"),
    ],
)
def test_a_bad_exposure_takes_no_good_click_with_it(workdir, column, value, rule):
    """5 bad exposures of 105 rows, each with a click: 5 quarantined (4.76%), not 10."""
    shown = exposures(100)
    clicks = engagements(shown.head(5))  # same request and item as exposures 0..4
    shown[column] = shown[column].astype(object)
    shown.loc[:4, column] = value  # ... which are bad
    f = write(workdir.raw_dir("events", DAY) / "world.parquet", pd.concat([shown, clicks]))
    report = _events(workdir, [f], f)
    assert (len(report.valid), len(report.quarantined)) == (100, 5)
    assert report.failed_rules == {rule: 5}
    assert report.warnings == {ORPHAN_RULE: 5}
    assert set(clicks["event_id"]) <= set(report.valid["event_id"])
    assert report.gate.passed and round(report.quarantine_fraction, 4) == 0.0476


def test_a_repeated_id_keeps_the_first_good_occurrence(workdir):
    df = exposures(40)
    df.loc[10] = df.loc[3]  # the same event twice ...
    df.loc[3, "user_id"] = None  # ... and its first occurrence is bad
    f = write(workdir.raw_dir("events", DAY) / "world.parquet", df)
    report = _events(workdir, [f], f)
    assert (len(report.valid), len(report.quarantined)) == (39, 1)
    # the bad one repeats the kept one: it broke both rules, and is quarantined for the first
    assert report.failed_rules == {"user_id is null": 1, "duplicate event_id (first kept)": 1}
    assert report.quarantined["_rule"].tolist() == ["user_id is null"]
    assert "e0003" in set(report.valid["event_id"])


def test_a_batch_quarantined_whole_is_never_the_kept_original(workdir):
    folder = workdir.raw_dir("events", DAY)
    source = write(folder / "world.parquet", exposures(40))
    shared = exposures(5, "x")
    bad = write(
        folder / "a_partner.parquet",
        pd.concat([shared, _bad_prices(exposures(5, "b"), list(range(5)))]),
    )
    good = write(folder / "b_partner.parquet", pd.concat([shared, exposures(15, "y")]))
    report = _events(workdir, [source, bad, good], source)
    assert (len(report.valid), len(report.quarantined)) == (60, 10)
    assert set(shared["event_id"]) <= set(report.valid["event_id"])
    status = {Path(b.file).name: (b.status, b.bad_rows) for b in report.batches}
    assert status == {
        "world.parquet": ("accepted", 0),
        "a_partner.parquet": ("quarantined", 5),
        "b_partner.parquet": ("accepted", 0),
    }


def test_items_have_limits_and_keep_the_first_of_a_repeated_id(workdir):
    df = items(80)
    df.loc[5, "title"] = "t" * 1001
    df.loc[8, "price"] = 2_000_000.0
    df.loc[2, "brand"] = "b" * 201  # i002 is bad ...
    df.loc[80] = df.loc[1].to_dict() | {"item_id": "i002"}  # ... so its repeat is kept
    df.loc[81] = df.loc[7]  # a plain repeat of a good item
    f = write(workdir.raw_dir("items", DAY) / "world.parquet", df)
    report = validate_table("items", [f], workdir.gx_root, day=DAY, main=f)
    assert (len(report.valid), len(report.quarantined)) == (78, 4)
    assert report.failed_rules == {
        "title longer than 1000 characters": 1,
        PRICE: 1,
        "brand longer than 200 characters": 1,
        "duplicate item_id (first kept)": 2,  # the bad i002 repeats the kept one, and i007
    }
    assert report.valid["item_id"].value_counts().max() == 1
    assert "i002" in set(report.valid["item_id"]) and report.gate.passed


def test_users_have_limits(workdir):
    users = pd.DataFrame(
        {"user_id": [f"u{k:03d}" for k in range(30)], "age_bucket": "25-34", "region": "north"}
    )
    users.loc[4, "region"] = "r" * 300
    users.loc[9, "user_id"] = "u" * 65
    f = write(workdir.raw_dir("users", DAY) / "world.csv", users)
    limits = ContractParams(max_quarantine_fraction=0.1)
    report = validate_table("users", [f], workdir.gx_root, day=DAY, main=f, limits=limits)
    assert (len(report.valid), len(report.quarantined)) == (28, 2)
    assert report.quarantined["_line"].tolist() == [6, 11]


def test_which_catalogue_events_are_checked_against(workdir):
    landed = write(workdir.raw_dir("items", DAY) / "world.parquet", items(30))
    partner = write(workdir.raw_dir("items", DAY) / "partner.csv", items(35).tail(5))
    first_run = reference_ids("items", None, DAY, [landed, partner])
    assert len(first_run.ids) == 35
    assert first_run.source == (
        "items landed with the data (world.parquet, partner.csv: 35 ids); "
        "the warehouse has no items yet"
    )
    ev = exposures(40)  # items i000..i039: five are in no catalogue
    f = write(workdir.raw_dir("events", DAY) / "world.parquet", ev)
    report = _events(
        workdir, [f], f, items=first_run, limits=ContractParams(max_quarantine_fraction=0.2)
    )
    assert (len(report.valid), len(report.quarantined)) == (35, 5)
    assert report.references["item_id"] == first_run.source
    none = reference_ids("items", None, DAY, [])
    assert none.ids is None and none.source.startswith("not checked: no items in the warehouse")
    report = _events(workdir, [f], f, items=none)
    assert (len(report.valid), len(report.quarantined)) == (40, 0)
    wh = Warehouse(workdir.warehouse)
    wh.upsert("items", items(20))
    known = reference_ids("items", wh, DAY, [landed])
    assert known.source == "warehouse items first seen on or before 2026-01-01 (20 ids)"


def _state(workdir) -> dict:
    store = ContractStore(workdir.root, workdir.gx_root)
    q = store.quarantine
    wh = Warehouse(workdir.warehouse)
    key = day_key(DAY)
    rows = q.rows_path("events", DAY)
    return {
        "warehouse": sorted(wh.query("SELECT event_id FROM events")["event_id"]),
        "validated": store.validated_path("events", key).read_bytes(),
        "quarantine": rows.read_bytes() if rows.exists() else b"",
        "batches": q.read_batches("events", DAY),
        "report": q.read_report("events", DAY),
        "docs": len(docs_pages(workdir.gx_root, "events", key)),
    }


def test_a_day_changes_together_or_not_at_all(workdir):
    folder = workdir.raw_dir("events", DAY)
    store, wh = ContractStore(workdir.root, workdir.gx_root), Warehouse(workdir.warehouse)
    source = write(folder / "world.parquet", exposures(40))
    write(folder / "partner.parquet", _bad_prices(exposures(20, "p"), [3]))

    def run():
        report = _events(workdir, sorted(folder.iterdir()), source)
        store.stage(report)
        if report.gate.passed:
            store.publish("events", report.key, wh, [DAY])
        return report

    assert run().gate.passed
    first = _state(workdir)
    assert (len(first["warehouse"]), first["report"]["quarantined_rows"], first["docs"]) == (
        59,
        1,
        1,
    )
    assert not store.staged_dir("events", day_key(DAY)).exists()
    [page] = docs_pages(workdir.gx_root, "events", day_key(DAY))
    html = page.read_text()
    assert "Data asset:" in html and "__none__" not in html
    assert html.count("day=2026-01-01") >= 1 and "None" not in html.split("Data asset:")[1][:200]

    # The source resends a broken batch: the gate stops the day and nothing published changes.
    write(source, _bad_prices(exposures(40), list(range(10))))
    stopped = run()
    assert not stopped.gate.passed
    assert _state(workdir) == first
    staged = store.staged_report("events", day_key(DAY))
    assert staged["gate"].startswith("STOPPED: the source's batch") and staged["valid_rows"] == 19

    # Fixed and run again: the same state as the first run, one Data Docs page for the day.
    write(source, exposures(40))
    run()
    again = _state(workdir)
    assert again == first
    assert json.loads(json.dumps(again["report"]))["gate_passed"] is True
