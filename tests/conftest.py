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
def amazon_path() -> Path:
    """The Amazon Beauty folder beside the checkout, or skip the test."""
    if not (AMAZON_BEAUTY / "SOURCE.md").exists():
        pytest.skip(f"Amazon Beauty 5-core data not found at {AMAZON_BEAUTY}")
    return AMAZON_BEAUTY
