"""Hyperparameter tuning of the census models with Optuna's Gaussian-process sampler.

The paper tuned with a Gaussian-process bandit on the main task's validation AUC, within: at most
2048 hidden units per layer, and for MMoE experts × units per expert ≤ 2048. Tuned: the learning
rate for all; the training steps (here the epoch with the best validation AUC, i.e. early stopping
within `census_tune_epochs`); MoE: experts and units per expert; L2: hidden size and α;
Cross-Stitch: hidden size; Tensor-Factorization: ranks and hidden size. `census_max_units`
replaces 2048 at reduced sizes (the report says which cap was used).

The search space, the trial's training and the sampler are `mmoe tune`'s (`mmoe.tune`); this study
runs them in one process, in memory, without pruning.

A tuned configuration is written to <tuned>/<group>-<model>.json and reused when its tuning
settings match (or always, with --tuned DIR).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import optuna

from mmoe.data.dataset import MultiTaskData
from mmoe.errors import MmoeError
from mmoe.experiments.context import StudyContext
from mmoe.io import atomic_write_json, to_jsonable
from mmoe.models import hyperparameter_options
from mmoe.train.trainer import TrainConfig
from mmoe.tune import make_sampler, suggest, train_trial

__all__ = ["check_tuned_dir", "hyperparameters", "suggest", "tune", "tuned_path"]


def tune(ctx: StudyContext, data: MultiTaskData, group: int, model: str) -> dict[str, Any]:
    """The tuned configuration {"hyperparameters", "learning_rate", "epochs", "validation_auc", "trials", ...};
    read from the tuned folder when it holds a matching one."""
    scale = ctx.scale
    settings = {
        "group": group,
        "model": model,
        "trials": scale.census_trials,
        "tune_rows": scale.census_tune_rows,
        "tune_epochs": scale.census_tune_epochs,
        "max_units": scale.census_max_units,
        "seed": ctx.seed,
        "eval_rows": scale.census_eval_rows,
    }
    path = tuned_path(ctx, group, model)
    source = (ctx.tuned_dir or ctx.out / "tuned") / path.name
    if source.is_file():
        saved = json.loads(source.read_text())
        # --tuned DIR: reuse whatever was tuned there; otherwise only a tuning with the same settings.
        if ctx.tuned_dir is not None or saved.get("settings") == settings:
            if source != path:
                atomic_write_json(path, saved)  # the report folder keeps the configuration it used
            return saved

    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("gp", ctx.seed, scale.census_trials))
    records: list[dict[str, Any]] = []
    # Each trial trains with learning rate and seed replaced (seed + trial number), as `mmoe tune` does.
    training = TrainConfig(epochs=scale.census_tune_epochs, patience=1, seed=ctx.seed, threads=ctx.threads)

    def objective(trial: optuna.Trial) -> float:
        outcome = train_trial(trial, data, model, training, scale.census_max_units)
        result = outcome.result
        assert result is not None  # train_trial has trained
        records.append(
            {
                "trial": trial.number,
                "learning_rate": outcome.learning_rate,
                "hyperparameters": to_jsonable(outcome.hyperparameters),
                "validation_auc": result.best_score,
                "best_epoch": result.best_epoch,
            }
        )
        return result.best_score

    study.optimize(objective, n_trials=scale.census_trials)
    best = max(records, key=lambda r: r["validation_auc"])
    tuned = {
        "model": model,
        "group": group,
        "hyperparameters": best["hyperparameters"],
        "learning_rate": best["learning_rate"],
        "epochs": max(1, best["best_epoch"]),
        "validation_auc": best["validation_auc"],
        "sampler": "optuna.samplers.GPSampler",
        "settings": settings,
        "trials": records,
    }
    atomic_write_json(path, tuned)
    return tuned


def tuned_path(ctx: StudyContext, group: int, model: str) -> Path:
    """Where the tuned configuration of (group, model) is written: <out>/tuned/<group>-<model>.json."""
    return ctx.out / "tuned" / f"{group}-{model}.json"


def hyperparameters(tuned: dict[str, Any]) -> dict[str, Any]:
    """The saved hyperparameters as the models take them (JSON lists of layer widths back to tuples)."""
    options = hyperparameter_options()
    return {name: options[name].parse(value) for name, value in tuned["hyperparameters"].items()}


def check_tuned_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise MmoeError(f"--tuned {directory}: no such folder; expected the tuned/ folder of an earlier report")
