"""Daily SID updates: code new items without touching old ones, and measure SID churn.

Incremental mode (cold start): every existing item keeps (s0..s{L-1}, dedup); a new item
is encoded by greedy residual quantisation against the frozen codebooks, taking at each
layer the nearest code that still has room under tau * C_cap (loads of today's weights;
the nearest code if none has room), then the first free dedup index of its code.
A rebuild instead re-learns codes (warm-started); `sid_churn` says how many moved.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.tokenizer.dedup import assign_dedup, collision_rate
from models.tokenizer.table import SidTable, table_frame


def encode_with_codebooks(
    x: np.ndarray,
    codebooks: np.ndarray,
    weights: np.ndarray | None = None,
    loads: np.ndarray | None = None,
    limit: float | None = None,
) -> np.ndarray:
    """(n, L) codes of embeddings x (n, D) by residual nearest-code search.

    With weights (n,), loads (L, K) and limit, items are coded one after another (in row
    order) and each takes the nearest code with loads[l, k] + w_i <= limit; `loads` is
    updated in place. Without them, plain nearest codes.
    """
    n, n_layers = len(x), codebooks.shape[0]
    codes = np.zeros((n, n_layers), dtype=np.int64)
    residual = x.astype(np.float64).copy()
    for level in range(n_layers):
        book = codebooks[level].astype(np.float64)  # (K, D)
        dist = ((residual[:, None, :] - book[None]) ** 2).sum(-1)  # (n, K)
        if loads is None:
            codes[:, level] = dist.argmin(1)
        else:
            for i in range(n):
                room = loads[level] + weights[i] <= limit
                k = (
                    int(np.where(room, dist[i], np.inf).argmin())
                    if room.any()
                    else int(dist[i].argmin())
                )
                codes[i, level] = k
                loads[level, k] += weights[i]
        residual -= book[codes[:, level]]
    return codes


def add_new_items(
    previous: SidTable,
    new_ids: np.ndarray,
    new_vectors: np.ndarray,
    weights: pd.Series,
    tau: float,
    version: str,
) -> SidTable:
    """Previous table + codes for `new_ids` (vectors (n, D)); old rows keep their SIDs.

    weights: today's w_i of every catalogue item (Series by item_id); old items missing
    from it (left the catalogue) weigh 0 in the loads.
    """
    old = previous.frame
    clash = np.isin(new_ids, old["item_id"].to_numpy())
    if clash.any():
        raise ValueError(f"item {new_ids[clash][0]} already has a SID in {previous.version}")
    k = previous.K
    w_old = weights.reindex(old["item_id"]).fillna(0.0).to_numpy()
    w_new = weights.reindex(new_ids).fillna(0.0).to_numpy()
    loads = np.zeros((previous.L, k))
    for level, col in enumerate(previous.code_columns):
        loads[level] = np.bincount(old[col].to_numpy(), weights=w_old, minlength=k)
    limit = tau * (w_old.sum() + w_new.sum()) / k
    new_codes = encode_with_codebooks(new_vectors, previous.codebooks, w_new, loads, limit)
    ids = np.concatenate([old["item_id"].to_numpy(), new_ids])
    codes = np.concatenate([previous.codes, new_codes])
    dedup = assign_dedup(codes, ids, old)
    frame = table_frame(ids, codes, dedup, version)
    meta = {
        **previous.meta,
        "version": version,
        "items": len(ids),
        "new_items": len(new_ids),
        "collision_rate_before_dedup": round(collision_rate(codes), 6),
        "max_dedup": int(dedup.max()),
        "cap": limit / tau,
        "incremental_from": previous.version,
    }
    return SidTable(frame, previous.codebooks, loads, meta)


def sid_churn(previous: SidTable, current: SidTable) -> dict:
    """Among items in both tables: share whose codes (s0..) changed, and whose full SID did."""
    cols = previous.code_columns
    if cols != current.code_columns:
        return {
            "common_items": 0,
            "codes_changed_share": None,
            "sid_changed_share": None,
            "note": "L changed: every SID is new",
        }
    both = previous.frame.merge(current.frame, on="item_id", suffixes=("_a", "_b"))
    if both.empty:
        return {"common_items": 0, "codes_changed_share": None, "sid_changed_share": None}
    codes = np.zeros(len(both), dtype=bool)
    for c in cols:
        codes |= both[f"{c}_a"].to_numpy() != both[f"{c}_b"].to_numpy()
    full = codes | (both["dedup_a"].to_numpy() != both["dedup_b"].to_numpy())
    per_layer = {c: round(float((both[f"{c}_a"] != both[f"{c}_b"]).mean()), 4) for c in cols}
    return {
        "common_items": len(both),
        "codes_changed_share": round(float(codes.mean()), 4),
        "sid_changed_share": round(float(full.mean()), 4),
        "changed_by_layer": per_layer,
        "new_items": int((~current.frame["item_id"].isin(previous.frame["item_id"])).sum()),
    }
