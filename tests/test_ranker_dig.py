"""DIG for real (dig §3.2-3.4): learned SIDs re-assigned during training, the collision rate,
and the ranker as a retriever (batched beam search == the plain reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from retriever_fixtures import one_thread, users
from test_ranker import SMALL, setup

from models.ranker.checkpoint import load_ranker, save_ranker
from models.ranker.data import encode_frame
from models.ranker.model import collision_share, unique_argmin
from models.ranker.retrieval import CodeIndex, ranker_beam_search, reference_ranker_beam_search
from models.ranker.train import train_ranker
from sidflow.config import RankerParams

_threads = pytest.fixture(autouse=True)(one_thread)


def test_collision_share_counts_items_whose_full_code_another_item_shares():
    codes = torch.tensor([[1, 2], [1, 2], [1, 3], [2, 2], [0, 0]])  # last: no SID
    assert collision_share(codes) == 0.5


def test_unique_argmin_gives_the_contested_column_to_the_nearer_row():
    dist = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.3, 0.8], [0.05, 0.6, 0.7], [0.1, 0.2, 0.3]])
    group = torch.tensor([0, 0, 0, 1])  # row 3 is alone in its group: plain argmin
    assert unique_argmin(dist, group).tolist() == [2, 1, 0, 0]
    # more rows than columns in a group: the columns are all used, the rest collide
    many = unique_argmin(
        torch.rand(5, 3, generator=torch.Generator().manual_seed(0)),
        torch.zeros(5, dtype=torch.long),
    )
    assert set(many.tolist()) == {0, 1, 2}


def test_learned_sids_move_codes_and_log_the_collision_rate(tmp_path):
    rp = RankerParams(**SMALL, max_steps=40, sid="learned", sid_warmup=0.25)
    model, enc, frame = setup(rp)
    table = model.item_sids.clone()
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    assert result.sid == "learned"
    assert 0.0 < result.moved_from_table <= 1.0  # argmin re-assignment moved some codes
    assert not torch.equal(model.item_sids, table)
    assert (model.item_sids[1:] > 0).all()  # every catalogue item has a learned code
    assert result.collision_final == collision_share(model.item_sids[1:])
    # distinct codes wherever a prefix has room: at most the plain argmin's collisions
    assert all(c["collision"] <= c["collision_argmin"] + 1e-9 for c in result.curve)
    assert all(0.0 <= c["collision"] <= 1.0 for c in result.curve)
    assert any(c["moved"] > 0 for c in result.curve)  # logged per step after the warm-up
    for part in ["total", "rank", "recall", "commit", "sem", "u2t"]:
        assert np.isfinite([c[part] for c in result.curve]).all(), part
    # the learned codes are saved with the weights (safetensors) and come back
    save_ranker(model, enc, rp.history_len, tmp_path)
    loaded, _, raw = load_ranker(tmp_path)
    assert raw["model"]["sid"] == "learned"
    assert torch.equal(loaded.item_sids, model.item_sids)


def test_fixed_sids_keep_the_table_codes():
    rp = RankerParams(**SMALL, max_steps=10)
    model, enc, frame = setup(rp)
    table = model.item_sids.clone()
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    assert torch.equal(model.item_sids, table)
    assert result.moved_from_table == 0.0
    assert result.collision_final == result.collision_start == collision_share(table[1:])


def _trained(sid: str, seed: int):  # noqa: ANN202
    rp = RankerParams(**SMALL, max_steps=12, sid=sid, sid_warmup=0.5, seed=seed)
    model, enc, frame = setup(rp, seed)
    data = encode_frame(frame, enc, users(), rp.history_len)
    train_ranker(model, data, rp, progress=False)
    return model.double().eval(), data


_MODELS: dict = {}


@settings(max_examples=12, deadline=None)
@given(
    sid=st.sampled_from(["fixed", "learned"]),
    seed=st.integers(0, 1),
    start=st.integers(0, 40),
    beam=st.integers(1, 8),
)
def test_beam_search_equals_the_reference(sid, seed, start, beam):
    if (sid, seed) not in _MODELS:
        _MODELS[(sid, seed)] = _trained(sid, seed)
    model, data = _MODELS[(sid, seed)]
    batch = {k: v[start : start + 5] for k, v in data.items()}
    index = CodeIndex.build(model.item_sids, model.cfg.codebook_size)
    items, scores = ranker_beam_search(model, batch, index, beam, top_n=3 * beam)
    ref = reference_ranker_beam_search(model, batch, model.item_sids.numpy(), beam)
    for r, found in enumerate(ref):
        n = min(len(found), 3 * beam)
        got_items = items[r, :n].tolist()
        got_scores = scores[r, :n].tolist()
        assert all(i == -1 for i in items[r, n:].tolist())
        np.testing.assert_allclose(got_scores, [s for _, s in found[:n]], rtol=0, atol=1e-9)
        # same items; an order difference only inside a tie (equal scores)
        for (ref_item, ref_score), item, score in zip(
            found[:n], got_items, got_scores, strict=True
        ):
            assert item == ref_item or abs(score - ref_score) < 1e-9
        assert len(set(got_items)) == n  # no item twice


def test_beam_search_returns_only_catalogue_items_best_first():
    model, data = _trained("learned", 0)
    index = CodeIndex.build(model.item_sids, model.cfg.codebook_size)
    items, scores = ranker_beam_search(model, {k: v[:4] for k, v in data.items()}, index, 10)
    assert (items >= 1).all()  # the beam covers >= 10 items of the 60
    assert (scores[:, 1:] <= scores[:, :-1]).all()
    assert len(set(items[0].tolist())) == items.shape[1]  # no item twice


def test_learned_sids_train_on_the_tiny_world_and_retrieve(tiny_world):
    """Tiny-world exposures (labels, histories; no feature store: the dense columns are the
    training mean) and a capacity-constrained SID table: learned codes move, stay distinct
    where the prefix has room, and the ranker retrieves the catalogue's items by beam search."""
    import pandas as pd

    from models.ranker.data import RankerEncoding, item_tables
    from models.ranker.samples import FeatureGroups, attach_history, exposure_rows, split_rows
    from models.ranker.stage import build_model
    from models.space import FeatureSpace
    from models.tokenizer import build_sids
    from sidflow.config import load_params

    params = load_params(overrides={"world.size": "tiny"})
    days = tiny_world.days[:3]
    events = pd.concat([tiny_world.events(d) for d in days], ignore_index=True)
    items, world_users = tiny_world.items(days[-1]), tiny_world.users()
    ids = items["item_id"].to_numpy()
    vectors = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
    table = build_sids(vectors, None, K=8, L=2, capacity=True, seed=0, item_ids=ids, version="t")
    rows = exposure_rows(events).sort_values(["ts", "request_id", "position"], ignore_index=True)
    rows["eval"] = split_rows(rows, days[-1])
    rows = attach_history(rows, events, 5)
    groups = FeatureGroups.from_params(params)
    frame = rows.assign(**{c: np.nan for c in groups.user + groups.cross})
    space = FeatureSpace.build(items, world_users, params.data.scenes)
    enc = RankerEncoding.fit(frame, space, groups)
    rp = RankerParams(**{**SMALL, "batch_size": 256}, max_steps=40, sid="learned")
    fields, sids = item_tables(space, table.frame)
    torch.manual_seed(0)
    model = build_model(rp, enc, fields, sids, table.K)
    data = encode_frame(frame[~frame["eval"]], enc, world_users, rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    assert result.moved_from_table > 0
    assert len(result.curve) == 2 and all("collision" in c for c in result.curve)
    # 8 x 8 codes for the tiny catalogue: distinct wherever a first-layer code has <= 8 items
    first = model.item_sids[1:, 0]
    overfull = torch.bincount(first)[first] > table.K  # items of first-layer codes past K
    assert result.collision_final <= float(overfull.float().mean())
    held = encode_frame(frame[frame["eval"]].head(8), enc, world_users, rp.history_len)
    index = CodeIndex.build(model.item_sids, model.cfg.codebook_size)
    items_out, _ = ranker_beam_search(model, held, index, beam_size=5, top_n=5)
    assert (items_out >= 1).all() and (items_out < len(model.item_sids)).all()


def test_learned_sids_under_two_processes_come_back_from_the_hand_off(tmp_path):
    """torchrun (models/launch.py): both ranks re-assign the same codes (the codebooks' EMA
    step is all-reduced), and the learned codes travel back in the safetensors checkpoint."""
    from models.ranker.train import train_ranker_distributed

    rp = RankerParams(**SMALL, max_steps=30, sid="learned", sid_warmup=0.3)
    model, enc, frame = setup(rp)
    table = model.item_sids.clone()
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    trained, result = train_ranker_distributed(
        model, enc, rp.history_len, data, rp, 2, tmp_path / "tr"
    )
    assert result.world_size == 2 and result.sid == "learned"
    assert result.moved_from_table > 0 and not torch.equal(trained.item_sids, table)
    assert result.collision_final == collision_share(trained.item_sids[1:])


def test_learned_sids_carry_over_a_warm_start(tmp_path):
    """Yesterday's learned codes follow their items into today's ranker (by item id), and the
    plan stays warm although they differ from today's SID table."""
    import datetime as dt
    import json

    import pandas as pd
    from retriever_fixtures import catalogue
    from test_ranker import _ranker_for

    from models.ranker.warm import warm_plan, warm_start
    from sidflow.config import WarmStartParams

    rp = RankerParams(**SMALL, max_steps=20, sid="learned", sid_warmup=0.2)
    items, sid = catalogue(60, 6)
    old, old_enc = _ranker_for(items, sid, rp, seed=0)
    old.item_sids[1:] = torch.flip(old.item_sids[1:], [0])  # codes the table does not have
    new_item = items.iloc[[0]].assign(item_id="i000a")
    items2 = pd.concat([items, new_item], ignore_index=True)
    sid2 = pd.concat([sid, sid.iloc[[0]].assign(item_id="i000a", s0=5, s1=5, s2=5, dedup=0)])
    new, enc = _ranker_for(items2, sid2, rp, seed=1)
    table_new = new.item_sids.clone()
    prev = tmp_path / "day=2026-01-07"
    save_ranker(old, old_enc, rp.history_len, prev, {"day": "2026-01-07"})
    (prev / "train.json").write_text(json.dumps({"day": "2026-01-07", "cold_day": "2026-01-07"}))
    plan = warm_plan(WarmStartParams(lr=1e-3), prev, new, enc, dt.date(2026, 1, 8))
    assert plan.start == "warm", plan
    warm_start(new, enc, plan.model, plan.previous)
    v_old, v_new = old_enc.vocab["item_id"], enc.vocab["item_id"]
    for item in ("i000", "i001", "i059"):
        assert torch.equal(new.item_sids[v_new[item]], old.item_sids[v_old[item]]), item
    assert torch.equal(new.item_sids[v_new["i000a"]], table_new[v_new["i000a"]])  # new: table's
    # fixed SIDs: the same moved codes force a cold start
    fixed, enc_f = _ranker_for(items2, sid2, RankerParams(**SMALL), seed=1)
    old_fixed, old_enc_f = _ranker_for(items, sid, RankerParams(**SMALL), seed=0)
    old_fixed.item_sids[1:] = torch.flip(old_fixed.item_sids[1:], [0])
    prev_f = tmp_path / "fixed"
    save_ranker(old_fixed, old_enc_f, rp.history_len, prev_f, {"day": "2026-01-07"})
    (prev_f / "train.json").write_text(json.dumps({"day": "2026-01-07"}))
    plan_f = warm_plan(WarmStartParams(lr=1e-3), prev_f, fixed, enc_f, dt.date(2026, 1, 8))
    assert plan_f.start == "cold" and "kept their SID" in plan_f.reason
