"""The synthetic users: latent interests over categories and brands, and a small profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.world.catalog import LATENT_DIM, Catalog

AGE_BUCKETS = ["18-24", "25-34", "35-44", "45-54", "55+"]
REGIONS = ["north", "south", "east", "west", "central"]


@dataclass(frozen=True)
class Population:
    """Users and their hidden tastes (never written to the canonical tables)."""

    user_ids: np.ndarray  # (n_users,) str
    interest_l3: np.ndarray  # (n_users, n_l3) probability of shopping in each leaf
    favourite_brands: np.ndarray  # (n_users, 2) brand indices the user leans to
    vec: np.ndarray  # (n_users, D) latent taste
    activity: np.ndarray  # (n_users,) relative request rate, mean 1
    price_sensitivity: np.ndarray  # (n_users,) >= 0
    age_bucket: np.ndarray  # (n_users,) index into AGE_BUCKETS
    region: np.ndarray  # (n_users,) index into REGIONS

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_ids)

    def frame(self) -> pd.DataFrame:
        """Canonical `users` table: id and profile fields only."""
        return pd.DataFrame(
            {
                "user_id": self.user_ids,
                "age_bucket": np.array(AGE_BUCKETS, dtype=object)[self.age_bucket],
                "region": np.array(REGIONS, dtype=object)[self.region],
            }
        )


def build_population(rng: np.random.Generator, catalog: Catalog, n_users: int) -> Population:
    """Each user shops in two to four L2 categories, with a taste vector built from them."""
    tree = catalog.tree
    n_l2, n_l3 = len(tree.l2_names), len(tree.l3_names)
    l2_weight = np.bincount(tree.l3_parent, weights=tree.l3_weight, minlength=n_l2)
    interest = np.zeros((n_users, n_l3))
    for u in range(n_users):
        k = rng.integers(2, 5)
        l2s = rng.choice(n_l2, k, replace=False, p=l2_weight)
        l2_share = rng.dirichlet(np.ones(k))
        for l2, share in zip(l2s, l2_share, strict=True):
            leaves = np.flatnonzero(tree.l3_parent == l2)
            interest[u, leaves] = share * rng.dirichlet(np.full(len(leaves), 0.7))
    interest /= interest.sum(1, keepdims=True)
    # Favourite brands come from the user's most-liked leaf's L2.
    top_l2 = tree.l3_parent[interest.argmax(1)]
    favourite = np.stack(
        [
            np.array([rng.choice(np.flatnonzero(catalog.brand_l2 == l2)) for l2 in top_l2]),
            rng.integers(0, len(catalog.brand_names), n_users),
        ],
        axis=1,
    )
    vec = (
        interest @ tree.l3_vec
        + 0.5 * catalog.brand_vec[favourite[:, 0]]
        + rng.normal(0, 0.5, (n_users, LATENT_DIM))
    )
    activity = rng.gamma(2.0, 0.5, n_users)
    return Population(
        user_ids=np.array([f"u{u:07d}" for u in range(n_users)], dtype=object),
        interest_l3=interest,
        favourite_brands=favourite,
        vec=vec,
        activity=activity / activity.mean(),
        price_sensitivity=rng.gamma(2.0, 0.4, n_users),
        age_bucket=rng.choice(len(AGE_BUCKETS), n_users, p=[0.18, 0.3, 0.24, 0.16, 0.12]),
        region=rng.integers(0, len(REGIONS), n_users),
    )
