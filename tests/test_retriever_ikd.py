"""UNGER intra-modality knowledge distillation (unger §3.4.3, eqs. 11-12) in the retriever:
the loss, that generation is untouched, the stage wiring and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from retriever_fixtures import SCENES, batch, catalogue, one_thread, tiny_params, users
from safetensors.numpy import save_file

from ingestion.warehouse import Warehouse
from models.retriever.beam import beam_search
from models.retriever.build import build_retriever
from models.retriever.ikd import ikd_loss, integrated_targets
from models.retriever.train import load_checkpoint, save_checkpoint, train
from sidflow.config import RetrieverTrainParams, load_params
from sidflow.workdir import Workdir

_threads = pytest.fixture(autouse=True)(one_thread)


def _parts(ikd: bool, dim: int = 8, seed: int = 0, **update):
    torch.manual_seed(seed)
    items, sid = catalogue(60, 6, seed)
    return build_retriever(
        tiny_params(ikd=ikd, **update), items, users(), sid, SCENES, 6, integrated_dim=dim
    )


def _with_integrated(p, b, dim: int = 8, seed: int = 0):
    table = np.random.default_rng(seed).normal(size=(len(p.paths), dim)).astype(np.float32)
    return {**b, "integrated": integrated_targets(table, b["item_row"])}


def test_ikd_loss_is_eq_11_with_distinct_in_batch_items():
    g = torch.Generator().manual_seed(0)
    u, e = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    rows = torch.tensor([3, 1, 3, 7, 1])  # repeated targets: one column per distinct item
    e[2], e[4] = e[0], e[1]
    got = ikd_loss(u, e, rows, temperature=0.5)
    keys = F.normalize(e[[1, 0, 3]], dim=-1)  # items 1, 3, 7
    sim = F.normalize(u, dim=-1) @ keys.T / 0.5
    own = torch.tensor([1, 0, 1, 2, 0])
    expected = -(sim.log_softmax(-1)[torch.arange(5), own]).mean()
    assert torch.allclose(got, expected, atol=1e-6)


def test_ikd_off_adds_nothing():
    p = _parts(ikd=False)
    assert p.model.ikd is None and p.model.cfg.integrated_dim == 0
    assert not any(k.startswith("ikd.") for k in p.model.state_dict())
    b = batch(p, 6)
    p.model.eval()
    plain = p.model.loss(b)
    total, l_ikd = p.model.loss_terms(_with_integrated(p, b))
    assert l_ikd is None and torch.equal(total, plain)  # the targets are ignored when off


def test_ikd_on_leaves_the_generator_and_beam_search_unchanged():
    off, on = _parts(ikd=False), _parts(ikd=True)
    # built last: every shared parameter starts from the same values
    shared = off.model.state_dict()
    for k, v in on.model.state_dict().items():
        if not k.startswith("ikd."):
            assert torch.equal(v, shared[k]), k
    assert {k for k in on.model.state_dict() if k.startswith("ikd.")} == {
        "ikd.token",
        "ikd.proj.weight",
        "ikd.proj.bias",
    }
    off.model.eval(), on.model.eval()
    b = _with_integrated(on, batch(on, 6))
    with torch.no_grad():
        plain = off.model.loss(b)
        total, l_ikd = on.model.loss_terms(b)
        assert torch.isfinite(l_ikd) and float(l_ikd) > 0
        # eq. 12: the generative part is the ikd-off loss (z sits after every real position)
        assert torch.allclose(total - on.model.cfg.model.ikd_weight * l_ikd, plain, atol=1e-5)
        got_off = beam_search(off.model, b, off.trie, beam_size=8)
        got_on = beam_search(on.model, b, on.trie, beam_size=8)
    for x, y in zip(got_off, got_on, strict=True):
        assert torch.equal(x, y)


def test_ikd_gradients_reach_the_summary_token_and_the_decoder():
    p = _parts(ikd=True)
    _, l_ikd = p.model.loss_terms(_with_integrated(p, batch(p, 6)))
    l_ikd.backward()
    assert p.model.ikd.token.grad.abs().sum() > 0 and p.model.ikd.proj.weight.grad.abs().sum() > 0
    assert p.model.blocks[0].self_attn.qkv.weight.grad.abs().sum() > 0
    assert p.model.bos.weight.grad.abs().sum() > 0  # through the tokens before z


def test_ikd_needs_its_width():
    with pytest.raises(ValueError, match="integrated embeddings' width"):
        _parts(ikd=True, dim=0)


@pytest.fixture
def tiny_world_sids(workdir: Workdir, tiny_world):
    """Tiny-world warehouse and a SID version (table + its item vectors) for its last day."""
    from models.tokenizer import build_sids

    params = load_params(
        overrides={
            "world.size": "tiny",
            "retriever.model.d_model": 16,
            "retriever.model.n_heads": 2,
            "retriever.model.n_layers": 1,
            "retriever.model.n_experts": 2,
            "retriever.model.ffn_mult": 1.0,
            "retriever.model.d_field": 4,
            "retriever.model.d_prefix": 4,
            "retriever.model.d_hash": 4,
            "retriever.model.history_len": 5,
            "retriever.model.mm_len": 3,
            "retriever.model.ikd": True,
            "retriever.train.batch_size": 64,
            "retriever.train.warmup_steps": 1,
            "retriever.eval.beam_size": 20,
            "retriever.eval.hr_ks": [5, 20],
            "retriever.eval.rank_ks": [5],
            "retriever.eval.max_samples": 40,
        }
    )
    wh = Warehouse(workdir.warehouse)
    items = tiny_world.items(tiny_world.days[-1])
    wh.upsert("items", items)
    wh.upsert("users", tiny_world.users())
    for day in tiny_world.days:
        wh.write_events(tiny_world.events(day), [day])
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    ids = items["item_id"].to_numpy()
    table = build_sids(vectors, None, K=8, L=2, capacity=True, seed=0, item_ids=ids, version="t")
    order = np.argsort(ids)  # the table is sorted by item_id; embeddings follow its rows
    day = tiny_world.days[-1]
    folder = workdir.sid_dir / f"day={day.isoformat()}"
    art = table.save(folder / "artefacts")
    save_file({"vectors": vectors[order]}, str(art / "embeddings.safetensors"))
    return params, wh, day, folder, dict(zip(ids[order], vectors[order], strict=True))


def test_ikd_loss_is_finite_and_decreases_on_the_tiny_world(tiny_world_sids):
    from models.retriever.samples import encode_batch
    from models.retriever.stage import prepare, warehouse_inputs
    from models.tokenizer import load_sid_table

    params, wh, day, folder, by_item = tiny_world_sids
    events, items, users_ = warehouse_inputs(wh, day)
    table = load_sid_table(folder / "artefacts")
    mp = params.retriever.model
    with pytest.raises(ValueError, match="needs the SID version folder"):
        prepare(params, events, items, users_, table.frame, day, mp, 8, "day")
    prep = prepare(params, events, items, users_, table.frame, day, mp, 8, "day", folder)
    # the targets are the SID version's vectors of each path's item
    row = 3
    assert np.allclose(prep.integrated[row], by_item[prep.parts.paths.item_ids[row]])
    data = encode_batch(prep.train, prep.parts.space, prep.parts.paths, mp.profile_fields, {})
    keep = (data["target"] >= 0).all(1)
    data = {k: v[keep] for k, v in data.items()}
    data["integrated"] = integrated_targets(prep.integrated, data["item_row"])
    model = prep.parts.model
    probe = {k: v[:256] for k, v in data.items()}
    model.eval()
    with torch.no_grad():
        before = float(model.loss_terms(probe)[1])
    assert np.isfinite(before)
    tp = RetrieverTrainParams(lr=3e-3, batch_size=64, max_steps=150, warmup_steps=5)
    train(model, data, tp, progress=False)
    model.eval()
    with torch.no_grad():
        after = float(model.loss_terms(probe)[1])
    assert np.isfinite(after) and after < 0.8 * before


def test_ikd_run_folder_and_checkpoint_round_trip(tiny_world_sids, tmp_path):
    from models.retriever.stage import evaluate_run, train_run, warehouse_inputs
    from models.tokenizer import load_sid_table

    params, wh, day, folder, _ = tiny_world_sids
    params = params.model_copy(
        update={
            "retriever": params.retriever.model_copy(
                update={"train": params.retriever.train.model_copy(update={"max_steps": 4})}
            )
        }
    )
    events, items, users_ = warehouse_inputs(wh, day)
    table = load_sid_table(folder / "artefacts")
    out = Workdir(params.workdir).retriever_dir(day)
    info = train_run(
        params,
        events,
        items,
        users_,
        table.frame,
        day,
        out,
        progress=False,
        codebook_size=8,
        sid_folder=folder,
    )
    assert info.steps == 4
    model = load_checkpoint(out / "model.safetensors")
    assert model.ikd is not None and model.cfg.integrated_dim == 8
    assert model.cfg.model.ikd and model.cfg.model.ikd_weight == 1.0
    m = evaluate_run(params, out).to_json()  # beam search never needs the summary token
    assert 0 <= m["hr@5"] <= m["hr@20"] <= 1

    # save -> load keeps the weights and the IKD loss
    again = load_checkpoint(save_checkpoint(model, tmp_path / "again.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    b = batch_like(model)
    assert torch.equal(model.loss_terms(b)[1], again.loss_terms(b)[1])


def batch_like(model):
    """A random training batch for a loaded checkpoint, with IKD targets."""
    g = torch.Generator().manual_seed(0)
    cfg = model.cfg
    n_items = model.inputs.item_fields.shape[0] - 1
    hist = torch.randint(1, n_items + 1, (6, cfg.model.history_len), generator=g)
    target = torch.stack(
        [torch.randint(0, v, (6,), generator=g) for v in cfg.path.vocab_sizes], dim=1
    )
    return {
        "profile": torch.zeros((6, len(cfg.model.profile_fields)), dtype=torch.long),
        "hist": hist,
        "hist_type": torch.ones_like(hist),
        "task": torch.zeros(6, dtype=torch.long),
        "target": target,
        "item_row": torch.tensor([0, 1, 2, 0, 3, 4]),
        "weight": torch.ones(6),
        "integrated": torch.randn(6, cfg.integrated_dim, generator=g),
    }


def test_checkpoints_without_ikd_still_load(tmp_path):
    from safetensors.torch import load_file
    from safetensors.torch import save_file as save_torch

    p = _parts(ikd=False)
    path = save_checkpoint(p.model, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    raw = json.loads(meta["config"])  # as written before IKD existed
    del raw["integrated_dim"]
    for key in ("ikd", "ikd_weight", "ikd_temperature"):
        del raw["model"][key]
    meta["config"] = json.dumps(raw)
    save_torch(load_file(str(path)), str(path), metadata=meta)
    model = load_checkpoint(path)
    assert model.ikd is None and not model.cfg.model.ikd
    b = batch(p, 4)
    p.model.eval()
    assert torch.equal(model.loss(b), p.model.loss(b))
