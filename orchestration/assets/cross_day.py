"""Cross-day dependencies: today's SID table and models start from yesterday's.

`sid_table`, `retriever_model` and `ranker_model` of day d declare their own partition d-1
as upstream (`YESTERDAY`), so the UI shows the dependency and a backfill runs the days in
order. They read the newest earlier finished version, which is d-1's when it was built; when
it was not (`sidflow run` trains on the last day only, or d-1 failed a gate) it is an older
one, and the asset's metadata says so (`previous_note`).
"""

import datetime as dt
from pathlib import Path

import dagster as dg

YESTERDAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def previous_note(previous: Path | None, day: dt.date) -> str:
    """Which earlier version the day starts from, against the declared upstream (d-1)."""
    if previous is None:
        return "none (no earlier finished version)"
    yesterday = (day - dt.timedelta(days=1)).isoformat()
    got = previous.name.removeprefix("day=")
    if got == yesterday:
        return f"{got} (yesterday, the upstream partition)"
    return f"{got} (newest earlier; yesterday {yesterday} has no finished version)"
