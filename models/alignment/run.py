"""Align the day's retriever with RFT + DPO and measure HR@K before and after (unirec §3.6).

Starts from `models/retriever/day=<d>/model.safetensors`; a frozen copy is the DPO
reference. Each step takes one RFT batch (engagements of the `train_days` before d, eq. 24)
and one DPO batch (preference pairs inside those days' requests, eq. 25-28) and minimises
(lambda_RFT L_RFT + lambda_DPO L_DPO) / (lambda_RFT + lambda_DPO), the 20 : 3 mix of eq. 20
(the loop: models/alignment/train.py, in `train.nproc_per_node` torchrun processes when > 1).
The held-out samples and the beam-search protocol are the retriever evaluation's, so
`metrics.json` compares like with like; the aligned model is marked `accepted` (and served)
only if HR@50 on all samples drops by at most `alignment.max_hr_drop`.
Run folder `models/aligned_retriever/day=<d>/`: model.safetensors, item_paths.parquet,
metrics.json (before / after / accepted), alignment.png, pairs.parquet.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from models.alignment.dpo import preference_pairs
from models.alignment.rft import rewards
from models.alignment.train import optimise, optimise_distributed
from models.ranker.samples import attach_history, exposure_rows
from models.retriever.evaluate import evaluate
from models.retriever.model import UniRec
from models.retriever.paths import load_item_paths
from models.retriever.samples import Samples, attach_profiles, build_samples, encode_batch
from models.retriever.train import load_checkpoint, save_checkpoint
from models.retriever.trie import PathTrie
from models.space import BEHAVIOURS, FeatureSpace
from models.tracking import curve as curve_of
from models.tracking import start_run
from sidflow.atomic import write_text_atomic
from sidflow.config import Params


def rft_data(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    space: FeatureSpace,
    paths,
    day: dt.date,
) -> dict[str, torch.Tensor]:  # noqa: ANN001
    """Engagements of the window before `day` with their reward and GMV (eq. 21)."""
    ap, mp = params.alignment, params.retriever.model
    samples = attach_profiles(
        build_samples(events, space, mp.history_len), users, mp.profile_fields
    )
    first = np.datetime64(day - dt.timedelta(days=ap.train_days), "D")
    samples = samples.subset((samples.day >= first) & (samples.day < np.datetime64(day, "D")))
    data = encode_batch(samples, space, paths, mp.profile_fields)
    price = items.drop_duplicates("item_id").set_index("item_id")["price"]
    gmv = np.where(samples.event_type == "purchase", price.reindex(samples.item_id).to_numpy(), 0.0)
    data["gmv"] = torch.tensor(np.nan_to_num(gmv.astype(float)), dtype=torch.float)
    r = rewards(samples.event_type, data["gmv"].numpy(), ap.engagement_value, ap.gmv_weight)
    data["reward"] = torch.from_numpy(r)
    keep = (data["target"] >= 0).all(1)
    return {k: v[keep] for k, v in data.items()}


def dpo_data(
    params: Params,
    events: pd.DataFrame,
    users: pd.DataFrame,
    space: FeatureSpace,
    paths,
    day: dt.date,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:  # noqa: ANN001
    """Request inputs + winner / loser paths of the preference pairs of the window before d."""
    ap, mp = params.alignment, params.retriever.model
    days = pd.to_datetime(events["ts"], utc=True).dt.date
    window = events[(days >= day - dt.timedelta(days=ap.train_days)) & (days < day)]
    rows = exposure_rows(window)
    rows = rows[paths.rows(rows["item_id"].to_numpy()) >= 0].reset_index(drop=True)
    pairs = preference_pairs(rows, ap.pairs_per_request, ap.seed)
    if pairs.empty:
        return {}, pairs
    ctx_rows = attach_history(
        rows.loc[pairs["winner"]].reset_index(drop=True), events, mp.history_len
    )
    n, t = len(ctx_rows), mp.history_len
    hist, hist_type = np.zeros((n, t), np.int64), np.zeros((n, t), np.int64)
    for i, (h, ty) in enumerate(zip(ctx_rows["history"], ctx_rows["history_type"], strict=True)):
        if h:
            hist[i, -len(h) :] = space.ids("item_id", h)
            hist_type[i, -len(h) :] = [BEHAVIOURS.index(x) + 1 for x in ty]
    ctx = Samples(
        user_id=ctx_rows["user_id"].to_numpy(object),
        item_id=ctx_rows["item_id"].to_numpy(object),
        event_type=np.full(n, "click", object),  # serving's task: click in the scene
        scene=ctx_rows["scene"].to_numpy(object),
        day=np.zeros(n, "datetime64[D]"),
        hist=hist,
        hist_type=hist_type,
    )
    ctx = attach_profiles(ctx, users, mp.profile_fields)
    data = encode_batch(ctx, space, None, mp.profile_fields)
    for side in ("winner", "loser"):
        r = paths.rows(rows.loc[pairs[side], "item_id"].to_numpy())
        data[side] = torch.from_numpy(paths.codes[r])
    out = pairs.assign(
        winner_item=rows.loc[pairs["winner"], "item_id"].to_numpy(),
        loser_item=rows.loc[pairs["loser"], "item_id"].to_numpy(),
    )
    return data, out


@dataclass
class AlignmentResult:
    """What `align_run` did: HR@K before and after, and whether serving may use the result."""

    day: str
    before: dict[str, float | None]
    after: dict[str, float]
    hr50_drop: float
    accepted: bool  # HR@50 fell by at most alignment.max_hr_drop
    rft_samples: int
    dpo_pairs: int
    dpo_strict_pairs: int
    steps: int
    train_seconds: float
    total_seconds: float
    settings: dict
    world_size: int = 1  # training processes (train.nproc_per_node)
    mlflow: dict | None = None  # the MLflow run (models/tracking.RunLink)
    curve: list[dict] = field(default_factory=list)


def hit_ratios(params: Params, policy: UniRec, run: Path, paths) -> dict[str, float]:  # noqa: ANN001
    """HR@K (all and purchase samples) of `policy` on the run's held-out samples."""
    ev = params.retriever.eval
    held = load_file(str(run / "eval.safetensors"))
    purchase = np.array(json.loads((run / "eval_meta.json").read_text())["purchase"], bool)
    trie = PathTrie(paths.codes, paths.spec.vocab_sizes)
    after = evaluate(
        policy,
        held,
        trie,
        beam_size=ev.beam_size,
        hr_ks=ev.hr_ks,
        rank_ks=ev.rank_ks,
        batch_size=ev.batch_size,
        purchase=purchase,
    )
    return {k: v for k, v in after.items() if k.startswith("hr@")}


def align_run(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    day: dt.date,
    run: Path,
    out: Path,
    progress: bool = True,
) -> AlignmentResult:
    """Fine-tune the retriever in `run` with RFT + DPO; write `out` (model, pairs,
    metrics.json, alignment.png); accepted when HR@50 drops by at most max_hr_drop."""
    t0 = time.perf_counter()
    ap = params.alignment
    policy = load_checkpoint(run / "model.safetensors")
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    paths = load_item_paths(run / "item_paths.parquet", policy.cfg.path)
    space = FeatureSpace.build(items, users, params.data.scenes)
    rft = rft_data(params, events, items, users, space, paths, day)
    dpo, pairs = dpo_data(params, events, users, space, paths, day)
    nproc = params.train.nproc_per_node
    if nproc > 1:
        steps, curve = optimise_distributed(policy, rft, dpo, ap, nproc, out / "torchrun")
    else:
        steps, curve = optimise(policy, reference, rft, dpo, ap, progress)
    train_seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(policy, out / "model.safetensors", {"day": day.isoformat(), "aligned": True})
    shutil.copy2(run / "item_paths.parquet", out / "item_paths.parquet")
    pairs.to_parquet(out / "pairs.parquet", index=False)
    before = json.loads((run / "metrics.json").read_text())
    after = hit_ratios(params, policy, run, paths)
    drop = before.get("hr@50", 0.0) - after.get("hr@50", 0.0)
    strict = int((pairs["winner_level"] > pairs["loser_level"]).sum()) if len(pairs) else 0
    result = AlignmentResult(
        day=day.isoformat(),
        before={k: before.get(k) for k in after},
        after=after,
        hr50_drop=drop,
        accepted=bool(drop <= ap.max_hr_drop),
        rft_samples=int(len(rft.get("target", []))),
        dpo_pairs=int(len(pairs)),
        dpo_strict_pairs=strict,
        steps=steps,
        train_seconds=round(train_seconds, 2),
        total_seconds=round(time.perf_counter() - t0, 2),
        settings=ap.model_dump(),
        world_size=nproc,
        curve=curve,
    )
    plot_alignment(result, out / "alignment.png")
    link = track(params, result, run, out)
    result.mlflow = link.to_json() if link else None
    write_text_atomic(json.dumps(asdict(result), indent=2), out / "metrics.json")
    return result


def track(params: Params, result: AlignmentResult, run: Path, out: Path):  # noqa: ANN201
    """The run's MLflow record: settings, the RFT and DPO loss curves, HR@K before and after."""
    trained = json.loads((run / "train.json").read_text()) if (run / "train.json").exists() else {}
    return start_run(
        params,
        f"alignment {result.day}",
        {"alignment": result.settings, "nproc_per_node": params.train.nproc_per_node},
        tags={
            "sidflow.stage": "alignment",
            "sidflow.day": result.day,
            "sidflow.sid_version": str(trained.get("sid_version")),
            "sidflow.accepted": str(result.accepted),
            "sidflow.aligned_from": str(run),
            "sidflow.run_folder": str(out),
        },
        curves={f"loss_{k}": curve_of(result.curve, k) for k in ("rft", "dpo")},
        metrics={
            **{f"before_{k}": v for k, v in result.before.items() if v is not None},
            **{f"after_{k}": v for k, v in result.after.items()},
            "hr50_drop": result.hr50_drop,
            "rft_samples": result.rft_samples,
            "dpo_pairs": result.dpo_pairs,
            "steps": result.steps,
            "train_seconds": result.train_seconds,
            "world_size": result.world_size,
        },
        artifacts=[out / "alignment.png"],
    )


def plot_alignment(result: AlignmentResult, path: Path) -> Path:
    """Before / after bars of HR@K on all and purchase samples -> PNG."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result.after)
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(x - 0.2, [result.before[k] or 0 for k in keys], 0.4, label="before")
    ax.bar(x + 0.2, [result.after[k] for k in keys], 0.4, label="after RFT + DPO")
    ax.set_xticks(x, keys, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="hit ratio", title=f"retriever alignment, day {result.day}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
