"""The Amazon Beauty 5-core loader on the real staged files (skipped when they are absent)."""

from __future__ import annotations

import pandas as pd
import pytest

from ingestion.readers.amazon import HISTORY_CAP, load_amazon


@pytest.fixture(scope="module")
def beauty(amazon_path):
    return load_amazon(amazon_path, "amazon-beauty")


def test_sizes_match_the_benchmark(beauty):
    assert len(beauty.users) == 22_363
    assert len(beauty.items) == 12_101
    assert len(beauty.events) == 198_502
    assert beauty.events["event_id"].is_unique


def test_reviews_are_purchases_without_invented_exposures(beauty):
    ev = beauty.events
    assert set(ev["event_type"]) == {"purchase"}
    assert ev["position"].isna().all() and ev["request_id"].isna().all()
    assert set(ev["item_id"]) <= set(beauty.items["item_id"])
    assert ev.groupby("user_id")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


def test_metadata_gaps_are_reported_not_fatal(beauty):
    missing = beauty.report["missing_metadata"]
    assert missing["price"] == 12_101 - 11_516
    assert missing["brand"] > 0 and missing["seller"] == 12_101
    assert beauty.items["cat_l1"].eq("Beauty").all()
    assert beauty.items["cat_l2"].nunique() == 6


def test_leave_one_out_split(beauty):
    split = beauty.split
    test = split[split.role == "test"]
    assert len(test) == 22_363 and test["user_id"].is_unique
    assert (split.groupby("user_id").size() == 2).all()
    assert split["history"].map(len).max() <= HISTORY_CAP
    # The test target is each user's last event, the validation target the one before.
    last = beauty.events.sort_values("ts").groupby("user_id").tail(1).set_index("user_id")
    joined = test.set_index("user_id").join(last["event_id"], rsuffix="_last")
    assert (joined["event_id"] == joined["event_id_last"]).all()
    # The P5 sequence file's order is kept: user 1's sequence starts with its first items.
    first = pd.Series(beauty.split.iloc[0]["history"])
    assert len(first) > 0
