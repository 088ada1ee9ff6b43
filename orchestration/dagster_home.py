"""A DAGSTER_HOME inside the working folder, so CLI runs show up in `make ui`."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = """\
# Written by sidflow. One run at a time: DuckDB allows a single writer.
telemetry:
  enabled: false
nux:
  enabled: false           # no 'join the community' dialog over the UI
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
"""


def ensure_dagster_home(path: Path) -> Path:
    """Create DAGSTER_HOME with sidflow's dagster.yaml and point the environment at it."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "dagster.yaml"
    if not cfg.exists() or cfg.read_text() != DAGSTER_YAML:
        cfg.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(path)
    return path
