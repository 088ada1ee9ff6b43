"""The log-linear re-rank of a retriever's candidates by a second model (score_mix)."""

from __future__ import annotations

import numpy as np

from models.baselines.score_mix import choose_weight, mix_rerank

# two requests, three candidate slots; request 1 has only two candidates (-1 = empty slot)
ITEMS = np.array([[7, 3, 5], [4, 9, -1]])
LOGP_A = np.array([[-1.0, -2.0, -3.0], [-0.5, -1.0, -np.inf]])
LOGP_B = np.array([[-4.0, -1.0, -0.5], [-3.0, -0.1, -np.inf]])


def test_weight_zero_keeps_the_first_models_order() -> None:
    assert mix_rerank(ITEMS, LOGP_A, LOGP_B, 0.0).tolist() == ITEMS.tolist()


def test_mixed_order_by_hand() -> None:
    # w = 1: request 0 scores 7: -5.0, 3: -3.0, 5: -3.5 -> 3, 5, 7;
    # request 1 scores 4: -3.5, 9: -1.1 -> 9, 4 and the empty slot stays last
    assert mix_rerank(ITEMS, LOGP_A, LOGP_B, 1.0).tolist() == [[3, 5, 7], [9, 4, -1]]


def test_ties_keep_the_first_models_order() -> None:
    items = np.array([[1, 2]])
    same = np.array([[-1.0, -1.0]])
    assert mix_rerank(items, same, same, 0.5).tolist() == [[1, 2]]


def test_choose_weight_picks_the_best_validation_ndcg() -> None:
    targets = np.array([3, 9])  # second in the first model's lists, first once mixed at w = 1
    w, curve = choose_weight(ITEMS, LOGP_A, LOGP_B, targets, [0.0, 1.0], k=10)
    assert w == 1.0
    assert curve[0.0] == 1 / np.log2(3)  # both targets at rank 1 (0-based)
    assert curve[1.0] == 1.0  # both first
