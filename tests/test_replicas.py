"""Two serving replicas of one built Bento, sharing Redis, the registry and the exposure log.

The daily graph's Bento (the tiny world's, `tiny_graph`) is exported and imported into a
fresh BentoML home, as an image would carry it; each replica is a `bentoml serve
sidflow:<version>` process with a working folder of its own and one params file naming the
shared locations (docs/deployment.md#serving-replicas): the registry file, the exposure log
folder, the model store newer bundles are published to and the Feast registry in one shared
folder, and one Redis online store the pipeline materialized the day's features into.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from services import free_port, redis_server

from data_contracts.runner import validate_table
from features import store
from serving import launch
from serving.build import export_bento
from serving.bundle import BundleManifest, bundle_path, read_manifest, save_bundle
from serving.exposure_log import land_day
from sidflow.config import load_params
from sidflow.registry import Registry
from sidflow.workdir import Workdir


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory: pytest.TempPathFactory):
    """host:port of a private redis-server on 127.0.0.1 (stopped after the module)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as address:
        yield address


def _post(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/recommend", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _traffic(url: str, users: list[str]) -> list[dict]:
    """Bounded traffic: known users (near-line), one with a history of its own (live), one
    unknown user (popularity)."""
    bodies = [{"user_id": u, "scene": "feed", "k": 5} for u in users]
    bodies.append({"user_id": users[0], "scene": "search", "k": 5, "history": ["i0000003"]})
    bodies.append({"user_id": "replica-newcomer", "scene": "feed", "k": 5})
    return [_post(url, b) for b in bodies]


def test_two_replicas_switch_together_and_both_logs_are_ingested(
    tiny_graph, redis_address, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    graph_root, params_file = tiny_graph
    monkeypatch.delenv("SIDFLOW_WORKDIR", raising=False)
    base = load_params(params_file)
    wd = Workdir(base.workdir)
    report = min((wd.reports / "bundles").glob("day=*.json"))  # the graph's own bundle
    bundle = json.loads(report.read_text())
    tag, day = bundle["tag"], dt.date.fromisoformat(bundle["day"])
    assert "ranker" in bundle["parts"]  # the replicas read the online store

    # the shared locations (one folder here; a mount or bucket per deployment)
    shared = tmp_path / "shared"
    overrides = {
        "features.online_store": "redis",
        "features.redis_address": redis_address,
        "features.registry_path": str(shared / "feast" / "registry.db"),
        "serving.registry_path": str(shared / "registry.json"),
        "serving.exposure_log_dir": str(shared / "logs"),
        "serving.model_store_dir": str(shared / "bentoml" / "models"),
        "serving.workers": 1,
    }
    # the pipeline's side: feature definitions and the day's features into the shared stores
    pipeline = load_params(params_file, overrides=overrides)
    store.apply(pipeline)
    store.materialize_day(pipeline, day)
    registry = Registry(shared / "registry.json")
    registry.promote({"tag": tag, **read_manifest(wd.root, tag)}, reason="replica test")

    # the image: the Bento with its bundle, imported into a home of its own
    home = tmp_path / "image-home"
    archive = export_bento(wd.root, bundle["bento"]["tag"], tmp_path / "sidflow.bento")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "import", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    raw = yaml.safe_load(Path(params_file).read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    replica_params = tmp_path / "replica-params.yaml"
    replica_params.write_text(yaml.safe_dump(raw))
    replicas = []
    try:
        for i in range(2):
            port = free_port()
            folder = tmp_path / f"replica-{i}"
            folder.mkdir()
            renv = {**env, "SIDFLOW_PARAMS": str(replica_params), "SIDFLOW_WORKDIR": str(folder)}
            log = open(folder / "serve.log", "w")  # noqa: SIM115 - closed in finally
            cmd = [*launch.serve_command("127.0.0.1", port)]
            cmd[cmd.index("serving.service:Sidflow")] = bundle["bento"]["tag"]
            proc = subprocess.Popen(cmd, cwd=folder, env=renv, stdout=log, stderr=subprocess.STDOUT)
            replicas.append((f"http://127.0.0.1:{port}", proc, log, folder))
        for url, proc, _, folder in replicas:
            try:
                launch.wait_ready(url, proc, timeout=180)
            except RuntimeError as err:
                pytest.fail(f"{err}: {(folder / 'serve.log').read_text()[-3000:]}")

        users = pd.read_parquet(bundle_path(wd.root, tag) / "candidates.parquet")["user_id"]
        users = sorted(set(users))[:6]
        before = {url: _traffic(url, users) for url, *_ in replicas}
        for answers in before.values():
            assert {a["model"] for a in answers} == {tag}
            assert {(a["stage"], a["candidates"]) for a in answers} == {
                ("ranker", "nearline"),  # features from the shared Redis
                ("ranker", "live"),
                ("popularity", ""),
            }

        # a newer bundle published to the shared model store, then promoted
        folder = bundle_path(wd.root, tag)
        tables = {
            t: pd.read_parquet(folder / f"{t}.parquet")
            for t in ("catalogue", "users", "histories", "popularity")
        }
        manifest = BundleManifest.from_json(read_manifest(wd.root, tag))
        manifest = dataclasses.replace(manifest, window=manifest.window + " (replica test)")
        parts = {"retriever": folder / "retriever", "ranker": folder / "ranker"}
        newer = save_bundle(shared, day, parts, tables, manifest, pipeline.serving)
        assert newer != tag
        registry.promote({"tag": newer, **manifest.to_json()}, reason="replica test: newer")
        after = {}
        for url, *_ in replicas:  # the next request of each replica is served by the new one
            deadline = time.monotonic() + 60
            while _post(url, {"user_id": users[0], "scene": "feed", "k": 5})["model"] != newer:
                assert time.monotonic() < deadline, f"{url} still serves {tag}"
                time.sleep(0.2)
            after[url] = _traffic(url, users)
            assert {a["model"] for a in after[url]} == {newer}
    finally:
        for _, proc, log, _ in replicas:
            proc.terminate()
            proc.wait(30)
            log.close()

    # ingestion of the shared log: every answer of both replicas, before and after the switch
    today = dt.datetime.now(dt.UTC).date()
    landed = land_day(shared / "logs", tmp_path / "raw", today)
    # a GX project of its own: the serving tests may validate in the graph's at the same time
    result = validate_table("events", [landed], tmp_path / "gx", day=today, main=landed)
    assert result.quarantined_rows == 0
    valid = set(result.valid["request_id"])
    for url, *_ in replicas:
        ids = {a["request_id"] for a in before[url] + after[url]}
        assert ids <= valid, f"{url}: {len(ids - valid)} answers not ingested"
