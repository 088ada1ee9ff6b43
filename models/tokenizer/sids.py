"""Embeddings + exposure weights -> SID table: the tokenizer's public build function.

    from models.tokenizer import build_sids, load_sid_table
    table = build_sids(x, w, K=256, L=3, tau=1.05, capacity=True, seed=0, item_ids=ids)
    table.frame        # item_id, s0..s{L-1}, dedup, version (one-to-one)
    table.codebooks    # (L, K, D)
    table.save(folder); load_sid_table(folder)

capacity=False gives plain RQ-KMeans (a TIGER-like baseline) with the same seeding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models.tokenizer.dedup import assign_dedup, collision_rate
from models.tokenizer.rq_common import RQConfig
from models.tokenizer.rq_kmeans import rq_kmeans
from models.tokenizer.table import SidTable, table_frame


def build_sids(
    embeddings: np.ndarray,
    weights: np.ndarray | None = None,
    K: int = 256,  # noqa: N803 - the paper's names
    L: int = 3,  # noqa: N803
    tau: float = 1.05,
    capacity: bool = True,
    seed: int = 0,
    item_ids: np.ndarray | None = None,
    *,
    max_iter: int = 30,
    tol: float = 1e-4,
    init_sample: int = 16384,
    init_codebooks: np.ndarray | None = None,
    previous: pd.DataFrame | None = None,
    version: str = "dev",
    device: str | None = None,
    progress: bool = False,
) -> SidTable:
    """Quantise (N, D) embeddings into unique SIDs (UniRec Alg. 1 + TIGER dedup level).

    weights: (N,) exposure weights > 0 (None = uniform); item_ids: (N,) ids (default
    "0".."N-1"); init_codebooks: (L, K, D) warm start; previous: an earlier table frame
    whose dedup indices are kept for items whose codes did not change.
    meta holds C_cap, per-layer iterations/objective, collision rate before dedup.
    """
    x = np.asarray(embeddings)
    n = len(x)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    ids = np.asarray(item_ids) if item_ids is not None else np.arange(n).astype(str)
    if len(ids) != n:
        raise ValueError(f"item_ids has {len(ids)} entries for {n} embeddings")
    if len(set(ids.tolist())) != n:
        raise ValueError("item_ids must be unique")
    cfg = RQConfig(
        K=K,
        L=L,
        tau=tau,
        capacity=capacity,
        max_iter=max_iter,
        tol=tol,
        init_sample=init_sample,
        seed=seed,
    )
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    res = rq_kmeans(
        x, w, cfg, init_codebooks=init_codebooks, device=device, dtype=dtype, progress=progress
    )
    dedup = assign_dedup(res.codes, ids, previous)
    meta = {
        "version": version,
        "K": K,
        "L": L,
        "tau": tau,
        "capacity": capacity,
        "seed": seed,
        "items": n,
        "dim": int(x.shape[1]),
        "cap": res.cap,
        "iterations": res.iterations,
        "objective": [round(j, 6) for j in res.objective],
        "unplaceable": res.unplaceable,
        "max_load_ratio": res.max_load_ratio.round(4).tolist(),
        "collision_rate_before_dedup": round(collision_rate(res.codes), 6),
        "max_dedup": int(dedup.max()) if n else 0,
        "warm_start": init_codebooks is not None,
    }
    frame = table_frame(ids, res.codes, dedup, version)
    return SidTable(frame, res.codebooks.astype(np.float32), res.loads, meta)
