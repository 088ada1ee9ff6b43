"""The Feast internals sidflow relies on (features/feast_internals.py) still hold: this test
fails loudly on a Feast upgrade, pointing at the one module to re-check."""

from __future__ import annotations

import sqlite3

import feast
from feast import RepoConfig
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feature_fixtures import make_world

from features import store
from features.compute import read_feature_table
from features.feast_internals import FEAST_VERSION, sqlite_db_path
from features.online_sqlite import BatchedSqliteOnlineStore
from sidflow.workdir import Workdir


def test_feast_is_the_version_the_internals_were_checked_against():
    assert feast.__version__ == FEAST_VERSION, (
        f"Feast {feast.__version__} (checked: {FEAST_VERSION}): re-check "
        "features/feast_internals.py and features/online_sqlite.py against Feast's "
        "SqliteOnlineStore (db path, table names, columns), then update FEAST_VERSION"
    )


def test_feasts_own_sqlite_store_writes_where_sidflow_reads(tmp_path, tiny_world):
    """Feast's own `sqlite` store (a relative path, resolved against the repo) materializes
    into the file `sqlite_db_path` names and the tables `compute_table_id` names; the batched
    store reads the same rows from them."""
    params = make_world(tmp_path / "work", tiny_world, 2)
    config = RepoConfig(
        project="sidflow",
        provider="local",
        registry={"registry_type": "file", "path": str(tmp_path / "registry.db")},
        online_store={"type": "sqlite", "path": "online.db"},
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=tmp_path,
    )
    fs = feast.FeatureStore(config=config)
    store.apply(params, fs)
    day = tiny_world.days[1]
    fs.materialize(
        start_date=store.end_of_day(tiny_world.days[0]),
        end_date=store.end_of_day(day),
        feature_views=["user_stats"],
    )
    path = sqlite_db_path(fs.config)
    assert path == tmp_path / "online.db" and path.exists()
    view = fs.get_feature_view("user_stats")
    with sqlite3.connect(path) as conn:
        table = compute_table_id(fs.project, view, False)
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
    # the columns the batched store writes and reads
    assert {"entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts"} <= set(
        columns
    )
    users = read_feature_table(Workdir(params.workdir).features_dir, "user_stats", day)
    keys = []
    for user in [*users["user_id"].astype(str).head(30), "nobody"]:
        key = EntityKey(join_keys=["user_id"])
        key.entity_values.add().string_val = user
        keys.append(key)
    feasts = SqliteOnlineStore().online_read(fs.config, view, keys)
    ours = BatchedSqliteOnlineStore().online_read(fs.config, view, keys)
    assert ours == feasts and sum(ts is not None for ts, _ in ours) == 30
