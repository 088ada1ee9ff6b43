"""Whole-or-nothing writes: a failure midway leaves the previous version for readers."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sidflow.atomic import set_aside, staged_folder, write_text_atomic


def test_staged_folder_replaces_only_when_the_block_finishes(tmp_path: Path):
    folder = tmp_path / "artefacts"
    with staged_folder(folder) as staging:
        (staging / "a.txt").write_text("v1")
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError), staged_folder(folder) as staging:
        (staging / "a.txt").write_text("v2, half")
        raise RuntimeError("killed")
    assert (folder / "a.txt").read_text() == "v1", "a failed write leaves the old version"
    with staged_folder(folder) as staging:  # the next attempt clears what the failed one left
        assert not any(staging.iterdir())
        (staging / "b.txt").write_text("v3")
    assert [p.name for p in folder.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artefacts"]


def test_write_text_atomic_and_set_aside(tmp_path: Path):
    path = write_text_atomic("{}", tmp_path / "sub" / "state.json")
    assert path.read_text() == "{}" and sorted(p.name for p in path.parent.iterdir()) == [
        "state.json"
    ]
    folder = set_aside([path], tmp_path, tmp_path / "interrupted", "is a test")
    assert not path.exists() and (folder / "sub" / "state.json").read_text() == "{}"


def test_concurrent_writers_of_one_folder_each_finish_whole(tmp_path: Path):
    """Two runs sharing a SID cache write the same folder at once: no writer fails, and the
    folder a reader finds is one writer's whole version (a shared staging name broke this)."""
    folder = tmp_path / "artefacts"
    start = threading.Barrier(6)

    def write(w: int) -> None:
        start.wait()
        for i in range(20):
            with staged_folder(folder) as staging:
                for f in ("a.txt", "b.txt", "c.txt"):
                    (staging / f).write_text(f"{w}-{i}")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))  # re-raises any writer's error
    versions = {p.read_text() for p in folder.iterdir()}
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    assert len(versions) == 1, f"a mix of versions: {versions}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artefacts"]


def test_what_a_killed_writer_left_is_cleared_by_the_next(tmp_path: Path):
    dead = 2**31 - 2  # above any pid_max: no such process
    for left in (f".state.json.{dead}.ab12.tmp", f".artefacts.{dead}.cd34.tmp"):
        (tmp_path / left).mkdir() if "artefacts" in left else (tmp_path / left).write_text("x")
    live = tmp_path / f".artefacts.{os.getpid()}.ef56.tmp"  # a writer still running: kept
    live.mkdir()
    write_text_atomic("{}", tmp_path / "state.json")
    with staged_folder(tmp_path / "artefacts") as staging:
        (staging / "a.txt").write_text("v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["artefacts", "state.json", live.name]
    )
