"""Dagster resources: sidflow's settings and working folder, and the DuckDB warehouse.

Resources are plain config (paths); the heavy objects they hand out are cached per
process so every asset in a run shares one settings object and one world.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

from data_contracts.publish import ContractStore
from ingestion.calendar import SourceCalendar, resolve_calendar
from ingestion.sources import Source, make_source, source_fingerprint
from ingestion.warehouse import Warehouse
from sidflow.config import Params, load_params
from sidflow.workdir import Workdir


@functools.lru_cache(maxsize=8)
def _params(params_path: str, workdir: str, overrides: tuple) -> Params:
    params = load_params(params_path or None, dict(overrides))
    return params.model_copy(update={"workdir": Path(workdir)}) if workdir else params


@functools.lru_cache(maxsize=8)
def _source(params_path: str, workdir: str, overrides: tuple, fingerprint: str) -> Source:
    # keyed by the files' fingerprint: a folder source is read again when a file lands
    return make_source(_params(params_path, workdir, overrides))


class SidflowResource(dg.ConfigurableResource):
    """sidflow settings (params.yaml) and the working folder they point at."""

    params_path: str = ""  # empty: $SIDFLOW_PARAMS or the project's params.yaml
    workdir: str = ""  # empty: params' workdir or $SIDFLOW_WORKDIR
    overrides: dict[str, str] = {}  # dotted keys, e.g. {"world.size": "tiny"}

    @property
    def _key(self) -> tuple[str, str, tuple]:
        return self.params_path, self.workdir, tuple(sorted(self.overrides.items()))

    @property
    def params(self) -> Params:
        """Validated settings."""
        return _params(*self._key)

    @property
    def paths(self) -> Workdir:
        """Named locations in the working folder."""
        return Workdir.of(self.params)

    @property
    def source(self) -> Source:
        """The configured data source (read again when its files change)."""
        return _source(*self._key, source_fingerprint(self.params))

    @property
    def calendar(self) -> SourceCalendar:
        """The source's calendar: history batch and daily partitions (ingestion/calendar.py)."""
        return resolve_calendar(self.params, self.source)

    @property
    def contracts(self) -> ContractStore:
        """Where contract outcomes are staged and published (quarantine, validated files)."""
        return ContractStore(self.paths.root, self.paths.gx_root)


# The concurrency pool of the assets that write the DuckDB warehouse: DuckDB allows one writing
# process, and the deployment instance gives every pool one slot (orchestration/dagster_home.py).
DUCKDB_WRITERS = "duckdb_warehouse"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file."""

    path: str

    @property
    def warehouse(self) -> Warehouse:
        """A handle on the warehouse (connections are opened per call)."""
        return Warehouse(self.path)
