"""benchmarks/paired_lists.py: paired differences between runs scored on the same users."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "paired_lists", ROOT / "benchmarks" / "paired_lists.py"
)
paired_lists = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paired_lists)


def write_run(path: Path, ranks: list[int]) -> Path:
    """A run whose user i has its target at 0-based rank ranks[i] (-1: not in the list)."""
    lines = []
    for u, r in enumerate(ranks):
        items = [f"other{j}" for j in range(20)]
        if r >= 0:
            items[r] = f"target{u}"
        lines.append(json.dumps({"user": f"u{u}", "target": f"target{u}", "items": items}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_paired_differences_and_their_standard_error(tmp_path):
    a = write_run(tmp_path / "a.jsonl", [0, 3, -1, 12])  # hits@10: 1 1 0 0
    b = write_run(tmp_path / "b.jsonl", [0, -1, 2, 5])  # hits@10: 1 0 1 1
    out = paired_lists.compare({"a": a, "b": b}, k=10)["b - a"]
    d = np.array([0, -1, 1, 1], float)
    assert out["users"] == 4
    assert out["recall@10"]["difference"] == pytest.approx(d.mean())
    assert out["recall@10"]["paired_se"] == pytest.approx(d.std(ddof=1) / 2)
    ndcg_a = np.array([1, 1 / np.log2(5), 0, 0])
    ndcg_b = np.array([1, 0, 1 / np.log2(4), 1 / np.log2(7)])
    assert out["ndcg@10"]["difference"] == pytest.approx((ndcg_b - ndcg_a).mean())


def test_several_seeds_per_name_compare_each_users_mean(tmp_path):
    a0 = write_run(tmp_path / "a0.jsonl", [0, 3, -1, 12])  # hits@10: 1 1 0 0
    a1 = write_run(tmp_path / "a1.jsonl", [-1, 3, -1, 1])  # hits@10: 0 1 0 1
    b0 = write_run(tmp_path / "b0.jsonl", [0, -1, 2, 5])  # hits@10: 1 0 1 1
    b1 = write_run(tmp_path / "b1.jsonl", [0, -1, -1, 5])  # hits@10: 1 0 0 1
    out = paired_lists.compare({"a": [a0, a1], "b": [b0, b1]}, k=10)["b - a"]
    d = np.array([2, 0, 1, 2], float) / 2 - np.array([1, 2, 0, 1], float) / 2  # sums of 2 seeds
    assert out["users"] == 4
    assert out["recall@10"]["difference"] == pytest.approx(d.mean())
    assert out["recall@10"]["paired_se"] == pytest.approx(d.std(ddof=1) / 2)
    # one seed each is the plain paired comparison
    single = paired_lists.compare({"a": [a0], "b": [b0]}, k=10)["b - a"]
    assert single == paired_lists.compare({"a": a0, "b": b0}, k=10)["b - a"]
