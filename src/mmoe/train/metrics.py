"""Per-task metrics: AUC and log loss for binary tasks, MSE and R² for regression tasks.

Rows whose label is missing (NaN) for a task are left out of that task's metrics only.

Conditional tasks (`mmoe.spec.Task.given`, e.g. purchase given click) are measured twice: the
task itself, P(purchase | click, x), on the rows where its condition holds (click = 1) and its
label is known; and its joint event, P(click ∧ purchase | x) under the name
`mmoe.spec.joint_tasks` gives it ("click&purchase"), on every row where the joint label is
known (click ∧ purchase: 0 where click = 0). Predictions carry the joint probabilities after
the tasks' columns (`to_predictions`), and metrics the joint events after the tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from sklearn.metrics import r2_score, roc_auc_score

from mmoe.spec import Task, joint_tasks
from mmoe.train.loss import conditional_labels


class TaskMetrics(TypedDict, total=False):
    """One task's metrics on one split. Binary tasks: auc (ROC AUC; None when the labelled rows
    hold one class) and logloss (mean log loss); regression tasks: mse and r2 (in the label's
    units; r2 None below two labelled rows). Every task: rows, the labelled rows counted."""

    auc: float | None
    logloss: float | None
    mse: float | None
    r2: float | None
    rows: int


Metrics = dict[str, TaskMetrics]  # {task name: its metrics}, as metrics.json holds per split
SplitMetrics = dict[str, Metrics]  # {"train" | "validation" | "test": {task name: metrics}}


def to_predictions(tasks: list[Task], outputs: torch.Tensor) -> torch.Tensor:
    """Model outputs [N, K] -> predictions in the labels' terms [N, K + J]: probabilities for
    binary tasks, values in the label's own units for regression tasks, then per conditional
    task (J of them, `mmoe.spec.joint_tasks`) its joint probability, the product of its
    probability and its condition's joint probability (P(click) · P(purchase | click))."""
    predictions = outputs.clone()
    for k, task in enumerate(tasks):
        if task.kind == "binary":
            predictions[:, k] = torch.sigmoid(outputs[:, k])
        else:
            predictions[:, k] = outputs[:, k] * task.label_std + task.label_mean
    return with_joint_predictions(tasks, predictions)


def with_joint_predictions(tasks: list[Task], predictions: torch.Tensor) -> torch.Tensor:
    """The tasks' predictions [..., K] with the conditional tasks' joint probabilities appended
    [..., K + J]; `predictions` itself when no task is conditional. A Python loop over the J
    conditional tasks, a fixed structure: an exported graph traces it as J products."""
    joints = joint_tasks(tasks)
    if not joints:
        return predictions
    joint = dict(enumerate(predictions.unbind(-1)))  # a task's joint probability: its own at a root
    for k, given, _ in joints:
        joint[k] = joint[given] * predictions[..., k]
    return torch.cat([predictions, torch.stack([joint[k] for k, _, _ in joints], -1)], -1)


def task_metrics(task: Task, predictions: np.ndarray, labels: np.ndarray) -> TaskMetrics:
    """Metrics of one task; AUC is None when the present labels hold a single class."""
    present = ~np.isnan(labels)
    y, p = labels[present].astype(np.float64), predictions[present].astype(np.float64)
    if task.kind == "binary":
        p = np.clip(p, 1e-7, 1 - 1e-7)
        logloss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else None
        auc = float(roc_auc_score(y, p)) if np.unique(y).size == 2 else None
        return TaskMetrics(auc=auc, logloss=logloss, rows=int(y.size))
    mse = float(np.mean((y - p) ** 2)) if y.size else None
    r2 = float(r2_score(y, p)) if y.size > 1 else None
    return TaskMetrics(mse=mse, r2=r2, rows=int(y.size))


def evaluate_predictions(tasks: list[Task], predictions: torch.Tensor, labels: torch.Tensor) -> Metrics:
    """{task name: metrics} for predictions [N, K + J] (`to_predictions`; [N, K] is completed with
    the joint probabilities) and labels [N, K]: a conditional task's on the rows where its
    condition holds, its joint event's after the tasks (see the module docstring)."""
    joints = joint_tasks(tasks)
    if predictions.shape[-1] == len(tasks) and joints:
        predictions = with_joint_predictions(tasks, predictions)
    predictions_np = predictions.double().numpy()
    labels_np = conditional_labels(tasks, labels).double().numpy()
    metrics = {task.name: task_metrics(task, predictions_np[:, k], labels_np[:, k]) for k, task in enumerate(tasks)}
    if joints:
        joint_labels = conditional_labels(tasks, labels, entire_space=True).double().numpy()
        for j, (k, _, name) in enumerate(joints):
            metrics[name] = task_metrics(tasks[k], predictions_np[:, len(tasks) + j], joint_labels[:, k])
    return metrics


def evaluate_stacked(
    task_lists: Sequence[Sequence[Task]], outputs: torch.Tensor, labels: torch.Tensor
) -> list[Metrics]:
    """Per replica, {task name: metrics} for many replicas at once; the same numbers (to float64
    rounding) as `evaluate_predictions(tasks, to_predictions(tasks, outputs[r]), labels[r])` for
    each replica r, with the arithmetic vectorised across replicas.

    task_lists: per replica, its task list; the same names and kinds in every list, but each may
        carry its own label_mean / label_std.
    outputs: raw model outputs [N, rows, K]; labels: [N, rows, K], NaN = missing.

    One difference: where a replica's present predictions hold NaN (or, for regression, ±inf),
    the reference raises (sklearn refuses them) but this returns NaN / ±inf metrics for that replica.
    """
    tasks = list(task_lists[0])
    if len(task_lists) != outputs.shape[0] or outputs.shape != labels.shape or outputs.shape[-1] != len(tasks):
        raise ValueError(
            f"evaluate_stacked: {len(task_lists)} task lists, outputs {tuple(outputs.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    signature = [(task.name, task.kind) for task in tasks]
    if any([(task.name, task.kind) for task in replica_tasks] != signature for replica_tasks in task_lists):
        raise ValueError("evaluate_stacked: every replica needs the same task names and kinds")
    labels = conditional_labels(tasks, labels)
    joints = joint_tasks(tasks)
    probabilities: dict[int, torch.Tensor] = {}  # per binary task, its float32 probabilities [N, rows]
    per_task = []
    for k, task in enumerate(tasks):
        y = labels[..., k].double()  # [N, rows]
        present = ~torch.isnan(y)
        rows = present.sum(1)  # [N]
        count = rows.clamp(min=1).double()
        y = torch.where(present, y, 0.0)
        if task.kind == "binary":
            # torch's CPU sigmoid gives ulp-different float32 results on its SIMD and scalar paths, and
            # which one an element takes depends on the layout of the tensor it is called on; calling it
            # on the very views to_predictions sees keeps the predictions (and so ties) bit-identical.
            probabilities[k] = torch.stack([torch.sigmoid(replica[:, k]) for replica in outputs])
            metrics = _stacked_binary(probabilities[k], y, present, rows, count)
        else:
            # The same float ops in the outputs' dtype as to_predictions (multiply, then add), with
            # each replica's own label scale.
            std = outputs.new_tensor([[replica_tasks[k].label_std] for replica_tasks in task_lists])
            mean = outputs.new_tensor([[replica_tasks[k].label_mean] for replica_tasks in task_lists])
            p = (outputs[..., k] * std + mean).double()
            ss_res = torch.where(present, (y - p) ** 2, 0.0).sum(1)
            y_bar = (y.sum(1) / count).unsqueeze(1)
            ss_tot = torch.where(present, (y - y_bar) ** 2, 0.0).sum(1)
            # As sklearn's r2_score (force_finite=True): constant labels give 1.0 for a perfect fit, else 0.0.
            r2 = torch.where(ss_tot != 0, 1 - ss_res / ss_tot, (ss_res == 0).double())
            metrics = {"mse": _or_none(ss_res / count, rows > 0), "r2": _or_none(r2, rows > 1)}
        per_task.append((task.name, metrics, rows.tolist()))
    if joints:  # the joint events, with to_predictions' float32 products along each chain
        joint_labels = conditional_labels(tasks, labels, entire_space=True)
        joint = dict(probabilities)
        for k, given, name in joints:
            joint[k] = joint[given] * probabilities[k]
            y = joint_labels[..., k].double()
            present = ~torch.isnan(y)
            rows = present.sum(1)
            metrics = _stacked_binary(joint[k], torch.where(present, y, 0.0), present, rows, rows.clamp(min=1).double())
            per_task.append((name, metrics, rows.tolist()))
    # The metric names are the binary or the regression ones (above): keys TaskMetrics has.
    return [
        {
            name: TaskMetrics(**{metric: values[r] for metric, values in metrics.items()}, rows=rows[r])  # type: ignore[typeddict-item]
            for name, metrics, rows in per_task
        }
        for r in range(len(task_lists))
    ]


def _stacked_binary(
    probabilities: torch.Tensor, y: torch.Tensor, present: torch.Tensor, rows: torch.Tensor, count: torch.Tensor
) -> dict[str, list[float | None]]:
    """AUC and log loss per replica of float32 probabilities [N, rows] against labels y (0 where
    not `present`), as `task_metrics` computes them."""
    p = probabilities.double().clamp(1e-7, 1 - 1e-7)  # float32 sigmoid, then clip in float64, as task_metrics
    losses = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    logloss = torch.where(present, losses, 0.0).sum(1) / count
    auc, two_classes = _stacked_auc(p, y == 1, present)
    return {"auc": _or_none(auc, two_classes), "logloss": _or_none(logloss, rows > 0)}


def _or_none(values: torch.Tensor, defined: torch.Tensor) -> list[float | None]:
    return [value if ok else None for value, ok in zip(values.tolist(), defined.tolist())]


def _stacked_auc(
    scores: torch.Tensor, positive: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """ROC AUC per row of scores [N, rows] as the Mann–Whitney U with average ranks for ties (equal to
    sklearn's trapezoidal AUC), counting only `present` entries; and [N] whether both classes are there."""
    # Missing entries become +inf: they sort after every present score (all in [1e-7, 1 - 1e-7]),
    # so the present ones keep their ranks among the present.
    ordered, order = torch.where(present, scores, math.inf).sort(1)
    positive = (positive & present).gather(1, order)  # in sorted order
    # A run of equal scores at sorted positions first..last shares the average 1-based rank
    # (first + last) / 2 + 1. Runs are found from neighbour comparisons and spread with cummax /
    # cummin (3x faster here than two batched searchsorted calls).
    position = torch.arange(ordered.shape[1]).expand_as(ordered)
    starts = torch.ones_like(present)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = starts.roll(-1, 1)  # a run ends where the next one starts
    first = torch.where(starts, position, 0).cummax(1).values
    last = torch.where(ends, position, ordered.shape[1] - 1).flip(1).cummin(1).values.flip(1)
    ranks = (first + last + 2).double() / 2
    pos = positive.sum(1).double()
    neg = present.sum(1).double() - pos
    u = torch.where(positive, ranks, 0.0).sum(1) - pos * (pos + 1) / 2
    # A NaN score would get a meaningless rank: say NaN (the reference raises there).
    auc = torch.where((torch.isnan(scores) & present).any(1), math.nan, u / (pos * neg))
    return auc, (pos > 0) & (neg > 0)


def main_score(task: Task, metrics: Mapping[str, Any]) -> float:
    """The number early stopping and tuning maximise: AUC for binary tasks, −MSE for regression."""
    value = metrics["auc"] if task.kind == "binary" else metrics["mse"]
    if value is None or not math.isfinite(value):
        return -math.inf
    return float(value) if task.kind == "binary" else -float(value)


def main_metric_name(task: Task) -> str:
    return "auc" if task.kind == "binary" else "mse"
