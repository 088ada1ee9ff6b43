"""UNGER-style fused item embeddings (unger §3.3): one space for collaborative and semantic views.

- Modality adaptation layer (§3.3.1, eq. 2): maps the semantic embedding s_i into the
  collaborative space, MAL(s) = W2 . GELU(AdaLN(W1 s)), where AdaLN's scale and shift are
  predicted from the input itself (Peebles & Xie 2023).
- Cross-modality alignment (§3.3.2, eq. 3): InfoNCE pulling the collaborative embedding
  c_i towards MAL(s_i) and away from MAL(s_j) of the other items in the batch.
- Next-item prediction (§3.3.3, eq. 4) by the SASRec-style model (collaborative.py).
- Joint loss (§3.3.4, eq. 5): L = L_next + lambda * L_align.

Training can warm-start from the previous day's encoder (daily rebuilds stay close to
yesterday's space, so yesterday's codebooks remain a good start).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from models.tokenizer.collaborative import SASRec, training_windows
from sidflow.config import SidEncoderParams


class AdaLN(nn.Module):
    """LayerNorm with scale/shift predicted from a conditioning vector (zero-initialised)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.mod = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """h (B, dim), cond (B, cond_dim) -> (B, dim)."""
        gamma, beta = self.mod(cond).chunk(2, dim=-1)
        return self.norm(h) * (1 + gamma) + beta


class ModalityAdapter(nn.Module):
    """MAL (eq. 2): semantic (B, in_dim) -> collaborative space (B, dim)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.w1 = nn.Linear(in_dim, 2 * dim)
        self.ada = AdaLN(2 * dim, in_dim)
        self.w2 = nn.Linear(2 * dim, dim)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.ada(self.w1(s), s)))


def info_nce(c: torch.Tensor, s: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq. 3: -mean_i log softmax_j(cos(c_i, s_j) / T)[i]; c, s (B, dim), in-batch negatives."""
    logits = F.normalize(c, dim=-1) @ F.normalize(s, dim=-1).T / temperature  # (B, B)
    return F.cross_entropy(logits, torch.arange(len(c), device=c.device))


class ItemEncoder(nn.Module):
    """SASRec (collaborative view) plus, for fused embeddings, the modality adaptation layer."""

    def __init__(self, n_items: int, cfg: SidEncoderParams, semantic_dim: int | None):
        super().__init__()
        self.sasrec = SASRec(n_items, cfg.dim, cfg.layers, cfg.heads, cfg.max_len, cfg.dropout)
        self.adapter = ModalityAdapter(semantic_dim, cfg.dim) if semantic_dim else None

    @torch.no_grad()
    def collaborative(self) -> torch.Tensor:
        """(N, dim) L2-normalised collaborative item embeddings."""
        return F.normalize(self.sasrec.item_embeddings(), dim=-1)

    @torch.no_grad()
    def adapted(self, semantic: torch.Tensor) -> torch.Tensor:
        """(B, dim) L2-normalised MAL(s): the content-only path (also used for cold items)."""
        if self.adapter is None:
            raise ValueError("this encoder was trained without a modality adaptation layer")
        return F.normalize(self.adapter(semantic), dim=-1)


def train_item_encoder(
    sequences: list[np.ndarray],
    n_items: int,
    semantic: np.ndarray | None,
    cfg: SidEncoderParams,
    epochs: int,
    seed: int,
    init: tuple[dict[str, torch.Tensor], np.ndarray] | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> tuple[ItemEncoder, dict]:
    """Train the encoder on engagement sequences (item rows); returns it and a loss history.

    semantic: (N, S) embeddings to align with (fused), or None (collaborative only).
    init: (state_dict, old_row_of_new_row) to warm-start from; old_row is -1 for new items.
    """
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(sequences, n_items, semantic, cfg, epochs, seed, init, device, progress)
    finally:
        torch.set_num_threads(threads)


def _train(sequences, n_items, semantic, cfg, epochs, seed, init, device, progress):  # noqa: ANN001, ANN202
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ItemEncoder(n_items, cfg, None if semantic is None else semantic.shape[1])
    if init is not None:
        _warm_start(model, *init)
    model.to(device)
    x_all, y_all = training_windows(sequences, cfg.max_len)  # (W, T) each
    sem = (
        None if semantic is None else torch.as_tensor(semantic, dtype=torch.float32, device=device)
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history = {"next_item": [], "align": [], "windows": len(x_all)}
    use_align = sem is not None and cfg.align_weight > 0
    bar = tqdm(range(epochs), desc="item encoder", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        sums = np.zeros(2)
        batches = 0
        for b in np.array_split(rng.permutation(len(x_all)), max(1, len(x_all) // cfg.batch_size)):
            if len(b) == 0:
                continue
            x = torch.as_tensor(x_all[b], device=device)
            y = torch.as_tensor(y_all[b], device=device)
            loss_next = model.sasrec.next_item_loss(x, y)  # eq. 4
            loss = loss_next
            loss_align = torch.zeros(())
            if use_align:
                tokens = torch.unique(y[y > 0])  # the batch's target items, in-batch negatives
                c = model.sasrec.item(tokens)
                s = model.adapter(sem[tokens - 1])
                loss_align = info_nce(c, s, cfg.temperature)  # eq. 3
                loss = loss_next + cfg.align_weight * loss_align  # eq. 5
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums += [loss_next.item(), loss_align.item()]
            batches += 1
        history["next_item"].append(round(sums[0] / max(batches, 1), 4))
        history["align"].append(round(sums[1] / max(batches, 1), 4))
        bar.set_postfix(next=history["next_item"][-1], align=history["align"][-1])
    model.eval()
    return model.cpu(), history


def _warm_start(model: ItemEncoder, state: dict[str, torch.Tensor], old_rows: np.ndarray) -> None:
    """Load a previous encoder; item rows are remapped (new items keep their fresh init)."""
    key = "sasrec.item.weight"
    own = model.state_dict()
    compatible = {
        k: v for k, v in state.items() if k != key and k in own and own[k].shape == v.shape
    }
    model.load_state_dict(compatible, strict=False)
    with torch.no_grad():
        table = model.sasrec.item.weight  # (N + 1, dim), row 0 = pad
        known = np.flatnonzero(old_rows >= 0)
        if key in state and state[key].shape[1] == table.shape[1] and len(known):
            src = torch.as_tensor(old_rows[known] + 1)
            table[torch.as_tensor(known + 1)] = state[key][src]
