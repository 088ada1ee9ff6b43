"""Shared set-up of the feature-store tests: a tiny-world warehouse with feature tables."""

from __future__ import annotations

from pathlib import Path

from features.compute import compute_feature_tables
from ingestion.warehouse import Warehouse
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir


def make_world(root: Path, world, n_days: int) -> Params:  # noqa: ANN001 - ingestion.world.World
    """Tiny-world warehouse of the first n days in working folder `root`, tables computed."""
    params = load_params(overrides={"world.size": "tiny"}).model_copy(update={"workdir": root})
    wd = Workdir(root)
    wh = Warehouse(wd.warehouse)
    wh.upsert("items", world.items(world.days[n_days - 1]))
    wh.upsert("users", world.users())
    for day in world.days[:n_days]:
        wh.write_events(world.events(day), [day])
    first, last = world.days[0], world.days[n_days - 1]
    compute_feature_tables(wh, wd.features_dir, params.features, first, last)
    return params
