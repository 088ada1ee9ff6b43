"""Shape statistics of event logs: how concentrated exposure is on the head items."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def top_share(counts: np.ndarray, share: float, population: int | None = None) -> float:
    """Fraction of the total held by the top `share` of a population of counters."""
    counts = np.sort(np.asarray(counts, dtype=float))[::-1]
    n = population or len(counts)
    k = max(1, int(round(n * share)))
    total = counts.sum()
    return float(counts[:k].sum() / total) if total else 0.0


def exposure_long_tail(exposed_item_ids: Iterable[pd.Series], n_items: int) -> dict[str, float]:
    """Share of exposures on the top 1% and 10% of all catalogue items."""
    counts = pd.concat(list(exposed_item_ids)).value_counts().to_numpy()
    return {
        "top1pct_share": round(top_share(counts, 0.01, n_items), 4),
        "top10pct_share": round(top_share(counts, 0.10, n_items), 4),
        "items_never_exposed": int(n_items - len(counts)),
    }
