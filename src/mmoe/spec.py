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
        values unseen in training.
    embedding_dims: per categorical column, how it enters the model: 0 = one-hot into the first
        layer (the paper's input x = [numeric; one-hot categories]), e > 0 = a learned embedding of
        dimension e, concatenated with the numeric columns (the recommender input for columns with
        many values). () = every column one-hot (specs written before embeddings existed).

    The two kinds of columns index two vocabularies: column j's indices live in
    [offsets[j], offsets[j] + cardinalities[j]) of the one-hot vocabulary (`vocabulary_size`
    slots) when it is one-hot, of the embedding vocabulary (`embedding_vocabulary_size` rows)
    when it is embedded.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    cardinalities: tuple[int, ...] = ()
    embedding_dims: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.categorical) != len(self.cardinalities):
            raise ValueError("InputSpec: one cardinality per categorical column")
        if self.embedding_dims and len(self.embedding_dims) != len(self.categorical):
            raise ValueError("InputSpec: one embedding dimension (0: one-hot) per categorical column, or none")
        if any(dim < 0 for dim in self.embedding_dims):
            raise ValueError(
                f"InputSpec: embedding dimensions must be 0 (one-hot) or positive, got {self.embedding_dims}"
            )

    @property
    def num_numeric(self) -> int:
        return len(self.numeric)

    @property
    def num_categorical(self) -> int:
        return len(self.categorical)

    @property
    def column_embedding_dims(self) -> tuple[int, ...]:
        """Per categorical column: 0 (one-hot) or its embedding dimension."""
        return self.embedding_dims or (0,) * self.num_categorical

    @property
    def one_hot_columns(self) -> list[int]:
        """Positions (in `categorical`) of the one-hot columns."""
        return [j for j, dim in enumerate(self.column_embedding_dims) if dim == 0]

    @property
    def embedded_columns(self) -> list[int]:
        """Positions (in `categorical`) of the embedded columns."""
        return [j for j, dim in enumerate(self.column_embedding_dims) if dim > 0]

    @property
    def vocabulary_size(self) -> int:
        """Slots of the one-hot vocabulary (the one-hot columns' cardinalities)."""
        return sum(self.cardinalities[j] for j in self.one_hot_columns)

    @property
    def embedding_vocabulary_size(self) -> int:
        """Rows of the embedding vocabulary (the embedded columns' cardinalities)."""
        return sum(self.cardinalities[j] for j in self.embedded_columns)

    @property
    def embedding_width(self) -> int:
        """Sum of the embedded columns' dimensions: their part of the dense input."""
        return sum(self.column_embedding_dims)

    @property
    def offsets(self) -> list[int]:
        """Per categorical column, where its indices start in its kind's vocabulary."""
        starts, totals = [], {False: 0, True: 0}
        for cardinality, dim in zip(self.cardinalities, self.column_embedding_dims):
            starts.append(totals[dim > 0])
            totals[dim > 0] += cardinality
        return starts

    @property
    def one_hot_dim(self) -> int:
        """Width d of the dense input the paper's formulas use: numeric columns plus one-hot slots
        (plus the embeddings' dimensions where columns are embedded)."""
        return self.num_numeric + self.vocabulary_size + self.embedding_width

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "cardinalities": list(self.cardinalities),
        }
        if any(self.embedding_dims):  # absent when every column is one-hot, as written before embeddings
            data["embedding_dims"] = list(self.embedding_dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        dims = tuple(int(d) for d in data.get("embedding_dims") or ())
        return cls(
            tuple(data["numeric"]),
            tuple(data["categorical"]),
            tuple(int(c) for c in data["cardinalities"]),
            dims if any(dims) else (),
        )


__all__ = ["TASK_KINDS", "InputSpec", "Task"]
