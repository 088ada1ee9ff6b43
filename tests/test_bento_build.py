"""`bentoml build` of sidflow's Bento, offline, from `bentofile.yaml` and a real tiny bundle.

The bundle is made the way the `bento_bundle` asset makes it (a retriever trained for a few
steps on the tiny world, the warehouse's catalogue, users, histories and popularity), without
running the whole daily graph. The Bento goes to the working folder's BentoML home; every
build and export runs with the proxies pointing at a closed port, so nothing may need the
network.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from retriever_fixtures import one_thread
from test_retriever_pipeline import TINY as RETRIEVER_TINY

from ingestion.warehouse import Warehouse
from serving.build import BENTOFILE, bento_manifest, bento_store, build_bento
from serving.bundle import (
    MODEL_NAME,
    BundleManifest,
    bundle_path,
    histories,
    model_store,
    popularity,
    read_manifest,
    save_bundle,
)
from serving.launch import wait_ready
from sidflow.config import PROJECT_ROOT, load_params
from sidflow.registry import Registry
from sidflow.workdir import Workdir

_threads = pytest.fixture(autouse=True)(one_thread)

# the retriever tests' tiny settings, trained for 2 steps (the Bento only needs a bundle)
TINY = {**RETRIEVER_TINY, "retriever.train.max_steps": 2, "retriever.eval.max_samples": 20}
NO_NETWORK = {
    **{v: "http://127.0.0.1:9" for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_world) -> tuple[Workdir, str]:
    """A bundle of the tiny world's last day in a fresh working folder's model store."""
    from models.retriever.stage import train_run, warehouse_inputs
    from models.tokenizer import build_sids

    wd = Workdir(tmp_path_factory.mktemp("bento") / "work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIDFLOW_WORKDIR", str(wd.root))
        for var, value in NO_NETWORK.items():
            mp.setenv(var, value)
        params = load_params(overrides=TINY)
        wh = Warehouse(wd.warehouse)
        day = tiny_world.days[-1]
        items = tiny_world.items(day)
        wh.upsert("items", items)
        wh.upsert("users", tiny_world.users())
        for d in tiny_world.days:
            wh.write_events(tiny_world.events(d), [d])
        vectors = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
        table = build_sids(
            vectors,
            None,
            K=8,
            L=2,
            capacity=True,
            seed=0,
            item_ids=items["item_id"].to_numpy(),
            version="sid-test",
        )
        events, catalogue, users = warehouse_inputs(wh, day)
        run = wd.retriever_dir(day)
        train_run(
            params, events, catalogue, users, table.frame, day, run, progress=False, codebook_size=8
        )
        tables = {
            "catalogue": catalogue,
            "users": users,
            "histories": histories(events, params.retriever.model.history_len),
            "popularity": popularity(events, day),
        }
        manifest = BundleManifest(
            day=day.isoformat(),
            task_behaviour="click",
            sid_version="sid-test",
            sid_dvc_hash="n/a",
            window=f"{tiny_world.days[0]}..{day - dt.timedelta(days=1)}",
            parts=["retriever"],
            metrics={},
        )
        tag = save_bundle(wd.root, day, {"retriever": run}, tables, manifest)
        yield wd, tag


@pytest.fixture
def offline(bundle, monkeypatch: pytest.MonkeyPatch) -> tuple[Workdir, str]:
    """The bundle, with $SIDFLOW_WORKDIR on its folder and no reachable network."""
    wd, tag = bundle
    monkeypatch.setenv("SIDFLOW_WORKDIR", str(wd.root))
    for var, value in NO_NETWORK.items():
        monkeypatch.setenv(var, value)
    return wd, tag


def test_bento_holds_the_service_the_bundle_and_unlocked_packages(offline):
    wd, tag = offline
    version = tag.split(":", 1)[1]
    built = build_bento(wd.root, tag)
    assert built["tag"] == f"sidflow:{version}"  # the Bento carries the bundle's version

    bento = bento_store(wd.root).get(built["tag"])  # the working folder's store, not ~/bentoml
    assert Path(bento.path) == Path(built["path"])
    assert Path(built["path"]).is_relative_to(wd.root / "bentoml" / "bentos")
    assert [str(m.tag) for m in bento.info.models] == [tag]

    manifest = bento_manifest(Path(built["path"]))
    assert manifest["service"] == "serving.service:Sidflow" and manifest["name"] == "sidflow"
    assert [m["tag"] for m in manifest["models"]] == [tag]
    assert manifest["labels"]["project"] == "sidflow"
    assert {r["route"] for r in manifest["schema"]["routes"]} == {"/recommend", "/metadata"}
    src = Path(built["path"]) / "src"
    for f in (
        "serving/service.py",
        "serving/recommender.py",
        "models/retriever/beam.py",
        "params.yaml",
        "bentofile.yaml",
    ):
        assert (src / f).is_file(), f
    assert not list(src.rglob("*.parquet")) and not (src / "tests").exists()
    # lock_packages: false -> the requirements are the bentofile's lines, nothing resolved
    wanted = yaml.safe_load(BENTOFILE.read_text())["python"]
    assert wanted["lock_packages"] is False
    reqs = (Path(built["path"]) / "env/python/requirements.txt").read_text().split()
    assert set(reqs) == {*wanted["packages"], f"bentoml=={bentoml.__version__}"}

    # building again replaces the Bento of that version (the code may have changed)
    assert build_bento(wd.root, tag) == built
    same = [b for b in bento_store(wd.root).list("sidflow") if b.tag.version == version]
    assert len(same) == 1


def test_cli_builds_the_given_bundle_and_exports_it_with_the_model(offline, tmp_path: Path):
    from lifecycle.cli.main import main

    wd, tag = offline
    version = tag.split(":", 1)[1]
    # a newer bundle in the store (`:latest` now), so the build must pin the one asked for
    folder = bundle_path(wd.root, tag)
    tables = {
        t: pd.read_parquet(folder / f"{t}.parquet")
        for t in ("catalogue", "users", "histories", "popularity")
    }
    manifest = BundleManifest.from_json(read_manifest(wd.root, tag))
    manifest = dataclasses.replace(manifest, window=manifest.window + " (a newer bundle)")
    day = dt.date.fromisoformat(manifest.day)
    newer = save_bundle(wd.root, day, {"retriever": folder / "retriever"}, tables, manifest)
    assert newer != tag and str(model_store(wd.root).get(f"{MODEL_NAME}:latest").tag) == newer
    archive = tmp_path / "sidflow.bento"
    assert main(["build-bento", "--tag", tag, "--export", str(archive)]) == 0
    bento = bento_store(wd.root).get(f"sidflow:{version}")
    assert [str(m.tag) for m in bento.info.models] == [tag]
    model_dir = f"models/{MODEL_NAME}/{version}"
    with tarfile.open(archive) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        for f in (
            "manifest.json",
            "retriever/model.safetensors",
            "retriever/item_paths.parquet",
            "catalogue.parquet",
            "histories.parquet",
            "popularity.parquet",
        ):
            assert f"{model_dir}/{f}" in members, f
        for p in folder.rglob("*"):  # every file of the bundle, byte for byte
            if p.is_file() and p.name != "model.yaml":  # model.yaml: BentoML's own record
                packed = tar.extractfile(members[f"{model_dir}/{p.relative_to(folder).as_posix()}"])
                assert packed.read() == p.read_bytes(), p
    assert {"bento.yaml", "src/serving/service.py"} <= set(members)


def test_plain_bentoml_build_picks_the_latest_bundle(offline):
    """`BENTOML_HOME=<workdir>/bentoml bentoml build` from the checkout, as the README says."""
    wd, _ = offline
    env = {**os.environ, "BENTOML_HOME": str(wd.root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-o", "tag"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    bento_tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    latest = str(model_store(wd.root).get(f"{MODEL_NAME}:latest").tag)
    bento = bento_store(wd.root).get(bento_tag)
    assert [str(m.tag) for m in bento.info.models] == [latest]  # resolved to a version


def test_the_built_bento_serves_from_its_own_source(offline, tmp_path: Path):
    """`bentoml serve sidflow:<version>` (not the checkout): the Bento's src is complete."""
    wd, tag = offline
    built = build_bento(wd.root, tag)
    Registry(wd.registry).promote({"tag": tag, **read_manifest(wd.root, tag)}, reason="test")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "BENTOML_HOME": str(wd.root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "SIDFLOW_WORKDIR": str(wd.root),
    }
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        built["tag"],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, timeout=120)
            r = httpx.post(
                f"{url}/recommend",
                json={"user_id": "u0000001", "scene": "feed", "k": 5},
                timeout=30,
            )
            pid = httpx.post(f"{url}/metadata", json={}, timeout=10).json()["pid"]
            worker_cwd = Path(f"/proc/{pid}/cwd")
            if worker_cwd.exists():  # Linux: the worker runs in the Bento's src folder
                assert worker_cwd.resolve() == (Path(built["path"]) / "src").resolve()
        except RuntimeError as err:
            pytest.fail(f"{err}: {(tmp_path / 'serve.log').read_text()[-2000:]}")
        finally:
            proc.terminate()
            proc.wait(30)
    assert r.status_code == 200, r.text
    body = r.json()
    catalogue = set(pd.read_parquet(bundle_path(wd.root, tag) / "catalogue.parquet")["item_id"])
    assert body["model"] == tag and len(body["items"]) == 5
    assert {i["item_id"] for i in body["items"]} <= catalogue


def test_a_bundle_missing_from_the_store_is_named(offline):
    wd, _ = offline
    with pytest.raises(ValueError, match=f"{MODEL_NAME}:d20990101-missing"):
        build_bento(wd.root, f"{MODEL_NAME}:d20990101-missing")
