"""DVC versions of the daily SID tables: added to the DVC cache, pushed to a remote, checked out.

The working folder's `sid/` is a DVC repository of its own (`dvc init --no-scm`: the working
folder is not under git). Each daily version `sid/day=<d>/artefacts/` that `sid_table` builds
is tracked by `sid/day=<d>/artefacts.dvc` (`dvc add`) and pushed (`dvc push`) to the remote
`dvc.remote_url`, a folder outside the working folder by default, so `make clean` keeps it.
The version's key is DVC's directory hash (`<md5>.dir`, the same value `dvc_dir_hash`
computes, Dagster's data version of `sid_table`); the bundle manifest names it with its path.
`checkout` restores a version into a working folder that lost it (`make clean`, another
machine): it writes the `.dvc` file for that hash and runs `dvc pull`, which fetches the
files from the remote (or takes them from the cache) and checks them out.

Everything goes through the `dvc` command line (`python -m dvc`), one command at a time per
store (a file lock: the multiprocess executor may run two SID steps of different runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from models.tokenizer.dvc_hash import dvc_dir_hash
from sidflow.config import Params
from sidflow.workdir import Workdir

REMOTE = "sidflow"  # the store's remote name
MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class DvcError(RuntimeError):
    """A dvc command failed; the message holds its output."""


@dataclass(frozen=True)
class SidDvcVersion:
    """A SID table version in DVC: its directory hash, where it lives in the store, the remote."""

    md5: str  # "<hex>.dir"
    path: str  # relative to the store, e.g. "day=2026-01-03/artefacts"
    remote: str  # the remote URL it was pushed to ("" when dvc.push is off)

    def to_json(self) -> dict:
        """JSON-friendly."""
        return asdict(self)


def store_root(params: Params) -> Path:
    """The DVC store of the daily SID versions: the working folder's `sid/`."""
    return Workdir(params.workdir).sid_dir.resolve()


def dvc(root: Path, *args: str) -> str:
    """Run `dvc <args>` in `root`; its output, or DvcError with it."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} in {root} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with (root / ".sidflow-dvc.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_store(params: Params) -> Path:
    """The store, created when missing (`dvc init --no-scm`), its remote set from the settings."""
    root = store_root(params)
    if not (root / ".dvc" / "config").exists():
        dvc(root, "init", "--no-scm", "--force", "-q")
    dvc(root, "remote", "add", "--force", "--default", REMOTE, params.dvc.remote_url)
    return root


def read_dvc_file(path: Path) -> str:
    """The directory hash a `.dvc` file records for its one output."""
    outs = yaml.safe_load(path.read_text())["outs"]
    return outs[0]["md5"]


def add_version(params: Params, artefacts: Path) -> SidDvcVersion:
    """`dvc add` a version's artefacts folder (inside the store) and, with `dvc.push`,
    `dvc push` it to the remote; returns its DVC version."""
    root = store_root(params)
    rel = Path(artefacts).resolve().relative_to(root).as_posix()
    with _locked(root):
        ensure_store(params)
        dvc(root, "add", "-q", rel)
        md5 = read_dvc_file(root / f"{rel}.dvc")
        if params.dvc.push:
            dvc(root, "push", "-q", f"{rel}.dvc")
    return SidDvcVersion(md5, rel, params.dvc.remote_url if params.dvc.push else "")


def recorded_version(params: Params, artefacts: Path) -> SidDvcVersion | None:
    """The DVC version `add_version` recorded for a version folder (None when not added)."""
    root = store_root(params)
    dvc_file = Path(f"{Path(artefacts).resolve()}.dvc")
    if not dvc_file.exists():
        return None
    rel = Path(artefacts).resolve().relative_to(root).as_posix()
    return SidDvcVersion(
        read_dvc_file(dvc_file), rel, params.dvc.remote_url if params.dvc.push else ""
    )


def checkout_version(params: Params, md5: str, rel: str) -> Path:
    """Restore the version `md5` at `rel` in the store (from the cache, else the remote):
    the folder, checked to hash to `md5`."""
    if not MD5.match(md5):
        raise ValueError(f"{md5!r} is not a DVC directory hash (32 hex digits, '.dir')")
    md5 = md5 if md5.endswith(".dir") else f"{md5}.dir"
    root = store_root(params)
    folder = root / rel
    with _locked(root):
        ensure_store(params)
        dvc_file = root / f"{rel}.dvc"
        if not dvc_file.exists() or read_dvc_file(dvc_file) != md5:
            folder.parent.mkdir(parents=True, exist_ok=True)
            out = {"md5": md5, "hash": "md5", "path": folder.name}
            dvc_file.write_text(yaml.safe_dump({"outs": [out]}, sort_keys=False))
        dvc(root, "pull", "-q", "--force", dvc_file.relative_to(root).as_posix())
    got = dvc_dir_hash(folder)
    if got != md5:
        raise DvcError(f"{folder} hashes to {got} after checkout, not {md5}")
    return folder
