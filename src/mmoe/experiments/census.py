"""Study `census` (Tables 1 and 2): all seven models on both census groups.

Per (group, model): tune (see `tuning`), then train the tuned configuration `census_repeats`
times from random initialisation (in chunks of `census_chunk` runs, each chunk cached). The
(group, model) pairs are independent and run in `ctx.workers` processes at once.
Reported as the paper does: mean test AUC per task (here with its 95% t-interval), and the run
with the best main-task test AUC with its auxiliary AUC.

Beside the paper's models, the baselines of `mmoe.baselines` (LightGBM, one booster per task, its
default options, not tuned) on the same data: `census_repeats` fits with the repeats' seeds, in a
group's "baselines" (left out, with a note, when lightgbm is not installed). And MMoE at mmoe's
default configuration (`DEFAULTS_MODELS`: what `mmoe train --dataset census --group G` trains, the
improved configuration of issue 14: numeric columns as periodic vectors, 20 epochs early-stopped
on the validation AUC, the model's default sizes; not tuned), `census_repeats` runs with the
repeats' seeds, in a group's "defaults". The paper's rows keep the paper's configuration."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from mmoe.baselines import BASELINES, fit_baseline, hyperparameters_of, is_baseline
from mmoe.data import with_numeric_embedding
from mmoe.experiments import stats, tuning
from mmoe.experiments.census_data import load_group, subsample
from mmoe.experiments.context import StudyContext, map_units
from mmoe.io import to_jsonable
from mmoe.models import model_hyperparameters
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig

NAME = "census"
TITLE = "UCI census-income: Tables 1 and 2"
# Trained at mmoe's default configuration beside the paper's tuned rows (see the module docstring).
DEFAULTS_MODELS = ("mmoe",)
# A unit of the study: (group, model, kind); kind "tuned" (the paper's protocol), "baseline" or
# "defaults", each kept under its own key of the group's result.
KEYS = {"tuned": "models", "baseline": "baselines", "defaults": "defaults"}


def run(ctx: StudyContext) -> dict[str, Any]:
    scale = ctx.scale
    results: dict[str, Any] = {"batch_size": TrainConfig().batch_size, "groups": {}}
    baselines = [name for name in BASELINES if importlib.util.find_spec(BASELINES[name].package) is not None]
    for name in BASELINES:
        if name not in baselines:
            ctx.notes.append(
                f"census: the {name} baseline row is left out: the package {BASELINES[name].package} is not "
                f"installed (pip install 'mmoe[{BASELINES[name].package}]')"
            )
    units = [
        (group, model, "baseline" if is_baseline(model) else "tuned")
        for group in scale.census_groups
        for model in (*scale.census_models, *baselines)
    ]
    units += [(group, model, "defaults") for group in scale.census_groups for model in DEFAULTS_MODELS]
    # Every unit is tuned and repeated (or only repeated) on its own, so the units run side by side.
    weights = [scale.census_repeats + (scale.census_trials if kind == "tuned" else 0) for _, _, kind in units]
    studied = map_units(ctx, study_unit, units, desc=NAME, weights=weights)
    for (group, model, kind), (rows, tasks, model_result) in zip(units, studied):
        group_result = results["groups"].setdefault(str(group), {"tasks": tasks, "rows": rows, "models": {}})
        group_result.setdefault(KEYS[kind], {})[model] = model_result
    return results


def study_unit(ctx: StudyContext, unit: tuple[int, str, str]) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    """One (group, model, kind): `study_model` for the tuned and baseline kinds, `study_defaults` for "defaults"."""
    group, model, kind = unit
    return study_defaults(ctx, (group, model)) if kind == "defaults" else study_model(ctx, (group, model))


def study_model(ctx: StudyContext, pair: tuple[int, str]) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    """One (group, model): tuned (see `tuning`), then census_repeats runs of the tuned configuration.
    Returns the group's row counts, its task names and the model's result."""
    group, model = pair
    scale = ctx.scale
    full = load_group(group, ctx.data_dir)
    data = subsample(full, scale.census_train_rows, scale.census_eval_rows, seed=ctx.seed)
    tune_data = subsample(full, scale.census_tune_rows, scale.census_eval_rows, seed=ctx.seed)
    rows = {
        "train": len(data.train),
        "validation": len(data.validation),
        "test": len(data.test),
        "tuning_train": len(tune_data.train),
    }
    if is_baseline(model):  # not tuned: its defaults, on the repeats' data
        runs = baseline_repeats(ctx, data, group, model)
        options = hyperparameters_of(model)
        return rows, data.task_names, {"options": options, "runs": runs, "summary": summarize(runs, data.task_names)}
    tuned = tuning.tune(ctx, tune_data, group, model)
    runs = repeats(ctx, data, group, model, tuned)
    return (
        rows,
        data.task_names,
        {
            "tuned": {k: v for k, v in tuned.items() if k != "trials"},
            "tuning_trials": tuned.get("trials", []),
            "runs": runs,
            "summary": summarize(runs, data.task_names),
        },
    )


def study_defaults(ctx: StudyContext, pair: tuple[int, str]) -> tuple[dict[str, int], list[str], dict[str, Any]]:
    """One (group, model) at mmoe's default configuration: census_repeats runs on the repeats' data
    with the numeric columns as `mmoe train` gives them ("auto": periodic on census). Returns the
    group's row counts, its task names and the model's result."""
    group, model = pair
    scale = ctx.scale
    data = subsample(load_group(group, ctx.data_dir), scale.census_train_rows, scale.census_eval_rows, seed=ctx.seed)
    data = with_numeric_embedding(data, "auto")
    embedding = data.input_spec.numeric_embedding
    config = TrainConfig(threads=ctx.threads)
    configuration = {
        "numeric_embedding": "none" if embedding is None else embedding.describe(),
        "hyperparameters": to_jsonable(model_hyperparameters(model)),
        "training": config.to_dict() | {"threads": None, "seed": None},
    }

    def train(seed: int) -> dict[str, Any]:
        result = fit(data, model, replace(config, seed=seed))
        return _run_record(seed, result.metrics, best_epoch=result.best_epoch)

    runs = _cached_repeats(ctx, "census-defaults-runs", {"group": group, "model": model, **configuration}, train)
    rows = {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    return (
        rows,
        data.task_names,
        {"configuration": configuration, "runs": runs, "summary": summarize(runs, data.task_names)},
    )


def repeats(ctx: StudyContext, data: Any, group: int, model: str, tuned: dict[str, Any]) -> list[dict[str, Any]]:
    """census_repeats runs of the tuned configuration (see `_cached_repeats`)."""
    hp = tuning.hyperparameters(tuned)
    config = TrainConfig(
        learning_rate=tuned["learning_rate"], epochs=int(tuned["epochs"]), patience=0, threads=ctx.threads
    )

    # One run after another, not a population: census inputs go through embedding_bag, which has no
    # vmap batching rule, so a census population was measured no faster (10 tuned repeats: ≈ 4 min).
    # Each run equals its population replica (tests/test_population.py).
    def train(seed: int) -> dict[str, Any]:
        result = fit(data, model, replace(config, seed=seed), **hp)
        return _run_record(seed, result.metrics, best_epoch=result.best_epoch)

    training = config.to_dict() | {"threads": None}
    spec = {"group": group, "model": model, "hyperparameters": tuned["hyperparameters"], "training": training}
    return _cached_repeats(ctx, "census-runs", spec, train)


def baseline_repeats(ctx: StudyContext, data: Any, group: int, model: str) -> list[dict[str, Any]]:
    """census_repeats fits of a baseline with its default options (see `_cached_repeats`). LightGBM
    samples no rows or columns at its defaults, so its repeats agree unless its seed reaches
    something (binning samples of large data)."""

    def train(seed: int) -> dict[str, Any]:
        result = fit_baseline(data, model, seed=seed, threads=ctx.threads)
        return _run_record(seed, result.metrics, best_rounds=result.best_rounds)

    spec = {"group": group, "model": model, "hyperparameters": hyperparameters_of(model)}
    return _cached_repeats(ctx, "census-baseline-runs", spec, train)


def _cached_repeats(
    ctx: StudyContext, kind: str, spec: dict[str, Any], train: Callable[[int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """[train(seed) for the census_repeats seeds seed·100000 + r], census_chunk seeds at a time, each
    chunk cached under `kind` by `spec`, its seeds and the rows it was trained on."""
    scale = ctx.scale
    base = ctx.seed * 100_000
    runs: list[dict[str, Any]] = []
    for start in range(0, scale.census_repeats, scale.census_chunk):
        seeds = list(range(base + start, base + min(start + scale.census_chunk, scale.census_repeats)))
        chunk = spec | {
            "seeds": seeds,
            "train_rows": scale.census_train_rows,
            "eval_rows": scale.census_eval_rows,
            "data_seed": ctx.seed,
        }

        # get_or_compute calls compute (if at all) at once, inside this iteration: the loop's
        # variables it reads are this chunk's (B023 guards against closures called later).
        def compute() -> list[dict[str, Any]]:
            torch.set_num_threads(ctx.threads)
            return [train(seed) for seed in seeds]  # noqa: B023

        runs.extend(ctx.cache.get_or_compute(kind, chunk, compute))
    return runs


def _run_record(seed: int, metrics: Mapping[str, Any], **fitted: Any) -> dict[str, Any]:
    """One cached repeat: its seed, what the fit chose (best_epoch or best_rounds), and the
    validation and test AUC and log loss per task."""
    return {
        "seed": seed,
        **fitted,
        **{
            split: {t: {"auc": m["auc"], "logloss": m["logloss"]} for t, m in metrics[split].items()}
            for split in ("validation", "test")
        },
    }


def summarize(runs: list[dict[str, Any]], tasks: list[str]) -> dict[str, Any]:
    """Per task: mean test AUC with a 95% t-interval and std; the best main-task run and its AUCs."""
    main = tasks[0]
    summary: dict[str, Any] = {"runs": len(runs)}
    for task in tasks:
        values = [r["test"][task]["auc"] for r in runs]
        mean, low, high = stats.t_interval(values)
        summary[task] = {
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
        }
    best = max(runs, key=lambda r: r["test"][main]["auc"])
    summary["best"] = {"seed": best["seed"], **{task: best["test"][task]["auc"] for task in tasks}}
    return summary
