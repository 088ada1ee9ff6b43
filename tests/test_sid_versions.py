"""The DVC round trip of a SID version: add + push, `make clean`, checkout by hash and by the
served bundle's tag (models/tokenizer/versions.py, `sidflow sid checkout`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from lifecycle.cli.main import main
from models.tokenizer import build_sids
from models.tokenizer.dvc_hash import dvc_dir_hash
from models.tokenizer.versions import DvcError, add_version, checkout_version, dvc, store_root
from sidflow.config import load_params
from sidflow.registry import Registry
from sidflow.workdir import Workdir

DAY = "2026-01-03"


def write_version(wd: Workdir, n: int = 40, seed: int = 0):  # noqa: ANN201
    """A small SID version folder, as the tokenizer writes one."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    ids = np.array([f"i{k:03d}" for k in range(n)])
    table = build_sids(vectors, None, K=4, L=2, capacity=True, seed=0, item_ids=ids, version="v")
    folder = table.save(wd.sid_dir / f"day={DAY}" / "artefacts")
    save_file({"vectors": vectors}, str(folder / "embeddings.safetensors"))
    return folder


def test_add_push_clean_checkout(workdir, tmp_path, capsys):
    remote, registry = tmp_path / "remote", tmp_path / "shared" / "registry.json"
    sets = {"dvc.remote_url": str(remote), "serving.registry_path": str(registry)}
    params = load_params(overrides=sets)
    folder = write_version(workdir)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    version = add_version(params, folder)
    assert version.md5 == dvc_dir_hash(folder) and version.md5.endswith(".dir")
    assert version.path == f"day={DAY}/artefacts" and version.remote == str(remote)
    assert (folder.parent / "artefacts.dvc").exists()
    assert len(list((remote / "files" / "md5").rglob("*"))) > len(before)  # files + .dir
    # the served bundle names this version (its manifest, kept in the shared registry)
    tag = "sidflow-recommender:d20260103-test"
    entry = {"tag": tag, "day": DAY, "sid_dvc_hash": version.md5, "sid_dvc_path": version.path}
    Registry(Workdir.of(params).registry).promote(entry, reason="test")

    shutil.rmtree(workdir.root)  # make clean: the working folder, its DVC cache, all gone
    assert remote.exists() and registry.exists()
    argv = [*(f"--set={k}={v}" for k, v in sets.items()), "sid", "checkout"]
    assert main([*argv, tag]) == 0
    out = json.loads(capsys.readouterr().out)
    restored = workdir.sid_dir / f"day={DAY}" / "artefacts"
    assert out["folder"] == str(restored.resolve()) and out["dvc_hash"] == version.md5
    assert {p.name: p.read_bytes() for p in restored.iterdir()} == before
    # the same by hash, elsewhere; and plain `dvc checkout` in the store once the cache holds it
    assert main([*argv, version.md5.removesuffix(".dir")]) == 0  # known: the same folder
    shutil.rmtree(restored)
    dvc(store_root(params), "checkout", f"day={DAY}/artefacts.dvc")
    assert dvc_dir_hash(restored) == version.md5
    elsewhere = checkout_version(params, version.md5, "checkout/x/artefacts")
    assert dvc_dir_hash(elsewhere) == version.md5


def test_unknown_versions_fail_with_the_reason(workdir, tmp_path):
    params = load_params(overrides={"dvc.remote_url": str(tmp_path / "empty-remote")})
    with pytest.raises(ValueError, match="not a DVC directory hash"):
        checkout_version(params, "not-a-hash", "day=x/artefacts")
    with pytest.raises(DvcError, match="pull"):  # nowhere to fetch it from
        checkout_version(params, "0" * 32, "day=x/artefacts")
    with pytest.raises(SystemExit, match="is not a bundle tag, a DVC hash, or a SID version"):
        main([f"--set=dvc.remote_url={tmp_path}", "sid", "checkout", "sid-2026-01-01-abc"])
