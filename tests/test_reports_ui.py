"""The reports open in a real browser: Dagster UI and Data Docs in headless Chromium."""

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from sidflow.pipeline import run_days


def _ensure_chromium() -> None:
    if shutil.which("chromium"):
        return
    try:
        done = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                              text=True, timeout=600)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"chromium is not installed and apt-get could not run: {err}")
    if done.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"chromium is not installed and `apt-get install chromium` failed: "
                    f"{done.stderr[-300:]}")  # fmt: skip


def test_dagster_ui_and_data_docs_render(tiny_params, tiny_world):
    _ensure_chromium()
    from sidflow.screenshots import take_screenshots

    [run] = run_days(tiny_params, tiny_world.days[:1], {"world.size": "tiny"}, train_days=[])
    assert run.success
    shots = take_screenshots(tiny_params)
    assert set(shots) == {"data_docs", "data_docs_validation", "dagster_assets", "dagster_runs"}
    for name, path in shots.items():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = imread(path)
        assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1300, (name, pixels.shape)
        assert float(np.std(pixels[..., :3])) > 0.02, f"{name} is a blank page"
