"""Study `synthetic` (Figure 4): Shared-Bottom vs OMoE vs MMoE at an equal parameter count.

MMoE and OMoE: 8 experts of 1 × 16 units, towers 1 × 8 (the paper's sizes); Shared-Bottom: the
one-layer bottom width whose parameter count is closest to MMoE's here (our bias conventions
give 14,818 parameters where the paper counts 13,056). Runs share data seeds across models."""

from __future__ import annotations

from typing import Any

from mmoe.data.dataset import InputSpec
from mmoe.data.synthetic import feature_names
from mmoe.experiments import synthetic_runs
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import TRAINING_CORRELATIONS
from mmoe.experiments.sizing import matching_width, parameter_count

NAME = "synthetic"
TITLE = "MMoE vs OMoE vs Shared-Bottom on synthetic data (Figure 4)"
MOE_OPTIONS: dict[str, Any] = {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)}
PAPER_PARAMETERS = 13_056


def comparison_models(ctx: StudyContext) -> tuple[dict[str, tuple[str, dict[str, Any]]], dict[str, int]]:
    """The three models of Figure 4 and their parameter counts."""
    spec = InputSpec(numeric=tuple(feature_names(synthetic_runs.TRAINING_GENERATOR.dim)))
    target = parameter_count("mmoe", spec, 2, **MOE_OPTIONS)
    width, shared = matching_width("shared-bottom", target, spec, 2, tower_units=(8,))
    models = {
        "shared-bottom": ("shared-bottom", {"hidden_units": (width,), "tower_units": (8,)}),
        "omoe": ("omoe", dict(MOE_OPTIONS)),
        "mmoe": ("mmoe", dict(MOE_OPTIONS)),
    }
    counts = {
        "shared-bottom": shared,
        "omoe": parameter_count("omoe", spec, 2, **MOE_OPTIONS),
        "mmoe": target,
        "shared_bottom_width": width,
        "paper": PAPER_PARAMETERS,
    }
    return models, counts


def comparison_runs(ctx: StudyContext, desc: str = NAME) -> dict[str, Any]:
    """Every run of the three models at each p (cached; the trainability study reads the same runs)."""
    models, counts = comparison_models(ctx)
    per_p = synthetic_runs.run_studies(ctx, models, TRAINING_CORRELATIONS, desc)
    return {
        "parameters": counts,
        "generator": synthetic_runs.describe_generator(ctx),
        "training": synthetic_runs.describe_training(ctx),
        "per_p": per_p,
    }


def run(ctx: StudyContext) -> dict[str, Any]:
    return comparison_runs(ctx)
