"""Train the DIG ranker and measure it: rank AUC, retrieval-path AUC per layer, the gap.

Batches keep the rows of a request together (requests are shuffled, not rows), so the
batch statistic u2t^(l)(u) of eq. 13 averages a user's items in the same SID bucket.
After each optimiser step the codebook vectors take an EMA step towards the batch
residuals (§3.2). Metrics follow DIG Table 4: AUC of the rank path (eq. 6) and of the
retrieval path at every layer (eq. 16, MLP_u2t at inference), the gap rank - recall(L),
and grouped AUC (mean per-user AUC weighted by the user's rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from tqdm import tqdm

from models.ranker.model import DIGRanker, dig_losses, prefix_keys
from models.training import device_for_training, lr_at
from sidflow.config import RankerParams

PARTS = ["rank", "recall", "commit", "sem", "u2t"]


@dataclass
class RankerTrainResult:
    """Loss curve (total and each part of eq. 8) and timing."""

    steps: int
    seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)  # {"step", "total", parts...}


def request_batches(
    request_key: torch.Tensor, batch_size: int, gen: torch.Generator
) -> list[torch.Tensor]:
    """Row indices in batches of ~batch_size that keep each request's rows together."""
    n_req = int(request_key.max()) + 1
    order = torch.randperm(n_req, generator=gen)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_req)
    rows = torch.argsort(rank[request_key], stable=True)  # rows grouped by shuffled request
    return list(rows.split(batch_size))


@torch.no_grad()
def fit_bucket_means(model: DIGRanker, data: dict[str, torch.Tensor]) -> None:
    """Ablation 3: per-layer table SID prefix -> mean c over the training rows."""
    codes = model.item_sids[data["item"]]
    for layer in range(model.cfg.n_layers):
        keys = prefix_keys(codes, layer, model.cfg.codebook_size)
        uniq, inv = torch.unique(keys, return_inverse=True)
        sums = torch.zeros(len(uniq), data["cross"].shape[1]).index_add_(0, inv, data["cross"])
        counts = torch.bincount(inv, minlength=len(uniq)).clamp(min=1)
        setattr(model, f"bucket_keys_{layer}", uniq)
        setattr(model, f"bucket_means_{layer}", sums / counts[:, None])


def train_ranker(
    model: DIGRanker, data: dict[str, torch.Tensor], rp: RankerParams, progress: bool = True
) -> RankerTrainResult:
    """Optimise eq. 8 on `data` (training rows) in place."""
    dev = device_for_training()
    torch.manual_seed(rp.seed)
    gen = torch.Generator().manual_seed(rp.seed)
    if model.cfg.u2t != "mlp":
        fit_bucket_means(model, data)
    model.to(dev)
    model.init_codebooks()
    n = len(data["label"])
    per_epoch = max(1, -(-n // rp.batch_size))
    total = rp.max_steps or max(rp.min_steps, int(rp.epochs * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=rp.lr, weight_decay=rp.weight_decay)
    result = RankerTrainResult(steps=total)
    t0, step, running = time.perf_counter(), 0, []
    bar = tqdm(total=total, desc="train ranker", disable=not progress)
    while step < total:
        for idx in request_batches(data["request_key"], rp.batch_size, gen):
            if step >= total:
                break
            if len(idx) < 2:  # BatchNorm needs two rows
                continue
            batch = {k: v[idx].to(dev) for k, v in data.items()}
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, min(100, total // 10), rp.lr)
            model.train()
            out = dig_losses(model, batch)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.ema_update(out.residuals, out.codes)
            running.append(
                {k: float(v.detach()) for k, v in {"total": out.total, **out.parts}.items()}
            )
            step += 1
            bar.update(1)
            if step % 20 == 0 or step == total:
                mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
                result.curve.append({"step": step, **mean})
                bar.set_postfix(loss=f"{mean['total']:.3f}")
                running = []
    bar.close()
    result.seconds = time.perf_counter() - t0
    model.cpu()
    return result


@torch.no_grad()
def predict(
    model: DIGRanker, data: dict[str, torch.Tensor], batch_size: int = 4096
) -> dict[str, np.ndarray]:
    """Click probabilities of the rank path and of the retrieval path per layer."""
    model.eval()
    out: dict[str, list] = {
        "rank": [],
        **{f"recall_l{i + 1}": [] for i in range(model.cfg.n_layers)},
    }
    n = len(data["label"])
    for s in range(0, n, batch_size):
        b = {k: v[s : s + batch_size] for k, v in data.items()}
        user = model.user_side(b["profile"], b["scene"], b["user_dense"], b["hist"])
        out["rank"].append(torch.sigmoid(model.rank_logits(user, b["item"], b["cross"])))
        recall, _ = model.recall_logits(user, model.item_sids[b["item"]])
        for i, lg in enumerate(recall):
            out[f"recall_l{i + 1}"].append(torch.sigmoid(lg))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (NaN when only one class is present)."""
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def grouped_auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """GAUC: per-group AUC weighted by group size, over groups with both classes."""
    order = np.argsort(groups, kind="stable")
    g, y, p = groups[order], y[order], p[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    num = den = 0.0
    for s, e in zip(starts, np.r_[starts[1:], len(g)], strict=True):
        pos = y[s:e].sum()
        if 0 < pos < e - s:
            num += roc_auc_score(y[s:e], p[s:e]) * (e - s)
            den += e - s
    return float(num / den) if den else float("nan")


def ranker_metrics(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    users: np.ndarray,
    purchase: np.ndarray | None = None,
) -> dict:
    """DIG Table 4 numbers plus GAUC: rank_auc, recall_auc_l*, auc_gap, gauc_*."""
    layers = sorted(k for k in scores if k.startswith("recall_l"))
    m = {"rank_auc": auc(y, scores["rank"])}
    for k in layers:
        m[f"{k.replace('recall_', 'recall_auc_')}"] = auc(y, scores[k])
    m["recall_auc"] = m[f"recall_auc_{layers[-1].removeprefix('recall_')}"]
    m["auc_gap"] = m["rank_auc"] - m["recall_auc"]  # DIG Table 4 (reported there as recall - rank)
    m["rank_gauc"] = grouped_auc(y, scores["rank"], users)
    m["recall_gauc"] = grouped_auc(y, scores[layers[-1]], users)
    if purchase is not None and purchase.any():
        m["rank_auc_purchase_vs_rest"] = auc(purchase.astype(int), scores["rank"])
    m["eval_rows"] = len(y)
    m["eval_positives"] = int(y.sum())
    return m


def plot_roc(y: np.ndarray, scores: dict[str, np.ndarray], path, title: str):  # noqa: ANN001, ANN201
    """ROC curves of the rank path and each retrieval-path layer -> PNG."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(y, p):.3f})", lw=2 if name == "rank" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_parts(result: RankerTrainResult, path, title: str):  # noqa: ANN001, ANN201
    """Each part of eq. 8 over training steps -> PNG."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    steps = [c["step"] for c in result.curve]
    for k in ["total", *PARTS]:
        ax.plot(steps, [c[k] for c in result.curve], label=k)
    ax.set(xlabel="step", ylabel="loss", title=title, yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
