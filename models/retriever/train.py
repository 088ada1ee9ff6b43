"""Training loop for the generative retriever (unirec §3.5.4): AdamW, warm-up + cosine decay,
gradient clipping, optional EMA weight averaging, CUDA + bf16 autocast when present else
CPU, DistributedDataParallel under `torchrun` (gloo on CPU, nccl on GPU), safetensors
checkpoints, tqdm, loss curve PNG.

    python -m torch.distributed.run --nproc_per_node 2 -m models.retriever.train --data DIR --out DIR

trains on a prepared folder (`save_prepared`): the model config, the item buffers and
the encoded training tensors, so the same code runs in one process or many.
`train_distributed` is what the stage calls when `train.nproc_per_node > 1` (models/launch.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from models.launch import Handoff, save_tensors, torchrun
from models.retriever.model import UniRec, UniRecConfig
from models.training import (
    autocast,
    close_distributed,
    device_for_training,
    distributed,
    init_distributed,
    lr_at,
)
from sidflow.atomic import replacing
from sidflow.config import RetrieverTrainParams


@dataclass
class TrainResult:
    """What a training run produced."""

    steps: int
    seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss)
    evals: list[tuple[int, dict]] = field(default_factory=list)  # (step, metrics)
    world_size: int = 1
    samples_seen: int = 0  # by rank 0 (each rank sees its shard of every batch)

    def to_json(self) -> dict:
        """What `main` writes to train.json (and `train_distributed` reads back)."""
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "world_size": self.world_size,
            "samples_seen_rank0": self.samples_seen,
            "losses": self.losses,
        }

    @classmethod
    def from_json(cls, raw: dict) -> TrainResult:
        """Inverse of `to_json`."""
        return cls(
            steps=raw["steps"],
            seconds=raw["seconds"],
            losses=[(int(s), float(v)) for s, v in raw["losses"]],
            world_size=raw["world_size"],
            samples_seen=raw["samples_seen_rank0"],
        )


def train(
    model: torch.nn.Module,
    data: dict[str, torch.Tensor],
    params: RetrieverTrainParams,
    *,
    progress: bool = True,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    eval_every: int = 0,
    time_budget_s: float | None = None,
    patience: int = 0,
) -> TrainResult:
    """Train `model` (forward(batch) -> loss) in place on `data` (leading sample axis).

    Samples whose target is -1 (item without a path) are dropped. Under torchrun each
    rank takes its own shard of every epoch's permutation and DDP averages gradients.
    `eval_fn(model)` runs every `eval_every` steps (rank 0) to follow validation metrics.
    With `time_budget_s`, the step count is cut after 10 steps to what fits the budget
    (so warm-up and decay still complete). With `params.ema_decay`, an exponential moving
    average of the weights is kept after every step (torch's AveragedModel); `eval_fn` sees
    the averaged model and `model` holds the averaged weights when training ends.
    With `patience` > 0, training stops once the first metric `eval_fn` returns has not
    improved for `patience` evaluations in a row (early stopping on validation, as RecBole's
    `stopping_step`); `result.steps` is then the step it stopped at.
    """
    rank, world = distributed()
    dev = device_for_training()
    if params.num_threads and dev.type == "cpu":
        torch.set_num_threads(params.num_threads)
    torch.manual_seed(params.seed)
    if "target" in data:
        keep = (data["target"] >= 0).all(dim=1)
        data = {k: v[keep] for k, v in data.items()}
    n = next(iter(data.values())).shape[0]
    if n == 0:
        raise ValueError("no training sample has a target item with a decoding path")
    model.to(dev)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    per_rank = max(1, params.batch_size // world)
    steps_per_epoch = max(1, n // (per_rank * world))
    total = params.max_steps or max(1, int(params.epochs * steps_per_epoch))
    decay = [p for nm, p in model.named_parameters() if p.ndim >= 2 and "emb" not in nm]
    no_decay = [p for nm, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in nm)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": params.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=params.lr,
        betas=(0.9, 0.98),
    )
    ema = None
    if params.ema_decay is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.ema_decay))
    gen = torch.Generator().manual_seed(params.seed)
    result = TrainResult(steps=total, seconds=0.0, world_size=world)
    t0, step, running = time.perf_counter(), 0, []
    best_metric, stale = -math.inf, 0
    bar = tqdm(total=total, desc="train retriever", disable=not progress or rank != 0)
    while step < total:
        perm = torch.randperm(n, generator=gen)  # same on every rank (same seed)
        for start in range(0, steps_per_epoch * per_rank * world, per_rank * world):
            if step >= total:
                break
            idx = perm[start + rank * per_rank : start + (rank + 1) * per_rank]
            batch = {k: v[idx].to(dev, non_blocking=True) for k, v in data.items()}
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, params.warmup_steps, params.lr)
            net.train()
            with autocast(dev):
                loss = net(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            running.append(float(loss.detach()))
            result.samples_seen += len(idx)
            step += 1
            bar.update(1)
            if time_budget_s and step == 10 and world == 1:
                per_step = (time.perf_counter() - t0) / step
                fits = int(time_budget_s / per_step)
                if fits < total:
                    total = max(step + 1, fits)
                    result.steps = total
                    bar.total = total
            if step % 20 == 0 or step == total:
                result.losses.append((step, sum(running) / len(running)))
                bar.set_postfix(loss=f"{result.losses[-1][1]:.3f}")
                running = []
            if eval_fn and eval_every and rank == 0 and (step % eval_every == 0 or step == total):
                metrics = eval_fn(model if ema is None else ema.module)
                result.evals.append((step, metrics))
                bar.write(f"step {step}: {json.dumps(metrics)}", file=sys.stderr)
                watched = float(next(iter(metrics.values()))) if metrics else -math.inf
                best_metric, stale = (
                    (watched, 0) if watched > best_metric else (best_metric, stale + 1)
                )
                if patience and stale >= patience:
                    result.steps = total = step  # ends both loops
                    bar.write(f"stopped at step {step}: {patience} evaluations without gain")
    bar.close()
    if ema is not None:
        with torch.no_grad():
            for mine, averaged in zip(model.parameters(), ema.module.parameters(), strict=True):
                mine.copy_(averaged)
    result.seconds = time.perf_counter() - t0
    return result


def save_checkpoint(model: UniRec, path: Path, extra: dict | None = None) -> Path:
    """Weights and buffers as safetensors; the config (and `extra`) in its metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": model.cfg.to_json(), "extra": json.dumps(extra or {})}
    with replacing(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> UniRec:
    """Rebuild a UniRec from a safetensors checkpoint written by `save_checkpoint`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a retriever checkpoint (no config in its metadata)")
    state = load_file(str(path), device=str(device))
    cfg = UniRecConfig.from_json(meta["config"])
    # each path's item id: kept by the tied node vectors and by the item head
    path_items = state.get("nodes.item_ids", state.get("item_head.item_ids"))
    model = UniRec(
        cfg,
        state["inputs.item_fields"],
        state["inputs.item_sids"],
        state.get("nodes.codes"),
        path_items,
    )
    model.load_state_dict(state)
    return model.to(device).eval()


def save_prepared(
    folder: Path, model: UniRec, data: dict[str, torch.Tensor], params: RetrieverTrainParams
) -> Path:
    """Write what `python -m models.retriever.train --data folder` needs: init weights + tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, folder / "init.safetensors")
    save_tensors(data, folder / "train.safetensors")
    (folder / "train_params.json").write_text(params.model_dump_json())
    return folder


def plot_losses(result: TrainResult, path: Path, title: str = "retriever training loss") -> Path:
    """Loss curve PNG (and validation metrics when tracked)."""
    import matplotlib  # a heavy import, only where a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if result.losses:
        s, v = zip(*result.losses, strict=True)
        ax.plot(s, v, label="train loss (eq. 19)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if result.evals:
        ax2 = ax.twinx()
        keys = [k for k in result.evals[-1][1] if k.startswith(("recall@10", "hr@50"))]
        for k in keys:
            ax2.plot([s for s, _ in result.evals], [m[k] for _, m in result.evals], "--", label=k)
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: train the prepared folder, rank 0 writes the checkpoint."""
    import sidflow  # noqa: F401  (telemetry settings)

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="folder written by save_prepared")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    data_dir, out = Path(args.data), Path(args.out)
    rank, _ = init_distributed()
    params = RetrieverTrainParams.model_validate_json((data_dir / "train_params.json").read_text())
    model = load_checkpoint(data_dir / "init.safetensors")
    data = load_file(str(data_dir / "train.safetensors"))
    result = train(model, data, params, progress=not args.no_progress)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, out / "model.safetensors", {"steps": result.steps})
        plot_losses(result, out / "loss.png")
        (out / "train.json").write_text(json.dumps(result.to_json()))
    close_distributed()
    return 0


def train_distributed(
    model: UniRec,
    data: dict[str, torch.Tensor],
    params: RetrieverTrainParams,
    nproc: int,
    scratch: Path,
) -> TrainResult:
    """`train` in `nproc` torchrun processes (models/launch.py): `model` gets the trained
    weights; the hand-off folder `scratch` is removed afterwards."""
    hand = Handoff.fresh(scratch)
    save_prepared(hand.inputs, model, data, params)
    torchrun("models.retriever.train", hand, nproc)
    trained = load_checkpoint(hand.outputs / "model.safetensors")
    model.load_state_dict(trained.state_dict())
    result = TrainResult.from_json(json.loads((hand.outputs / "train.json").read_text()))
    hand.remove()
    return result


if __name__ == "__main__":
    raise SystemExit(main())
