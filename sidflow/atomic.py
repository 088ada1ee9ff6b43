"""Writes a reader never sees half done: a file or a folder appears whole or not at all.

A run killed mid-write (SIGKILL, a lost machine) must leave nothing the next run would take for
a finished result; these write under a temporary name beside the target and rename.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp name beside `path` to write; once the block ends it is renamed to `path`.

    Readers see the old file or the new one, never half; an exception leaves no temp file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def write_text_atomic(text: str, path: Path) -> Path:
    """Write text to a temp name, fsync and rename: readers see the old file or the new one."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `folder`; once the block ends, it replaces `folder`.

    An exception (or a kill) inside the block leaves `folder` as it was; the staging folder it
    leaves is cleared by the next attempt.
    """
    staging = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    yield staging
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)  # a folder cannot be renamed over a non-empty one
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def set_aside(files: list[Path], root: Path, into: Path, why: str) -> Path:
    """Move `files` (under `root`) to `into`/<UTC time>/ under their paths relative to `root`.

    For files a library writes in place and a kill left cut short: kept for a look, never
    deleted, and out of the way so the library writes them again.
    """
    folder = into / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for path in files:
        target = folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        log.warning("%s %s; moved to %s to be written again", path, why, target)
    return folder
