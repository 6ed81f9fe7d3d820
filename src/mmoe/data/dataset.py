"""The containers every data source produces and every model and trainer consumes.

A data source (census, synthetic, the user's table) ends as a `MultiTaskData`: three `Split`s of
tensors, the `Task` list, the `InputSpec` describing the columns, and the fitted `TableEncoder`
that turns new rows into the same tensors at predict time.

Inputs are kept in two parts rather than as one dense vector: standardised numeric columns, and
categorical columns as indices into one shared vocabulary. The models' first layer treats the
indices as the one-hot vector the paper describes (see `mmoe.models.layers.SparseLinear`), which
is the same function at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from mmoe.errors import MmoeError

if TYPE_CHECKING:
    from mmoe.data.encoders import TableEncoder

TASK_KINDS = ("binary", "regression")


@dataclass(frozen=True)
class Task:
    """One prediction target.

    kind: "binary" (labels 0/1, trained with BCE on logits) or "regression" (trained with MSE on
    the label standardised by `label_mean` / `label_std`; predictions are returned in the
    label's own units).
    """

    name: str
    kind: str
    label_mean: float = 0.0
    label_std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise MmoeError(f"task {self.name!r}: kind {self.kind!r} is not one of {', '.join(TASK_KINDS)}")
        if not (self.label_std > 0 and math.isfinite(self.label_std)):
            raise MmoeError(f"task {self.name!r}: label_std must be a positive number, got {self.label_std}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "label_mean": self.label_mean, "label_std": self.label_std}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return cls(**data)


@dataclass(frozen=True)
class InputSpec:
    """The model's input columns.

    numeric: names of the standardised numeric columns, in tensor order.
    categorical: names of the categorical columns, in tensor order.
    cardinalities: per categorical column, its number of slots including the reserved slot 0 for
        values unseen in training. Column j's indices live in
        [offsets[j], offsets[j] + cardinalities[j]) of one shared vocabulary.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    cardinalities: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.categorical) != len(self.cardinalities):
            raise ValueError("InputSpec: one cardinality per categorical column")

    @property
    def num_numeric(self) -> int:
        return len(self.numeric)

    @property
    def num_categorical(self) -> int:
        return len(self.categorical)

    @property
    def vocabulary_size(self) -> int:
        return sum(self.cardinalities)

    @property
    def offsets(self) -> list[int]:
        starts, total = [], 0
        for cardinality in self.cardinalities:
            starts.append(total)
            total += cardinality
        return starts

    @property
    def one_hot_dim(self) -> int:
        """Width d of the dense input the paper's formulas use: numeric columns plus one-hot slots."""
        return self.num_numeric + self.vocabulary_size

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical),
                "cardinalities": list(self.cardinalities)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(tuple(data["numeric"]), tuple(data["categorical"]), tuple(int(c) for c in data["cardinalities"]))


@dataclass
class Split:
    """One split of rows as tensors.

    numeric: [N, num_numeric] float32, standardised.
    categorical: [N, num_categorical] int64, indices into the shared vocabulary (offsets added).
    labels: [N, num_tasks] float32 in the labels' own units; NaN where a task's label is missing
        (that row then counts in the other tasks' losses and metrics only).
    """

    numeric: torch.Tensor
    categorical: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        rows = {self.numeric.shape[0], self.categorical.shape[0], self.labels.shape[0]}
        if len(rows) != 1:
            raise ValueError(f"Split: numeric, categorical and labels disagree on the row count: {rows}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.numeric[index], self.categorical[index], self.labels[index])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.numeric.to(device), self.categorical.to(device), self.labels.to(device))

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
        """One epoch: the rows in an order drawn from `generator`, as mini-batches of `batch_size`
        rows (the last may be smaller). The trainer reads any training source through this method
        (a streaming table has its own)."""
        # One gather per epoch, then every batch is a contiguous slice (a view, no copy).
        order = torch.randperm(len(self), generator=generator).to(self.labels.device)
        shuffled = self.subset(order)
        for start in range(0, len(self), batch_size):
            yield Split(shuffled.numeric[start:start + batch_size], shuffled.categorical[start:start + batch_size],
                        shuffled.labels[start:start + batch_size])


@dataclass
class MultiTaskData:
    """A data set ready for training: tasks (the first is the main task), input spec, three splits."""

    tasks: list[Task]
    input_spec: InputSpec
    train: Split
    validation: Split
    test: Split
    encoder: TableEncoder | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def evaluate(self, model: Any, batch_size: int = 65536) -> dict[str, dict[str, dict[str, Any]]]:
        """{split: {task: metrics}} of `model` on every split: the metrics training ends with. A
        data set whose training rows are not held in memory measures them its own way."""
        from mmoe.train.trainer import evaluate

        return {name: evaluate(model, self.tasks, split, batch_size) for name, split in self.splits().items()}
