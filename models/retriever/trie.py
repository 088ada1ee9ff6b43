"""Prefix trie of valid decoding paths, stored as tensors for batched constrained decoding.

Depth t holds one node per distinct path prefix of length t (the root is node 0 at
depth 0). The edges leaving depth t are kept as sorted keys `node * V_t + token`, so
the allowed tokens of any batch of nodes are found with one `torch.searchsorted`
(memory O(items), whatever the vocabulary size). Leaves (depth P) map to items.
"""

from __future__ import annotations

import numpy as np
import torch


class PathTrie:
    """Valid (attributes, SID, dedup) paths of the catalogue as searchable tensors."""

    def __init__(self, codes: np.ndarray, vocab_sizes: list[int]):
        codes = np.asarray(codes, dtype=np.int64)  # (N, P)
        n, p = codes.shape
        if p != len(vocab_sizes):
            raise ValueError(f"codes have {p} positions but {len(vocab_sizes)} vocab sizes")
        self.vocab_sizes = list(vocab_sizes)
        self.n_steps = p
        # per depth t: (E_t,) sorted keys node*V_t+token; the child node id at depth t+1
        # of edge e is e itself (np.unique numbers the distinct prefixes in key order)
        self.edge_keys: list[torch.Tensor] = []
        node = np.zeros(n, dtype=np.int64)  # node of each item's prefix at the current depth
        for t in range(p):
            v = vocab_sizes[t]
            if codes[:, t].max() >= v or codes[:, t].min() < 0:
                raise ValueError(f"path position {t} has a code outside [0, {v})")
            key = node * v + codes[:, t]
            uniq, child = np.unique(key, return_inverse=True)  # child node ids at depth t+1
            self.edge_keys.append(torch.from_numpy(uniq))
            node = child.reshape(-1)
        if len(np.unique(node)) != n:
            raise ValueError("two items share one full path; the trie needs unique leaves")
        leaf_item = np.empty(n, dtype=np.int64)
        leaf_item[node] = np.arange(n)
        self.leaf_item = torch.from_numpy(leaf_item)  # (N,) leaf node -> item row

    def step(self, t: int, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Allowed next tokens of `nodes` (any shape S) at depth t.

        Returns (allowed (S, V_t) bool, child (S, V_t) long: next node, -1 where not allowed).
        """
        v = self.vocab_sizes[t]
        keys = self.edge_keys[t]
        query = nodes.unsqueeze(-1) * v + torch.arange(v, device=nodes.device)  # (S, V_t)
        pos = torch.searchsorted(keys, query).clamp_max(len(keys) - 1)
        allowed = (keys[pos] == query) & (nodes.unsqueeze(-1) >= 0)
        return allowed, torch.where(allowed, pos, torch.full_like(pos, -1))

    def to(self, device: torch.device | str) -> PathTrie:
        """Move the tensors to `device` (in place); returns self."""
        self.edge_keys = [k.to(device) for k in self.edge_keys]
        self.leaf_item = self.leaf_item.to(device)
        return self
