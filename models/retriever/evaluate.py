"""Evaluate a retriever with trie-constrained beam search under the pinned protocol."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from models.metrics import retrieval_report, target_ranks, token_hit_ratio, token_hits
from models.retriever.beam import beam_search
from models.retriever.model import UniRec
from models.retriever.trie import PathTrie

# Requests per `beam_search` call: about 3,200 beams a call (16 requests at beam 200) decode
# fastest on a 2-core CPU; 128 x 200 beams was 1.4-1.5x slower (Beauty, benchmarks/beauty.py),
# its (rows, experts x hidden) activations falling out of cache.
BEAM_BATCH = 16


@torch.no_grad()
def beam_candidates(
    model: UniRec,
    data: dict[str, torch.Tensor],
    trie: PathTrie,
    beam_size: int,
    batch_size: int = BEAM_BATCH,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Beam-search top-`beam_size` items of every sample with their path log-probabilities:
    (items (n, beam_size) item rows, -1 padded; logp (n, beam_size), -inf padded);
    `batch_size` requests per `beam_search` call (see BEAM_BATCH)."""
    model.eval()
    n = data["hist"].shape[0]
    dev = next(model.parameters()).device
    items_out = np.full((n, beam_size), -1, dtype=np.int64)
    logp_out = np.full((n, beam_size), -np.inf, dtype=np.float32)
    for s in tqdm(range(0, n, batch_size), desc="beam search", disable=not progress):
        batch = {k: v[s : s + batch_size].to(dev) for k, v in data.items()}
        items, logp = beam_search(model, batch, trie, beam_size)
        items_out[s : s + len(items), : items.shape[1]] = items.cpu().numpy()
        logp_out[s : s + len(items), : items.shape[1]] = logp.float().cpu().numpy()
    return items_out, logp_out


@torch.no_grad()
def item_head_logprobs(
    model: UniRec, data: dict[str, torch.Tensor], items: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """The item head's log p_item (n, W) of candidate path rows `items` (n, W) (-1 padded: 0),
    e.g. to choose `item_head_weight` on validation candidates decoded with weight 0."""
    if model.item_head is None:
        raise ValueError("retriever.model.item_head is off: the model has no item head")
    model.eval()
    dev = next(model.parameters()).device
    out = np.zeros(items.shape, dtype=np.float32)
    for s in range(0, len(items), batch_size):
        batch = {k: v[s : s + batch_size].to(dev) for k, v in data.items()}
        lp = model.item_logprobs(model.encode(batch))  # (b, N)
        rows = torch.from_numpy(items[s : s + batch_size]).to(dev)
        out[s : s + len(rows)] = lp.gather(1, rows.clamp_min(0)).float().cpu().numpy()
    return np.where(items >= 0, out, 0.0).astype(np.float32)


def rank_items(
    model: UniRec,
    data: dict[str, torch.Tensor],
    trie: PathTrie,
    beam_size: int,
    batch_size: int = BEAM_BATCH,
    progress: bool = False,
) -> np.ndarray:
    """Beam-search top-`beam_size` item rows for every sample: (n, beam_size), -1 padded."""
    return beam_candidates(model, data, trie, beam_size, batch_size, progress)[0]


@torch.no_grad()
def evaluate(
    model: UniRec,
    data: dict[str, torch.Tensor],
    trie: PathTrie,
    *,
    beam_size: int,
    hr_ks: list[int],
    rank_ks: list[int],
    batch_size: int = BEAM_BATCH,
    purchase: np.ndarray | None = None,
    progress: bool = False,
    ranked: np.ndarray | None = None,
) -> dict[str, float]:
    """HR@K (all / purchase), Recall/NDCG@K and token hit ratio @3 per decoding step.

    Targets without a decoding path (item unknown to the SID table) count as misses.
    `ranked` (n, N) item rows, when the caller already ran the beam search
    (`beam_candidates`); otherwise it is run here at `beam_size`.
    """
    if ranked is None:
        ranked = rank_items(model, data, trie, beam_size, batch_size, progress)
    ranks = target_ranks(ranked, data["item_row"].numpy())
    report = retrieval_report(ranks, hr_ks, rank_ks, purchase)
    known = (data["target"] >= 0).all(dim=1)
    hits = []
    for s in range(0, int(known.sum()), 512):
        idx = torch.nonzero(known).flatten()[s : s + 512]
        dev = next(model.parameters()).device
        batch = {k: v[idx].to(dev) for k, v in data.items()}
        hits.append(token_hits(model.step_logits(batch), batch["target"], 3).cpu())
    hits_t = torch.cat(hits) if hits else torch.zeros((0, model.n_steps), dtype=torch.bool)
    report.update(token_hit_ratio(hits_t, model.cfg.path.fields, 3))
    report["targets_without_path"] = int((~known).sum())
    return report
