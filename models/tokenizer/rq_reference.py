"""Plain reference of capacity-constrained residual k-means (UniRec §3.2, Algorithm 1).

Readable numpy and Python loops, meant for small inputs: it is the specification the
vectorised torch version (`rq_kmeans.py`) is tested against. The protocol both follow
(repair order, tie-breaks, k-means++ draws) is written out in `rq_common.py`.
"""

from __future__ import annotations

import numpy as np

from models.tokenizer.rq_common import (
    RQConfig,
    RQResult,
    capacity_reference,
    check_inputs,
    init_sample_indices,
    layer_rng,
    pick_by_d2,
)


def rq_kmeans_reference(
    x: np.ndarray, w: np.ndarray, cfg: RQConfig, init_codebooks: np.ndarray | None = None
) -> RQResult:
    """Residual k-means with exposure-capacity repair (or plain, if `cfg.capacity` is False).

    x: (N, D) item embeddings; w: (N,) exposure weights > 0; init_codebooks: optional
    (L, K, D) centres to start every layer from (a warm-started daily rebuild).
    """
    x, w = check_inputs(x, w, cfg)
    n, dim = x.shape
    cap = capacity_reference(w, cfg.K)
    limit = cfg.tau * cap
    residual = x.astype(np.float64)  # (N, D)
    result = RQResult(
        codes=np.zeros((n, cfg.L), dtype=np.int64),
        codebooks=np.zeros((cfg.L, cfg.K, dim)),
        loads=np.zeros((cfg.L, cfg.K)),
        cap=cap,
    )
    for layer in range(cfg.L):
        if init_codebooks is not None:
            centres = np.array(init_codebooks[layer], dtype=np.float64)  # (K, D)
        else:
            centres = kmeans_pp_reference(
                residual, cfg.K, layer_rng(cfg.seed, layer), cfg.init_sample
            )
        j_prev, unplaced = np.inf, 0
        for iteration in range(1, cfg.max_iter + 1):  # noqa: B007 - read after the loop
            # Algorithm 1 line 7: nearest centre for every sample.
            dist = ((residual[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)  # (N, K)
            z = dist.argmin(axis=1)
            if cfg.capacity:  # lines 8-13
                z, unplaced = repair_reference(dist, z, w, cfg.K, limit)
            centres = update_centres_reference(residual, z, centres)  # line 14
            j = float(np.mean(((residual - centres[z]) ** 2).sum(axis=1)))
            if abs(j_prev - j) <= cfg.tol * j:  # line 15
                break
            j_prev = j
        result.codes[:, layer] = z  # line 16
        result.codebooks[layer] = centres
        for i in range(n):
            result.loads[layer, z[i]] += w[i]
        result.objective.append(j)
        result.iterations.append(iteration)
        result.unplaceable.append(unplaced)
        residual = residual - centres[z]  # line 4 of the next layer
    return result


def kmeans_pp_reference(
    r: np.ndarray, k: int, rng: np.random.Generator, init_sample: int
) -> np.ndarray:
    """k-means++ seeding on (a sample of) the residuals r: (N, D) -> (k, D) centres."""
    pts = r[init_sample_indices(rng, len(r), init_sample)]
    chosen = np.zeros(len(pts), dtype=bool)
    first = int(rng.integers(len(pts)))
    chosen[first] = True
    centres = [pts[first]]
    d2 = ((pts - pts[first]) ** 2).sum(axis=1)  # squared distance to the nearest chosen centre
    for _ in range(1, k):
        j = pick_by_d2(rng, d2, chosen)
        chosen[j] = True
        centres.append(pts[j])
        d2 = np.minimum(d2, ((pts - pts[j]) ** 2).sum(axis=1))
    return np.array(centres)


def repair_reference(
    dist: np.ndarray, z: np.ndarray, w: np.ndarray, k: int, limit: float
) -> tuple[np.ndarray, int]:
    """Move samples out of clusters whose load exceeds `limit` (= tau * C_cap).

    dist: (N, K) squared distances; z: (N,) nearest-centre assignment. Returns the
    repaired assignment and how many samples fitted nowhere (see rq_common, steps a-c).
    """
    z = z.copy()
    load = [0.0] * k
    for i in range(len(z)):
        load[z[i]] += w[i]

    # (a) evict, from each overloaded cluster, the members that lose least by moving.
    evicted = []
    for c in range(k):
        if load[c] <= limit:
            continue
        members = [i for i in range(len(z)) if z[i] == c]
        regret = {i: min(dist[i, o] for o in range(k) if o != c) - dist[i, c] for i in members}
        members.sort(key=lambda i: (-regret[i], i))
        kept = 0.0
        for pos, i in enumerate(members):
            if kept + w[i] <= limit:
                kept += w[i]
            else:
                evicted.extend(members[pos:])
                break
        load[c] = kept

    # (b) rounds of proposals to the nearest cluster with room; closest proposers win.
    pending = sorted(evicted)
    unplaceable = []
    while pending:
        proposals: dict[int, list[int]] = {}
        for i in pending:
            feasible = [c for c in range(k) if load[c] + w[i] <= limit]
            if not feasible:
                unplaceable.append(i)
                continue
            target = min(feasible, key=lambda c: (dist[i, c], c))
            proposals.setdefault(target, []).append(i)
        rejected = []
        for c, proposers in proposals.items():
            proposers.sort(key=lambda i: (dist[i, c], i))
            accepted = 0.0
            for pos, i in enumerate(proposers):
                if load[c] + (accepted + w[i]) <= limit:
                    accepted += w[i]
                    z[i] = c
                else:
                    rejected.extend(proposers[pos:])
                    break
            load[c] += accepted
        pending = sorted(rejected)

    # (c) samples that fit nowhere go to the least-loaded cluster.
    for i in sorted(unplaceable):
        c = min(range(k), key=lambda c: (load[c], c))
        z[i] = c
        load[c] += w[i]
    return z, len(unplaceable)


def update_centres_reference(r: np.ndarray, z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Mean of each cluster's residuals; an empty cluster keeps its centre."""
    new = centres.copy()
    for c in range(len(centres)):
        members = r[z == c]
        if len(members):
            new[c] = members.sum(axis=0) / len(members)
    return new
