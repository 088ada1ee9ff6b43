"""Start `bentoml serve` for sidflow's service in a subprocess and wait until it is ready."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]


def serve_command(host: str, port: int) -> list[str]:
    """The `bentoml serve` command line for `serving.service:Sidflow`."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Sidflow",
        "--host",
        host,
        "--port",
        str(port),
    ]


def start(
    port: int, env: dict[str, str], out: IO | int = subprocess.DEVNULL, host: str = "127.0.0.1"
) -> subprocess.Popen:
    """Start the service (from the project root) without waiting."""
    return subprocess.Popen(
        serve_command(host, port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll `/readyz` until 200; RuntimeError if the process exits or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with code {proc.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s")
