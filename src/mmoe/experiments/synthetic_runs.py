"""Repeated training runs on fresh synthetic data, shared by the Figure 3, 4 and 5 studies.

For one correlation p and a set of models: the learning rate of each model is chosen from the
paper's grid by a small pilot (lowest mean validation MSE), then `runs` runs are trained, run i on
its own data set (data seed i) and its own initialisation (seed i). Run i sees the same data for
every model, so models can be compared run by run. Runs are trained as populations (stacked
weights) in chunks; each finished chunk is cached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from mmoe.data.synthetic import SyntheticConfig, load_synthetic
from mmoe.experiments.context import StudyContext, map_units
from mmoe.io import to_jsonable
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig

# The Figure 2 generator (high-frequency sines, label variance ≈ 4.3) is not learnable by these
# small networks (R² ≈ 0); smooth sines (c = 1, α ~ N(0, 1)) are, and keep the paper's form.
TRAINING_GENERATOR = SyntheticConfig(scale=1.0, alpha_scale=1.0, sines=10, noise=0.1)
PILOT_SEED_OFFSET = 1_000_000  # pilot runs use data and seeds disjoint from the reported runs


def generator_config(ctx: StudyContext, p: float, data_seed: int) -> SyntheticConfig:
    return replace(TRAINING_GENERATOR, correlation=p, rows=ctx.scale.synthetic_rows, seed=data_seed)


def train_config(ctx: StudyContext, learning_rate: float) -> TrainConfig:
    # patience 0: every run takes the same number of steps, as the paper's loss-vs-steps curves need.
    return TrainConfig(
        learning_rate=learning_rate,
        batch_size=ctx.scale.synthetic_batch_size,
        epochs=ctx.scale.synthetic_epochs,
        patience=0,
        threads=ctx.threads,
    )


def run_studies(
    ctx: StudyContext, models: dict[str, tuple[str, dict[str, Any]]], correlations: Sequence[float], desc: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """{str(p): run_models(ctx, models, p)} for every p, the (p, model) pairs side by side in
    ctx.workers processes."""
    units = [(p, label, models[label]) for p in correlations for label in models]
    results = map_units(ctx, _one_model, units, desc=desc, weights=[ctx.scale.synthetic_runs] * len(units))
    per_p: dict[str, dict[str, dict[str, Any]]] = {}
    for (p, label, _), result in zip(units, results):
        per_p.setdefault(str(p), {})[label] = result[label]
    return per_p


def _one_model(ctx: StudyContext, unit: tuple[float, str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    p, label, model = unit
    return run_models(ctx, {label: model}, p)


def run_models(ctx: StudyContext, models: dict[str, tuple[str, dict[str, Any]]], p: float) -> dict[str, dict[str, Any]]:
    """{label: {"learning_rate", "pilot", "runs": [run, ...]}} for every model at correlation p.

    models: {label: (model name, hyperparameters)}. A run is {"run", "data_seed", "seed",
    "train_loss" (per epoch, mean over the two tasks), "final_loss", "test_mse", "test_r2"}."""
    scale = ctx.scale
    base = ctx.seed * 100_000
    results: dict[str, dict[str, Any]] = {}
    for label, (model, hp) in models.items():
        results[label] = {
            "model": model,
            "hyperparameters": to_jsonable(hp),
            **choose_learning_rate(ctx, model, hp, p, base + PILOT_SEED_OFFSET),
        }
        results[label]["runs"] = []
    for start in range(0, scale.synthetic_runs, scale.synthetic_chunk):
        seeds = list(range(base + start, base + min(start + scale.synthetic_chunk, scale.synthetic_runs)))
        datasets: list[Any] | None = None  # generated once per chunk, only if some model needs it
        for label, (model, hp) in models.items():
            rate = results[label]["learning_rate"]

            # get_or_compute calls compute (if at all) at once, inside this iteration: the loop's
            # variables it reads are this model's and chunk's (B023 guards against closures called later).
            def compute() -> list[dict[str, Any]]:
                nonlocal datasets
                if datasets is None:
                    datasets = [load_synthetic(generator_config(ctx, p, s)) for s in seeds]  # noqa: B023
                return _train_runs(ctx, model, hp, datasets, seeds, [rate] * len(seeds))  # noqa: B023

            spec = _spec(ctx, model, hp, p, seeds, rate)
            results[label]["runs"].extend(ctx.cache.get_or_compute("synthetic-runs", spec, compute))
    return results


def choose_learning_rate(ctx: StudyContext, model: str, hp: dict[str, Any], p: float, base: int) -> dict[str, Any]:
    """The paper's grid, pilot_runs runs per rate, all in one population; the rate with the lowest
    mean validation MSE wins."""
    rates = list(ctx.scale.learning_rates)
    seeds = [base + j for j in range(ctx.scale.pilot_runs)]

    def compute() -> list[dict[str, Any]]:
        datasets = [load_synthetic(generator_config(ctx, p, s)) for s in seeds]
        return _train_runs(ctx, model, hp, datasets * len(rates), seeds * len(rates), [r for r in rates for _ in seeds])

    spec = _spec(ctx, model, hp, p, seeds, rates)
    pilot = ctx.cache.get_or_compute("synthetic-pilot", spec, compute)
    scores = {
        str(rate): float(np.mean([r["validation_mse"] for r in pilot if r["learning_rate"] == rate])) for rate in rates
    }
    chosen = min(rates, key=lambda rate: scores[str(rate)] if np.isfinite(scores[str(rate)]) else np.inf)
    return {"learning_rate": chosen, "pilot_validation_mse": scores}


def _train_runs(
    ctx: StudyContext, model: str, hp: dict[str, Any], datasets: list[Any], seeds: list[int], rates: list[float]
) -> list[dict[str, Any]]:
    torch.set_num_threads(ctx.threads)
    population = train_population(model, datasets, train_config(ctx, rates[0]), seeds, learning_rates=rates, **hp)
    runs = []
    for index, replica in enumerate(population.replicas):
        tasks = list(replica.metrics["test"])
        losses = [entry["train_loss"] / len(tasks) for entry in replica.history]
        runs.append(
            {
                "run": index,
                "data_seed": seeds[index],
                "seed": replica.seed,
                "learning_rate": replica.learning_rate,
                "train_loss": losses,
                "final_loss": losses[-1] if losses else float("nan"),
                "validation_mse": _mean_metric(replica.metrics["validation"], "mse"),
                "test_mse": _mean_metric(replica.metrics["test"], "mse"),
                "test_r2": {task: replica.metrics["test"][task]["r2"] for task in tasks},
            }
        )
    return runs


def _mean_metric(metrics: Mapping[str, Mapping[str, Any]], name: str) -> float:
    values = [m[name] for m in metrics.values() if m.get(name) is not None]
    return float(np.mean(values)) if values else float("nan")


def _spec(ctx: StudyContext, model: str, hp: dict[str, Any], p: float, seeds: list[int], rate: Any) -> dict[str, Any]:
    return {
        "model": model,
        "hyperparameters": to_jsonable(hp),
        "generator": asdict(generator_config(ctx, p, 0)),
        "seeds": seeds,
        "learning_rate": rate,
        "training": train_config(ctx, 1e-3).to_dict() | {"learning_rate": None, "threads": None},
    }


def describe_generator(ctx: StudyContext) -> dict[str, Any]:
    """The training studies' generator settings, and the label variance they give (measured)."""
    config = generator_config(ctx, 0.5, 0)
    from mmoe.data.synthetic import generate_synthetic

    _, y = generate_synthetic(replace(config, rows=20_000))
    return asdict(config) | {
        "correlation": "varied",
        "seed": "run index",
        "label_variance": float(y.var(axis=0).mean()),
    }


def describe_training(ctx: StudyContext) -> dict[str, Any]:
    train_rows = len(load_synthetic(generator_config(ctx, 0.5, 0)).train)
    steps = -(-train_rows // ctx.scale.synthetic_batch_size)
    return {
        "optimizer": "Adam",
        "batch_size": ctx.scale.synthetic_batch_size,
        "epochs": ctx.scale.synthetic_epochs,
        "train_rows": train_rows,
        "steps_per_epoch": steps,
        "learning_rate_grid": list(ctx.scale.learning_rates),
        "pilot_runs_per_rate": ctx.scale.pilot_runs,
        "runs": ctx.scale.synthetic_runs,
        "loss": "training MSE, mean over the two tasks and over the epoch's mini-batches",
    }
