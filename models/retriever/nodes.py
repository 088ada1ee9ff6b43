"""Trie-node outputs of the rank heads: per-edge output embeddings and the softmax over a
node's children.

A SID token's meaning depends on its prefix: under capacity-constrained codes, code b at step
s1 is a different item under every s0 parent, yet a rank head's output layer (eq. 18) keeps
one vector per token for all parents. UniRec's Content Summary (§3.4, eq. 7) adds such
prefix-token combinations on the input side; this module adds them on the output side: every
edge of the catalogue's path trie (a prefix plus one next token) gets its own output vector
and bias, so

    logit(v | prefix) = g_t(x_t)[v] + <P_t h_t, N_t[edge(prefix, v)]> + b_t[edge(prefix, v)]

where h_t is the rank head's last hidden layer. The trie has one edge per distinct path
prefix (about 2-3 per item over all steps), so the tables grow with the catalogue, not with
V_t^t. With `trie_softmax`, step t's softmax runs over the node's children only, the
factorisation p(item) = prod_t p(child | node) that trie-constrained beam search decodes.

Shapes: R rows (requests x beams), V_t step t's vocabulary, E_t edges leaving depth t,
C children of the rows' nodes in all (ragged), d_node the edge-vector width.
"""

from __future__ import annotations

import torch
from torch import nn


class PathNodes(nn.Module):
    """The catalogue's path trie as buffers, with optional per-edge output vectors."""

    def __init__(
        self,
        codes: torch.Tensor,
        vocab_sizes: list[int],
        d_hidden: int,
        d_node: int,
        item_ids: torch.Tensor | None = None,
        d_item: int = 0,
    ):
        """codes (N, P): the catalogue's paths. With `item_ids` (N,) (each path's id in the
        item_id embedding table, width `d_item`) an edge's vector also gets the mean input
        embedding of the items below it, through a linear map per step (tied in/out items)."""
        super().__init__()
        codes = codes.long()  # (N, P) decoding paths of the catalogue
        self.register_buffer("codes", codes)
        self.vocab_sizes = list(vocab_sizes)
        self.d_node = d_node
        self.tied = item_ids is not None and d_node > 0 and d_item > 0
        node = torch.zeros(len(codes), dtype=torch.long)  # each item's node at depth t
        for t, v in enumerate(self.vocab_sizes):
            keys, child = torch.unique(node * v + codes[:, t], return_inverse=True)  # (E_t,)
            parents = keys // v  # sorted, so each node's children are one contiguous run
            n_nodes = int(node.max()) + 1
            count = torch.bincount(parents, minlength=n_nodes)  # (nodes at depth t,)
            self.register_buffer(f"keys_{t}", keys, persistent=False)
            self.register_buffer(f"start_{t}", torch.cumsum(count, 0) - count, persistent=False)
            self.register_buffer(f"count_{t}", count, persistent=False)
            node = child.reshape(-1)
            self.register_buffer(f"item_edge_{t}", node, persistent=False)  # (N,) item -> edge
        if d_node:
            n_edges = [len(self.keys(t)) for t in range(len(self.vocab_sizes))]
            self.proj = nn.ModuleList(nn.Linear(d_hidden, d_node, bias=False) for _ in n_edges)
            self.emb = nn.ModuleList(nn.Embedding(e, d_node) for e in n_edges)
            self.bias = nn.ModuleList(nn.Embedding(e, 1) for e in n_edges)
            for emb in [*self.emb, *self.bias]:
                nn.init.zeros_(emb.weight)  # starts as the plain rank head
        if self.tied:
            self.register_buffer("item_ids", item_ids.long())
            self.tie = nn.ModuleList(nn.Linear(d_item, d_node, bias=False) for _ in n_edges)

    def subtree_items(self, t: int, item_emb: torch.Tensor) -> torch.Tensor:
        """(E_t, d_item): mean input embedding of the items below each edge of depth t."""
        edge = getattr(self, f"item_edge_{t}")
        n_edges = len(self.keys(t))
        total = item_emb.new_zeros((n_edges, item_emb.shape[1]))
        total = total.index_add(0, edge, item_emb[self.item_ids])
        count = torch.bincount(edge, minlength=n_edges).clamp_min(1)
        return total / count[:, None].to(total.dtype)

    def keys(self, t: int) -> torch.Tensor:
        """(E_t,) sorted edge keys node * V_t + token of depth t."""
        return getattr(self, f"keys_{t}")

    def nodes(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (R, t) tokens -> (R,) trie node at depth t, -1 where it is no real prefix."""
        node = torch.zeros(prefix.shape[0], dtype=torch.long, device=prefix.device)
        for t in range(prefix.shape[1]):
            keys = self.keys(t)
            query = node * self.vocab_sizes[t] + prefix[:, t]
            pos = torch.searchsorted(keys, query).clamp_max(len(keys) - 1)
            node = torch.where((keys[pos] == query) & (node >= 0), pos, -1)
        return node

    def child_count(self, t: int, node: torch.Tensor) -> torch.Tensor:
        """(R,) number of children of `node` (R,) at depth t; 0 where node < 0."""
        return torch.where(node >= 0, getattr(self, f"count_{t}")[node.clamp_min(0)], 0)

    def child_edges(self, t: int, node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Children of `node` (R,) at depth t, ragged: (row (C,), edge (C,)) per child."""
        count = self.child_count(t, node)
        row = torch.repeat_interleave(torch.arange(len(node), device=node.device), count)
        first = torch.cumsum(count, 0) - count  # (R,) offset of each row's run in the output
        start = getattr(self, f"start_{t}")[node.clamp_min(0)]
        edge = start[row] + torch.arange(len(row), device=node.device) - first[row]
        return row, edge

    def adjust_logits(
        self,
        t: int,
        logits: torch.Tensor,
        hidden: torch.Tensor,
        prefix: torch.Tensor,
        trie_softmax: bool,
        item_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add step t's edge logits to `logits` (R, V_t) and mask non-children when asked.

        hidden (R, d_hidden) is the rank head's last layer, prefix (R, t) the decoded tokens,
        item_emb the item_id input embedding table (for tied edge vectors).
        Rows whose prefix is not in the trie keep their plain logits.
        """
        node = self.nodes(prefix)
        row, edge = self.child_edges(t, node)
        token = self.keys(t)[edge] - node[row] * self.vocab_sizes[t]  # (C,)
        if self.d_node:
            h = self.proj[t](hidden)  # (R, d_node)
            vec = self.emb[t](edge)  # (C, d_node)
            if self.tied and item_emb is not None:
                vec = vec + self.tie[t](self.subtree_items(t, item_emb))[edge]
            extra = (h[row] * vec).sum(-1) + self.bias[t](edge)[:, 0]  # (C,)
            logits = logits.index_put((row, token), extra, accumulate=True)
        if trie_softmax:
            allowed = torch.zeros_like(logits, dtype=torch.bool)
            allowed[row, token] = True
            allowed |= (node < 0)[:, None]  # unknown prefix: leave the row unmasked
            logits = logits.masked_fill(~allowed, float("-inf"))
        return logits

    def edge_names(self, t: int, token_names: list[list[str]]) -> list[str]:
        """Step t's edges as readable paths 'tok0/tok1/.../tok_t' (rows of the edge tables);
        `token_names[j][v]` names token v of step j (warm starts match edges by these)."""
        names = []
        for key in self.keys(t).tolist():
            node, tok = divmod(key, self.vocab_sizes[t])
            names.append((node, token_names[t][tok]))
        if t == 0:
            return [tok for _, tok in names]
        parents = self.edge_names(t - 1, token_names)
        return [f"{parents[node]}/{tok}" for node, tok in names]
