"""The reports open in a real browser: Dagster UI and Data Docs in headless Chromium."""

import json
import shutil
import socket
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from orchestration.runner import run_days
from sidflow.workdir import Workdir


def _ensure_chromium() -> None:
    if shutil.which("chromium"):
        return
    try:
        done = subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"chromium is not installed and apt-get could not run: {err}")
    if done.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(
            f"chromium is not installed and `apt-get install chromium` failed: {done.stderr[-300:]}"
        )


def _port_open(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) == 0


def test_dagster_ui_and_data_docs_render(tiny_params, tiny_world):
    _ensure_chromium()
    from lifecycle.screenshots import take_screenshots

    [run] = run_days(tiny_params, tiny_world.days[:1], {"world.size": "tiny"}, train_days=[])
    assert run.success
    shots = take_screenshots(tiny_params)
    assert set(shots) == {"data_docs", "data_docs_validation", "dagster_assets", "dagster_runs"}
    out = Workdir(tiny_params.workdir).reports / "screenshots"
    assert all(p.parent == out for p in shots.values())
    for name, path in shots.items():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = imread(path)
        assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1300, (name, pixels.shape)
        assert float(np.std(pixels[..., :3])) > 0.02, f"{name} is a blank page"
    # The Dagster pages were served (HTTP 200) by a webserver that loaded the project's
    # assets, and that webserver is gone afterwards.
    manifest = json.loads((out / "screenshots.json").read_text())
    for name in ("dagster_assets", "dagster_runs"):
        assert manifest[name]["http_status"] == 200, manifest[name]
        assert manifest[name]["assets_loaded"] >= 5, manifest[name]
        assert not _port_open(manifest[name]["url"]), "dagster-webserver still listening"
