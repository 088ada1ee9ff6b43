"""DVC's content hash of an output folder, computed without a DVC repo.

`dvc.lock` records a directory output as md5 of the JSON list of (relpath, md5) entries
plus ".dir" (dvc_data's Tree). The Dagster asset records the same value as its data
version, so a SID version in Dagster and in `dvc.lock` / the DVC remote are one key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dvc_data.hashfile.tree import Tree


def file_md5(path: Path) -> str:
    """md5 of the file's bytes (DVC 3 `md5` hashes)."""
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dvc_dir_hash(folder: Path) -> str:
    """The `md5: <hex>.dir` value `dvc.lock` would record for `folder` as an output."""

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no files to hash")
    entries = [{"relpath": p.relative_to(folder).as_posix(), "md5": file_md5(p)} for p in files]
    tree = Tree.from_list(entries, hash_name="md5")
    tree.digest()
    return tree.hash_info.value
