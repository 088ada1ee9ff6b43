"""RFT's reward: the ranker's predicted engagement (unirec eq. 21) against the logged outcome.

On a working folder where the daily graph ran day D (retriever, SID table, ranker samples;
`sidflow run`), this script trains the day's ranker again with the current settings
(`ranker.objectives`: click + purchase heads; cold, on the run's `samples.parquet`), then
aligns the day's retriever with RFT + DPO once per reward (`alignment.reward`: logged,
predicted) and seed (`alignment.seed`: batch order and DPO pair sampling), each through
`models.alignment.run.align_run`. Every run splits the held-out samples by user the same
way (`alignment.acceptance_share`): acceptance is decided on one part, the figures below are
the other part's (the report samples), identical for every run.

Prints JSON: per run, purchase and all-sample HR@50 before / after on the report samples
with the paired change and its standard error (per-sample hit differences), acceptance and
the reward's summary; per reward, the mean ± sd over seeds of the change; and per seed the
predicted-minus-logged difference of after-alignment purchase HR@50 (paired, with its SE).

Usage: SIDFLOW_WORKDIR=... python benchmarks/rft_reward.py [--day D] [--seeds 0 1]
       [--out DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # import the project's packages, not this folder's scripts

import sidflow  # noqa: E402,F401  (telemetry off)
from ingestion.warehouse import Warehouse  # noqa: E402
from models.alignment.run import align_run  # noqa: E402
from models.ranker.stage import SAMPLES, train_run, warehouse_events  # noqa: E402
from models.tokenizer.table import load_sid_table  # noqa: E402
from sidflow.config import load_params  # noqa: E402
from sidflow.stats import sample_sd, standard_error  # noqa: E402
from sidflow.workdir import Workdir  # noqa: E402

K = 50


def paired(before: np.ndarray, after: np.ndarray) -> dict:
    """HR before / after (hits 0/1 per sample), their change and its paired standard error."""
    n = len(before)
    d = after.astype(float) - before.astype(float)
    return {
        "n": int(n),
        "before": float(before.mean()) if n else None,
        "after": float(after.mean()) if n else None,
        "change": float(d.mean()) if n else None,
        "change_se": standard_error(d),
        "before_se": float(np.sqrt(before.mean() * (1 - before.mean()) / n)) if n else None,
    }


def hits(ranks: pd.Series) -> np.ndarray:
    """Hit@K per sample from target ranks (-1 = not in the beam)."""
    r = ranks.to_numpy()
    return ((r >= 0) & (r < K)).astype(int)


def main() -> None:
    """Train the ranker, align per reward and seed, print JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--day", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rewards", nargs="+", default=["logged", "predicted"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="key=value settings")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(overrides=dict(s.split("=", 1) for s in args.set))
    wd = Workdir.of(params)
    runs = sorted(p.name for p in (Path(params.workdir) / "models" / "retriever").glob("day=*"))
    day = args.day or dt.date.fromisoformat(runs[-1].split("=", 1)[1])
    out = args.out or Path(params.workdir) / "reports" / "rft_reward" / f"day={day}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    warehouse = Warehouse(wd.warehouse)
    days = max(params.alignment.train_days, params.ranker.train_days)
    events, items, users = warehouse_events(warehouse, day, days)
    # the day's ranker again with the current settings, on the run's own sample table
    ranker = out / "ranker"
    ranker.mkdir(exist_ok=True)
    shutil.copy2(wd.ranker_dir(day) / SAMPLES, ranker / SAMPLES)
    samples = pd.read_parquet(ranker / SAMPLES)
    sid = load_sid_table(wd.sid_dir / f"day={day.isoformat()}")
    trained = train_run(  # cold: no warm_from
        params, events, items, users, sid.frame, sid.K, day, ranker, samples=samples, progress=False
    )
    ranker_seconds = time.perf_counter() - t0
    results = {}
    for reward in args.rewards:
        for seed in args.seeds:
            p = params.model_copy(
                update={
                    "alignment": params.alignment.model_copy(
                        update={"reward": reward, "seed": seed}
                    )
                }
            )
            folder = out / f"{reward}_seed{seed}"
            res = align_run(
                p, events, items, users, day, wd.retriever_dir(day), folder, False, ranker
            )
            ranks = pd.read_parquet(folder / "ranks.parquet")
            rep = ranks[~ranks["acceptance"]]
            pur = rep[rep["purchase"]]
            results[f"{reward}_seed{seed}"] = {
                "reward": reward,
                "seed": seed,
                "purchase_hr50": paired(hits(pur["rank_before"]), hits(pur["rank_after"])),
                "all_hr50": paired(hits(rep["rank_before"]), hits(rep["rank_after"])),
                "accepted": res.accepted,
                "acceptance": res.acceptance,
                "reward_summary": res.reward,
                "rft_samples": res.rft_samples,
                "dpo_pairs": res.dpo_pairs,
                "steps": res.steps,
                "train_seconds": res.train_seconds,
            }
    summary = {}
    for reward in args.rewards:
        ch = [results[f"{reward}_seed{s}"]["purchase_hr50"]["change"] for s in args.seeds]
        after = [results[f"{reward}_seed{s}"]["purchase_hr50"]["after"] for s in args.seeds]
        summary[reward] = {
            "purchase_hr50_after_mean": float(np.mean(after)),
            "purchase_hr50_after_sd": sample_sd(after),
            "purchase_hr50_change_mean": float(np.mean(ch)),
            "purchase_hr50_change_sd": sample_sd(ch),
        }
    versus = {}
    if {"logged", "predicted"} <= set(args.rewards):
        for s in args.seeds:
            a = pd.read_parquet(out / f"predicted_seed{s}" / "ranks.parquet")
            b = pd.read_parquet(out / f"logged_seed{s}" / "ranks.parquet")
            keep = (~a["acceptance"] & a["purchase"]).to_numpy()
            d = hits(a["rank_after"][keep]) - hits(b["rank_after"][keep])
            versus[f"seed{s}"] = {
                "predicted_minus_logged": float(d.mean()),
                "se": standard_error(d),
                "n": int(len(d)),
            }
    print(
        json.dumps(
            {
                "day": day.isoformat(),
                "workdir": str(params.workdir),
                "ranker": {
                    "objectives": list(params.ranker.objectives),
                    "steps": trained.steps,
                    "train_rows": trained.samples["train_rows"],
                    "purchase_rate": trained.samples["purchase_rate"],
                    "seconds": round(ranker_seconds, 1),
                },
                "runs": results,
                "summary": summary,
                "predicted_vs_logged": versus,
                "settings": {
                    k: v
                    for k, v in params.alignment.model_dump().items()
                    if k not in ("reward", "seed")
                },
                "seconds": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
