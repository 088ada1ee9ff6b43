"""Model selection on the validation split, never on test (DESIGN.md, the pinned protocol).

- `BestCheckpoint`: called by the training loop every `retriever.train.eval_every` steps; it
  decodes the validation samples (beam `retriever.eval.valid_beam`) and keeps the weights with
  the best validation Recall@10 (ties: the earlier step), which the run then saves.
- `choose_item_head_weight`: the weight w of the item head's re-rank
  (log p_path + w log p_item, models/retriever/item_head.py) with the best validation NDCG@10
  among `ITEM_HEAD_WEIGHTS`, from beams decoded with the paths alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from models.baselines.score_mix import choose_weight
from models.retriever.evaluate import beam_candidates, evaluate, item_head_logprobs
from models.retriever.model import UniRec
from models.retriever.trie import PathTrie

ITEM_HEAD_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
SELECT_BY = "recall@10"


@dataclass
class BestCheckpoint:
    """The training loop's `eval_fn`: validation metrics, keeping the best weights."""

    data: dict[str, torch.Tensor]
    trie: PathTrie
    beam: int
    calls: int = 0
    best_call: int = -1
    best: dict = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None

    def __call__(self, model: UniRec) -> dict:
        """Validation Recall@10 / NDCG@10 / HR@beam of `model`; keeps its weights if best."""
        m = evaluate(
            model, self.data, self.trie, beam_size=self.beam, hr_ks=[self.beam], rank_ks=[10]
        )
        out = {k: round(float(m[k]), 5) for k in (SELECT_BY, "ndcg@10", f"hr@{self.beam}")}
        if not self.best or out[SELECT_BY] > self.best[SELECT_BY]:
            self.best, self.best_call = out, self.calls
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.calls += 1
        return out

    def restore(self, model: UniRec, evals: list[tuple[int, dict]]) -> dict:
        """Load the best weights into `model`; returns the best metrics with their step
        (`evals`: the training loop's (step, metrics) of each call)."""
        if self.state is not None:
            model.load_state_dict(self.state)
        return {**self.best, "step": evals[self.best_call][0] if self.best_call >= 0 else None}


def choose_item_head_weight(
    model: UniRec, data: dict[str, torch.Tensor], trie: PathTrie, beam: int
) -> tuple[float, dict[float, float]]:
    """(w, {w: validation NDCG@10}) for the item head's re-rank; sets `model.item_head_weight`
    and records it in the model's config (so the checkpoint and serving use it)."""
    model.item_head_weight = 0.0  # the beams by path probability alone
    items, logp = beam_candidates(model, data, trie, beam)
    head = item_head_logprobs(model, data, items)
    w, curve = choose_weight(items, logp, head, data["item_row"].numpy(), ITEM_HEAD_WEIGHTS)
    model.item_head_weight = w
    model.cfg.model = model.cfg.model.model_copy(update={"item_head_weight": w})
    return w, curve


def describe(best: dict, curve: dict | None = None) -> str:
    """One log line for the selection."""
    return json.dumps({"best": best, **({"item_head_ndcg@10": curve} if curve else {})})
