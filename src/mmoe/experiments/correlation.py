"""Study `correlation` (Figure 2): the labels' Pearson correlation against the weight cosine p.

Uses the generator's defaults (the ones chosen to reproduce Figure 2): for each p, `trials` data
sets of `rows` rows, each with its own seed; reports the mean and 2·std over trials."""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial
from typing import Any

import numpy as np

from mmoe.data.synthetic import SyntheticConfig, label_correlation
from mmoe.experiments.context import StudyContext

NAME = "correlation"
TITLE = "Label correlation against the weight cosine p (Figure 2)"


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    generator = SyntheticConfig(rows=scale.correlation_rows)
    seeds = [ctx.seed * 100_000 + trial for trial in range(scale.correlation_trials)]
    values: dict[str, list[float]] = {}
    for p in ctx.bar(scale.correlation_values, desc=NAME, unit="p"):
        spec = {"generator": asdict(replace(generator, correlation=p, seed=0)), "seeds": seeds}
        values[str(p)] = ctx.cache.get_or_compute("correlation", spec, partial(_correlations, generator, p, seeds))
    summary = [
        {
            "p": float(p),
            "mean": float(np.mean(v)),
            "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "trials": len(v),
        }
        for p, v in values.items()
    ]
    return {
        "generator": asdict(replace(generator, seed=0, correlation=0.0)) | {"correlation": "varied"},
        "seeds": seeds,
        "per_trial": values,
        "summary": summary,
    }


def _correlations(generator: SyntheticConfig, p: float, seeds: list[int]) -> list[float]:
    """The labels' correlation of the data set drawn at weight cosine p with each seed."""
    return [label_correlation(replace(generator, correlation=p, seed=s)) for s in seeds]
