"""Trie-constrained beam search, batched over requests and beams.

Per request the behaviour memory and every layer's cross-attention K/V are computed
once (`UniRec.encode`); all W beams then query the same K/V. At step t the allowed
next tokens of every beam come from the `PathTrie` tensors, so only prefixes of real
catalogue paths survive and every finished beam is an item. Scores are the summed
log-probabilities of the model's per-step softmax (disallowed tokens get -inf, no
renormalisation, as Hugging Face `prefix_allowed_tokens_fn` does). With the model's item
head on, the finished beams are re-ranked by path log-probability + w * item log-probability
(item_head.py).
"""

from __future__ import annotations

import torch

from models.retriever.item_head import rerank
from models.retriever.model import Cache, DecodeContext, UniRec
from models.retriever.trie import PathTrie


@torch.no_grad()
def beam_search(
    model: UniRec,
    batch: dict[str, torch.Tensor],
    trie: PathTrie,
    beam_size: int,
    top_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-N items per request.

    Returns (items (B, N) item rows of the trie's catalogue, -1 where fewer than N valid
    paths exist; logp (B, N) path log-probabilities, descending, -inf for padding).
    """
    model.eval()
    ctx = model.encode(batch)
    b = ctx.mem_mask.shape[0]
    dev = ctx.mem_mask.device
    prefix = torch.zeros((b, 1, 0), dtype=torch.long, device=dev)  # (B, W, t)
    scores = torch.zeros((b, 1), device=dev)  # (B, W)
    nodes = torch.zeros((b, 1), dtype=torch.long, device=dev)  # (B, W) trie node at depth t
    cache = None  # self-attention keys/values of the decoded positions, per beam
    for t in range(trie.n_steps):
        last = t == trie.n_steps - 1
        if last and cache is not None:
            logp = last_step_logprobs(model, ctx, prefix, cache, trie.vocab_sizes[t])
        else:
            logp, cache = model.step_logprobs(ctx, prefix, cache)  # (B, W, V_t)
        logp = logp.float()
        allowed, child = trie.step(t, nodes)  # (B, W, V_t) each
        v = logp.shape[-1]
        cand = (scores.unsqueeze(-1) + logp.masked_fill(~allowed, float("-inf"))).view(b, -1)
        # keep at most the live (finite) candidates of the fullest request: early steps of a
        # chain have few valid prefixes (cat_l2 -> cat_l3), so no dead beam is decoded further
        k = max(1, min(beam_size, int(torch.isfinite(cand).sum(dim=1).max())))
        scores, idx = cand.topk(k, dim=1)  # (B, W')
        beam = torch.div(idx, v, rounding_mode="floor")  # parent beam of each survivor
        tok = idx % v
        prefix = torch.cat(
            [prefix.gather(1, beam[..., None].expand(-1, -1, t)), tok[..., None]], dim=2
        )
        nodes = child.view(b, -1).gather(1, idx)  # -1 where the candidate was not allowed
        if not last:  # the cache serves the next step only
            cache = model.reorder_cache(cache, b, beam)
    valid = nodes >= 0
    items = torch.where(valid, trie.leaf_item[nodes.clamp_min(0)], torch.full_like(nodes, -1))
    scores = scores.masked_fill(~valid, float("-inf"))
    if model.item_head is not None and model.item_head_weight:  # re-rank the finished beams
        items, scores = rerank(items, scores, model.item_logprobs(ctx), model.item_head_weight)
    n = top_n or beam_size
    items, scores = items[:, :n], scores[:, :n]
    if items.shape[1] < n:  # fewer valid paths than N: pad
        items = torch.nn.functional.pad(items, (0, n - items.shape[1]), value=-1)
        scores = torch.nn.functional.pad(scores, (0, n - scores.shape[1]), value=float("-inf"))
    return items, scores


def last_step_logprobs(
    model: UniRec, ctx: DecodeContext, prefix: torch.Tensor, cache: Cache, vocab: int
) -> torch.Tensor:
    """log p(s_t | prefix) (B, W, V_t) of the final step, decoding only the beams with a choice.

    Beams whose prefix has a single trie child under the model's per-node softmax get 0 (log 1)
    without running the decoder (most of them at a dedup step); the others are decoded as
    one-beam requests. No cache is returned: nothing follows the final step.
    """
    b, w, t = prefix.shape
    fixed = model.single_child(prefix.reshape(b * w, t)).view(b, w)
    if not fixed.any():
        return model.step_logprobs(ctx, prefix, cache)[0]
    logp = torch.zeros((b, w, vocab), device=prefix.device)  # the trie masks all but the child
    req, beam = torch.nonzero(~fixed, as_tuple=True)  # (M,) each
    if len(req):
        sub, _ = model.step_logprobs(
            ctx.select(req), prefix[req, beam][:, None], model.select_cache(cache, w, req, beam)
        )
        logp[req, beam] = sub[:, 0].to(logp.dtype)  # (M, V_t)
    return logp
