"""The held-out protocols and model selection on validation (models/retriever/protocol.py,
models/retriever/validation.py): leave-one-out splits each user's sequence exactly, the SID
stage's held-out ids are the evaluated engagements, and a run keeps the validation-best
checkpoint and item-head weight, never looking at test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from retriever_fixtures import tiny_params
from review_log import LAST, review_log

from ingestion.warehouse import Warehouse
from models.retriever.protocol import held_out_event_ids, resolve_protocol, split_samples
from models.retriever.samples import build_samples
from models.retriever.stage import RetrieverRun, evaluate_run, train_run
from models.retriever.train import load_checkpoint
from models.retriever.validation import ITEM_HEAD_WEIGHTS
from models.space import FeatureSpace
from sidflow.config import Params, load_params


@pytest.fixture(scope="module")
def log_tables() -> dict[str, pd.DataFrame]:
    """The two-year review log (160 users, 5-10 reviews each)."""
    return review_log()


@pytest.fixture
def warehouse(tmp_path, log_tables) -> Warehouse:
    wh = Warehouse(tmp_path / "wh.duckdb")
    wh.upsert("items", log_tables["items"])
    wh.upsert("users", log_tables["users"])
    ev = log_tables["events"]
    wh.write_events(ev, sorted(ev["ts"].dt.date.unique()))
    return wh


def test_leave_one_out_holds_out_each_users_last_two(log_tables, warehouse):
    ev = log_tables["events"]
    space = FeatureSpace.build(log_tables["items"], log_tables["users"], ["review"])
    split = split_samples(build_samples(ev, space, 20), LAST, "leave_one_out")
    per_user = ev.groupby("user_id").size()
    assert len(split.test) == int((per_user >= 2).sum()) == 160
    assert len(split.valid) == int((per_user >= 3).sum())
    # the rest train, except each user's first review (no history to learn from)
    assert len(split.train) == int((per_user - 3).clip(lower=0).sum())
    last = ev.sort_values(["user_id", "ts", "event_id"]).groupby("user_id").tail(1)
    assert sorted(split.test.item_id) == sorted(last["item_id"])
    held = set(held_out_event_ids(warehouse, LAST, "leave_one_out"))
    assert len(held) == len(split.test) + len(split.valid)
    assert set(last["event_id"]) <= held
    assert held_out_event_ids(warehouse, LAST, "day").empty
    assert resolve_protocol("auto", warehouse, LAST) == "leave_one_out"  # no exposures


def random_sids(items: pd.DataFrame) -> pd.DataFrame:
    """A 3-level SID table of random codes (6 per level) with its dedup level."""
    rng = np.random.default_rng(0)
    sid = pd.DataFrame({"item_id": items["item_id"]})
    for j in range(3):
        sid[f"s{j}"] = rng.integers(0, 6, len(items))
    sid["dedup"] = sid.groupby(["s0", "s1", "s2"]).cumcount()
    sid["version"] = "test"
    return sid


def train_on_log(log_tables, out, **train) -> tuple[Params, RetrieverRun]:
    """A tiny retriever with an item head trained on the review log, leave-one-out; `train`
    overrides `retriever.train` settings."""
    params = load_params(
        overrides={
            "data.scenes": "[review]",
            "retriever.train.max_steps": 24,
            "retriever.train.eval_every": 8,
            "retriever.train.warmup_steps": 4,
            "retriever.train.batch_size": 64,
            "retriever.eval.max_samples": None,
            "retriever.eval.beam_size": 50,
            "retriever.eval.hr_ks": "[50]",
            "retriever.eval.valid_beam": 20,
        }
        | {f"retriever.train.{k}": v for k, v in train.items()}
    )
    mp = tiny_params(profile_fields=[], item_head=True)
    params = params.model_copy(
        update={"retriever": params.retriever.model_copy(update={"model": mp})}
    )
    info = train_run(
        params,
        log_tables["events"],
        log_tables["items"],
        log_tables["users"],
        random_sids(log_tables["items"]),
        LAST,
        out,
        progress=False,
        codebook_size=6,
        protocol="leave_one_out",
    )
    return params, info


def test_run_keeps_the_validation_best_checkpoint_and_item_head_weight(
    tmp_path, log_tables, warehouse
):
    out = tmp_path / "run"
    params, info = train_on_log(log_tables, out)
    sel = info.selection
    curve = sel["validation_curve"]
    assert [step for step, _ in curve] == [8, 16, 24]
    best = max(curve, key=lambda c: (c[1]["recall@10"], -c[0]))  # first of equals
    assert sel["checkpoint"]["step"] == best[0]
    assert sel["checkpoint"]["recall@10"] == best[1]["recall@10"]
    assert sel["item_head_weight"] in ITEM_HEAD_WEIGHTS
    assert load_checkpoint(out / "model.safetensors").item_head_weight == sel["item_head_weight"]
    result = evaluate_run(params, out)
    assert result.protocol == "leave_one_out" and result.samples == 160
    lines = [json.loads(x) for x in (out / "eval_topk.jsonl").read_text().splitlines()]
    assert len(lines) == 160 and {"user", "history", "target", "items"} <= set(lines[0])


def test_patience_stops_the_run_once_validation_stops_improving(tmp_path, log_tables):
    # a budget far beyond what the 160-user log needs: validation peaks early, then stalls
    _, info = train_on_log(
        log_tables, tmp_path / "run", max_steps=600, eval_every=6, patience=2, lr=0.01
    )
    curve = info.selection["validation_curve"]
    scores = [m["recall@10"] for _, m in curve]
    best = scores.index(max(scores))  # the first of equals
    assert info.steps == curve[-1][0] < 600
    assert len(scores) - 1 - best == 2  # stopped after exactly `patience` evaluations without gain
    assert info.selection["checkpoint"]["step"] == curve[best][0]
