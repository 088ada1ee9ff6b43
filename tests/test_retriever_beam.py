"""Trie-constrained beam search: only catalogue items, and fast == plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retriever_fixtures import batch, one_thread, parts

from models.retriever.beam import beam_search
from models.retriever.beam_reference import reference_beam_search
from models.retriever.evaluate import beam_candidates, evaluate

_threads = pytest.fixture(autouse=True)(one_thread)


def test_beam_emits_only_distinct_catalogue_items():
    p = parts(n_items=80)
    items, scores = beam_search(p.model, batch(p, 3), p.trie, beam_size=30)
    assert items.shape == (3, 30)
    for row, sc in zip(items, scores, strict=True):
        assert (row >= 0).all() and (row < len(p.paths)).all()
        assert len(set(row.tolist())) == 30
        assert torch.all(sc[:-1] >= sc[1:]) and torch.isfinite(sc).all()
    # the score is the model's path log-probability under teacher forcing
    b = batch(p, 3)
    items, scores = beam_search(p.model, b, p.trie, beam_size=5)
    b1 = {**b, "target": torch.from_numpy(p.paths.codes[items[:, 0].numpy()])}
    logp = sum(
        lg.log_softmax(-1).gather(1, b1["target"][:, t : t + 1]).squeeze(1)
        for t, lg in enumerate(p.model.step_logits(b1))
    )
    assert torch.allclose(logp, scores[:, 0], atol=1e-4)


def test_beam_wider_than_catalogue_pads():
    p = parts(n_items=12)
    items, scores = beam_search(p.model, batch(p, 2), p.trie, beam_size=20)
    assert (items[:, :12] >= 0).all() and (items[:, 12:] == -1).all()
    assert torch.isinf(scores[:, 12:]).all()
    assert sorted(items[0, :12].tolist()) == list(range(12))  # every item exactly once


def test_candidates_batch_like_one_call_and_feed_evaluate():
    p = parts(n_items=40)
    b = batch(p, 5)
    items, logp = beam_candidates(p.model, b, p.trie, beam_size=8, batch_size=2)  # 3 batches
    one_items, one_logp = beam_search(p.model, b, p.trie, beam_size=8)
    assert (items == one_items.numpy()).all()
    assert np.allclose(logp, one_logp.numpy(), atol=1e-5)
    kw = {"beam_size": 8, "hr_ks": [5], "rank_ks": [5]}
    assert evaluate(p.model, b, p.trie, **kw, ranked=items) == evaluate(p.model, b, p.trie, **kw)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    beam=st.integers(1, 12),
    self_attention=st.booleans(),
    chain=st.sampled_from([[], ["cat_l2"], ["cat_l2", "cat_l3"]]),
    content_summary=st.booleans(),
    nodes=st.sampled_from([(0, False), (4, False), (4, True)]),  # (node_dim, node_tie)
    trie_softmax=st.booleans(),
    item_head=st.booleans(),
)
def test_fast_beam_equals_reference(
    seed, beam, self_attention, chain, content_summary, nodes, trie_softmax, item_head
):
    node_dim, node_tie = nodes
    p = parts(
        n_items=40,
        seed=seed % 7,
        self_attention=self_attention,
        chain=chain,
        content_summary=content_summary,
        node_dim=node_dim,
        node_tie=node_tie,
        trie_softmax=trie_softmax,
        item_head=item_head,
        item_head_weight=0.7,
    )
    if item_head:  # random output vectors: the re-ranking moves items
        torch.manual_seed(seed)
        torch.nn.init.normal_(p.model.item_head.emb.weight)
    if node_dim:  # trie-edge vectors start at zero: give them values that change the ranking
        torch.manual_seed(seed)
        for emb in [*p.model.nodes.emb, *p.model.nodes.bias]:
            torch.nn.init.normal_(emb.weight)
    b = batch(p, 2, seed=seed)
    b = {k: v for k, v in b.items() if k not in ("target", "item_row")}
    items, scores = beam_search(p.model, b, p.trie, beam_size=beam)
    ref = reference_beam_search(p.model, b, p.paths.codes, beam_size=beam)
    for r, hyps in enumerate(ref):
        assert_same_ranking(items[r].tolist(), scores[r].numpy(), hyps)


def assert_same_ranking(items: list[int], scores: np.ndarray, ref: list[tuple[int, float]]):
    """The fast beam's list equals the reference's up to the order inside score ties.

    Scores match position by position. The reference's list is cut into runs of equal score
    (within float tolerance); every run but the last holds the same items in both lists, in
    any order. The last run may be cut by the beam width, so the two searches may keep
    different items of equal score there: its items need only be distinct, real items."""
    n = len(ref)
    ref_items, ref_scores = [i for i, _ in ref], np.array([s for _, s in ref])
    assert np.allclose(scores[:n], ref_scores, atol=1e-4)
    assert len(set(items[:n])) == n and min(items[:n], default=0) >= 0
    starts = [0, *(np.flatnonzero(np.abs(np.diff(ref_scores)) > 1e-5) + 1).tolist()]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert set(items[a:b]) == set(ref_items[a:b]), (a, b, items[:n], ref_items)


@pytest.mark.parametrize("steps", ["last", "all"])
def test_fast_beam_equals_reference_under_ties(steps):
    # zeroed rank heads give equal logits: at the last SID layer and the dedup step, the items
    # under one (s0, s1) prefix tie inside the list; at every step, all items tie
    p = parts(n_items=40, seed=1, chain=[])
    zero = p.model.heads[-2:] if steps == "last" else p.model.heads
    with torch.no_grad():
        for head in zero:
            head.logits.weight.zero_()
            head.logits.bias.zero_()
    b = {k: v for k, v in batch(p, 2, seed=5).items() if k not in ("target", "item_row")}
    items, scores = beam_search(p.model, b, p.trie, beam_size=10)
    ref = reference_beam_search(p.model, b, p.paths.codes, beam_size=10)
    for r, hyps in enumerate(ref):
        ref_scores = np.array([s for _, s in hyps])
        assert np.isclose(np.diff(ref_scores), 0, atol=1e-6).any()  # there are ties
        assert_same_ranking(items[r].tolist(), scores[r].numpy(), hyps)


def test_final_step_decodes_only_the_beams_with_a_choice():
    # trie softmax: a prefix with one trie child gives it log-probability 0, so the final step
    # runs the decoder only on the other beams; the result is still the reference's
    p = parts(n_items=40, seed=0, chain=[], trie_softmax=True, node_dim=4)
    torch.manual_seed(0)
    for emb in [*p.model.nodes.emb, *p.model.nodes.bias]:
        torch.nn.init.normal_(emb.weight)
    depth = p.trie.n_steps - 1
    single = p.model.single_child(torch.from_numpy(np.unique(p.paths.codes[:, :depth], axis=0)))
    assert single.any() and not single.all()  # this catalogue has both kinds of final prefix
    b = {k: v for k, v in batch(p, 2, seed=3).items() if k not in ("target", "item_row")}
    decoded, step = [], p.model.step_logprobs

    def counting(ctx, prefix, cache=None):  # noqa: ANN001, ANN202
        decoded.append(prefix.shape[0] * prefix.shape[1])  # beams decoded at this step
        return step(ctx, prefix, cache)

    p.model.step_logprobs = counting
    items, scores = beam_search(p.model, b, p.trie, beam_size=12)
    assert len(decoded) == p.trie.n_steps and decoded[-1] < decoded[-2]
    for r, hyps in enumerate(reference_beam_search(p.model, b, p.paths.codes, beam_size=12)):
        assert np.allclose(scores[r, : len(hyps)].numpy(), [s for _, s in hyps], atol=1e-4)
        assert set(items[r, : len(hyps)].tolist()) == {i for i, _ in hyps}
