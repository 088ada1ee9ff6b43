"""Data sources behind the daily pipeline, all speaking the canonical tables.

- `world`: the embedded synthetic e-commerce world (deterministic by seed);
- `amazon`: an Amazon 5-core folder, read through `ingestion.amazon`;
- `parquet`: a folder a user provides, with `items.parquet`, `users.parquet` and
  `events.parquet` (or `events/*.parquet`) in the canonical schema.

`land` writes what a source delivered for a day into the raw landing folder, as
received; later stages only ever read from there.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from pathlib import Path
from typing import Protocol

import pandas as pd

from ingestion.canonical import write_parquet_atomic
from sidflow.config import Params
from sidflow.workdir import Workdir


class Source(Protocol):
    """What the pipeline needs from a source."""

    name: str

    def days(self) -> list[dt.date]:
        """Days with events, in order."""
        ...

    def events(self, day: dt.date) -> pd.DataFrame:
        """Canonical events of `day`."""
        ...

    def items(self, day: dt.date) -> pd.DataFrame:
        """Canonical items listed on `day`."""
        ...

    def users(self) -> pd.DataFrame:
        """Canonical users."""
        ...


class WorldSource:
    """The synthetic world."""

    name = "world"

    def __init__(self, params: Params):
        self.params = params

    @cached_property
    def world(self):  # noqa: ANN201 - ingestion.world.World, imported lazily
        """The world, built on first use."""
        from ingestion.world import World

        return World(self.params.world)

    def days(self) -> list[dt.date]:
        """Days of the selected world size."""
        return self.params.world.days()

    def events(self, day: dt.date) -> pd.DataFrame:
        """The logging policy's events of `day`; none after the logged window (served days)."""
        if day not in self.days():
            from ingestion.world.simulator import EVENT_COLUMNS

            return pd.DataFrame(columns=EVENT_COLUMNS)
        return self.world.events(day)

    def items(self, day: dt.date) -> pd.DataFrame:
        """Items listed by `day`."""
        return self.world.items(day)

    def users(self) -> pd.DataFrame:
        """All users."""
        return self.world.users()


class TableSource:
    """Canonical tables already in memory or in parquet (Amazon, user-provided)."""

    def __init__(self, name: str, events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame):
        self.name = name
        self._events = events.assign(_day=pd.to_datetime(events["ts"], utc=True).dt.date)
        self._items = items
        self._users = users

    @classmethod
    def from_parquet_folder(cls, folder: Path, name: str = "parquet") -> TableSource:
        """Read `items.parquet`, `users.parquet` and `events.parquet` or `events/*.parquet`."""
        folder = Path(folder)
        ev_path = folder / "events.parquet"
        events = (
            pd.read_parquet(ev_path)
            if ev_path.exists()
            else pd.concat(
                [pd.read_parquet(p) for p in sorted((folder / "events").glob("*.parquet"))]
            )
        )
        return cls(name, events, pd.read_parquet(folder / "items.parquet"),
                   pd.read_parquet(folder / "users.parquet"))  # fmt: skip

    def days(self) -> list[dt.date]:
        """Distinct event days."""
        return sorted(self._events["_day"].unique())

    def events(self, day: dt.date) -> pd.DataFrame:
        """Events of `day`."""
        return self._events[self._events["_day"] == day].drop(columns="_day")

    def items(self, day: dt.date) -> pd.DataFrame:
        """Items first seen on or before `day`."""
        seen = pd.to_datetime(self._items["first_seen"]).dt.date <= day
        return self._items[seen]

    def users(self) -> pd.DataFrame:
        """All users."""
        return self._users


def make_source(params: Params) -> Source:
    """The source `params.data.source` names."""
    if params.data.source == "world":
        return WorldSource(params)
    if params.data.source == "amazon":
        from ingestion.amazon import load_amazon

        ds = load_amazon(params.data.amazon_path, "amazon")
        return TableSource("amazon", ds.events, ds.items, ds.users)
    if params.data.parquet_path is None:
        raise ValueError("data.parquet_path must be set when data.source is 'parquet'")
    return TableSource.from_parquet_folder(params.data.parquet_path)


def land(workdir: Workdir, table: str, day: dt.date, frame: pd.DataFrame, source: str) -> Path:
    """Write a source's delivery for (table, day) into the raw landing folder, as received."""
    return write_parquet_atomic(frame, workdir.raw_dir(table, day) / f"{source}.parquet")


def raw_batches(workdir: Workdir, table: str, day: dt.date) -> list[Path]:
    """Every raw batch landed for (table, day): the source's and any dropped in beside it."""
    folder = workdir.raw_dir(table, day)
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
