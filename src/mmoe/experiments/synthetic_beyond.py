"""Study `synthetic-beyond` (beyond the paper): PLE beside MMoE, OMoE and Shared-Bottom on the
synthetic correlation sweep of Figure 4.

The synthetic study's generator and protocol (`synthetic_runs`): at each correlation p of
TRAINING_CORRELATIONS, the learning rate of each model from the paper's grid by a pilot, then
`synthetic_runs` runs, run i on data seed i from initialisation seed i for every model (paired).
The three models of Figure 4 are the synthetic study's (`synthetic.comparison_models`), so their
runs are read back from its cache when it ran in the same report folder. PLE: its defaults (2
experts per task and 4 shared, 2 levels, towers of 8) with the expert width whose parameter count
is closest to MMoE's (`sizing.matching_width`), the equal-size comparison of Figure 4.

The question (claims: "PLE keeps MMoE's advantage at low correlation"): at the lowest p, does PLE
beat Shared-Bottom and OMoE by a paired margin, as MMoE does?
"""

from __future__ import annotations

from typing import Any

from mmoe.data.dataset import InputSpec
from mmoe.data.synthetic import feature_names
from mmoe.experiments import synthetic, synthetic_runs
from mmoe.experiments.context import StudyContext
from mmoe.experiments.scale import TRAINING_CORRELATIONS
from mmoe.experiments.sizing import matching_width

NAME = "synthetic-beyond"
TITLE = "Beyond the paper: PLE beside MMoE, OMoE and Shared-Bottom on synthetic data"
PLE_OPTIONS: dict[str, Any] = {"specific_experts": 2, "shared_experts": 4, "levels": 2, "tower_units": (8,)}


def ple_model(ctx: StudyContext, target: int) -> tuple[tuple[str, dict[str, Any]], int, int]:
    """(PLE's (model, hyperparameters), its parameter count, its expert width) at MMoE's count `target`."""
    spec = InputSpec(numeric=tuple(feature_names(synthetic_runs.TRAINING_GENERATOR.dim)))
    width, count = matching_width("ple", target, spec, 2, option="expert_units", high=256, **PLE_OPTIONS)
    return ("ple", {**PLE_OPTIONS, "expert_units": (width,)}), count, width


def run(ctx: StudyContext) -> dict[str, Any]:
    models, counts = synthetic.comparison_models(ctx)
    ple, ple_count, width = ple_model(ctx, counts["mmoe"])
    models["ple"] = ple
    per_p = synthetic_runs.run_studies(ctx, models, TRAINING_CORRELATIONS, NAME)
    return {
        "parameters": counts | {"ple": ple_count, "ple_expert_units": width},
        "generator": synthetic_runs.describe_generator(ctx),
        "training": synthetic_runs.describe_training(ctx),
        "per_p": per_p,
    }
