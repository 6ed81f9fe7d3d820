"""What every study receives: the output folder, the scale, the base seed, the cache, progress bars,
and `map_units`, which spreads a study's independent units of work over worker processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmoe.experiments.cache import RunCache
from mmoe.experiments.scale import Scale


@dataclass
class StudyContext:
    """out: the report folder; data_dir: the census files (None: the loader's default search);
    threads: torch threads per process (1 is fastest for these small models, and on a shared machine);
    workers: processes that train independent units at once (see `map_units`);
    tuned_dir: folder of saved tuned census configurations to reuse (None: <out>/tuned)."""

    out: Path
    scale: Scale
    seed: int = 0
    data_dir: Path | None = None
    threads: int = 1
    workers: int = 1
    tuned_dir: Path | None = None
    show_progress: bool = True
    cache: RunCache = field(init=False)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = RunCache(self.out / "cache")

    def bar(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "run",
        leave: bool = False,
    ) -> tqdm:
        """A progress bar on stderr (one line per study's units of work)."""
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            leave=leave,
            file=sys.stderr,
            disable=not self.show_progress,
            dynamic_ncols=True,
        )


def map_units(
    ctx: StudyContext,
    function: Callable[[StudyContext, Any], Any],
    items: Sequence[Any],
    desc: str = "",
    weights: Sequence[int] | None = None,
) -> list[Any]:
    """[function(ctx, item) for item in items], computed by ctx.workers processes at once.

    Small models use one core badly (a 1-thread run beats a 2-thread one on 2 cores), so the
    studies gain by training independent units side by side instead. `function` must be a
    module-level function (it is pickled by name); each unit is deterministic on its own, so
    the results do not depend on the number of workers. Progress advances by weights[i] (default
    1) when item i finishes; the workers' cache counts are added to ctx.cache."""
    weights = list(weights) if weights is not None else [1] * len(items)
    results: list[Any] = [None] * len(items)
    with ctx.bar(total=sum(weights), desc=desc) as bar:
        if ctx.workers <= 1 or len(items) <= 1:
            for index, item in enumerate(items):
                results[index] = function(ctx, item)
                bar.update(weights[index])
            return results
        worker_ctx = _worker_context(ctx)
        # spawn, not fork: a forked child inherits torch's thread pool in an undefined state.
        with ProcessPoolExecutor(
            max_workers=min(ctx.workers, len(items)), mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = {pool.submit(_run_unit, function, worker_ctx, item): index for index, item in enumerate(items)}
            for future in as_completed(futures):
                index = futures[future]
                results[index], hits, misses = future.result()
                ctx.cache.hits += hits
                ctx.cache.misses += misses
                bar.update(weights[index])
    return results


def _worker_context(ctx: StudyContext) -> StudyContext:
    """The context a worker receives: the same settings, no progress bars of its own (they would
    interleave), one worker (a unit never spawns more processes)."""
    return replace(ctx, workers=1, show_progress=False, notes=[])


def _run_unit(function: Callable[[StudyContext, Any], Any], ctx: StudyContext, item: Any) -> tuple[Any, int, int]:
    import torch

    torch.set_num_threads(ctx.threads)
    ctx.cache.hits = ctx.cache.misses = 0
    with quiet_warnings():
        result = function(ctx, item)
    return result, ctx.cache.hits, ctx.cache.misses


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """torch.func warns about vmap internals; nothing a reader of the report can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
