"""Synthetic world sizes: generation time, events and exposure long tail per size preset.

Prints JSON. Usage: python benchmarks/world.py [size ...]   (default: all presets)
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd

from ingestion.world import World
from ingestion.world_stats import exposure_long_tail
from sidflow.config import load_params


def measure(size: str) -> dict:
    """Build the world of `size`, generate every day, and describe it."""
    params = load_params(overrides={"world.size": size}).world
    t0 = time.perf_counter()
    world = World(params)
    build_s = time.perf_counter() - t0
    n_events, exposures, counts = 0, [], {}
    for day in world.days:
        ev = world.events(day)
        n_events += len(ev)
        exposures.append(ev.loc[ev["event_type"] == "exposure", "item_id"])
        for k, v in ev["event_type"].value_counts().items():
            counts[k] = counts.get(k, 0) + int(v)
    total_s = time.perf_counter() - t0
    return {
        "size": size,
        "users": world.population.n_users,
        "items": world.catalog.n_items,
        "days": len(world.days),
        "events": n_events,
        "by_type": counts,
        "ctr": round(counts.get("click", 0) / max(counts.get("exposure", 1), 1), 4),
        "build_seconds": round(build_s, 2),
        "total_seconds": round(total_s, 2),
        "events_per_second": int(n_events / total_s),
        "exposure_long_tail": exposure_long_tail(exposures, world.catalog.n_items),
        "distinct_exposed_items": int(pd.concat(exposures).nunique()),
    }


if __name__ == "__main__":
    sizes = sys.argv[1:] or list(load_params().world.sizes)
    print(json.dumps([measure(s) for s in sizes], indent=2))
