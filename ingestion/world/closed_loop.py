"""The world as the ground truth of a closed loop: who asks on a day, and how they respond.

`day_requests` draws a day's requests the way the logging-policy simulator does (Poisson per
user scaled by activity, scenes by share), so a served day has the volume of a logged day.
`status_quo_lists` answers requests with the world's logging policy (what ran before any
model: the status-quo arm of the A/B report). `responses_to_events` turns the lists a recommender showed into the world's clicks, carts and
purchases (ground-truth preference with position bias), as canonical events that share the
exposure's `request_id` and `position`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ingestion.world import World
from ingestion.world.simulator import SCENE_SHARE, SCENES, SECONDS_PER_DAY, policy_lists


def day_requests(world: World, day: dt.date, fraction: float = 1.0) -> pd.DataFrame:
    """Requests of `day`: request_id, ts (UTC), user_id, scene; time-ordered.

    `fraction` keeps that share of the users (a cheaper simulation of the same population).
    """
    rng = np.random.default_rng([world.params.seed, 7_000 + world.day_index(day)])
    pop = world.population
    n_req = rng.poisson(world.params.preset.requests_per_user_day * pop.activity)
    n_req[rng.random(pop.n_users) >= fraction] = 0
    users = np.repeat(np.arange(pop.n_users), n_req)
    scene = rng.choice(len(SCENES), len(users), p=SCENE_SHARE)
    sec = np.sort(rng.uniform(0, SECONDS_PER_DAY - 900, len(users)))
    order = rng.permutation(len(users))  # who asks when is independent of who they are
    stamp = day.strftime("%Y%m%d")
    return pd.DataFrame(
        {
            "request_id": [f"s{stamp}-{r:07d}" for r in range(len(users))],
            "ts": pd.Timestamp(day, tz="UTC") + pd.to_timedelta(sec, unit="s"),
            "user_id": np.asarray(pop.user_ids)[users[order]],
            "scene": np.array(SCENES)[scene[order]],
        }
    )


def status_quo_lists(world: World, requests: pd.DataFrame, day: dt.date, seed: int) -> pd.DataFrame:
    """The logging policy's lists for `requests` (request_id, ts, user_id, scene): one row per
    shown slot (request_id, ts, user_id, scene, item_id, position), as the simulator shows them
    on a logged day (`simulator.policy_lists`)."""
    cols = ["request_id", "ts", "user_id", "scene", "item_id", "position"]
    if requests.empty:
        return pd.DataFrame(columns=cols)
    rng = np.random.default_rng([seed, 9_000 + world.day_index(day)])
    users = np.array([world._user_index[u] for u in requests["user_id"]])
    scene = np.array([SCENES.index(s) for s in requests["scene"]])
    k = world.params.items_per_request
    shown, valid = policy_lists(
        world.catalog,
        world.population,
        world.preference,
        world.day_index(day),
        users,
        scene,
        k,
        rng,
    )
    r, p = np.nonzero(valid)
    out = requests.iloc[r][["request_id", "ts", "user_id", "scene"]].reset_index(drop=True)
    out["item_id"] = np.asarray(world.catalog.item_ids)[shown[r, p]]
    out["position"] = p
    return out[cols]


def responses_to_events(world: World, shown: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The world's click/cart/purchase events for served lists.

    `shown`: one row per shown slot with request_id, ts (request time), user_id, scene,
    item_id, position (0-based). Returns canonical events (no exposures: the service logged
    those) stamped a few seconds to minutes after the request, event_id derived from
    (request_id, position, type) so a re-run writes the same ids.
    """
    if shown.empty:
        return pd.DataFrame(
            columns=[
                "event_id",
                "ts",
                "user_id",
                "item_id",
                "request_id",
                "scene",
                "event_type",
                "position",
                "price",
            ]
        )
    rng = np.random.default_rng(seed)
    u = np.array([world._user_index[x] for x in shown["user_id"]])
    items = np.array([world._item_index[x] for x in shown["item_id"]])
    pos = shown["position"].to_numpy()
    resp = world.preference.respond(u, items, shown["scene"].to_numpy(), pos, rng)
    click_s = rng.exponential(20.0, len(shown)) + 1
    cart_s = click_s + rng.exponential(60.0, len(shown)) + 1
    buy_s = cart_s + rng.exponential(120.0, len(shown)) + 1
    end = shown["ts"].dt.normalize() + pd.Timedelta(seconds=SECONDS_PER_DAY - 1)
    parts = []
    for kind, mask, delay in (
        ("click", resp.click, click_s),
        ("cart", resp.cart, cart_s),
        ("purchase", resp.purchase, buy_s),
    ):
        rows = shown[mask]
        ids = rows["request_id"] + "-" + rows["position"].astype(str) + "-" + kind
        ts = np.minimum(rows["ts"] + pd.to_timedelta(delay[mask], unit="s"), end[mask])
        parts.append(
            pd.DataFrame(
                {
                    "event_id": ids,
                    "ts": ts,
                    "user_id": rows["user_id"],
                    "item_id": rows["item_id"],
                    "request_id": rows["request_id"],
                    "scene": rows["scene"],
                    "event_type": kind,
                    "position": rows["position"],
                    "price": world.catalog.item_price[items[mask]],
                }
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable")
