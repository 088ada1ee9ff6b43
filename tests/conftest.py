"""Shared fixtures: every test works in its own temporary working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidflow.config import Params, load_params
from sidflow.workdir import Workdir

AMAZON_BEAUTY = Path(__file__).resolve().parents[2] / "shared/data/amazon-beauty-2014-5core"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test`) each worker computes on one thread, and so do the
    `sidflow run` / `bentoml serve` processes it starts: two workers with a thread per core
    each would oversubscribe the CI machine's 2 cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workdir:
    """A fresh working folder; $SIDFLOW_WORKDIR points at it."""
    monkeypatch.setenv("SIDFLOW_WORKDIR", str(tmp_path / "work"))
    return Workdir(tmp_path / "work")


@pytest.fixture
def tiny_params(workdir: Workdir) -> Params:
    """Settings for the tiny world in the test's working folder."""
    return load_params(overrides={"world.size": "tiny"})


@pytest.fixture(scope="session")
def tiny_world():
    """The tiny synthetic world (built once per session; it is deterministic)."""
    from ingestion.world import World

    return World(load_params(overrides={"world.size": "tiny"}).world)


@pytest.fixture(scope="session")
def tiny_graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, params file) of the tiny world run through the daily graph (data job for the
    first days, the whole graph on the last: a gated, bundled, promoted model and its Bento).

    Built once per session; under pytest-xdist the workers share it through a file lock in
    the session's common temporary folder (the pattern pytest-xdist documents), so the
    serving and replica tests pay for one run. Tests that change its state (the registry,
    the closed loop) are the serving tests; others copy what they change.
    """
    from filelock import FileLock
    from quick_graph import quick_params_file

    from orchestration.runner import run_days

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    root = base / "tiny-graph"
    with FileLock(str(root) + ".lock"):
        if not (root / "DONE").exists():
            root.mkdir(exist_ok=True)
            # the serving tests check the near-line path, off by default (params.yaml)
            params_file = quick_params_file(
                root, root / "work", extra={"serving.nearline.enabled": True}
            )
            env_before = os.environ.pop("SIDFLOW_WORKDIR", None)
            try:
                params = load_params(params_file)
                days = params.world.days()
                runs = run_days(params, days, train_days=days[-1:])
                assert all(r.success for r in runs), runs
            finally:
                if env_before is not None:
                    os.environ["SIDFLOW_WORKDIR"] = env_before
            (root / "DONE").write_text("the daily graph ran\n")
    return root, root / "params.yaml"


@pytest.fixture(scope="session")
def amazon_path() -> Path:
    """The Amazon Beauty folder beside the checkout, or skip the test."""
    if not (AMAZON_BEAUTY / "SOURCE.md").exists():
        pytest.skip(f"Amazon Beauty 5-core data not found at {AMAZON_BEAUTY}")
    return AMAZON_BEAUTY
