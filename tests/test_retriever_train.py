"""Training loop: checkpoints round-trip, LR schedule, EMA (DDP: test_distributed_training.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from retriever_fixtures import batch, one_thread, parts

from models.retriever.train import (
    load_checkpoint,
    plot_losses,
    save_checkpoint,
    train,
)
from models.training import lr_at
from sidflow.config import RetrieverTrainParams

_threads = pytest.fixture(autouse=True)(one_thread)


def test_lr_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_checkpoint_round_trip(tmp_path: Path):
    p = parts()
    b = batch(p, 3)
    res = train(p.model, b, RetrieverTrainParams(max_steps=3, batch_size=3), progress=False)
    path = save_checkpoint(p.model, tmp_path / "m.safetensors", {"steps": res.steps})
    back = load_checkpoint(path)
    p.model.eval()
    for a, c in zip(p.model.step_logits(b), back.step_logits(b), strict=True):
        assert torch.allclose(a, c)
    assert plot_losses(res, tmp_path / "loss.png").stat().st_size > 0
    with pytest.raises(ValueError, match="not a retriever checkpoint"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_checkpoint(tmp_path / "other.safetensors")


def test_targets_without_paths_are_dropped_and_empty_data_is_an_error():
    p = parts()
    b = batch(p, 4)
    b["target"][:] = -1
    with pytest.raises(ValueError, match="no training sample"):
        train(p.model, b, RetrieverTrainParams(max_steps=1), progress=False)


def test_ema_weights_are_the_moving_average_of_the_trajectory():
    def run(ema_decay: float | None) -> tuple[list[list[torch.Tensor]], torch.nn.Module]:
        p, seen = parts(), []
        params = RetrieverTrainParams(
            max_steps=4, batch_size=4, warmup_steps=1, ema_decay=ema_decay
        )

        def snapshot(m: torch.nn.Module) -> dict:
            seen.append([q.detach().clone() for q in m.parameters()])
            return {}

        train(p.model, batch(p, 8, seed=2), params, progress=False, eval_fn=snapshot, eval_every=1)
        return seen, p.model

    plain, _ = run(None)  # the weights after each of the 4 steps
    averaged, model = run(0.5)  # same seed, same trajectory; eval_fn sees the average
    expected = plain[0]  # AveragedModel starts from the first step's weights
    for step in range(4):
        if step:
            expected = [0.5 * e + 0.5 * w for e, w in zip(expected, plain[step], strict=True)]
        assert all(
            torch.allclose(a, e, atol=1e-6) for a, e in zip(averaged[step], expected, strict=True)
        )
    assert not all(torch.equal(a, w) for a, w in zip(expected, plain[-1], strict=True))
    assert all(torch.equal(a, e) for a, e in zip(model.parameters(), averaged[-1], strict=True))


def test_patience_stops_once_validation_stops_improving():
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.3, 0.9, 0.9])  # best 0.3 at the 2nd evaluation

    def validate(m: torch.nn.Module) -> dict:
        return {"recall@10": next(scores)}

    p = parts()
    params = RetrieverTrainParams(max_steps=20, batch_size=4, warmup_steps=1)
    res = train(
        p.model, batch(p, 8), params, progress=False, eval_fn=validate, eval_every=2, patience=3
    )
    # evaluations at steps 2, 4, 6, 8, 10: three without a gain over 0.3 after step 4
    assert [s for s, _ in res.evals] == [2, 4, 6, 8, 10] and res.steps == 10
    full = train(parts().model, batch(p, 8), params, progress=False, eval_fn=lambda m: {})
    assert full.steps == 20  # no patience: every step runs
