"""Decoder building blocks (unirec §3.5.2): gated cross-attention, causal self-attention,
MMoE feed-forward of SwiGLU experts, and the pre-norm block that stacks them.

Shapes: B requests, W beams (1 in training), t decoding positions, S behaviour tokens,
d = d_model, H heads, dh = d / H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


class GatedCrossAttention(nn.Module):
    """gamma * softmax(Q K^T / sqrt(dh)) V (eq. 16), multi-head, gamma learnable.

    Keys/values depend only on the behaviour sequence, so `kv` is computed once per
    request and shared by every beam and decoding step (queries of all beams are laid
    side by side along the query axis).
    """

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d_model {d} is not divisible by n_heads {n_heads}")
        self.h, self.dh = n_heads, d // n_heads
        self.q = nn.Linear(d, d, bias=False)
        self.kv_proj = nn.Linear(d, 2 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.gamma = nn.Parameter(torch.ones(1))
        self.dropout = dropout

    def kv(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mem (B, S, d) -> k, v (B, H, S, dh)."""
        b, s, _ = mem.shape
        k, v = self.kv_proj(mem).view(b, s, 2, self.h, self.dh).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mem_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, Q, d) queries, mem_mask (B, S) True = real token -> (B, Q, d)."""
        b, q, d = x.shape
        qh = self.q(x).view(b, q, self.h, self.dh).transpose(1, 2)  # (B, H, Q, dh)
        k, v = kv
        mask = mem_mask[:, None, None, :]  # (B, 1, 1, S)
        y = F.scaled_dot_product_attention(
            qh, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Q, dh)
        return self.gamma * self.out(y.transpose(1, 2).reshape(b, q, d))


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention over the decoding path (BOS, attributes, SIDs)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.h, self.dh = n_heads, d // n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """x (N, t, d) new positions, past (k, v) (N, H, t0, dh) cached earlier positions.

        Returns (N, t, d) and the cache (N, H, t0 + t, dh); position i sees positions <= i.
        """
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if past is not None and t == 1:  # one new position sees every key (beam search steps):
            att = (q @ k.transpose(-1, -2)) * self.dh**-0.5  # (N, H, 1, t0+1); plain matmuls
            y = att.softmax(-1) @ v  # beat the fused kernel at these tiny shapes (2x on CPU)
            return self.out(y.transpose(1, 2).reshape(n, t, d)), (k, v)
        mask = None
        if past is not None:  # t > 1 new queries over t0 + t keys
            t0 = past[0].shape[2]
            mask = torch.ones(t, t0 + t, dtype=torch.bool, device=x.device).tril(t0)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=past is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (N, H, t, dh)
        return self.out(y.transpose(1, 2).reshape(n, t, d)), (k, v)


class MMoEFFN(nn.Module):
    """Multi-gate mixture of SwiGLU experts (eq. 15): one softmax gate per task.

    All experts run as two plain GEMMs: x (BQ, d) @ w_in as (d, E*2h), then the gate-scaled
    expert activations (BQ, E*h) @ w_out as (E*h, d), which is the gate-weighted sum of the
    experts' outputs (`mmoe_reference` computes it expert by expert). Parameters are kept
    per expert: w_in (E, d, 2h), w_out (E, h, d).
    """

    def __init__(self, d: int, hidden: int, n_experts: int, n_gates: int, dropout: float):
        super().__init__()
        self.e, self.n_gates = n_experts, n_gates
        self.w_in = nn.Parameter(torch.randn(n_experts, d, 2 * hidden) * d**-0.5)
        self.w_out = nn.Parameter(torch.randn(n_experts, hidden, d) * hidden**-0.5)
        self.gate = nn.Linear(d, n_experts * n_gates)
        self.drop = nn.Dropout(dropout)

    def gate_weights(self, x: torch.Tensor, gate_id: torch.Tensor) -> torch.Tensor:
        """x (B, Q, d), gate_id (B,) -> softmax weights of the request's task gate (B, Q, E)."""
        b, q, _ = x.shape
        logits = self.gate(x).view(b, q, self.n_gates, self.e)  # (B, Q, G, E)
        idx = gate_id.view(b, 1, 1, 1).expand(b, q, 1, self.e)
        return logits.gather(2, idx).squeeze(2).softmax(-1)

    def forward(self, x: torch.Tensor, gate_id: torch.Tensor) -> torch.Tensor:
        """x (B, Q, d), gate_id (B,) task of each request -> (B, Q, d)."""
        b, q, d = x.shape
        e, h = self.e, self.w_out.shape[1]
        w_in = self.w_in.permute(1, 0, 2).reshape(d, e * 2 * h)  # (d, E*2h)
        a, g = (x.reshape(b * q, d) @ w_in).view(b * q, e, 2 * h).chunk(2, dim=-1)  # (BQ, E, h)
        w = self.gate_weights(x, gate_id).reshape(b * q, e, 1)
        if torch.is_grad_enabled() or self.training:
            mixed = self.drop(F.silu(a) * g) * w  # (BQ, E, h): SwiGLU of each expert, gate-scaled
        else:  # inference: the same product in place, two fewer (BQ, E, h) tensors to allocate
            mixed = F.silu(a).mul_(g).mul_(w)
        return (mixed.reshape(b * q, e * h) @ self.w_out.reshape(e * h, d)).view(b, q, d)


def mmoe_reference(ffn: MMoEFFN, x: torch.Tensor, gate_id: torch.Tensor) -> torch.Tensor:
    """Plain MMoE (eq. 15), expert by expert: sum_e w_e * SwiGLU_e(x). For tests; no dropout."""
    w = ffn.gate_weights(x, gate_id)  # (B, Q, E)
    h = ffn.w_out.shape[1]
    out = torch.zeros_like(x)
    for k in range(ffn.e):
        a, g = x @ ffn.w_in[k, :, :h], x @ ffn.w_in[k, :, h:]  # (B, Q, h) each
        out = out + w[..., k : k + 1] * ((F.silu(a) * g) @ ffn.w_out[k])
    return out


class SwiGLU(nn.Module):
    """Plain SwiGLU feed-forward: W_out(silu(W_a x) * W_g x)."""

    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.w_in = nn.Linear(d, 2 * hidden, bias=False)
        self.w_out = nn.Linear(hidden, d, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d) -> (..., d)."""
        a, g = self.w_in(x).chunk(2, dim=-1)
        return self.w_out(self.drop(F.silu(a) * g))


class HistoryEncoderBlock(nn.Module):
    """Pre-norm self-attention + SwiGLU over the behaviour memory.

    Not in UniRec's §3.5 (its K/V are the projected behaviours, eq. 13); an option that
    lets history items interact before the decoder reads them, as TIGER's encoder does
    (bidirectional), or, `causal`, each item sees only itself and earlier ones (SASRec's
    blocks: the state at position t summarises the history up to t).
    """

    def __init__(self, d: int, n_heads: int, hidden: int, dropout: float, causal: bool = False):
        super().__init__()
        self.causal = causal
        if d % n_heads:
            raise ValueError(f"d_model {d} is not divisible by n_heads {n_heads}")
        self.h, self.dh = n_heads, d // n_heads
        self.norm_sa = nn.RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.norm_ff = nn.RMSNorm(d)
        self.ffn = SwiGLU(d, hidden, dropout)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, d) memory, mask (B, S) True = real token -> (B, S, d)."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm_sa(x)).view(b, s, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        attn = mask[:, None, None, :]  # (B, 1, 1, S) keys
        if self.causal:  # keys at or before the query; a padding query sees itself (no NaN)
            eye = torch.eye(s, dtype=torch.bool, device=x.device)
            attn = (attn & torch.ones_like(eye).tril()) | eye  # (B, 1, S, S)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, S, dh)
        x = x + self.drop(self.out(y.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.ffn(self.norm_ff(x)))


class DecoderBlock(nn.Module):
    """Pre-norm block: [causal self-attn] + gated cross-attn + MMoE-FFN (eq. 14-15)."""

    def __init__(
        self,
        d: int,
        n_heads: int,
        hidden: int,
        n_experts: int,
        n_gates: int,
        dropout: float,
        self_attention: bool,
    ):
        super().__init__()
        self.self_attn = CausalSelfAttention(d, n_heads, dropout) if self_attention else None
        self.norm_sa = nn.RMSNorm(d) if self_attention else None
        self.norm_ca = nn.RMSNorm(d)
        self.cross = GatedCrossAttention(d, n_heads, dropout)
        self.norm_ff = nn.RMSNorm(d)
        self.ffn = MMoEFFN(d, hidden, n_experts, n_gates, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        kv: KV,
        mem_mask: torch.Tensor,
        gate_id: torch.Tensor,
        past: KV | None = None,
    ) -> tuple[torch.Tensor, KV | None]:
        """x (B, W, t, d): W beams of t new path positions per request.

        `past` caches the self-attention keys/values of earlier positions, (B*W, H, t0, dh).
        Returns (B, W, t, d) and the updated cache (None without self-attention).
        """
        b, w, t, d = x.shape
        cache = None
        if self.self_attn is not None:
            y, cache = self.self_attn(self.norm_sa(x).view(b * w, t, d), past)
            x = x + self.drop(y.view(b, w, t, d))
        q = self.norm_ca(x).view(b, w * t, d)  # every beam's queries share the request's K/V
        x = x + self.drop(self.cross(q, kv, mem_mask)).view(b, w, t, d)
        x = x + self.drop(self.ffn(self.norm_ff(x).view(b, w * t, d), gate_id)).view(b, w, t, d)
        return x, cache
