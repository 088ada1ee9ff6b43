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
from models.alignment.rft import advantages, rewards, rft_loss, sample_weights

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
