"""Atomic writes: the previous file survives a failed write, and a new file gets the usual mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmoe.io import atomic_write, atomic_write_text


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def half_then_crash(temp: Path) -> None:
        temp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_written_files_follow_the_umask_not_mkstemps_private_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "config.json", "{}")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_leaves_the_umask_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Setting the umask (even for a moment) would change the mode of files other threads create.
    previous = os.umask(0o077)
    try:

        def forbidden(mask: int) -> int:
            raise AssertionError("atomic_write changed the process umask")

        monkeypatch.setattr(os, "umask", forbidden)
        path = atomic_write_text(tmp_path / "private.json", "{}")
        monkeypatch.undo()
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o600
