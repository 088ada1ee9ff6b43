"""The SID stage end to end on the tiny world: CLI, daily updates, the Dagster asset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from models.tokenizer import load_sid_table
from models.tokenizer.data import load_tokenizer_data
from models.tokenizer.dvc_hash import dvc_dir_hash
from models.tokenizer.semantic import semantic_embeddings
from models.tokenizer.stage import run_sid_stage
from sidflow.config import load_params
from sidflow.workdir import Workdir

# Small settings so the tiny world (300-310 items) trains in seconds.
# K=16 keeps the test fast; 16^3 paths for 310 items collide often, which the SID gate would
# (rightly) block, so its collision threshold is lifted here: gates are tested in test_gates.py.
SMALL = {
    "world.size": "tiny",
    "sid.K": "16",
    "sid.encoder.epochs": "3",
    "sid.encoder.warm_epochs": "1",
    "sid.max_iter": "15",
    "gates.sid.max_collision_rate": "1.0",
}


@pytest.fixture(scope="session")
def tiny_folder(tiny_world, tmp_path_factory) -> Path:
    """The tiny world as canonical parquet (like `sidflow world --out`), plus a MiniLM cache."""
    out = tmp_path_factory.mktemp("tiny-world")
    (out / "events").mkdir()
    tiny_world.items().to_parquet(out / "items.parquet", index=False)
    tiny_world.users().to_parquet(out / "users.parquet", index=False)
    for day in tiny_world.days:
        tiny_world.events(day).to_parquet(out / "events" / f"day={day}.parquet", index=False)
    semantic_embeddings(tiny_world.items(), out / "minilm.parquet")  # encode once per session
    return out


@pytest.fixture
def params(workdir, tiny_folder):
    """Tiny-world settings in a fresh working folder that shares the session's MiniLM cache."""
    cache = workdir.sid_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_folder / "minilm.parquet", cache / "minilm.parquet")
    return load_params(overrides=SMALL)


class Killed(Exception):
    """Stands for SIGKILL arriving in the middle of a file write."""


def test_a_cut_encoder_cache_write_is_not_a_cache_hit(params, tiny_folder, workdir, monkeypatch):
    """The encoder cache entry appears whole or not at all: a run killed while it writes the
    embeddings leaves nothing the next run would load."""
    from models.tokenizer import embeddings

    data = load_tokenizer_data(tiny_folder)
    cache = workdir.sid_dir / "cache"

    def cut_write(tensors: dict, path: str) -> None:
        Path(path).write_bytes(b"{}")  # the first bytes of a file, then the kill
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(embeddings, "save_np", cut_write)
        with pytest.raises(Killed):
            embeddings.compute_embeddings(data, params.sid, cache)
    rerun, _ = embeddings.compute_embeddings(data, params.sid, cache)
    hit, _ = embeddings.compute_embeddings(data, params.sid, cache)  # the whole entry, loaded
    assert rerun.source == "fused" and np.array_equal(hit.vectors, rerun.vectors)
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []


def test_cli_builds_a_versioned_sid_table(params, tiny_folder, tmp_path, capsys):
    from lifecycle.cli.main import main

    out = tmp_path / "v"
    args = [f"--set={k}={v}" for k, v in SMALL.items()]
    assert (
        main([*args, "sid", "build", "--data", str(tiny_folder), "--out", str(out), "--quiet"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    table = load_sid_table(out)  # the folder the retriever gets
    assert list(table.frame.columns) == ["item_id", "s0", "s1", "s2", "dedup", "version"]
    assert len(table.frame) == 310 and len(table.sid_to_item()) == 310
    assert (table.frame["version"] == summary["version"]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["embedding"] == "fused" and metrics["weights"] == "exposures+1"
    for method in ("capacity", "plain"):
        assert set(metrics[method]["concentration"]) == {"sid0", "sid0-1", "sid0-1-2"}
        assert len(metrics[method]["layers"]) == 3
    for plot in ("concentration.png", "loads.png", "concentration.csv"):
        assert (out / "plots" / plot).stat().st_size > 0
    assert summary["data_version"] == dvc_dir_hash(out / "artefacts")
    # Same data and settings: same artefacts, byte for byte (what DVC relies on).
    again = run_sid_stage(params, tiny_folder, tmp_path / "again")
    assert again.data_version == summary["data_version"]


def test_daily_incremental_keeps_old_codes_and_rebuild_reports_churn(params, tiny_folder, tmp_path):
    d0, d1, d2 = load_params(overrides=SMALL).world.days()
    first = run_sid_stage(params, tiny_folder, tmp_path / "d0", as_of=d0)
    assert first.metrics["mode"] == "fresh" and len(first.table.frame) == 300
    inc = run_sid_stage(
        params, tiny_folder, tmp_path / "d1", as_of=d1, previous=tmp_path / "d0", mode="incremental"
    )
    assert inc.metrics["mode"] == "incremental" and inc.metrics["new_items"] == 5
    cols = ["s0", "s1", "s2", "dedup"]
    old = first.table.frame.set_index("item_id")[cols]
    pd.testing.assert_frame_equal(inc.table.frame.set_index("item_id").loc[old.index, cols], old)
    assert inc.metrics["churn"]["sid_changed_share"] == 0.0
    assert inc.metrics["unique_after_dedup"]
    np.testing.assert_array_equal(inc.table.codebooks, first.table.codebooks)

    rebuilt = run_sid_stage(
        params, tiny_folder, tmp_path / "d2", as_of=d2, previous=tmp_path / "d1", mode="rebuild"
    )
    churn = rebuilt.metrics["churn"]
    assert rebuilt.table.meta["warm_start"] and churn["common_items"] == 305
    assert 0.0 <= churn["sid_changed_share"] <= 1.0 and churn["new_items"] == 5


def test_dagster_sid_table_materializes_on_the_tiny_world(params):
    from orchestration.definitions import DAILY_JOB, build_definitions

    defs = build_definitions(params, SMALL)
    job = defs.resolve_job_def(DAILY_JOB)
    keys = [
        dg.AssetKey(k)
        for k in (
            "raw_events",
            "items",
            "users",
            "validated_events",
            "warehouse_events",
            "sid_table",
        )
    ]
    wd = Workdir(params.workdir)
    versions = []
    with dg.DagsterInstance.ephemeral() as instance:
        for day in params.world.days()[:2]:
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, asset_selection=keys
            )
            assert result.success
            [mat] = [
                e.materialization
                for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey("sid_table")
            ]
            versions.append(mat.tags["dagster/data_version"])
            assert versions[-1] == dvc_dir_hash(wd.sid_dir / f"day={day}" / "artefacts")
            assert mat.metadata["items"].value == 300 + 5 * len(versions) - 5
    metrics = json.loads(
        (wd.sid_dir / f"day={params.world.days()[1]}" / "metrics.json").read_text()
    )
    # Day 0 has no earlier events (text only); day 1 re-learns codes with fused embeddings.
    assert metrics["mode"] == "rebuild" and metrics["embedding"] == "fused"
    assert metrics["events_through"] == str(params.world.days()[0])
