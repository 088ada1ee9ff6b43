"""Content Summary (unirec §3.4, eq. 7): hashed Cartesian pairs of decoded path tokens.

For decoding step t, every configured pair (field_a, field_b) whose two tokens are
already decoded (both positions < t) is hashed by M functions over global token
indices x, y (config of §4.1.1): H1 = x + y, H2 = x * y, H3 = p1 * x + p2 * y, each
mod S into ONE shared table E_hash (S, d_hash). Pairs available at a step are averaged
per hash function and the M lookups concatenated: c_t in R^{M * d_hash}.
S = floor((V_a * V_b)^{2/3}) (the paper's S = (prod V_i)^{2/(n+1)} with n = 2), taken
over the largest configured pair.
"""

from __future__ import annotations

import math

import torch
from torch import nn

P1, P2 = 1_000_003, 998_244_353  # primes for H3


def table_size(vocab_pairs: list[tuple[int, int]]) -> int:
    """S = floor((V_a * V_b)^(2/3)) for the largest pair (eq. 7's formula, n = 2)."""
    return max(math.floor((va * vb) ** (2.0 / 3.0)) for va, vb in vocab_pairs)


class ContentSummary(nn.Module):
    """c_t for every decoding step t from the tokens decoded before t."""

    def __init__(
        self, vocab_sizes: list[int], pairs: list[tuple[int, int]], n_hashes: int, d_hash: int
    ):
        super().__init__()
        if not pairs:
            raise ValueError("content summary needs at least one (field, field) pair")
        self.pairs = [tuple(sorted(p)) for p in pairs]  # path positions (a < b)
        self.m, self.d_hash = n_hashes, d_hash
        offsets = [0]
        for v in vocab_sizes[:-1]:
            offsets.append(offsets[-1] + v)
        self.register_buffer("offsets", torch.tensor(offsets), persistent=False)
        self.size = table_size([(vocab_sizes[a], vocab_sizes[b]) for a, b in self.pairs])
        self.table = nn.Embedding(self.size, d_hash)
        nn.init.normal_(self.table.weight, std=0.02)

    @property
    def d_out(self) -> int:
        """Width of c_t."""
        return self.m * self.d_hash

    def hashes(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Global token indices x, y (...,) -> table rows (..., M)."""
        h = [x + y, x * y, P1 * x + P2 * y][: self.m]
        return torch.stack(h, dim=-1) % self.size

    def forward(self, path: torch.Tensor, n_steps: int) -> torch.Tensor:
        """path (N, t') decoded tokens (t' >= n_steps - 1 or the prefix so far).

        Returns (N, n_steps, M * d_hash): row t summarises path[:, :t] (zeros when no
        configured pair is complete yet).
        """
        n = path.shape[0]
        glob = path + self.offsets[: path.shape[1]]  # (N, t') global token ids
        out = path.new_zeros((n, n_steps, self.m, self.d_hash), dtype=self.table.weight.dtype)
        count = path.new_zeros((n_steps,), dtype=self.table.weight.dtype)
        for a, b in self.pairs:
            first = b + 1  # pair (a, b) is known from step b + 1 on
            if first >= n_steps or b >= path.shape[1]:
                continue
            emb = self.table(self.hashes(glob[:, a], glob[:, b]))  # (N, M, d_hash)
            out[:, first:] += emb[:, None]
            count[first:] += 1
        out = out / count.clamp_min(1)[None, :, None, None]
        return out.flatten(2)  # (N, n_steps, M * d_hash)
