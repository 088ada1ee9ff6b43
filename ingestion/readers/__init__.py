"""Readers that turn a user's data folder into sidflow's canonical tables.

`read_source(data)` dispatches on `data.source`: `parquet` / `csv` (a folder with an
interaction log and optional item / user tables, `folder.py`), `recbole` (RecBole atomic
files, `recbole.py`) and `amazon` (an Amazon 2014 5-core category, `ingestion.readers.amazon`).
Column names, epoch timestamps and constant fields come from `data:` (`mapping.py`).
"""

from __future__ import annotations

from ingestion.readers.amazon import read_amazon
from ingestion.readers.folder import read_folder
from ingestion.readers.recbole import read_recbole
from ingestion.readers.tables import SourceError, SourceTables
from sidflow.config import DataParams

__all__ = ["SourceError", "SourceTables", "read_source"]


def read_source(data: DataParams, name: str | None = None) -> SourceTables:
    """Read the source `data` describes into canonical tables (`name`: data.source)."""
    name = name or data.source
    if data.source in ("parquet", "csv"):
        return read_folder(data, data.source, name)
    if data.source == "recbole":
        return read_recbole(data, name)
    if data.source == "amazon":
        return read_amazon(data, name)
    raise ValueError(
        f"data.source '{data.source}' has no folder reader: the synthetic world is built by "
        "ingestion.world (ingestion.sources.WorldSource)"
    )
