"""The ablation table on one as-of day: UniRec, UniRec minus each part, TIGER-like and the
popularity / SASRec (BCE, CE) baselines, all on the same train / held-out split.

Capacity-constrained SIDs come from the day's SID version (`sid_table` asset /
`sidflow sid build`); the plain RQ-KMeans SIDs for `no_capacity_sids` and `tiger` are
rebuilt by the tokenizer (`build_sids(capacity=False)`) from that version's embeddings.
Writes `ablations.md`, `ablations.json` and `ablations.png` into the reports folder.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

from models.baselines.popularity import popularity_ranking
from models.baselines.sasrec import SASRec, sequences
from models.baselines.variants import ABLATIONS, variant
from models.metrics import retrieval_report, target_ranks
from models.retriever.samples import build_samples, time_split
from models.retriever.stage import evaluate_run, train_run, warehouse_inputs
from models.retriever.train import train
from models.space import FeatureSpace
from models.tokenizer import build_sids, load_sid_table
from sidflow.config import Params
from sidflow.workdir import Workdir

matplotlib.use("Agg")  # plots are files: no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

BASELINES = ["popularity", "sasrec_bce", "sasrec_ce"]
COLUMNS = [
    "hr@50",
    "hr@100",
    "hr@200",
    "hr@50_purchase",
    "hr@100_purchase",
    "hr@200_purchase",
    "recall@10",
    "ndcg@10",
]  # other cut-offs are added when evaluated


def sid_version_dir(work: Workdir, day: dt.date) -> Path:
    """The SID version folder of `day` (the tokenizer stage writes it under artefacts/)."""
    base = work.sid_dir / f"day={day.isoformat()}"
    for folder in (base / "artefacts", base):
        if (folder / "sid_table.parquet").exists():
            return folder
    raise FileNotFoundError(
        f"no SID table for {day} under {base}: run the sid_table asset "
        "(or `sidflow sid build`) first"
    )


def plain_sids(folder: Path, capacity_table) -> pd.DataFrame:
    """Plain RQ-KMeans SIDs over the same embeddings, K, L and seed as the capacity table."""

    emb = folder / "embeddings.safetensors"
    if not emb.exists():
        raise FileNotFoundError(f"{folder} lacks embeddings.safetensors for plain RQ-KMeans")
    with safe_open(str(emb), framework="numpy") as f:
        vectors = f.get_tensor("vectors")
    meta = capacity_table.meta
    table = build_sids(
        vectors,
        None,
        capacity_table.K,
        capacity_table.L,
        meta.get("tau", 1.05),
        capacity=False,
        seed=int(meta.get("seed", 0)),
        item_ids=capacity_table.frame["item_id"].to_numpy(),
        version=f"{capacity_table.version}-plain",
    )
    return table.frame


def _baselines(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    day: dt.date,
    names: list[str],
) -> dict[str, dict]:
    """Popularity and SASRec on the same split as the retriever (all items ranked)."""
    ev, mp = params.retriever.eval, params.retriever.model
    space = FeatureSpace.build(items, users, params.data.scenes)
    train_s, eval_s = time_split(build_samples(events, space, mp.history_len), day)
    if ev.max_samples and len(eval_s) > ev.max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(eval_s), ev.max_samples, False))
        eval_s = eval_s.subset(pick)
    targets = space.ids("item_id", eval_s.item_id)
    purchase = eval_s.event_type == "purchase"
    n_items, top = len(space.items), max(ev.hr_ks)
    out = {}
    for name in names:
        t0 = time.perf_counter()
        if name == "popularity":
            ranked = np.broadcast_to(
                popularity_ranking(space.ids("item_id", train_s.item_id), n_items, top),
                (len(eval_s), top),
            )
        else:
            torch.manual_seed(params.retriever.train.seed)
            users_ = train_s.user_id
            last = np.r_[users_[1:] != users_[:-1], True]
            data = sequences(train_s.hist[last], space.ids("item_id", train_s.item_id[last]))
            model = SASRec(n_items, mp.history_len, d=64, loss=name.split("_")[1])
            # SASRec sees one sequence per user: give it SASRec's own epoch budget (200)
            tp = params.retriever.train.model_copy(
                update={"lr": 1e-3, "weight_decay": 0.0, "epochs": 200.0, "warmup_steps": 100}
            )
            train(model, data, tp, progress=False)
            ranked = model.rank(torch.from_numpy(eval_s.hist), min(top, n_items))
        ranks = target_ranks(ranked, targets)
        out[name] = retrieval_report(ranks, ev.hr_ks, ev.rank_ks, purchase)
        out[name]["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def run_ablations(
    params: Params,
    warehouse,
    day: dt.date,
    variants: list[str] | None = None,
    baselines: list[str] | None = None,
    progress: bool = False,
    sid_day: dt.date | None = None,
) -> dict:
    """Train and evaluate every variant and baseline for `day`; write the report files.

    `sid_day` picks an earlier SID version (e.g. the day before, so the SIDs saw none of
    the held-out day's events); items without a SID then count as misses.
    """

    work = Workdir(params.workdir)
    variants = variants if variants is not None else [*ABLATIONS, "tiger"]
    baselines = baselines if baselines is not None else BASELINES
    folder = sid_version_dir(work, sid_day or day)
    table = load_sid_table(folder)
    events, items, users = warehouse_inputs(warehouse, day)
    plain = None
    results: dict[str, dict] = {}
    for name in variants:
        mp = variant(params.retriever.model, name)
        if not mp.capacity_sids and plain is None:
            plain = plain_sids(folder, table)
        sids = table.frame if mp.capacity_sids else plain
        out = work.retriever_dir(day, name)
        info = train_run(
            params,
            events,
            items,
            users,
            sids,
            day,
            out,
            mp,
            progress,
            codebook_size=table.K,
            sid_folder=folder,
        )
        results[name] = {
            **evaluate_run(params, out).to_json(),
            "train_seconds": info.train_seconds,
            "parameters": info.parameters,
        }
    results.update(_baselines(params, events, items, users, day, baselines))
    report_dir = work.reports / "retriever" / f"day={day.isoformat()}"
    previous = report_dir / "ablations.json"
    if previous.exists():  # re-running a subset updates those rows of the day's table
        results = {**json.loads(previous.read_text()), **results}
    write_report(results, report_dir, day)
    (report_dir / "ablations_setup.json").write_text(
        json.dumps(
            {
                "day": day.isoformat(),
                "sid_version": table.version,
                "sid_folder": str(folder),
                "retriever": params.retriever.model_dump(mode="json"),
            },
            indent=2,
        )
    )
    return results


def ablation_markdown(results: dict[str, dict], day: dt.date | None = None) -> str:
    """The table as Markdown (UniRec Table 1/3 columns + Recall/NDCG@10)."""
    seen = [k for r in results.values() for k in r if k.startswith(("hr@", "recall@", "ndcg@"))]
    cols = [c for c in COLUMNS if c in seen] or list(dict.fromkeys(seen))
    head = f"Retriever ablations{f' as of {day}' if day else ''}\n\n"
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in results.items():
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else "-" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def write_report(results: dict[str, dict], folder: Path, day: dt.date | None = None) -> dict:
    """ablations.md / .json / .png in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "md": folder / "ablations.md",
        "json": folder / "ablations.json",
        "png": folder / "ablations.png",
    }
    paths["md"].write_text(ablation_markdown(results, day))
    paths["json"].write_text(json.dumps(results, indent=2, default=float))
    ks = sorted(
        {k for r in results.values() for k in r if k.startswith("hr@") and "_" not in k},
        key=lambda k: int(k[3:]),
    )  # HR@K on all samples, every K evaluated
    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.8))
    width = 0.8 / max(1, len(ks))
    for i, k in enumerate(ks):
        vals = [results[n].get(k, np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=k.upper())
    ax.set_xticks(
        np.arange(len(names)) + width * (len(ks) - 1) / 2,
        names,
        rotation=25,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("hit ratio (held-out engagements)")
    ax.set_title(f"Retriever ablations{f' as of {day}' if day else ''}")
    # the legend beside the bars, not over them
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
