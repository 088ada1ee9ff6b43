"""Training samples: point-in-time histories, tasks, splits and encoding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from retriever_fixtures import catalogue, users

from models.retriever.paths import build_item_paths
from models.retriever.samples import (
    attach_profiles,
    build_samples,
    encode_batch,
    samples_from_histories,
    serving_behaviour,
    time_split,
)
from models.space import FeatureSpace, task_names


def _events() -> pd.DataFrame:
    t = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [  # user, item, minutes, type, scene
        ("u0", "i001", 0, "exposure", "feed"),
        ("u0", "i001", 0, "click", "feed"),
        ("u0", "i002", 0, "click", "feed"),  # same request (same ts) as the click above
        ("u0", "i003", 5, "cart", "search"),
        ("u0", "i004", 60 * 24, "purchase", "feed"),  # next day
        ("u1", "i005", 10, "click", "search"),
    ]
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [t + pd.Timedelta(minutes=r[2]) for r in rows],
            "event_type": [r[3] for r in rows],
            "scene": [r[4] for r in rows],
        }
    )


def _space() -> FeatureSpace:
    items, _ = catalogue()
    return FeatureSpace.build(items, users(), ["feed", "search"])


def test_history_is_strictly_earlier_engagements():
    space = _space()
    s = build_samples(_events(), space, history_len=3)
    row = space.item_row
    assert list(s.item_id) == ["i001", "i002", "i003", "i004", "i005"]  # no exposure target
    assert s.hist[0].tolist() == [0, 0, 0] and s.hist[1].tolist() == [0, 0, 0]  # same request
    assert s.hist[2].tolist() == [0, row["i001"], row["i002"]]
    assert s.hist[3].tolist() == [row["i001"], row["i002"], row["i003"]]
    assert s.hist_type[3].tolist() == [1, 1, 2]  # click, click, cart
    assert s.hist[4].tolist() == [0, 0, 0]  # another user
    assert len(build_samples(_events(), space, 3, min_history=1)) == 2


def test_time_split_and_first_day_fallback():
    s = build_samples(_events(), _space(), 3)
    train, test = time_split(s, dt.date(2026, 1, 2))
    assert list(test.item_id) == ["i004"] and len(train) == 4
    train, test = time_split(s, dt.date(2026, 1, 1))  # nothing earlier: leave-last-out
    assert sorted(test.item_id) == ["i003", "i005"] and sorted(train.item_id) == ["i001", "i002"]


def test_encode_batch_tasks_targets_weights_profiles():
    items, sid = catalogue()
    space = _space()
    paths = build_item_paths(space.items, sid, ["cat_l2"], 6)
    s = attach_profiles(build_samples(_events(), space, 3), users(), ["user_id", "age_bucket"])
    b = encode_batch(s, space, paths, ["user_id", "age_bucket"], {"cart": 2.0, "purchase": 3.0})
    tasks = task_names(["feed", "search"])
    assert [tasks[i] for i in b["task"]] == [
        "click/feed",
        "click/feed",
        "cart/search",
        "purchase/feed",
        "click/search",
    ]
    assert b["weight"].tolist() == [1.0, 1.0, 2.0, 3.0, 1.0]
    r = paths.rows(["i003"])[0]
    assert b["target"][2].tolist() == paths.codes[r].tolist() and int(b["item_row"][2]) == r
    assert b["profile"][0, 0] == space.vocab["user_id"]["u0"]
    assert b["profile"][0, 1] == space.vocab["age_bucket"]["18-24"]
    bad = s.subset(np.arange(len(s)))
    bad.scene[0] = "flash-sale"
    with pytest.raises(ValueError, match="flash-sale"):
        encode_batch(bad, space, paths, ["user_id"])


def test_serving_bos_asks_every_sample_with_the_serving_behaviour():
    """Held-out samples are decoded as serving asks: the serving behaviour and the sample's
    scene, never the label's behaviour (a purchase is predicted from a click-BOS request)."""
    items, sid = catalogue()
    space = _space()
    paths = build_item_paths(space.items, sid, ["cat_l2"], 6)
    s = build_samples(_events(), space, 3)
    b = encode_batch(s, space, paths, [], bos_behaviour=serving_behaviour(s.event_type))
    tasks = task_names(["feed", "search"])
    assert [tasks[i] for i in b["task"]] == [
        "click/feed",
        "click/feed",
        "click/search",
        "click/feed",
        "click/search",
    ]
    assert serving_behaviour(np.array(["purchase", "purchase", "cart"], object)) == "purchase"
    assert serving_behaviour(np.array(["purchase", "click"], object)) == "click"
    assert serving_behaviour(np.array(["exposure"], object)) == "click"


def test_samples_from_amazon_style_histories():
    frame = pd.DataFrame(
        {
            "user_id": ["u0"],
            "item_id": ["i009"],
            "ts": [pd.Timestamp(0, tz="UTC")],
            "history": [["i001", "unknown", "i002"]],
        }
    )
    space = _space()
    s = samples_from_histories(frame, space, 4)
    assert s.hist[0].tolist() == [0, space.item_row["i001"], 0, space.item_row["i002"]]
    assert s.event_type[0] == "purchase" and s.scene[0] == "review"
