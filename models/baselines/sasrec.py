"""SASRec (Kang & McAuley 2018) over item ids, trained with BCE or full-softmax CE.

BCE samples one random negative per position (the original paper); CE scores every
item (as RecBole's `loss_type=CE`). They differ a lot on Beauty (RecBole #1290), so
both are baselines. Training uses each user's sequence: inputs s_1..s_{n-1}, targets
s_2..s_n at every position. Scoring is full-catalogue: h_last . E_items^T.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class SASRec(nn.Module):
    """Causal transformer over the item sequence; item embeddings shared with the output."""

    def __init__(
        self,
        n_items: int,
        max_len: int = 20,
        d: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.3,
        loss: Literal["bce", "ce"] = "ce",
    ):
        super().__init__()
        self.n_items, self.loss_type = n_items, loss
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0 = padding
        self.pos = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, n_heads, 4 * d, dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def states(self, seq: torch.Tensor) -> torch.Tensor:
        """seq (B, T) item rows, left-padded with 0 -> hidden states (B, T, d)."""
        t = seq.shape[1]
        x = self.item(seq) * self.item.embedding_dim**0.5 + self.pos.weight[-t:]
        causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).triu(1)
        live = (seq > 0).unsqueeze(-1).to(x.dtype)  # padded positions are zeroed, as in SASRec
        h = self.encoder(self.drop(x) * live, mask=causal)
        return self.norm(h) * live

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss over every non-padded position: batch seq (B, T), pos (B, T)."""
        h = self.states(batch["seq"])  # (B, T, d)
        pos = batch["pos"]
        live = pos > 0
        if self.loss_type == "ce":
            logits = h[live] @ self.item.weight.T  # (n, N+1)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, pos[live])
        neg = torch.randint(1, self.n_items + 1, pos.shape, device=pos.device)
        hp = (h * self.item(pos)).sum(-1)[live]
        hn = (h * self.item(neg)).sum(-1)[live]
        return F.binary_cross_entropy_with_logits(
            torch.cat([hp, hn]), torch.cat([torch.ones_like(hp), torch.zeros_like(hn)])
        )

    def item_scores(self, hist: torch.Tensor) -> torch.Tensor:
        """hist (b, T) item rows -> (b, N_items + 1) full-catalogue scores of the next item,
        h_last . E_items^T, with the padding row 0 at -inf."""
        h = self.states(hist)[:, -1]  # (b, d)
        scores = h @ self.item.weight.T
        scores[:, 0] = float("-inf")
        return scores

    @torch.no_grad()
    def rank(self, hist: torch.Tensor, top_n: int, batch_size: int = 512) -> np.ndarray:
        """hist (n, T) item rows -> top_n item rows per sample (full catalogue)."""
        self.eval()
        out = []
        for s in range(0, hist.shape[0], batch_size):
            scores = self.item_scores(hist[s : s + batch_size])
            out.append(scores.topk(top_n, dim=1).indices.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, top_n), np.int64)

    @torch.no_grad()
    def candidate_logprobs(
        self, hist: torch.Tensor, items: np.ndarray, batch_size: int = 512
    ) -> np.ndarray:
        """hist (n, T) item rows, items (n, N) item rows (-1 = none) -> (n, N) log-softmax of
        the full-catalogue scores at those items, -inf where there is no item."""
        self.eval()
        out = np.full(items.shape, -np.inf, dtype=np.float32)
        for s in range(0, hist.shape[0], batch_size):
            logp = self.item_scores(hist[s : s + batch_size]).log_softmax(dim=1).cpu().numpy()
            rows = items[s : s + batch_size]
            picked = np.take_along_axis(logp, np.maximum(rows, 0), axis=1)
            out[s : s + batch_size] = np.where(rows > 0, picked, -np.inf)
        return out


def sequences(hist: np.ndarray, target: np.ndarray) -> dict[str, torch.Tensor]:
    """Training tensors from each user's longest training sample: seq = history,
    pos = history shifted left by one with the target appended (both (n, T))."""
    hist = np.asarray(hist)
    seq = hist.copy()
    pos = np.concatenate([hist[:, 1:], np.asarray(target)[:, None]], axis=1)
    pos = np.where(seq > 0, pos, 0)
    return {"seq": torch.from_numpy(seq), "pos": torch.from_numpy(pos)}
