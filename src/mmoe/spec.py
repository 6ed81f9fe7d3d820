"""The neutral description of a multi-task problem: its tasks and its input columns.

Every layer reads these (the data sources produce them, the models are sized by them, the
trainer and the estimator carry them), so they live below all of them and import nothing of mmoe
but its errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mmoe.errors import MmoeError

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
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "cardinalities": list(self.cardinalities),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        return cls(tuple(data["numeric"]), tuple(data["categorical"]), tuple(int(c) for c in data["cardinalities"]))


__all__ = ["TASK_KINDS", "InputSpec", "Task"]
