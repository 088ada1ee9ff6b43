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
    out = json.loads(capsys.readouterr().out)
    assert out["gate_passed"] is True and out["valid_rows"] == out["rows_in"]
    assert out["checked_against"]["item_id"].startswith("not checked: no items in the warehouse")
    bad = tmp_path / "bad.parquet"
    tiny_world.events(day).assign(price=-1.0).to_parquet(bad, index=False)
    assert main(["validate", str(bad), "--day", day.isoformat()]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed_rules"]["price outside [0, 1,000,000]"] == summary["rows_in"]
    assert summary["gate"] == (
        f"STOPPED: the source's batch {bad}: quarantined: 100.00% of its "
        f"{summary['rows_in']:,} rows broke a rule (limit 5.00%)"
    )
    first = summary["quarantined"][0]
    assert first == {
        "file": str(bad),
        "row": 0,
        "line": None,
        "column": "price",
        "rule": "price outside [0, 1,000,000]",
        "reason": "price outside [0, 1,000,000]: -1.0",
        "message": "bad.parquet, row 0, column 'price': price outside [0, 1,000,000]: -1.0",
    }
    assert len(summary["quarantined"]) == 20  # contracts.examples


def test_validate_command_on_text_files(workdir, tmp_path, capsys):
    header = "event_id,ts,user_id,item_id,request_id,scene,event_type,position,price\n"
    empty = tmp_path / "empty.csv"
    empty.write_text(header)
    for day in ([], ["--day", "2026-01-01"]):  # files given: no floor of good rows for a day
        assert main(["validate", str(empty), *day]) == 0, "a header and no rows holds nothing wrong"
        out = json.loads(capsys.readouterr().out)
        assert (out["rows_in"], out["valid_rows"], out["batches"][0]["status"]) == (
            0,
            0,
            "accepted",
        )
    rows = [f"e{k},{1767261600 + k},u1,i1,r1,feed,exposure,{k},1.0\n" for k in range(30)]
    epoch = tmp_path / "epoch.csv"
    epoch.write_bytes((header + "".join(rows)).encode())
    assert main(["validate", str(epoch)]) == 1
    [batch] = json.loads(capsys.readouterr().out)["batches"]
    assert batch["status"] == "rejected" and batch["column"] == "ts"
    assert "declare data.ts_unit: s (epoch seconds) or ms" in batch["reason"]
    assert main(["--set", "data.ts_unit=s", "validate", str(epoch)]) == 0
    assert json.loads(capsys.readouterr().out)["valid_rows"] == 30
    lines = (header + "".join(rows)).encode().splitlines(keepends=True)
    lines[4] = b"e3,\xff\xfe,u1\n"
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"".join(lines))
    assert main(["--set", "data.ts_unit=s", "validate", str(broken)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["valid_rows"], out["quarantined_rows"]) == (29, 1)
    [q] = out["quarantined"]
    assert (q["file"], q["line"], q["row"], q["rule"]) == (str(broken), 5, 3, "line cannot be read")
    assert q["raw"] == "e3,\\xff\\xfe,u1"


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
