"""Unique Semantic IDs: an extra dedup level where items share (s0..s{L-1}) (TIGER §3.1 practice).

TIGER appends one more code to items whose semantic codes collide, making SID -> item
one-to-one for serving. Here `dedup` is 0 for the first item of a code and 1, 2, ... for
the others. Across versions an item that keeps its code keeps its dedup index, so
existing SIDs do not move when new items join their code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def collision_rate(codes: np.ndarray) -> float:
    """Share of items whose code tuple (N, L) is shared with at least one other item."""
    if len(codes) == 0:
        return 0.0
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def assign_dedup(
    codes: np.ndarray, item_ids: np.ndarray, previous: pd.DataFrame | None = None
) -> np.ndarray:
    """(N,) dedup index per item so that (codes, dedup) is unique.

    codes: (N, L) semantic codes; previous: an earlier SID table (item_id, s0.., dedup).
    An item whose codes equal its previous codes keeps its previous dedup; every other
    item takes the smallest index still free for its code, in item_id order.
    """
    n, n_layers = codes.shape
    cols = [f"s{i}" for i in range(n_layers)]
    frame = pd.DataFrame(codes, columns=cols).assign(item_id=item_ids, row=np.arange(n))
    frame["dedup"] = -1
    if previous is not None and len(previous):
        prev = previous.set_index("item_id")
        same = frame["item_id"].isin(prev.index)
        if same.any():
            old = prev.loc[frame.loc[same, "item_id"]]
            unchanged = (old[cols].to_numpy() == frame.loc[same, cols].to_numpy()).all(axis=1)
            keep = frame.index[same][unchanged]
            frame.loc[keep, "dedup"] = old["dedup"].to_numpy()[unchanged]
    frame = frame.sort_values(cols + ["item_id"], kind="stable")
    out = frame["dedup"].to_numpy().copy()
    keys = frame[cols].to_numpy()
    start = 0
    for end in [*np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1, len(frame)]:
        group = slice(start, end)
        taken = set(out[group][out[group] >= 0].tolist())
        free = (k for k in range(end - start + len(taken)) if k not in taken)
        for pos in np.flatnonzero(out[group] < 0):
            out[start + pos] = next(free)
        start = end
    result = np.empty(n, dtype=np.int64)
    result[frame["row"].to_numpy()] = out
    return result
