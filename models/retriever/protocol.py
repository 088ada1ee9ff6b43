"""Which engagements train the day's retriever and which evaluate it (the gates read these).

- `day`: train on engagements before day d, evaluate on day d's (sources that log exposures:
  the next day's traffic is what the model will serve);
- `leave_one_out`: over every engagement through day d, each user's last one is the test
  sample, the second-to-last the validation sample, the rest train (the pinned protocol of
  the sequential-recommendation literature, DESIGN.md; review-only sources such as Amazon,
  whose days hold few engagements). On a source's last day it is exactly the benchmark split.
`auto` picks `leave_one_out` for a source without exposures, else `day`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ingestion.warehouse import Warehouse
from models.retriever.samples import Samples, time_split
from models.space import BEHAVIOURS

PROTOCOLS = ("day", "leave_one_out")


@dataclass
class Split:
    """Train, validation and test samples of one as-of day."""

    protocol: str
    train: Samples
    valid: Samples | None
    test: Samples


def resolve_protocol(setting: str, warehouse: Warehouse, day: dt.date) -> str:
    """`setting` unless it is `auto`: then leave_one_out when no exposure was logged through
    `day` (a review-only source), else day."""
    if setting != "auto":
        return setting
    (n,) = warehouse.query(
        "SELECT count(*) AS n FROM events WHERE event_type = 'exposure' AND day <= ?", [day]
    )["n"]
    return "day" if n else "leave_one_out"


def user_positions(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """(position of each sample in its user's sequence, that user's sequence length); the
    samples are sorted by user and time (models.retriever.samples.build_samples)."""
    users = samples.user_id
    n = len(users)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.r_[True, users[1:] != users[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    group = np.cumsum(starts) - 1
    return np.arange(n) - first, np.bincount(group)[group]


def split_samples(samples: Samples, day: dt.date, protocol: str) -> Split:
    """Split the samples (engagements through `day`) by `protocol`."""
    if protocol == "day":
        train, test = time_split(samples, day)
        return Split("day", train, None, test)
    if protocol != "leave_one_out":
        raise ValueError(f"retriever.eval.protocol '{protocol}' is not one of {PROTOCOLS}")
    pos, length = user_positions(samples)
    test = samples.subset((pos == length - 1) & (length >= 2))
    valid = samples.subset((pos == length - 2) & (length >= 3))
    train = samples.subset((pos <= length - 3) & (samples.hist[:, -1] > 0))
    return Split("leave_one_out", train, valid, test)


def held_out_event_ids(warehouse: Warehouse, day: dt.date, protocol: str) -> pd.Series:
    """Event ids the protocol evaluates on (leave_one_out: each user's last two engagements
    through `day`), which the SID stage must not learn from; empty for `day` (the SID stage
    reads events through d-1 only)."""
    if protocol != "leave_one_out":
        return pd.Series([], dtype=object, name="event_id")
    kinds = ", ".join(f"'{b}'" for b in BEHAVIOURS)
    return warehouse.query(
        "SELECT event_id FROM (SELECT event_id, row_number() OVER (PARTITION BY user_id "
        "ORDER BY ts DESC, event_id DESC) AS r, count(*) OVER (PARTITION BY user_id) AS n "
        f"FROM events WHERE day <= ? AND event_type IN ({kinds})) "
        "WHERE (r = 1 AND n >= 2) OR (r = 2 AND n >= 3)",
        [day],
    )["event_id"]
