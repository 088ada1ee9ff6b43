"""DIG ranker: the five loss parts, the ablation variants, and serving == offline scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from retriever_fixtures import catalogue, one_thread, users

from models.ranker.checkpoint import load_ranker, save_ranker
from models.ranker.data import ITEM_FIELDS, RankerEncoding, encode_frame, item_tables
from models.ranker.model import group_mean
from models.ranker.samples import FeatureGroups
from models.ranker.serving import LoadedRanker
from models.ranker.stage import build_model
from models.ranker.train import grouped_auc, predict, ranker_metrics, train_ranker
from models.space import FeatureSpace
from sidflow.config import RankerParams, load_params

_threads = pytest.fixture(autouse=True)(one_thread)
SCENES = ["feed", "search"]


def sample_frame(items: pd.DataFrame, n_requests: int = 60, seed: int = 0) -> pd.DataFrame:
    """Requests of 6 items each; clicks depend on a u2i-like feature and the item's brand."""
    rng = np.random.default_rng(seed)
    groups = FeatureGroups.from_params(load_params())
    rows = []
    for r in range(n_requests):
        user = f"u{rng.integers(0, 10)}"
        history = list(rng.choice(items["item_id"], rng.integers(0, 5)))  # as of the request
        for pos, item in enumerate(rng.choice(items["item_id"], 6, replace=False)):
            rows.append(
                {
                    "request_id": f"r{r}",
                    "user_id": user,
                    "item_id": item,
                    "scene": SCENES[r % 2],
                    "position": pos,
                    "history": history,
                }
            )
    frame = pd.DataFrame(rows)
    request = pd.factorize(frame["request_id"])[0]
    cols = {c: rng.gamma(1.0, 2.0, n_requests)[request] for c in groups.user}  # per request
    cols |= {c: rng.gamma(1.0, 2.0, len(frame)) for c in groups.cross}  # per candidate
    brand = items.set_index("item_id")["brand"].reindex(frame["item_id"]).to_numpy()
    logit = 1.5 * (cols[groups.u2i[0]] - 2) + np.where(brand == "b0", 1.5, -0.5)
    cols["click"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype("int8")
    cols["purchase"] = np.zeros(len(frame), "int8")
    cols["eval"] = np.arange(len(frame)) >= int(0.8 * len(frame))
    return pd.concat([frame, pd.DataFrame(cols)], axis=1)


def setup(rp: RankerParams, seed: int = 0):  # noqa: ANN201
    items, sid = catalogue(60, 6, seed)
    space = FeatureSpace.build(items, users(), SCENES)
    frame = sample_frame(items, seed=seed)
    enc = RankerEncoding.fit(frame, space, FeatureGroups.from_params(load_params()), rp.use_u2i)
    fields, sids = item_tables(space, sid)
    torch.manual_seed(seed)
    model = build_model(rp, enc, fields, sids, 6)
    return model, enc, frame


SMALL = {
    "d_emb": 8,
    "d_field": 4,
    "expert_hidden": 16,
    "u2t_hidden": 8,
    "history_len": 5,
    "batch_size": 60,
    "lr": 0.01,
}


def test_loss_parts_finite_and_decreasing():
    # lambda_u2t 1: at the paper's 0.1 the u2t part moves too little in 80 steps to test
    rp = RankerParams(**SMALL, max_steps=80, lambda_u2t=1.0)
    model, enc, frame = setup(rp)
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    first, last = result.curve[0], result.curve[-1]
    for part in ["total", "rank", "recall", "commit", "sem", "u2t"]:
        assert np.isfinite([c[part] for c in result.curve]).all(), part
        assert last[part] < first[part], (part, first[part], last[part])
    # codebooks follow the encoder: the quantised sum reconstructs e_v better than at start
    assert last["sem"] < 0.5 * first["sem"]


def test_u2t_teacher_is_the_mean_over_user_and_bucket():
    values = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    groups = torch.tensor([4, 4, 9, 2])
    assert group_mean(values, groups).squeeze(1).tolist() == [2.0, 2.0, 5.0, 7.0]


def test_bucket_mean_ablation_uses_training_means_and_no_u2t_loss():
    rp = RankerParams(**SMALL, max_steps=10, u2t="bucket_mean")
    model, enc, frame = setup(rp)
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    assert all(c["u2t"] == 0.0 for c in result.curve)
    keys = model.bucket_keys_0
    assert len(keys) > 0 and torch.all(keys[1:] > keys[:-1])  # sorted, unique
    codes = model.item_sids[data["item"]]
    with torch.no_grad():
        user = model.user_side(data["profile"], data["scene"], data["user_dense"], data["hist"])
        u2t = model.u2t(user, None, None, codes, 0)  # type: ignore[arg-type]
    first = codes[:, 0] == codes[0, 0]
    assert torch.allclose(u2t[0], data["cross"][first].mean(0), atol=1e-5)


def test_mlp_on_bucket_mean_adds_the_mlp_correction_to_the_bucket_statistic():
    rp = RankerParams(**SMALL, max_steps=10, u2t="mlp_on_bucket_mean")
    model, enc, frame = setup(rp)
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    result = train_ranker(model, data, rp, progress=False)
    assert all(c["u2t"] > 0.0 for c in result.curve)  # the MLP part is trained (eq. 13 teacher)
    assert len(model.bucket_keys_0) > 0
    codes = model.item_sids[data["item"]]
    with torch.no_grad():
        user = model.user_side(data["profile"], data["scene"], data["user_dense"], data["hist"])
        e_sid = model.sid_prefix(codes)[0]
        pooled = model.attention(model.bn_sid(e_sid), user.hist, user.mask)
        both = model.u2t(user, pooled, e_sid, codes, 0)
        mlp = model.mlp_u2t[0](torch.cat([user.e_u, pooled, e_sid], -1))
    assert torch.allclose(both, model.bucket_mean(codes, 0) + mlp, atol=1e-5)
    assert not torch.allclose(both, mlp)  # the statistic is really added


def test_no_u2i_ablation_drops_the_cross_columns():
    rp = RankerParams(**SMALL, use_u2i=False)
    _, enc, _ = setup(rp)
    groups = FeatureGroups.from_params(load_params())
    assert enc.cross_cols and not set(enc.cross_cols) & set(groups.u2i)


def test_serving_scores_equal_offline_scores(tmp_path):
    rp = RankerParams(**SMALL, max_steps=20)
    model, enc, frame = setup(rp)
    data = encode_frame(frame[~frame["eval"]], enc, users(), rp.history_len)
    train_ranker(model, data, rp, progress=False)
    save_ranker(model, enc, rp.history_len, tmp_path / "ranker")
    users().to_parquet(tmp_path / "users.parquet")
    loaded = LoadedRanker.load(tmp_path / "ranker")
    held = frame[frame["eval"]].reset_index(drop=True)
    offline = predict(load_ranker(tmp_path / "ranker")[0], encode_frame(held, enc, users(), 5))
    for _, req in held.groupby("request_id"):
        first = req.iloc[0]
        user = loaded.user_side(first["user_id"], first["history"], first["scene"])
        online = loaded.score(user, req["item_id"].tolist(), req.reset_index(drop=True))
        np.testing.assert_allclose(online, offline["rank"][req.index], rtol=1e-4, atol=1e-6)


def test_metrics_gap_and_gauc():
    y = np.array([0, 1, 0, 1, 0, 1])
    perfect, worse = (
        np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7]),
        np.array([0.5, 0.4, 0.2, 0.8, 0.9, 0.7]),
    )
    m = ranker_metrics(
        y,
        {"rank": perfect, "recall_l1": worse, "recall_l2": worse},
        np.array(["a", "a", "b", "b", "c", "c"]),
    )
    assert m["rank_auc"] == 1.0 and m["auc_gap"] == pytest.approx(1.0 - m["recall_auc"])
    assert grouped_auc(y, worse, np.array(["a", "a", "b", "b", "c", "c"])) == pytest.approx(1 / 3)


def test_dense_encoding_scales_each_column_and_zeroes_the_missing():
    """Counts log1p-scaled, rates as is, standardised; absent column, NaN and inf -> 0."""
    enc = RankerEncoding(
        vocab={},
        scenes=[],
        user_cols=[],
        cross_cols=[],
        mean={"u_clicks_7d": 1.0, "u_ctr_7d": 0.1, "u_gone": 0.0},
        std={"u_clicks_7d": 2.0, "u_ctr_7d": 0.05, "u_gone": 1.0},
    )
    frame = pd.DataFrame({"u_ctr_7d": [0.2, np.nan, np.inf], "u_clicks_7d": [3.0, -1.0, None]})
    out = enc.dense(frame, ["u_clicks_7d", "u_ctr_7d", "u_gone"])
    want = np.array(
        [
            [(np.log1p(3.0) - 1.0) / 2.0, (0.2 - 0.1) / 0.05, 0.0],
            [(0.0 - 1.0) / 2.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
        ],
        np.float32,
    )
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)


def _ranker_for(items: pd.DataFrame, sid: pd.DataFrame, rp: RankerParams, seed: int):  # noqa: ANN202
    space = FeatureSpace.build(items, users(), SCENES)
    enc = RankerEncoding.fit(sample_frame(items), space, FeatureGroups.from_params(load_params()))
    fields, sids = item_tables(space, sid)
    torch.manual_seed(seed)
    return build_model(rp, enc, fields, sids, 6), enc


def test_ranker_warm_start_copies_rows_by_value_and_plans_cold_when_needed(tmp_path):
    """Yesterday's rows follow their values into today's vocabularies; new rows stay fresh;
    a settings change, moved SID codes or the cold-start period force a cold start."""
    import datetime as dt
    import json

    from models.ranker.warm import warm_plan, warm_start
    from sidflow.config import WarmStartParams

    rp = RankerParams(**SMALL)
    items, sid = catalogue(60, 6)
    old, old_enc = _ranker_for(items, sid, rp, seed=0)
    new_item = items.iloc[[0]].assign(item_id="i000a", brand="b-new")  # sorts between old ids
    items2 = pd.concat([items, new_item], ignore_index=True)
    sid2 = pd.concat([sid, sid.iloc[[0]].assign(item_id="i000a", s0=5, s1=5, s2=5, dedup=0)])
    new, enc = _ranker_for(items2, sid2, rp, seed=1)
    init = {k: v.clone() for k, v in new.state_dict().items()}
    report = warm_start(new, enc, old, old_enc)

    v_old, v_new = old_enc.vocab["item_id"], enc.vocab["item_id"]
    assert v_new["i001"] == v_old["i001"] + 1
    w_old, w_new = old.enc.emb[0].weight, new.enc.emb[0].weight  # item_id embeddings
    for item in ("i000", "i001", "i059"):
        assert torch.equal(w_new[v_new[item]], w_old[v_old[item]]), item
    assert torch.equal(w_new[v_new["i000a"]], init["enc.emb.0.weight"][v_new["i000a"]])
    brand = ITEM_FIELDS.index("brand")
    b_new = enc.vocab["brand"]["b-new"]
    assert torch.equal(new.enc.emb[brand].weight[b_new], init[f"enc.emb.{brand}.weight"][b_new])
    assert {"enc.emb.0.weight", "user_emb.0.weight", "scene_emb.weight"} <= set(report["remapped"])
    for name in report["copied"]:
        assert torch.equal(new.state_dict()[name], old.state_dict()[name]), name
    assert torch.equal(new.item_fields, init["item_fields"])  # today's catalogue, never copied

    day = dt.date(2026, 1, 8)
    prev = tmp_path / "day=2026-01-07"
    save_ranker(old, old_enc, rp.history_len, prev, {"day": "2026-01-07"})
    (prev / "train.json").write_text(json.dumps({"day": "2026-01-07", "cold_day": "2026-01-07"}))
    ws = WarmStartParams(lr=1e-3)
    assert warm_plan(ws, prev, new, enc, day).start == "warm"
    assert warm_plan(ws, None, new, enc, day).start == "cold"
    late = warm_plan(ws, prev, new, enc, dt.date(2026, 1, 14))
    assert late.start == "cold" and "every 7 days" in late.reason
    wider, _ = _ranker_for(items2, sid2, RankerParams(**{**SMALL, "d_emb": 12}), seed=1)
    assert "settings changed" in warm_plan(ws, prev, wider, enc, day).reason
    moved = sid2.assign(s0=(sid2["s0"] + 1) % 6)
    recoded, _ = _ranker_for(items2, moved, rp, seed=1)
    assert "kept their SID" in warm_plan(ws, prev, recoded, enc, day).reason
