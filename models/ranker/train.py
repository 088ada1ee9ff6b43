"""Train the DIG ranker and measure it: rank AUC, retrieval-path AUC per layer, the gap.

Batches keep the rows of a request together (requests are shuffled, not rows), so the
batch statistic u2t^(l)(u) of eq. 13 averages a user's items in the same SID bucket.
After each optimiser step the codebook vectors take an EMA step towards the batch
residuals (§3.2). With `ranker.sid: learned`, after the first `sid_warmup` share of the steps
(on the SID table's codes, so the encoder settles near the codebooks first) every step starts
by re-assigning the catalogue's codes by argmin against the codebooks (eq. 2-3,
`DIGRanker.reassign`); the curve logs the collision rate (items sharing a full code) and the
share of items whose code moved since the previous step. Under torchrun (`train.nproc_per_node > 1`, models/launch.py) each rank
takes one of every `world` consecutive request batches (of `batch_size / world` rows), DDP
averages the gradients and the EMA step averages over the ranks' batches:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m models.ranker.train --data DIR --out DIR

trains a prepared folder (`save_prepared`). Metrics follow DIG Table 4: AUC of the rank path (eq. 6) and of the
retrieval path at every layer (eq. 16, MLP_u2t at inference), the gap rank - recall(L),
and grouped AUC (mean per-user AUC weighted by the user's rows).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn
from tqdm import tqdm

from models.launch import Handoff, save_tensors, torchrun
from models.ranker.checkpoint import load_ranker, save_ranker
from models.ranker.data import RankerEncoding
from models.ranker.model import DIGRanker, collision_share, dig_losses, prefix_keys
from models.training import (
    autocast,
    close_distributed,
    data_parallel,
    device_for_training,
    distributed,
    init_distributed,
    lr_at,
)
from sidflow.config import RankerParams

PARTS = ["rank", "objectives", "recall", "commit", "sem", "u2t"]


@dataclass
class RankerTrainResult:
    """Loss curve (total and each part of eq. 8, collision rate of the codes) and timing."""

    steps: int
    seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)  # {"step", "total", parts..., "collision"}
    world_size: int = 1  # training processes
    sid: str = "fixed"  # fixed | learned
    collision_start: float = 0.0  # collision rate of the table's codes (before training)
    collision_final: float = 0.0  # ... of the codes the ranker keeps (learned: re-assigned)
    moved_from_table: float = 0.0  # share of items whose final code differs from the table's


class _Objective(nn.Module):
    """Eq. 8 as a module's forward, so DDP sees the loss computation (and syncs gradients)."""

    def __init__(self, model: DIGRanker):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple:
        out = dig_losses(self.model, batch)
        return out.total, out.parts, out.residuals, out.codes


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
    """Ablation 3: per-layer table SID prefix -> mean c over the training rows (the model's
    current codes: learned SIDs refit it as the codes move)."""
    dev = model.item_sids.device
    codes = model.item_sids.cpu()[data["item"]]
    for layer in range(model.cfg.n_layers):
        keys = prefix_keys(codes, layer, model.cfg.codebook_size)
        uniq, inv = torch.unique(keys, return_inverse=True)
        sums = torch.zeros(len(uniq), data["cross"].shape[1]).index_add_(0, inv, data["cross"])
        counts = torch.bincount(inv, minlength=len(uniq)).clamp(min=1)
        setattr(model, f"bucket_keys_{layer}", uniq.to(dev))
        setattr(model, f"bucket_means_{layer}", (sums / counts[:, None]).to(dev))


def train_ranker(
    model: DIGRanker, data: dict[str, torch.Tensor], rp: RankerParams, progress: bool = True
) -> RankerTrainResult:
    """Optimise eq. 8 on `data` (training rows) in place (under torchrun: this rank's shard
    of every step's batches; `batch_size` is the rows of a step over all ranks)."""
    rank, world = distributed()
    dev = device_for_training()
    torch.manual_seed(rp.seed)
    gen = torch.Generator().manual_seed(rp.seed)  # the same batches on every rank
    if model.cfg.u2t != "mlp":
        fit_bucket_means(model, data)
    model.to(dev)
    model.init_codebooks()
    table = model.item_sids.clone()
    learned = model.cfg.sid == "learned"
    collision = collision_share(table[1:])
    net = data_parallel(_Objective(model), dev)
    n = len(data["label"])
    per_epoch = max(1, -(-n // rp.batch_size))
    total = rp.max_steps or max(rp.min_steps, int(rp.epochs * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=rp.lr, weight_decay=rp.weight_decay)
    result = RankerTrainResult(
        steps=total, world_size=world, sid=model.cfg.sid, collision_start=collision
    )
    first_reassign = int(rp.sid_warmup * total) if learned else total + 1
    t0, step, running = time.perf_counter(), 0, []
    bar = tqdm(total=total, desc="train ranker", disable=not progress or rank != 0)
    while step < total:
        batches = request_batches(data["request_key"], max(2, rp.batch_size // world), gen)
        if all(min(len(b) for b in batches[f : f + world]) < 2 for f in range(len(batches))):
            raise ValueError(f"no step of {world} request batches with two rows each")
        for first in range(0, len(batches) - world + 1, world):
            group = batches[first : first + world]  # one batch per rank
            if step >= total:
                break
            if min(len(b) for b in group) < 2:  # BatchNorm needs two rows (on every rank)
                continue
            moved, plain = 0.0, collision
            if step >= first_reassign:  # eq. 2-3 against the EMA codebooks
                stats = model.reassign()
                collision, moved = stats["collision"], stats["moved"]
                plain = stats["collision_argmin"]
                if model.cfg.u2t != "mlp" and step % 20 == 0:
                    fit_bucket_means(model, data)
            batch = {k: v[group[rank]].to(dev) for k, v in data.items()}
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, min(100, total // 10), rp.lr)
            model.train()
            with autocast(dev):
                loss, parts, residuals, codes = net(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.ema_update(residuals, codes)
            running.append({k: float(v.detach()) for k, v in {"total": loss, **parts}.items()})
            running[-1] |= {"collision": collision, "collision_argmin": plain, "moved": moved}
            step += 1
            bar.update(1)
            if step % 20 == 0 or step == total:
                mean = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
                result.curve.append({"step": step, **mean})
                bar.set_postfix(loss=f"{mean['total']:.3f}")
                running = []
    bar.close()
    if learned and first_reassign <= total:  # the codes the last step's weights give
        model.reassign()
        if model.cfg.u2t != "mlp":
            fit_bucket_means(model, data)
    result.collision_final = collision_share(model.item_sids[1:])
    result.moved_from_table = float((model.item_sids[1:] != table[1:]).any(1).float().mean())
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


@torch.no_grad()
def predict_tasks(
    model: DIGRanker, data: dict[str, torch.Tensor], batch_size: int = 4096
) -> np.ndarray:
    """Every objective's probability on the rank path: (n, len(model.cfg.tasks))."""
    model.eval()
    out = []
    for s in range(0, len(data["item"]), batch_size):
        b = {k: v[s : s + batch_size] for k, v in data.items()}
        user = model.user_side(b["profile"], b["scene"], b["user_dense"], b["hist"])
        out.append(torch.sigmoid(model.rank_task_logits(user, b["item"], b["cross"])))
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.cfg.tasks)), np.float32)


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


TRAIN_DATA, PARAMS_FILE, RESULT_FILE = "train.safetensors", "ranker_params.json", "train.json"


def save_prepared(
    folder: Path,
    model: DIGRanker,
    enc: RankerEncoding,
    history_len: int,
    data: dict[str, torch.Tensor],
    rp: RankerParams,
) -> Path:
    """What `python -m models.ranker.train --data folder` needs: the initial ranker (weights +
    config.json), the encoded training rows and the settings."""
    save_ranker(model, enc, history_len, folder)
    save_tensors(data, folder / TRAIN_DATA)
    (folder / PARAMS_FILE).write_text(rp.model_dump_json())
    return folder


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: train the prepared folder; rank 0 writes the ranker and train.json."""
    import sidflow  # noqa: F401  (telemetry settings)

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="folder written by save_prepared")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    data_dir, out = Path(args.data), Path(args.out)
    rank, _ = init_distributed()
    model, enc, raw = load_ranker(data_dir)
    data = load_file(str(data_dir / TRAIN_DATA))
    rp = RankerParams.model_validate_json((data_dir / PARAMS_FILE).read_text())
    result = train_ranker(model, data, rp, progress=not args.no_progress)
    if rank == 0:
        extra = {k: v for k, v in raw.items() if k not in ("model", "encoding", "history_len")}
        save_ranker(model, enc, raw["history_len"], out, extra)
        (out / RESULT_FILE).write_text(json.dumps(asdict(result)))
    close_distributed()
    return 0


def train_ranker_distributed(
    model: DIGRanker,
    enc: RankerEncoding,
    history_len: int,
    data: dict[str, torch.Tensor],
    rp: RankerParams,
    nproc: int,
    scratch: Path,
) -> tuple[DIGRanker, RankerTrainResult]:
    """`train_ranker` in `nproc` torchrun processes (models/launch.py): the trained ranker and
    the result; the hand-off folder `scratch` is removed afterwards."""
    hand = Handoff.fresh(scratch)
    save_prepared(hand.inputs, model, enc, history_len, data, rp)
    torchrun("models.ranker.train", hand, nproc)
    trained, _, _ = load_ranker(hand.outputs)
    result = RankerTrainResult(**json.loads((hand.outputs / RESULT_FILE).read_text()))
    hand.remove()
    return trained, result


if __name__ == "__main__":
    raise SystemExit(main())
