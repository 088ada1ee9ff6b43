"""The Dagster skeleton: definitions validate, two tiny days materialize, bad batches follow the
data gate and a day's outcome is published whole or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from data_contracts.docs import docs_pages
from data_contracts.quarantine import Quarantine
from data_contracts.report import day_key
from ingestion.warehouse import Warehouse
from lifecycle.cli.main import main
from orchestration.runner import run_days
from sidflow.config import load_params
from sidflow.workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_validate(workdir):
    env = {**os.environ, "DAGSTER_HOME": str(workdir.dagster_home)}
    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.run(
        [dagster, "definitions", "validate", "-m", "orchestration.definitions"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_days_through_dagster(tiny_params, tiny_world):
    days = tiny_world.days[:2]
    runs = run_days(tiny_params, days, {"world.size": "tiny"}, train_days=[])
    assert all(r.success for r in runs), runs
    wh = Warehouse(Path(tiny_params.workdir) / "warehouse.duckdb")
    expected = sum(len(tiny_world.events(d)) for d in days)
    assert wh.counts()["events"] == expected
    assert wh.counts()["users"] == len(tiny_world.users())
    assert wh.counts()["items"] == len(tiny_world.items(days[1]))
    # Re-running a day replaces it: no duplicates.
    runs = run_days(tiny_params, days[:1], {"world.size": "tiny"}, train_days=[])
    assert runs[0].success
    assert wh.counts()["events"] == expected


def _day_state(wd, day) -> dict:
    """What a reader sees of `day`: warehouse rows, validated file, quarantine, Data Docs."""
    key = day_key(day)
    q = Quarantine(wd.root / "quarantine")
    ids = Warehouse(wd.warehouse).query("SELECT event_id FROM events WHERE day = ?", [day])
    return {
        "warehouse": sorted(ids["event_id"]),
        "validated": (wd.root / "validated" / "events" / f"{key}.parquet").read_bytes(),
        "quarantine": q.read_report("events", day),
        "docs": len(docs_pages(wd.gx_root, "events", key)),
    }


def test_bad_batches_follow_the_data_gate(tiny_params, tiny_world, capsys):
    wd = Workdir(tiny_params.workdir)
    wh = Warehouse(wd.warehouse)
    d0, d1 = tiny_world.days[:2]
    tiny = {"world.size": "tiny"}
    # Day 0: a partner drops a CSV without the price column beside the source's events (it is
    # rejected whole, the day goes on), and 40 items beside the source's catalogue, one with a
    # title too long (quarantined; the other 39 land).
    small = tiny_world.events(d0).drop(columns="price").head(20)
    small.to_csv(wd.raw_dir("events", d0) / "partner_feed.csv", index=False)
    extra = tiny_world.items(d0).head(40).assign(item_id=[f"p-{k}" for k in range(40)])
    extra.loc[0, "title"] = "t" * 1001
    extra.to_parquet(wd.raw_dir("items", d0) / "partner_items.parquet", index=False)
    [run] = run_days(tiny_params, [d0], tiny, train_days=[])
    assert run.success and run.failed_checks == ["validated_events:every_batch_accepted"]
    assert wh.counts()["events"] == len(tiny_world.events(d0))
    partner_items = wh.query("SELECT item_id FROM items WHERE item_id LIKE 'p-%'")
    assert len(partner_items) == 39
    # `sidflow validate` reads the day's items exactly as the pipeline did.
    assert main(["--set", "world.size=tiny", "validate", "--table", "items", "--day", str(d0)]) == 0
    checked = json.loads(capsys.readouterr().out)
    published = Quarantine(wd.root / "quarantine").read_report("items", d0)
    for k in ("rows_in", "valid_rows", "quarantined_rows", "failed_rules", "batches"):
        assert checked[k] == published[k], k

    # Day 1: a partner batch with a third of its rows bad is quarantined whole (its rows are
    # in the quarantine with the reason); the source's rows land.
    bad = tiny_world.events(d1).head(30).assign(event_id=lambda f: "p" + f["event_id"])
    bad.loc[:9, "price"] = -1.0
    bad.to_parquet(wd.raw_dir("events", d1) / "partner.parquet", index=False)
    [run] = run_days(tiny_params, [d1], tiny, train_days=[])
    assert run.success and "validated_events:every_batch_accepted" in run.failed_checks
    first = _day_state(wd, d1)
    assert len(first["warehouse"]) == len(tiny_world.events(d1))
    assert first["quarantine"]["quarantined_rows"] == 30 and first["docs"] == 1
    [partner] = [b for b in first["quarantine"]["batches"] if b["status"] == "quarantined"]
    assert partner["reason"] == "33.33% of its 30 rows broke a rule (limit 5.00%)"

    # Day 1 again, with the source's own batch over the limit: the gate stops the day and the
    # warehouse, the validated file, the quarantine and the Data Docs keep the first run's.
    strict = {**tiny, "contracts.ranges.position": "[0, 3]"}
    [run] = run_days(load_params(overrides=strict), [d1], strict, train_days=[])
    assert not run.success and "validated_events:events_contract" in run.failed_checks
    assert _day_state(wd, d1) == first
    staged = json.loads((wd.root / "staging/events" / day_key(d1) / "report.json").read_text())
    assert staged["gate"].startswith("STOPPED: the source's batch ")
    assert "(limit 5.00%)" in staged["gate"]
    # ... and run as before, the same state again.
    [run] = run_days(tiny_params, [d1], tiny, train_days=[])
    assert run.success and _day_state(wd, d1) == first
    assert (wd.raw_dir("events", d1) / "partner.parquet").exists(), "raw input is kept"
