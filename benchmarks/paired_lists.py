"""Paired comparison of evaluated runs: the per-user difference in Recall@K and NDCG@K between
runs scored on the same held-out users, with its paired standard error (far smaller than the
two runs' own errors, since the users' difficulty cancels).

Each input is a run's `eval_topk.jsonl` (`models/retriever/stage.py`: one line per held-out
sample with its `user`, `target` and ranked `items`). Prints JSON: for every pair (b - a) and
metric, the mean difference, its paired standard error and the number of shared users.

    python benchmarks/paired_lists.py none=RUN_A/eval_topk.jsonl cka=RUN_B/eval_topk.jsonl [--k 10]
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


def compare(runs: dict[str, Path], k: int) -> dict[str, dict]:
    """Every pair's paired differences (later name minus earlier) in Recall@k and NDCG@k."""
    hits = {name: per_user_hits(path, k) for name, path in runs.items()}
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
    ap.add_argument("runs", nargs="+", metavar="NAME=EVAL_TOPK_JSONL")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    runs = {n: Path(p) for n, p in (r.split("=", 1) for r in args.runs)}
    print(json.dumps(compare(runs, args.k), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
