"""What both residual k-means implementations share: settings, result, input checks, RNG protocol.

The reference (`rq_reference.py`, numpy loops) and the fast version (`rq_kmeans.py`,
vectorised torch) follow the same protocol step for step, so that with the same seed
they produce the same codes and (up to float rounding) the same centres:

UniRec §3.2, Algorithm 1, for each layer l = 0..L-1:
  1. residual r_i = e_i - sum_{j<l} mu_{j, s_j(i)}                        (line 4)
  2. centres by k-means++ on the residuals (or the previous codebook when warm-starting);
     C_cap = sum_i w_i / K                                                (line 5)
  3. repeat (line 6-15):
       assign every sample to its nearest centre                          (line 7)
       repair: while a cluster's load V_k = sum_{z_i=k} w_i exceeds tau * C_cap, move its
       "excess" samples to the nearest cluster that still has room          (lines 8-13)
       centres = mean of their members (an empty cluster keeps its centre);
       J = mean_i ||r_i - mu_{z_i}||^2                                    (line 14)
     until |J_prev - J| <= tol * J  (tol is relative so one value fits every layer)
  4. s_l(i) = z_i, codebook_l = centres                                   (line 16)

The repair is Algorithm 1's greedy in a batched, order-independent form:
  a. In every overloaded cluster, members are ranked by regret (distance to their
     second-nearest centre minus distance to this one), highest first, ties by index;
     the longest prefix whose total weight fits tau * C_cap stays, the rest is evicted.
     (Moving the low-regret samples raises the objective, eq. 2, the least.)
  b. Rounds: every evicted sample proposes to its nearest cluster k' with
     V_k' + w_i <= tau * C_cap (loads as of the round's start). Each cluster accepts its
     proposers closest first (ties by index) while the accepted weight still fits, and
     rejects the rest, who propose again in the next round. Every round places at least
     one sample per proposed-to cluster, so the rounds end.
  c. A sample that fits nowhere (only possible when the constraint is infeasible, e.g.
     w_i > tau * C_cap) goes, in index order, to the least-loaded cluster (ties: lowest k).
When max_i w_i <= (tau - 1) * C_cap step (c) never happens, so max_k V_k <= tau * C_cap
after every repair: if no cluster had room for w_i, then sum_k V_k > K (tau C_cap - w_i)
>= K C_cap = sum_i w_i, which is impossible while i itself is not placed.

k-means++ (Arthur & Vassilvitskii 2007) runs on at most `init_sample` residuals, drawn
without replacement; its draws come from `layer_rng(seed, layer)` in a fixed order:
sample indices, first centre, then one uniform per further centre, picked by
inverse-CDF on the running D^2 weights (uniform over unchosen points if all D^2 are 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RQConfig:
    """Settings of one residual k-means run."""

    K: int = 256  # codes per layer
    L: int = 3  # layers
    tau: float = 1.05  # capacity tolerance (UniRec eq. 2), >= 1
    capacity: bool = True  # False: plain RQ-KMeans (no repair), the TIGER-style ablation
    max_iter: int = 30
    tol: float = 1e-4  # stop when |J_prev - J| <= tol * J
    init_sample: int = 16384  # k-means++ runs on at most this many residuals
    seed: int = 0

    def __post_init__(self) -> None:
        if self.K < 1 or self.L < 1:
            raise ValueError(f"sid: K and L must be >= 1 (got K={self.K}, L={self.L})")
        if not self.tau >= 1.0:
            raise ValueError(f"sid.tau must be >= 1 (got {self.tau})")
        if self.max_iter < 1 or self.tol < 0 or self.init_sample < 1:
            raise ValueError("sid: max_iter and init_sample must be >= 1 and tol >= 0")


@dataclass
class RQResult:
    """Codes, codebooks and per-layer diagnostics of one run."""

    codes: np.ndarray  # (N, L) int64, code of each item at each layer
    codebooks: np.ndarray  # (L, K, D) centres mu_{l,k}
    loads: np.ndarray  # (L, K) float64 exposure load V_k of each code after the last repair
    cap: float  # C_cap = sum(w) / K (the same at every layer)
    objective: list[float] = field(default_factory=list)  # J per layer at the last iteration
    iterations: list[int] = field(default_factory=list)  # iterations run per layer
    unplaceable: list[int] = field(default_factory=list)  # samples placed by step (c), per layer

    @property
    def max_load_ratio(self) -> np.ndarray:
        """(L,) max_k V_k / C_cap per layer."""
        return self.loads.max(axis=1) / self.cap


def check_inputs(x: np.ndarray, w: np.ndarray, cfg: RQConfig) -> tuple[np.ndarray, np.ndarray]:
    """Validate embeddings and weights; return them as float arrays. Errors name the row."""
    x = np.asarray(x)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (items, dim); got shape {x.shape}")
    n = x.shape[0]
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) like the embeddings; got {w.shape}")
    if n < cfg.K:
        raise ValueError(f"sid.K={cfg.K} needs at least K items to cluster; got {n}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"embeddings row {bad[0]} holds a NaN or infinite value")
    bad = np.flatnonzero(~(np.isfinite(w) & (w > 0)))
    if bad.size:
        raise ValueError(
            f"weights[{bad[0]}] = {w[bad[0]]}: exposure weights must be finite and > 0"
        )
    return x, w


def capacity_reference(w: np.ndarray, K: int) -> float:
    """C_cap = (1/K) sum_i w_i (UniRec §3.2), summed exactly (math.fsum) so both versions agree."""
    return math.fsum(w.tolist()) / K


def layer_rng(seed: int, layer: int) -> np.random.Generator:
    """The random stream of one layer's k-means++ (independent across layers)."""
    return np.random.default_rng([seed, layer])


def init_sample_indices(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """Sorted indices of the residuals k-means++ sees: all if n <= m, else m drawn uniformly."""
    if n <= m:
        return np.arange(n)
    return np.sort(rng.choice(n, size=m, replace=False))


def pick_by_d2(rng: np.random.Generator, d2: np.ndarray, chosen: np.ndarray) -> int:
    """One k-means++ draw: index with probability proportional to d2 (float64, shape (n,)).

    `chosen` marks indices already picked; if every d2 is 0 (all remaining points sit on
    a centre) the draw is uniform over the unchosen points.
    """
    u = rng.random()
    cdf = np.cumsum(d2)
    total = cdf[-1]
    if total > 0:
        i = int(np.searchsorted(cdf, u * total, side="right"))
        return i if i < len(d2) else int(np.flatnonzero(d2 > 0)[-1])  # u * total rounded up
    free = np.flatnonzero(~chosen)
    return int(free[min(int(u * len(free)), len(free) - 1)])
