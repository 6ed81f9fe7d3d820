"""Per-task metrics: AUC and log loss for binary tasks, MSE and R² for regression tasks.

Rows whose label is missing (NaN) for a task are left out of that task's metrics only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import r2_score, roc_auc_score

from mmoe.data.dataset import Task


def to_predictions(tasks: list[Task], outputs: torch.Tensor) -> torch.Tensor:
    """Model outputs [N, K] -> predictions in the labels' terms: probabilities for binary tasks,
    values in the label's own units for regression tasks."""
    predictions = outputs.clone()
    for k, task in enumerate(tasks):
        if task.kind == "binary":
            predictions[:, k] = torch.sigmoid(outputs[:, k])
        else:
            predictions[:, k] = outputs[:, k] * task.label_std + task.label_mean
    return predictions


def task_metrics(task: Task, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float | int | None]:
    """Metrics of one task; AUC is None when the present labels hold a single class."""
    present = ~np.isnan(labels)
    y, p = labels[present].astype(np.float64), predictions[present].astype(np.float64)
    if task.kind == "binary":
        p = np.clip(p, 1e-7, 1 - 1e-7)
        logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else None
        auc = float(roc_auc_score(y, p)) if np.unique(y).size == 2 else None
        return {"auc": auc, "logloss": logloss, "rows": int(y.size)}
    mse = float(np.mean((y - p) ** 2)) if y.size else None
    r2 = float(r2_score(y, p)) if y.size > 1 else None
    return {"mse": mse, "r2": r2, "rows": int(y.size)}


def evaluate_predictions(tasks: list[Task], predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, dict]:
    """{task name: metrics} for predictions and labels of shape [N, K]."""
    predictions_np, labels_np = predictions.double().numpy(), labels.double().numpy()
    return {task.name: task_metrics(task, predictions_np[:, k], labels_np[:, k]) for k, task in enumerate(tasks)}


def main_score(task: Task, metrics: dict[str, float | int | None]) -> float:
    """The number early stopping and tuning maximise: AUC for binary tasks, −MSE for regression."""
    value = metrics["auc"] if task.kind == "binary" else metrics["mse"]
    if value is None or not math.isfinite(value):
        return -math.inf
    return float(value) if task.kind == "binary" else -float(value)


def main_metric_name(task: Task) -> str:
    return "auc" if task.kind == "binary" else "mse"
