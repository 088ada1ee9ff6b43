"""Capacity-constrained residual k-means (UniRec Alg. 1): reference == fast, capacity, dedup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from models.tokenizer import RQConfig, build_sids, load_sid_table, rq_kmeans_reference
from models.tokenizer.dedup import assign_dedup, collision_rate
from models.tokenizer.dvc_hash import dvc_dir_hash
from models.tokenizer.incremental import add_new_items, sid_churn
from models.tokenizer.metrics import concentration
from models.tokenizer.rq_kmeans import rq_kmeans

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def blobs(seed: int, n: int, d: int, spread: float = 0.4) -> np.ndarray:
    """n points around a few random centres (float64)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // 8), d)) * 2
    return centres[rng.integers(0, len(centres), n)] + spread * rng.standard_normal((n, d))


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, RQConfig]:
    """Small random instances: heavy-tailed integer weights, any tau, both modes."""
    seed = draw(st.integers(0, 10_000))
    k = draw(st.integers(2, 8))
    n = draw(st.integers(10 * k, 100))  # >= 10 items per code: no degenerate residual layers
    x = blobs(seed, n, draw(st.integers(2, 5)))
    rng = np.random.default_rng(seed + 1)
    w = np.floor(rng.pareto(draw(st.sampled_from([0.8, 1.5, 3.0])), n) * 4) + 1
    cfg = RQConfig(
        K=k,
        L=draw(st.integers(1, 3)),
        tau=draw(st.floats(1.0, 1.6)),
        capacity=draw(st.booleans()),
        max_iter=draw(st.integers(1, 15)),
        init_sample=draw(st.sampled_from([8, 1000])),
        seed=seed,
    )
    return x, w, cfg


@FAST
@given(problems())
def test_reference_and_fast_agree(problem):
    x, w, cfg = problem
    ref = rq_kmeans_reference(x, w, cfg)
    # Exact agreement is claimed away from float ties. Ties arise structurally when two
    # centres coincide (e.g. two residual clusters whose members sum to zero both have mean
    # ~0, up to rounding that differs between numpy and BLAS): such draws are not informative.
    for book in ref.codebooks:
        gaps = np.linalg.norm(book[:, None] - book[None], axis=-1) + np.eye(len(book))
        assume(gaps.min() > 1e-6)
    fast = rq_kmeans(x, w, cfg, device="cpu", dtype=torch.float64)
    np.testing.assert_array_equal(fast.codes, ref.codes)
    np.testing.assert_allclose(fast.codebooks, ref.codebooks, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(fast.loads, ref.loads)
    assert fast.iterations == ref.iterations and fast.unplaceable == ref.unplaceable


@FAST
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(2, 6),
    n=st.integers(40, 120),
    tau=st.floats(1.0, 1.5),
    w_max=st.integers(1, 6),
)
def test_capacity_holds_whenever_greedy_feasible(seed, k, n, tau, w_max):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, w_max + 1, n).astype(float)
    cap = w.sum() / k
    # max w_i <= (tau - 1) C_cap guarantees a cluster with room for every move (rq_common).
    assume(w.max() <= (tau - 1) * cap)
    cfg = RQConfig(K=k, L=2, tau=tau, capacity=True, max_iter=10, seed=seed)
    res = rq_kmeans(blobs(seed, n, 3), w, cfg, device="cpu")
    assert res.unplaceable == [0, 0]
    assert (res.loads.max(axis=1) <= tau * cap * (1 + 1e-12)).all(), res.max_load_ratio


def test_capacity_balances_exposure_and_plain_does_not():
    x = blobs(0, 4000, 8, spread=0.2)
    w = np.minimum(np.floor(np.random.default_rng(1).lognormal(1, 1.2, 4000)) + 1, 40)
    cap_res = rq_kmeans(x, w, RQConfig(K=16, L=2, tau=1.05, seed=3), device="cpu")
    plain = rq_kmeans(x, w, RQConfig(K=16, L=2, capacity=False, seed=3), device="cpu")
    feasible = w.max() <= 0.05 * w.sum() / 16
    assert feasible and cap_res.max_load_ratio.max() <= 1.05 + 1e-9
    assert plain.max_load_ratio.max() > 1.25  # exposure piles up without the repair


def test_infeasible_items_are_placed_and_reported():
    x = blobs(2, 50, 3)
    w = np.ones(50)
    w[7] = 100.0  # one item heavier than tau * C_cap on its own
    res = rq_kmeans(x, w, RQConfig(K=5, L=1, tau=1.1, seed=0), device="cpu")
    ref = rq_kmeans_reference(x, w, RQConfig(K=5, L=1, tau=1.1, seed=0))
    np.testing.assert_array_equal(res.codes, ref.codes)
    assert res.unplaceable[0] >= 1 and res.codes.max() < 5


def test_seeds_reproduce_and_differ():
    x, w = blobs(5, 300, 6), np.arange(1, 301, dtype=float)
    a = build_sids(x, w, K=16, L=3, seed=11)
    b = build_sids(x, w, K=16, L=3, seed=11)
    c = build_sids(x, w, K=16, L=3, seed=12)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    assert not np.array_equal(a.codes, c.codes)


def test_codes_unique_after_dedup_with_duplicate_items():
    x = np.repeat(blobs(3, 40, 4), 3, axis=0)  # every embedding three times: collisions
    table = build_sids(x, np.ones(120), K=8, L=2, tau=1.5, seed=0)
    assert table.meta["collision_rate_before_dedup"] > 0.5
    keys = table.frame[["s0", "s1", "dedup"]]
    assert not keys.duplicated().any()
    assert len(table.sid_to_item()) == 120
    assert list(table.frame.columns) == ["item_id", "s0", "s1", "dedup", "version"]


def test_collision_rate_and_dedup_by_hand():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [4, 4]])
    assert collision_rate(codes) == pytest.approx(3 / 5)
    ids = np.array(["e", "a", "c", "b", "d"])
    assert assign_dedup(codes, ids).tolist() == [2, 0, 0, 1, 0]  # item_id order within a code
    prev = pd.DataFrame({"item_id": ["e"], "s0": [0], "s1": [1], "dedup": [0]})
    assert assign_dedup(codes, ids, prev).tolist() == [0, 1, 0, 2, 0]  # "e" keeps its index


def test_incremental_mode_leaves_old_items_alone():
    x = blobs(7, 200, 5)
    ids = np.array([f"i{j:03d}" for j in range(200)])
    old = build_sids(x[:150], np.ones(150), K=8, L=3, tau=1.05, seed=1, item_ids=ids[:150])
    weights = pd.Series(np.ones(200), index=ids)
    new = add_new_items(old, ids[150:], x[150:], weights, tau=1.05, version="v2")
    merged = new.frame.set_index("item_id")
    before = old.frame.set_index("item_id")
    cols = ["s0", "s1", "s2", "dedup"]
    pd.testing.assert_frame_equal(merged.loc[before.index, cols], before[cols])
    assert not new.frame[cols].duplicated().any() and len(new.frame) == 200
    churn = sid_churn(old, new)
    assert churn["sid_changed_share"] == 0 and churn["new_items"] == 50
    np.testing.assert_array_equal(new.codebooks, old.codebooks)


def test_concentration_by_hand():
    codes = np.array([[0, 0], [0, 1], [1, 0], [2, 0]] * 25)  # 100 items, 3 tokens, 4 pairs
    exposure = np.array([70.0, 10.0, 15.0, 5.0] * 25)
    conc = concentration(codes, exposure)
    assert conc["sid0"]["top1%"] == pytest.approx(0.80)  # token 0 holds 70 + 10
    assert conc["sid0-1"]["top1%"] == pytest.approx(0.70)  # (0, 0) alone


def test_bad_inputs_name_the_problem():
    x = blobs(0, 20, 3)
    with pytest.raises(ValueError, match="row 4"):
        bad = x.copy()
        bad[4, 1] = np.nan
        rq_kmeans(bad, np.ones(20), RQConfig(K=4, L=1))
    with pytest.raises(ValueError, match=r"weights\[3\]"):
        rq_kmeans(x, np.r_[1, 1, 1, 0, np.ones(16)], RQConfig(K=4, L=1))
    with pytest.raises(ValueError, match="sid.K=32"):
        rq_kmeans(x, np.ones(20), RQConfig(K=32, L=1))


def test_table_round_trip_and_dvc_hash(tmp_path: Path):
    table = build_sids(blobs(1, 64, 4), np.ones(64), K=8, L=2, seed=0, version="v1")
    folder = table.save(tmp_path / "v1")
    back = load_sid_table(folder)
    pd.testing.assert_frame_equal(back.frame, table.frame)
    np.testing.assert_array_equal(back.codebooks, table.codebooks)
    assert back.meta["collision_rate_before_dedup"] == table.meta["collision_rate_before_dedup"]
    # The hash Dagster records is the one DVC computes for the same folder.
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True
    )
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "v1"], cwd=tmp_path, check=True)
    assert f"md5: {dvc_dir_hash(folder)}" in (tmp_path / "v1.dvc").read_text()
    back.frame.drop(columns="dedup").to_parquet(folder / "sid_table.parquet")
    with pytest.raises(ValueError, match="columns"):
        load_sid_table(folder)
