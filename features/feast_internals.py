"""The one place sidflow touches Feast internals (Feast 0.67): everything else is public API.

The batched SQLite online store (features/online_sqlite.py) reads and writes the tables
Feast's own `sqlite` store keeps, so it needs the file Feast opens for a config. Feast has no
public call for it: `SqliteOnlineStore._get_db_path` resolves `online_store.path` against the
repo path. tests/test_feast_internals.py fails loudly when Feast moves: a new Feast version,
a db file or table name that no longer matches what Feast's own store writes.
"""

from __future__ import annotations

from pathlib import Path

from feast import RepoConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStore

FEAST_VERSION = "0.67.0"  # the Feast these internals were checked against


def sqlite_db_path(config: RepoConfig) -> Path:
    """The SQLite file Feast's online store of `config` reads and writes."""
    return Path(SqliteOnlineStore._get_db_path(config))
