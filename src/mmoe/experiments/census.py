"""Study `census` (Tables 1 and 2): all seven models on both census groups.

Per (group, model): tune (see `tuning`), then train the tuned configuration `census_repeats`
times from random initialisation (in chunks of `census_chunk` runs, each chunk cached). The
(group, model) pairs are independent and run in `ctx.workers` processes at once.
Reported as the paper does: mean test AUC per task (here with its 95% t-interval), and the run
with the best main-task test AUC with its auxiliary AUC.

Beside the paper's models, the baselines of `mmoe.baselines` (LightGBM, one booster per task, its
default options, not tuned) on the same data: `census_repeats` fits with the repeats' seeds, in a
group's "baselines" (left out, with a note, when lightgbm is not installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from mmoe.baselines import BASELINES, fit_baseline, hyperparameters_of, is_baseline
from mmoe.experiments import stats, tuning
from mmoe.experiments.census_data import load_group, subsample
from mmoe.experiments.context import StudyContext, map_units
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig

NAME = "census"
TITLE = "UCI census-income: Tables 1 and 2"


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
    pairs = [(group, model) for group in scale.census_groups for model in (*scale.census_models, *baselines)]
    # Every (group, model) is tuned and repeated on its own, so the pairs run side by side.
    weights = [scale.census_repeats + (0 if is_baseline(model) else scale.census_trials) for _, model in pairs]
    studied = map_units(ctx, study_model, pairs, desc=NAME, weights=weights)
    for (group, model), (rows, tasks, model_result) in zip(pairs, studied):
        group_result = results["groups"].setdefault(str(group), {"tasks": tasks, "rows": rows, "models": {}})
        group_result.setdefault("baselines" if is_baseline(model) else "models", {})[model] = model_result
    return results


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


def repeats(ctx: StudyContext, data: Any, group: int, model: str, tuned: dict[str, Any]) -> list[dict[str, Any]]:
    """census_repeats runs of the tuned configuration, seeds seed·100000 + r, in cached chunks."""
    scale = ctx.scale
    hp = tuning.hyperparameters(tuned)
    config = TrainConfig(
        learning_rate=tuned["learning_rate"], epochs=int(tuned["epochs"]), patience=0, threads=ctx.threads
    )
    base = ctx.seed * 100_000
    runs: list[dict[str, Any]] = []
    for start in range(0, scale.census_repeats, scale.census_chunk):
        seeds = list(range(base + start, base + min(start + scale.census_chunk, scale.census_repeats)))
        spec = {
            "group": group,
            "model": model,
            "hyperparameters": tuned["hyperparameters"],
            "training": config.to_dict() | {"threads": None},
            "seeds": seeds,
            "train_rows": scale.census_train_rows,
            "eval_rows": scale.census_eval_rows,
            "data_seed": ctx.seed,
        }

        # get_or_compute calls compute (if at all) at once, inside this iteration: the loop's
        # variables it reads are this chunk's (B023 guards against closures called later).
        def compute() -> list[dict[str, Any]]:
            # One run after another, not a population: census inputs go through embedding_bag, which
            # has no vmap batching rule, so a census population was measured no faster (10 tuned
            # repeats: ≈ 4 min). Each run equals its population replica (tests/test_population.py).
            torch.set_num_threads(ctx.threads)
            results = [(seed, fit(data, model, replace(config, seed=seed), **hp)) for seed in seeds]  # noqa: B023
            return [_run_record(seed, r.metrics, best_epoch=r.best_epoch) for seed, r in results]

        runs.extend(ctx.cache.get_or_compute("census-runs", spec, compute))
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


def baseline_repeats(ctx: StudyContext, data: Any, group: int, model: str) -> list[dict[str, Any]]:
    """census_repeats fits of a baseline with its default options, seeds seed·100000 + r (the
    neural repeats' seeds), in cached chunks. LightGBM samples no rows or columns at its defaults,
    so its repeats agree unless its seed reaches something (binning samples of large data)."""
    scale = ctx.scale
    base = ctx.seed * 100_000
    runs: list[dict[str, Any]] = []
    for start in range(0, scale.census_repeats, scale.census_chunk):
        seeds = list(range(base + start, base + min(start + scale.census_chunk, scale.census_repeats)))
        spec = {
            "group": group,
            "model": model,
            "hyperparameters": hyperparameters_of(model),
            "seeds": seeds,
            "train_rows": scale.census_train_rows,
            "eval_rows": scale.census_eval_rows,
            "data_seed": ctx.seed,
        }

        def compute() -> list[dict[str, Any]]:
            results = [(seed, fit_baseline(data, model, seed=seed, threads=ctx.threads)) for seed in seeds]  # noqa: B023
            return [_run_record(seed, r.metrics, best_rounds=r.best_rounds) for seed, r in results]

        runs.extend(ctx.cache.get_or_compute("census-baseline-runs", spec, compute))
    return runs


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
