"""UniRec retriever: paths, trie, content summary, model shapes, loss, ablation switches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from retriever_fixtures import batch, catalogue, one_thread, parts

from models.baselines.variants import ABLATIONS, VARIANTS
from models.retriever.content_summary import ContentSummary, table_size
from models.retriever.layers import MMoEFFN, mmoe_reference
from models.retriever.paths import build_item_paths
from models.retriever.train import train
from models.retriever.trie import PathTrie
from sidflow.config import RetrieverTrainParams

_threads = pytest.fixture(autouse=True)(one_thread)


def test_item_paths_follow_the_chain_and_sids():
    items, sid = catalogue()
    paths = build_item_paths(items, sid, ["cat_l2", "cat_l3"], 6)
    spec = paths.spec
    assert spec.fields[:5] == ["cat_l2", "cat_l3", "s0", "s1", "s2"]
    assert spec.vocab_sizes[2:5] == [6, 6, 6]
    row = paths.rows(["i007"])[0]
    assert spec.attr_values["cat_l2"][paths.codes[row, 0]] == items.loc[7, "cat_l2"]
    assert list(paths.codes[row, 2:5]) == list(sid.loc[7, ["s0", "s1", "s2"]])
    missing_l3 = items["cat_l3"].isna().to_numpy()
    assert (paths.codes[missing_l3, 1] == 0).all()  # id 0 = <none>
    assert paths.rows(["nope"])[0] == -1


def test_item_paths_reject_bad_tables():
    items, sid = catalogue()
    with pytest.raises(ValueError, match="s0..s"):
        build_item_paths(items, sid.drop(columns="s1"), [], 6)
    bad = sid.copy()
    bad["dedup"] = 0
    with pytest.raises(ValueError, match="share one full path"):
        build_item_paths(items, bad, [], 6)
    with pytest.raises(ValueError, match="lacks chain attribute"):
        build_item_paths(items, sid, ["colour"], 6)
    null = sid.astype({"s2": float})
    null.loc[3, "s2"] = np.nan
    with pytest.raises(ValueError, match="'s2' is null at row 3"):
        build_item_paths(items, null, [], 6)


def test_trie_allows_exactly_the_catalogue_children():
    items, sid = catalogue()
    paths = build_item_paths(items, sid, ["cat_l2"], 6)
    trie = PathTrie(paths.codes, paths.spec.vocab_sizes)
    nodes = torch.zeros(1, dtype=torch.long)
    allowed, _ = trie.step(0, nodes)
    assert set(torch.nonzero(allowed[0]).flatten().tolist()) == set(paths.codes[:, 0].tolist())
    # walk every item's path: each token allowed, the leaf is the item itself
    for row, path in enumerate(paths.codes):
        node = torch.zeros(1, dtype=torch.long)
        for t, tok in enumerate(path):
            allowed, child = trie.step(t, node)
            prefix = paths.codes[:, :t]
            expected = set(paths.codes[(prefix == path[:t]).all(axis=1), t].tolist())
            assert set(torch.nonzero(allowed[0]).flatten().tolist()) == expected
            node = child[:, tok]
        assert int(trie.leaf_item[node]) == row


def test_content_summary_table_size_and_hashes():
    assert table_size([(4000, 4000)]) == int((4000 * 4000) ** (2 / 3))  # eq. 7, n = 2
    cs = ContentSummary([3, 5, 7], pairs=[(0, 1), (1, 2)], n_hashes=3, d_hash=2)
    assert cs.size == int((5 * 7) ** (2 / 3))
    x, y = torch.tensor([2]), torch.tensor([4])
    assert cs.hashes(x, y).tolist() == [
        [6 % cs.size, 8 % cs.size, (1_000_003 * 2 + 998_244_353 * 4) % cs.size]
    ]
    path = torch.tensor([[1, 2, 3]])
    c = cs(path, 4)  # (1, 4, 6)
    assert c.shape == (1, 4, 6)
    assert torch.all(c[0, :2] == 0)  # no complete pair before step 2
    glob = path + torch.tensor([0, 3, 8])
    first = cs.table(cs.hashes(glob[:, 0], glob[:, 1])).flatten()
    assert torch.allclose(c[0, 2], first)  # step 2 sees pair (0, 1) only
    second = cs.table(cs.hashes(glob[:, 1], glob[:, 2])).flatten()
    assert torch.allclose(c[0, 3], (first + second) / 2)


def test_forward_backward_shapes():
    p = parts()
    b = batch(p, 4)
    logits = p.model.step_logits(b)
    assert [lg.shape for lg in logits] == [(4, v) for v in p.paths.spec.vocab_sizes]
    loss = p.model(b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    no_grad = [n for n, q in p.model.named_parameters() if q.grad is None]
    assert no_grad == []


def test_loss_is_engagement_weighted_mean():
    p = parts()
    b = batch(p, 4)
    p.model.eval()
    nll = sum(
        torch.nn.functional.cross_entropy(lg, b["target"][:, t], reduction="none")
        for t, lg in enumerate(p.model.step_logits(b))
    )
    b["weight"] = torch.tensor([1.0, 2.0, 3.0, 0.0])
    expected = (nll * b["weight"]).sum() / b["weight"].sum()
    assert torch.allclose(p.model.loss(b), expected, atol=1e-5)


def test_loss_decreases_on_a_tiny_batch():
    p = parts()
    b = batch(p, 16, seed=3)
    before = float(p.model.loss(b).detach())
    params = RetrieverTrainParams(lr=1e-2, batch_size=16, max_steps=60, warmup_steps=5)
    train(p.model, b, params, progress=False)
    p.model.eval()
    assert float(p.model.loss(b)) < 0.5 * before


@pytest.mark.parametrize("name", [*ABLATIONS, "tiger"])
def test_every_variant_builds_and_runs(name):
    update = VARIANTS[name]
    p = parts(**{k: v for k, v in update.items() if k != "capacity_sids"})
    m = p.model
    assert (m.cs is None) == (not update.get("content_summary", True))
    assert m.bos.num_embeddings == (1 if update.get("task_bos", True) is False else 6)
    gates = 1 if update.get("task_gate", True) is False else 6  # eq. 15: one gate per task
    assert all(blk.ffn.n_gates == gates for blk in m.blocks)
    assert p.paths.spec.chain == update.get("chain", ["cat_l2", "cat_l3"])
    loss = m(batch(p, 3))
    assert torch.isfinite(loss)


def test_task_bos_and_task_gate_switch_one_mechanism_each():
    # -BOS keeps the per-task MMoE gates; -gate keeps the per-task BOS (two separate switches)
    b = batch(parts(), 4)
    b["task"] = torch.tensor([0, 1, 2, 3])
    for switch, on in (("task_bos", "task_gate"), ("task_gate", "task_bos")):
        p = parts(**{switch: False})
        ctx = p.model.encode(b)
        assert getattr(p.model, on) and not getattr(p.model, switch)
        states = p.model._decode(ctx, torch.zeros((4, 1, 0), dtype=torch.long))[0][:, 0, 0]
        plain = p.model._decode(
            type(ctx)(ctx.kv, ctx.mem_mask, ctx.h_agg, torch.zeros_like(ctx.task)),
            torch.zeros((4, 1, 0), dtype=torch.long),
        )[0][:, 0, 0]
        assert not torch.allclose(states, plain)  # the mechanism left still reads the task


def test_old_checkpoints_without_task_gate_keep_their_gates():
    from models.retriever.model import UniRecConfig

    cfg = parts(task_bos=False).model.cfg
    raw = json.loads(cfg.to_json())
    del raw["model"]["task_gate"]
    assert UniRecConfig.from_json(json.dumps(raw)).model.task_gate is False


def test_history_padding_only_still_decodes():
    p = parts()
    b = batch(p, 2)
    b["hist"][:] = 0
    b["hist_type"][:] = 0
    assert all(torch.isfinite(lg).all() for lg in p.model.step_logits(b))


def test_unknown_fields_are_named():
    items, sid = catalogue()
    from retriever_fixtures import tiny_params, users

    from models.retriever.build import build_retriever

    with pytest.raises(ValueError, match="profile_fields"):
        build_retriever(tiny_params(profile_fields=["shoe_size"]), items, users(), sid, ["f"])
    with pytest.raises(ValueError, match="seq_fields"):
        build_retriever(tiny_params(seq_fields=["colour"]), items, users(), sid, ["f"])
    assert isinstance(items, pd.DataFrame)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 4),
    q=st.integers(1, 6),
    experts=st.integers(1, 4),
    gates=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_mmoe_gemm_form_matches_the_expert_by_expert_sum(b, q, experts, gates, seed):
    """The two-GEMM MMoE equals sum_e w_e * SwiGLU_e(x) (eq. 15), for any shapes and tasks,
    both with autograd and in the in-place inference form."""
    torch.manual_seed(seed)
    ffn = MMoEFFN(d=16, hidden=8, n_experts=experts, n_gates=gates, dropout=0.1).eval()
    x = torch.randn(b, q, 16)
    gate_id = torch.randint(0, gates, (b,))
    expected = mmoe_reference(ffn, x, gate_id)
    torch.testing.assert_close(ffn(x, gate_id), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ffn(x, gate_id), expected, rtol=1e-5, atol=1e-5)
