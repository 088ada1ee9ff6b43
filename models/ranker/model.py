"""DIG ranker (dig §3.2-3.4): one DIN + DCNv2 + MoE mixer for ranking and SID retrieval.

    item v  -> Enc(x_v^s) = e_v (d)                                          (eq. 1)
    SID     -> e_sid^(1:l) = sum_{i<=l} E^sid_i[s_i] (d), learnable, not the codebook (eq. 5)
    user    -> e_u = [profile, scene, dense user stats]; history -> Enc -> H (T, d)
    rank    -> sigma(Mixer(BN_u(e_u), BN_v(e_v), BN_u2i(c_{u,v})))                 (eq. 6)
               one logit per objective in `tasks` (click first; purchase: the predicted
               engagement RFT's reward aggregates, unirec eq. 21)
    recall  -> sigma(Mixer(BN_u(e_u), BN_sid(e_sid^(1:l)), BN_u2t(u2t^(1:l))))     (eq. 7, 16)
    Mixer   -> DIN target attention over H (query = the item / token side), DCNv2 cross
               layers, an MoE of MLP experts, a logit
    u2t     -> MLP_u2t^(l)([e_u; e_sid^(1:l)]) (eq. 14) or the training-set bucket mean of c
               (DIG Ablation 3)

Serving (MaRI, related-abstracts.txt): the first fused matmuls of the Mixer, DIN's first layer
over [q, k, q-k, q*k] and DCNv2's first layer over [e_u, pooled, item, cross], are split into a
user block computed once per request and an item block per candidate (`mari_user`,
`rank_task_logits_mari`); the outputs equal the plain path's.

Codebook vectors c_{l,k} only address; they follow EMA means of the encoder residuals and
give L_commit (eq. 11) and L_sem (eq. 12). With `sid: fixed` the codes are the SID table's
(DIG's fixed-SID ablation); with `sid: learned` the codebooks start as the mean residuals of
the table's codes (the capacity-constrained tree, §3.2 "zero-collision initialisation") and
`reassign` re-codes the catalogue by argmin against them (eq. 2-3), so `item_sids` holds
the learned codes (saved with the weights). B rows, T history, L SID layers, D_c cross features.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class RankerConfig:
    """What rebuilds the network (saved in config.json beside the weights)."""

    field_vocab: dict[str, int]  # embedding-table sizes: item fields, user fields, scene
    item_fields: list[str]
    user_fields: list[str]
    n_user_dense: int
    n_cross: int
    n_layers: int  # SID layers L
    codebook_size: int  # K
    d_emb: int = 32
    d_field: int = 16
    cross_layers: int = 2
    n_experts: int = 4
    expert_hidden: int = 128
    u2t_hidden: int = 64
    u2t: str = "mlp"  # mlp | bucket_mean | mlp_on_bucket_mean
    lambda_commit: float = 0.25  # eq. 8: lambda_1, lambda_2, lambda_3
    lambda_sem: float = 0.1
    lambda_u2t: float = 0.1  # DIG §4.1: lambda_3 = 0.1
    ema_decay: float = 0.99
    sid: str = "fixed"  # fixed | learned (codes re-assigned by argmin, eq. 2-3)
    tasks: list[str] = field(default_factory=lambda: ["click"])  # rank-path objectives
    mari: bool = True  # serving scores through the re-parameterised path (MaRI)

    def to_json(self) -> str:
        """Serialise."""
        return json.dumps(asdict(self))


@dataclass
class UserSide:
    """The user-side part, computed once per request and reused for every candidate (MaRI)."""

    e_u: torch.Tensor  # (B, d_u) BN_u(e_u)
    hist: torch.Tensor  # (B, T, d) Enc of the history items
    mask: torch.Tensor  # (B, T) True where a history item exists

    def expand(self, n: int) -> UserSide:
        """One request's user side repeated for n candidates: (1, ...) -> (n, ...)."""
        return UserSide(*(x.expand(n, *x.shape[1:]) for x in (self.e_u, self.hist, self.mask)))


@dataclass
class MaRIUser:
    """MaRI (related-abstracts.txt): the user blocks of the Mixer's first fused matmuls, once
    per request. With W the first layer of DIN's MLP split by input [q | k | q-k | q*k] into
    W_q, W_k, W_d, W_p, and A the first DCNv2 layer split by input [e_u | pooled, item, cross]:

        W [q; k; q-k; q*k] + b = ((W_q + W_d) + W_p diag(k)) q + (W_k - W_d) k + b
        A x0 + a               = A_u e_u + a + A_rest [pooled; item; cross]

    so per history item k_t the matrix (W_q + W_d) + W_p diag(k_t) and the vector
    (W_k - W_d) k_t + b, and A_u e_u + a, are computed once; a candidate then costs one
    (d -> T x 64) product in DIN and the item columns of A."""

    side: UserSide  # (1, ...) the request's user side
    din_matrix: torch.Tensor  # (d, T * h): per history item, the query's first-layer map
    din_bias: torch.Tensor  # (T, h): the history items' first-layer part
    cross0: torch.Tensor | None  # (D_mix,): A_u e_u + a; None without cross layers


class ItemEncoder(nn.Module):
    """Enc(x_v^s): static item fields -> e_v (eq. 1)."""

    def __init__(self, vocab: list[int], d_field: int, d: int):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(v, d_field) for v in vocab)
        self.proj = nn.Sequential(nn.Linear(d_field * len(vocab), d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """fields (..., F) ids -> (..., d)."""
        return self.proj(torch.cat([e(fields[..., i]) for i, e in enumerate(self.emb)], -1))


class TargetAttention(nn.Module):
    """DIN (Zhou et al. 2018): sum of history items weighted by an MLP of [q, k, q-k, q*k]."""

    def __init__(self, d: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * d, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """q (B, d), keys (B, T, d), mask (B, T) -> pooled (B, d)."""
        qe = q[:, None, :].expand_as(keys)
        w = self.mlp(torch.cat([qe, keys, qe - keys, qe * keys], -1)).squeeze(-1)  # (B, T)
        # no softmax: DIN keeps the intensity of an interest (how many related items)
        w = torch.sigmoid(w) * mask / mask.shape[1] ** 0.5
        return (w[..., None] * keys).sum(1)


class CrossNet(nn.Module):
    """DCNv2 cross layers: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l."""

    def __init__(self, d: int, n: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(n))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, D) -> (B, D)."""
        x = x0
        for lin in self.layers:
            x = x0 * lin(x) + x
        return x


class MoE(nn.Module):
    """Softmax-gated mixture of MLP experts -> one logit."""

    def __init__(self, d: int, n_experts: int, hidden: int, n_out: int = 1):
        super().__init__()
        self.gate = nn.Linear(d, n_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU()
            )
            for _ in range(n_experts)
        )
        self.out = nn.Linear(hidden // 2, n_out)  # one logit per objective

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, D) -> logits (B, n_out)."""
        g = self.gate(x).softmax(-1)  # (B, E)
        h = torch.stack([e(x) for e in self.experts], 1)  # (B, E, H/2)
        return self.out((g[..., None] * h).sum(1))


class DIGRanker(nn.Module):
    """Rank path (eq. 6) and per-layer retrieval path (eq. 7) over one shared Mixer."""

    def __init__(self, cfg: RankerConfig, item_fields: torch.Tensor, item_sids: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        d, df, L, K = cfg.d_emb, cfg.d_field, cfg.n_layers, cfg.codebook_size
        self.register_buffer("item_fields", item_fields)  # (N+1, F) ids, row 0 = padding
        self.register_buffer("item_sids", item_sids)  # (N+1, L) code + 1, 0 = no SID
        self.enc = ItemEncoder([cfg.field_vocab[f] for f in cfg.item_fields], df, d)
        self.user_emb = nn.ModuleList(nn.Embedding(cfg.field_vocab[f], df) for f in cfg.user_fields)
        self.scene_emb = nn.Embedding(cfg.field_vocab["scene"], df)
        d_u = df * (len(cfg.user_fields) + 1) + cfg.n_user_dense
        self.bn_u = nn.BatchNorm1d(d_u)  # shared by both paths
        self.bn_v, self.bn_sid = nn.BatchNorm1d(d), nn.BatchNorm1d(d)
        nc = max(cfg.n_cross, 1)
        self.bn_u2i, self.bn_u2t = nn.BatchNorm1d(nc), nn.BatchNorm1d(nc)
        # SID embeddings per layer (index code + 1; 0 = item without SID): eq. 5
        self.sid_emb = nn.ModuleList(nn.Embedding(K + 1, d) for _ in range(L))
        self.register_buffer("codebooks", torch.zeros(L, K, d))  # c_{l,k}: EMA, addressing
        self.mlp_u2t = nn.ModuleList(  # eq. 14, one per layer
            nn.Sequential(
                nn.Linear(d_u + 2 * d, cfg.u2t_hidden), nn.ReLU(), nn.Linear(cfg.u2t_hidden, nc)
            )
            for _ in range(L)
        )
        for layer in range(L):  # bucket-mean u2t tables (Ablation 3): sorted keys -> mean c
            self.register_buffer(f"bucket_keys_{layer}", torch.zeros(0, dtype=torch.long))
            self.register_buffer(f"bucket_means_{layer}", torch.zeros(0, nc))
        self.attention = TargetAttention(d)
        d_mix = d_u + 2 * d + nc
        self.cross = CrossNet(d_mix, cfg.cross_layers)
        if not cfg.tasks or cfg.tasks[0] != "click":
            raise ValueError(f"ranker tasks must start with click (the rank path), got {cfg.tasks}")
        self.moe = MoE(d_mix, cfg.n_experts, cfg.expert_hidden, len(cfg.tasks))
        for emb in self.sid_emb:
            nn.init.normal_(emb.weight, std=0.05)

    # ---- user side (once per request) -----------------------------------------------
    def user_side(
        self, profile: torch.Tensor, scene: torch.Tensor, dense: torch.Tensor, hist: torch.Tensor
    ) -> UserSide:
        """profile (B, P) ids, scene (B,), dense (B, D_u), hist (B, T) item rows -> UserSide."""
        parts = [e(profile[:, i]) for i, e in enumerate(self.user_emb)]
        e_u = torch.cat([*parts, self.scene_emb(scene), dense], -1)  # (B, d_u)
        keys = self.enc(self.item_fields[hist])  # (B, T, d)
        return UserSide(self.bn_u(e_u), keys, hist > 0)

    # ---- shared mixer ------------------------------------------------------------------
    def mixer(
        self,
        user: UserSide,
        item: torch.Tensor,
        cross: torch.Tensor,
        pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """user side, item-side vector (B, d) and cross (B, D_c), both BN-ed -> click logits (B,)."""
        return self.mixer_all(user, item, cross, pooled)[:, 0]

    def mixer_all(
        self,
        user: UserSide,
        item: torch.Tensor,
        cross: torch.Tensor,
        pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`mixer` with every objective's logit: (B, len(tasks))."""
        if pooled is None:
            pooled = self.attention(item, user.hist, user.mask)  # DIN, query = item side
        return self.moe(self.cross(torch.cat([user.e_u, pooled, item, cross], -1)))

    def rank_logits(self, user: UserSide, rows: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        """Eq. 6: rows (B,) item rows, cross (B, D_c) c_{u,v} -> click logits (B,)."""
        return self.rank_task_logits(user, rows, cross)[:, 0]

    def rank_task_logits(
        self, user: UserSide, rows: torch.Tensor, cross: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 6 for every objective of `cfg.tasks`: -> logits (B, len(tasks))."""
        e_v = self.enc(self.item_fields[rows])
        return self.mixer_all(user, self.bn_v(e_v), self.bn_u2i(self._cross(cross)))

    # ---- MaRI: the same rank path, user blocks of the fused matmuls once per request ------
    def mari_user(self, user: UserSide) -> MaRIUser:
        """The request's user blocks (`MaRIUser`); `user` holds one request, (1, ...)."""
        keys, mask = user.hist[0], user.mask[0]  # (T, d), (T,)
        first = self.attention.mlp[0]  # Linear(4d, h) over [q, k, q-k, q*k]
        w_q, w_k, w_d, w_p = first.weight.split(keys.shape[1], dim=1)  # (h, d) each
        # (T, d, h): (W_q + W_d) + W_p diag(k_t), transposed for a row-vector query
        per_item = (w_q + w_d).T[None] + keys[:, :, None] * w_p.T[None]
        din_matrix = per_item.permute(1, 0, 2).reshape(keys.shape[1], -1)  # (d, T*h)
        din_bias = keys @ (w_k - w_d).T + first.bias  # (T, h)
        cross0 = None
        if len(self.cross.layers):
            lin = self.cross.layers[0]
            d_u = user.e_u.shape[1]
            cross0 = user.e_u[0] @ lin.weight[:, :d_u].T + lin.bias  # (D_mix,)
        return MaRIUser(UserSide(user.e_u, user.hist, mask[None]), din_matrix, din_bias, cross0)

    def rank_task_logits_mari(
        self, pre: MaRIUser, rows: torch.Tensor, cross: torch.Tensor
    ) -> torch.Tensor:
        """`rank_task_logits` of one request's candidates rows (n,), cross (n, D_c) through the
        split matmuls: -> (n, len(tasks)), equal to the plain path up to float rounding."""
        item = self.bn_v(self.enc(self.item_fields[rows]))  # (n, d)
        c = self.bn_u2i(self._cross(cross))
        keys, mask = pre.side.hist[0], pre.side.mask[0]  # (T, d), (T,)
        n, t = len(item), keys.shape[0]
        h = (item @ pre.din_matrix).view(n, t, -1) + pre.din_bias  # (n, T, h): DIN layer 1
        w = self.attention.mlp[2](self.attention.mlp[1](h)).squeeze(-1)  # (n, T)
        w = torch.sigmoid(w) * mask / t**0.5
        pooled = w @ keys  # (n, d)
        e_u = pre.side.e_u.expand(n, -1)
        x0 = torch.cat([e_u, pooled, item, c], -1)  # (n, D_mix)
        if pre.cross0 is None:
            return self.moe(self.cross(x0))
        layers = self.cross.layers
        d_u = e_u.shape[1]
        first = pre.cross0 + x0[:, d_u:] @ layers[0].weight[:, d_u:].T  # A x0 + a, item block
        x = x0 * first + x0
        for lin in layers[1:]:
            x = x0 * lin(x) + x
        return self.moe(x)

    def sid_prefix(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """codes (B, L) code + 1 -> [e_sid^(1:l) (B, d) for l = 1..L] (eq. 5)."""
        out, acc = [], 0
        for layer, emb in enumerate(self.sid_emb):
            acc = acc + emb(codes[:, layer])
            out.append(acc)
        return out

    def u2t(
        self,
        user: UserSide,
        pooled: torch.Tensor,
        e_sid: torch.Tensor,
        codes: torch.Tensor,
        layer: int,
    ) -> torch.Tensor:
        """u2t^(1:l) for retrieval, by `cfg.u2t`:

        - `mlp`: MLP_u2t([e_u; e_sid^(1:l)]) (eq. 14);
        - `bucket_mean`: the training-set mean of c in the SID bucket (DIG Ablation 3);
        - `mlp_on_bucket_mean`: that statistic plus MLP_u2t's user-conditioned correction
          (the statistic carries the token's level, the MLP the personalisation).
        e_u here is the user's profile and stats plus their behaviour sequence attended with
        the token as query (DIG's x_u holds the behaviour history); all known at inference.
        """
        mode = self.cfg.u2t
        mlp = None
        if mode in ("mlp", "mlp_on_bucket_mean"):
            mlp = self.mlp_u2t[layer](torch.cat([user.e_u, pooled, e_sid], -1))
            if mode == "mlp":
                return mlp
        base = self.bucket_mean(codes, layer)
        return base if mlp is None else base + mlp

    def bucket_mean(self, codes: torch.Tensor, layer: int) -> torch.Tensor:
        """Training-set mean of c over the rows whose SID prefix (layer `layer`) is `codes`'."""
        keys = getattr(self, f"bucket_keys_{layer}")
        means = getattr(self, f"bucket_means_{layer}")
        k = prefix_keys(codes, layer, self.cfg.codebook_size)
        if len(keys) == 0:
            return torch.zeros(len(k), means.shape[1], device=k.device)
        at = torch.searchsorted(keys, k).clamp(max=len(keys) - 1)
        return torch.where((keys[at] == k)[:, None], means[at], 0.0)

    def recall_logits(self, user: UserSide, codes: torch.Tensor) -> tuple[list, list]:
        """Eq. 7 / 16: codes (B, L) -> ([logits (B,) per layer], [u2t_hat (B, D_c) per layer])."""
        logits, u2ts = [], []
        for layer, e_sid in enumerate(self.sid_prefix(codes)):
            logit, u2t = self.recall_at(user, e_sid, codes, layer)
            logits.append(logit)
            u2ts.append(u2t)
        return logits, u2ts

    def recall_at(
        self, user: UserSide, e_sid: torch.Tensor, codes: torch.Tensor, layer: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 16 at one layer: e_sid^(1:l) (B, d), codes (B, L) (columns after `layer` unused)
        -> (click logit (B,), u2t_hat (B, D_c)); u2t_hat replaces c_{u,v} (§3.4)."""
        item = self.bn_sid(e_sid)
        pooled = self.attention(item, user.hist, user.mask)
        u2t = self.u2t(user, pooled, e_sid, codes, layer)
        return self.mixer(user, item, self.bn_u2t(u2t), pooled), u2t

    def prefix_logit(self, user: UserSide, codes: torch.Tensor, layer: int) -> torch.Tensor:
        """Retrieval score of SID prefixes s_1..s_{layer+1}: codes (B, L) code + 1 -> (B,)."""
        e_sid = sum(self.sid_emb[i](codes[:, i]) for i in range(layer + 1))
        return self.recall_at(user, e_sid, codes, layer)[0]

    def _cross(self, cross: torch.Tensor) -> torch.Tensor:
        return cross if self.cfg.n_cross else cross.new_zeros(len(cross), 1)

    # ---- tokenizer side: codebooks, residuals --------------------------------------------
    def residuals(self, e_v: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
        """r_0 .. r_{L-1} (each (B, d)) under the fixed codes: r_l = r_{l-1} - c_{l,s_l} (eq. 3)."""
        out, r = [], e_v
        for layer in range(self.cfg.n_layers):
            out.append(r)
            r = r - self.codebooks[layer][(codes[:, layer] - 1).clamp(min=0)]
        return out

    @torch.no_grad()
    def assign(self, e_v: torch.Tensor, unique_last: bool = False) -> torch.Tensor:
        """Greedy residual quantisation (eq. 2-3): e_v (B, d) -> codes (B, L) code + 1,
        s_l = argmin_k ||r_{l-1} - c_{l,k}||, r_l = r_{l-1} - c_{l,s_l}. With `unique_last`
        the last layer gives the B items distinct full codes where it can (`unique_argmin`)."""
        r, out = e_v.float(), []
        for layer in range(self.cfg.n_layers):
            dist = torch.cdist(r, self.codebooks[layer])  # (B, K)
            if unique_last and layer == self.cfg.n_layers - 1:
                k = unique_argmin(dist, prefix_keys(torch.stack(out, 1), layer - 1, dist.shape[1]))
            else:
                k = dist.argmin(1)  # (B,)
            out.append(k + 1)
            r = r - self.codebooks[layer][k]
        return torch.stack(out, 1)

    @torch.no_grad()
    def reassign(self) -> dict[str, float]:
        """`sid: learned`: re-code every catalogue item (rows >= 1) against the current
        codebooks, in place in `item_sids` (eq. 2-3; at the last layer an item whose nearest
        code a nearer item of the same prefix holds takes its next nearest free code, so full
        codes stay distinct: DIG's low-collision design, §3.2). Returns the collision rates of
        the plain argmin and of the kept codes (share of items whose full code another item
        shares) and the share of items whose code moved."""
        e_v = self.enc(self.item_fields[1:])  # (N, d)
        plain = collision_share(self.assign(e_v))
        new = self.assign(e_v, unique_last=True)
        moved = float((new != self.item_sids[1:]).any(1).float().mean()) if len(new) else 0.0
        self.item_sids[1:] = new
        return {"collision": collision_share(new), "collision_argmin": plain, "moved": moved}

    @torch.no_grad()
    def init_codebooks(self) -> None:
        """c_{l,k} = mean residual of the catalogue items coded k at layer l."""
        has = (self.item_sids > 0).all(1)
        codes = self.item_sids[has]
        e_v = self.enc(self.item_fields[has])
        self.codebooks.zero_()
        for layer, r in enumerate(self.residuals(e_v, codes)):
            self._assign_means(layer, r, codes[:, layer] - 1, decay=0.0)

    @torch.no_grad()
    def ema_update(self, residuals: list[torch.Tensor], codes: torch.Tensor) -> None:
        """c_{l,k} <- a c_{l,k} + (1 - a) mean of the batch residuals coded k (§3.2)."""
        ok = (codes > 0).all(1)
        for layer, r in enumerate(residuals):
            r = r[ok].detach().float()  # (bf16 under CUDA autocast)
            self._assign_means(layer, r, codes[ok, layer] - 1, self.cfg.ema_decay)

    def _assign_means(self, layer: int, r: torch.Tensor, k: torch.Tensor, decay: float) -> None:
        K, d = self.codebooks.shape[1:]
        sums = torch.zeros(K, d, device=r.device).index_add_(0, k, r)
        counts = torch.zeros(K, device=r.device).index_add_(0, k, torch.ones_like(k, dtype=r.dtype))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # under DDP every rank sees its shard: the EMA step takes the mean over all shards,
            # so the codebooks stay the same on every rank
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        seen = counts > 0
        mean = sums[seen] / counts[seen, None]
        self.codebooks[layer, seen] = decay * self.codebooks[layer, seen] + (1 - decay) * mean


def unique_argmin(dist: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Per row the nearest column (dist (B, K)) such that no two rows of one group (B,) share
    a column, where the group has at most K rows: the nearer row keeps a contested column,
    the other takes its next nearest (greedy, repeated until no row of a group collides)."""
    dist = dist.clone()
    K = dist.shape[1]
    for _ in range(K):
        k = dist.argmin(1)
        d = dist.gather(1, k[:, None]).squeeze(1)
        key = group * K + k
        by_dist = torch.argsort(d, stable=True)
        order = by_dist[torch.argsort(key[by_dist], stable=True)]  # by key, then distance
        ks = key[order]
        losers = order[1:][ks[1:] == ks[:-1]]  # not the nearest of their (group, column)
        losers = losers[torch.isfinite(d[losers])]  # a full group: no free column left
        if not len(losers):
            return k
        dist[losers, k[losers]] = float("inf")
    return dist.argmin(1)


def collision_share(codes: torch.Tensor) -> float:
    """Share of the rows of codes (N, L) with a SID (all > 0) whose full code another shares
    (models/tokenizer/dedup.py's collision rate, before any dedup index)."""
    codes = codes[(codes > 0).all(1)]
    if not len(codes):
        return 0.0
    _, inv, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return float((counts[inv] > 1).float().mean())


def prefix_keys(codes: torch.Tensor, layer: int, K: int) -> torch.Tensor:
    """One int64 key per row for the SID prefix s_1..s_{layer+1} (codes are code + 1)."""
    key = torch.zeros(len(codes), dtype=torch.long, device=codes.device)
    for i in range(layer + 1):
        key = key * (K + 1) + codes[:, i]
    return key


def group_mean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean of `values` (B, D) over rows sharing a group id (B,), broadcast back (B, D)."""
    _, inv = torch.unique(groups, return_inverse=True)
    n = int(inv.max()) + 1 if len(inv) else 0
    sums = torch.zeros(n, values.shape[1], device=values.device).index_add_(0, inv, values)
    counts = torch.zeros(n, device=values.device).index_add_(
        0, inv, torch.ones_like(inv, dtype=values.dtype)
    )
    return (sums / counts[:, None])[inv]


@dataclass
class LossOutput:
    """The total of eq. 8, its five parts, and the residuals the codebook EMA step needs."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    residuals: list[torch.Tensor]
    codes: torch.Tensor


def dig_losses(model: DIGRanker, batch: dict[str, torch.Tensor]) -> LossOutput:
    """The five-part loss (eq. 8-12, 15) on one batch, plus the other objectives' BCE (`tasks`
    after click, e.g. purchase) on the rank path's extra logits."""
    cfg = model.cfg
    user = model.user_side(batch["profile"], batch["scene"], batch["user_dense"], batch["hist"])
    y = batch["label"].float()
    rows, codes = batch["item"], model.item_sids[batch["item"]]  # (B,), (B, L)
    cross = model._cross(batch["cross"])
    task_logits = model.rank_task_logits(user, rows, batch["cross"])  # (B, len(tasks))
    l_rank = F.binary_cross_entropy_with_logits(task_logits[:, 0], y)
    l_obj = torch.zeros((), device=y.device)
    for k, task in enumerate(cfg.tasks[1:], 1):  # the other objectives' heads, same inputs
        l_obj = l_obj + F.binary_cross_entropy_with_logits(
            task_logits[:, k], batch[f"label_{task}"].float()
        )
    recall, u2t_hat = model.recall_logits(user, codes)  # eq. 10: layer-wise supervision
    l_recall = sum(F.binary_cross_entropy_with_logits(lg, y) for lg in recall) / len(recall)
    e_v = model.enc(model.item_fields[rows])  # r_0 = e_v
    res = model.residuals(e_v, codes)
    has = (codes > 0).all(1).float()[:, None]  # items with a SID
    n, d = max(float(has.sum()), 1.0), e_v.shape[1]
    chosen = [model.codebooks[i][(codes[:, i] - 1).clamp(min=0)] for i in range(len(res))]
    # eq. 11: sum_l ||sg[c_{l,s_l}] - r_{l-1}||^2 (codebooks are buffers: no gradient)
    l_commit = sum(((c - r) ** 2 * has).sum() for c, r in zip(chosen, res, strict=True)) / n / d
    l_sem = ((e_v - sum(chosen)) ** 2 * has).sum() / n / d  # eq. 12
    l_u2t = torch.zeros((), device=y.device)
    if cfg.u2t != "bucket_mean":  # eq. 13 teacher: mean c over the batch rows of (user, bucket s_l)
        for layer, pred in enumerate(u2t_hat):
            bucket = prefix_keys(codes, layer, cfg.codebook_size)
            groups = batch["user_key"] * (cfg.codebook_size + 1) ** (layer + 1) + bucket
            teacher = group_mean(cross, groups).detach()  # sg[u2t^(l)(u)]
            l_u2t = l_u2t + ((pred - teacher) ** 2).mean() / len(u2t_hat)  # eq. 15
    total = (
        l_rank
        + l_obj
        + l_recall
        + cfg.lambda_commit * l_commit
        + cfg.lambda_sem * l_sem
        + cfg.lambda_u2t * l_u2t
    )
    parts = {
        "rank": l_rank,
        "objectives": l_obj,
        "recall": l_recall,
        "commit": l_commit,
        "sem": l_sem,
        "u2t": l_u2t,
    }
    return LossOutput(total, parts, res, codes)
