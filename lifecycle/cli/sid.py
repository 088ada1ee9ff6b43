"""`sidflow sid ...`: build a SID version (the DVC stages' command) and show its metrics.

Kept free of heavy imports at module level: `sidflow --help` must stay fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from lifecycle.cli.settings import load
from sidflow.config import Params
from sidflow.workdir import Workdir


def default_data(params: Params) -> Path:
    """The tokenizer input for `data.source`: the loaded Amazon folder, a canonical parquet
    folder, else the warehouse (`sidflow run` fills it from any source)."""
    wd = Workdir(params.workdir)
    if params.data.source == "amazon":
        return wd.root / "datasets" / "amazon-beauty"
    if params.data.source == "parquet" and not params.data.columns:
        return Path(params.data.path)
    return wd.warehouse


def cmd_sid_build(args: argparse.Namespace, params: Params) -> int:
    """Build one SID version and print its summary (JSON) and concentration table."""
    from models.tokenizer.metrics import concentration_table
    from models.tokenizer.stage import run_sid_stage

    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else None
    data = Path(args.data) if args.data else default_data(params)
    sid_dir = Workdir(params.workdir).sid_dir
    out = Path(args.out) if args.out else sid_dir / (f"day={as_of}" if as_of else data.stem)
    result = run_sid_stage(
        params,
        data,
        out,
        as_of,
        Path(args.previous) if args.previous else None,
        args.mode,
        progress=not args.quiet,
    )
    m = result.metrics
    summary = {
        "version": m["version"],
        "data_version": result.data_version,
        "mode": m["mode"],
        "items": m["items"],
        "embedding": m["embedding"],
        "weights": m["weights"],
        "collision_rate_before_dedup": m["collision_rate_before_dedup"],
        "max_dedup": m["max_dedup"],
        "churn": m["churn"],
        "seconds": m["seconds"],
        "layers": {k: m[k]["layers"] for k in ("capacity", "plain") if k in m},
        "artefacts": str(result.artefacts),
        "metrics": str(out / "metrics.json"),
        "plots": {k: str(v) for k, v in result.plots.items()},
    }
    print(json.dumps(summary, indent=2))
    print("\nexposure concentration (share of exposures on the top units):\n", file=sys.stderr)
    print(concentration_table(m), file=sys.stderr)
    return 0


def cmd_sid_show(args: argparse.Namespace, params: Params) -> int:
    """Print a built version's concentration table (Markdown) and headline metrics."""
    from models.tokenizer.metrics import concentration_table

    path = Path(args.path)
    metrics = json.loads((path / "metrics.json" if path.is_dir() else path).read_text())
    print(
        f"{metrics['version']}  items={metrics['items']}  embedding={metrics['embedding']}  "
        f"weights={metrics['weights']}  K={metrics['K']} L={metrics['L']} tau={metrics['tau']}"
    )
    for m in ("capacity", "plain"):
        if m in metrics:
            lay = metrics[m]["layers"]
            print(
                f"  {m:8s} collision={metrics[m]['collision_rate']:.4f} "
                f"utilisation={[x['utilisation'] for x in lay]} "
                f"max_load/C_cap={[x['max_load_ratio'] for x in lay]} "
                f"recon={metrics[m]['reconstruction_error']}"
            )
    print()
    print(concentration_table(metrics))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `sid build` and `sid show` on the main parser's subcommands."""
    sid = sub.add_parser("sid", help="Semantic IDs: build a version, show its metrics")
    cmds = sid.add_subparsers(dest="sid_command", required=True)

    s = cmds.add_parser("build", help="embeddings + capacity-constrained RQ-KMeans -> SID table")
    s.add_argument(
        "--data",
        help="warehouse .duckdb or canonical parquet folder (default: the one data.source names)",
    )
    s.add_argument("--out", help="version folder (default: <workdir>/sid/<day=D | data name>)")
    s.add_argument("--as-of", help="use data up to this day (YYYY-MM-DD)")
    s.add_argument("--previous", help="earlier version folder to update from")
    s.add_argument(
        "--mode", choices=["rebuild", "incremental"], help="with --previous (default: sid.update)"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=lambda a: cmd_sid_build(a, load(a)))

    s = cmds.add_parser("show", help="print a version's concentration table and metrics")
    s.add_argument("path", help="version folder or its metrics.json")
    s.set_defaults(func=lambda a: cmd_sid_show(a, load(a)))
