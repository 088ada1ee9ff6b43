"""DAGSTER_HOME in the working folder, with the instance the profile asks for (dagster.yaml).

- local profile: Dagster's default SQLite storage inside DAGSTER_HOME, one run at a time; CLI
  runs show up in `make ui`.
- deployment profile (`dagster.storage: postgres`): run, event log and schedule storage in
  PostgreSQL (`dagster-postgres`, `dagster.postgres_url`; the password from $PGPASSWORD), the
  run queue (`dagster.max_concurrent_runs`) and concurrency pools of one slot: in the
  `duckdb_warehouse` pool (orchestration/resources.py), one step at a time writes the DuckDB
  warehouse, across runs (DuckDB allows one writing process).
  `dagster-daemon run` (or `dagster dev`) on the same DAGSTER_HOME runs the schedule, the
  sensor and the queued runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from sidflow.config import Params
from sidflow.workdir import Workdir


def instance_config(params: Params) -> dict:
    """dagster.yaml's content for the profile's storage and run queue."""
    dp = params.dagster
    config: dict = {
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},  # no 'join the community' dialog over the UI
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
        },
        "concurrency": {"runs": {"max_concurrent_runs": dp.max_concurrent_runs}},
    }
    if dp.storage == "postgres":
        config["storage"] = {"postgres": {"postgres_url": dp.postgres_url}}
        # pools are enforced per step by the executor: one DuckDB writer at a time
        config["concurrency"]["pools"] = {"granularity": "op", "default_limit": 1}
    return config


def instance_yaml(params: Params) -> str:
    """dagster.yaml as written (with a header saying where it comes from)."""
    head = (
        f"# Written by sidflow for the {params.lifecycle.profile} profile (settings `dagster:`,\n"
        "# orchestration/dagster_home.py). Edit params.yaml, not this file.\n"
    )
    return head + yaml.safe_dump(instance_config(params), sort_keys=False)


def ensure_dagster_home(params: Params) -> Path:
    """Create DAGSTER_HOME with the profile's dagster.yaml and point the environment at it."""
    path = Workdir(params.workdir).dagster_home
    cfg = path / "dagster.yaml"
    text = instance_yaml(params)
    if not cfg.exists() or cfg.read_text() != text:
        cfg.write_text(text)
    os.environ["DAGSTER_HOME"] = str(path)
    return path
