"""Feast over the feature tables: point-in-time correctness, online = offline, idempotent
materialization, item weights for the SID builder, and the `feast` / `sidflow` CLIs."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast.infra.provider import get_provider
from feature_fixtures import make_world
from hypothesis import given, settings
from hypothesis import strategies as st

from features import store
from features.compute import compute_feature_tables, read_feature_table
from features.consistency import compare_online_offline, sample_requests
from features.schema import RECENCY, REQUEST_TS, TIMESTAMP, end_of_day
from ingestion.warehouse import Warehouse
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_world) -> Params:
    """Three tiny days computed, applied, and days 1-2 materialized online (in order)."""
    params = make_world(tmp_path_factory.mktemp("served"), tiny_world, 3)
    store.apply(params)
    for day in tiny_world.days[1:3]:
        store.materialize_day(params, day)
    return params


def _online_rows(params: Params) -> list[tuple]:
    with sqlite3.connect(store.sqlite_online_path(params)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sorted(row for t in tables for row in con.execute(f'SELECT * FROM "{t}"'))


def test_point_in_time_no_leakage(tmp_path, tiny_world):
    """A request on day d+1 gets the rows stamped end of day d; day d+1's events never leak."""
    params = make_world(tmp_path, tiny_world, 2)
    store.apply(params)
    d0, d1 = tiny_world.days[:2]
    wh = Warehouse(Workdir(params.workdir).warehouse)
    requests = wh.query(
        "SELECT user_id, item_id, ts AS event_timestamp FROM events "
        "WHERE day = ? AND event_type = 'exposure' ORDER BY event_id LIMIT 400",
        [d1],
    )
    before = store.training_frame(params, requests)
    assert before[["user_id", "item_id"]].equals(requests[["user_id", "item_id"]])

    # Expected: the day-d0 rows (the only ones stamped at or before a day-d1 request).
    fdir = Workdir(params.workdir).features_dir
    users = read_feature_table(fdir, "user_stats", d0).set_index("user_id")
    expected = requests["user_id"].map(users["user_clicks_7d"]).astype(float)
    assert np.allclose(before["user_clicks_7d"].astype(float), expected, equal_nan=True)
    cats = read_feature_table(fdir, "user_cat_l3", d0).set_index(["user_id", "cat_l3"])
    keys = pd.MultiIndex.from_frame(before[["user_id", "cat_l3"]])
    expected = cats["u_cat_l3_exposures_7d"].reindex(keys).to_numpy(dtype=float)
    assert np.allclose(before["u_cat_l3_exposures_7d"].astype(float), expected, equal_nan=True)
    assert before["u_cat_l3_exposures_7d"].notna().any()

    # A burst of clicks and purchases on d1 by the same users on the same items, re-ingested
    # and recomputed: the features used for the d1 requests do not move.
    burst = wh.query("SELECT * EXCLUDE (day) FROM events WHERE day = ?", [d1])
    extra = burst.head(300).assign(
        event_id=lambda f: "burst-" + f["event_id"],
        event_type="purchase",
        ts=lambda f: f["ts"] - pd.Timedelta(seconds=1),
    )
    extra = extra[pd.to_datetime(extra["ts"], utc=True).dt.date == d1]
    wh.write_events(pd.concat([burst, extra]), [d1])
    compute_feature_tables(wh, fdir, params.features, d1)
    after = store.training_frame(params, requests)
    pd.testing.assert_frame_equal(before, after)
    # ...while the day-d1 rows did change, and are stamped after every d1 request.
    table = read_feature_table(fdir, "user_stats", d1)
    assert (table[TIMESTAMP] == pd.Timestamp(end_of_day(d1))).all()
    assert table[TIMESTAMP].min() > requests[TIMESTAMP].max()
    late = requests.assign(**{TIMESTAMP: pd.Timestamp(end_of_day(d1))})
    assert not store.training_frame(params, late)["user_purchases_1d"].equals(
        before["user_purchases_1d"]
    )


def test_online_equals_offline(served, tiny_world):
    day = tiny_world.days[2]
    as_of = end_of_day(day) + dt.timedelta(hours=9)
    result = compare_online_offline(served, sample_requests(served, day, n_users=6), as_of)
    assert result["rows"] > 50 and result["keys_equal"]
    assert result["mismatches"] == [], result["mismatches"][:3]
    # Past the TTL both paths agree there is nothing left.
    late = as_of + dt.timedelta(days=40)
    result = compare_online_offline(served, sample_requests(served, day, n_users=2), late)
    assert result["mismatches"] == []
    assert result["sample"]["item_exposures_30d"].isna().all()


def test_serving_path_equals_feast_sdk(served, tiny_world):
    online = store.OnlineFeatures(served)
    [(user, items)] = sample_requests(served, tiny_world.days[2], n_users=1)
    as_of = end_of_day(tiny_world.days[2])
    fast = online.get(user, items, request_ts=as_of)
    rows = {"user_id": [user] * len(items), "item_id": items, REQUEST_TS: [as_of] * len(items)}
    rows |= {a: [online._attrs[a][i] for i in items] for a in store.U2I_ATTRIBUTES}
    sdk = online.store.get_online_features(
        features=online.store.get_feature_service("ranker"), entity_rows=rows
    ).to_df()
    for col in [
        c
        for c in sdk.columns
        if c.startswith(("item_", "user_", "u_"))
        and c not in ("user_id", "item_id")
        and not c.endswith("_ts")
    ]:
        a, b = fast[col].astype(float), sdk[col].astype(float)
        assert np.allclose(a, b, equal_nan=True), col
    # recency: the on-demand view, computed by Feast (SDK) and by its transform (fast path)
    assert set(RECENCY) <= set(sdk.columns) and fast["user_days_since_last_event"].notna().all()


def test_online_read_equals_feasts_sqlite_read(served, tiny_world):
    """The store's faster `online_read` returns what Feast's own SQLite read returns."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    from features.online_sqlite import BatchedSqliteOnlineStore

    fs = store.feature_store(served)
    assert isinstance(get_provider(fs.config).online_store, BatchedSqliteOnlineStore)
    day = tiny_world.days[2]
    for view in ("user_stats", "user_cat_l3", "item_stats"):
        table = read_feature_table(Workdir(served.workdir).features_dir, view, day).head(40)
        join_keys = [c for c in table.columns if c in ("user_id", "item_id", "cat_l3")]
        keys = []
        for values in [*table[join_keys].astype(str).values.tolist(), ["nobody"] * len(join_keys)]:
            key = EntityKey(join_keys=join_keys)
            for v in values:
                key.entity_values.add().string_val = v
            keys.append(key)
        fv = fs.get_feature_view(view)
        fast = BatchedSqliteOnlineStore().online_read(fs.config, fv, keys)
        reference = SqliteOnlineStore().online_read(fs.config, fv, keys)
        assert fast == reference and fast[-1] == (None, None), view
        assert sum(ts is not None for ts, _ in fast) > 10 and fast[0][0].tzinfo is not None


def test_key_index_reads_equal_probing_every_key(served, tiny_world):
    """With the user key index a user's u2i read equals Feast's read of every key; without
    the index (a store written before it) reads probe every key, and the next apply
    rebuilds the index from the view's table."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    from features.online_sqlite import string_entity_keys

    fs = store.feature_store(served)
    online = get_provider(fs.config).online_store
    fv = fs.get_feature_view("user_cat_l3")
    table = read_feature_table(
        Workdir(served.workdir).features_dir, "user_cat_l3", tiny_world.days[2]
    )
    user = str(table.user_id.value_counts().index[0])  # the user with the most rows
    rows = [[user, v] for v in [*sorted(set(table.cat_l3.astype(str))), "no-such-category"]]
    protos = []
    for values in rows:
        key = EntityKey(join_keys=["user_id", "cat_l3"])
        for v in values:
            key.entity_values.add().string_val = v
        protos.append(key)
    reference = SqliteOnlineStore().online_read(fs.config, fv, protos)
    assert 1 < sum(ts is not None for ts, _ in reference) < len(rows) - 1
    keys = string_entity_keys(["user_id", "cat_l3"], rows)
    assert online.read_serialized(fs.config, fv, keys, user) == reference

    conn = online.connection(fs.config)
    index = "sidflow_user_cat_l3__by_user_id"
    before = conn.execute(f"SELECT * FROM {index} ORDER BY 1, 2").fetchall()
    with conn:
        conn.execute(f"DROP TABLE {index}")
    assert online._indexed_keys(fs.config, "sidflow_user_cat_l3", user) is None
    assert online.read_serialized(fs.config, fv, keys, user) == reference
    online.update(fs.config, [], [fv], [], [], partial=False)
    assert conn.execute(f"SELECT * FROM {index} ORDER BY 1, 2").fetchall() == before
    assert online.read_serialized(fs.config, fv, keys, user) == reference


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(
        st.sampled_from(["user_id", "seller", "brand", "cat_l3", "ü_key"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    values=st.lists(st.lists(st.text(max_size=12), min_size=3, max_size=3), max_size=4),
)
def test_string_entity_keys_match_feasts_serialization(names, values):
    """The one-pass key encoder is byte for byte Feast's `serialize_entity_key` (v3)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    from features.online_sqlite import string_entity_keys

    rows = [v[: len(names)] for v in values]
    expected = []
    for row in rows:
        key = EntityKey(join_keys=names)
        for v in row:
            key.entity_values.add().string_val = v
        expected.append(serialize_entity_key(key, entity_key_serialization_version=3))
    assert string_entity_keys(names, rows) == expected


def test_rematerializing_changes_nothing(served, tiny_world):
    snapshot = _online_rows(served)
    assert snapshot, "the online store is empty"
    store.materialize_day(served, tiny_world.days[2])
    assert _online_rows(served) == snapshot
    store.materialize_day(served, tiny_world.days[1])  # an older day: no roll-back either
    assert _online_rows(served) == snapshot


def test_a_registry_cut_by_a_killed_run_is_set_aside(served, tiny_world, tmp_path):
    """Feast writes registry.db in place: a kill mid-write leaves it cut short. The next run
    keeps it aside, applies again and materializes the same online rows."""
    params = served.model_copy(update={"workdir": tmp_path})
    for folder in ("feast", "features"):
        shutil.copytree(Path(served.workdir) / folder, tmp_path / folder)
    registry = Path(store.repo_config(params).registry.path)
    cut = registry.read_bytes()[: registry.stat().st_size // 2]
    registry.write_bytes(cut)
    store.apply(params)
    store.materialize_day(params, tiny_world.days[2])
    assert _online_rows(params) == _online_rows(served)
    assert [p.read_bytes() for p in registry.parent.glob("interrupted/*/registry.db")] == [cut]


def test_catching_up_skipped_days_equals_loading_each_day(served, tmp_path_factory, tiny_world):
    """The catch-up job skips the online store; the next day's incremental load catches up."""
    skipped = make_world(tmp_path_factory.mktemp("skipped"), tiny_world, 3)
    store.apply(skipped)
    info = store.materialize_day(skipped, tiny_world.days[2])  # a fresh store: the TTL window
    assert info["start"] < end_of_day(tiny_world.days[0]).isoformat()
    got, want = _online_rows(skipped), _online_rows(served)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):  # (key, feature, proto, text, ..., event_ts, ...)
        if len(a) == 2:  # a key index row (user_id, key)
            assert a == b
            continue
        assert (a[0], a[1], *a[4:]) == (b[0], b[1], *b[4:])
        # the two stores' tables were computed separately: DuckDB's parallel float sums may
        # differ in the last bit, so values are compared as numbers
        if a[3] != b[3]:
            assert float(a[3]) == pytest.approx(float(b[3]), rel=1e-12), (a, b)


def test_item_weights_for_the_sid_builder(served, tiny_world):
    day = tiny_world.days[2]
    weights = store.item_weights(served, day)
    items = tiny_world.items(day)
    assert weights.name == "exposures_30d"
    assert sorted(weights.index) == sorted(items["item_id"])
    assert (weights >= 0).all() and weights.dtype == "float64"
    events = pd.concat([tiny_world.events(d) for d in tiny_world.days[:3]])
    shown = events[events["event_type"] == "exposure"]["item_id"].value_counts()
    assert np.allclose(weights, shown.reindex(weights.index).fillna(0))
    with pytest.raises(FileNotFoundError, match="sidflow features --day"):
        store.item_weights(served, day + dt.timedelta(days=5))


def test_feast_and_sidflow_cli(tmp_path, tiny_world):
    """The commands the README gives, as a Feast user runs them."""
    root = tmp_path / "work"
    params = load_params(overrides={"world.size": "tiny"}).model_copy(update={"workdir": root})
    wh = Warehouse(Workdir(root).warehouse)
    wh.upsert("items", tiny_world.items())
    wh.upsert("users", tiny_world.users())
    for day in tiny_world.days:
        wh.write_events(tiny_world.events(day), [day])
    env = {**os.environ, "SIDFLOW_WORKDIR": str(root)}
    bin_dir = Path(sys.executable).parent

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    out = json.loads(run(str(bin_dir / "sidflow"), "--set", "world.size=tiny", "features"))
    assert out["rows"]["user_cat_l2"] > 0
    feast = [str(bin_dir / "feast"), "-c", "features/feature_repo"]
    assert "Deploying infrastructure for user_cat_l2" in run(*feast, "apply")
    assert "ranker" in run(*feast, "feature-services", "list")
    d0, d1, d2 = tiny_world.days
    run(*feast, "materialize", f"{d0}T00:00:00", f"{d1}T00:00:00")
    run(*feast, "materialize-incremental", f"{end_of_day(d2):%Y-%m-%dT%H:%M:%S}")
    # The online store now holds the last day's rows, as the Python API sees them.
    result = compare_online_offline(params, sample_requests(params, d2, n_users=3), end_of_day(d2))
    assert result["rows"] > 0 and result["mismatches"] == []
