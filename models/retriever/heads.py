"""Hierarchical rank heads (unirec §3.5.3, eq. 18): one head per decoding step.

Head t reads x_t = [q_t, e_prefix (one embedding per token decoded before t), c_t, h_agg],
re-weights those fields with SENet (Hu et al. 2018), mixes them with a serial MaskNet
(Wang et al. 2021, instance-guided masks) and outputs logits over step t's vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn


class SENet(nn.Module):
    """Squeeze (mean of each field) -> excitation MLP -> per-field weights in (0, 2)."""

    def __init__(self, n_fields: int):
        super().__init__()
        hidden = max(2, n_fields)
        self.mlp = nn.Sequential(
            nn.Linear(n_fields, hidden), nn.ReLU(), nn.Linear(hidden, n_fields)
        )

    def forward(self, fields: list[torch.Tensor]) -> torch.Tensor:
        """fields: F tensors (N, d_f) -> (N, sum d_f) re-weighted and concatenated."""
        z = torch.stack([f.mean(-1) for f in fields], dim=-1)  # (N, F)
        a = 2 * torch.sigmoid(self.mlp(z))  # (N, F), 1 at init-ish
        return torch.cat([f * a[:, i : i + 1] for i, f in enumerate(fields)], dim=-1)


class MaskBlock(nn.Module):
    """h' = ReLU(LN(W_o (LN(W_h h) * mask(x)))) with the instance-guided mask from x."""

    def __init__(self, d_x: int, d_in: int, d_out: int):
        super().__init__()
        self.mask = nn.Sequential(nn.Linear(d_x, d_out), nn.ReLU(), nn.Linear(d_out, d_out))
        self.hid = nn.Sequential(nn.Linear(d_in, d_out, bias=False), nn.LayerNorm(d_out))
        self.out = nn.Sequential(
            nn.Linear(d_out, d_out, bias=False), nn.LayerNorm(d_out), nn.ReLU()
        )

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (N, d_x) the guide, h (N, d_in) -> (N, d_out)."""
        return self.out(self.hid(h) * self.mask(x))


class RankHead(nn.Module):
    """g^(t): SENet + serial MaskNet over [q_t, e_prefix, c_t, h_agg] -> logits (N, V_t)."""

    def __init__(
        self, field_dims: list[int], d_hidden: int, n_blocks: int, vocab: int, dropout: float
    ):
        super().__init__()
        d_x = sum(field_dims)
        self.se = SENet(len(field_dims))
        self.blocks = nn.ModuleList(
            MaskBlock(d_x, d_x if i == 0 else d_hidden, d_hidden) for i in range(n_blocks)
        )
        self.drop = nn.Dropout(dropout)
        self.logits = nn.Linear(d_hidden, vocab)

    def hidden(self, fields: list[torch.Tensor]) -> torch.Tensor:
        """fields: tensors (N, d_f) in the order given at construction -> last layer (N, d)."""
        x = self.se(fields)  # (N, d_x)
        h = x
        for block in self.blocks:
            h = block(x, h)
        return self.drop(h)

    def forward(self, fields: list[torch.Tensor]) -> torch.Tensor:
        """fields -> logits (N, V_t)."""
        return self.logits(self.hidden(fields))
