"""Census data for the studies: loaded once per group and process, optionally subsampled."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import torch

from mmoe.data.dataset import MultiTaskData, Split
from mmoe.errors import MmoeError


@lru_cache(maxsize=2)
def _load(group: int, data_dir: str | None) -> MultiTaskData:
    from mmoe.data.census import load_census

    return load_census(group, data_dir)


def load_group(group: int, data_dir: Path | None) -> MultiTaskData:
    """The census group; MmoeError (one line, naming the folder) when the files are not there."""
    try:
        return _load(group, str(data_dir) if data_dir else None)
    except OSError as error:  # a failed download surfaces as OSError in some paths
        raise MmoeError(f"census data not available ({error})") from None


def census_unavailable_reason(data_dir: Path | None) -> str | None:
    """None when group 1 loads, else the reason (for the report's "skipped" line)."""
    try:
        load_group(1, data_dir)
    except MmoeError as error:
        return str(error)
    return None


def subsample(data: MultiTaskData, train_rows: int | None, eval_rows: int | None, seed: int = 0) -> MultiTaskData:
    """The data with at most train_rows training and eval_rows validation/test rows (seeded)."""
    generator = torch.Generator().manual_seed(seed)

    def cut(split: Split, rows: int | None) -> Split:
        if rows is None or rows >= len(split):
            return split
        return split.subset(torch.randperm(len(split), generator=generator)[:rows].sort().values)

    return replace(
        data,
        train=cut(data.train, train_rows),
        validation=cut(data.validation, eval_rows),
        test=cut(data.test, eval_rows),
    )


def sparse_labels(data: MultiTaskData, task: int, fraction: float, seed: int = 0) -> MultiTaskData:
    """The data with task `task`'s training labels kept on `fraction` of the rows (NaN elsewhere:
    those rows then train the other tasks only). Validation and test keep every label."""
    generator = torch.Generator().manual_seed(seed)
    labels = data.train.labels.clone()
    drop = torch.rand(len(labels), generator=generator) >= fraction
    labels[drop, task] = float("nan")
    return replace(data, train=Split(data.train.numeric, data.train.categorical, labels))
