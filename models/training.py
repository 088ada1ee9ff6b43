"""Helpers every training loop shares: the device, the learning-rate schedule, the process
group under torchrun (NCCL on CUDA, gloo on CPU), DDP wrapping and bf16 autocast on CUDA."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def device_for_training() -> torch.device:
    """CUDA when present (then the local rank's GPU), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to `base`, then cosine decay to 10% of it."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def distributed() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend() -> str:
    """The process group backend: NCCL between GPUs, gloo on CPU."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed() -> tuple[int, int]:
    """Join torchrun's process group (from its environment) when started by torchrun with
    more than one process; (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend())
    return distributed()


def close_distributed() -> None:
    """Wait for every rank, then leave the process group (no-op outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def data_parallel(module: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """`module` under DistributedDataParallel when several processes train, else itself.

    Call the result (its forward) for the loss, so DDP averages the gradients over ranks;
    parameters a step does not use (e.g. ablations) are allowed."""
    if distributed()[1] == 1:
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module,
        device_ids=[dev.index] if dev.type == "cuda" else None,
        find_unused_parameters=True,
    )


def autocast(dev: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on CPU."""
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class WarmPlan:
    """Whether today's run starts from the previous run's weights, and why."""

    start: str  # "warm" | "cold"
    reason: str = ""
    source: str | None = None  # the previous run folder
    cold_day: str | None = None  # the chain's last cold start
    sid_kept: float | None = None  # share of old items whose SID is unchanged
    model: torch.nn.Module | None = field(default=None, repr=False)  # the previous weights
    previous: object = field(default=None, repr=False)  # its vocabularies / feature encoding
    report: dict[str, int] = field(default_factory=dict)  # rows copied / kept fresh

    def summary(self) -> dict:
        """JSON-friendly: what train.json and the asset's metadata show."""
        out = {
            "reason": self.reason,
            "from": self.source,
            "cold_day": self.cold_day,
            "sid_kept": self.sid_kept,
            "report": self.report,
        }
        return {k: v for k, v in out.items() if v not in (None, "", {})}


def cold(reason: str) -> WarmPlan:
    """A cold start, with its reason."""
    return WarmPlan("cold", reason)
