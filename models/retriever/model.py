"""UniRec generative retriever (unirec §3.3-3.5), nanoGPT-style.

    request -> InputEncoder -> memory H_seq (B, S, d), h_agg (B, d_agg)
    path    -> [BOS(task), e(a_1..a_m), e(s_0..s_{L-2})] + positions        (eq. 12)
            -> D x DecoderBlock(self-attn?, gated cross-attn to H_seq, MMoE)  (eq. 14-15)
            -> RMSNorm -> q_t                                                 (eq. 17)
    head t  -> RankHead([q_t, e_prefix(<t), c_t, h_agg]) -> softmax over V_t  (eq. 18)
               [+ per-trie-edge output vectors; softmax over the node's children] (nodes.py)
    loss    -> sum_t -alpha * log p(s*_t | s*_<t)                             (eq. 19)
               [+ -alpha * log p_item(i*) of the item-level head]             (item_head.py)
               [+ beta * mean_t -log p_item(x_{t+1} | causal state t), SASRec-style]
               [+ lambda * L_IKD of a summary token after the path, unger eq. 11-12] (ikd.py)

P = m + L (+1 dedup) decoding steps; B requests, W beams, d = d_model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.retriever.content_summary import ContentSummary
from models.retriever.heads import RankHead
from models.retriever.ikd import SummaryToken, ikd_loss
from models.retriever.inputs import InputEncoder
from models.retriever.item_head import ItemHead, NextItemLoss
from models.retriever.layers import DecoderBlock
from models.retriever.nodes import PathNodes
from models.retriever.paths import PathSpec
from sidflow.config import RetrieverModelParams


@dataclass
class UniRecConfig:
    """Everything needed to rebuild the network (saved with each checkpoint)."""

    path: PathSpec
    tasks: list[str]  # "behaviour/scene" names; index = task id
    field_vocab: dict[str, int]  # vocabulary size of every sparse field
    n_event_types: int
    sid_vocab: int  # codebook size K of the SID layers (for the history SID features)
    model: RetrieverModelParams = field(default_factory=RetrieverModelParams)
    integrated_dim: int = 0  # width of the stage-1 integrated embeddings IKD distils (0 = off)

    def to_json(self) -> str:
        """Serialise (goes into the safetensors metadata)."""
        raw = {**asdict(self), "path": asdict(self.path), "model": self.model.model_dump()}
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> UniRecConfig:
        """Inverse of `to_json` (settings a checkpoint predates take their defaults)."""
        raw = json.loads(text)
        raw["path"] = PathSpec(**raw["path"])
        # before task_gate had its own switch, task_bos: false also shared one MMoE gate
        raw["model"].setdefault("task_gate", raw["model"].get("task_bos", True))
        raw["model"] = RetrieverModelParams.model_validate(raw["model"])
        return cls(**raw)


Cache = list  # per layer: self-attention (k, v) (B*W, H, t, dh), or None without self-attn


@dataclass
class DecodeContext:
    """Per-request state computed once and shared by every beam and step."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: k, v (B, H, S, dh)
    mem_mask: torch.Tensor  # (B, S)
    h_agg: torch.Tensor  # (B, d_agg)
    task: torch.Tensor  # (B,)
    seq: torch.Tensor | None = None  # (B, T, d) sequence states (the next-item loss reads them)

    def select(self, req: torch.Tensor) -> DecodeContext:
        """The context of requests `req` (M,) (repeats allowed): one row per entry. For
        decoding (beam search's last step): the sequence states, which only the training loss
        reads, are not gathered."""
        kv = [(k[req], v[req]) for k, v in self.kv]
        return DecodeContext(kv, self.mem_mask[req], self.h_agg[req], self.task[req])


class UniRec(nn.Module):
    """Decoder-only generative retriever with cross-attention to the behaviour sequence."""

    def __init__(
        self,
        cfg: UniRecConfig,
        item_fields: torch.Tensor,
        item_sids: torch.Tensor,
        item_paths: torch.Tensor | None = None,
        path_item_ids: torch.Tensor | None = None,
    ):
        """`item_paths` (N, P): the catalogue's decoding paths, needed by the trie-node options
        (`node_dim`, `trie_softmax`); `path_item_ids` (N,): each path's item_id field id
        (`node_tie`, `item_head`)."""
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        d, spec = m.d_model, cfg.path
        self.n_steps = spec.n_steps
        self.task_bos = m.task_bos
        self.inputs = InputEncoder(
            item_fields=item_fields,
            item_sids=item_sids,
            field_vocab=cfg.field_vocab,
            seq_fields=m.seq_fields,
            profile_fields=m.profile_fields,
            n_event_types=cfg.n_event_types,
            sid_vocab=cfg.sid_vocab,
            d_field=m.d_field,
            d_model=d,
            history_len=m.history_len,
            mm_len=m.mm_len,
            encoder_layers=m.encoder_layers,
            seq_layers=m.seq_layers,
            n_heads=m.n_heads,
            ffn_hidden=int(m.ffn_mult * d),
            dropout=m.dropout,
        )
        # Task-Conditioned BOS (§3.4): one learned start embedding per (behaviour x scene).
        self.bos = nn.Embedding(len(cfg.tasks) if self.task_bos else 1, d)
        # decoder input embeddings of path tokens 0..P-2 (the last token is never an input)
        self.tok = nn.ModuleList(nn.Embedding(v, d) for v in spec.vocab_sizes[:-1])
        self.pos = nn.Embedding(self.n_steps, d)
        self.task_gate = m.task_gate
        n_gates = len(cfg.tasks) if self.task_gate else 1  # eq. 15: a gate per task
        self.blocks = nn.ModuleList(
            DecoderBlock(
                d,
                m.n_heads,
                int(m.ffn_mult * d),
                m.n_experts,
                n_gates,
                m.dropout,
                m.self_attention,
            )
            for _ in range(m.n_layers)
        )
        self.norm = nn.RMSNorm(d)
        self.cs = None
        if m.content_summary:
            pairs = [
                (spec.fields.index(a), spec.fields.index(b))
                for a, b in m.cs_pairs
                if a in spec.fields and b in spec.fields
            ]
            if pairs:
                self.cs = ContentSummary(spec.vocab_sizes, pairs, m.cs_hashes, m.d_hash)
        # per-step rank heads (§3.5.3); prefix embeddings of each decoded token
        self.prefix = nn.ModuleList(nn.Embedding(v, m.d_prefix) for v in spec.vocab_sizes[:-1])
        d_agg = self.inputs.d_agg
        self.heads = nn.ModuleList()
        for t in range(self.n_steps):
            dims = [d] + [m.d_prefix] * t + ([self.cs.d_out] if self.cs else []) + [d_agg]
            self.heads.append(RankHead(dims, d, m.mask_blocks, spec.vocab_sizes[t], m.dropout))
        for emb in [self.bos, self.pos, *self.tok, *self.prefix]:
            nn.init.normal_(emb.weight, std=0.02)
        self.trie_softmax = m.trie_softmax
        self.nodes = None
        if m.node_dim or self.trie_softmax:
            if item_paths is None:
                raise ValueError("retriever.model node_dim / trie_softmax need the item paths")
            tie = m.node_tie and "item_id" in m.seq_fields
            if tie and path_item_ids is None:
                raise ValueError("retriever.model.node_tie needs each path's item id")
            self.nodes = PathNodes(
                item_paths,
                spec.vocab_sizes,
                d,
                m.node_dim,
                path_item_ids if tie else None,
                m.d_field,
            )
        self.item_head = None
        self.item_head_weight = float(m.item_head_weight)
        if m.item_head:
            if path_item_ids is None:
                raise ValueError("retriever.model.item_head needs each path's item id")
            self.item_head = ItemHead(
                d, d_agg, path_item_ids, m.d_field, tie="item_id" in m.seq_fields
            )
        self.next_item = None
        if m.next_item_weight:
            if not (m.item_head and m.seq_layers and "item_id" in m.seq_fields):
                raise ValueError(
                    "retriever.model.next_item_weight needs item_head, seq_layers > 0 and "
                    "item_id in seq_fields"
                )
            self.next_item = NextItemLoss(d, path_item_ids, cfg.field_vocab["item_id"])
        # UNGER §3.4.3 IKD: built last, so every other parameter draws the same initial values
        # with the switch on or off
        self.ikd = None
        if m.ikd:
            if cfg.integrated_dim <= 0:
                raise ValueError("retriever.model.ikd needs the integrated embeddings' width")
            self.ikd = SummaryToken(d, cfg.integrated_dim)

    # ---- request side -------------------------------------------------------------
    def encode(self, batch: dict[str, torch.Tensor]) -> DecodeContext:
        """Behaviour memory and per-layer cross-attention K/V, once per request."""
        enc = self.inputs(batch["profile"], batch["hist"], batch["hist_type"])
        kv = [blk.cross.kv(enc.mem) for blk in self.blocks]
        return DecodeContext(kv, enc.mem_mask, enc.h_agg, batch["task"], enc.seq)

    # ---- decoding path ------------------------------------------------------------
    def _decode(
        self,
        ctx: DecodeContext,
        prefix: torch.Tensor,
        cache: Cache | None = None,
        summary: bool = False,
    ) -> tuple[torch.Tensor, Cache]:
        """prefix (B, W, t) decoded tokens -> decoder states and the self-attention cache.

        Without `cache` every position 0..t (BOS + t tokens) is computed: (B, W, t+1, d).
        With the cache of positions 0..t-1 only position t is computed: (B, W, 1, d).
        `summary` (training, no cache): IKD's token z appended after position t, so the
        states are (B, W, t+2, d) and the last is h_z (unger §3.4.3).
        """
        b, w, t = prefix.shape
        first = 0 if cache is None else t
        parts = []
        for pos in range(first, t + 1):
            if pos == 0:
                bos = ctx.task if self.task_bos else torch.zeros_like(ctx.task)  # §3.4
                parts.append(self.bos(bos)[:, None, :].expand(b, w, -1))  # (B, W, d)
            else:
                parts.append(self.tok[pos - 1](prefix[..., pos - 1]))
        x = torch.stack(parts, dim=2) + self.pos.weight[first : t + 1]  # (B, W, n, d) eq. 12
        if summary:  # z last: causal attention keeps it out of every earlier position
            assert self.ikd is not None and cache is None
            x = torch.cat([x, self.ikd.input(b, w)], dim=2)  # (B, W, n + 1, d)
        new_cache: Cache = []
        gate = ctx.task if self.task_gate else torch.zeros_like(ctx.task)  # eq. 15
        for i, (blk, kv) in enumerate(zip(self.blocks, ctx.kv, strict=True)):
            x, layer_cache = blk(x, kv, ctx.mem_mask, gate, None if cache is None else cache[i])
            new_cache.append(layer_cache)
        return self.norm(x), new_cache  # eq. 17

    @staticmethod
    def reorder_cache(cache: Cache, b: int, parent: torch.Tensor) -> Cache:
        """Keep the cache rows of the surviving beams: parent (B, W_new) old beam index."""
        layer = next((c for c in cache if c is not None), None)
        if layer is None:  # no self-attention: nothing cached
            return list(cache)
        w_old = layer[0].shape[0] // b  # rows are (B*W_old, H, t, dh)
        req = torch.arange(b, device=parent.device)[:, None].expand_as(parent)
        return UniRec.select_cache(cache, w_old, req.flatten(), parent.flatten())

    @staticmethod
    def select_cache(cache: Cache, w: int, req: torch.Tensor, beam: torch.Tensor) -> Cache:
        """The cache rows of beams (req, beam) (M,) each, of a cache laid out (B*W, ...)."""
        idx = req * w + beam
        return [None if layer is None else (layer[0][idx], layer[1][idx]) for layer in cache]

    def single_child(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (R, t) -> (R,) True where the next token's log-probability is 0 whatever
        the decoder computes: with `trie_softmax` the softmax runs over the prefix's trie
        children, and a prefix with one child gives it probability 1."""
        if not self.trie_softmax or self.nodes is None:
            return torch.zeros(prefix.shape[0], dtype=torch.bool, device=prefix.device)
        return self.nodes.child_count(prefix.shape[1], self.nodes.nodes(prefix)) == 1

    def _head(
        self,
        t: int,
        q: torch.Tensor,
        prefix: torch.Tensor,
        cs: torch.Tensor | None,
        h_agg: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (N, V_t) of step t from q (N, d), prefix (N, >=t), cs (N, d_cs), h_agg (N, .)."""
        return self.head_logits(t, self.head_fields(t, q, prefix, cs, h_agg), prefix)

    def head_logits(
        self, t: int, fields: list[torch.Tensor], prefix: torch.Tensor, detach_items: bool = False
    ) -> torch.Tensor:
        """Step t's logits (N, V_t) from its head inputs `fields` (`head_fields`) and the
        decoded prefix (N, >=t): the rank head (eq. 18), plus the trie-edge vectors and the
        softmax over the node's children when they are on (nodes.py), i.e. the logits beam
        search decodes. `detach_items`: tied edge vectors read the item input embeddings
        without gradient (DPO's layer-wise stop-gradient)."""
        head = self.heads[t]
        if self.nodes is None:
            return head(fields)
        h = head.hidden(fields)
        item_emb = self.inputs.field_emb["item_id"].weight if self.nodes.tied else None
        if item_emb is not None and detach_items:
            item_emb = item_emb.detach()
        return self.nodes.adjust_logits(
            t, head.logits(h), h, prefix[:, :t], self.trie_softmax, item_emb
        )

    def head_fields(
        self,
        t: int,
        q: torch.Tensor,
        prefix: torch.Tensor,
        cs: torch.Tensor | None,
        h_agg: torch.Tensor,
    ) -> list[torch.Tensor]:
        """The inputs x_t of rank head t (eq. 18): [q_t, e_prefix(<t), c_t, h_agg]."""
        fields = [q] + [self.prefix[j](prefix[:, j]) for j in range(t)]
        if self.cs is not None:
            fields.append(cs)
        fields.append(h_agg)
        return fields

    def step_logprobs(
        self, ctx: DecodeContext, prefix: torch.Tensor, cache: Cache | None = None
    ) -> tuple[torch.Tensor, Cache]:
        """log p(s_t | prefix) for t = prefix length: prefix (B, W, t) -> (B, W, V_t).

        Pass the returned cache (reordered to the surviving beams) to the next step to
        compute only the newest position; without it the whole prefix is recomputed.
        """
        b, w, t = prefix.shape
        states, cache = self._decode(ctx, prefix, cache)
        q = states[:, :, -1].reshape(b * w, -1)  # (BW, d)
        flat = prefix.reshape(b * w, t)
        cs = self.cs(flat, t + 1)[:, t] if self.cs is not None else None
        h = ctx.h_agg[:, None].expand(b, w, -1).reshape(b * w, -1)
        return self._head(t, q, flat, cs, h).log_softmax(-1).view(b, w, -1), cache

    def item_logprobs(self, ctx: DecodeContext) -> torch.Tensor:
        """log p_item over the catalogue's path rows (B, N) from the BOS state (item_head.py)."""
        b = ctx.h_agg.shape[0]
        empty = torch.zeros((b, 1, 0), dtype=torch.long, device=ctx.h_agg.device)
        q0 = self._decode(ctx, empty)[0][:, 0, 0]  # (B, d)
        return self._item_logits(q0, ctx.h_agg).log_softmax(-1)

    def _item_logits(self, q0: torch.Tensor, h_agg: torch.Tensor) -> torch.Tensor:
        """The item head's logits (B, N) from q_0 (B, d) and h_agg (B, d_agg)."""
        assert self.item_head is not None
        item_emb = self.inputs.field_emb["item_id"].weight if self.item_head.tie else None
        return self.item_head(q0, h_agg, item_emb)

    def _next_item_nll(self, ctx: DecodeContext, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of causal sequence states predicting the item after each (the
        next history item; the last state, the sample's target), SASRec-style. Training uses
        a random B of the batch's states: a catalogue softmax costs as much per state as the
        item head's per sample, and the per-prefix samples repeat each transition anyway."""
        assert self.next_item is not None and self.item_head is not None and ctx.seq is not None
        col = self.inputs.seq_fields.index("item_id")
        hist_ids = self.inputs.item_fields[batch["hist"], col]  # (B, T) item_id field ids
        state, target = self.next_item.pairs(ctx.seq, hist_ids, batch["item_row"])  # (M, d), (M,)
        if not len(target):
            return ctx.seq.new_zeros(())
        if self.training and len(target) > len(hist_ids):
            pick = torch.randperm(len(target), device=target.device)[: len(hist_ids)]
            state, target = state[pick], target[pick]  # (B, d), (B,)
        item_emb = self.inputs.field_emb["item_id"].weight if self.item_head.tie else None
        logits = self.item_head.score(self.next_item.query(state), item_emb).float()  # (M, N)
        return F.cross_entropy(logits, target)

    def _teacher_forced(
        self, batch: dict[str, torch.Tensor], summary: bool = False
    ) -> tuple[DecodeContext, torch.Tensor, list[torch.Tensor]]:
        """Teacher forcing: (context, decoder states (B, P, d), logits (B, V_t) of every step t
        given the true prefix). With `summary` the states are (B, P + 1, d), the last being
        IKD's h_z."""
        ctx = self.encode(batch)
        target = batch["target"]  # (B, P)
        q = self._decode(ctx, target[:, None, :-1], summary=summary)[0][:, 0]  # (B, P[+1], d)
        cs = self.cs(target, self.n_steps) if self.cs is not None else None  # (B, P, d_cs)
        logits = [
            self._head(t, q[:, t], target, cs[:, t] if cs is not None else None, ctx.h_agg)
            for t in range(self.n_steps)
        ]
        return ctx, q, logits

    def step_logits(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Teacher forcing: logits (B, V_t) of every step t given the true prefix."""
        return self._teacher_forced(batch)[2]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training forward = the loss (so DDP wraps it)."""
        return self.loss(batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 19: engagement-weighted NTP, summed over steps, averaged over the batch (plus
        the item head's cross-entropy on the same weights when it is on). With IKD on and the
        batch's target integrated embeddings (`integrated`, (B, D_int)), plus lambda * L_IKD
        (unger eq. 12)."""
        return self.loss_terms(batch)[0]

    def loss_terms(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the total loss, L_IKD or None): see `loss`."""
        summary = self.ikd is not None and "integrated" in batch
        ctx, q, logits = self._teacher_forced(batch, summary)
        target = batch["target"]
        nll = sum(  # (B,)
            F.cross_entropy(lg.float(), target[:, t], reduction="none")
            for t, lg in enumerate(logits)
        )
        if self.item_head is not None:
            item_logits = self._item_logits(q[:, 0], ctx.h_agg).float()  # (B, N)
            nll = nll + F.cross_entropy(item_logits, batch["item_row"], reduction="none")
        w = batch["weight"]
        loss = (w * nll).sum() / w.sum()
        if self.next_item is not None:
            loss = loss + self.cfg.model.next_item_weight * self._next_item_nll(ctx, batch)
        if not summary:
            return loss, None
        m = self.cfg.model
        u = self.ikd.proj(q[:, self.n_steps])  # (B, D_int) from h_z
        l_ikd = ikd_loss(u, batch["integrated"], batch["item_row"], m.ikd_temperature)  # eq. 11
        return loss + m.ikd_weight * l_ikd, l_ikd  # eq. 12
