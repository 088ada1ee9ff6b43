"""Input feature modelling (unirec §3.5.1, eq. 8-11).

- static profile: sparse user fields -> embeddings -> RMSNorm (eq. 8)
- behaviour sequence: per history event, item-side fields (item, seller, brand,
  categories, ...) and the event type -> RMSNorm -> Linear to d_model (eq. 9)
- SID-level features: the SID tokens of the last L_mm history items fused with their
  item embedding -> Linear -> RMSNorm (eq. 10), appended to the sequence
- learned positions on the memory (eq. 13), plus one always-valid "null" memory token
  so a request without history still has something to attend to
- optionally (seq_layers > 0, not in the paper) causal self-attention blocks over the
  behaviour sequence before it joins the memory, SASRec-style: the state at position t
  summarises the history up to t, so every position can be trained to predict the next
  item (the model's `next_item_weight`), not only the sample's target
- optionally (encoder_layers > 0, not in the paper) bidirectional self-attention blocks
  over that memory, so history items see each other before the decoder reads them
- h_agg = RMSNorm([h_static, masked mean pool of H_seq]) (eq. 11)

The model carries the item feature table as buffers, so a request only needs item rows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.retriever.layers import HistoryEncoderBlock


class EncodedInputs(NamedTuple):
    """The request side, computed once per request."""

    mem: torch.Tensor  # (B, S, d) behaviour memory the decoder cross-attends
    mem_mask: torch.Tensor  # (B, S) True = real token
    h_agg: torch.Tensor  # (B, d_agg) eq. 11
    seq: torch.Tensor  # (B, T, d) the behaviour sequence's states (causal with seq_layers)


class InputEncoder(nn.Module):
    """Batch of requests -> behaviour memory (B, S, d), its mask and h_agg (B, d_agg)."""

    def __init__(
        self,
        *,
        item_fields: torch.Tensor,
        item_sids: torch.Tensor,
        field_vocab: dict[str, int],
        seq_fields: list[str],
        profile_fields: list[str],
        n_event_types: int,
        sid_vocab: int,
        d_field: int,
        d_model: int,
        history_len: int,
        mm_len: int,
        encoder_layers: int = 0,
        seq_layers: int = 0,
        n_heads: int = 1,
        ffn_hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        # item_fields (N+1, F_s): ids of seq_fields per item row (row 0 = padding)
        # item_sids (N+1, L): SID code + 1 per item row (0 = unknown / padding)
        self.register_buffer("item_fields", item_fields.long())
        self.register_buffer("item_sids", item_sids.long())
        self.seq_fields, self.profile_fields = list(seq_fields), list(profile_fields)
        self.t, self.mm = history_len, mm_len
        self.field_emb = nn.ModuleDict(
            {
                f: nn.Embedding(field_vocab[f], d_field)
                for f in dict.fromkeys([*seq_fields, *profile_fields])
            }
        )
        self.type_emb = nn.Embedding(n_event_types + 1, d_field)  # 0 = padding
        d_seq = d_field * (len(seq_fields) + 1)
        self.seq_norm = nn.RMSNorm(d_seq)
        self.seq_proj = nn.Linear(d_seq, d_model)
        self.d_static = d_field * len(profile_fields)
        self.static_norm = nn.RMSNorm(self.d_static) if profile_fields else None
        n_layers = item_sids.shape[1]
        if mm_len:
            self.sid_emb = nn.ModuleList(
                nn.Embedding(sid_vocab + 1, d_field) for _ in range(n_layers)
            )
            self.mm_proj = nn.Linear(d_field * (n_layers + 1), d_model)
            self.mm_norm = nn.RMSNorm(d_model)
        # SASRec-style causal blocks over the sequence (positions: most recent last)
        self.seq_pos = nn.Embedding(history_len, d_model) if seq_layers else None
        self.seq_blocks = nn.ModuleList(
            HistoryEncoderBlock(d_model, n_heads, ffn_hidden or 2 * d_model, dropout, causal=True)
            for _ in range(seq_layers)
        )
        self.seq_out_norm = nn.RMSNorm(d_model) if seq_layers else None
        self.null = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos = nn.Embedding(1 + history_len + mm_len, d_model)
        self.encoder = nn.ModuleList(
            HistoryEncoderBlock(d_model, n_heads, ffn_hidden or 2 * d_model, dropout)
            for _ in range(encoder_layers)
        )
        self.encoder_norm = nn.RMSNorm(d_model) if encoder_layers else None
        self.d_agg = self.d_static + d_model
        self.agg_norm = nn.RMSNorm(self.d_agg)
        for emb in [*self.field_emb.values(), *([self.seq_pos] if self.seq_pos else [])]:
            nn.init.normal_(emb.weight, std=0.02)

    def forward(
        self, profile: torch.Tensor, hist: torch.Tensor, hist_type: torch.Tensor
    ) -> EncodedInputs:
        """profile (B, F_p) ids, hist (B, T) item rows (0 = pad, most recent last),
        hist_type (B, T) event-type ids -> mem (B, S, d), mem_mask (B, S), h_agg (B, d_agg)
        and the sequence states (B, T, d)."""
        b = hist.shape[0]
        feats = self.item_fields[hist]  # (B, T, F_s)
        parts = [self.field_emb[f](feats[..., i]) for i, f in enumerate(self.seq_fields)]
        parts.append(self.type_emb(hist_type))
        h_seq = self.seq_proj(self.seq_norm(torch.cat(parts, dim=-1)))  # (B, T, d) eq. 9
        mask = hist > 0  # (B, T)
        if self.seq_out_norm is not None:
            x = h_seq + self.seq_pos.weight[-hist.shape[1] :]  # (B, T, d)
            for block in self.seq_blocks:
                x = block(x, mask)
            h_seq = self.seq_out_norm(x)  # (B, T, d): state t sees items <= t
        mems, masks = [self.null.expand(b, 1, -1), h_seq], [mask.new_ones(b, 1), mask]
        if self.mm:
            recent = hist[:, -self.mm :]  # (B, L_mm)
            sids = self.item_sids[recent]  # (B, L_mm, L)
            e = [emb(sids[..., j]) for j, emb in enumerate(self.sid_emb)]
            if "item_id" in self.seq_fields:  # fuse with the item embedding (eq. 10)
                col = self.seq_fields.index("item_id")
                e.append(self.field_emb["item_id"](self.item_fields[recent, col]))
            else:
                e.append(torch.zeros_like(e[0]))
            mems.append(self.mm_norm(self.mm_proj(torch.cat(e, dim=-1))))  # (B, L_mm, d) eq. 10
            masks.append((recent > 0) & (sids[..., 0] > 0))
        mem = torch.cat(mems, dim=1)  # (B, S, d), S = 1 + T + L_mm
        mem = mem + self.pos(torch.arange(mem.shape[1], device=mem.device))  # eq. 13
        mem_mask = torch.cat(masks, dim=1)  # (B, S)
        for block in self.encoder:
            mem = block(mem, mem_mask)  # (B, S, d)
        if self.encoder_norm is not None:
            mem = self.encoder_norm(mem)
        m = mem_mask[..., None].to(mem.dtype)
        pooled = (mem * m).sum(1) / m.sum(1)  # (B, d)
        if self.static_norm is not None:
            static = torch.cat(
                [self.field_emb[f](profile[:, i]) for i, f in enumerate(self.profile_fields)], -1
            )
            pooled = torch.cat([self.static_norm(static), pooled], dim=-1)  # eq. 8
        return EncodedInputs(mem, mem_mask, self.agg_norm(pooled), h_seq)  # eq. 11
