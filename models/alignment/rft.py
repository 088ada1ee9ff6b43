"""Reward-Driven Fine-tuning (unirec §3.6.1, eq. 21-24).

R_i = F({y^_k(u_i, x_i)}_k): the ranker's predicted engagement aggregated     (eq. 21)
      F = sum_k w_k y^_k + w_gmv log1p(y^_GMV), y^_GMV = y^_purchase * price
      (`alignment.reward: predicted`, weights `alignment.reward_weights`), or the logged
      outcome: engagement value of the behaviour + gmv_weight * log1p(GMV paid) (`logged`)
A_i = R_i - mean_B(R)                                                               (eq. 22)
A~_i = clip(A_i / (RMS_B(A) + eps), -c, c)                                          (eq. 23)
L_RFT = mean_i (1 + lambda A~_i) * alpha_i * sum_t -log p(s*_t | s*_<t, u, task)    (eq. 24)
alpha_i: proportional to 1 + log1p(GMV_i) of the interacted item (logged), scaled to mean 1
in the batch, so purchases of dear items pull hardest.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.retriever.model import UniRec


def rewards(
    event_type: np.ndarray, gmv: np.ndarray, values: dict[str, float], gmv_weight: float
) -> np.ndarray:
    """Eq. 21: composite reward per sample from its behaviour and the GMV it brought."""
    base = np.array([values.get(str(e), 0.0) for e in event_type], np.float32)
    return base + gmv_weight * np.log1p(np.clip(np.nan_to_num(gmv), 0, None)).astype(np.float32)


def predicted_rewards(
    probs: dict[str, np.ndarray], price: np.ndarray, weights: dict[str, float]
) -> np.ndarray:
    """Eq. 21 with predicted engagement: `probs` objective -> y^_k (n,) from the ranker,
    `price` (n,) of the item; R = sum_k w_k y^_k + w_gmv log1p(y^_purchase * price)."""
    n = len(price)
    r = np.zeros(n, np.float32)
    for k, w in weights.items():
        if k == "gmv":
            gmv = probs["purchase"] * np.clip(np.nan_to_num(price), 0, None)  # expected GMV
            r += w * np.log1p(gmv).astype(np.float32)
        elif w:
            r += w * probs[k].astype(np.float32)
    return r


def advantages(reward: torch.Tensor, clip: float, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 22-23: batch-centred reward divided by its batch RMS, clipped to [-clip, clip]."""
    a = reward - reward.mean()
    rms = a.pow(2).mean().sqrt()
    return (a / (rms + eps)).clamp(-clip, clip)


def sample_weights(
    reward: torch.Tensor, gmv: torch.Tensor, lam: float, clip: float
) -> torch.Tensor:
    """(1 + lambda * A~_i) * alpha_i of eq. 24, alpha scaled to mean 1 over the batch."""
    alpha = 1.0 + torch.log1p(gmv.clamp(min=0))
    alpha = alpha / alpha.mean()
    return (1.0 + lam * advantages(reward, clip)) * alpha


def rft_loss(
    model: UniRec, batch: dict[str, torch.Tensor], lam: float, clip: float
) -> torch.Tensor:
    """Eq. 24 on one batch (needs `reward` and `gmv` per sample besides the model inputs)."""
    logits = model.step_logits(batch)
    target = batch["target"]
    nll = sum(
        F.cross_entropy(lg.float(), target[:, t], reduction="none")  # (B,)
        for t, lg in enumerate(logits)
    )
    w = sample_weights(batch["reward"], batch["gmv"], lam, clip).detach()
    return (w * nll).mean()
