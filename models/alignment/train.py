"""The alignment training loop: RFT + DPO steps on the retriever (unirec §3.6, eq. 20).

Each step takes one RFT batch (engagements with their reward, eq. 24) and one DPO batch
(preference pairs, eq. 25-28) and minimises (lambda_RFT L_RFT + lambda_DPO L_DPO) /
(lambda_RFT + lambda_DPO); a frozen copy of the starting retriever is the DPO reference.
Under torchrun (`train.nproc_per_node > 1`, models/launch.py) every rank draws its own
batches of `batch_size / world` samples and DDP averages the gradients; bf16 autocast on CUDA:

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m models.alignment.train --data DIR --out DIR

trains a prepared folder (`save_prepared`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from models.alignment.dpo import dpo_loss
from models.alignment.rft import rft_loss
from models.launch import Handoff, save_tensors, torchrun
from models.retriever.model import UniRec
from models.retriever.train import load_checkpoint, save_checkpoint
from models.training import (
    autocast,
    close_distributed,
    data_parallel,
    device_for_training,
    distributed,
    init_distributed,
)
from sidflow.config import AlignmentParams

POLICY, RFT, DPO, PARAMS_FILE, CURVE = (
    "policy.safetensors",
    "rft.safetensors",
    "dpo.safetensors",
    "alignment_params.json",
    "curve.json",
)


class _Objective(nn.Module):
    """Eq. 20 as a module's forward, so DDP sees the loss computation (and syncs gradients)."""

    def __init__(self, policy: UniRec, reference: UniRec, ap: AlignmentParams):
        super().__init__()
        self.policy = policy
        self._reference = [reference]  # frozen, not a submodule: DDP leaves it alone
        self.ap = ap

    def forward(self, rft: dict | None, dpo: dict | None) -> tuple[torch.Tensor, ...]:
        ap, dev = self.ap, next(self.policy.parameters()).device
        loss_rft = loss_dpo = torch.zeros((), device=dev)
        if rft is not None:
            loss_rft = rft_loss(self.policy, rft, ap.rft_lambda, ap.clip)
        if dpo is not None:
            loss_dpo = dpo_loss(
                self.policy, self._reference[0], dpo, dpo["winner"], dpo["loser"], ap.beta
            )
        loss = (ap.lambda_rft * loss_rft + ap.lambda_dpo * loss_dpo) / (
            ap.lambda_rft + ap.lambda_dpo
        )  # eq. 20
        return loss, loss_rft, loss_dpo


def optimise(
    policy: UniRec, reference: UniRec, rft: dict, dpo: dict, ap: AlignmentParams, progress: bool
) -> tuple[int, list[dict]]:
    """The mixed objective (eq. 20): lambda_RFT L_RFT + lambda_DPO L_DPO over batches drawn
    from the RFT samples and the DPO pairs; returns (steps, loss curve of rank 0)."""
    rank, world = distributed()
    dev = device_for_training()
    policy.to(dev)
    reference.to(dev)
    net = data_parallel(_Objective(policy, reference, ap), dev)
    opt = torch.optim.AdamW(policy.parameters(), lr=ap.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(ap.seed + rank)  # each rank its own batches
    per_rank = max(1, ap.batch_size // world)
    curve = []
    n_rft = len(rft.get("target", []))
    steps = min(ap.max_steps, max(1, math.ceil(ap.epochs * n_rft / ap.batch_size)))
    for step in tqdm(range(steps), desc="align retriever", disable=not progress or rank != 0):
        policy.train()
        rft_batch = dpo_batch = None
        if n_rft:
            idx = torch.randint(n_rft, (per_rank,), generator=gen)
            rft_batch = {k: v[idx].to(dev) for k, v in rft.items()}
        if dpo:
            idx = torch.randint(len(dpo["winner"]), (per_rank,), generator=gen)
            dpo_batch = {k: v[idx].to(dev) for k, v in dpo.items()}
        with autocast(dev):
            loss, loss_rft, loss_dpo = net(rft_batch, dpo_batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        curve.append(
            {"step": step + 1, "rft": float(loss_rft.detach()), "dpo": float(loss_dpo.detach())}
        )
    policy.cpu().eval()
    return steps, curve


def save_prepared(folder: Path, policy: UniRec, rft: dict, dpo: dict, ap: AlignmentParams) -> Path:
    """What `python -m models.alignment.train --data folder` needs: the starting retriever
    (also the reference), the RFT samples, the DPO pairs and the settings."""
    save_checkpoint(policy, folder / POLICY)
    save_tensors(rft, folder / RFT)
    save_tensors(dpo, folder / DPO)
    (folder / PARAMS_FILE).write_text(ap.model_dump_json())
    return folder


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: align the prepared retriever; rank 0 writes it and the curve."""
    import sidflow  # noqa: F401  (telemetry settings)

    ap_cli = argparse.ArgumentParser(description=__doc__)
    ap_cli.add_argument("--data", required=True, help="folder written by save_prepared")
    ap_cli.add_argument("--out", required=True, help="output folder")
    ap_cli.add_argument("--no-progress", action="store_true")
    args = ap_cli.parse_args(argv)
    data_dir, out = Path(args.data), Path(args.out)
    rank, world = init_distributed()
    policy = load_checkpoint(data_dir / POLICY)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    rft, dpo = load_file(str(data_dir / RFT)), load_file(str(data_dir / DPO))
    ap = AlignmentParams.model_validate_json((data_dir / PARAMS_FILE).read_text())
    steps, curve = optimise(policy, reference, rft, dpo, ap, progress=not args.no_progress)
    if rank == 0:
        save_checkpoint(policy, out / POLICY)
        (out / CURVE).write_text(json.dumps({"steps": steps, "world_size": world, "curve": curve}))
    close_distributed()
    return 0


def optimise_distributed(
    policy: UniRec, rft: dict, dpo: dict, ap: AlignmentParams, nproc: int, scratch: Path
) -> tuple[int, list[dict]]:
    """`optimise` in `nproc` torchrun processes (models/launch.py): `policy` gets the aligned
    weights; the hand-off folder `scratch` is removed afterwards."""
    hand = Handoff.fresh(scratch)
    save_prepared(hand.inputs, policy, rft, dpo, ap)
    torchrun("models.alignment.train", hand, nproc)
    policy.load_state_dict(load_checkpoint(hand.outputs / POLICY).state_dict())
    done = json.loads((hand.outputs / CURVE).read_text())
    hand.remove()
    return done["steps"], done["curve"]


if __name__ == "__main__":
    raise SystemExit(main())
