"""The synthetic catalogue: category tree, brands tied to categories, sellers, and items.

Everything is drawn from one numpy Generator so a seed reproduces the same catalogue.
Items carry a latent vector (category + brand + noise) that the ground-truth
preference model scores against users' latent interests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.world.taxonomy import (
    ADJECTIVES,
    BRAND_SYLLABLES,
    SELLER_SUFFIXES,
    TAXONOMY,
    VARIANTS,
)

LATENT_DIM = 16


@dataclass(frozen=True)
class CategoryTree:
    """Flattened L1 > L2 > L3 tree; index arrays map each level to its parent."""

    l1_names: list[str]
    l2_names: list[str]
    l3_names: list[str]
    l2_parent: np.ndarray  # (n_l2,) index into l1
    l3_parent: np.ndarray  # (n_l3,) index into l2
    l3_noun: list[str]
    l3_price: np.ndarray  # (n_l3,) typical price
    l3_vec: np.ndarray  # (n_l3, D) latent position of the leaf
    l3_weight: np.ndarray  # (n_l3,) share of demand, long-tailed


@dataclass(frozen=True)
class Catalog:
    """All items the world will ever list (some appear only on later days)."""

    tree: CategoryTree
    brand_names: list[str]
    brand_l2: np.ndarray  # (n_brands,) home L2 of each brand
    brand_vec: np.ndarray  # (n_brands, D)
    brand_tier: np.ndarray  # (n_brands,) price multiplier
    seller_names: list[str]
    item_ids: np.ndarray  # (n_items,) str
    item_l3: np.ndarray  # (n_items,) int
    item_brand: np.ndarray  # (n_items,) int
    item_seller: np.ndarray  # (n_items,) int
    item_price: np.ndarray  # (n_items,) float
    item_first_day: np.ndarray  # (n_items,) int day offset from start (<= 0: before start)
    item_popularity: np.ndarray  # (n_items,) positive weight, long-tailed
    item_quality: np.ndarray  # (n_items,) latent quality (logit scale)
    item_vec: np.ndarray  # (n_items, D)
    item_titles: list[str]

    @property
    def n_items(self) -> int:
        """Number of items over the whole simulated period."""
        return len(self.item_ids)

    def available(self, day_index: int) -> np.ndarray:
        """Indices of items listed on day `day_index` (first seen on or before it)."""
        return np.flatnonzero(self.item_first_day <= day_index)

    def frame(self, start_date: dt.date, day_index: int | None = None) -> pd.DataFrame:
        """Canonical `items` table, optionally only the items listed by `day_index`."""
        idx = np.arange(self.n_items) if day_index is None else self.available(day_index)
        t = self.tree
        l3 = self.item_l3[idx]
        l2 = t.l3_parent[l3]
        l1 = t.l2_parent[l2]
        first_seen = [start_date + dt.timedelta(days=int(d)) for d in self.item_first_day[idx]]
        return pd.DataFrame(
            {
                "item_id": self.item_ids[idx],
                "title": [self.item_titles[i] for i in idx],
                "cat_l1": np.array(t.l1_names, dtype=object)[l1],
                "cat_l2": np.array(t.l2_names, dtype=object)[l2],
                "cat_l3": np.array(t.l3_names, dtype=object)[l3],
                "brand": np.array(self.brand_names, dtype=object)[self.item_brand[idx]],
                "seller": np.array(self.seller_names, dtype=object)[self.item_seller[idx]],
                "price": self.item_price[idx].round(2),
                "first_seen": pd.to_datetime(first_seen).date,
            }
        )


def build_tree(rng: np.random.Generator) -> CategoryTree:
    """Flatten TAXONOMY and give each leaf a latent vector (L1 + L2 + L3 offsets)."""
    l1_names, l2_names, l3_names, l2_parent, l3_parent, nouns, prices = [], [], [], [], [], [], []
    for l1, l2s in TAXONOMY.items():
        l1_names.append(l1)
        for l2, l3s in l2s.items():
            l2_parent.append(len(l1_names) - 1)
            l2_names.append(l2)
            for l3, noun, price in l3s:
                l3_parent.append(len(l2_names) - 1)
                l3_names.append(l3)
                nouns.append(noun)
                prices.append(price)
    l1_vec = rng.normal(0, 1.0, (len(l1_names), LATENT_DIM))
    l2_vec = l1_vec[l2_parent] + rng.normal(0, 0.7, (len(l2_names), LATENT_DIM))
    l3_vec = l2_vec[l3_parent] + rng.normal(0, 0.5, (len(l3_names), LATENT_DIM))
    # Demand across leaves is long-tailed (Zipf over a random order).
    rank = rng.permutation(len(l3_names)) + 1
    weight = rank**-0.8
    return CategoryTree(
        l1_names=l1_names,
        l2_names=l2_names,
        l3_names=l3_names,
        l2_parent=np.array(l2_parent),
        l3_parent=np.array(l3_parent),
        l3_noun=nouns,
        l3_price=np.array(prices),
        l3_vec=l3_vec,
        l3_weight=weight / weight.sum(),
    )


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = rng.integers(2, 4)
        name = "".join(rng.choice(BRAND_SYLLABLES, k)).capitalize()
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def build_catalog(rng: np.random.Generator, n_initial: int, new_per_day: int, days: int) -> Catalog:
    """Draw brands, sellers and items; new items get first-seen days 1..days-1 (cold start)."""
    tree = build_tree(rng)
    n_l2, n_l3 = len(tree.l2_names), len(tree.l3_names)
    n_items = n_initial + new_per_day * max(days - 1, 0)
    n_brands = max(n_l2 * 2, n_items // 12)
    n_sellers = max(8, n_items // 40)

    # Brands live in one home L2; their popularity is Zipf-like.
    l2_weight = np.bincount(tree.l3_parent, weights=tree.l3_weight, minlength=n_l2)
    brand_l2 = np.concatenate([np.arange(n_l2), rng.choice(n_l2, n_brands - n_l2, p=l2_weight)])
    brand_vec = rng.normal(0, 0.6, (n_brands, LATENT_DIM))
    brand_tier = np.exp(rng.normal(0, 0.35, n_brands))
    brand_pop = (rng.permutation(n_brands) + 1.0) ** -0.7
    brand_names = _brand_names(rng, n_brands)
    # Each brand sells through one to three sellers.
    seller_names = [
        f"{_brand_names(rng, 1)[0]} {SELLER_SUFFIXES[i % len(SELLER_SUFFIXES)]}"
        for i in range(n_sellers)
    ]
    brand_sellers = [
        rng.choice(n_sellers, rng.integers(1, 4), replace=False) for _ in range(n_brands)
    ]

    # Items: leaf by demand, brand among the leaf's L2 brands by brand popularity.
    item_l3 = rng.choice(n_l3, n_items, p=tree.l3_weight)
    item_brand = np.empty(n_items, dtype=np.int64)
    for l2 in range(n_l2):
        members = np.flatnonzero(tree.l3_parent[item_l3] == l2)
        brands = np.flatnonzero(brand_l2 == l2)
        p = brand_pop[brands] / brand_pop[brands].sum()
        item_brand[members] = rng.choice(brands, len(members), p=p)
    item_seller = np.array([rng.choice(brand_sellers[b]) for b in item_brand], dtype=np.int64)
    item_price = (
        tree.l3_price[item_l3] * brand_tier[item_brand] * np.exp(rng.normal(0, 0.25, n_items))
    ).clip(0.99, None)
    first_day = np.concatenate(
        [
            -rng.integers(0, 365, n_initial),
            np.repeat(np.arange(1, max(days, 1)), new_per_day),
        ]
    )
    # Long-tailed intrinsic popularity (what a logging policy learned from the past).
    popularity = (rng.permutation(n_items) + 1.0) ** -0.75 * brand_pop[item_brand] ** 0.5
    log_pop = np.log(popularity)
    quality = 0.35 * (log_pop - log_pop.mean()) / log_pop.std() + rng.normal(0, 0.4, n_items)
    item_vec = (
        tree.l3_vec[item_l3] + brand_vec[item_brand] + rng.normal(0, 0.4, (n_items, LATENT_DIM))
    )

    adjectives = [ADJECTIVES[tree.l1_names[tree.l2_parent[tree.l3_parent[c]]]] for c in item_l3]
    titles = [
        f"{brand_names[b]} {rng.choice(adj)} {tree.l3_noun[c]}, {rng.choice(VARIANTS)}"
        for b, c, adj in zip(item_brand, item_l3, adjectives, strict=True)
    ]
    return Catalog(
        tree=tree,
        brand_names=brand_names,
        brand_l2=brand_l2,
        brand_vec=brand_vec,
        brand_tier=brand_tier,
        seller_names=seller_names,
        item_ids=np.array([f"i{i:07d}" for i in range(n_items)], dtype=object),
        item_l3=item_l3,
        item_brand=item_brand,
        item_seller=item_seller,
        item_price=item_price,
        item_first_day=first_day,
        item_popularity=popularity,
        item_quality=quality,
        item_vec=item_vec,
        item_titles=titles,
    )
