"""MaRI in the ranker's serving path: the split user / item blocks score exactly as the plain
rank path, for every objective, with and without cross layers, short and empty histories."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retriever_fixtures import one_thread, users
from test_ranker import SMALL, setup

from models.ranker.checkpoint import save_ranker
from models.ranker.data import encode_frame
from models.ranker.serving import LoadedRanker
from sidflow.config import RankerParams

_threads = pytest.fixture(autouse=True)(one_thread)


@functools.cache
def _model(cross_layers: int):  # noqa: ANN202
    rp = RankerParams(**SMALL, cross_layers=cross_layers, objectives=["click", "purchase"])
    model, enc, frame = setup(rp)
    data = encode_frame(frame, enc, users(), rp.history_len)
    return model.eval(), data


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights and batch-norm statistics away from their initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    cross_layers=st.sampled_from([0, 1, 2]),
    n=st.integers(1, 40),
    history=st.integers(0, 5),
)
def test_mari_equals_the_plain_rank_path(seed, cross_layers, n, history):
    model, data = _model(cross_layers)
    _randomise(model, seed)
    rng = np.random.default_rng(seed)
    r = int(rng.integers(len(data["item"])))
    hist = data["hist"][r : r + 1].clone()
    hist[:, : hist.shape[1] - history] = 0  # the last `history` slots only (0: no history)
    with torch.no_grad():
        user = model.user_side(
            data["profile"][r : r + 1],
            data["scene"][r : r + 1],
            data["user_dense"][r : r + 1],
            hist,
        )
        cand = torch.from_numpy(rng.integers(0, len(data["item"]), n))
        rows, cross = data["item"][cand], data["cross"][cand]
        plain = model.rank_task_logits(user.expand(n), rows, cross)
        mari = model.rank_task_logits_mari(model.mari_user(user), rows, cross)
    assert plain.shape == mari.shape == (n, 2)
    torch.testing.assert_close(mari, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mari", [True, False])
def test_serving_scores_with_and_without_mari_agree(tmp_path, mari):
    rp = RankerParams(**SMALL, max_steps=5)
    model, enc, frame = setup(rp)
    _randomise(model, 3)
    save_ranker(model, enc, rp.history_len, tmp_path / "ranker")
    loaded = LoadedRanker.load(tmp_path / "ranker", mari=mari)
    other = LoadedRanker.load(tmp_path / "ranker", mari=not mari)
    assert loaded.mari is mari and LoadedRanker.load(tmp_path / "ranker").mari is rp.mari
    for _, req in list(frame.groupby("request_id"))[:5]:
        first = req.iloc[0]
        user = loaded.user_side(first["user_id"], first["history"], first["scene"])
        feats = req.reset_index(drop=True)
        a = loaded.score(user, req["item_id"].tolist(), feats)
        b = other.score(user, req["item_id"].tolist(), feats)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
