"""Re-rank one model's candidates by a weighted sum of two models' log-probabilities.

The generative retriever proposes N items per request with their path log-probabilities
(beam search); a second model (e.g. SASRec-CE, a full-catalogue item scorer) scores the same
items. The mixed score is logp_a + w * logp_b (a log-linear ensemble); w is chosen on a
validation split, never on the test split. Items outside the first model's candidates stay
out, so HR@N is unchanged and only the order inside the N moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.metrics import ndcg, target_ranks


def mix_scores(
    items: np.ndarray, logp_a: np.ndarray, logp_b: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """items (n, N) item rows (-1 = none), logp_a / logp_b (n, N) -> (items, logp_a + weight *
    logp_b) re-ordered best first (stable: ties keep the first model's order; empty slots stay
    last with -inf)."""
    live = items >= 0
    score = np.where(live, logp_a + weight * np.where(live, logp_b, 0.0), -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(score, order, axis=1)


def mix_rerank(
    items: np.ndarray, logp_a: np.ndarray, logp_b: np.ndarray, weight: float
) -> np.ndarray:
    """The items of `mix_scores` only: re-ordered by logp_a + weight * logp_b, best first."""
    return mix_scores(items, logp_a, logp_b, weight)[0]


def choose_weight(
    items: np.ndarray,
    logp_a: np.ndarray,
    logp_b: np.ndarray,
    targets: np.ndarray,
    weights: Sequence[float],
    k: int = 10,
) -> tuple[float, dict[float, float]]:
    """The weight of `weights` with the best NDCG@k on these (validation) samples; returns
    (weight, {weight: NDCG@k}). Ties go to the smaller weight."""
    curve = {
        float(w): ndcg(target_ranks(mix_rerank(items, logp_a, logp_b, w), targets), k)
        for w in weights
    }
    best = max(sorted(curve), key=lambda w: curve[w])  # max returns the first of equals
    return best, curve
