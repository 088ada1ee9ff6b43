"""Retrieval metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.metrics import (
    hit_ratio,
    ndcg,
    retrieval_report,
    target_ranks,
    token_hit_ratio,
    token_hits,
)


def test_target_ranks():
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, -1, -1], [4, 4, 8]])
    targets = np.array([9, 6, -1, 4])
    # 9 at position 2; 6 missing; -1 target never matches padding; 4 first seen at 0
    assert target_ranks(ranked, targets).tolist() == [2, -1, -1, 0]


def test_hit_ratio_and_ndcg_by_hand():
    ranks = np.array([0, 1, 4, 9, -1])
    assert hit_ratio(ranks, 1) == 1 / 5
    assert hit_ratio(ranks, 5) == 3 / 5
    assert hit_ratio(ranks, 10) == 4 / 5
    # NDCG@5 = (1/log2(2) + 1/log2(3) + 1/log2(6)) / 5
    expected = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    assert math.isclose(ndcg(ranks, 5), expected)
    assert math.isclose(ndcg(ranks, 1), 1 / 5)
    assert ndcg(np.array([-1, -1]), 10) == 0.0


def test_report_on_all_and_purchase_samples():
    ranks = np.array([0, 60, 150, -1])
    purchase = np.array([True, False, True, True])
    r = retrieval_report(ranks, [50, 100, 200], [5], purchase)
    assert r["hr@50"] == 0.25 and r["hr@100"] == 0.5 and r["hr@200"] == 0.75
    assert r["hr@50_purchase"] == 1 / 3 and r["hr@200_purchase"] == 2 / 3
    assert r["recall@5"] == 0.25 and r["ndcg@5"] == 0.25
    assert r["samples"] == 4 and r["purchase_samples"] == 3


def test_token_hit_ratio_per_step():
    logits = [
        torch.tensor([[5.0, 4.0, 3.0, 2.0], [0.0, 1.0, 2.0, 3.0]]),  # top-3: {0,1,2}, {3,2,1}
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),  # vocabulary smaller than k
    ]
    target = torch.tensor([[3, 1], [3, 0]])
    hits = token_hits(logits, target, k=3)
    assert hits.tolist() == [[False, True], [True, True]]
    assert token_hit_ratio(hits, ["cat_l2", "s0"]) == {"cat_l2@3": 0.5, "s0@3": 1.0}
