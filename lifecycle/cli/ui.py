"""`sidflow ui | screenshots`: the Dagster UI, and PNGs of it and of the Data Docs.

Each command imports its stage when it runs (heavy imports), so `sidflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lifecycle.cli.settings import load


def cmd_ui(args: argparse.Namespace) -> int:
    """Start the Dagster UI on this project's instance (DAGSTER_HOME in the working folder)."""
    import os

    from orchestration.dagster_home import ensure_dagster_home

    params = load(args)
    ensure_dagster_home(params)
    cmd = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-m",
        "orchestration.definitions",
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
    ]
    print(
        f"Dagster UI on http://127.0.0.1:{args.port}  (DAGSTER_HOME={os.environ['DAGSTER_HOME']})"
    )
    print(mlflow_hint(params), flush=True)
    os.execv(cmd[0], cmd)
    return 0


def mlflow_hint(params) -> str:  # noqa: ANN001 - Params
    """How to open the MLflow runs of this profile (docs/deployment.md#experiment-tracking).

    The project installs the tracking client only (`mlflow-skinny`): the full `mlflow`
    package, which serves the UI, pins pyarrow below the project's, so it runs in its own
    environment (`uvx`, from the uv the project installs)."""
    from models.tracking import tracking_uri

    uri = tracking_uri(params)
    if not uri.startswith(("sqlite:", "file:", "postgresql", "mysql")) and "://" in uri:
        return f"MLflow runs (experiment {params.tracking.experiment}): open {uri}"
    uvx = Path(sys.executable).with_name("uvx")
    return (
        f"MLflow runs (experiment {params.tracking.experiment}) in {uri}; to browse them, in "
        f"another shell:\n  {uvx} --from mlflow==3.18.0 mlflow ui --backend-store-uri {uri} "
        "-h 127.0.0.1 -p 5000   # then http://127.0.0.1:5000"
    )


def cmd_screenshots(args: argparse.Namespace) -> int:
    """Screenshots of the Dagster UI and the Data Docs index (headless chromium)."""
    from lifecycle.screenshots import take_screenshots

    try:
        shots = take_screenshots(load(args))
    except (FileNotFoundError, RuntimeError, TimeoutError) as e:
        print(f"sidflow screenshots: {e}", file=sys.stderr)
        return 2
    for name, path in shots.items():
        print(f"  {name:<20} {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the UI commands on the `sidflow` parser."""
    s = sub.add_parser("screenshots", help="PNGs of the Dagster UI and the Data Docs index")
    s.set_defaults(func=cmd_screenshots)

    s = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project")
    s.add_argument("--port", type=int, default=3000)
    s.set_defaults(func=cmd_ui)
