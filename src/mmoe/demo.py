"""`mmoe demo`: MMoE beside Shared-Bottom on two synthetic tasks, at a low and a high task
correlation, in about a minute and without a download.

The data is the paper's generator (Section 3.2) with smooth sines (scale c = 1, α ~ N(0, 1)),
the form the reproduce studies train on (`mmoe.experiments.synthetic_runs.TRAINING_GENERATOR`):
the Figure-2 defaults (c = 0.5, α ~ 11·N(0, 1)) give labels these networks cannot fit (R² ≈ 0).
Each model is a `MultiTaskEstimator` with its default sizes, fitted on the same rows with the
same seed; the table holds each one's test R² per task and the mean test MSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from mmoe.data.synthetic import SyntheticConfig, load_synthetic

LEARNABLE_GENERATOR = SyntheticConfig(scale=1.0, alpha_scale=1.0, sines=10, noise=0.1)
CORRELATIONS = (0.5, 0.9)
MODELS = ("shared-bottom", "mmoe")


@dataclass(frozen=True)
class DemoOptions:
    """rows: generated rows per correlation (80% train, 10% validation for early stopping, 10%
    test); epochs, batch_size, learning_rate: training of every model (0.01: the rate the
    reproduce studies' pilots pick for every model on this data); seed: data and initialisation."""

    correlations: tuple[float, ...] = CORRELATIONS
    models: tuple[str, ...] = MODELS
    rows: int = 20_000
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.01
    patience: int = 5
    seed: int = 0
    threads: int | None = None


def run_demo(options: DemoOptions = DemoOptions()) -> list[dict[str, Any]]:
    """One row per (correlation, model): {"correlation", "model", "parameters", "epochs",
    "test": {"y1": {"mse", "r2", "rows"}, "y2": {...}}, "mean_mse"}."""
    from mmoe.estimator import MultiTaskEstimator  # here: `mmoe --help` reads DemoOptions without loading it

    rows = []
    for correlation in options.correlations:
        data = load_synthetic(
            replace(LEARNABLE_GENERATOR, correlation=correlation, rows=options.rows, seed=options.seed)
        )
        for model in options.models:
            estimator = MultiTaskEstimator(
                model=model,
                epochs=options.epochs,
                batch_size=options.batch_size,
                learning_rate=options.learning_rate,
                patience=options.patience,
                seed=options.seed,
                threads=options.threads,
            ).fit(data)
            test = estimator.metrics_["test"]
            rows.append(
                {
                    "correlation": correlation,
                    "model": model,
                    "parameters": estimator.model_.num_parameters(),
                    "epochs": len(estimator.history_),
                    "test": test,
                    "mean_mse": sum(m.get("mse") or math.nan for m in test.values()) / len(test),
                }
            )
    return rows


def demo_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a plain text table, models side by side per correlation."""
    tasks = list(rows[0]["test"])
    header = ["task correlation", "model", *[f"test R² {task}" for task in tasks], "test MSE (mean)", "parameters"]
    lines = [
        [
            f"p = {row['correlation']}",
            row["model"],
            *[f"{row['test'][task]['r2']:.3f}" for task in tasks],
            f"{row['mean_mse']:.4f}",
            f"{row['parameters']:,}",
        ]
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *lines]
    )


__all__ = ["CORRELATIONS", "LEARNABLE_GENERATOR", "MODELS", "DemoOptions", "demo_table", "run_demo"]
