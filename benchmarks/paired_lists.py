"""Paired comparison of evaluated runs: the per-user difference in Recall@K and NDCG@K between
runs scored on the same held-out users, with its paired standard error (far smaller than the
two runs' own errors, since the users' difficulty cancels).

Each input is a run's `eval_topk.jsonl` (`models/retriever/stage.py`: one line per held-out
sample with its `user`, `target` and ranked `items`). Prints JSON: for every pair (b - a) and
metric, the mean difference, its paired standard error and the number of shared users.
A name may carry several runs (seeds), comma-separated: each user's hit and NDCG are then
averaged over them before the difference, so the error reflects users and seeds together.

    python benchmarks/paired_lists.py none=RUN_A/eval_topk.jsonl cka=RUN_B/eval_topk.jsonl [--k 10]
    python benchmarks/paired_lists.py none=A_SEED0.jsonl,A_SEED1.jsonl cka=B_SEED0.jsonl,B_SEED1.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

import sidflow  # noqa: F401  (telemetry settings)
from sidflow.stats import standard_error


def per_user_hits(path: Path, k: int) -> dict[str, tuple[float, float]]:
    """user -> (hit in the top k, NDCG@k) of one run's held-out samples (one target each)."""
    out = {}
    for line in path.read_text().splitlines():
        x = json.loads(line)
        top = x["items"][:k]
        rank = top.index(x["target"]) if x["target"] in top else -1
        out[str(x["user"])] = (float(rank >= 0), 1 / np.log2(rank + 2) if rank >= 0 else 0.0)
    return out


def seed_mean_hits(paths: list[Path], k: int) -> dict[str, tuple[float, float]]:
    """user -> (hit, NDCG@k) averaged over the runs (seeds) of one name, for users in all."""
    each = [per_user_hits(p, k) for p in paths]
    users = set.intersection(*(set(h) for h in each))
    return {u: tuple(float(np.mean([h[u][j] for h in each])) for j in (0, 1)) for u in users}


def compare(runs: dict[str, Path | list[Path]], k: int) -> dict[str, dict]:
    """Every pair's paired differences (later name minus earlier) in Recall@k and NDCG@k; a
    name with several runs (seeds) is compared by each user's mean over them."""
    hits = {
        name: seed_mean_hits(paths if isinstance(paths, list) else [paths], k)
        for name, paths in runs.items()
    }
    out: dict[str, dict] = {}
    for a, b in itertools.combinations(hits, 2):
        users = sorted(set(hits[a]) & set(hits[b]))
        pair: dict = {"users": len(users)}
        for j, metric in enumerate([f"recall@{k}", f"ndcg@{k}"]):
            d = np.array([hits[b][u][j] - hits[a][u][j] for u in users])
            pair[metric] = {"difference": float(d.mean()), "paired_se": standard_error(d)}
        out[f"{b} - {a}"] = pair
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=EVAL_TOPK_JSONL[,EVAL_TOPK_JSONL...]")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    runs = {n: [Path(x) for x in p.split(",")] for n, p in (r.split("=", 1) for r in args.runs)}
    print(json.dumps(compare(runs, args.k), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
