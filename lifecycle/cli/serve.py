"""`sidflow simulate | serve | build-bento | promote | rollback | registry`: lifecycle commands.

Each command imports its stage when it runs (heavy imports), so `sidflow --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess

from lifecycle.cli.settings import load, overrides
from sidflow.config import Params
from sidflow.workdir import Workdir


def cmd_simulate(args: argparse.Namespace) -> int:
    """Closed-loop A/B simulation over served days; prints the per-bucket summary."""
    from lifecycle.closed_loop.simulate import simulate, summary_lines

    if args.days is not None:
        args.set = [*(args.set or []), f"simulation.days={args.days}"]
    params = load(args)
    overrides = dict(kv.split("=", 1) for kv in (args.set or []))
    result = simulate(params, overrides)
    print("\n".join(summary_lines(result)))
    return 0 if all(d["run"] == "ok" or d["missed"] for d in result["days"]) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    """`bentoml serve` the service with the registry's promoted bundle."""
    params = load(args)
    env = {**os.environ, "SIDFLOW_WORKDIR": str(params.workdir), "BENTOML_DO_NOT_TRACK": "true"}
    if args.params:
        env["SIDFLOW_PARAMS"] = str(args.params)
    if overrides(args):  # the service loads its settings itself: hand it every --set
        env["SIDFLOW_SET"] = json.dumps(overrides(args))
    port = args.port or params.serving.port
    from serving.launch import serve_command

    cmd = serve_command(args.host, port)
    print(f"serving on http://{args.host}:{port}  (POST /recommend, /metadata; GET /readyz)")
    return subprocess.call(cmd, env=env)


def _registry(params: Params):  # noqa: ANN202 - sidflow.registry.Registry
    from sidflow.registry import Registry

    return Registry(Workdir.of(params).registry)


def _show(state: dict) -> None:
    slim = {
        k: (v and {x: v.get(x) for x in ("tag", "day", "sid_version", "sid_dvc_hash", "window")})
        for k, v in state.items()
        if k in ("promoted", "candidate")
    }
    print(json.dumps(slim, indent=2))


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote the candidate (or a given bundle tag) to serve the control bucket."""
    from serving.bundle import read_manifest

    params = load(args)
    version = None
    if args.tag:
        version = {"tag": args.tag, **read_manifest(Workdir(params.workdir).root, args.tag)}
    _show(_registry(params).promote(version, reason="manual: sidflow promote"))
    return 0


def cmd_build_bento(args: argparse.Namespace) -> int:
    """Build the Bento of the promoted bundle (or --tag), optionally export it to an archive."""
    from serving.build import build_bento, export_bento

    params = load(args)
    root = Workdir(params.workdir).root
    tag = args.tag or (_registry(params).current().get("promoted") or {}).get("tag")
    if not tag:
        print("no bundle is promoted yet: run the daily pipeline (`sidflow run`) or pass --tag")
        return 1
    bento = build_bento(root, tag)
    print(f"built {bento['tag']} with {tag} at {bento['path']}")
    if args.export:
        print(f"exported to {export_bento(root, bento['tag'], args.export)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Serve the previously promoted version again."""
    _show(_registry(load(args)).rollback())
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    """Print what the buckets serve."""
    state = _registry(load(args)).current()
    _show(state)
    if args.history:
        print(
            json.dumps(
                [{k: v for k, v in h.items() if k != "version"} for h in state["history"]], indent=2
            )
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the lifecycle subcommands on the `sidflow` parser."""
    s = sub.add_parser("simulate", help="closed-loop A/B simulation (serve, respond, retrain)")
    s.add_argument("--days", type=int, help="served days (default: simulation.days)")
    s.add_argument("--size", help="world size preset")
    s.set_defaults(func=cmd_simulate)
    s = sub.add_parser("serve", help="bentoml serve the promoted bundle (A/B buckets)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, help="default: serving.port")
    s.set_defaults(func=cmd_serve)
    s = sub.add_parser("promote", help="promote the candidate (or --tag) to control")
    s.add_argument("--tag", help="a bundle tag, sidflow-recommender:<version>")
    s.set_defaults(func=cmd_promote)
    s = sub.add_parser("rollback", help="serve the previously promoted version again")
    s.set_defaults(func=cmd_rollback)
    s = sub.add_parser("build-bento", help="bentoml build the promoted bundle (offline)")
    s.add_argument("--tag", help="a bundle tag (default: the promoted one)")
    s.add_argument("--export", help="also write the Bento and its model to this .bento file")
    s.set_defaults(func=cmd_build_bento)
    s = sub.add_parser("registry", help="what the A/B buckets serve")
    s.add_argument("--history", action="store_true")
    s.set_defaults(func=cmd_registry)
