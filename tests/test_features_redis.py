"""Scale path: the same feature store with Feast's Redis online store (Debian's redis-server).

Set-up installs redis-server when missing (`apt-get install -y redis-server`, as root), starts
it on 127.0.0.1 on a free port, and skips with the reason when that is not possible.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from feature_fixtures import make_world

from features import store
from features.consistency import compare_online_offline, sample_requests
from features.schema import end_of_day


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_redis() -> str | None:
    """Path of redis-server, installing the Debian package if needed; None if impossible."""
    if shutil.which("redis-server"):
        return shutil.which("redis-server")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "redis-server"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "redis-server"],
    ):
        subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
        if shutil.which("redis-server"):
            break
    return shutil.which("redis-server")


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory) -> Iterator[str]:
    """host:port of a private redis-server on 127.0.0.1 (stopped after the module)."""
    binary = _install_redis()
    if binary is None:
        pytest.skip("redis-server is not installed and could not be installed with apt-get")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_online_store_serves_the_same_features(tmp_path, tiny_world, redis_address):
    params = make_world(tmp_path, tiny_world, 3)
    fp = params.features.model_copy(
        update={"online_store": "redis", "redis_address": redis_address}
    )
    params = params.model_copy(update={"features": fp})
    summary = store.apply(params)
    assert summary["online_store"] == "redis"
    for day in tiny_world.days[1:]:
        store.materialize_day(params, day)
    day = tiny_world.days[-1]
    as_of = end_of_day(day) + dt.timedelta(hours=3)
    result = compare_online_offline(params, sample_requests(params, day, n_users=4), as_of)
    assert result["rows"] > 0 and result["mismatches"] == [], result["mismatches"][:3]
    online = store.OnlineFeatures(params)
    assert online.store.config.online_store.type == "redis"
    [(user, items)] = sample_requests(params, day, n_users=1)
    frame = online.get(user, items, request_ts=as_of)
    assert frame["user_exposures_30d"].notna().all()
    # Re-materializing a day keeps the values.
    store.materialize_day(params, day)
    again = store.OnlineFeatures(params).get(user, items, request_ts=as_of)
    assert frame.equals(again)
