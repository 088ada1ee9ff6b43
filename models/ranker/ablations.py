"""Ranker ablations on one day's sample table (DIG Ablations 2-3) -> JSON and a bar plot.

Variants, each trained on the same samples and scored on the same held-out exposures:
- `dig`: the configured model (default: u2i cross features, u2t = bucket mean + MLP_u2t);
- `no_u2i`: the ranker without the u2i cross features (item stats stay; DIG Ablation 2);
- `bucket_mean_u2t`: the retrieval path reads the training-set mean of c in the SID bucket
  (DIG Ablation 3, "statistical mean u2t");
- `mlp_u2t`: MLP_u2t's personalised estimate alone (DIG eq. 14, the paper's choice).
Usage: `python -m models.ranker.ablations --day 2026-01-07` (after the day's ranker_model ran:
its samples.parquet is reused, so the variants differ only in the model).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pandas as pd

from ingestion.warehouse import Warehouse
from models.ranker.stage import SAMPLES, evaluate_run, train_run, warehouse_events
from models.tokenizer.table import load_sid_table
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir

VARIANTS = {
    "dig": {},
    "no_u2i": {"use_u2i": False},
    "bucket_mean_u2t": {"u2t": "bucket_mean"},
    "mlp_u2t": {"u2t": "mlp"},
}


def run_ablations(params: Params, day: dt.date, progress: bool = False) -> dict:
    """Train and evaluate every variant; write `ablations.json` and `ablations.png`."""
    wd = Workdir(params.workdir)
    base = wd.ranker_dir(day)
    if not (base / SAMPLES).exists():
        raise FileNotFoundError(f"{base / SAMPLES}: materialize ranker_model for {day} first")
    samples = pd.read_parquet(base / SAMPLES)
    wh = Warehouse(wd.warehouse)
    events, items, users = warehouse_events(wh, day, params.ranker.train_days)
    sid = load_sid_table(wd.sid_dir / f"day={day.isoformat()}")
    out: dict[str, dict] = {}
    for name, change in VARIANTS.items():
        run = wd.ranker_dir(day, variant=f"ablation_{name}")
        rp = params.ranker.model_copy(update=change)
        info = train_run(
            params,
            events,
            items,
            users,
            sid.frame,
            sid.K,
            day,
            run,
            rp=rp,
            samples=samples,
            progress=progress,
        )
        metrics = evaluate_run(run, users).to_json()  # the day's samples.parquet, one folder up
        out[name] = {"settings": change, "train_seconds": info.train_seconds, **metrics}
    report = wd.ranker_eval_dir(day)
    (report / "ablations.json").write_text(json.dumps(out, indent=2))
    plot_ablations(out, report / "ablations.png")
    return out


def plot_ablations(results: dict, path: Path) -> Path:
    """Rank AUC and retrieval-path AUC per variant -> PNG."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [results[n]["rank_auc"] for n in names], 0.4, label="rank AUC")
    ax.bar(
        [i + 0.2 for i in x],
        [results[n]["recall_auc"] for n in names],
        0.4,
        label="retrieval-path AUC",
    )
    lo = min(min(r["rank_auc"], r["recall_auc"]) for r in results.values())
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xticks(list(x), names)
    ax.set(ylabel="AUC", title="ranker ablations (DIG Ablations 2-3)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    results = run_ablations(load_params(args.params), args.day, progress=True)
    print(
        json.dumps(
            {
                k: {m: v[m] for m in ("rank_auc", "recall_auc", "auc_gap")}
                for k, v in results.items()
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
