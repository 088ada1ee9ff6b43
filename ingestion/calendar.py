"""The daily calendar a source gives the pipeline: history batch, then daily partitions.

Days from `daily_from` on are daily partitions (one Dagster run each); every earlier day of
the source lands as one history batch. `daily_from` is `data.daily_from` when set, else the
source's last `data.daily_days` days; a derived cut-off is recorded in
`<workdir>/calendar.json` the first time, so new days arriving later extend the daily
partitions instead of moving their start (a different source starts a new calendar).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ingestion.sources import Source, landed_days, make_source, source_identity
from sidflow.atomic import write_text_atomic
from sidflow.config import Params
from sidflow.workdir import Workdir

CALENDAR_FILE = "calendar.json"


@dataclass(frozen=True)
class SourceCalendar:
    """Where a source's days go: [first_day, daily_from) as history, then daily partitions."""

    source: str  # source_identity
    first_day: dt.date  # the source's first event day
    last_day: dt.date  # the source's last event day
    daily_from: dt.date  # the first daily partition

    @property
    def history(self) -> tuple[dt.date, dt.date] | None:
        """(first, last) day of the history batch, or None when every day is daily."""
        if self.first_day >= self.daily_from:
            return None
        return self.first_day, self.daily_from - dt.timedelta(days=1)

    def describe(self) -> str:
        """One line for messages: the source's range and the cut-off."""
        hist = self.history
        head = f"history {hist[0]}..{hist[1]}, " if hist else ""
        return (
            f"source {self.source} holds {self.first_day}..{self.last_day}: "
            f"{head}daily partitions from {self.daily_from}"
        )

    def to_json(self) -> str:
        """JSON of the fields (dates as ISO strings)."""
        return json.dumps({k: str(v) for k, v in asdict(self).items()}, indent=2)


class EmptySourceError(ValueError):
    """The source holds no event day at all."""


def calendar_path(params: Params) -> Path:
    """Where the recorded calendar lives."""
    return Workdir(params.workdir).root / CALENDAR_FILE


def recorded_calendar(params: Params) -> SourceCalendar | None:
    """The calendar recorded for this source, if any (no source read)."""
    path = calendar_path(params)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        cal = SourceCalendar(
            raw["source"],
            *(dt.date.fromisoformat(raw[k]) for k in ("first_day", "last_day", "daily_from")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return cal if cal.source == source_identity(params) else None


def resolve_calendar(params: Params, source: Source, record: bool = True) -> SourceCalendar:
    """The source's calendar: range from its days, cut-off from settings or the record.

    The recorded cut-off is kept while the source identity is the same; `data.daily_from`
    always wins. Raises EmptySourceError when the source has no event day.
    """
    days = source.days()
    if not days:
        raise EmptySourceError(f"source {source_identity(params)} holds no events")
    first, last = days[0], days[-1]
    if params.data.daily_from is not None:
        daily_from = params.data.daily_from
    else:
        old = recorded_calendar(params)
        derived = max(first, last - dt.timedelta(days=params.data.daily_days - 1))
        daily_from = old.daily_from if old else derived
    cal = SourceCalendar(source_identity(params), first, last, daily_from)
    if record:
        path = calendar_path(params)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != cal.to_json():
            write_text_atomic(cal.to_json(), path)
    return cal


def partition_start(params: Params) -> dt.date:
    """The first daily partition without reading a folder source where it can be avoided:
    `data.daily_from`, the recorded calendar, the world's own days, else the source's."""
    if params.data.daily_from is not None:
        return params.data.daily_from
    old = recorded_calendar(params)
    if old is not None:
        return old.daily_from
    if params.data.source == "world":
        days = params.world.days()
        return max(days[0], days[-1] - dt.timedelta(days=params.data.daily_days - 1))
    return resolve_calendar(params, make_source(params)).daily_from


def partition_end_offset(params: Params, today: dt.date | None = None) -> int:
    """Dagster's `end_offset` for the daily partitions: 0 (they end yesterday, UTC, and grow
    by one every day), or enough to reach a source day that lies in the future (a synthetic
    world may start tomorrow)."""
    today = today or dt.datetime.now(dt.UTC).date()
    if params.data.source == "world":
        last = params.world.days()[-1] + dt.timedelta(days=params.simulation.days)
    else:
        cal = recorded_calendar(params)
        last = cal.last_day if cal else today
    return max(0, (last - today).days + 1)


def daily_days(params: Params, source: Source, cal: SourceCalendar) -> list[dt.date]:
    """Days to run as daily partitions: the source's days from the cut-off on, and any day
    with a raw batch landed beside it (the closed loop's logs, a partner's drop)."""
    own = {d for d in source.days() if d >= cal.daily_from}
    dropped = {d for d in landed_days(Workdir(params.workdir)) if d >= cal.daily_from}
    return sorted(own | dropped)
