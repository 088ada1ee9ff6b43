"""Retrieval metrics of the pinned evaluation protocol (DESIGN.md).

One target per sample and a ranked list per sample (full-catalogue ranking, no
negative sampling). `rank` is the 0-based position of the target in the list, -1
when absent. Then:
- HR@K (UniRec Table 1, "BS Hit Ratio@K") = Recall@K = mean(0 <= rank < K)
- NDCG@K (UNGER eq. 14-17, binary relevance, one relevant item) = mean(1/log2(rank+2))
- token hit ratio @k per decoding step (UniRec Table 2): teacher forcing, share of
  ground-truth tokens inside the step's top-k predictions.
"""

from __future__ import annotations

import numpy as np
import torch


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ranked (n, N) item ids best first (-1 = padding), targets (n,) -> ranks (n,), -1 = miss."""
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    hit = (ranked == targets[:, None]) & (targets[:, None] >= 0)
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), first, -1)


def hit_ratio(ranks: np.ndarray, k: int) -> float:
    """Share of samples whose target is in the top k (= Recall@k with one target)."""
    ranks = np.asarray(ranks)
    return float(((ranks >= 0) & (ranks < k)).mean()) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k, else 0."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return float("nan")
    gain = np.where((ranks >= 0) & (ranks < k), 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gain.mean())


def retrieval_report(
    ranks: np.ndarray, hr_ks: list[int], rank_ks: list[int], purchase: np.ndarray | None = None
) -> dict[str, float]:
    """HR@K on all (and purchase) samples, Recall@K and NDCG@K, plus the sample counts."""
    ranks = np.asarray(ranks)
    out: dict[str, float] = {"samples": int(len(ranks))}
    for k in rank_ks:
        out[f"recall@{k}"] = hit_ratio(ranks, k)
        out[f"ndcg@{k}"] = ndcg(ranks, k)
    for k in hr_ks:
        out[f"hr@{k}"] = hit_ratio(ranks, k)
    if purchase is not None:
        p = np.asarray(purchase, bool)
        out["purchase_samples"] = int(p.sum())
        for k in hr_ks:
            out[f"hr@{k}_purchase"] = hit_ratio(ranks[p], k) if p.any() else float("nan")
    return out


def token_hits(logits: list[torch.Tensor], target: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Per-sample, per-step hit of the true token in the top-k: (n, P) bool."""
    cols = []
    for t, lg in enumerate(logits):
        top = lg.topk(min(k, lg.shape[-1]), dim=-1).indices  # (n, k)
        cols.append((top == target[:, t : t + 1]).any(dim=-1))
    return torch.stack(cols, dim=1)


def token_hit_ratio(hits: torch.Tensor, fields: list[str], k: int = 3) -> dict[str, float]:
    """Mean of `token_hits` per decoding step, named like UniRec Table 2 (e.g. cat_l2@3)."""
    rate = hits.float().mean(dim=0).tolist() if len(hits) else [float("nan")] * len(fields)
    return {f"{f}@{k}": r for f, r in zip(fields, rate, strict=True)}
