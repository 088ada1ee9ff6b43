"""The `sidflow` command line: data in and checked, the daily pipeline, models, serving and
the closed loop. `sidflow --help` lists every command."""

from __future__ import annotations

import argparse
import sys

from lifecycle.cli import data, retriever, serve, sid, ui
from sidflow.config import ParamsError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="sidflow", description=__doc__)
    p.add_argument("--params", help="settings file (default: params.yaml or $SIDFLOW_PARAMS)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    sub = p.add_subparsers(dest="command", required=True)
    for family in (data, ui, sid, retriever, serve):
        family.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sidflow` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParamsError as e:
        print(f"sidflow: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
