"""The bookkeeping of a training loop, written once for the single-model and the population loop:
one epoch's history entry, early stopping with the best epoch's weights kept, and the warning
that a task's outputs have died.

A population of N replicas keeps N `EarlyStopping`s, one per replica, whose best weights are the
replica's slice of one stacked copy ([N, ...] per tensor): the same rule, the same history entry.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmoe.errors import DeadTaskWarning
from mmoe.spec import Task
from mmoe.train.metrics import Metrics, main_metric_name


@dataclass(frozen=True)
class HistoryEntry:
    """One epoch of one model.

    train_loss: the mean over the epoch's batches of the loss that was backpropagated (the weighted
    task losses plus the model's penalty); train_task_loss: {task: mean over the batches of its
    loss}; validation: {task: {metric: value}} after the epoch; seconds: the epoch's training time
    (in a population, the whole stack's epoch); main_metric: what early stopping watches, e.g.
    "validation income auc"; improved: whether this epoch beat every earlier one on it."""

    epoch: int
    train_loss: float
    train_task_loss: dict[str, float]
    validation: Metrics
    seconds: float
    main_metric: str
    improved: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: history.json and the checkpoint hold these dicts (keys in this order)."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_task_loss": dict(self.train_task_loss),
            "validation": self.validation,
            "seconds": self.seconds,
            "main_metric": self.main_metric,
            "improved": self.improved,
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            int(entry["epoch"]),
            float(entry["train_loss"]),
            dict(entry["train_task_loss"]),
            entry["validation"],
            float(entry["seconds"]),
            str(entry["main_metric"]),
            bool(entry["improved"]),
        )

    @classmethod
    def of_epoch(
        cls,
        epoch: int,
        tasks: list[Task],
        loss_sum: float,
        task_loss_sum: torch.Tensor,
        batches: int,
        validation: Metrics,
        seconds: float,
        improved: bool,
    ) -> HistoryEntry:
        """The entry from an epoch's sums over `batches` batches (task_loss_sum [K])."""
        return cls(
            epoch,
            loss_sum / batches,
            {t.name: float(v) / batches for t, v in zip(tasks, task_loss_sum)},
            validation,
            seconds,
            main_metric_label(tasks[0]),
            bool(improved),
        )


def main_metric_label(main_task: Task) -> str:
    """E.g. "validation income auc": the metric early stopping watches."""
    return f"validation {main_task.name} {main_metric_name(main_task)}"


class EarlyStopping:
    """The best main-task validation score so far, its epoch and weights, and when to stop.

    After each epoch, `update(epoch, score, weights)`: a score above the best so far (higher is
    better: `mmoe.train.metrics.main_score`) makes it the best, and its weights are copied into
    `best_weights`; otherwise one more epoch without gain. Training stops early once `patience`
    epochs have passed without gain (patience 0: never), unless the epoch was the last anyway.

    best_weights: {name: tensor}, written in place. `replica`: the index of this model's slice when
    the tensors are a population's stacked weights [N, ...] (None: the tensors are the model's).
    """

    def __init__(
        self, patience: int, epochs: int, best_weights: dict[str, torch.Tensor], replica: int | None = None
    ) -> None:
        self.patience, self.epochs, self.replica = patience, epochs, replica
        self.best_weights = best_weights
        self.best_score, self.best_epoch, self.epochs_without_gain, self.stopped_early = -math.inf, 0, 0, False

    def update(self, epoch: int, score: float, weights: Mapping[str, torch.Tensor]) -> bool:
        """Records the epoch's score; returns whether it improved on the best."""
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.epochs_without_gain = score, epoch, 0
            copy_weights(self.best_weights, weights, self.replica)
        else:
            self.epochs_without_gain += 1
        self.stopped_early = bool(self.patience and self.epochs_without_gain >= self.patience and epoch < self.epochs)
        return improved

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's fields (their names are those of CHECKPOINT_FORMAT 1)."""
        return {
            "best_state": self.best_weights,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epochs_without_gain": self.epochs_without_gain,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_weights = state["best_state"]
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.epochs_without_gain, self.stopped_early = state["epochs_without_gain"], state["stopped_early"]


@torch.no_grad()
def copy_weights(
    target: dict[str, torch.Tensor], source: Mapping[str, torch.Tensor], replica: int | None = None
) -> None:
    """target[name] = source[name] in place, for every tensor (only slice `replica` of stacked ones)."""
    for name, value in source.items():
        if replica is None:
            target[name].copy_(value)
        else:
            target[name][replica] = value[replica]


def warn_dead_tasks(
    tasks: Sequence[Task],
    outputs: torch.Tensor,
    epoch: int,
    learning_rate: float,
    warned: set[str],
    replica: int | None = None,
) -> None:
    """A `DeadTaskWarning` for each task whose outputs (validation rows [N, K]) are one value on
    every row, once per task (`warned` holds the tasks already named). Seen on census: one run in
    20 of a tuned PLE at learning rate .01 ended with its main task at AUC .5, every unit of that
    task's tower silent on every row since its first epoch (docs/report-standard-census-beyond)."""
    if outputs.shape[0] < 2:
        return
    constant = (outputs.amax(0) == outputs.amin(0)).tolist()
    for task, dead in zip(tasks, constant):
        if dead and task.name not in warned:
            warned.add(task.name)
            who = f"replica {replica}: " if replica is not None else ""
            warnings.warn(
                f"{who}task {task.name!r} gives the same output on every validation row after epoch {epoch}: "
                f"the units feeding it have stopped firing and it no longer learns (AUC .5); "
                f"a lower learning rate than {learning_rate:g}, or another seed, usually avoids it",
                DeadTaskWarning,
                stacklevel=2,
            )
