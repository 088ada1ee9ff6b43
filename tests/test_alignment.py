"""RFT + DPO alignment: advantages, preference pairs, and the layer-wise stop-gradient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from retriever_fixtures import batch, one_thread, parts

from models.alignment.dpo import (
    dpo_loss,
    last_sid_step,
    preference_level,
    preference_pairs,
    sequence_logprob,
)
from models.alignment.rft import (
    advantages,
    predicted_rewards,
    rewards,
    rft_loss,
    sample_weights,
)

_threads = pytest.fixture(autouse=True)(one_thread)


@st.composite
def exposure_tables(draw) -> pd.DataFrame:  # noqa: ANN001
    n = draw(st.integers(1, 40))
    return pd.DataFrame(
        {
            "request_id": draw(st.lists(st.sampled_from("abcde"), min_size=n, max_size=n)),
            "item_id": [f"i{k}" for k in range(n)],
            "position": draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)),
            "click": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
            "purchase": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        }
    )


@given(rows=exposure_tables(), per_request=st.integers(1, 6))
@settings(max_examples=80, deadline=None)
def test_pairs_come_from_one_request_and_respect_the_order(rows, per_request):
    pairs = preference_pairs(rows, per_request)
    level, pos = preference_level(rows), rows["position"].to_numpy()
    for p in pairs.itertuples():
        w, lo = p.winner, p.loser
        assert rows["request_id"][w] == rows["request_id"][lo] == p.request_id  # eq. 26
        assert level[w] > level[lo] or (level[w] == level[lo] and pos[w] < pos[lo])  # eq. 25
    assert (pairs.groupby("request_id").size() <= per_request).all()
    # strict behaviour pairs are taken before equal-level ones
    for rid, g in pairs.groupby("request_id"):
        lv = level[rows["request_id"] == rid]
        n_strict = sum(int((lv > x).sum()) for x in lv)
        assert (g["winner_level"] > g["loser_level"]).sum() == min(n_strict, per_request)


def test_advantages_are_centred_scaled_and_clipped():
    r = torch.tensor([0.0, 1.0, 2.0, 3.0, 100.0])
    a = advantages(r, clip=1.5)
    assert a.max() == pytest.approx(1.5) and a.min() >= -1.5
    unclipped = advantages(torch.tensor([1.0, 2.0, 3.0]), clip=10.0)
    assert unclipped.mean() == pytest.approx(0.0, abs=1e-6)
    assert unclipped.pow(2).mean().sqrt() == pytest.approx(1.0, abs=1e-4)


def test_purchases_of_dear_items_weigh_most():
    r = torch.from_numpy(
        rewards(
            np.array(["click", "purchase", "purchase"]),
            np.array([0.0, 5.0, 50.0]),
            {"click": 1.0, "cart": 2.0, "purchase": 3.0},
            1.0,
        )
    )
    w = sample_weights(r, torch.tensor([0.0, 5.0, 50.0]), lam=0.5, clip=2.0)
    assert w[0] < w[1] < w[2]


def test_dpo_updates_only_the_last_sid_head():
    p = parts()
    model, ref = p.model, parts().model
    b = batch(p, b=6)
    winner = b["target"]
    loser = b["target"].roll(1, 0)
    model.zero_grad()
    dpo_loss(model, ref, b, winner, loser, beta=0.1).backward()
    tgt = last_sid_step(model)
    assert model.cfg.path.fields[tgt] == "s2" and tgt < model.n_steps - 1  # dedup follows
    moved = {
        n for n, q in model.named_parameters() if q.grad is not None and q.grad.abs().sum() > 0
    }
    assert moved and all(n.startswith(f"heads.{tgt}.") for n in moved), sorted(moved)
    assert all(q.grad is None for q in ref.parameters())


def test_dpo_scores_through_the_decoded_logits_with_trie_nodes():
    # node vectors (tied to the item embeddings) and the trie softmax on: log pi of a path is
    # the score beam search gives it, and DPO still moves only the last SID layer's head and
    # its edge vectors
    from models.retriever.beam import beam_search

    # 150 items on 6^3 paths, no attributes: most last-layer nodes have several children (one
    # child has log-probability 0 under the trie softmax, whatever the head says)
    p = parts(n_items=150, chain=[], node_dim=4, node_tie=True, trie_softmax=True)
    torch.manual_seed(1)
    for emb in [*p.model.nodes.emb, *p.model.nodes.bias]:
        torch.nn.init.normal_(emb.weight)
    b = {k: v for k, v in batch(p, b=4).items() if k not in ("target", "item_row")}
    p.model.eval()
    items, scores = beam_search(p.model, b, p.trie, beam_size=3)
    for j in range(3):
        path = torch.from_numpy(p.paths.codes[items[:, j].numpy()])
        with torch.no_grad():
            logp = sequence_logprob(p.model, b, path)
        assert torch.allclose(logp, scores[:, j], atol=1e-4)
    plain = parts(
        n_items=150, chain=[]
    )  # the same weights without the trie parts score differently
    plain.model.load_state_dict(p.model.state_dict(), strict=False)
    plain.model.eval()
    path = torch.from_numpy(p.paths.codes[items[:, 0].numpy()])
    with torch.no_grad():
        assert not torch.allclose(sequence_logprob(plain.model, b, path), scores[:, 0], atol=1e-3)
    p.model.train()
    ref = parts(n_items=150, chain=[], node_dim=4, node_tie=True, trie_softmax=True).model
    full = batch(p, b=6)
    p.model.zero_grad()
    dpo_loss(p.model, ref, full, full["target"], full["target"].roll(1, 0), 0.1).backward()
    tgt = last_sid_step(p.model)
    moved = {
        n for n, q in p.model.named_parameters() if q.grad is not None and q.grad.abs().sum() > 0
    }
    mine = (f"heads.{tgt}.", *(f"nodes.{k}.{tgt}." for k in ("proj", "emb", "bias", "tie")))
    assert any(n.startswith("nodes.") for n in moved), sorted(moved)
    assert moved and all(n.startswith(mine) for n in moved), sorted(moved)


def test_without_stop_gradient_the_whole_decoder_moves():
    p = parts()
    b = batch(p, b=4)
    sequence_logprob(p.model, b, b["target"], stop_gradient=False).sum().backward()
    moved = {n.split(".")[0] for n, q in p.model.named_parameters() if q.grad is not None}
    assert {"blocks", "heads", "inputs"} <= moved


def test_joint_loss_is_finite_and_dpo_margin_grows():
    p = parts()
    model, ref = p.model, parts().model
    ref.load_state_dict(model.state_dict())
    b = batch(p, b=8)
    b |= {"reward": torch.arange(8.0), "gmv": torch.zeros(8)}
    winner, loser = b["target"], b["target"].roll(1, 0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        loss = (
            20 * rft_loss(model, b, 0.5, 2.0) + 3 * dpo_loss(model, ref, b, winner, loser, 0.1)
        ) / 23
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(dpo_loss(model, ref, b, winner, loser, 0.1).detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_predicted_reward_aggregates_the_rankers_objectives():
    # eq. 21: R = sum_k w_k y^_k + w_gmv log1p(y^_purchase * price)
    probs = {"click": np.array([0.2, 0.9]), "purchase": np.array([0.1, 0.5])}
    price = np.array([10.0, np.nan])
    r = predicted_rewards(probs, price, {"click": 1.0, "purchase": 3.0, "gmv": 2.0})
    expected = np.array([0.2 + 0.3 + 2 * np.log1p(1.0), 0.9 + 1.5 + 0.0])
    np.testing.assert_allclose(r, expected, rtol=1e-6)


def test_ranker_predictions_score_each_samples_exposure_row(tmp_path):
    from retriever_fixtures import users
    from test_ranker import SMALL, setup

    from models.alignment.reward import ranker_predictions
    from models.ranker.checkpoint import save_ranker
    from models.ranker.data import encode_frame
    from models.ranker.train import predict_tasks
    from sidflow.config import RankerParams

    rp = RankerParams(**SMALL, max_steps=5)
    model, enc, frame = setup(rp)
    save_ranker(model, enc, rp.history_len, tmp_path)
    frame.to_parquet(tmp_path / "samples.parquet")
    train = frame[~frame["eval"]].reset_index(drop=True)
    pick = train.iloc[[3, 0, 7]]
    keys = pd.concat(
        [pick[["request_id", "item_id"]], pd.DataFrame({"request_id": ["zz"], "item_id": ["i0"]})]
    )
    pred = ranker_predictions(tmp_path, users(), keys.reset_index(drop=True))
    assert pred.matched.tolist() == [True, True, True, False]
    direct = predict_tasks(model, encode_frame(pick, enc, users(), rp.history_len))
    np.testing.assert_allclose(pred.probs["click"][:3], direct[:, 0], rtol=1e-5)
    np.testing.assert_allclose(pred.probs["purchase"][:3], direct[:, 1], rtol=1e-5)
    assert pred.probs["click"][3] == pytest.approx(direct[:, 0].mean(), rel=1e-5)


def test_acceptance_and_report_samples_are_disjoint_users():
    from models.alignment.run import acceptance_split

    users = [f"u{i % 37}" for i in range(400)]
    accept = acceptance_split(users, 0.5)
    by_user = pd.Series(accept).groupby(pd.Series(users)).nunique()
    assert (by_user == 1).all()  # a user's samples all on one side
    assert 0.3 < accept.mean() < 0.7
    assert (acceptance_split(users, 0.5) == accept).all()  # stable
