"""`train.nproc_per_node > 1`: the retriever, the ranker and the alignment train under torchrun
with two gloo processes on CPU (models/launch.py); on CUDA the same code uses NCCL and bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from retriever_fixtures import batch, one_thread, parts, users
from test_ranker import SMALL
from test_ranker import setup as ranker_setup

from models.alignment.train import optimise_distributed
from models.launch import Handoff, torchrun_command
from models.ranker.data import encode_frame
from models.ranker.train import predict, ranker_metrics, train_ranker_distributed
from models.retriever.train import train, train_distributed
from models.training import backend
from sidflow.config import AlignmentParams, RankerParams, RetrieverTrainParams

_threads = pytest.fixture(autouse=True)(one_thread)


def test_torchrun_command_is_one_standalone_node(tmp_path):
    cmd = torchrun_command("models.ranker.train", Handoff(tmp_path), 4)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in cmd
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[cmd.index("--data") + 1] == str(tmp_path / "inputs")
    assert backend() == ("nccl" if torch.cuda.is_available() else "gloo")


def test_retriever_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    data = batch(parts(), 16, seed=1)
    params = RetrieverTrainParams(max_steps=4, batch_size=8, warmup_steps=1)
    single, ddp = parts(), parts()  # same seed: the same initial weights
    alone = train(single.model, data, params, progress=False)
    result = train_distributed(ddp.model, data, params, 2, tmp_path / "torchrun")
    assert result.world_size == 2 and result.steps == 4
    assert result.samples_seen == 4 * 4  # each rank takes half of every batch of 8
    assert not (tmp_path / "torchrun").exists()  # the hand-off is removed
    # DDP averages the two half-batch gradients: the mean loss of the whole batch, as one
    # process computes it (same data order, same seed)
    for a, b in zip(single.model.parameters(), ddp.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert [s for s, _ in result.losses] == [s for s, _ in alone.losses]


def test_ranker_two_processes(tmp_path):
    rp = RankerParams(**SMALL, max_steps=60)
    model, enc, frame = ranker_setup(rp)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    trained, result = train_ranker_distributed(
        model, enc, rp.history_len, data, rp, 2, tmp_path / "tr"
    )
    assert result.world_size == 2 and result.steps == 60
    curve = [c["total"] for c in result.curve]
    assert np.isfinite(curve).all() and curve[-1] < curve[0]
    moved = [not torch.equal(init[k], v) for k, v in trained.state_dict().items() if k in init]
    assert any(moved)
    held = frame[frame["eval"]].reset_index(drop=True)
    scores = predict(trained, encode_frame(held, enc, users(), rp.history_len))
    metrics = ranker_metrics(held["click"].to_numpy(), scores, held["user_id"].to_numpy())
    assert metrics["rank_auc"] > 0.6, metrics


def test_alignment_two_processes(tmp_path):
    p = parts()
    b = batch(p, 16, seed=3)
    rft = {**b, "reward": torch.arange(16.0), "gmv": torch.zeros(16)}
    dpo = {**b, "winner": b["target"], "loser": b["target"].roll(1, 0)}
    init = {k: v.clone() for k, v in p.model.state_dict().items()}
    ap = AlignmentParams(batch_size=8, epochs=3.0, max_steps=5, lr=5e-3)
    steps, curve = optimise_distributed(p.model, rft, dpo, ap, 2, tmp_path / "al")
    assert steps == 5 and len(curve) == 5
    assert np.isfinite([c["rft"] for c in curve] + [c["dpo"] for c in curve]).all()
    assert any(not torch.equal(init[k], v) for k, v in p.model.state_dict().items())
