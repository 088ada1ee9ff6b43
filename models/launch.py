"""torchrun for the training stages: `train.nproc_per_node > 1` trains in that many processes.

The stage (the Dagster asset's process, the CLI, DVC) writes what training needs to a hand-off
folder (`inputs/`: initial weights, the encoded training tensors, the settings), starts

    python -m torch.distributed.run --standalone --nproc_per_node N -m <trainer> --data inputs --out outputs

and reads back what rank 0 wrote (`outputs/`: the trained weights and `train.json`). Each rank
trains on its shard of every batch and DistributedDataParallel averages the gradients: NCCL
and one GPU per process on CUDA (bf16 autocast), gloo on CPU. The trainers are
`models.retriever.train`, `models.ranker.train` and `models.alignment.train`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from sidflow.config import PROJECT_ROOT


@dataclass(frozen=True)
class Handoff:
    """The folders between a stage and its torchrun processes."""

    folder: Path

    @property
    def inputs(self) -> Path:
        """What the stage writes for the trainer (`--data`)."""
        return self.folder / "inputs"

    @property
    def outputs(self) -> Path:
        """What rank 0 writes back (`--out`)."""
        return self.folder / "outputs"

    @classmethod
    def fresh(cls, folder: Path) -> Handoff:
        """Empty `inputs/` and `outputs/` under `folder` (a previous attempt's are removed)."""
        shutil.rmtree(folder, ignore_errors=True)
        hand = cls(Path(folder))
        hand.inputs.mkdir(parents=True)
        hand.outputs.mkdir(parents=True)
        return hand

    def remove(self) -> None:
        """Delete the hand-off (after the stage read the outputs)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def torchrun_command(module: str, hand: Handoff, nproc: int) -> list[str]:
    """The torchrun command line for `module`'s `main(--data, --out)`."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # one node; the rendezvous picks a free local port
        "--nproc_per_node",
        str(nproc),
        "-m",
        module,
        "--data",
        str(hand.inputs),
        "--out",
        str(hand.outputs),
        "--no-progress",
    ]


def torchrun(module: str, hand: Handoff, nproc: int, timeout_s: float | None = None) -> None:
    """Train with `nproc` processes; raises with the processes' last output when one fails."""
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if "OMP_NUM_THREADS" not in env and not torch.cuda.is_available():
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))  # share the cores
    done = subprocess.run(
        torchrun_command(module, hand, nproc),
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(
            f"torchrun {module} with {nproc} processes failed (exit {done.returncode}):\n{tail}"
        )


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """A dict of tensors as one safetensors file (tensors sharing memory are copied: the file
    format stores each tensor once)."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        t = t.contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    save_file(out, str(path))
    return path
