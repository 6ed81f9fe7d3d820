"""Atomic file writes: a crash or an error mid-write leaves the previous file, never half a file."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(temp_path)`, then renames the temp file onto `path` (same directory, so the
    rename is atomic). On any error the temp file is removed and `path` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp_path = _create_temp(target)
    try:
        write(temp_path)
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return target


def _create_temp(target: Path) -> Path:
    """A new empty file beside `target` with the mode a plain open() gives (0666 less the umask).

    Not tempfile.mkstemp: its files are private (0600), and reading the umask to widen them means
    setting it for a moment, which races with files other threads create meanwhile."""
    while True:
        temp_path = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp_path


def atomic_write_text(path: str | Path, text: str) -> Path:
    def write(temp: Path) -> None:
        temp.write_text(text)

    return atomic_write(path, write)


def to_jsonable(value: Any) -> Any:
    """Tuples to lists, tensor and numpy scalars to numbers, paths to text, and non-finite floats
    to None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
