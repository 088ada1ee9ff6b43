"""Writes a reader never sees half done: a file or a folder appears whole or not at all.

A run killed mid-write (SIGKILL, a lost machine) must leave nothing the next run would take for
a finished result; these write under a temporary name beside the target and rename.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: someone else's process, alive
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _temp_name(path: Path) -> str:
    """`.<name>.<pid>.<random>`: writers of the same target (two runs sharing a folder) never
    share a temporary name, and the pid says whose it is."""
    return f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"


def _clear_stale(path: Path) -> None:
    """Remove what killed writers of `path` left beside it (their pid no longer runs)."""
    for left in path.parent.glob(f".{path.name}.*.*"):
        pid = left.name[len(path.name) + 2 :].split(".")[0]
        if left.suffix in (".tmp", ".old") and pid.isdigit() and not _alive(int(pid)):
            if left.is_dir():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temp name beside `path` to write; once the block ends it is renamed to `path`.

    Readers see the old file or the new one, never half; an exception leaves no temp file.
    Concurrent writers each write their own temp file; the last rename wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = path.with_name(_temp_name(path) + ".tmp")
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

    An exception inside the block leaves `folder` as it was and removes the staging folder; a
    kill leaves it, and the next writer of `folder` clears it. Concurrent writers (two runs
    sharing a SID cache) each stage their own folder; the last to finish wins.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(folder)
    name = _temp_name(folder)
    staging, old = folder.with_name(name + ".tmp"), folder.with_name(name + ".old")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for _ in range(100):  # another writer may swap its version in between our two renames
        try:
            folder.rename(old)  # a folder cannot be renamed over a non-empty one
        except FileNotFoundError:
            pass
        try:
            staging.rename(folder)
            break
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        raise RuntimeError(f"{folder}: could not replace it (other writers kept winning)")


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
