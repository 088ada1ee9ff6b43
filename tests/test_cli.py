"""The `sidflow` command line: world generation, validation, the Amazon loader."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lifecycle.cli.main import main


def test_world_command_writes_canonical_parquet(workdir, tmp_path, capsys):
    out = tmp_path / "world"
    assert main(["world", "--size", "tiny", "--days", "2", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["days"] == 2 and report["events"] > 0
    assert 0 < report["exposure_long_tail"]["top1pct_share"] < 1
    events = pd.concat(pd.read_parquet(p) for p in sorted((out / "events").glob("*.parquet")))
    assert len(events) == report["events"]
    assert len(pd.read_parquet(out / "items.parquet")) == report["items"]


def test_validate_command_reports_and_sets_exit_code(workdir, tiny_world, tmp_path, capsys):
    day = tiny_world.days[0]
    good = tmp_path / "good.parquet"
    tiny_world.events(day).to_parquet(good, index=False)
    assert main(["validate", str(good), "--day", day.isoformat()]) == 0
    assert json.loads(capsys.readouterr().out)["gate_passed"] is True
    bad = tmp_path / "bad.parquet"
    tiny_world.events(day).assign(price=-1.0).to_parquet(bad, index=False)
    assert main(["validate", str(bad), "--day", day.isoformat()]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed_rules"]["price is negative or absurd"] == summary["rows_in"]


def test_load_amazon_command(workdir, amazon_path, capsys):
    assert main(["load-amazon", str(amazon_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["users"], report["items"], report["events"]) == (22_363, 12_101, 198_502)
    assert report["split"]["test"] == 22_363
    assert report["contracts"]["events"]["quarantined_rows"] == 0
    from ingestion.warehouse import Warehouse

    assert Warehouse(report["warehouse"]).counts()["events"] == 198_502


def test_evaluate_defaults_to_the_last_warehouse_day(workdir, tiny_world):
    from ingestion.warehouse import Warehouse

    d0, d1 = tiny_world.days[:2]
    wh = Warehouse(workdir.warehouse)
    wh.write_events(tiny_world.events(d0), [d0])
    wh.write_events(tiny_world.events(d1), [d1])
    # No SID table yet: the error names the SID folder of the last day, as a plain date.
    with pytest.raises(FileNotFoundError, match=rf"day={d1.isoformat()}:"):
        main(["evaluate", "--ablations"])
