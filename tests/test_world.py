"""The synthetic world: deterministic, canonical, long-tailed, with a usable ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingestion.canonical import SCHEMAS
from ingestion.world import World
from ingestion.world_stats import exposure_long_tail
from sidflow.config import load_params


def test_same_seed_same_world(tiny_world):
    again = World(load_params(overrides={"world.size": "tiny"}).world)
    day = tiny_world.days[1]
    pd.testing.assert_frame_equal(tiny_world.events(day), again.events(day))
    pd.testing.assert_frame_equal(tiny_world.items(day), again.items(day))


def test_other_seed_other_world(tiny_world):
    other = World(load_params(overrides={"world.size": "tiny", "world.seed": 8}).world)
    assert not tiny_world.events(tiny_world.days[0]).equals(other.events(other.days[0]))


def test_tables_are_canonical(tiny_world):
    day = tiny_world.days[0]
    tables = {
        "events": tiny_world.events(day),
        "items": tiny_world.items(day),
        "users": tiny_world.users(),
    }
    for name, frame in tables.items():
        assert [c.name for c in SCHEMAS[name]] == list(frame.columns), name
    ev = tables["events"]
    assert ev["event_id"].is_unique
    assert set(ev["event_type"]) == {"exposure", "click", "cart", "purchase"}
    assert set(ev["scene"]) <= {"feed", "search", "similar"}
    assert (pd.to_datetime(ev["ts"]).dt.date == day).all()
    assert set(ev["item_id"]) <= set(tables["items"]["item_id"])


def test_funnel_is_a_cascade(tiny_world):
    ev = tiny_world.events(tiny_world.days[0])
    keys = {
        t: set(map(tuple, ev.loc[ev.event_type == t, ["request_id", "item_id"]].to_numpy()))
        for t in ("exposure", "click", "cart", "purchase")
    }
    assert keys["click"] <= keys["exposure"]
    assert keys["cart"] <= keys["click"]
    assert keys["purchase"] <= keys["cart"]
    per_request = ev[ev.event_type == "exposure"].groupby("request_id").size()
    assert per_request.max() == tiny_world.params.items_per_request


def test_new_items_arrive_each_day(tiny_world):
    sizes = [len(tiny_world.items(d)) for d in tiny_world.days]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def test_exposure_is_long_tailed_and_position_biased(tiny_world):
    events = [tiny_world.events(d) for d in tiny_world.days]
    tail = exposure_long_tail(
        [e.loc[e.event_type == "exposure", "item_id"] for e in events], tiny_world.catalog.n_items
    )
    assert tail["top10pct_share"] > 0.3  # a uniform policy would give 0.10
    ev = pd.concat(events)
    shown = ev[ev.event_type == "exposure"].groupby("position").size()
    clicked = ev[ev.event_type == "click"].groupby("position").size()
    ctr = (clicked / shown).fillna(0)
    assert ctr.iloc[:3].mean() > ctr.iloc[-3:].mean()


def test_ground_truth_api(tiny_world):
    items = tiny_world.items(tiny_world.days[0])["item_id"].tolist()[:20]
    user = tiny_world.users()["user_id"].iloc[0]
    p = tiny_world.click_probability(user, items, "search")
    assert p.shape == (20,) and ((p > 0) & (p < 1)).all()
    assert (tiny_world.click_probability(user, items, "feed") < p).all()  # search carries intent
    r = tiny_world.respond(user, items, "feed", np.random.default_rng(0))
    assert r.click.shape == (20,) and not (r.cart & ~r.click).any()
