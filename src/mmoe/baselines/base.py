"""The interface of a baseline: a model of K tasks that is not a neural network.

A baseline (one gradient-boosted booster per task, `mmoe.baselines.lightgbm`) is fitted by its own
algorithm on the very splits and encodings a neural model trains on (a `MultiTaskData`), and
answers in the neural models' terms: `outputs(rows)` is [N, K] float32, a logit per binary task
and the standardised value per regression task, so that `mmoe.train.metrics.to_predictions` and
`evaluate_predictions` turn it into the same probabilities, values and metrics. Its numbers then
sit beside the neural models' in every table.

It is not a `MultiTaskModel` (no torch module, no epochs, nothing to export): a subclass that sets
`name` registers itself in BASELINES, and declares its options in its constructor's signature
exactly as a model declares its hyperparameters (`mmoe.models.options`), so that they are flags
of `mmoe train`, keys of a config file and parameters of `MultiTaskEstimator` like the models'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mmoe.data.dataset import MultiTaskData, RowSource, Split
from mmoe.errors import MmoeError
from mmoe.spec import InputSpec, Task
from mmoe.train.loss import conditional_labels
from mmoe.train.metrics import SplitMetrics

# Every baseline, by name, in the order the classes were defined (see Baseline.__init_subclass__).
BASELINES: dict[str, type[Baseline]] = {}


class Baseline:
    """A model of K tasks over one input that is not a neural network.

    `fit(data, seed, threads)` trains on data.train, stopping early on data.validation, and returns
    one history entry per task; `outputs(rows)` -> [N, K] float32 raw outputs (a logit per binary
    task, the standardised value per regression task: what a `MultiTaskModel`'s forward returns);
    `save(directory)` / `load_fitted(directory)` write and read the fitted state (files of its
    own, `files()`); `hyperparameters` holds what the constructor took besides input_spec and
    num_tasks, every one set (defaults filled in), so that config.json says what was trained.

    package: the Python package it needs, installed with the extra of that name
    (pip install 'mmoe[lightgbm]'); mmoe itself imports and runs without it. counterparts: {a
    neural training option: the baseline's own option that stands for it}, named in the error
    the neural option gives (learning_rate: boosting_learning_rate).
    """

    name: ClassVar[str]
    package: ClassVar[str]
    counterparts: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in BASELINES and BASELINES[cls.name] is not cls:
                raise TypeError(f"baseline name {cls.name!r} is already taken by {BASELINES[cls.name].__qualname__}")
            BASELINES[cls.name] = cls

    def __init__(self, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> None:
        if num_tasks < 1:
            raise MmoeError(f"model {self.name}: needs at least one task, got {num_tasks}")
        self.input_spec = input_spec
        self.num_tasks = num_tasks
        self.hyperparameters = hyperparameters

    def fit(
        self, data: MultiTaskData, seed: int, threads: int | None, log: Callable[[str], None] | None = None
    ) -> list[dict[str, Any]]:
        """Trains on data.train with early stopping on data.validation; one history entry per task.
        log: called with one line per task as it finishes (None: quiet)."""
        raise NotImplementedError

    def outputs(self, rows: Split | RowSource) -> torch.Tensor:
        """[N, K] float32: per task, the logit (binary) or the standardised value (regression)."""
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    def load_fitted(self, directory: Path) -> None:
        raise NotImplementedError

    def files(self) -> list[str]:
        """The names of the files `save` writes into a run directory."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        """How many learned values the fitted model holds (for trees: their leaves)."""
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        """{package: version} of what fitted it, for the run's config.json."""
        return {}


@dataclass
class BaselineResult:
    """What fitting a baseline produced, the counterpart of `mmoe.train.trainer.TrainResult`.
    history: one entry per task (its booster's rounds, best round, validation curve, seconds);
    metrics: {split: {task: metrics}} of the fitted model, `mmoe.train.metrics` on every split."""

    model: Baseline
    history: list[dict[str, Any]]
    train_seconds: float
    samples_per_second: float
    metrics: SplitMetrics = field(default_factory=dict)

    @property
    def best_rounds(self) -> dict[str, int]:
        """{task: the boosting round its model ends with}."""
        return {entry["task"]: int(entry["best_round"]) for entry in self.history}


def parts(rows: Split | RowSource) -> Iterator[Split]:
    """The rows as `Split`s: the one Split, or a row source's batches."""
    return iter((rows,)) if isinstance(rows, Split) else rows.batches()


def feature_matrix(spec: InputSpec, split: Split) -> np.ndarray:
    """[N, num_numeric + num_categorical] float64: the standardised numeric columns, then each
    categorical column's code within its own column (0: a value unseen in training), the index
    into the shared vocabulary less the column's offset. A tree model reads the codes as
    categories (`categorical_features`); float64 holds every code exactly."""
    numeric = split.numeric.numpy().astype(np.float64)
    offsets = np.asarray(spec.offsets, dtype=np.int64)
    codes = split.categorical.numpy()[:, spec.code_positions] - offsets
    return np.concatenate([numeric, codes.astype(np.float64)], axis=1)


def check_single_valued(model: str, spec: InputSpec) -> None:
    """MmoeError when a column is multi-valued: a list of values per row has no code of its own."""
    if spec.multi_values:
        raise MmoeError(
            f"model {model}: column {spec.multi_values[0].column!r} is multi-valued (a list of values per row); "
            f"a baseline takes single-valued columns only; expected the column left out (--features) or a "
            f"neural model"
        )


def categorical_features(spec: InputSpec) -> list[int]:
    """The positions of the categorical columns in `feature_matrix`'s columns."""
    return list(range(spec.num_numeric, spec.num_numeric + spec.num_categorical))


def task_rows(split: Split, k: int, tasks: list[Task]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) of task k: the positions of the rows that have its label (a missing label
    leaves the row out of this task only; a conditional task's label counts only where its
    condition holds, as for the networks: `mmoe.train.loss.conditional_labels`), and the labels a
    baseline trains on: 0/1 for a binary task, the standardised label (y - label_mean) / label_std
    for a regression task, so that its outputs are the neural models' (a tree's splits do not
    change with the label's scale)."""
    task = tasks[k]
    labels = conditional_labels(tasks, split.labels)[:, k].numpy().astype(np.float64)
    present = np.flatnonzero(~np.isnan(labels))
    labels = labels[present]
    if task.kind == "regression":
        labels = (labels - task.label_mean) / task.label_std
    return present, labels
