"""Item-level head: a catalogue distribution, trained next to eq. 19, re-ranking the beam."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from retriever_fixtures import SCENES, batch, catalogue, one_thread, parts, tiny_params, users

from models.retriever.beam import beam_search
from models.retriever.build import build_retriever
from models.retriever.item_head import rerank
from models.retriever.warm import warm_start

_threads = pytest.fixture(autouse=True)(one_thread)


def _scrambled(p, seed: int = 0):  # noqa: ANN001, ANN202
    """Random output vectors, so the head's scores differ clearly between items."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(p.model.item_head.emb.weight)
    torch.nn.init.normal_(p.model.item_head.bias.weight)
    return p


def test_item_logprobs_are_a_distribution_over_the_catalogue():
    p = parts(n_items=30, item_head=True)
    b = batch(p, 3)
    lp = p.model.item_logprobs(p.model.encode(b))
    assert lp.shape == (3, len(p.paths))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3), atol=1e-5)


def test_loss_adds_the_weighted_item_cross_entropy():
    p = parts(n_items=30, item_head=True)
    b = {**batch(p, 4), "weight": torch.tensor([1.0, 2.0, 3.0, 1.0])}
    p.model.eval()
    logits = p.model.step_logits(b)
    ntp = sum(
        F.cross_entropy(lg, b["target"][:, t], reduction="none") for t, lg in enumerate(logits)
    )
    item = -p.model.item_logprobs(p.model.encode(b)).gather(1, b["item_row"][:, None])[:, 0]
    w = b["weight"]
    assert torch.allclose(p.model.loss(b), (w * (ntp + item)).sum() / w.sum(), atol=1e-5)


def test_beam_is_reranked_by_path_plus_weighted_item_logprob():
    p = _scrambled(parts(n_items=40, item_head=True, item_head_weight=0.0))
    b = {k: v for k, v in batch(p, 2, seed=1).items() if k not in ("target", "item_row")}
    items0, path_lp = beam_search(p.model, b, p.trie, beam_size=40)  # weight 0: paths only
    p.model.item_head_weight = 0.7
    items, scores = beam_search(p.model, b, p.trie, beam_size=40)
    item_lp = p.model.item_logprobs(p.model.encode(b))
    for r in range(2):  # same candidates (the whole catalogue), re-scored and re-sorted
        assert set(items[r].tolist()) == set(items0[r].tolist())
        want = {
            int(i): float(s) + 0.7 * float(item_lp[r, i])
            for i, s in zip(items0[r], path_lp[r], strict=True)
        }
        assert torch.allclose(scores[r], torch.tensor([want[int(i)] for i in items[r]]), atol=1e-4)
        assert torch.all(scores[r, :-1] >= scores[r, 1:])
    assert not torch.equal(items, items0)  # the head moved the order


def test_rerank_keeps_padding_last():
    items = torch.tensor([[2, 0, -1]])
    scores = torch.tensor([[-1.0, -2.0, float("-inf")]])
    item_lp = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    got, mixed = rerank(items, scores, item_lp, 1.0)
    assert got.tolist() == [[0, 2, -1]] and torch.isinf(mixed[0, 2])


def test_warm_start_keys_item_head_rows_by_item_id():
    items, sid = catalogue(60, 6)
    torch.manual_seed(0)
    old = build_retriever(tiny_params(item_head=True), items, users(), sid, SCENES, 6)
    new_item = items.iloc[[0]].assign(item_id="i000a")
    code = sid.iloc[[0]].assign(item_id="i000a", s0=5, s1=5, s2=5, dedup=0)
    items2 = items._append(new_item, ignore_index=True)
    sid2 = sid._append(code, ignore_index=True)
    torch.manual_seed(1)
    new = build_retriever(tiny_params(item_head=True), items2, users(), sid2, SCENES, 6)
    init = new.model.item_head.emb.weight.clone()
    report = warm_start(new.model, old.model, new.space.vocab, old.space.vocab)
    assert "item_head.emb.weight" in report["remapped"]
    for item in ("i000", "i059"):
        r_old, r_new = old.paths.rows([item])[0], new.paths.rows([item])[0]
        assert torch.equal(
            new.model.item_head.emb.weight[r_new], old.model.item_head.emb.weight[r_old]
        )
    fresh = new.paths.rows(["i000a"])[0]
    assert torch.equal(new.model.item_head.emb.weight[fresh], init[fresh])


def test_causal_sequence_states_see_only_earlier_items():
    p = parts(n_items=30, item_head=True, seq_layers=2)
    p.model.eval()
    b = batch(p, 3, seed=2)
    seq = p.model.encode(b).seq  # (B, T, d)
    later = {**b, "hist": b["hist"].clone()}
    later["hist"][:, -1] = (later["hist"][:, -1] % len(p.space.items)) + 1  # another item
    seq2 = p.model.encode(later).seq
    assert torch.allclose(seq[:, :-1], seq2[:, :-1], atol=1e-6), "a state saw a later item"
    assert not torch.allclose(seq[:, -1], seq2[:, -1])
    assert torch.isfinite(seq).all()  # padding positions (batch row 0) attend to themselves


def test_next_item_loss_is_every_states_cross_entropy_on_the_item_after_it():
    p = _scrambled(parts(n_items=30, item_head=True, seq_layers=1, next_item_weight=0.5))
    p.model.eval()
    b = batch(p, 4, seed=3)
    m = p.model
    ctx = m.encode(b)
    col = m.inputs.seq_fields.index("item_id")
    path_of = {int(x): r for r, x in enumerate(m.item_head.item_ids.tolist())}
    item_emb = m.inputs.field_emb["item_id"].weight
    terms = []
    for i in range(4):  # the plain loop: state t -> the history item after it, last -> target
        ids = [int(x) for x in m.inputs.item_fields[b["hist"][i], col]]
        nxt = [path_of.get(x, -1) for x in ids[1:]] + [int(b["item_row"][i])]
        for t, x in enumerate(ids):
            if x > 0 and nxt[t] >= 0:
                lg = m.item_head.score(m.next_item.query(ctx.seq[i, t][None]), item_emb)
                terms.append(F.cross_entropy(lg, torch.tensor([nxt[t]])))
    assert len(terms) > 4
    want = torch.stack(terms).mean()
    assert torch.allclose(m._next_item_nll(ctx, b), want, atol=1e-5)
    full = m.loss(b)
    m.next_item = None  # the same weights without the term
    assert torch.allclose(full, m.loss(b) + 0.5 * want, atol=1e-5)


def test_next_item_loss_trains_the_sequence_blocks_and_needs_them():
    p = parts(n_items=30, item_head=True, seq_layers=1, next_item_weight=1.0)
    scored = []
    score = p.model.item_head.score
    p.model.item_head.score = lambda u, e=None: scored.append(len(u)) or score(u, e)
    p.model.train()
    p.model.loss(batch(p, 4)).backward()
    assert scored == [4, 4], "training scores the B targets, then a random B of the ~4T states"
    grads = [q.grad for q in p.model.inputs.seq_blocks.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="next_item_weight needs"):
        parts(n_items=30, item_head=True, next_item_weight=1.0)  # no seq_layers
