"""Item-level head (beyond the paper): a full-catalogue softmax read from the BOS state.

Trie-constrained decoding scores an item by its path, log p(item) = sum_t log p(s_t | s_<t)
(eq. 19's factorisation); the order inside the top 10 then follows that factorisation, and on
Amazon Beauty most items are alone under their s1 prefix, so the last steps rarely separate
them. This head scores every catalogue item directly, SASRec-CE style, from the decoder's BOS
state q_0 (the request's cross-attended summary before any path token) and h_agg:

    u        = W [q_0, h_agg]                                     (B, d)
    v_i      = e_i + T x_item_id(i)   (x: the input item_id embedding, tied in/out items)
    logit(i) = <u, v_i> + b_i                                     (B, N)

It trains with cross-entropy next to eq. 19's NTP loss, and re-ranks the beam's finished
candidates: score(i) = log p_path(i) + w * log p_item(i), w = `item_head_weight`. Beam pruning
is unchanged, so HR@beam is too; only the order inside the beam moves.

N = the catalogue's decoding paths (item rows of the trie), d = d_model.
"""

from __future__ import annotations

import torch
from torch import nn


class ItemHead(nn.Module):
    """Logits over the catalogue's N path rows from (q_0, h_agg)."""

    def __init__(
        self, d_model: int, d_agg: int, item_ids: torch.Tensor, d_item: int, tie: bool
    ) -> None:
        """`item_ids` (N,): each path row's id in the item_id field vocabulary (the rows' keys
        for warm starts); with `tie` the output vectors also read that row of the item_id input
        embedding (width `d_item`)."""
        super().__init__()
        n_items = len(item_ids)
        self.register_buffer("item_ids", item_ids.long())
        self.query = nn.Linear(d_model + d_agg, d_model)
        self.emb = nn.Embedding(n_items, d_model)  # e_i, rows = path rows (no weight decay)
        self.bias = nn.Embedding(n_items, 1)  # b_i
        nn.init.normal_(self.emb.weight, std=0.02)
        nn.init.zeros_(self.bias.weight)
        self.tie = nn.Linear(d_item, d_model, bias=False) if tie else None

    def forward(
        self, q0: torch.Tensor, h_agg: torch.Tensor, item_emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """q0 (B, d), h_agg (B, d_agg), item_emb (V_item, d_item) input table -> logits (B, N)."""
        return self.score(self.query(torch.cat([q0, h_agg], dim=-1)), item_emb)  # u (B, d)

    def score(self, u: torch.Tensor, item_emb: torch.Tensor | None = None) -> torch.Tensor:
        """logit(i) = <u, v_i> + b_i for queries u (M, d) -> (M, N)."""
        vec = self.emb.weight  # (N, d)
        if self.tie is not None and item_emb is not None:
            vec = vec + self.tie(item_emb[self.item_ids])
        return u @ vec.T + self.bias.weight[:, 0]


class NextItemLoss(nn.Module):
    """All-position training (SASRec's, beyond the paper): with causal sequence states
    (`seq_layers`), state t predicts the item after it through the item head's output
    vectors v_i, so one request trains on every step of its history, not only its target."""

    def __init__(self, d_model: int, path_item_ids: torch.Tensor, item_vocab: int) -> None:
        """`path_item_ids` (N,): each path row's item_id field id; `item_vocab`: the item_id
        field's vocabulary size."""
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        path_of = torch.full((item_vocab,), -1, dtype=torch.long)
        path_of[path_item_ids.long()] = torch.arange(len(path_item_ids))
        path_of[0] = -1  # id 0: padding / unknown item
        self.register_buffer("path_of", path_of, persistent=False)  # item_id id -> path row

    def pairs(
        self, seq: torch.Tensor, hist_ids: torch.Tensor, target_row: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """seq (B, T, d) causal states, hist_ids (B, T) item_id field ids (0 = padding, most
        recent last), target_row (B,) the target's path row (-1 = none) -> the states (M, d)
        that have a next item and that item's path row (M,)."""
        nxt = torch.cat([self.path_of[hist_ids[:, 1:]], target_row[:, None]], dim=1)  # (B, T)
        keep = (hist_ids > 0) & (nxt >= 0)
        return seq[keep], nxt[keep]


def rerank(
    items: torch.Tensor, scores: torch.Tensor, item_logp: torch.Tensor, weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """items (B, W) path rows (-1 = none), scores (B, W) path log-probabilities, item_logp
    (B, N) -> (items, scores + weight * item_logp[items]) re-sorted descending; padding stays
    last with -inf."""
    valid = items >= 0
    extra = item_logp.gather(1, items.clamp_min(0)).to(scores.dtype)
    mixed = torch.where(valid, scores + weight * extra, torch.full_like(scores, float("-inf")))
    mixed, order = mixed.sort(dim=1, descending=True, stable=True)
    return items.gather(1, order), mixed
