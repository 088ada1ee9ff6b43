"""Feature tables: DuckDB SQL agrees with the pandas reference, writes are idempotent, and a
source without exposures (Amazon reviews) gets empty features instead of invented ones."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.compute import (
    PACK_BITS,
    compute_feature_tables,
    read_feature_table,
    u2i_pack_bits,
)
from features.reference import reference_feature_tables
from features.schema import end_of_day, view_specs
from ingestion.warehouse import Warehouse
from sidflow.config import FeaturesParams

START = dt.date(2026, 1, 1)
TYPES = ["exposure", "click", "cart", "purchase"]


def assert_tables_equal(mine: pd.DataFrame, ref: pd.DataFrame, view: str) -> None:
    """Same rows, keys, timestamps and values (floats to 1e-9, nulls on both sides)."""
    assert len(mine) == len(ref), f"{view}: {len(mine)} rows vs reference {len(ref)}"
    for col in ref.columns:
        a, b = mine[col], ref[col]
        if pd.api.types.is_datetime64_any_dtype(a) or col.endswith("_ts"):
            a, b = pd.to_datetime(a, utc=True), pd.to_datetime(b, utc=True)
            same = (a == b) | (a.isna() & b.isna())
        elif a.dtype == object:
            same = a.fillna("") == b.fillna("")
        else:
            x, y = a.astype(float).to_numpy(), b.astype(float).to_numpy()
            same = np.isclose(x, y, rtol=1e-9, atol=1e-12) | (np.isnan(x) & np.isnan(y))
        assert bool(np.all(same)), f"{view}.{col}: first differences\n{mine[~same].head(3)}"


def _warehouse(path: Path, events: pd.DataFrame, items: pd.DataFrame) -> Warehouse:
    wh = Warehouse(path)
    wh.upsert("items", items)
    days = sorted(pd.to_datetime(events["ts"], utc=True).dt.date.unique())
    if len(events):
        wh.write_events(events, days)
    return wh


@st.composite
def event_logs(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A random log over ~45 days (so 30-day windows expire) and a few typed items."""
    n_items = draw(st.integers(2, 6))
    pick = st.sampled_from
    items = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n_items)],
            "title": None,
            "cat_l1": "c1",
            "cat_l2": [draw(pick(["a", "b"])) for _ in range(n_items)],
            "cat_l3": [draw(pick(["a1", "a2", "b1", None])) for _ in range(n_items)],
            "brand": [draw(pick(["x", "y", None])) for _ in range(n_items)],
            "seller": [draw(pick(["s", None])) for _ in range(n_items)],
            "price": 10.0,
            "first_seen": START,
        }
    )
    types = draw(st.lists(pick(TYPES), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(1, 40))
    rows = []
    for k in range(n):
        day = draw(st.integers(0, 44))
        rows.append(
            {
                "event_id": f"e{k}",
                "ts": pd.Timestamp(START + dt.timedelta(days=day), tz="UTC")
                + pd.Timedelta(seconds=draw(st.integers(0, 86399))),
                "user_id": draw(pick(["u1", "u2", "u3"])),
                "item_id": f"i{draw(st.integers(0, n_items - 1))}",
                "request_id": None,
                "scene": "feed",
                "event_type": draw(pick(types)),
                "position": None,
                "price": draw(pick([None, 5.0, 12.5])),
            }
        )
    return pd.DataFrame(rows), items, types


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=event_logs(), first=st.integers(0, 44), span=st.integers(0, 6), pack=st.booleans())
def test_sql_agrees_with_pandas_reference(log, first, span, pack):
    """Both ways of summing the u2i counts (packed in one BIGINT, or one by one) agree."""
    events, items, _ = log
    fp = FeaturesParams()
    first_day = START + dt.timedelta(days=first)
    last_day = min(first_day + dt.timedelta(days=span), START + dt.timedelta(days=44))
    last_event_day = pd.to_datetime(events["ts"], utc=True).dt.date.max()
    with tempfile.TemporaryDirectory() as tmp:
        wh = _warehouse(Path(tmp) / "wh.duckdb", events, items)
        if last_day > last_event_day:
            with pytest.raises(ValueError, match="ingest that day first"):
                compute_feature_tables(wh, Path(tmp) / "f", fp, first_day, last_day)
            return
        compute_feature_tables(wh, Path(tmp) / "f", fp, first_day, last_day, pack=pack)
        ref = reference_feature_tables(
            wh.query("SELECT * FROM events"), items, fp, first_day, last_day
        )
        for name in view_specs(fp):
            assert_tables_equal(read_feature_table(Path(tmp) / "f", name), ref[name], name)


def test_u2i_counts_are_packed_only_when_every_window_sum_fits():
    fp = FeaturesParams()  # largest window 30 days
    con = duckdb.connect()
    limit = (2**PACK_BITS - 1) // fp.windows_days[-1]  # the largest daily count that fits
    for largest, expected in ((limit, PACK_BITS), (limit + 1, None), (None, PACK_BITS)):
        con.execute(
            "CREATE OR REPLACE TABLE fe_daily_v AS "
            f"SELECT 1 AS exposures, CAST({largest if largest else 'NULL'} AS INTEGER) AS clicks, "
            "0 AS purchases"
        )
        assert u2i_pack_bits(con, "v", fp) == expected, largest


def test_rows_are_a_changelog_of_the_windows(tmp_path):
    """One click on day 0: rows on days 0, 1, 7, 30 (the windows empty), none in between."""
    items = pd.DataFrame(
        {
            "item_id": ["i"],
            "title": None,
            "cat_l1": "c",
            "cat_l2": "a",
            "cat_l3": "a1",
            "brand": "x",
            "seller": "s",
            "price": 3.0,
            "first_seen": START,
        }
    )
    ev = pd.DataFrame(
        {
            "event_id": ["e0", "e1"],
            "user_id": "u",
            "item_id": "i",
            "ts": [
                pd.Timestamp("2026-01-01 10:00", tz="UTC"),
                pd.Timestamp("2026-02-15 10:00", tz="UTC"),
            ],
            "request_id": None,
            "scene": "feed",
            "event_type": "click",
            "position": None,
            "price": 3.0,
        }
    )
    wh = _warehouse(tmp_path / "wh.duckdb", ev, items)
    compute_feature_tables(wh, tmp_path / "f", FeaturesParams(), START, dt.date(2026, 2, 14))
    table = read_feature_table(tmp_path / "f", "user_cat_l2")
    stamped = [ts.date() - dt.timedelta(days=1) for ts in table["event_timestamp"]]
    assert stamped == [START + dt.timedelta(days=o) for o in (0, 1, 7, 30)]
    assert table["u_cat_l2_clicks_30d"].tolist() == [1, 1, 1, 0]
    assert table["u_cat_l2_clicks_7d"].tolist() == [1, 1, 0, 0]
    assert table["u_cat_l2_clicks_1d"].tolist() == [1, 0, 0, 0]
    # No exposures in this source: exposure counts and CTR are empty, not 0.
    assert table["u_cat_l2_exposures_7d"].isna().all() and table["u_cat_l2_ctr_7d"].isna().all()


def test_writing_a_day_again_is_idempotent(tmp_path, tiny_world):
    wh = _warehouse(
        tmp_path / "wh.duckdb",
        pd.concat([tiny_world.events(d) for d in tiny_world.days[:2]]),
        tiny_world.items(),
    )
    fp = FeaturesParams()
    day = tiny_world.days[1]
    first = compute_feature_tables(wh, tmp_path / "f", fp, day)
    files = {p: Path(p).read_bytes() for ps in first.paths.values() for p in ps}
    again = compute_feature_tables(wh, tmp_path / "f", fp, day)
    assert again.rows == first.rows
    assert set(again.seconds_per_view) == set(again.rows)  # build and write time of every view
    assert all(t["build"] >= 0 and t["write"] >= 0 for t in again.seconds_per_view.values())
    assert {p: Path(p).read_bytes() for p in files} == files
    assert sorted(p.name for p in (tmp_path / "f" / "item_stats").iterdir()) == [
        f"day={day}.parquet"
    ]
    table = read_feature_table(tmp_path / "f", "item_stats", day)
    assert (table["event_timestamp"] == pd.Timestamp(end_of_day(day))).all()


def _purchases_only(events: pd.DataFrame) -> pd.DataFrame:
    """Reviews-like events: purchases without impressions, as ingestion/readers/amazon.py loads them."""
    ev = events[events["event_type"] == "purchase"].copy()
    return ev.assign(scene="review", request_id=None, position=pd.NA)


def test_source_without_exposures_reports_empty_features(tmp_path, tiny_world):
    days = tiny_world.days
    events = pd.concat([_purchases_only(tiny_world.events(d)) for d in days])
    items = tiny_world.items().assign(seller=None)  # Amazon has no sellers
    wh = _warehouse(tmp_path / "wh.duckdb", events, items)
    report = compute_feature_tables(wh, tmp_path / "f", FeaturesParams(), days[0], days[-1])
    assert report.event_types == {
        "exposure": False,
        "click": False,
        "cart": False,
        "purchase": True,
    }
    empty = set(report.empty_features)
    assert {
        "item_exposures_7d",
        "item_clicks_7d",
        "item_ctr_7d",
        "item_cvr_7d",
        "u_brand_exposures_30d",
        "u_cat_l3_ctr_1d",
        "user_carts_30d",
    } <= empty
    assert not empty & {
        "item_purchases_7d",
        "item_gmv_30d",
        "u_brand_purchases_30d",
        "user_avg_purchase_price_30d",
    }
    for view, shares in report.null_share.items():
        for feature, share in shares.items():
            if feature in empty:
                assert share == 1.0, f"{view}.{feature} is reported empty but has values"
    assert sum(report.rows["user_seller"].values()) == 0, "no seller, no user x seller rows"
    latest = read_feature_table(tmp_path / "f", "item_stats").groupby("item_id").last()
    assert latest["item_purchases_30d"].sum() == len(events)


def test_real_amazon_reviews_report_empty_features(tmp_path, amazon_path):
    from ingestion.readers.amazon import load_amazon

    ds = load_amazon(amazon_path)
    ev = ds.events[ds.events["ts"] >= pd.Timestamp("2014-06-01", tz="UTC")]
    wh = _warehouse(tmp_path / "wh.duckdb", ev, ds.items)
    last = pd.to_datetime(ev["ts"]).dt.date.max()
    report = compute_feature_tables(
        wh, tmp_path / "f", FeaturesParams(), last - dt.timedelta(days=2), last
    )
    assert not report.event_types["exposure"] and report.event_types["purchase"]
    assert (
        "item_ctr_30d" in report.empty_features and "u_cat_l2_exposures_7d" in report.empty_features
    )
    assert sum(report.rows["user_cat_l2"].values()) > 0
    assert sum(report.rows["user_seller"].values()) == 0


def test_sql_script_separators_follow_the_parser():
    import duckdb

    from features.compute import _execute_script

    con = duckdb.connect()
    _execute_script(
        con,
        "CREATE TABLE t AS SELECT 'a;b' AS s; -- a comment; not a separator\n"
        "INSERT INTO t SELECT $x; /* also; not */ INSERT INTO t SELECT 'c'",
        {"x": "d"},
    )
    assert sorted(r[0] for r in con.execute("SELECT s FROM t").fetchall()) == ["a;b", "c", "d"]


def test_an_orphan_engagement_counts_as_the_feature_definitions_say(tmp_path):
    """A click kept by the contract without a logged exposure (docs/features.md): a click in
    every count, no exposure invented."""
    ts = pd.Timestamp(START, tz="UTC") + pd.Timedelta(hours=9)
    rows = [("exposure", "i0", "r1"), ("click", "i0", "r1"), ("click", "i1", "never-logged")]
    events = pd.DataFrame(
        {
            "event_id": [f"e{k}" for k in range(len(rows))],
            "ts": [ts + pd.Timedelta(seconds=k) for k in range(len(rows))],
            "user_id": "u1",
            "item_id": [r[1] for r in rows],
            "request_id": [r[2] for r in rows],
            "scene": "feed",
            "event_type": [r[0] for r in rows],
            "position": pd.array([0, None, None], dtype="Int64"),
            "price": 10.0,
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["i0", "i1"],
            "title": None,
            "cat_l1": "c1",
            "cat_l2": "a",
            "cat_l3": "a1",
            "brand": "x",
            "seller": "s",
            "price": 10.0,
            "first_seen": START,
        }
    )
    wh = _warehouse(tmp_path / "wh.duckdb", events, items)
    compute_feature_tables(wh, tmp_path / "f", FeaturesParams(), START)
    stats = read_feature_table(tmp_path / "f", "item_stats", START).set_index("item_id")
    got = stats.loc[["i0", "i1"], ["item_exposures_7d", "item_clicks_7d"]]
    assert got.astype(int).values.tolist() == [[1, 1], [0, 1]]
    user = read_feature_table(tmp_path / "f", "user_stats", START).set_index("user_id")
    assert (user.loc["u1", "user_exposures_7d"], user.loc["u1", "user_clicks_7d"]) == (1, 2)
