"""Preference alignment by DPO with a layer-wise stop-gradient (unirec §3.6.2, eq. 25-28).

Preference level R(x) = 2 purchased, 1 clicked, 0 exposed only (eq. 25); within one request
x_i > x_j when R(x_i) > R(x_j), or, at equal level, when x_i was shown higher (eq. 26).
log pi(y|u) = sum_{t<P} sg[log p(s_t | s_<t, u)] + log p(s_P | s_<P, u)              (eq. 28)
and the final SID layer's head input is detached too, so DPO moves that rank head only
(with its trie-edge vectors, when on; a trailing dedup step counts as frozen prefix).
L_DPO = -log sigma(beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))  (eq. 27)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from models.retriever.model import UniRec


def preference_level(rows: pd.DataFrame) -> np.ndarray:
    """Eq. 25 from the purchase / click labels of exposure rows."""
    return np.where(rows["purchase"] > 0, 2, np.where(rows["click"] > 0, 1, 0))


def preference_pairs(rows: pd.DataFrame, per_request: int, seed: int = 0) -> pd.DataFrame:
    """Eq. 26: (request, winner, loser) pairs, both shown in the same request.

    Per request up to `per_request` pairs: strict behaviour preferences first (purchase >
    click > exposure), then equal-level pairs ordered by exposure rank. Columns: request_id,
    winner, loser (row labels of `rows`), winner_level, loser_level.
    """
    rng = np.random.default_rng(seed)
    level = preference_level(rows)
    pos = rows["position"].fillna(0).to_numpy()
    out = []
    for _, idx in rows.groupby("request_id", sort=False).indices.items():
        if len(idx) < 2:
            continue
        i, j = np.triu_indices(len(idx), 1)
        a, b = idx[i], idx[j]
        a_wins = (level[a] > level[b]) | ((level[a] == level[b]) & (pos[a] < pos[b]))
        w, lo = np.where(a_wins, a, b), np.where(a_wins, b, a)
        keep = (level[w] > level[lo]) | (pos[w] != pos[lo])  # a strict order only
        w, lo = w[keep], lo[keep]
        strict = level[w] > level[lo]
        order = np.r_[
            rng.permutation(np.flatnonzero(strict)), rng.permutation(np.flatnonzero(~strict))
        ]
        for k in order[:per_request]:
            out.append((rows["request_id"].iloc[w[k]], w[k], lo[k], level[w[k]], level[lo[k]]))
    return pd.DataFrame(
        out, columns=["request_id", "winner", "loser", "winner_level", "loser_level"]
    )


def last_sid_step(model: UniRec) -> int:
    """Index of the final SID layer s_L among the decoding steps (a dedup step may follow)."""
    steps = [t for t, f in enumerate(model.cfg.path.fields) if f[:1] == "s" and f[1:].isdigit()]
    return steps[-1] if steps else model.n_steps - 1


def sequence_logprob(
    model: UniRec, batch: dict[str, torch.Tensor], target: torch.Tensor, stop_gradient: bool = True
) -> torch.Tensor:
    """log pi(y|u) of the paths `target` (B, P) under teacher forcing: (B,), eq. 28.

    Each step's logits come from `UniRec.head_logits`, the path beam search decodes: with
    `retriever.model.node_dim` / `trie_softmax` on, the trie-edge vectors and the softmax
    over the node's children are part of log pi, so DPO scores what serving ranks.

    With `stop_gradient`, every step but the final SID layer is computed without gradient
    (attribute steps, earlier SID layers and a trailing dedup step alike) and that layer's
    rank head reads detached inputs (decoder state, prefix embeddings, content summary), so
    only its head receives gradient and every other prediction stays intact.
    """
    grad = torch.is_grad_enabled()
    tgt = last_sid_step(model)
    with torch.set_grad_enabled(grad and not stop_gradient):
        ctx = model.encode(batch)
        q = model._decode(ctx, target[:, None, :-1])[0][:, 0]  # (B, P, d)
        cs = model.cs(target, model.n_steps) if model.cs is not None else None
        fields = [
            model.head_fields(t, q[:, t], target, cs[:, t] if cs is not None else None, ctx.h_agg)
            for t in range(model.n_steps)
        ]
        logits = {
            t: model.head_logits(t, fields[t], target) for t in range(model.n_steps) if t != tgt
        }
    with torch.set_grad_enabled(grad):  # the DPO target layer: its head and its edge vectors
        logits[tgt] = model.head_logits(tgt, fields[tgt], target, detach_items=stop_gradient)
    steps = [
        logits[t].float().log_softmax(-1).gather(1, target[:, t : t + 1])[:, 0]
        for t in range(model.n_steps)
    ]
    return torch.stack(steps, 1).sum(1)


def dpo_loss(
    policy: UniRec,
    reference: UniRec,
    ctx_batch: dict[str, torch.Tensor],
    winner: torch.Tensor,
    loser: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Eq. 27 over pairs: ctx_batch holds each pair's request inputs, winner/loser (B, P)."""
    pw = sequence_logprob(policy, ctx_batch, winner)
    pl = sequence_logprob(policy, ctx_batch, loser)
    with torch.no_grad():
        rw = sequence_logprob(reference, ctx_batch, winner, stop_gradient=False)
        rl = sequence_logprob(reference, ctx_batch, loser, stop_gradient=False)
    return -F.logsigmoid(beta * ((pw - rw) - (pl - rl))).mean()
