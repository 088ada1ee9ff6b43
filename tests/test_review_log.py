"""benchmarks/review_log.py: review-only and messy-catalogue datasets for the benchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from ingestion.readers import read_source
from sidflow.config import load_params

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("review_log", ROOT / "benchmarks" / "review_log.py")
review_log = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(review_log)


def _source(folder: Path) -> Path:
    """A small canonical parquet source: 4 users, 3 items, every event type."""
    rows = []
    for u in range(4):
        for k, item in enumerate(["a", "b", "c"] if u < 3 else ["a", "b"]):
            for kind in ("click", "purchase"):
                rows.append(
                    {
                        "event_id": f"e{u}{item}{kind}",
                        "ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=u * 5 + k),
                        "user_id": f"u{u}",
                        "item_id": item,
                        "request_id": None,
                        "scene": "feed",
                        "event_type": kind,
                        "position": None,
                        "price": 1.0,
                    }
                )
    (folder / "events").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "events" / "part-0.parquet", index=False)
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Red lipstick", "Blue shampoo", "Green soap"],
            "cat_l1": ["Beauty"] * 3,
            "cat_l2": ["Makeup", "Hair", "Bath"],
            "cat_l3": ["Lips", "Shampoo", "Soap"],
            "brand": ["X", "Y", "X"],
            "seller": ["s", "s", "t"],
            "price": [5.0, 7.0, 3.0],
            "first_seen": ["2025-01-01"] * 3,
        }
    )
    items.to_parquet(folder / "items.parquet", index=False)
    pd.DataFrame({"user_id": [f"u{u}" for u in range(5)]}).to_parquet(folder / "users.parquet")
    return folder


def test_purchases_only_with_a_core_filter_and_a_messy_catalogue(tmp_path, capsys):
    src = _source(tmp_path / "src")
    out = tmp_path / "out"
    args = ["--src", str(src), "--out", str(out), "--purchases-only", "--core", "3", "--messy"]
    assert review_log.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    events = pd.read_parquet(out / "events")
    # purchases only; u3 (2 purchases) drops, then every item has 3 users
    assert set(events["event_type"]) == {"purchase"} and report["events"] == len(events) == 9
    assert set(events["user_id"]) == {"u0", "u1", "u2"}
    items = pd.read_parquet(out / "items.parquet")
    assert items["title"].isna().all()
    assert not set(items["cat_l3"]) & {"Lips", "Shampoo", "Soap"}  # anonymised ...
    assert items.loc[items["item_id"] == "a", "brand"].item() == (
        items.loc[items["item_id"] == "c", "brand"].item()  # ... keeping which items share one
    )
    assert set(pd.read_parquet(out / "users.parquet")["user_id"]) == {"u0", "u1", "u2"}
    # the product reads it as a review-only own-data source
    tables = read_source(
        load_params(overrides={"data.source": "parquet", "data.path": str(out)}).data
    )
    assert len(tables.events) == 9


def test_an_own_data_source_read_through_the_product_reader(amazon_path, tmp_path, capsys):
    out = tmp_path / "messy-beauty"
    args = ["--source", "amazon", "--src", str(amazon_path), "--out", str(out), "--messy"]
    assert review_log.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    reviews = read_source(
        load_params(overrides={"data.source": "amazon", "data.path": str(amazon_path)}).data
    )
    assert report["events"] == len(reviews.events) == len(pd.read_parquet(out / "events"))
    items = pd.read_parquet(out / "items.parquet")
    assert items["title"].isna().all() and len(items) == reviews.events["item_id"].nunique()
    assert not set(items["cat_l2"]) & set(reviews.items["cat_l2"].dropna())
    messy = read_source(
        load_params(overrides={"data.source": "parquet", "data.path": str(out)}).data
    )
    assert len(messy.events) == len(reviews.events)
