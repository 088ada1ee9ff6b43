"""Plain reference beam search: one request and one hypothesis at a time.

No batching, no shared K/V, a Python dict trie built straight from the item paths.
It exists to check `beam.beam_search` (tests assert they return the same items and
scores); it is slow on purpose.
"""

from __future__ import annotations

import numpy as np
import torch

from models.retriever.model import UniRec


def dict_trie(codes: np.ndarray) -> dict:
    """Nested dicts token -> subtree; a leaf holds {"item": row}."""
    root: dict = {}
    for row, path in enumerate(np.asarray(codes).tolist()):
        node = root
        for tok in path:
            node = node.setdefault(tok, {})
        node["item"] = row
    return root


@torch.no_grad()
def reference_beam_search(
    model: UniRec, batch: dict[str, torch.Tensor], codes: np.ndarray, beam_size: int
) -> list[list[tuple[int, float]]]:
    """For each request: [(item row, path log-prob)] best first, at most `beam_size`."""
    model.eval()
    root = dict_trie(codes)
    n_steps = np.asarray(codes).shape[1]
    results = []
    for r in range(batch["hist"].shape[0]):
        one = {k: v[r : r + 1] for k, v in batch.items()}
        beams = [((), 0.0, root)]
        for t in range(n_steps):
            cands = []
            for toks, score, node in beams:
                ctx = model.encode(one)  # recomputed per hypothesis: plain on purpose
                prefix = torch.tensor([[list(toks)]], dtype=torch.long).view(1, 1, t)
                logp = model.step_logprobs(ctx, prefix)[0][0, 0].float()
                for tok, sub in node.items():
                    if tok != "item":
                        cands.append((toks + (tok,), score + float(logp[tok]), sub))
            cands.sort(key=lambda c: -c[1])
            beams = cands[:beam_size]
        found = [(sub["item"], score) for _, score, sub in beams]
        if model.item_head is not None and model.item_head_weight:  # item_head.py re-ranking
            item_logp = model.item_logprobs(model.encode(one))[0].float()
            w = model.item_head_weight
            found = sorted(
                ((i, s + w * float(item_logp[i])) for i, s in found), key=lambda c: -c[1]
            )
        results.append(found)
    return results
