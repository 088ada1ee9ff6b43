"""The retriever stage end to end on the tiny world: run folder, metrics, ablation table,
and the Dagster assets (with a SID version written by the tokenizer's `build_sids`)."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest
from retriever_fixtures import one_thread
from safetensors.numpy import save_file

from ingestion.warehouse import Warehouse
from sidflow.config import load_params
from sidflow.workdir import Workdir

_threads = pytest.fixture(autouse=True)(one_thread)

TINY = {
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
    "retriever.train.max_steps": 4,
    "retriever.train.batch_size": 32,
    "retriever.train.warmup_steps": 1,
    "retriever.eval.beam_size": 20,
    "retriever.eval.hr_ks": [5, 20],
    "retriever.eval.rank_ks": [5],
    "retriever.eval.max_samples": 40,
}


@pytest.fixture
def world_with_sids(workdir: Workdir, tiny_world):
    """Tiny-world warehouse (3 days) and a SID version for its last day."""
    from models.tokenizer import build_sids

    params = load_params(overrides=TINY)
    wh = Warehouse(workdir.warehouse)
    items = tiny_world.items(tiny_world.days[-1])
    wh.upsert("items", items)
    wh.upsert("users", tiny_world.users())
    for day in tiny_world.days:
        wh.write_events(tiny_world.events(day), [day])
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    ids = items["item_id"].to_numpy()
    table = build_sids(vectors, None, K=8, L=2, capacity=True, seed=0, item_ids=ids, version="test")
    order = np.argsort(ids)  # the table is sorted by item_id; embeddings follow its rows
    day = tiny_world.days[-1]
    folder = table.save(workdir.sid_dir / f"day={day.isoformat()}" / "artefacts")
    save_file({"vectors": vectors[order]}, str(folder / "embeddings.safetensors"))
    return params, wh, day


def test_train_and_evaluate_run_folder(world_with_sids):
    from models.retriever.stage import evaluate_run, train_run, warehouse_inputs
    from models.tokenizer import load_sid_table

    params, wh, day = world_with_sids
    work = Workdir(params.workdir)
    table = load_sid_table(work.sid_dir / f"day={day.isoformat()}" / "artefacts")
    events, items, users = warehouse_inputs(wh, day)
    out = work.retriever_dir(day)
    info = train_run(
        params, events, items, users, table.frame, day, out, progress=False, codebook_size=8
    )
    assert info.path_fields == ["cat_l2", "cat_l3", "s0", "s1", "dedup"]
    assert info.steps == 4 and info.train_samples > 0 and info.eval_samples == 40
    m = evaluate_run(params, out).to_json()
    assert json.loads((out / "metrics.json").read_text()) == m
    assert 0 <= m["hr@5"] <= m["hr@20"] <= 1 and m["samples"] == 40
    assert {"hr@20_purchase", "recall@5", "ndcg@5", "cat_l2@3", "s1@3"} <= set(m)
    # the MLflow run (SQLite under the working folder): settings, curve, final + test metrics
    from mlflow import MlflowClient

    link = json.loads((out / "train.json").read_text())["mlflow"]
    assert link["uri"] == f"sqlite:///{work.root / 'mlflow' / 'mlflow.db'}" and link["run_id"]
    client = MlflowClient(link["uri"])
    run = client.get_run(link["run_id"])
    assert run.data.tags["sidflow.stage"] == "retriever" and run.data.tags["sidflow.sid_version"]
    assert run.data.params["train.max_steps"] == "4" and run.data.params["model.d_model"] == "16"
    assert run.data.metrics["steps"] == 4 and run.data.metrics["test_hr_at_5"] == m["hr@5"]
    assert [h.step for h in client.get_metric_history(run.info.run_id, "train_loss")] == [4]


def test_ablation_table_files(world_with_sids):
    from models.retriever.ablations import run_ablations

    params, wh, day = world_with_sids
    res = run_ablations(
        params, wh, day, ["unirec", "no_coa", "no_capacity_sids"], ["popularity", "sasrec_ce"]
    )
    assert list(res) == ["unirec", "no_coa", "no_capacity_sids", "popularity", "sasrec_ce"]
    folder = Workdir(params.workdir).reports / "retriever" / f"day={day.isoformat()}"
    md = (folder / "ablations.md").read_text()
    assert "| no_capacity_sids |" in md and "| sasrec_ce |" in md
    assert json.loads((folder / "ablations.json").read_text())["popularity"]["samples"] == 40
    assert (folder / "ablations.png").stat().st_size > 0
    plain = Workdir(params.workdir).retriever_dir(day, "no_capacity_sids")
    assert "plain" in json.loads((plain / "train.json").read_text())["sid_version"]


def test_dagster_assets_materialize(world_with_sids):
    from orchestration.assets.retriever import build_retriever_assets
    from orchestration.definitions import daily_partitions
    from orchestration.resources import SidflowResource, WarehouseResource

    params, wh, day = world_with_sids
    assets = build_retriever_assets(daily_partitions(params))
    # resource overrides are strings: keep the scalar settings, default cut-offs (50/100/200)
    scalars = {k: str(v) for k, v in TINY.items() if not isinstance(v, list)}
    result = dg.materialize(
        assets,
        partition_key=day.isoformat(),
        resources={
            "sidflow": SidflowResource(workdir=str(params.workdir), overrides=scalars),
            "warehouse": WarehouseResource(path=str(wh.path)),
        },
    )
    assert result.success
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["retriever_eval"].materialization.metadata
    assert 0 <= meta["hr_at_50"].value <= meta["hr_at_200"].value <= 1
    assert mats["retriever_model"].materialization.metadata["steps"].value == 4
