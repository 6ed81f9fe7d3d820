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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import torch

from mmoe.spec import TASK_KINDS, InputSpec, PeriodicEmbedding, Task

# Rows gathered at a time when an epoch's shuffled batches are cut (see Split.shuffled_batches).
GATHER_ROWS = 262_144

if TYPE_CHECKING:
    from mmoe.data.encoders import TableEncoder

__all__ = ["TASK_KINDS", "InputSpec", "MultiTaskData", "RowSource", "Split", "Task", "with_numeric_embedding"]


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
        # One gather per chunk of batches, then every batch is a contiguous slice (a view, no
        # copy): a gather per batch costs three small ops per step (≈ 10% of a census step), one
        # per epoch a second copy of the whole table (775 MB at 11.4M click-log rows).
        order = torch.randperm(len(self), generator=generator).to(self.labels.device)
        chunk = batch_size * max(1, GATHER_ROWS // batch_size)
        for first in range(0, len(self), chunk):
            shuffled = self.subset(order[first : first + chunk])
            for start in range(0, len(shuffled), batch_size):
                yield Split(
                    shuffled.numeric[start : start + batch_size],
                    shuffled.categorical[start : start + batch_size],
                    shuffled.labels[start : start + batch_size],
                )


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

    def metric_splits(self) -> Mapping[str, Split | RowSource]:
        """{split: rows} that training ends by measuring the model on: a `Split` in memory, or a
        `RowSource` read batch by batch (a streamed table's training rows, a sample of them)."""
        return self.splits()


def with_numeric_embedding(
    data: MultiTaskData, option: str | Mapping[str, Any] | PeriodicEmbedding | None
) -> MultiTaskData:
    """`data` with its numeric columns entering the model as `option` says (`PeriodicEmbedding.of`:
    "auto", "periodic", "none" or None). The rows are the same; only the input spec changes."""
    embedding = PeriodicEmbedding.of(option, data.input_spec)
    if embedding == data.input_spec.numeric_embedding:
        return data
    return replace(data, input_spec=replace(data.input_spec, numeric_embedding=embedding))


class RowSource(Protocol):
    """Rows that are read batch by batch rather than held as one `Split` (a streamed table)."""

    def batches(self) -> Iterator[Split]: ...
