"""Which items and users an event's ids are checked against, and saying which.

The warehouse's catalogue as of the day when it has one; on a first run (no warehouse items
yet) the items that arrive with the data: the batches landed for the day
(`raw/items/day=<d>/`, the source's and any dropped in beside it). Without either, the ids
are not checked, and the report says so. Dagster's `validated_events` and `sidflow validate`
both call `reference_ids`, so they check against the same catalogue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestion.batches import BatchRejected, conform, read_batch
from ingestion.warehouse import Warehouse

KEY = {"items": "item_id", "users": "user_id"}


@dataclass(frozen=True)
class Reference:
    """Known ids (None: not checked) and where they came from, in words."""

    ids: frozenset[str] | None
    source: str


def _landed_ids(table: str, files: Sequence[Path]) -> tuple[set[str], list[str]]:
    ids: set[str] = set()
    used = []
    for f in files:
        try:
            frame = conform(read_batch(Path(f)), table)
        except (BatchRejected, ValueError, TypeError):  # its contract names the problem
            continue
        ids |= set(frame[KEY[table]].dropna())
        used.append(Path(f).name)
    return ids, used


def reference_ids(
    table: str,
    warehouse: Warehouse | None,
    as_of: dt.date | None = None,
    landed: Sequence[Path] = (),
) -> Reference:
    """The `table` ids (items or users) events are checked against: the warehouse's (items
    first seen on or before `as_of`), else those of the `landed` batches, else none."""
    key = KEY[table]
    if warehouse is not None and Path(warehouse.path).exists():
        dated = table == "items" and as_of is not None
        sql = f"SELECT {key} FROM {table}" + (" WHERE first_seen <= ?" if dated else "")
        ids = set(warehouse.query(sql, [as_of] if dated else [])[key])
        if ids:
            when = f" first seen on or before {as_of}" if dated else ""
            return Reference(frozenset(ids), f"warehouse {table}{when} ({len(ids):,} ids)")
    ids, used = _landed_ids(table, landed)
    if ids:
        return Reference(
            frozenset(ids),
            f"{table} landed with the data ({', '.join(used)}: {len(ids):,} ids); "
            f"the warehouse has no {table} yet",
        )
    return Reference(
        None, f"not checked: no {table} in the warehouse and none landed with the data"
    )
