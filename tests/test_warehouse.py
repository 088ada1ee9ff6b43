"""The warehouse: a day is replaced, never duplicated; a crash mid-write changes nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ingestion.warehouse import Warehouse


def test_rewriting_a_day_replaces_it(workdir, tiny_world):
    wh = Warehouse(workdir.warehouse)
    d0, d1 = tiny_world.days[:2]
    e0, e1 = tiny_world.events(d0), tiny_world.events(d1)
    wh.write_events(e0, [d0])
    wh.write_events(e1, [d1])
    wh.write_events(e0, [d0])  # a re-run of day 0
    assert wh.counts()["events"] == len(e0) + len(e1)
    assert wh.query("SELECT count(DISTINCT event_id) AS n FROM events")["n"][0] == len(e0) + len(e1)
    assert wh.days() == [d0, d1]


def test_rows_outside_the_days_are_refused(workdir, tiny_world):
    wh = Warehouse(workdir.warehouse)
    d0, d1 = tiny_world.days[:2]
    with pytest.raises(ValueError, match="outside days"):
        wh.write_events(tiny_world.events(d1), [d0])
    assert wh.counts()["events"] == 0


def test_upsert_replaces_by_key(workdir, tiny_world):
    wh = Warehouse(workdir.warehouse)
    items = tiny_world.items(tiny_world.days[0])
    wh.upsert("items", items)
    wh.upsert("items", items.assign(price=1.0))
    assert wh.counts()["items"] == len(items)
    assert (wh.query("SELECT price FROM items")["price"] == 1.0).all()


def test_crash_mid_write_leaves_previous_state(workdir, tiny_world):
    wh = Warehouse(workdir.warehouse)
    d0 = tiny_world.days[0]
    e0 = tiny_world.events(d0)
    wh.write_events(e0, [d0])
    # A writer process deletes the day, inserts half, then dies without committing.
    script = textwrap.dedent(f"""
        import os, duckdb
        con = duckdb.connect({str(workdir.warehouse)!r})
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM events WHERE day = DATE '{d0.isoformat()}'")
        con.execute("INSERT INTO events SELECT * FROM events LIMIT 0")
        os._exit(9)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    assert wh.counts()["events"] == len(e0)
