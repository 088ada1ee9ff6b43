"""UNGER intra-modality knowledge distillation (IKD, unger §3.4.3) for the retriever.

Quantising the stage-1 integrated embeddings into SIDs loses information (unger §3.3.5); IKD
gives it back to the generator as a training signal:

    decoder input  [BOS, e(a_1), .., e(s_{L-2}), z]        z: a learnable summary token
    h_z            final-layer output at z (B, d)          (causal: it reads every path token
                                                            before it, nothing reads it)
    u = W h_z      projected to the integrated width (B, D_int)
    L_IKD = -log exp(sim(u, e_i+) / tau) / sum_j exp(sim(u, e_j) / tau)           (eq. 11)
    L     = L_GR + lambda * L_IKD                                                 (eq. 12)

sim is the cosine; e_i+ is the target item's integrated embedding, the vector the SID stage
quantised (the SID version's `embeddings.safetensors`: fused = normalise(c + MAL(s)) by
default, unger §3.3, models/tokenizer/fusion.py); the negatives e_j are the other distinct
target items of the batch ("global" contrast over in-batch items, one column per item so a
repeated target is never its own negative). The summary token sits after every real
position, so the generative logits and beam search are those of the model without it;
inference never computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

EMBEDDINGS_FILE = "embeddings.safetensors"  # written by the SID stage (models/tokenizer/stage.py)


class SummaryToken(nn.Module):
    """The learnable token z appended to the decoder input and the projection of its output."""

    def __init__(self, d_model: int, d_integrated: int):
        super().__init__()
        self.token = nn.Parameter(torch.randn(d_model) * 0.02)  # z (d,)
        self.proj = nn.Linear(d_model, d_integrated)  # W: (d,) -> (D_int,)

    def input(self, b: int, w: int) -> torch.Tensor:
        """z as a decoder input position (B, W, 1, d)."""
        return self.token.view(1, 1, 1, -1).expand(b, w, 1, -1)


def ikd_loss(
    u: torch.Tensor, integrated: torch.Tensor, item_row: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Eq. 11 averaged over the batch.

    u (B, D) projected summary states, integrated (B, D) each sample's target integrated
    embedding, item_row (B,) the target's catalogue row (identifies repeated targets).
    """
    rows, inverse = torch.unique(item_row, return_inverse=True)  # (U,), (B,)
    first = torch.full_like(rows, len(item_row)).scatter_reduce(
        0, inverse, torch.arange(len(item_row), device=u.device), reduce="amin"
    )  # (U,) a sample of each distinct target
    keys = F.normalize(integrated[first].float(), dim=-1)  # (U, D)
    logits = F.normalize(u.float(), dim=-1) @ keys.T / temperature  # (B, U)
    return F.cross_entropy(logits, inverse)


def load_integrated(folder: Path | str) -> pd.DataFrame:
    """The SID version's item vectors, the integrated embeddings of unger §3.3: a frame (N, D)
    float32 indexed by item_id. `folder` is a SID version folder or its `artefacts/` (where
    `sid_table.parquet` is)."""
    base = Path(folder)
    for cand in (base, base / "artefacts"):
        if (cand / EMBEDDINGS_FILE).exists() and (cand / "sid_table.parquet").exists():
            with safe_open(str(cand / EMBEDDINGS_FILE), framework="numpy") as f:
                vectors = f.get_tensor("vectors").astype(np.float32)  # rows follow the table
            ids = pd.read_parquet(cand / "sid_table.parquet", columns=["item_id"])["item_id"]
            return pd.DataFrame(vectors, index=ids.to_numpy())
    raise FileNotFoundError(f"no {EMBEDDINGS_FILE} beside a sid_table.parquet under {base}")


def integrated_targets(table: np.ndarray, item_row: torch.Tensor) -> torch.Tensor:
    """Each sample's target integrated embedding: table (N_paths, D) by item_row (n,) -> (n, D)
    (zeros where the sample has no target path; those samples are not trained on)."""
    t = torch.from_numpy(np.nan_to_num(table, nan=0.0))
    return t[item_row.clamp(min=0)]
