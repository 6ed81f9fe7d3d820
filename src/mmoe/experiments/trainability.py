"""Study `trainability` (Figure 5): the distribution of the final loss over the Figure 4 runs.

Per (model, p): the final training loss of every run, its variance, and the Brown-Forsythe test
of equal variances against MMoE."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmoe.experiments import stats
from mmoe.experiments.context import StudyContext
from mmoe.experiments.synthetic import comparison_runs

NAME = "trainability"
TITLE = "Trainability: final loss across runs (Figure 5)"


def run(ctx: StudyContext) -> dict[str, Any]:
    runs = comparison_runs(ctx, desc=NAME)
    per_p: dict[str, Any] = {}
    for p, models in runs["per_p"].items():
        per_p[p] = {}
        reference = [r["final_loss"] for r in models["mmoe"]["runs"]]
        for label, result in models.items():
            final = [r["final_loss"] for r in result["runs"]]
            statistic, p_value = stats.brown_forsythe(final, reference) if label != "mmoe" else (None, None)
            per_p[p][label] = {
                "final_loss": final,
                **summarize(final),
                "brown_forsythe_vs_mmoe": {
                    "statistic": statistic,
                    "p_value": p_value,
                    "variance_ratio": stats.variance_ratio(final, reference),
                }
                if label != "mmoe"
                else None,
            }
    return {"per_p": per_p, "parameters": runs["parameters"]}


def summarize(values: list[float]) -> dict[str, float]:
    x = stats.as_array(values)
    return {
        "mean": float(x.mean()),
        "variance": float(x.var(ddof=1)) if x.size > 1 else float("nan"),
        "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
        "min": float(x.min()),
        "q05": float(np.quantile(x, 0.05)),
        "median": float(np.median(x)),
        "max": float(x.max()),
    }
