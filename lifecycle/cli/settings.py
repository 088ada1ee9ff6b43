"""Settings for a command: `--params FILE` and every `--set key=value` (and `--size`)."""

from __future__ import annotations

import argparse

from sidflow.config import Params, load_params


def overrides(args: argparse.Namespace) -> dict[str, str]:
    """The dotted-key overrides the command line gives (`--set`, `--size`)."""
    pairs = dict(kv.split("=", 1) for kv in (args.set or []))
    if getattr(args, "size", None):
        pairs["world.size"] = args.size
    return pairs


def load(args: argparse.Namespace) -> Params:
    """The validated settings for this command line."""
    return load_params(args.params, overrides(args))
