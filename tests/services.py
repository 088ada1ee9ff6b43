"""Servers from Debian's packages for the tests, on 127.0.0.1 only: Redis and PostgreSQL.

Each is installed with `apt-get install -y <package>` when missing (as root), started on a free
port in a temporary folder and stopped by its fixture; `pytest.skip` names the reason when it
cannot be installed or started.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apt_install(package: str, found: callable) -> bool:  # noqa: ANN001
    """Install a Debian package when `found()` is false (root and apt-get only)."""
    if found():
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", package],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", package],
    ):
        subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
        if found():
            return True
    return found()


def _wait_port(port: int, proc: subprocess.Popen | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.1)
    return False


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """host:port of a private redis-server on 127.0.0.1, or skip."""
    if not apt_install("redis-server", lambda: shutil.which("redis-server") is not None):
        pytest.skip("redis-server is not installed and could not be installed with apt-get")
    port = free_port()
    proc = subprocess.Popen(
        [
            *("redis-server", "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--dir", str(folder)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        if not _wait_port(port, proc, 15):
            pytest.skip(f"redis-server did not start on 127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_server(databases: list[str], user: str = "sidflow") -> Iterator[int]:
    """The port of a private PostgreSQL cluster on 127.0.0.1 (trust authentication for
    `user`, the `databases` created), or skip. As root the server runs as the `postgres`
    account (PostgreSQL refuses root), its data folder a fresh one under /tmp."""
    if not apt_install("postgresql", lambda: _postgres_bin() is not None):
        pytest.skip("PostgreSQL is not installed and could not be installed with apt-get")
    bin_dir = _postgres_bin()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="sidflow-pg-"))
    if as_owner:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_owner, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )

    init = run(
        str(bin_dir / "initdb"),
        *("-D", str(data / "db"), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync"),
    )
    if init.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = (
        f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=100"
    )
    start = run(
        str(bin_dir / "pg_ctl"),
        *("-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start"),
    )
    try:
        if start.returncode != 0 or not _wait_port(port, None, 30):
            log = (data / "log").read_text()[-300:] if (data / "log").exists() else ""
            pytest.skip(f"PostgreSQL did not start on 127.0.0.1:{port}: {start.stderr} {log}")
        for db in databases:
            made = run(
                str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db
            )
            if made.returncode != 0:
                pytest.skip(f"createdb {db} failed: {made.stderr.strip()}")
        yield port
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)
