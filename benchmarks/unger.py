"""UNGER's ablation (unger §4.4, Table 8) on a canonical parquet folder (the synthetic world):
no auxiliary task / CKA / CKA + IKD, each a whole pipeline replicate per seed.

- `none`: SIDs of fused embeddings whose stage-1 encoder trained without the cross-modality
  alignment (`sid.encoder.align_weight: 0`: the collaborative embedding plus an untrained
  modality adaptation of the text embedding, no CKA), retriever without IKD;
- `cka`: the product's SIDs (fused, CKA on, unger §3.3), retriever without IKD;
- `cka_ikd`: the same SIDs, retriever with `retriever.model.ikd` (unger §3.4.3, eqs. 11-12).

Per seed s the SID versions are built with `sid.seed = 2024 + s` (encoder init, k-means) as of
the day before the held-out day (the SIDs and the integrated embeddings IKD distils see no
held-out engagement) and the retriever trains with `retriever.train.seed = s`; evaluation is the
stage's (`evaluate_run`: the held-out day, `retriever.eval.max_samples`, beam
`retriever.eval.beam_size`). Items first seen on the held-out day have no SID and count as
misses in every variant. Model selection: the `day` protocol has no validation split, so each
run keeps its last step (nothing is chosen on the held-out day).

Prints a Markdown table (mean ± sd over seeds) and writes `unger.json` into --out.

Usage: SIDFLOW_WORKDIR=... python benchmarks/unger.py --data WORLD_FOLDER [--seeds 0 1]
       [--variants none cka cka_ikd] [--out DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # import the project's packages, not this folder's scripts

import sidflow  # noqa: E402,F401  (telemetry off)
from ingestion.warehouse import Warehouse  # noqa: E402
from models.retriever.stage import evaluate_run, train_run, warehouse_inputs  # noqa: E402
from models.tokenizer import load_sid_table  # noqa: E402
from models.tokenizer.stage import run_sid_stage  # noqa: E402
from sidflow.config import load_params  # noqa: E402
from sidflow.stats import mean_sd  # noqa: E402
from sidflow.workdir import Workdir  # noqa: E402

VARIANTS = {  # name: (CKA in stage 1, IKD in stage 2)
    "none": (False, False),
    "cka": (True, False),
    "cka_ikd": (True, True),
}
METRICS = ["hr@50", "recall@10", "ndcg@10"]


def log(msg: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    """Build SIDs, train and evaluate every variant and seed; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="canonical parquet folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="key=value settings")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    base = load_params(overrides={k: _value(v) for k, v in overrides.items()})
    out = args.out or Workdir(base.workdir).reports / "unger"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="sidflow-unger-") as tmp:
        wh = Warehouse(Path(tmp) / "warehouse.duckdb")
        wh.load_folder(_canonical(args.data, Path(tmp)))
        day = wh.days()[-1]
        sid_day = day - dt.timedelta(days=1)
        events, items, users = warehouse_inputs(wh, day)
        for seed in args.seeds:
            sid_folders: dict[bool, Path] = {}
            for name in args.variants:
                cka, ikd = VARIANTS[name]
                p = load_params(
                    overrides={
                        **{k: _value(v) for k, v in overrides.items()},
                        "sid.seed": 2024 + seed,
                        "sid.encoder.align_weight": base.sid.encoder.align_weight if cka else 0.0,
                        "retriever.train.seed": seed,
                        "retriever.model.ikd": ikd,
                    }
                )
                if cka not in sid_folders:
                    folder = out / f"sid-{'cka' if cka else 'none'}-seed{seed}"
                    t0 = time.perf_counter()
                    stage = run_sid_stage(p, wh.path, folder, as_of=sid_day)  # fresh
                    log(
                        f"seed {seed}: SIDs {stage.metrics['version']} (CKA {cka}) in "
                        f"{time.perf_counter() - t0:.0f}s"
                    )
                    sid_folders[cka] = folder
                folder = sid_folders[cka]
                table = load_sid_table(folder / "artefacts")
                run = out / f"{name}-seed{seed}"
                info = train_run(
                    p,
                    events,
                    items,
                    users,
                    table.frame,
                    day,
                    run,
                    progress=False,
                    codebook_size=table.K,
                    sid_folder=folder,
                )
                metrics = evaluate_run(p, run).to_json()
                log(
                    f"{name} seed {seed}: {info.steps} steps, train {info.train_seconds:.0f}s, "
                    f"{info.train_samples} train / {metrics['samples']} held-out samples, "
                    + ", ".join(f"{m} {metrics[m]:.4f}" for m in METRICS)
                )
                results[name].append(
                    {
                        "seed": seed,
                        "sid_version": table.version,
                        "steps": info.steps,
                        "train_seconds": info.train_seconds,
                        "train_samples": info.train_samples,
                        "final_loss": info.final_loss,
                        **{k: metrics[k] for k in [*METRICS, "samples", "eval_seconds"]},
                    }
                )
                (out / "unger.json").write_text(json.dumps(results, indent=2))
    lines = ["| variant | " + " | ".join(METRICS) + " | seeds |", "|---" * (len(METRICS) + 2) + "|"]
    for name, runs in results.items():
        cells = [mean_sd([r[m] for r in runs]) for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(runs)} |")
    print(f"UNGER ablation, held-out day {day}, SIDs as of {sid_day}\n\n" + "\n".join(lines))


def _canonical(folder: Path, tmp: Path) -> Path:
    """`folder` as a canonical parquet folder: `sidflow world` writes its events per day
    (`events/day=D.parquet`), `Warehouse.load_folder` reads one `events.parquet`."""
    if (folder / "events.parquet").exists():
        return folder
    import shutil

    import pandas as pd

    out = tmp / "canonical"
    out.mkdir()
    days = sorted((folder / "events").glob("day=*.parquet"))
    pd.concat([pd.read_parquet(f) for f in days]).to_parquet(out / "events.parquet")
    for name in ("items.parquet", "users.parquet"):
        shutil.copy(folder / name, out / name)
    return out


def _value(text: str):  # noqa: ANN202
    """A --set value as YAML would read it (numbers, booleans, lists)."""
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
