"""Study `census-beyond` (beyond the paper): PLE, CGC and DSelect-k beside the paper's seven on census.

The census study's protocol, unchanged, by its own functions (`census.study_model`): per (group,
model), tuning with Optuna's GP sampler over the learning rate and the model's own `search_space`
(`tuning.tune`, within `census_max_units`), then `census_repeats` runs of the tuned configuration,
reported as mean test AUC with its 95% t-interval and the best main-task run.

The paper's seven rows are the census study's: the same tuned files (<out>/tuned/<group>-<model>.json,
reused when their tuning settings match) and the same cached repeats (cache kind "census-runs",
keyed by group, model, tuned hyperparameters, training, seeds and rows). Run in the report folder
of a census study of the same size and seed, they are read back, not trained again; anywhere else
they are tuned and trained here by that same code, with the same numbers as the census study
would give. Each row says which ("source": "cache" when none of its repeats was trained here).
The LightGBM baselines are the census study's business and are left out here.
"""

from __future__ import annotations

from typing import Any

from mmoe.experiments import census
from mmoe.experiments.context import StudyContext, map_units
from mmoe.train.trainer import TrainConfig

NAME = "census-beyond"
TITLE = "Beyond the paper: PLE, CGC and DSelect-k beside the paper's seven on UCI census-income"


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    models = [*scale.census_models, *(m for m in scale.beyond_census_models if m not in scale.census_models)]
    pairs = [(group, model) for group in scale.census_groups for model in models]
    weights = [scale.census_repeats + scale.census_trials] * len(pairs)
    studied = map_units(ctx, study_model, pairs, desc=NAME, weights=weights)
    results: dict[str, Any] = {
        "batch_size": TrainConfig().batch_size,
        "paper_models": list(scale.census_models),
        "beyond_models": list(scale.beyond_census_models),
        "groups": {},
    }
    for (group, model), (rows, tasks, model_result) in zip(pairs, studied):
        group_result = results["groups"].setdefault(str(group), {"tasks": tasks, "rows": rows, "models": {}})
        group_result["models"][model] = model_result
    return results


def study_model(ctx: StudyContext, pair: tuple[int, str]) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    """`census.study_model`, with where its repeats came from: "cache" when every chunk was read
    back (the census study, or an earlier run of this one, trained them), else "trained"."""
    computed_before = ctx.cache.misses
    rows, tasks, result = census.study_model(ctx, pair)
    result["source"] = "cache" if ctx.cache.misses == computed_before else "trained"
    return rows, tasks, result
