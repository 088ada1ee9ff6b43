"""Screenshots of the reports people look at: the Dagster UI and the Data Docs site.

Starts `dagster-webserver` for this project's definitions on a free loopback port, waits
until it answers, and has Debian's headless `chromium` render the asset lineage page, the
runs page and the Great Expectations Data Docs index to PNGs under
`<workdir>/reports/screenshots/`. `sidflow screenshots` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import yaml

from orchestration.dagster_home import ensure_dagster_home
from sidflow.config import PROJECT_ROOT, Params
from sidflow.workdir import Workdir

PAGES = {"dagster_assets": "/asset-groups", "dagster_runs": "/runs"}


def chromium_binary() -> str:
    """Path of the chromium executable, or a clear error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH: install Debian's `apt-get install -y chromium`")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot(
    url: str, path: Path, size: tuple[int, int] = (1400, 900), budget_ms: int = 15000
) -> Path:
    """Render `url` in headless chromium and save a PNG at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={path}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not path.exists():
        raise RuntimeError(f"chromium wrote no screenshot of {url}: {done.stderr[-1500:]}")
    return path


def start_webserver(params: Params, port: int, log: IO[str]) -> subprocess.Popen:
    """`dagster-webserver` on the project's definitions and DAGSTER_HOME (own process group)."""
    wd = Workdir(Path(params.workdir).resolve())
    home = ensure_dagster_home(params)
    # The resolved settings (overrides included, e.g. `--set world.size=tiny`) go to a file the
    # webserver's code server loads, so the UI shows the same definitions the runs used.
    settings = wd.reports / "screenshots" / "params.resolved.yaml"
    settings.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SIDFLOW_WORKDIR": str(wd.root),
        "SIDFLOW_PARAMS": str(settings),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    exe = Path(sys.executable).with_name("dagster-webserver")
    cmd = [str(exe), "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", str(port)]
    return subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> int:
    """Poll `url` until it answers 200; returns the status (raises if the server died)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return r.status_code
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def stop_webserver(proc: subprocess.Popen) -> None:
    """Terminate the webserver's whole process group (it forks a code server), then reap it."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is already gone
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def loaded_asset_keys(base: str) -> list[str]:
    """Asset keys the webserver's GraphQL API reports: proof it loaded the project's code."""
    query = "query { assetNodes { assetKey { path } } }"
    r = httpx.post(f"{base}/graphql", json={"query": query}, timeout=60)
    r.raise_for_status()
    body = r.json()
    if "errors" in body:
        raise RuntimeError(f"dagster GraphQL error: {body['errors']}")
    return sorted("/".join(n["assetKey"]["path"]) for n in body["data"]["assetNodes"])


def take_screenshots(params: Params) -> dict[str, Path]:
    """PNGs of the Dagster UI pages and the Data Docs index; returns name -> path.

    `screenshots.json` beside the PNGs records, per page, its URL and the HTTP status it was
    served with just before the screenshot, plus the number of assets the webserver loaded.
    """
    wd = Workdir(params.workdir)
    out = wd.reports / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Path] = {}
    manifest: dict[str, dict] = {}
    docs = wd.data_docs_index
    if not docs.exists():
        raise FileNotFoundError(f"{docs}: no Data Docs yet; run `sidflow run` first")
    chromium_binary()  # fail early, before starting the webserver, if it is missing
    shots["data_docs"] = screenshot(docs.resolve().as_uri(), out / "data_docs.png")
    manifest["data_docs"] = {"url": docs.resolve().as_uri()}
    # The index builds its result table with JavaScript from a CDN (absent offline); the
    # validation pages are rendered HTML, so the newest one is captured as well.
    pages = sorted((docs.parent / "validations").rglob("*.html"), key=lambda f: f.stat().st_mtime)
    if pages:
        url = pages[-1].resolve().as_uri()
        shots["data_docs_validation"] = screenshot(url, out / "data_docs_validation.png")
        manifest["data_docs_validation"] = {"url": url}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(out / "dagster-webserver.log", "w") as log:
        proc = start_webserver(params, port, log)
        try:
            wait_until_up(f"{base}/server_info", proc)
            assets = loaded_asset_keys(base)
            if not assets:
                raise RuntimeError(f"dagster-webserver on {base} loaded no assets; see {log.name}")
            for name, page in PAGES.items():
                r = httpx.get(base + page, timeout=30)
                if r.status_code != 200:
                    raise RuntimeError(f"{base + page} answered HTTP {r.status_code}")
                shots[name] = screenshot(base + page, out / f"{name}.png")
                manifest[name] = {
                    "url": base + page,
                    "http_status": r.status_code,
                    "assets_loaded": len(assets),
                }
        finally:
            stop_webserver(proc)
    for name, path in shots.items():
        manifest[name]["png"] = str(path)
    (out / "screenshots.json").write_text(json.dumps(manifest, indent=2))
    return shots
