"""Data sources. Each ends as a `MultiTaskData`; `load_dataset` rebuilds one from the JSON
description a run saves (so `mmoe evaluate` finds the same split again)."""

from __future__ import annotations

from typing import Any

from mmoe.data.dataset import InputSpec, MultiTaskData, Split, Task, with_numeric_embedding
from mmoe.errors import MmoeError

DATASET_KINDS = ("census", "synthetic", "clicklog", "table")


def load_dataset(spec: dict[str, Any]) -> MultiTaskData:
    """spec: {"kind": "census", "group", "data_dir", "split_seed"} |
    {"kind": "synthetic", "config": {...SyntheticConfig}, "split_seed"} |
    {"kind": "clicklog", "config": {...ClickLogConfig}, "split_seed", ...vocabulary options} |
    {"kind": "table", "path", "tasks", ...load_table's keyword arguments} (with "streaming": true,
    the table is read in batches by `mmoe.data.streaming.load_streaming_table`).
    Any kind may have "numeric_embedding": "auto", "periodic" or "none" (`with_numeric_embedding`;
    absent: "none", as descriptions written before the option were trained)."""
    options = {key: value for key, value in spec.items() if key not in ("kind", "numeric_embedding")}
    data = _load(spec.get("kind"), options)
    return with_numeric_embedding(data, spec.get("numeric_embedding"))


def _load(kind: Any, options: dict[str, Any]) -> MultiTaskData:
    if kind == "census":
        from mmoe.data.census import load_census

        return load_census(**options)
    if kind == "synthetic":
        from mmoe.data.synthetic import SyntheticConfig, load_synthetic

        return load_synthetic(SyntheticConfig(**options.pop("config")), **options)
    if kind == "clicklog":
        from mmoe.data.clicklog import ClickLogConfig, load_clicklog

        return load_clicklog(ClickLogConfig(**options.pop("config")), **options)
    if kind == "table":
        if options.pop("streaming", False):
            from mmoe.data.streaming import load_streaming_table

            return load_streaming_table(**options)
        from mmoe.data.tabular import load_table

        return load_table(**options)
    raise MmoeError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")


__all__ = ["DATASET_KINDS", "InputSpec", "MultiTaskData", "Split", "Task", "load_dataset", "with_numeric_embedding"]
