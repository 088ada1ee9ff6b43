"""Whole-or-nothing writes: a failure midway leaves the previous version for readers."""

from __future__ import annotations

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
