"""Study `shared-bottom` (Figure 3): Shared-Bottom's loss curves for p in {0.5, 0.9, 1}.

The paper's network: a bottom of 1 layer × 16 units, towers of 1 × 8, Adam; the mean training
loss over runs (fresh data and initialisation each) against training steps."""

from __future__ import annotations

from typing import Any

from mmoe.experiments import synthetic_runs
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import TRAINING_CORRELATIONS

NAME = "shared-bottom"
TITLE = "Shared-Bottom sensitivity to task correlation (Figure 3)"
MODELS = {"shared-bottom": ("shared-bottom", {"hidden_units": (16,), "tower_units": (8,)})}


def run(ctx: StudyContext) -> dict[str, Any]:
    per_p = synthetic_runs.run_studies(ctx, MODELS, TRAINING_CORRELATIONS, NAME)
    return {
        "generator": synthetic_runs.describe_generator(ctx),
        "training": synthetic_runs.describe_training(ctx),
        "per_p": per_p,
    }
