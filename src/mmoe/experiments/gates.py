"""Study `gates` (Figure 6 and Section 6.4's mechanism, on census group 1).

MMoE's mean gate weight over experts, per task, on the test rows; then the same with the
auxiliary task's (marital status) training labels kept on only `gates_sparse_fraction` of the
rows. Questions: does the sparse task's gate concentrate on fewer experts, and does MMoE help the
sparse task more than Shared-Bottom does (help = its AUC minus a Single-Task model's on the same
labels)? MMoE uses the paper's synthetic sizes (8 experts × 16 units); the other models their
defaults; all at learning rate 1e-3 for `gates_epochs` epochs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmoe.experiments.census_data import load_group, sparse_labels, subsample
from mmoe.experiments.context import StudyContext, map_units
from mmoe.io import to_jsonable
from mmoe.models.moe import MixtureOfExperts
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig

NAME = "gates"
TITLE = "Gate weights and a sparse auxiliary task (Figure 6, Section 6.4)"
GROUP = 1
SPARSE_TASK = 1  # marital status, the auxiliary task of group 1
CONDITIONS = ("full", "sparse")
MODELS = {"mmoe": {"num_experts": 8, "expert_units": (16,)}, "shared-bottom": {}, "single-task": {}}
GATE_ROWS = 20_000


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    full = _group_data(ctx)
    config = _config(ctx)
    result: dict[str, Any] = {
        "group": GROUP,
        "tasks": full.task_names,
        "sparse_task": full.task_names[SPARSE_TASK],
        "sparse_fraction": scale.gates_sparse_fraction,
        "training": config.to_dict(),
        "models": {m: to_jsonable(hp) for m, hp in MODELS.items()},
        "conditions": {},
    }
    units = [(condition, model) for condition in CONDITIONS for model in MODELS]
    runs = map_units(ctx, _condition_model, units, desc=NAME, weights=[scale.gates_runs] * len(units))
    for (condition, model), model_runs in zip(units, runs):
        result["conditions"].setdefault(condition, {})[model] = model_runs
    return result


def _group_data(ctx: StudyContext) -> Any:
    scale = ctx.scale
    return subsample(load_group(GROUP, ctx.data_dir), scale.census_train_rows, scale.census_eval_rows, seed=ctx.seed)


def _config(ctx: StudyContext) -> TrainConfig:
    return TrainConfig(learning_rate=1e-3, epochs=ctx.scale.gates_epochs, patience=0, threads=ctx.threads)


def _condition_model(ctx: StudyContext, unit: tuple[str, str]) -> list[dict[str, Any]]:
    """The runs of one model under one label condition (cached)."""
    condition, model = unit
    scale = ctx.scale
    config = _config(ctx)
    seeds = [ctx.seed * 100_000 + r for r in range(scale.gates_runs)]
    spec = {
        "condition": condition,
        "fraction": scale.gates_sparse_fraction,
        "model": model,
        "hyperparameters": to_jsonable(MODELS[model]),
        "training": config.to_dict() | {"threads": None},
        "seeds": seeds,
        "train_rows": scale.census_train_rows,
        "eval_rows": scale.census_eval_rows,
    }

    def compute() -> list[dict[str, Any]]:
        data = _group_data(ctx)
        if condition == "sparse":
            data = sparse_labels(data, SPARSE_TASK, scale.gates_sparse_fraction, seed=ctx.seed)
        return _train(ctx, data, model, MODELS[model], config, seeds)

    return ctx.cache.get_or_compute("gates-runs", spec, compute)


def _train(
    ctx: StudyContext, data: Any, model: str, hp: dict[str, Any], config: TrainConfig, seeds: list[int]
) -> list[dict[str, Any]]:
    torch.set_num_threads(ctx.threads)
    population = train_population(model, data, config, seeds, **hp)
    runs = []
    for index, replica in enumerate(population.replicas):
        run: dict[str, Any] = {
            "seed": replica.seed,
            "test_auc": {t: m["auc"] for t, m in replica.metrics["test"].items()},
        }
        if model == "mmoe":
            network = population.model(index, data, model, **hp)
            assert isinstance(network, MixtureOfExperts)  # "mmoe" builds one: it has gates()
            rows = slice(0, GATE_ROWS)
            with torch.no_grad():
                gates = network.gates(data.test.numeric[rows], data.test.categorical[rows])  # [B, K, E]
            entropy = -(gates * gates.clamp_min(1e-12).log()).sum(-1) / np.log(gates.shape[-1])
            run["mean_gate"] = {task: gates[:, k].mean(0).tolist() for k, task in enumerate(data.task_names)}
            run["gate_entropy"] = {task: float(entropy[:, k].mean()) for k, task in enumerate(data.task_names)}
        runs.append(run)
    return runs
