"""The synthetic e-commerce world: sidflow's embedded data source and A/B ground truth."""

from __future__ import annotations

import datetime as dt
from functools import cached_property

import numpy as np
import pandas as pd

from ingestion.world.catalog import Catalog, build_catalog
from ingestion.world.population import Population, build_population
from ingestion.world.preference import Preference, Responses
from ingestion.world.simulator import SCENES, simulate_day
from sidflow.config import WorldParams


class World:
    """A deterministic world: same params and seed, same catalogue, users and events."""

    def __init__(self, params: WorldParams):
        self.params = params
        size = params.preset
        rng = np.random.default_rng(params.seed)
        self.catalog: Catalog = build_catalog(rng, size.items, size.new_items_per_day, size.days)
        self.population: Population = build_population(rng, self.catalog, size.users)
        self.preference = Preference(self.catalog, self.population)

    @property
    def start_date(self) -> dt.date:
        """First simulated day."""
        return self.params.start_date

    @property
    def days(self) -> list[dt.date]:
        """All simulated days."""
        return self.params.days()

    def day_index(self, day: dt.date) -> int:
        """Offset of `day` from the first simulated day."""
        return (day - self.start_date).days

    def items(self, day: dt.date | None = None) -> pd.DataFrame:
        """Canonical `items`: the catalogue as listed on `day` (all items if None)."""
        return self.catalog.frame(self.start_date, None if day is None else self.day_index(day))

    def users(self) -> pd.DataFrame:
        """Canonical `users`."""
        return self.population.frame()

    def events(self, day: dt.date) -> pd.DataFrame:
        """Canonical `events` logged on `day` by the world's logging policy."""
        return simulate_day(
            self.catalog,
            self.population,
            self.preference,
            day,
            self.day_index(day),
            self.params.seed,
            self.params.preset.requests_per_user_day,
            self.params.items_per_request,
        )

    @cached_property
    def _user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.population.user_ids)}

    @cached_property
    def _item_index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.catalog.item_ids)}

    def click_probability(self, user_id: str, item_ids: list[str], scene: str) -> np.ndarray:
        """Ground-truth P(click) of each item shown in the top slot to `user_id` in `scene`."""
        u = np.full(len(item_ids), self._user_index[user_id])
        items = np.array([self._item_index[i] for i in item_ids])
        return self.preference.click_probability(u, items, scene)

    def respond(
        self, user_id: str, item_ids: list[str], scene: str, rng: np.random.Generator
    ) -> Responses:
        """Simulated response of `user_id` to the ranked list `item_ids` shown in `scene`."""
        u = np.full(len(item_ids), self._user_index[user_id])
        items = np.array([self._item_index[i] for i in item_ids])
        return self.preference.respond(u, items, scene, np.arange(len(item_ids)), rng)


__all__ = ["World", "SCENES", "Responses"]
