"""Scale path: the same feature store with Feast's Redis online store (Debian's redis-server).

Set-up installs redis-server when missing (`apt-get install -y redis-server`, as root), starts
it on 127.0.0.1 on a free port, and skips with the reason when that is not possible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from feature_fixtures import make_world
from services import redis_server

from features import store
from features.consistency import compare_online_offline, sample_requests
from features.schema import end_of_day


@pytest.fixture(scope="module")
def redis_address(tmp_path_factory) -> Iterator[str]:
    """host:port of a private redis-server on 127.0.0.1 (stopped after the module)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as address:
        yield address


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
