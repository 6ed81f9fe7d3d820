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
from mmoe.experiments.context import StudyContext
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig

NAME = "gates"
TITLE = "Gate weights and a sparse auxiliary task (Figure 6, Section 6.4)"
GROUP = 1
SPARSE_TASK = 1  # marital status, the auxiliary task of group 1
MODELS = {"mmoe": {"num_experts": 8, "expert_units": (16,)}, "shared-bottom": {}, "single-task": {}}
GATE_ROWS = 20_000


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    full = subsample(load_group(GROUP, ctx.data_dir), scale.census_train_rows, scale.census_eval_rows, seed=ctx.seed)
    conditions = {"full": full, "sparse": sparse_labels(full, SPARSE_TASK, scale.gates_sparse_fraction, seed=ctx.seed)}
    config = TrainConfig(learning_rate=1e-3, epochs=scale.gates_epochs, patience=0, threads=ctx.threads)
    seeds = [ctx.seed * 100_000 + r for r in range(scale.gates_runs)]
    result: dict[str, Any] = {"group": GROUP, "tasks": full.task_names, "sparse_task": full.task_names[SPARSE_TASK],
                              "sparse_fraction": scale.gates_sparse_fraction, "training": config.to_dict(),
                              "models": {m: {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()}
                                         for m, hp in MODELS.items()}, "conditions": {}}
    with ctx.bar(total=len(conditions) * len(MODELS) * len(seeds), desc=NAME) as bar:
        for condition, data in conditions.items():
            result["conditions"][condition] = {}
            for model, hp in MODELS.items():
                spec = {"condition": condition, "fraction": scale.gates_sparse_fraction, "model": model,
                        "hyperparameters": result["models"][model], "training": config.to_dict() | {"threads": None},
                        "seeds": seeds, "train_rows": scale.census_train_rows, "eval_rows": scale.census_eval_rows}
                result["conditions"][condition][model] = ctx.cache.get_or_compute(
                    "gates-runs", spec, lambda data=data, model=model, hp=hp: _train(ctx, data, model, hp, config, seeds))
                bar.update(len(seeds))
    return result


def _train(ctx: StudyContext, data: Any, model: str, hp: dict[str, Any], config: TrainConfig,
           seeds: list[int]) -> list[dict[str, Any]]:
    torch.set_num_threads(ctx.threads)
    population = train_population(model, data, config, seeds, **hp)
    runs = []
    for index, replica in enumerate(population.replicas):
        run: dict[str, Any] = {"seed": replica.seed, "test_auc": {t: m["auc"] for t, m in replica.metrics["test"].items()}}
        if model == "mmoe":
            network = population.model(index, data, model, **hp)
            rows = slice(0, GATE_ROWS)
            with torch.no_grad():
                gates = network.gates(data.test.numeric[rows], data.test.categorical[rows])  # [B, K, E]
            entropy = -(gates * gates.clamp_min(1e-12).log()).sum(-1) / np.log(gates.shape[-1])
            run["mean_gate"] = {task: gates[:, k].mean(0).tolist() for k, task in enumerate(data.task_names)}
            run["gate_entropy"] = {task: float(entropy[:, k].mean()) for k, task in enumerate(data.task_names)}
        runs.append(run)
    return runs
