"""`sidflow sid ...`: build a SID version (the DVC stages' command), show its metrics, and check
out a version from DVC (the exact table a served bundle used).

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


def resolve_version(params: Params, version: str, day: str | None) -> tuple[str, str]:
    """(DVC hash, folder in the DVC store) of VERSION: a bundle tag (from the registry's history
    or the BentoML store), a SID version name or a DVC hash (its folder: `--day`'s, the local
    version with that hash, else `checkout/<hash>`)."""
    from models.tokenizer.versions import MD5, read_dvc_file, store_root

    wd = Workdir.of(params)
    if ":" in version:  # a bundle tag
        manifest = _manifest(wd, version)
        rel = manifest.get("sid_dvc_path") or f"day={manifest['day']}/artefacts"
        return manifest["sid_dvc_hash"], rel
    root = store_root(params)
    by_hash, by_name = {}, {}  # the versions this store holds: hash -> folder, name -> both
    for dvc_file in sorted(root.glob("*/artefacts.dvc")):
        rel, md5 = dvc_file.with_suffix("").relative_to(root).as_posix(), read_dvc_file(dvc_file)
        by_hash[md5] = rel
        metrics = dvc_file.parent / "metrics.json"
        if metrics.exists():
            by_name[json.loads(metrics.read_text())["version"]] = md5, rel
    if MD5.match(version):
        md5 = version if version.endswith(".dir") else f"{version}.dir"
        if day:
            return md5, f"day={day}/artefacts"
        return md5, by_hash.get(md5, f"checkout/{md5[:12]}/artefacts")
    if version in by_name:
        return by_name[version]
    raise SystemExit(
        f"sidflow sid checkout: {version} is not a bundle tag, a DVC hash, or a SID version "
        f"this working folder knows (after `make clean`, give the DVC hash the bundle's "
        f"manifest names: `sid_dvc_hash`)"
    )


def _manifest(wd: Workdir, tag: str) -> dict:
    """A bundle's manifest: from the registry's history, else the BentoML model store."""
    from sidflow.registry import Registry

    state = Registry(wd.registry).current()
    seen = [state.get("promoted"), state.get("candidate")]
    seen += [h.get("version") for h in state.get("history", [])]
    for v in seen:
        if v and v.get("tag") == tag and v.get("sid_dvc_hash"):
            return v
    from serving.bundle import read_manifest

    return read_manifest(wd.root, tag)


def cmd_sid_checkout(args: argparse.Namespace, params: Params) -> int:
    """Restore a SID version from DVC (cache, else the remote) and print where it is."""
    from models.tokenizer.versions import checkout_version

    md5, rel = resolve_version(params, args.version, args.day)
    folder = checkout_version(params, md5, rel)
    print(
        json.dumps(
            {"version": args.version, "dvc_hash": md5, "folder": str(folder)}
            | {"remote": params.dvc.remote_url},
            indent=2,
        )
    )
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

    s = cmds.add_parser(
        "checkout", help="restore a SID version from DVC (the table a served bundle used)"
    )
    s.add_argument(
        "version", help="a bundle tag (sidflow-recommender:...), a SID version or a DVC hash"
    )
    s.add_argument("--day", help="with a DVC hash: restore it as this day's version")
    s.set_defaults(func=lambda a: cmd_sid_checkout(a, load(a)))
