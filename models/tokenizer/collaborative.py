"""Collaborative item embeddings: a small SASRec-style next-item model over engagement sequences.

Self-attentive sequential recommendation (Kang & McAuley 2018): item + position
embeddings, a causal Transformer encoder, and next-item scores h_t . E_item (input and
output item embeddings shared). Its item table E_item is the collaborative view UNGER
quantises (unger §3.3: "a sequential recommendation model ... encodes the user's
historical sequence into collaborative embeddings"); the next-item loss is eq. 4.
Sequences are right-padded, so causal attention never sees padding before a real item.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = 0  # item row i is token i + 1


class SASRec(nn.Module):
    """Causal self-attention over item sequences; `item_embeddings()` is the collaborative view."""

    def __init__(
        self, n_items: int, dim: int, layers: int, heads: int, max_len: int, dropout: float
    ):
        super().__init__()
        self.n_items, self.dim, self.max_len = n_items, dim, max_len
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=PAD)
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.item.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item.weight[PAD].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (B, T) tokens (0 = pad) -> hidden states (B, T, dim)."""
        t = seq.shape[1]
        h = self.item(seq) * math.sqrt(self.dim) + self.pos(torch.arange(t, device=seq.device))
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=seq.device)  # (T, T)
        h = self.encoder(self.drop(h), mask=causal, is_causal=True)
        return self.norm(h)

    def next_item_loss(self, seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Full-softmax next-item cross-entropy (eq. 4) over real positions; target 0 = ignore."""
        real = target != PAD  # (B, T)
        h = self(seq)[real]  # (R, dim): scores only where there is a next item
        logits = h @ self.item.weight[1:].T  # (R, N)
        return F.cross_entropy(logits, target[real] - 1)

    def item_embeddings(self) -> torch.Tensor:
        """(N, dim) the learned item table (row i = item i)."""
        return self.item.weight[1:]


def training_windows(sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets (W, max_len) as tokens, from every sequence of length >= 2.

    A long sequence is cut into windows of max_len + 1 items (stride max_len) so every
    transition is trained once; short ones are right-padded with 0.
    """
    inputs, targets = [], []
    for seq in sequences:
        tokens = np.asarray(seq, dtype=np.int64) + 1
        for start in range(0, max(len(tokens) - 1, 0), max_len):
            win = tokens[start : start + max_len + 1]
            if len(win) < 2:
                continue
            x = np.zeros(max_len, np.int64)
            y = np.zeros(max_len, np.int64)
            x[: len(win) - 1] = win[:-1]
            y[: len(win) - 1] = win[1:]
            inputs.append(x)
            targets.append(y)
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)
