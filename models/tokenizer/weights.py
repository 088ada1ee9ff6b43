"""Item exposure weights w_i for capacity-constrained SIDs (UniRec §3.2), counted with DuckDB.

UniRec weighs each item by its historical impressions. Where the source logs exposures
(the synthetic world) the weight is the exposure count; where it does not (Amazon
reviews) it is the interaction count (clicks + carts + purchases), as DESIGN.md asks
of sources without impressions. A smoothing constant keeps w_i > 0 for items never
shown yet (new items), which Algorithm 1 requires.

The feature store (`features.store.item_weights`) serves the same quantity over its
largest window; the Dagster asset uses it when its tables exist (see stage.py), the CLI
and DVC stage count here from the tables they are given.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

COUNTS_SQL = """
    SELECT i.item_id,
           count(e.item_id) FILTER (WHERE e.event_type = 'exposure') AS exposures,
           count(e.item_id) FILTER (WHERE e.event_type <> 'exposure') AS interactions
    FROM sid_items AS i
    LEFT JOIN (SELECT * FROM train_events WHERE ? IS NULL OR day <= ?) AS e
           ON e.item_id = i.item_id
    GROUP BY i.item_id
"""


def item_event_counts(con: duckdb.DuckDBPyConnection, through: dt.date | None) -> pd.DataFrame:
    """Exposure and interaction counts per catalogue item over events up to `through` (inclusive).

    `con` must expose the views `sid_items` and `train_events` (see data.open_tables).
    Returns columns item_id, exposures, interactions (int64), one row per item.
    """
    return con.execute(COUNTS_SQL, [through, through]).df()


def weights_from_counts(
    counts: pd.DataFrame, mode: str, smoothing: float
) -> tuple[np.ndarray, str]:
    """w_i from counts: mode auto | exposure | interaction | uniform; returns (w, basis).

    auto takes exposures when the source logged any, else interactions.
    """
    has_exposures = int(counts["exposures"].sum()) > 0
    if mode == "auto":
        mode = "exposure" if has_exposures else "interaction"
    if mode == "exposure" and not has_exposures:
        raise ValueError("sid.weights=exposure, but the source logs no exposure events")
    if mode == "uniform":
        return np.ones(len(counts)), "uniform"
    column = {"exposure": "exposures", "interaction": "interactions"}[mode]
    return counts[column].to_numpy(np.float64) + smoothing, f"{column}+{smoothing:g}"


def weights_from_series(series: pd.Series, item_ids: np.ndarray, smoothing: float) -> np.ndarray:
    """Align a weight Series indexed by item_id (e.g. the feature store's) to `item_ids`.

    Items the Series does not list (listed after its day) weigh 0 before smoothing.
    """
    values = series.to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise ValueError(f"item weights: item {series.index[bad[0]]} has weight {values[bad[0]]}")
    return series.reindex(item_ids).fillna(0.0).to_numpy(np.float64) + smoothing
