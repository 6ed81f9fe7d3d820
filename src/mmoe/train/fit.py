"""Training from a model's name: build it seeded, then train it alone (`fit`) or as a population
of seeds trained at once (`fit_replicas`), and the spread of the replicas' metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmoe.data.dataset import MultiTaskData
from mmoe.models import build_model
from mmoe.models.ensemble import EnsembleModel
from mmoe.train.callbacks import Callback
from mmoe.train.metrics import main_score
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig, TrainResult, evaluate_data, train


def fit(
    data: MultiTaskData,
    model: str = "mmoe",
    config: TrainConfig | None = None,
    checkpoint_path: str | Path | None = None,
    on_epoch: Any = None,
    resume_from: str | Path | None = None,
    data_identity: Any = None,
    resume_state: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] | Callback | None = None,
    **hyperparameters: Any,
) -> TrainResult:
    """Builds `model` with `hyperparameters` (seeded by config.seed) and trains it on `data`.

    callbacks / on_epoch: hear of each epoch (see `mmoe.train.trainer.train`);
    resume_from: a checkpoint of the same run to continue from (see `mmoe.train.trainer.train`);
    data_identity: a JSON-able description of the data, checked against the checkpoint's;
    resume_state: `resume_from` already read by `load_checkpoint`, so that it is not read again."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    network = build_model(model, data.input_spec, len(data.tasks), **hyperparameters)
    return train(
        network,
        data,
        config,
        checkpoint_path=checkpoint_path,
        on_epoch=on_epoch,
        resume_from=resume_from,
        data_identity=data_identity,
        resume_state=resume_state,
        callbacks=callbacks,
    )


def fit_replicas(
    data: MultiTaskData,
    model: str,
    config: TrainConfig,
    replicas: int,
    on_epoch: Any = None,
    callbacks: Sequence[Callback] | Callback | None = None,
    ensemble: bool = False,
    **hyperparameters: Any,
) -> tuple[TrainResult, list[dict[str, Any]]]:
    """Trains `replicas` copies at once (seeds config.seed, config.seed + 1, ...) with the population
    trainer. Returns the replica with the best main-task validation score as an ordinary
    TrainResult, and a summary of every replica (seed, best epoch, metrics).

    ensemble: return instead all replicas as one `EnsembleModel` (the mean of their predictions),
    with its own metrics and best_score (its main-task validation metric); its history, best
    epoch and stopped_early are those of the best replica's, and every replica is "kept".
    callbacks: hear of each replica's epochs (replica = its index: seed config.seed + replica);
    on_epoch(epoch, still_training): a function called after each epoch of the population."""
    seeds = [config.seed + r for r in range(replicas)]
    population = train_population(model, data, config, seeds, on_epoch=on_epoch, callbacks=callbacks, **hyperparameters)
    best = max(range(replicas), key=lambda r: population.replicas[r].best_score)
    replica = population.replicas[best]
    network = population.model(best, data, model, **hyperparameters)
    metrics, best_score = replica.metrics, replica.best_score
    if ensemble:
        members = [population.model(r, data, model, **hyperparameters) for r in range(replicas)]
        network = EnsembleModel(members, [task.kind == "binary" for task in data.tasks])
        metrics = evaluate_data(network, data, config.eval_batch_size)
        best_score = main_score(data.tasks[0], metrics["validation"][data.tasks[0].name])
    epochs_run = sum(len(r.history) for r in population.replicas)
    result = TrainResult(
        network,
        replica.history,
        replica.best_epoch,
        best_score,
        population.train_seconds,
        epochs_run * len(data.train) / max(population.train_seconds, 1e-9),
        metrics,
        replica.stopped_early,
    )
    summary = [
        {
            "seed": r.seed,
            "kept": ensemble or i == best,
            "best_epoch": r.best_epoch,
            "stopped_early": r.stopped_early,
            "metrics": r.metrics,
        }
        for i, r in enumerate(population.replicas)
    ]
    return result, summary


def summarize_replicas(summary: list[dict[str, Any]], split: str = "test") -> dict[str, dict[str, dict[str, float]]]:
    """{task: {metric: {"mean", "std", "min", "max"}}} over the replicas' metrics on one split."""
    tasks = summary[0]["metrics"][split]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for task, metrics in tasks.items():
        table[task] = {}
        for metric in metrics:
            values = np.array(
                [r["metrics"][split][task][metric] for r in summary if r["metrics"][split][task][metric] is not None],
                dtype=float,
            )
            if metric != "rows" and values.size:
                table[task][metric] = {
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                    "min": float(values.min()),
                    "max": float(values.max()),
                }
    return table
