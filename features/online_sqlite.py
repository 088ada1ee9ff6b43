"""Feast's SQLite online store with batched writes (the embedded profile's online store).

Feast 0.67's `SqliteOnlineStore.online_write_batch` issues one `INSERT ... ON CONFLICT`
per (entity, feature): on the small world's ~300k entity rows x 15 features that is ~4.5M
Python-level `execute` calls, ~115 s of a ~160 s materialization. This subclass writes
the same rows (same table, columns, serialization and upsert) through one `executemany`
per feature view, so reads, `feast apply`, `feast materialize-incremental` and
`feast teardown` are Feast's own. Settings Feast adds columns for (vector search, the
OpenAI-compatible `value_num` column) fall back to Feast's per-row path.

Use it in feature_store.yaml as
    online_store:
      type: features.online_sqlite.BatchedSqliteOnlineStore
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc

TYPE = "features.online_sqlite.BatchedSqliteOnlineStore"
Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Same settings as Feast's `sqlite` online store (`path`, ...)."""

    type: Literal["features.online_sqlite.BatchedSqliteOnlineStore"] = TYPE  # type: ignore[assignment]


def _epoch(ts: datetime | None) -> int | None:
    """A timestamp as Feast's SQLite adapter stores it (int seconds of the naive UTC time)."""
    return None if ts is None else int(to_naive_utc(ts).timestamp())


def _rows(data: list[Row], key_version: int) -> Iterator[tuple]:
    """(entity_key, feature_name, value, value_text, event_ts, created_ts) as Feast writes them."""
    for entity_key, values, event_ts, created_ts in data:
        key = serialize_entity_key(entity_key, entity_key_serialization_version=key_version)
        event, created = _epoch(event_ts), _epoch(created_ts)
        for feature, value in values.items():
            text, _ = extract_text_and_num(value, False)
            yield key, feature, value.SerializeToString(), text, event, created


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store; writes a materialization batch with one `executemany`.

    Rows go in primary-key order: SQLite then appends to its B-tree pages instead of
    splitting them at random (~40% faster on a 1.5M-row insert here).
    """

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Upsert every (entity, feature) value of `data` into the view's table."""
        store = config.online_store
        if store.vector_enabled or store.enable_openai_compatible_store:
            super().online_write_batch(config, table, data, progress)
            return
        name = _table_id(
            config.project, table, config.registry.enable_online_feature_view_versioning
        )
        upsert = (
            f"INSERT INTO {_quote_id(name)} "
            "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
        )
        rows = sorted(_rows(data, config.entity_key_serialization_version))
        conn = self._get_conn(config)
        with conn:  # one transaction per view and batch, as Feast's own write
            conn.executemany(upsert, rows)
        if progress:
            progress(len(data))
