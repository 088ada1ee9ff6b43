"""Align the day's retriever with RFT + DPO and measure HR@K before and after (unirec §3.6).

Starts from `models/retriever/day=<d>/model.safetensors`; a frozen copy is the DPO
reference. Each step takes one RFT batch (engagements of the `train_days` before d, eq. 24,
rewarded by the ranker's predicted engagement or the logged outcome, eq. 21) and one DPO
batch (preference pairs inside those days' requests, eq. 25-28) and minimises
(lambda_RFT L_RFT + lambda_DPO L_DPO) / (lambda_RFT + lambda_DPO), the 20 : 3 mix of eq. 20
(the loop: models/alignment/train.py, in `train.nproc_per_node` torchrun processes when > 1).
The held-out samples and the beam-search protocol are the retriever evaluation's; they are
split by user: HR@50 on the acceptance part decides `accepted` (served only if it drops by
at most `alignment.max_hr_drop`), the report part gives the before / after figures, so the
reported numbers are not the ones the decision was taken on.
Run folder `models/aligned_retriever/day=<d>/`: model.safetensors, item_paths.parquet,
metrics.json (before / after on the report part, acceptance, reward), ranks.parquet (every
held-out sample's target rank before and after, its part), alignment.png, pairs.parquet.
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
from models.alignment.reward import ranker_predictions
from models.alignment.rft import predicted_rewards, rewards
from models.alignment.train import optimise, optimise_distributed
from models.metrics import retrieval_report, target_ranks
from models.ranker.samples import attach_history, exposure_rows
from models.retriever.evaluate import beam_candidates
from models.retriever.model import UniRec
from models.retriever.paths import load_item_paths
from models.retriever.samples import (
    Samples,
    attach_profiles,
    build_samples,
    encode_batch,
    engaged,
)
from models.retriever.train import load_checkpoint, save_checkpoint
from models.retriever.trie import PathTrie
from models.space import BEHAVIOURS, FeatureSpace
from models.tracking import curve as curve_of
from models.tracking import start_run
from sidflow.atomic import write_text_atomic
from sidflow.config import Params


@dataclass
class RewardInfo:
    """Which reward RFT used (eq. 21) and what it looked like over the RFT samples."""

    source: str  # "predicted" | "logged"
    note: str  # why `logged` when `predicted` was asked (no ranker), else ""
    samples: int
    matched: int | None  # predicted: samples whose exposure row the ranker scored
    mean: float
    sd: float
    corr_logged: float | None  # predicted: Pearson correlation with the logged reward
    mean_by_behaviour: dict[str, float] = field(default_factory=dict)


def rft_data(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    space: FeatureSpace,
    paths,  # noqa: ANN001
    day: dt.date,
    ranker: Path | None = None,
) -> tuple[dict[str, torch.Tensor], RewardInfo]:
    """Engagements of the window before `day` with their reward (eq. 21) and GMV.

    `alignment.reward: predicted` scores each engagement's (request, item) exposure with the
    ranker in the run folder `ranker` (models/alignment/reward.py); without one the logged
    reward is used and the reason kept in the returned RewardInfo."""
    ap, mp = params.alignment, params.retriever.model
    ev = engaged(events)  # build_samples' row order (min_history 0 keeps every row)
    samples = attach_profiles(
        build_samples(events, space, mp.history_len), users, mp.profile_fields
    )
    first = np.datetime64(day - dt.timedelta(days=ap.train_days), "D")
    window = (samples.day >= first) & (samples.day < np.datetime64(day, "D"))
    samples = samples.subset(window)
    data = encode_batch(samples, space, paths, mp.profile_fields)
    price = items.drop_duplicates("item_id").set_index("item_id")["price"]
    item_price = np.nan_to_num(price.reindex(samples.item_id).to_numpy(float))
    gmv = np.where(samples.event_type == "purchase", item_price, 0.0)
    data["gmv"] = torch.tensor(gmv, dtype=torch.float)
    logged = rewards(samples.event_type, gmv, ap.engagement_value, ap.gmv_weight)
    keep = (data["target"] >= 0).all(1).numpy()
    source, note, matched, r = "logged", "", None, logged
    if ap.reward == "predicted":
        if ranker is None or not (ranker / "config.json").exists():
            note = f"alignment.reward predicted, but no trained ranker in {ranker}: logged reward"
        elif "request_id" not in ev:
            note = "alignment.reward predicted, but the events carry no request_id: logged reward"
        else:
            keys = pd.DataFrame(
                {
                    "request_id": ev["request_id"].to_numpy()[window],
                    "item_id": samples.item_id,
                }
            )
            pred = ranker_predictions(ranker, users, keys)
            missing = [k for k in ap.reward_weights if k != "gmv" and k not in pred.probs]
            if "gmv" in ap.reward_weights and "purchase" not in pred.probs:
                missing.append("purchase (for gmv)")
            if missing:
                raise ValueError(
                    f"alignment.reward_weights needs ranker objective(s) {missing}; the ranker "
                    f"in {ranker} predicts {sorted(pred.probs)} (ranker.objectives)"
                )
            r = predicted_rewards(pred.probs, item_price, ap.reward_weights)
            source, matched = "predicted", int(pred.matched[keep].sum())
    data["reward"] = torch.from_numpy(np.asarray(r, np.float32))
    rk, lk, beh = r[keep], logged[keep], samples.event_type[keep]
    info = RewardInfo(
        source=source,
        note=note,
        samples=int(keep.sum()),
        matched=matched,
        mean=float(rk.mean()) if len(rk) else float("nan"),
        sd=float(rk.std()) if len(rk) else float("nan"),
        corr_logged=float(np.corrcoef(rk, lk)[0, 1])
        if source == "predicted" and len(rk) > 1 and rk.std() > 0 and lk.std() > 0
        else None,
        mean_by_behaviour={str(b): float(rk[beh == b].mean()) for b in sorted(set(beh))},
    )
    keep_t = torch.from_numpy(keep)
    return {k: v[keep_t] for k, v in data.items()}, info


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
    """What `align_run` did: HR@K before and after on the report samples, and whether serving
    may use the result (decided on other held-out samples: `acceptance`)."""

    day: str
    before: dict[str, float | None]  # HR@K (all / purchase) on the report samples
    after: dict[str, float]
    hr50_drop: float  # on the acceptance samples
    accepted: bool  # HR@50 on the acceptance samples fell by at most alignment.max_hr_drop
    rft_samples: int
    dpo_pairs: int
    dpo_strict_pairs: int
    steps: int
    train_seconds: float
    total_seconds: float
    settings: dict
    world_size: int = 1  # training processes (train.nproc_per_node)
    acceptance: dict = field(default_factory=dict)  # samples, users, hr@50 before / after
    report: dict = field(default_factory=dict)  # samples, purchase samples, users
    reward: dict = field(default_factory=dict)  # RewardInfo: predicted or logged (eq. 21)
    mlflow: dict | None = None  # the MLflow run (models/tracking.RunLink)
    curve: list[dict] = field(default_factory=list)


def acceptance_split(users: list[str], share: float) -> np.ndarray:
    """True for the held-out samples that decide acceptance: the users whose stable hash falls
    below `share` (all of a user's samples on one side); the others' samples are reported."""
    h = pd.util.hash_pandas_object(pd.Series(users, dtype=object), index=False).to_numpy()
    return (h % 10_000) < share * 10_000


def held_out_ranks(params: Params, model: UniRec, run: Path, paths) -> np.ndarray:  # noqa: ANN001
    """Rank of each held-out sample's target in `model`'s beam (-1 = not in it), run's samples."""
    ev = params.retriever.eval
    held = load_file(str(run / "eval.safetensors"))
    trie = PathTrie(paths.codes, paths.spec.vocab_sizes)
    ranked, _ = beam_candidates(model, held, trie, ev.beam_size, ev.batch_size)
    return target_ranks(ranked, held["item_row"].numpy())


def hit_ratios(params: Params, ranks: np.ndarray, purchase: np.ndarray) -> dict[str, float]:
    """HR@K on all and purchase samples from their ranks."""
    ev = params.retriever.eval
    report = retrieval_report(ranks, ev.hr_ks, [], purchase)
    return {k: v for k, v in report.items() if k.startswith("hr@")}


def align_run(
    params: Params,
    events: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    day: dt.date,
    run: Path,
    out: Path,
    progress: bool = True,
    ranker: Path | None = None,
) -> AlignmentResult:
    """Fine-tune the retriever in `run` with RFT + DPO; write `out` (model, pairs,
    metrics.json, ranks.parquet, alignment.png). The held-out samples are split by user
    (`alignment.acceptance_share`): HR@50 on one part decides acceptance (drop <=
    max_hr_drop), the other part gives the reported before / after. `ranker`: the day's
    ranker run folder, whose predictions give the predicted reward (eq. 21)."""
    t0 = time.perf_counter()
    ap = params.alignment
    policy = load_checkpoint(run / "model.safetensors")
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    paths = load_item_paths(run / "item_paths.parquet", policy.cfg.path)
    space = FeatureSpace.build(items, users, params.data.scenes)
    rft, reward = rft_data(params, events, items, users, space, paths, day, ranker)
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
    meta = json.loads((run / "eval_meta.json").read_text())
    purchase = np.array(meta["purchase"], bool)
    accept = acceptance_split(meta["users"], ap.acceptance_share)
    ranks_before = held_out_ranks(params, reference, run, paths)  # the same beam search
    ranks_after = held_out_ranks(params, policy, run, paths)
    pd.DataFrame(
        {
            "user_id": meta["users"],
            "purchase": purchase,
            "acceptance": accept,
            "rank_before": ranks_before,
            "rank_after": ranks_after,
        }
    ).to_parquet(out / "ranks.parquet", index=False)
    rep = ~accept
    before = hit_ratios(params, ranks_before[rep], purchase[rep])
    after = hit_ratios(params, ranks_after[rep], purchase[rep])
    acc_before = hit_ratios(params, ranks_before[accept], purchase[accept])
    acc_after = hit_ratios(params, ranks_after[accept], purchase[accept])
    drop = acc_before.get("hr@50", 0.0) - acc_after.get("hr@50", 0.0)
    if not accept.any():  # too few held-out users to split: nothing may decide acceptance
        drop = float("inf")
    strict = int((pairs["winner_level"] > pairs["loser_level"]).sum()) if len(pairs) else 0
    users_of = np.array(meta["users"], object)
    result = AlignmentResult(
        day=day.isoformat(),
        before=dict(before),
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
        acceptance={
            "samples": int(accept.sum()),
            "users": int(len(set(users_of[accept]))),
            "before": acc_before,
            "after": acc_after,
        },
        report={
            "samples": int(rep.sum()),
            "purchase_samples": int((rep & purchase).sum()),
            "users": int(len(set(users_of[rep]))),
        },
        reward=asdict(reward),
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
            "sidflow.reward": str(result.reward.get("source")),
            "sidflow.aligned_from": str(run),
            "sidflow.run_folder": str(out),
        },
        curves={f"loss_{k}": curve_of(result.curve, k) for k in ("rft", "dpo")},
        metrics={
            **{f"before_{k}": v for k, v in result.before.items() if v is not None},
            **{f"after_{k}": v for k, v in result.after.items()},
            "hr50_drop": result.hr50_drop,
            "report_samples": result.report.get("samples", 0),
            "acceptance_samples": result.acceptance.get("samples", 0),
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
    ax.set(
        ylabel="hit ratio",
        title=f"retriever alignment, day {result.day} ({result.reward.get('source')} reward; "
        f"{result.report.get('samples')} report samples)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
