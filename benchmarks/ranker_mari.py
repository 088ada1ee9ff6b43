"""Ranker latency for one request x N candidates: the plain rank path against MaRI.

MaRI (../shared/papers/related-abstracts.txt) splits the Mixer's first fused matmuls (DIN's
first layer over [q, k, q-k, q*k], DCNv2's first layer over [e_u, pooled, item, cross]) into
user blocks computed once per request and item blocks per candidate
(`models/ranker/model.py`, `DIGRanker.mari_user` / `rank_task_logits_mari`). Both paths score
the same candidates, alternating, on one thread; each timing is one whole request: user
blocks (MaRI) or the broadcast user side (plain), the item encoder and the Mixer for all N.

The ranker: `--ranker DIR` (a trained run folder, e.g. `.sidflow/models/ranker/day=<d>`),
else one built at the params.yaml sizes with random weights, sized like the small world
(items, feature columns; latency does not depend on the weights' values).

Prints JSON: p50 / p99 / mean milliseconds of each path, the speed-up of the p50, the largest
difference between the two paths' probabilities, and the context (sizes, threads, load).

Usage: python benchmarks/ranker_mari.py [--candidates 200] [--requests 300] [--ranker DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # import the project's packages, not this folder's scripts

import sidflow  # noqa: E402,F401  (telemetry off)
from models.ranker.checkpoint import load_ranker  # noqa: E402
from models.ranker.data import ITEM_FIELDS, USER_FIELDS  # noqa: E402
from models.ranker.model import DIGRanker, RankerConfig  # noqa: E402
from models.ranker.samples import FeatureGroups  # noqa: E402
from sidflow.config import load_params  # noqa: E402

# the small world's vocabularies (items, users, fields), near enough for timing
VOCAB = {"item_id": 2621, "seller": 200, "brand": 400, "cat_l1": 10, "cat_l2": 60}
VOCAB |= {"cat_l3": 300, "user_id": 3001, "age_bucket": 8, "region": 10, "scene": 4}


def synthetic_ranker() -> DIGRanker:
    """A ranker at the configured sizes with random weights and batch-norm statistics."""
    params = load_params()
    rp, groups = params.ranker, FeatureGroups.from_params(params)
    cfg = RankerConfig(
        field_vocab=VOCAB,
        item_fields=ITEM_FIELDS,
        user_fields=USER_FIELDS,
        n_user_dense=len(groups.user),
        n_cross=len(groups.cross),
        n_layers=3,
        codebook_size=64,
        d_emb=rp.d_emb,
        d_field=rp.d_field,
        cross_layers=rp.cross_layers,
        n_experts=rp.n_experts,
        expert_hidden=rp.expert_hidden,
        u2t_hidden=rp.u2t_hidden,
        tasks=list(rp.objectives),
    )
    g = torch.Generator().manual_seed(0)
    n = VOCAB["item_id"]
    fields = torch.stack([torch.randint(1, VOCAB[f], (n,), generator=g) for f in ITEM_FIELDS], 1)
    sids = torch.randint(1, 65, (n, 3), generator=g)
    model = DIGRanker(cfg, fields, sids)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def request(model: DIGRanker, n: int, history_len: int, seed: int) -> dict:
    """One request's inputs: profile, scene, user dense, a full history, n candidates."""
    g = torch.Generator().manual_seed(seed)
    cfg, n_items = model.cfg, len(model.item_fields)
    return {
        "profile": torch.stack(
            [torch.randint(1, cfg.field_vocab[f], (1,), generator=g) for f in cfg.user_fields], 1
        ),
        "scene": torch.randint(1, cfg.field_vocab["scene"], (1,), generator=g),
        "dense": torch.randn(1, cfg.n_user_dense, generator=g),
        "hist": torch.randint(1, n_items, (1, history_len), generator=g),
        "rows": torch.randint(1, n_items, (n,), generator=g),
        "cross": torch.randn(n, max(cfg.n_cross, 1), generator=g),
    }


@torch.no_grad()
def plain(model: DIGRanker, r: dict) -> torch.Tensor:
    """The rank path as before MaRI: the user side broadcast, full matmuls per candidate."""
    user = model.user_side(r["profile"], r["scene"], r["dense"], r["hist"])
    return torch.sigmoid(model.rank_logits(user.expand(len(r["rows"])), r["rows"], r["cross"]))


@torch.no_grad()
def mari(model: DIGRanker, r: dict) -> torch.Tensor:
    """MaRI: user blocks once, item blocks per candidate."""
    user = model.user_side(r["profile"], r["scene"], r["dense"], r["hist"])
    pre = model.mari_user(user)
    return torch.sigmoid(model.rank_task_logits_mari(pre, r["rows"], r["cross"])[:, 0])


def _stats(xs: list[float]) -> dict:
    a = np.array(xs) * 1e3
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "sd_ms": round(float(a.std(ddof=1)), 3),
    }


def main() -> None:
    """Time both paths and print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--history", type=int, default=None, help="default: ranker.history_len")
    ap.add_argument("--ranker", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    if args.ranker:
        model, _, raw = load_ranker(args.ranker)
        history_len = args.history or int(raw["history_len"])
    else:
        model, history_len = synthetic_ranker(), args.history or load_params().ranker.history_len
    reqs = [request(model, args.candidates, history_len, s) for s in range(args.requests)]
    for r in reqs[:20]:  # warm-up
        plain(model, r), mari(model, r)
    times: dict[str, list[float]] = {"plain": [], "mari": []}
    diff = 0.0
    for i, r in enumerate(reqs):
        order = ("plain", "mari") if i % 2 == 0 else ("mari", "plain")
        out = {}
        for name in order:
            t0 = time.perf_counter()
            out[name] = (plain if name == "plain" else mari)(model, r)
            times[name].append(time.perf_counter() - t0)
        diff = max(diff, float((out["plain"] - out["mari"]).abs().max()))
    res = {name: _stats(ts) for name, ts in times.items()}
    paired = np.array(times["plain"]) - np.array(times["mari"])
    print(
        json.dumps(
            {
                **res,
                "speedup_p50": round(res["plain"]["p50_ms"] / res["mari"]["p50_ms"], 3),
                "saved_ms_mean": round(float(paired.mean()) * 1e3, 3),
                "saved_ms_se": round(float(paired.std(ddof=1) / np.sqrt(len(paired))) * 1e3, 4),
                "max_abs_prob_diff": diff,
                "context": {
                    "ranker": str(args.ranker) if args.ranker else "synthetic (params.yaml sizes)",
                    "candidates": args.candidates,
                    "requests": args.requests,
                    "history_len": history_len,
                    "d_emb": model.cfg.d_emb,
                    "d_mix_in": model.cross.layers[0].in_features
                    if len(model.cross.layers)
                    else None,
                    "cross_layers": model.cfg.cross_layers,
                    "objectives": model.cfg.tasks,
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "load_before": [round(x, 2) for x in load0],
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
