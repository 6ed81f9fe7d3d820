"""A cache of finished units of work: one JSON file per unit under <out>/cache/, keyed by a hash
of everything that determines the unit's result. A rerun after an interruption reads the finished
units back and trains only the rest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmoe.io import atomic_write_json

# Bump when a unit's stored result changes meaning, so that old files are not reused.
CACHE_VERSION = 1


def cache_key(spec: dict[str, Any]) -> str:
    """A stable hash of a JSON-able description of a unit of work."""
    text = json.dumps({"cache_version": CACHE_VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunCache:
    """get_or_compute(kind, spec, compute): the stored result of `spec` if finished before, else
    compute() written atomically (an interrupted unit leaves no file and is redone)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def path(self, kind: str, spec: dict[str, Any]) -> Path:
        return self.directory / f"{kind}-{cache_key(spec)}.json"

    def get_or_compute(self, kind: str, spec: dict[str, Any], compute: Callable[[], Any]) -> Any:
        path = self.path(kind, spec)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
                self.hits += 1
                return stored["result"]
            except (json.JSONDecodeError, KeyError):
                pass  # a damaged file is recomputed
        result = compute()
        atomic_write_json(path, {"spec": spec, "result": result})
        self.misses += 1
        return result
