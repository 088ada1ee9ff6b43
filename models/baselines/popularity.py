"""Most-popular baseline: the same ranked list (training interaction counts) for everyone."""

from __future__ import annotations

import numpy as np


def popularity_ranking(train_items: np.ndarray, n_items: int, top_n: int) -> np.ndarray:
    """train_items: item rows (1..n_items) of the training interactions -> (top_n,) rows."""
    counts = np.bincount(np.asarray(train_items, dtype=np.int64), minlength=n_items + 1)
    counts[0] = -1  # padding row is never recommended
    return np.argsort(-counts, kind="stable")[:top_n]
