"""Study `weighting` (issue 15): does any loss-weighting method beat equal weights?

Every method of `mmoe.train.weighting.WEIGHTINGS` but `fixed` (it needs task weights chosen by
hand, which no data set here suggests; the scale's `weighting_methods` may name fewer, as the
tiny size does) × {MMoE, Shared-Bottom} × five settings:

  * census-1, census-2: the census groups, models at their defaults (MMoE 8 experts × 16 units,
    Shared-Bottom 128 units, towers of 8) and `TrainConfig`'s defaults (Adam lr 1e-3, batch 1024,
    early stopping on the main task's validation AUC with patience 3), for `weighting_census_epochs`
    epochs: untuned, for every method alike (tuning every method × model is out of reach). One data
    split (seeded by the base seed); run i starts from initialisation seed i.
  * synthetic p = 0.5, p = 1: the training studies' generator and training (`synthetic_runs`:
    equal-parameter models of Figure 4, Adam, no early stopping); the learning rate is the one the
    synthetic studies' pilot chooses for each (model, p) with equal weights, used by every method;
    run i on its own data set (data seed i) and initialisation (seed i), trained as populations.
  * clicklog: `mmoe.data.clicklog` impressions (tasks click and purchase, purchase labelled only
    after a click) of `weighting_clicklog_rows` rows, users = rows/20, items = rows/100, the
    generator's other defaults; run i on its own log (seed i) and initialisation (seed i);
    training as census.

Run i sees the same data and initialisation seed under every method, so each method is compared
with `ew` run by run (paired). A run's score: the mean over the tasks of the test AUC (census,
clicklog; higher is better) or of the test MSE (synthetic; lower is better).

The verdict (fixed here, before any run; never adjusted to a result): per (setting, model) cell,
the paired gains g_i = score_i(method) − score_i(ew) (sign flipped for MSE, so g > 0 is better)
and their t-interval at confidence 1 − α/C (Bonferroni over the method's C cells, α = 0.05):
the cell is "better" when the interval lies above 0, "worse" below 0, else "no difference".
A method "beats ew" when it is better in some cell and worse in none; "worse than ew" the other
way round; "mixed" when both; "no significant difference" otherwise (with few seeds that is
weak evidence of equality: the report gives the seed count).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from mmoe.data.clicklog import ClickLogConfig, load_clicklog
from mmoe.data.synthetic import load_synthetic
from mmoe.errors import MmoeError
from mmoe.experiments import stats, synthetic, synthetic_runs
from mmoe.experiments.census_data import census_unavailable_reason, load_group, subsample
from mmoe.experiments.context import StudyContext, map_units
from mmoe.io import to_jsonable
from mmoe.runs import fit
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from mmoe.train.weighting import WEIGHTINGS

NAME = "weighting"
TITLE = "Loss weighting and gradient balancing against equal weights (issue 15)"
REFERENCE = "ew"
METHODS = tuple(name for name in WEIGHTINGS if name != "fixed")  # ew first: the reference
MODELS = ("mmoe", "shared-bottom")
CENSUS_SETTINGS = {"census-1": 1, "census-2": 2}
SYNTHETIC_SETTINGS = {"synthetic-p0.5": 0.5, "synthetic-p1": 1.0}
CLICKLOG_SETTING = "clicklog"
SETTINGS = (*CENSUS_SETTINGS, *SYNTHETIC_SETTINGS, CLICKLOG_SETTING)

ALPHA = 0.05
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference"
BEATS, LOSES, MIXED, NONE_FOUND = "beats ew", "worse than ew", "mixed", "no significant difference"


def methods(ctx: StudyContext) -> tuple[str, ...]:
    """The scale's methods (default: METHODS), the reference first."""
    chosen = ctx.scale.weighting_methods or METHODS
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise MmoeError(f"weighting study: unknown method {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    return (REFERENCE, *(m for m in chosen if m != REFERENCE))


def run(ctx: StudyContext) -> dict[str, Any]:
    chosen = methods(ctx)
    census_reason = census_unavailable_reason(ctx.data_dir)
    settings = [s for s in SETTINGS if not (s in CENSUS_SETTINGS and census_reason)]
    skipped = {s: f"census data not available: {census_reason}" for s in CENSUS_SETTINGS if census_reason}
    # The synthetic cells' learning rates first, one pilot per (p, model), so that the workers of
    # the next phase read them from the cache instead of training the same pilot side by side.
    pilots = [(SYNTHETIC_SETTINGS[s], model) for s in settings if s in SYNTHETIC_SETTINGS for model in MODELS]
    map_units(ctx, synthetic_learning_rate, pilots, desc=f"{NAME} pilots")
    units = [(setting, model, method) for setting in settings for model in MODELS for method in chosen]
    results = map_units(ctx, study_unit, units, desc=NAME, weights=[ctx.scale.weighting_runs] * len(units))
    cells: dict[str, dict[str, Any]] = {}
    for (setting, model, method), unit in zip(units, results):
        cell = cells.setdefault(setting, {}).setdefault(model, {"setup": unit["setup"], "methods": {}})
        cell["methods"][method] = {"runs": unit["runs"], "summary": summarize_runs(unit["runs"])}
    comparisons = compare_with_reference(cells)
    return {
        "methods": list(chosen),
        "models": list(MODELS),
        "settings": {s: describe_setting(ctx, s) for s in settings},
        "skipped": skipped,
        "runs_per_cell": ctx.scale.weighting_runs,
        "alpha": ALPHA,
        "cells": cells,
        "comparisons": comparisons,
        "verdicts": {m: method_verdict([c["outcome"] for c in of.values()]) for m, of in comparisons.items()},
    }


# ---------------------------------------------------------------------------------------------- runs


def study_unit(ctx: StudyContext, unit: tuple[str, str, str]) -> dict[str, Any]:
    """One (setting, model, method): its `weighting_runs` runs (cached as one unit)."""
    setting, model, method = unit
    if setting in SYNTHETIC_SETTINGS:
        return _synthetic_unit(ctx, SYNTHETIC_SETTINGS[setting], model, method)
    return _binary_unit(ctx, setting, model, method)


def _seeds(ctx: StudyContext) -> list[int]:
    base = ctx.seed * 100_000
    return list(range(base, base + ctx.scale.weighting_runs))


def synthetic_learning_rate(ctx: StudyContext, pilot: tuple[float, str]) -> float:
    """The learning rate the synthetic studies' pilot chooses for (p, model) with equal weights
    (cached, and shared with those studies: the same pilot gives the same cache entry)."""
    p, model_label = pilot
    models, _ = synthetic.comparison_models(ctx)
    model, hp = models[model_label]
    base = ctx.seed * 100_000 + synthetic_runs.PILOT_SEED_OFFSET
    return float(synthetic_runs.choose_learning_rate(ctx, model, hp, p, base)["learning_rate"])


def _synthetic_unit(ctx: StudyContext, p: float, model_label: str, method: str) -> dict[str, Any]:
    models, _ = synthetic.comparison_models(ctx)
    model, hp = models[model_label]
    rate = synthetic_learning_rate(ctx, (p, model_label))
    config = replace(synthetic_runs.train_config(ctx, rate), weighting=method)
    seeds = _seeds(ctx)
    spec = {
        "setting": f"synthetic p={p}",
        "model": model,
        "hyperparameters": to_jsonable(hp),
        "generator": asdict(synthetic_runs.generator_config(ctx, p, 0)),
        "training": config.to_dict() | {"threads": None},
        "seeds": seeds,
    }

    def compute() -> list[dict[str, Any]]:
        torch.set_num_threads(ctx.threads)
        datasets = [load_synthetic(synthetic_runs.generator_config(ctx, p, s)) for s in seeds]
        population = train_population(model, datasets, config, seeds, **hp)
        return [
            _record(seed, seed, replica.metrics, replica.history, "mse", replica.best_epoch)
            for seed, replica in zip(seeds, population.replicas)
        ]

    runs = ctx.cache.get_or_compute("weighting-runs", spec, compute)
    setup = {"model": model, "hyperparameters": to_jsonable(hp), "learning_rate": rate, "metric": "mse"}
    return {"setup": setup, "runs": runs}


def _binary_unit(ctx: StudyContext, setting: str, model: str, method: str) -> dict[str, Any]:
    scale = ctx.scale
    census = setting in CENSUS_SETTINGS
    epochs = scale.weighting_census_epochs if census else scale.weighting_clicklog_epochs
    config = TrainConfig(epochs=epochs, threads=ctx.threads, weighting=method)
    seeds = _seeds(ctx)
    spec: dict[str, Any] = {
        "setting": setting,
        "model": model,
        "hyperparameters": {},
        "training": config.to_dict() | {"threads": None},
        "seeds": seeds,
    }
    if census:
        spec |= {
            "train_rows": scale.weighting_census_train_rows,
            "eval_rows": scale.weighting_census_eval_rows,
            "data_seed": ctx.seed,
        }
    else:
        spec |= {"clicklog": asdict(clicklog_config(ctx, 0))}

    def compute() -> list[dict[str, Any]]:
        torch.set_num_threads(ctx.threads)
        runs = []
        for seed in seeds:
            if census:
                full = load_group(CENSUS_SETTINGS[setting], ctx.data_dir)
                data = subsample(full, scale.weighting_census_train_rows, scale.weighting_census_eval_rows, ctx.seed)
                data_seed = ctx.seed
            else:
                data, data_seed = load_clicklog(clicklog_config(ctx, seed)), seed
            # One run after another, as the census study: embedding_bag has no vmap batching rule.
            result = fit(data, model, replace(config, seed=seed))
            runs.append(_record(seed, data_seed, result.metrics, result.history, "auc", result.best_epoch))
        return runs

    runs = ctx.cache.get_or_compute("weighting-runs", spec, compute)
    setup = {"model": model, "hyperparameters": {}, "learning_rate": config.learning_rate, "metric": "auc"}
    return {"setup": setup, "runs": runs}


def clicklog_config(ctx: StudyContext, seed: int) -> ClickLogConfig:
    rows = ctx.scale.weighting_clicklog_rows
    return ClickLogConfig(rows=rows, users=max(1, rows // 20), items=max(1, rows // 100), seed=seed)


def _record(
    seed: int, data_seed: int, metrics: dict[str, Any], history: list[dict[str, Any]], metric: str, best_epoch: int
) -> dict[str, Any]:
    """One run: its seeds, per-task test metric, score (their mean), epochs and training seconds."""
    test = {task: _number(values.get(metric)) for task, values in metrics["test"].items()}
    finite = [v for v in test.values() if np.isfinite(v)]
    return {
        "seed": seed,
        "data_seed": data_seed,
        "test": test,
        "score": float(np.mean(finite)) if len(finite) == len(test) else float("nan"),
        "epochs": len(history),
        "best_epoch": best_epoch,
        "train_seconds": float(sum(entry.get("seconds", 0.0) for entry in history)),
        "final_train_loss": _number(history[-1]["train_loss"]) if history else float("nan"),
    }


def _number(value: Any) -> float:
    """A metric as a float; None (how JSON, and so the cache, stores NaN) as NaN."""
    return float(value) if value is not None else float("nan")


# How the census and click-log cells train (the synthetic cells follow Figure 4's training).
DEFAULT_TRAINING = "TrainConfig defaults (Adam lr 1e-3, batch 1024, patience 3), models at their defaults"


def describe_setting(ctx: StudyContext, setting: str) -> dict[str, Any]:
    scale = ctx.scale
    if setting in CENSUS_SETTINGS:
        return {
            "data": f"census group {CENSUS_SETTINGS[setting]}",
            "metric": "auc",
            "train_rows": scale.weighting_census_train_rows,
            "eval_rows": scale.weighting_census_eval_rows,
            "epochs": scale.weighting_census_epochs,
            "training": DEFAULT_TRAINING,
        }
    if setting in SYNTHETIC_SETTINGS:
        return {
            "data": f"synthetic, p = {SYNTHETIC_SETTINGS[setting]:g}",
            "metric": "mse",
            "train_rows": scale.synthetic_rows,
            "epochs": scale.synthetic_epochs,
            "training": f"Adam, batch {scale.synthetic_batch_size}, no early stopping, the equal-weights pilot's "
            "learning rate (Figure 4's models)",
        }
    return {
        "data": "click log (click, purchase after a click)",
        "metric": "auc",
        "config": asdict(clicklog_config(ctx, 0)) | {"seed": "run seed"},
        "epochs": scale.weighting_clicklog_epochs,
        "training": DEFAULT_TRAINING,
    }


# ------------------------------------------------------------------------------------ statistics


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean score with its 95% t-interval, per-task means, failed (non-finite) runs, seconds."""
    mean, low, high = stats.t_interval([_number(r["score"]) for r in runs])
    tasks = list(runs[0]["test"]) if runs else []
    return {
        "runs": len(runs),
        "failed": sum(not np.isfinite(_number(r["score"])) for r in runs),
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "tasks": {t: stats.t_interval([_number(r["test"][t]) for r in runs])[0] for t in tasks},
        "train_seconds": float(np.mean([r["train_seconds"] for r in runs])) if runs else float("nan"),
    }


def paired_gains(method_runs: list[dict[str, Any]], reference_runs: list[dict[str, Any]], metric: str) -> np.ndarray:
    """score(method) − score(reference) per seed both have finite (negated for MSE: > 0 is better)."""
    reference = {r["seed"]: _number(r["score"]) for r in reference_runs}
    sign = -1.0 if metric == "mse" else 1.0
    gains = [sign * (_number(r["score"]) - reference.get(r["seed"], float("nan"))) for r in method_runs]
    return stats.as_array(gains)


def cell_outcome(gains: np.ndarray, cells: int, alpha: float = ALPHA) -> dict[str, Any]:
    """The paired t-interval of the mean gain at confidence 1 − alpha/cells, and what it says."""
    mean, low, high = stats.t_interval(gains, confidence=1 - alpha / max(cells, 1))
    outcome = BETTER if low > 0 else WORSE if high < 0 else NO_DIFFERENCE  # nan bounds: no difference
    return {"pairs": int(gains.size), "gain": mean, "ci": [low, high], "outcome": outcome}


def method_verdict(outcomes: list[str]) -> str:
    """beats ew: better in some cell, worse in none; worse than ew: the reverse; mixed: both."""
    better, worse = BETTER in outcomes, WORSE in outcomes
    return MIXED if better and worse else BEATS if better else LOSES if worse else NONE_FOUND


def compare_with_reference(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{method: {"setting/model": cell_outcome}} for every method but the reference."""
    count = sum(len(models) for models in cells.values())
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for setting, models in cells.items():
        for model, cell in models.items():
            reference = cell["methods"].get(REFERENCE)
            if reference is None:
                continue
            for method, entry in cell["methods"].items():
                if method == REFERENCE:
                    continue
                gains = paired_gains(entry["runs"], reference["runs"], cell["setup"]["metric"])
                comparisons.setdefault(method, {})[f"{setting}/{model}"] = cell_outcome(gains, count)
    return comparisons
