"""Warm start of the daily retrain: rows follow their values, and the run decides warm or cold."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import torch
from retriever_fixtures import SCENES, catalogue, one_thread, tiny_params, users
from test_retriever_pipeline import TINY, world_with_sids  # noqa: F401 - fixture

from models.retriever.build import build_retriever
from models.retriever.warm import row_pairs, warm_start
from sidflow.config import load_params

_threads = pytest.fixture(autouse=True)(one_thread)


def _grow(items: pd.DataFrame, sid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tomorrow's catalogue: a new item that sorts between old ones, and a new brand."""
    new = items.iloc[[0]].assign(item_id="i000a", brand="b-new")
    code = sid.iloc[[0]].assign(item_id="i000a", s0=5, s1=5, s2=5, dedup=0)
    return pd.concat([items, new], ignore_index=True), pd.concat([sid, code], ignore_index=True)


def test_row_pairs_match_values_not_positions():
    new_rows, old_rows = row_pairs(["x", "a", "c"], ["x", "a", "b", "c"])
    assert new_rows.tolist() == [0, 1, 3] and old_rows.tolist() == [0, 1, 2]


def test_warm_start_copies_rows_by_value_and_keeps_new_rows_fresh():
    items, sid = catalogue(60, 6)
    torch.manual_seed(0)
    old = build_retriever(tiny_params(), items, users(), sid, SCENES, 6)
    items2, sid2 = _grow(items, sid)
    torch.manual_seed(1)
    new = build_retriever(tiny_params(), items2, users(), sid2, SCENES, 6)
    init = {k: v.clone() for k, v in new.model.state_dict().items()}
    report = warm_start(new.model, old.model, new.space.vocab, old.space.vocab)

    emb_old = old.model.inputs.field_emb["item_id"].weight
    emb_new = new.model.inputs.field_emb["item_id"].weight
    v_old, v_new = old.space.vocab["item_id"], new.space.vocab["item_id"]
    assert v_new["i001"] == v_old["i001"] + 1  # shifted by the inserted item
    for item in ("i000", "i001", "i059"):
        assert torch.equal(emb_new[v_new[item]], emb_old[v_old[item]]), item
    assert torch.equal(
        emb_new[v_new["i000a"]], init["inputs.field_emb.item_id.weight"][v_new["i000a"]]
    )
    brand_new = new.model.inputs.field_emb["brand"].weight
    assert torch.equal(
        brand_new[new.space.vocab["brand"]["b-new"]],
        init["inputs.field_emb.brand.weight"][new.space.vocab["brand"]["b-new"]],
    )
    # path steps: attribute tokens by value, SID codes by code
    spec_old, spec_new = old.paths.spec, new.paths.spec
    for t, f in enumerate(spec_new.fields[:-1]):
        w_old, w_new = old.model.tok[t].weight, new.model.tok[t].weight
        if f in spec_new.attr_values:
            for i, value in enumerate(spec_new.attr_values[f]):
                if value in spec_old.attr_values[f]:
                    assert torch.equal(w_new[i], w_old[spec_old.attr_values[f].index(value)])
        else:
            n = min(len(w_old), len(w_new))
            assert torch.equal(w_new[:n], w_old[:n])
    assert "inputs.field_emb.item_id.weight" in report["remapped"]
    assert "heads.0.logits.weight" in report["remapped"]
    for name in report["copied"]:  # same name and shape: identical afterwards
        assert torch.equal(new.model.state_dict()[name], old.model.state_dict()[name]), name
    # today's catalogue buffers are never overwritten
    assert torch.equal(new.model.inputs.item_fields, init["inputs.item_fields"])


def test_daily_run_starts_warm_from_yesterday_then_cold_when_settings_change(
    world_with_sids,  # noqa: F811 - fixture
    tmp_path,
):
    from models.retriever.stage import train_run, warehouse_inputs
    from models.tokenizer import load_sid_table
    from sidflow.workdir import previous_run

    params, wh, day = world_with_sids
    params = load_params(
        overrides={**TINY, "retriever.train.max_steps": None, "retriever.train.epochs": 1}
    )
    sid = load_sid_table(params.workdir / "sid" / f"day={day.isoformat()}")
    runs = tmp_path / "runs"
    before = day - dt.timedelta(days=1)
    events, items, users_ = warehouse_inputs(wh, before)
    cold = train_run(
        params,
        events,
        items,
        users_,
        sid.frame,
        before,
        runs / f"day={before}",
        progress=False,
        codebook_size=8,
    )
    assert cold.start == "cold" and (runs / f"day={before}" / "vocab.json").exists()

    prev = previous_run(runs, day)
    assert prev == runs / f"day={before}"
    events, items, users_ = warehouse_inputs(wh, day)
    warm = train_run(
        params,
        events,
        items,
        users_,
        sid.frame,
        day,
        runs / f"day={day}",
        progress=False,
        codebook_size=8,
        warm_from=prev,
    )
    assert warm.start == "warm", warm.warm
    assert warm.warm["sid_kept"] == 1.0 and warm.cold_day == before.isoformat()
    assert warm.warm["report"]["remapped"] > 0 and warm.warm["report"]["copied"] > 0
    # only the newest day's engagements (the cold run saw every day before its own)
    day_rows = events[pd.to_datetime(events["ts"]).dt.date == before]
    assert 0 < warm.train_samples <= len(day_rows)
    saved = json.loads((runs / f"day={day}" / "train.json").read_text())
    assert saved["start"] == "warm"

    other = load_params(
        overrides={**TINY, "retriever.model.d_model": 8, "retriever.model.n_heads": 1}
    )
    again = train_run(
        other,
        events,
        items,
        users_,
        sid.frame,
        day,
        tmp_path / "other",
        progress=False,
        codebook_size=8,
        warm_from=prev,
    )
    assert again.start == "cold" and "settings changed" in again.warm["reason"]
    off = load_params(overrides={**TINY, "retriever.warm_start.enabled": False})
    assert (
        train_run(
            off,
            events,
            items,
            users_,
            sid.frame,
            day,
            tmp_path / "off",
            progress=False,
            codebook_size=8,
            warm_from=prev,
        ).start
        == "cold"
    )
