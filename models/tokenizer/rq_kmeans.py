"""Vectorised capacity-constrained residual k-means in torch (UniRec §3.2, Algorithm 1).

Same protocol as the reference (`rq_reference.py`; spelled out in `rq_common.py`), but
distances come from chunked matmuls (||r||^2 - 2 r.mu + ||mu||^2), the repair is done
with sorts and segmented cumulative sums instead of per-sample loops, and it runs on
CUDA when available. Hypothesis tests check that both give the same codes.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from models.tokenizer.rq_common import (
    RQConfig,
    RQResult,
    capacity_reference,
    check_inputs,
    init_sample_indices,
    layer_rng,
    pick_by_d2,
)

CHUNK = 65536  # rows per distance block: (CHUNK, K) floats at a time
SMALL = 1 << 22  # N * K below this runs on one CPU thread: thread hand-offs cost more than
# they save on small blocks, badly so on a busy machine (~40x measured on 2 shared cores)


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rq_kmeans(
    x: np.ndarray,
    w: np.ndarray,
    cfg: RQConfig,
    init_codebooks: np.ndarray | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    threads: int | None = None,
) -> RQResult:
    """Residual k-means with exposure-capacity repair (plain RQ-KMeans if not cfg.capacity).

    x: (N, D) embeddings; w: (N,) weights > 0; init_codebooks: optional (L, K, D) warm start.
    Loads and capacity are always float64; distances use `dtype` (float64 in the tests).
    threads: torch CPU threads (None: 1 for small problems, else torch's default).
    """
    x, w = check_inputs(x, w, cfg)
    if threads is None and len(x) * cfg.K < SMALL:
        threads = 1
    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        return _rq_kmeans(x, w, cfg, init_codebooks, device, dtype, progress)
    finally:
        torch.set_num_threads(old)


def _rq_kmeans(
    x: np.ndarray,
    w: np.ndarray,
    cfg: RQConfig,
    init_codebooks: np.ndarray | None,
    device: str | torch.device | None,
    dtype: torch.dtype,
    progress: bool,
) -> RQResult:
    """rq_kmeans on checked inputs (see there)."""
    dev = torch.device(device) if device else default_device()
    n, dim = x.shape
    cap = capacity_reference(w, cfg.K)
    limit = cfg.tau * cap
    r = torch.as_tensor(x, device=dev).to(dtype).clone()  # (N, D) residuals
    wt = torch.as_tensor(w, device=dev, dtype=torch.float64)  # (N,)
    result = RQResult(
        codes=np.zeros((n, cfg.L), dtype=np.int64),
        codebooks=np.zeros((cfg.L, cfg.K, dim), dtype=np.float64),
        loads=np.zeros((cfg.L, cfg.K)),
        cap=cap,
    )
    bar = tqdm(total=cfg.L * cfg.max_iter, desc="rq-kmeans", disable=not progress, leave=False)
    for layer in range(cfg.L):
        if init_codebooks is not None:
            mu = torch.as_tensor(np.asarray(init_codebooks[layer]), device=dev).to(dtype)
        else:
            mu = kmeans_pp(r, cfg.K, layer_rng(cfg.seed, layer), cfg.init_sample)  # (K, D)
        rr = (r * r).sum(1)  # (N,)
        rr_sum = float(rr.double().sum())
        j_prev, unplaced = float("inf"), 0
        for iteration in range(1, cfg.max_iter + 1):  # noqa: B007 - read after the loop
            z, regret = assign(r, mu, regret=cfg.capacity)  # (N,) line 7
            if cfg.capacity:
                z, unplaced = repair(r, rr, mu, z, regret, wt, cfg.K, limit)  # lines 8-13
            mu = update_centres(r, z, mu)  # line 14
            j = objective(rr_sum, mu, z)
            bar.update(1)
            if abs(j_prev - j) <= cfg.tol * j:  # line 15
                break
            j_prev = j
        bar.update(cfg.max_iter - iteration)
        result.codes[:, layer] = z.cpu().numpy()
        result.codebooks[layer] = mu.double().cpu().numpy()
        result.loads[layer] = (
            torch.zeros(cfg.K, dtype=torch.float64, device=dev).index_add_(0, z, wt).cpu().numpy()
        )
        result.objective.append(j)
        result.iterations.append(iteration)
        result.unplaceable.append(unplaced)
        r -= mu[z]  # residual for the next layer
    bar.close()
    return result


def kmeans_pp(r: torch.Tensor, k: int, rng: np.random.Generator, init_sample: int) -> torch.Tensor:
    """k-means++ seeding on (a sample of) r: (N, D) -> (k, D); draws as in rq_common."""
    idx = torch.as_tensor(init_sample_indices(rng, len(r), init_sample), device=r.device)
    pts = r[idx]  # (M, D)
    chosen = np.zeros(len(pts), dtype=bool)
    first = int(rng.integers(len(pts)))
    chosen[first] = True
    picks = [first]
    d2 = ((pts - pts[first]) ** 2).sum(1)  # (M,) exact zero at chosen points
    for _ in range(1, k):
        j = pick_by_d2(rng, d2.double().cpu().numpy(), chosen)
        chosen[j] = True
        picks.append(j)
        d2 = torch.minimum(d2, ((pts - pts[j]) ** 2).sum(1))
    return pts[torch.as_tensor(picks, device=r.device)].clone()


def _dist(
    rows: torch.Tensor, rr: torch.Tensor | None, mu: torch.Tensor, mm: torch.Tensor
) -> torch.Tensor:
    """Squared distances (B, K) of rows (B, D) to centres (K, D); rr=None drops ||r||^2."""
    d = torch.addmm(mm.unsqueeze(0), rows, mu.T, alpha=-2.0)
    return d if rr is None else d.add_(rr.unsqueeze(1))


def assign(
    r: torch.Tensor, mu: torch.Tensor, regret: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Nearest centre of every row (first index on ties): z (N,) int64.

    With `regret`, also d(second-nearest) - d(nearest) per row (N,), which the repair
    uses to decide who leaves an overloaded cluster; it costs one more pass per block.
    """
    mm = (mu * mu).sum(1)
    z = torch.empty(len(r), dtype=torch.int64, device=r.device)
    gap = torch.empty(len(r), dtype=r.dtype, device=r.device) if regret else None
    for s in range(0, len(r), CHUNK):
        d = _dist(r[s : s + CHUNK], None, mu, mm)  # (B, K) without ||r||^2
        if gap is None:
            z[s : s + CHUNK] = d.argmin(1)
            continue
        best, idx = d.min(1)
        z[s : s + CHUNK] = idx
        gap[s : s + CHUNK] = d.scatter_(1, idx.unsqueeze(1), float("inf")).min(1).values - best
    return z, gap


def _segment_cumsum(values: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Running sums of `values` restarting wherever the (sorted) `keys` change."""
    cs = torch.cumsum(values, 0)
    start = torch.ones_like(keys, dtype=torch.bool)
    start[1:] = keys[1:] != keys[:-1]
    offset = (cs - values)[start]  # sum before each segment
    return cs - offset[torch.cumsum(start.long(), 0) - 1]


def _order(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by (primary, secondary, original position), all ascending."""
    o1 = torch.sort(secondary, stable=True).indices
    return o1[torch.sort(primary[o1], stable=True).indices]


def repair(
    r: torch.Tensor,
    rr: torch.Tensor,
    mu: torch.Tensor,
    z: torch.Tensor,
    regret: torch.Tensor,
    w: torch.Tensor,
    k: int,
    limit: float,
    n_candidates: int = 4,
) -> tuple[torch.Tensor, int]:
    """Batched repair of overloaded clusters (rq_common steps a-c); returns (z, unplaceable).

    regret: (N,) d(second-nearest) - d(nearest) from `assign`. Each evicted sample walks
    a list of its `n_candidates` nearest centres (rooms only shrink during the repair, so
    a centre without room for it never regains it); past the list, a masked argmin over
    all centres picks the nearest with room, exactly as the reference does. (Only exactly
    equidistant centres at the list's edge could be ordered differently by `topk`.)
    """
    z = z.clone()
    load = torch.zeros(k, dtype=torch.float64, device=r.device).index_add_(0, z, w)  # (K,)
    over = load > limit
    if not bool(over.any()):
        return z, 0

    # (a) members of overloaded clusters, ranked by (cluster, regret desc, index).
    members = torch.nonzero(over[z]).squeeze(1)  # (M,) ascending
    order = members[_order(z[members], -regret[members])]
    keep = _segment_cumsum(w[order], z[order]) <= limit
    load[over] = 0.0
    load.index_add_(0, z[order[keep]], w[order[keep]])

    # (b) proposal rounds for the evicted samples (kept in ascending index order).
    pending = torch.sort(order[~keep]).values  # (P,)
    mm = (mu * mu).sum(1)
    m = min(n_candidates, k)
    cand, cand_d = [], []
    for s in range(0, len(pending), CHUNK):
        rows = pending[s : s + CHUNK]
        d = _dist(r[rows], rr[rows], mu, mm)  # (B, K)
        top_d, top = torch.topk(d, m, dim=1, largest=False)  # (B, m)
        o = _order_rows(top_d, top)  # by (distance, centre index) within each row
        cand.append(top.gather(1, o))
        cand_d.append(top_d.gather(1, o))
    cand = torch.cat(cand) if cand else torch.empty(0, m, dtype=torch.int64, device=r.device)
    cand_d = torch.cat(cand_d) if cand_d else torch.empty(0, m, dtype=r.dtype, device=r.device)
    ptr = torch.zeros(len(pending), dtype=torch.int64, device=r.device)  # (P,)
    unplaceable = []
    while len(pending):
        target, best = _nearest_with_room(r, rr, mu, mm, pending, cand, cand_d, ptr, w, load, limit)
        fits = torch.isfinite(best)
        unplaceable.append(pending[~fits])
        pos = torch.nonzero(fits).squeeze(1)  # positions into pending, ascending
        pos = pos[_order(target[pos], best[pos])]  # by (target, distance, index)
        accept = load[target[pos]] + _segment_cumsum(w[pending[pos]], target[pos]) <= limit
        won = pending[pos[accept]]
        z[won] = target[pos[accept]]
        load.index_add_(0, z[won], w[won])
        rest = torch.sort(pos[~accept]).values
        pending, cand, cand_d, ptr = pending[rest], cand[rest], cand_d[rest], ptr[rest]

    # (c) what fits nowhere goes to the least-loaded cluster, in index order.
    stuck = torch.sort(torch.cat(unplaceable)).values.tolist() if unplaceable else []
    for i in stuck:
        c = int(torch.argmin(load))
        z[i] = c
        load[c] += w[i]
    return z, len(stuck)


def _order_rows(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-row permutation sorting (values, idx) ascending; (B, m) -> (B, m)."""
    o1 = torch.sort(idx, dim=1, stable=True).indices
    return o1.gather(1, torch.sort(values.gather(1, o1), dim=1, stable=True).indices)


def _nearest_with_room(
    r: torch.Tensor,
    rr: torch.Tensor,
    mu: torch.Tensor,
    mm: torch.Tensor,
    pending: torch.Tensor,
    cand: torch.Tensor,
    cand_d: torch.Tensor,
    ptr: torch.Tensor,
    w: torch.Tensor,
    load: torch.Tensor,
    limit: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target centre (P,) and its distance (P,) for each pending sample: the nearest centre
    with load + w_i <= limit (inf distance if none). Advances `ptr` in place."""
    rows = torch.arange(len(pending), device=r.device)
    m = cand.shape[1]
    wp = w[pending]
    while True:  # skip listed candidates that have no room left for this sample
        c = cand[rows, ptr.clamp(max=m - 1)]
        blocked = (ptr < m) & (load[c] + wp > limit)
        if not bool(blocked.any()):
            break
        ptr += blocked.long()
    target = cand[rows, ptr.clamp(max=m - 1)]
    best = cand_d[rows, ptr.clamp(max=m - 1)]
    past = torch.nonzero(ptr >= m).squeeze(1)  # list exhausted: search every centre
    if len(past):
        ids = pending[past]
        d = _dist(r[ids], rr[ids], mu, mm)  # (B, K)
        d.masked_fill_(load.unsqueeze(0) + wp[past].unsqueeze(1) > limit, float("inf"))
        target[past] = d.argmin(1)
        best[past] = d.gather(1, target[past].unsqueeze(1)).squeeze(1)
    return target, best


def update_centres(r: torch.Tensor, z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Cluster means (K, D); an empty cluster keeps its centre."""
    sums = torch.zeros_like(mu).index_add_(0, z, r)
    counts = torch.bincount(z, minlength=len(mu)).unsqueeze(1)
    return torch.where(counts > 0, sums / counts.clamp(min=1).to(mu.dtype), mu)


def objective(rr_sum: float, mu: torch.Tensor, z: torch.Tensor) -> float:
    """J = mean_i ||r_i - mu_{z_i}||^2 (Algorithm 1 line 14) right after the centre update.

    With mu_k the mean of its members, sum_{z_i=k} ||r_i - mu_k||^2 = sum ||r_i||^2 - n_k ||mu_k||^2,
    so J needs no pass over the rows: (rr_sum - sum_k n_k ||mu_k||^2) / N, in float64.
    """
    counts = torch.bincount(z, minlength=len(mu)).double()
    return max(rr_sum - float((counts * (mu.double() ** 2).sum(1)).sum()), 0.0) / len(z)
