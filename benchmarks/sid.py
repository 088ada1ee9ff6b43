"""Benchmark: capacity-constrained residual k-means vs faiss k-means (1M x 64, K=256, L=3).

    .venv/bin/python benchmarks/sid.py [--n 1000000 --dim 64 --K 256 --L 3 --iters 20]

Ours: `models.tokenizer.rq_kmeans.rq_kmeans` (UniRec Alg. 1, capacity repair every
iteration, tol=0 so every layer runs exactly --iters iterations). faiss: `faiss.Kmeans`
per layer (unconstrained, same K and niter, on ALL points: max_points_per_centroid is
raised so faiss does not subsample), then `index.search` to assign and take residuals.
Both see the same data (a long-tailed, clustered 1M x 64 float32 set with log-normal
exposure weights) and the same thread count. Each method runs in its own process:
torch's and faiss's OpenMP pools spin against each other when they share one, and
OpenBLAS threads are off for faiss (its own OpenMP threads do the work). Repeats are
interleaved (faiss, ours, faiss, ours, ...) so machine load hits both alike; the ratio
uses the median of each. Prints JSON (goal: ratio <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_data(n: int, dim: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """Clustered embeddings (n, dim) float32 and log-normal exposure weights, as .npy files."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4096, dim)).astype(np.float32)
    sizes = rng.zipf(1.3, 4096).astype(float)  # a few dense regions, a long tail of small ones
    label = rng.choice(4096, size=n, p=sizes / sizes.sum())
    x = centres[label] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    w = np.floor(rng.lognormal(2.0, 1.5, n)) + 1.0
    np.save(folder / "x.npy", x)
    np.save(folder / "w.npy", w)
    return folder / "x.npy", folder / "w.npy"


def worker(args: argparse.Namespace) -> dict:
    """Run one method in this process and return its timing and load statistics."""
    import numpy as np

    x, w = np.load(args.x), np.load(args.w)
    cap = w.sum() / args.K
    if args.worker == "faiss":
        import faiss

        faiss.omp_set_num_threads(args.threads)
        t0 = time.perf_counter()
        r = x.copy()
        codes = np.zeros((len(x), args.L), dtype=np.int64)
        for layer in range(args.L):
            km = faiss.Kmeans(
                args.dim,
                args.K,
                niter=args.iters,
                seed=layer,
                verbose=False,
                max_points_per_centroid=len(x) // args.K + 1,
            )
            km.train(r)
            _, idx = km.index.search(r, 1)
            codes[:, layer] = idx[:, 0]
            r -= km.centroids[idx[:, 0]]
        seconds = time.perf_counter() - t0
        loads = np.stack(
            [np.bincount(codes[:, i], weights=w, minlength=args.K) for i in range(args.L)]
        )
        return {"seconds": seconds, "max_load_ratio": (loads.max(1) / cap).round(3).tolist()}

    import torch

    sys.path.insert(0, str(ROOT))
    import sidflow  # noqa: F401  (environment settings)
    from models.tokenizer.rq_common import RQConfig
    from models.tokenizer.rq_kmeans import rq_kmeans

    torch.set_num_threads(args.threads)
    cfg = RQConfig(
        K=args.K,
        L=args.L,
        tau=1.05,
        capacity=args.worker == "capacity",
        max_iter=args.iters,
        tol=0.0,
        seed=0,
    )
    t0 = time.perf_counter()
    res = rq_kmeans(x, w, cfg, device="cpu", dtype=torch.float32, threads=args.threads)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "max_load_ratio": res.max_load_ratio.round(3).tolist(),
        "iterations": res.iterations,
        "unplaceable": res.unplaceable,
        "infeasible_items": int((w > cfg.tau * cap).sum()),
    }


def run(method: str, args: argparse.Namespace, x: Path, w: Path) -> dict:
    """One worker subprocess."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": str(args.threads)}
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--x",
        str(x),
        "--w",
        str(w),
        *(f"--{k}={getattr(args, k)}" for k in ("n", "dim", "K", "L", "iters", "threads")),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{method} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--K", type=int, default=256)
    p.add_argument("--L", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--plain", action="store_true", help="also time our plain RQ-KMeans")
    p.add_argument("--worker", choices=["faiss", "capacity", "plain"], help=argparse.SUPPRESS)
    p.add_argument("--x", help=argparse.SUPPRESS)
    p.add_argument("--w", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        x, w = make_data(args.n, args.dim, 0, Path(tmp))
        methods = ["faiss", "capacity"] + (["plain"] if args.plain else [])
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for m in methods:
                runs[m].append(run(m, args, x, w))
    median = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    report = {
        "benchmark": "capacity-constrained RQ-KMeans (torch, CPU) vs faiss k-means",
        "n": args.n,
        "dim": args.dim,
        "K": args.K,
        "L": args.L,
        "iterations_per_layer": args.iters,
        "threads": args.threads,
        "repeats": args.repeats,
        "capacity_seconds": round(median["capacity"], 2),
        "faiss_seconds": round(median["faiss"], 2),
        "ratio_capacity_over_faiss": round(median["capacity"] / median["faiss"], 3),
        "goal_ratio": 1.5,
        "capacity_runs": runs["capacity"],
        "faiss_runs": runs["faiss"],
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "faiss: unconstrained, random init, all points; ours: k-means++ on 16384 "
        "residuals, capacity repair each iteration (tau=1.05)",
    }
    if args.plain:
        report["plain_seconds"] = round(median["plain"], 2)
        report["plain_runs"] = runs["plain"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
