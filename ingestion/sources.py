"""Data sources behind the daily pipeline, all speaking the canonical tables.

- `world`: the embedded synthetic e-commerce world (deterministic by seed, its own start date);
- `parquet`, `csv`, `recbole`, `amazon`: a folder a user provides, read by `ingestion.readers`
  (column mapping, epoch timestamps and constants from `data:` in params.yaml).

`land` writes what a source delivered for a day (or for the history before the daily
calendar) into the raw landing folder; later stages only ever read from there.
`source_fingerprint` changes when the source's files change, without reading them: the
sensor and the Dagster resource re-read a folder source only then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import cached_property
from pathlib import Path
from typing import Protocol

import pandas as pd

from ingestion.canonical import write_parquet_atomic
from ingestion.readers import SourceTables, read_source
from ingestion.world import World
from ingestion.world.simulator import EVENT_COLUMNS
from sidflow.config import Params
from sidflow.workdir import Workdir

ENGAGEMENTS = ("click", "cart", "purchase")


class Source(Protocol):
    """What the pipeline needs from a source."""

    name: str

    def days(self) -> list[dt.date]:
        """Days with events, in order."""
        ...

    def events(self, day: dt.date) -> pd.DataFrame:
        """Canonical events of `day`."""
        ...

    def events_before(self, day: dt.date) -> pd.DataFrame:
        """Canonical events of every day before `day` (the history batch)."""
        ...

    def items(self, day: dt.date) -> pd.DataFrame:
        """Canonical items listed on `day`."""
        ...

    def users(self) -> pd.DataFrame:
        """Canonical users."""
        ...

    def has_exposures(self) -> bool:
        """Whether the source logs exposures (impressions); review logs do not."""
        ...

    def day_signature(self, day: dt.date) -> str:
        """A digest of `day`'s events: it changes exactly when that day's data changes."""
        ...

    def report(self) -> dict:
        """What reading the source found: files, rows, missing metadata, skipped lines."""
        ...


class WorldSource:
    """The synthetic world: its days are `world.start_date` + the size preset's days."""

    name = "world"

    def __init__(self, params: Params):
        self.params = params

    @cached_property
    def world(self) -> World:
        """The world, built on first use."""
        return World(self.params.world)

    def days(self) -> list[dt.date]:
        """Days of the selected world size."""
        return self.params.world.days()

    def events(self, day: dt.date) -> pd.DataFrame:
        """The logging policy's events of `day`; none after the logged window (served days)."""
        if day not in self.days():
            return pd.DataFrame(columns=EVENT_COLUMNS)
        return self.world.events(day)

    def events_before(self, day: dt.date) -> pd.DataFrame:
        """Every logged day's events before `day`, in one frame."""
        frames = [self.world.events(d) for d in self.days() if d < day]
        return pd.concat(frames, ignore_index=True) if frames else self.events(dt.date.min)

    def items(self, day: dt.date) -> pd.DataFrame:
        """Items listed by `day`."""
        return self.world.items(day)

    def users(self) -> pd.DataFrame:
        """All users."""
        return self.world.users()

    def has_exposures(self) -> bool:
        """The world's logging policy logs every impression."""
        return True

    def day_signature(self, day: dt.date) -> str:
        """Deterministic by settings: the day's events need not be simulated to know it."""
        return f"world:{day in self.days()}:{self.params.world.model_dump_json()}"

    def report(self) -> dict:
        """Size and seed of the world."""
        w = self.params.world
        return {"source": "world", "size": w.size, "seed": w.seed, "start_date": str(w.start_date)}


class TableSource:
    """Canonical tables read from a user's folder, indexed by UTC event day."""

    def __init__(self, tables: SourceTables):
        self.name = tables.name
        self.tables = tables
        ts = pd.to_datetime(tables.events["ts"], utc=True)
        self._day = ts.dt.date
        first_day = self._day.min() if len(ts) else None
        items = tables.items
        if "first_seen" not in items or items["first_seen"].isna().any():
            first = self._first_event_day(items["item_id"], first_day)
            given = items["first_seen"] if "first_seen" in items else None
            items = items.assign(first_seen=first if given is None else given.fillna(first))
        self._items = items
        self._first_seen = pd.to_datetime(items["first_seen"]).dt.date

    def _first_event_day(self, item_ids: pd.Series, default: dt.date | None) -> pd.Series:
        first = self._day.groupby(self.tables.events["item_id"]).min()
        return item_ids.map(first).fillna(default)

    def days(self) -> list[dt.date]:
        """Distinct event days (UTC)."""
        return sorted(self._day.dropna().unique())

    def events(self, day: dt.date) -> pd.DataFrame:
        """Events of `day`."""
        return self.tables.events[(self._day == day).to_numpy()].reset_index(drop=True)

    def events_before(self, day: dt.date) -> pd.DataFrame:
        """Events of every day before `day` (rows whose timestamp did not parse are kept in
        the history batch, where the contract quarantines them)."""
        before = (self._day < day) | self._day.isna()
        return self.tables.events[before.to_numpy()].reset_index(drop=True)

    def items(self, day: dt.date) -> pd.DataFrame:
        """Items first seen on or before `day`."""
        return self._items[(self._first_seen <= day).to_numpy()].reset_index(drop=True)

    def users(self) -> pd.DataFrame:
        """All users."""
        return self.tables.users

    def has_exposures(self) -> bool:
        """Whether any event is an exposure."""
        return bool((self.tables.events["event_type"] == "exposure").any())

    def day_signature(self, day: dt.date) -> str:
        """Row count and a hash of the day's event ids."""
        ids = self.events(day)["event_id"].astype(str)
        digest = hashlib.sha1(pd.util.hash_pandas_object(ids, index=False).to_numpy().tobytes())
        return f"{len(ids)}:{digest.hexdigest()[:12]}"

    def report(self) -> dict:
        """The reader's report."""
        return {"source": self.name, **self.tables.report}


def make_source(params: Params) -> Source:
    """The source `params.data.source` names (a folder source is read here, once)."""
    if params.data.source == "world":
        return WorldSource(params)
    return TableSource(read_source(params.data))


def source_fingerprint(params: Params) -> str:
    """A digest of the source's files (path, size, modification time); the world's settings
    for the world. Cheap: no file is read."""
    data = params.data
    if data.source == "world":
        w = params.world
        key = f"world:{w.seed}:{w.size}:{w.start_date}:{w.preset.model_dump_json()}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]
    folder = Path(data.path)
    h = hashlib.sha1(f"{data.model_dump_json()}".encode())
    if folder.exists():
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def source_identity(params: Params) -> str:
    """What the source is (not its content): the calendar is kept per identity."""
    data = params.data
    if data.source == "world":
        w = params.world
        return f"world (size {w.size}, seed {w.seed}, from {w.start_date})"
    return f"{data.source} {data.path}"


HISTORY = "history"  # the raw landing folder of the history batch: raw/<table>/history/


def source_batch(workdir: Workdir, table: str, day: dt.date | str, source: str) -> Path:
    """Where the source's own batch of (table, day) lands (`day` = HISTORY: the history
    batch); other files in the folder were dropped in beside it."""
    folder = history_dir(workdir, table) if day == HISTORY else workdir.raw_dir(table, day)
    return folder / f"{source}.parquet"


def land(
    workdir: Workdir, table: str, day: dt.date | str, frame: pd.DataFrame, source: str
) -> Path:
    """Write a source's delivery for (table, day) into the raw landing folder, as received;
    `day` = HISTORY lands the history batch."""
    return write_parquet_atomic(frame, source_batch(workdir, table, day, source))


def history_dir(workdir: Workdir, table: str) -> Path:
    """The landing folder of the history batch of `table`."""
    folder = workdir.raw_dir(table) / HISTORY
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def raw_batches(workdir: Workdir, table: str, day: dt.date | str) -> list[Path]:
    """Every raw batch landed for (table, day) (`day` = HISTORY: the history batch): the
    source's and any dropped in beside it."""
    folder = history_dir(workdir, table) if day == HISTORY else workdir.raw_dir(table, day)
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def landed_days(workdir: Workdir, table: str = "events") -> list[dt.date]:
    """Days with at least one raw batch landed (the closed loop's logs, partner drops)."""
    out = []
    for folder in (Path(workdir.root) / "raw" / table).glob("day=*"):
        try:
            day = dt.date.fromisoformat(folder.name.split("=", 1)[1])
        except ValueError:
            continue
        if any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir()):
            out.append(day)
    return sorted(out)
