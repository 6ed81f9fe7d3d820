"""What every study receives: the output folder, the scale, the base seed, the cache, progress bars."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmoe.experiments.cache import RunCache
from mmoe.experiments.scale import Scale


@dataclass
class StudyContext:
    """out: the report folder; data_dir: the census files (None: the loader's default search);
    threads: torch threads (1 is fastest for these small models, and on a shared machine);
    tuned_dir: folder of saved tuned census configurations to reuse (None: <out>/tuned)."""

    out: Path
    scale: Scale
    seed: int = 0
    data_dir: Path | None = None
    threads: int = 1
    tuned_dir: Path | None = None
    show_progress: bool = True
    cache: RunCache = field(init=False)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = RunCache(self.out / "cache")

    def bar(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
            unit: str = "run", leave: bool = False) -> tqdm:
        """A progress bar on stderr (one line per study's units of work)."""
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr,
                    disable=not self.show_progress, dynamic_ncols=True)


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """torch.func warns about vmap internals; nothing a reader of the report can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
