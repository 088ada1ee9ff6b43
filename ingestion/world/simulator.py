"""One day of the synthetic world: requests, a logging policy with position bias, responses.

The logging policy is what a production system would have shown: popularity-heavy,
lightly personalised with a noisy estimate of the user's taste, scene-aware. Its
popularity bias is what gives item exposure its long tail. Responses come from the
ground truth in `preference.py`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ingestion.world.catalog import Catalog
from ingestion.world.population import Population
from ingestion.world.preference import Preference, Responses

SCENES = ("feed", "search", "similar")
SCENE_SHARE = (0.6, 0.25, 0.15)
CANDIDATES_PER_SLOT = 3
SECONDS_PER_DAY = 86_400


class GroupSampler:
    """Popularity-weighted sampling of items within a group (leaf, L2, brand...)."""

    def __init__(self, items: np.ndarray, keys: np.ndarray, weights: np.ndarray, n_groups: int):
        order = np.argsort(keys, kind="stable")
        self.items = items[order]
        self.cum = np.cumsum(weights[order])
        counts = np.bincount(keys, minlength=n_groups)
        self.end = np.cumsum(counts)
        self.start = self.end - counts
        self.total = self.cum[-1]

    def sample(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of `groups`; empty groups fall back to the whole pool."""
        lo = np.where(self.start[groups] > 0, self.cum[np.maximum(self.start[groups] - 1, 0)], 0.0)
        hi = np.where(self.end[groups] > 0, self.cum[np.maximum(self.end[groups] - 1, 0)], 0.0)
        empty = self.end[groups] == self.start[groups]
        lo = np.where(empty, 0.0, lo)
        hi = np.where(empty, self.total, hi)
        u = lo + rng.random(groups.shape) * (hi - lo)
        pos = np.searchsorted(self.cum, u, side="right").clip(0, len(self.items) - 1)
        return self.items[pos]


def _sample_rows(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `n` categories per row of a (rows, k) probability matrix, vectorised."""
    rows, k = probs.shape
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    flat = (cdf + np.arange(rows)[:, None]).ravel()
    u = rng.random((rows, n)) + np.arange(rows)[:, None]
    idx = np.searchsorted(flat, u.ravel(), side="right").reshape(rows, n)
    return (idx - np.arange(rows)[:, None] * k).clip(0, k - 1)


def policy_lists(
    catalog: Catalog,
    population: Population,
    preference: Preference,
    day_index: int,
    users: np.ndarray,
    scene: np.ndarray,
    k: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The logging policy's lists: what the status quo shows `users[r]` in `SCENES[scene[r]]`.

    Returns (shown item indices (R, k), valid (R, k): False where the pool ran short).
    """
    R, C = len(users), k * CANDIDATES_PER_SLOT
    tree = catalog.tree
    avail = catalog.available(day_index)
    pop = catalog.item_popularity[avail]
    by_leaf = GroupSampler(avail, catalog.item_l3[avail], pop, len(tree.l3_names))
    by_l2 = GroupSampler(avail, tree.l3_parent[catalog.item_l3[avail]], pop, len(tree.l2_names))
    by_brand = GroupSampler(avail, catalog.item_brand[avail], pop, len(catalog.brand_names))
    global_cum = np.cumsum(pop)
    interest = population.interest_l3[users]
    intent_leaf = _sample_rows(interest, 1, rng)[:, 0]  # (R,) the request's main leaf
    cand_leaf = _sample_rows(interest, C, rng)  # (R, C) leaves for feed candidates

    # Candidate generation per scene (R, C).
    cand = np.empty((R, C), dtype=np.int64)
    src = rng.random((R, C))
    feed, search, similar = (scene == 0), (scene == 1), (scene == 2)
    glob = avail[
        np.searchsorted(global_cum, rng.random((R, C)) * global_cum[-1]).clip(0, len(avail) - 1)
    ]
    personal = by_leaf.sample(cand_leaf, rng)
    cand[feed] = np.where(src[feed] < 0.35, glob[feed], personal[feed])
    leaf_rc = np.broadcast_to(intent_leaf[:, None], (R, C))
    in_leaf = by_leaf.sample(leaf_rc, rng)
    in_l2 = by_l2.sample(tree.l3_parent[leaf_rc], rng)
    cand[search] = np.where(src[search] < 0.8, in_leaf[search], in_l2[search])
    fav_brand = np.broadcast_to(population.favourite_brands[users, 0][:, None], (R, C))
    in_brand = by_brand.sample(fav_brand, rng)
    cand[similar] = np.where(src[similar] < 0.65, in_leaf[similar], in_brand[similar])

    # Policy score: popularity + noisy personalisation + exploration noise.
    urc = np.broadcast_to(users[:, None], (R, C))
    noisy_aff = preference.affinity(urc, cand) + rng.normal(0, 1.0, (R, C))
    score = np.log(catalog.item_popularity[cand]) + 0.7 * noisy_aff + rng.gumbel(0, 1.0, (R, C))
    # One slot per item: keep the best-scored copy of a duplicated candidate.
    order = np.argsort(cand, axis=1, kind="stable")
    sorted_c = np.take_along_axis(cand, order, 1)
    dup = np.zeros_like(sorted_c, dtype=bool)
    dup[:, 1:] = sorted_c[:, 1:] == sorted_c[:, :-1]
    score_sorted = np.take_along_axis(score, order, 1)
    score_sorted[dup] = -np.inf
    top = np.argsort(-score_sorted, axis=1, kind="stable")[:, :k]
    shown = np.take_along_axis(sorted_c, top, 1)  # (R, k)
    valid = np.isfinite(np.take_along_axis(score_sorted, top, 1))
    return shown, valid


def simulate_day(
    catalog: Catalog,
    population: Population,
    preference: Preference,
    date: dt.date,
    day_index: int,
    seed: int,
    requests_per_user: float,
    items_per_request: int,
) -> pd.DataFrame:
    """Canonical `events` of one day: exposures, then clicks, carts and purchases."""
    rng = np.random.default_rng([seed, 1_000 + day_index])

    # Requests: Poisson per user, scaled by the user's activity.
    n_req = rng.poisson(requests_per_user * population.activity)
    users = np.repeat(np.arange(population.n_users), n_req)
    R, k = len(users), items_per_request
    if R == 0:
        return _empty_events()
    scene = rng.choice(len(SCENES), R, p=SCENE_SHARE)
    shown, valid = policy_lists(catalog, population, preference, day_index, users, scene, k, rng)
    positions = np.broadcast_to(np.arange(k), (R, k))
    scene_names = np.array(SCENES)[scene]
    resp = preference.respond(
        np.broadcast_to(users[:, None], (R, k)),
        shown,
        np.broadcast_to(scene_names[:, None], (R, k)),
        positions,
        rng,
    )
    return _to_events(
        catalog, population, date, rng, users, scene_names, shown, valid, positions, resp
    )


EVENT_COLUMNS = [
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
_TYPE_RANK = {"exposure": 0, "click": 1, "cart": 2, "purchase": 3}


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})


def _to_events(
    catalog: Catalog,
    population: Population,
    date: dt.date,
    rng: np.random.Generator,
    users: np.ndarray,
    scene_names: np.ndarray,
    shown: np.ndarray,
    valid: np.ndarray,
    positions: np.ndarray,
    resp: Responses,
) -> pd.DataFrame:
    """Flatten shown slots and their responses into time-ordered canonical events."""
    R, k = shown.shape
    day_start = pd.Timestamp(date, tz="UTC")
    req_sec = rng.uniform(0, SECONDS_PER_DAY - 900, R)
    stamp = date.strftime("%Y%m%d")
    request_ids = np.array([f"r{stamp}-{r:07d}" for r in range(R)], dtype=object)
    click_delay = rng.exponential(20.0, (R, k)) + 1
    cart_delay = click_delay + rng.exponential(60.0, (R, k)) + 1
    buy_delay = cart_delay + rng.exponential(120.0, (R, k)) + 1
    parts = []
    for kind, mask, delay in (
        ("exposure", valid, np.zeros((R, k))),
        ("click", valid & resp.click, click_delay),
        ("cart", valid & resp.cart, cart_delay),
        ("purchase", valid & resp.purchase, buy_delay),
    ):
        r, p = np.nonzero(mask)
        parts.append(
            pd.DataFrame(
                {
                    "sec": np.minimum(req_sec[r] + delay[r, p], SECONDS_PER_DAY - 1),
                    "r": r,
                    "position": positions[r, p],
                    "type_rank": _TYPE_RANK[kind],
                    "event_type": kind,
                    "item": shown[r, p],
                }
            )
        )
    ev = pd.concat(parts, ignore_index=True).sort_values(["sec", "r", "position", "type_rank"])
    n = len(ev)
    return pd.DataFrame(
        {
            "event_id": [f"e{stamp}-{i:08d}" for i in range(n)],
            "ts": day_start + pd.to_timedelta(ev["sec"].to_numpy(), unit="s").floor("ms"),
            "user_id": population.user_ids[users[ev["r"].to_numpy()]],
            "item_id": catalog.item_ids[ev["item"].to_numpy()],
            "request_id": request_ids[ev["r"].to_numpy()],
            "scene": scene_names[ev["r"].to_numpy()].astype(object),
            "event_type": ev["event_type"].to_numpy().astype(object),
            "position": pd.array(ev["position"].to_numpy(), dtype="Int64"),
            "price": catalog.item_price[ev["item"].to_numpy()].round(2),
        }
    )
