"""Trie-node outputs of the rank heads (models/retriever/nodes.py)."""

from __future__ import annotations

import pytest
import torch
from retriever_fixtures import SCENES, batch, catalogue, one_thread, parts, tiny_params, users

from models.retriever.beam import beam_search
from models.retriever.build import build_retriever
from models.retriever.model import UniRec
from models.retriever.warm import step_rows, warm_start

_threads = pytest.fixture(autouse=True)(one_thread)


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    torch.manual_seed(seed)
    for emb in [*model.nodes.emb, *model.nodes.bias]:
        torch.nn.init.normal_(emb.weight)


def test_nodes_number_prefixes_as_the_beam_trie_does():
    p = parts(n_items=50, trie_softmax=True)
    nodes, trie = p.model.nodes, p.trie
    codes = torch.from_numpy(p.paths.codes)
    walk = torch.zeros(len(codes), dtype=torch.long)
    for t in range(codes.shape[1]):
        assert torch.equal(nodes.nodes(codes[:, :t]), walk)
        row, edge = nodes.child_edges(t, walk)
        allowed, child = trie.step(t, walk)
        assert torch.equal(allowed.sum(1), torch.bincount(row, minlength=len(walk)))
        walk = child.gather(1, codes[:, t : t + 1]).squeeze(1)
    bad = codes[:, :2].clone()
    bad[0, 1] = int(p.paths.spec.vocab_sizes[1]) + 5  # no such token: not a real prefix
    assert nodes.nodes(bad)[0] == -1


def test_trie_softmax_is_a_distribution_over_the_catalogue():
    p = parts(n_items=30, node_dim=4, trie_softmax=True)
    _randomise(p.model)
    b = {k: v for k, v in batch(p, 3).items() if k not in ("target", "item_row")}
    items, logp = beam_search(p.model, b, p.trie, beam_size=30)  # every item of the catalogue
    assert (items >= 0).all()
    assert torch.allclose(logp.exp().sum(1), torch.ones(3), atol=1e-5)
    # teacher forcing gives every non-child token -inf and the same path log-probabilities
    full = batch(p, 3)
    logits = p.model.step_logits(full)
    assert all(torch.isinf(lg).any() for lg in logits[1:])
    assert all(
        torch.isfinite(lg.gather(1, full["target"][:, t : t + 1])).all()
        for t, lg in enumerate(logits)
    )


def test_edge_vectors_change_the_scores_and_learn():
    p = parts(n_items=40, node_dim=4, node_tie=True)
    b = batch(p, 4)
    before = [lg.detach().clone() for lg in p.model.step_logits(b)]  # zero init: plain heads
    p.model.loss(b).backward()
    for module in (p.model.nodes.emb, p.model.nodes.tie):
        assert all(float(m.weight.grad.abs().sum()) > 0 for m in module[1:])
    assert float(p.model.inputs.field_emb["item_id"].weight.grad.abs().sum()) > 0
    _randomise(p.model)
    after = p.model.step_logits(b)
    assert not all(torch.allclose(x, y) for x, y in zip(before, after, strict=True))


def test_options_need_the_item_paths():
    p = parts(n_items=20)
    cfg = p.model.cfg
    cfg.model = cfg.model.model_copy(update={"trie_softmax": True})
    with pytest.raises(ValueError, match="item paths"):
        UniRec(cfg, p.model.inputs.item_fields, p.model.inputs.item_sids)
    cfg.model = cfg.model.model_copy(update={"node_dim": 4, "node_tie": True})
    codes = torch.from_numpy(p.paths.codes)
    with pytest.raises(ValueError, match="item id"):
        UniRec(cfg, p.model.inputs.item_fields, p.model.inputs.item_sids, codes)


def test_tied_edge_vectors_read_the_mean_item_embedding_below_them():
    p = parts(n_items=40, node_dim=4, node_tie=True)
    nodes, emb = p.model.nodes, p.model.inputs.field_emb["item_id"].weight
    last = len(nodes.vocab_sizes) - 1
    leaf = nodes.subtree_items(last, emb)  # one item per leaf edge
    edge = getattr(nodes, f"item_edge_{last}")
    assert torch.allclose(leaf[edge], emb[nodes.item_ids])
    root = nodes.subtree_items(0, emb)  # first step: items grouped by their first token
    first = p.paths.codes[:, 0]
    for e, tok in enumerate(nodes.keys(0).tolist()):
        members = nodes.item_ids[torch.from_numpy(first == tok)]
        assert torch.allclose(root[e], emb[members].mean(0), atol=1e-6)


def test_warm_start_moves_edge_vectors_by_path():
    items, sid = catalogue(60, 6)
    torch.manual_seed(0)
    old = build_retriever(tiny_params(node_dim=4, node_tie=True), items, users(), sid, SCENES, 6)
    _randomise(old.model)
    new_item = items.iloc[[0]].assign(item_id="i000a", cat_l2="c-new", cat_l3=None)
    code = sid.iloc[[0]].assign(item_id="i000a", s0=5, s1=5, s2=5, dedup=0)
    items2 = items._append(new_item, ignore_index=True)
    sid2 = sid._append(code, ignore_index=True)
    new = build_retriever(tiny_params(node_dim=4, node_tie=True), items2, users(), sid2, SCENES, 6)
    report = warm_start(new.model, old.model, new.space.vocab, old.space.vocab)
    assert "nodes.emb.3.weight" in report["remapped"]
    assert "nodes.tie.3.weight" in report["copied"]
    assert not {"nodes.codes", "nodes.item_ids"} & set(report["copied"])  # today's catalogue

    def named(parts_, t):  # edges by path: attribute values, then codes
        spec = parts_.paths.spec
        return parts_.model.nodes.edge_names(t, [step_rows(spec, j) for j in range(t + 1)])

    for t in range(new.paths.codes.shape[1]):
        old_at = {n: i for i, n in enumerate(named(old, t))}
        w_old, w_new = old.model.nodes.emb[t].weight, new.model.nodes.emb[t].weight
        fresh = 0
        for i, n in enumerate(named(new, t)):
            if n in old_at:
                assert torch.equal(w_new[i], w_old[old_at[n]]), (t, n)
            else:
                fresh += 1
                assert torch.equal(w_new[i], torch.zeros_like(w_new[i]))
        assert fresh >= 1  # the new item's own edge (a new cat_l2 shifts every id after it)
