"""The neutral description of a multi-task problem: its tasks and its input columns.

Every layer reads these (the data sources produce them, the models are sized by them, the
trainer and the estimator carry them), so they live below all of them and import nothing of mmoe
but its errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmoe.errors import MmoeError

TASK_KINDS = ("binary", "regression")
POOLINGS = ("mean", "sum")
# The categorical tensor's code at an unused position of a multi-valued column: no value there.
PADDING_CODE = -1


@dataclass(frozen=True)
class Task:
    """One prediction target.

    kind: "binary" (labels 0/1, trained with BCE on logits) or "regression" (trained with MSE on
    the label standardised by `label_mean` / `label_std`; predictions are returned in the
    label's own units).

    given: the name of an earlier binary task this one follows (a purchase is only observed
    after a click: `Task("purchase", "binary", given="click")`), or None. Such a conditional
    task is binary; the model's output for it is the logit of P(task | given, x), its label
    counts only on the rows where the given event happened (its joint label is 1), and mmoe also
    predicts the entire-space P(given ∧ task | x) = P(given | x) · P(task | given, x), named
    `joint_name` (see `condition_chains` and `mmoe.train.loss` for the entire-space training).
    """

    name: str
    kind: str
    label_mean: float = 0.0
    label_std: float = 1.0
    given: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise MmoeError(f"task {self.name!r}: kind {self.kind!r} is not one of {', '.join(TASK_KINDS)}")
        if not (self.label_std > 0 and math.isfinite(self.label_std)):
            raise MmoeError(f"task {self.name!r}: label_std must be a positive number, got {self.label_std}")
        if self.given is not None:
            if not isinstance(self.given, str) or not self.given:
                raise MmoeError(
                    f"task {self.name!r}: given must be the name of an earlier binary task, got {self.given!r}"
                )
            if self.kind != "binary":
                raise MmoeError(
                    f"task {self.name!r}: given={self.given!r} on a {self.kind} task; expected a binary task "
                    f"(a conditional task is an event that may follow another)"
                )
            if self.given == self.name:
                raise MmoeError(f"task {self.name!r}: given= names the task itself; expected an earlier binary task")

    def spec(self) -> str:
        """The task as one item of a task spec: "name:kind", or "name:binary:given=other"."""
        return f"{self.name}:{self.kind}" + (f":given={self.given}" if self.given is not None else "")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "label_mean": self.label_mean,
            "label_std": self.label_std,
        }
        if self.given is not None:  # absent otherwise, as written before conditional tasks
            data["given"] = self.given
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return cls(**data)


JOINT_SEPARATOR = "&"


def condition_chains(tasks: Sequence[Task]) -> list[tuple[int, ...]]:
    """Per task k, the positions of the tasks its event needs, root first and k last: (k,) for a
    task that follows none; (click, purchase) for purchase given click; (a, b, c) for c given b
    given a. MmoeError (one line naming the task) when a `given` names no task, a later task
    (conditions must follow the task order: no cycles) or a task that is not binary, or when a
    conditional task's joint name is another task's name."""
    position = {task.name: k for k, task in enumerate(tasks)}
    chains: list[tuple[int, ...]] = []
    for k, task in enumerate(tasks):
        if task.given is None:
            chains.append((k,))
            continue
        earlier = [t.name for t in tasks[:k] if t.kind == "binary"]
        expected = f"expected an earlier binary task ({', '.join(map(repr, earlier)) or 'there is none'})"
        given = position.get(task.given)
        if given is None:
            raise MmoeError(f"task {task.name!r}: given={task.given!r} names no task; {expected}")
        if given > k:
            raise MmoeError(
                f"task {task.name!r}: given={task.given!r} names a later task; {expected}, listed before it "
                f"(conditions follow the task order, so they cannot form a cycle)"
            )
        if tasks[given].kind != "binary":
            raise MmoeError(f"task {task.name!r}: given={task.given!r} names a {tasks[given].kind} task; {expected}")
        chains.append((*chains[given], k))
    names = set(position)
    for k, chain in enumerate(chains):
        if len(chain) > 1 and joint_name(tasks, chain) in names:
            raise MmoeError(
                f"task {tasks[k].name!r}: its joint prediction's name {joint_name(tasks, chain)!r} is also a task's "
                f"name; expected distinct names"
            )
    return chains


def joint_name(tasks: Sequence[Task], chain: Sequence[int]) -> str:
    """The name of the entire-space event of a chain (see `condition_chains`): "click&purchase"."""
    return JOINT_SEPARATOR.join(tasks[j].name for j in chain)


def joint_tasks(tasks: Sequence[Task]) -> list[tuple[int, int, str]]:
    """Per conditional task, in task order: (its position k, its given task's position, the name
    of its joint event P(given ∧ task | x), e.g. "click&purchase"). Empty when no task is
    conditional. Checks the conditions as `condition_chains` does."""
    chains = condition_chains(tasks)
    return [(k, chain[-2], joint_name(tasks, chain)) for k, chain in enumerate(chains) if len(chain) > 1]


def prediction_names(tasks: Sequence[Task]) -> list[str]:
    """What a model's predictions are called, in order: one per task, then one per conditional
    task's joint event (`joint_tasks`): ["click", "purchase", "click&purchase"]."""
    return [task.name for task in tasks] + [name for _, _, name in joint_tasks(tasks)]


@dataclass(frozen=True)
class MultiValue:
    """A multi-valued categorical column (a list of ids per row, e.g. recently clicked items).

    max_values L: the row's first L values are kept, in L positions of the categorical tensor;
    the positions of a shorter list hold `PADDING_CODE`. pooling: "mean" (over the values
    present; an empty list gives the zero vector) or "sum" of their embeddings, the column's
    one vector. shares: another categorical column whose vocabulary and embedding rows this one
    uses (its codes are that column's codes), or None for a vocabulary and rows of its own.
    """

    column: str
    max_values: int = 20
    pooling: str = "mean"
    shares: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_values, bool) or not isinstance(self.max_values, int) or self.max_values < 1:
            raise MmoeError(
                f"multi-valued column {self.column!r}: max_values must be a whole number >= 1, got {self.max_values!r}"
            )
        if self.pooling not in POOLINGS:
            raise MmoeError(
                f"multi-valued column {self.column!r}: pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}"
            )
        if self.shares == self.column:
            raise MmoeError(f"multi-valued column {self.column!r}: shares= names the column itself")

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "max_values": self.max_values, "pooling": self.pooling, "shares": self.shares}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiValue:
        return cls(str(data["column"]), int(data["max_values"]), str(data["pooling"]), data.get("shares"))


NUMERIC_EMBEDDINGS = ("auto", "none", "periodic")
# What `mmoe train` and the estimator use without the option: "auto" embeds the numeric columns of a
# table that also has categorical columns (`PeriodicEmbedding.of`). The studies of the paper use
# "none" (its input). The measurements behind it are in `mmoe.models.layers.PeriodicEmbeddings`.
DEFAULT_NUMERIC_EMBEDDING = "auto"


@dataclass(frozen=True)
class PeriodicEmbedding:
    """How numeric columns enter the model when they are embedded: each column x_j (standardised)
    becomes ReLU(W_j [cos(2π c_j x_j); sin(2π c_j x_j)] + b_j), a vector of `dim` values, with
    `frequencies` learned frequencies c_j initialised ~ N(0, sigma²) (PLR, Gorishniy et al., "On
    Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022; `mmoe.models.layers
    .PeriodicEmbeddings`). The defaults are the measured ones (see `mmoe.models.layers`)."""

    frequencies: int = 16
    dim: int = 8
    sigma: float = 1.0

    def __post_init__(self) -> None:
        for name in ("frequencies", "dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MmoeError(f"periodic numeric embedding: {name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not self.sigma > 0:
            raise MmoeError(f"periodic numeric embedding: sigma must be a positive number, got {self.sigma!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "periodic", "frequencies": self.frequencies, "dim": self.dim, "sigma": self.sigma}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeriodicEmbedding:
        return cls(int(data["frequencies"]), int(data["dim"]), float(data["sigma"]))

    @classmethod
    def of(
        cls,
        option: str | Mapping[str, Any] | PeriodicEmbedding | None,
        input_spec: InputSpec | None = None,
        source: str = "option numeric_embedding",
    ) -> PeriodicEmbedding | None:
        """An option's value as an embedding: "periodic" (the defaults), "none" or None (the numeric
        columns enter as they are, the paper's input), a PeriodicEmbedding or its `to_dict`, or
        "auto": "periodic" for a table with numeric and categorical columns (`input_spec`), else
        "none". Why "auto": on census and the click-log generator, tables of mixed columns, the
        periodic embedding lifted every task's AUC (census income .9462 -> .9515, education .8908
        -> .8957, click .7361 -> .7386, purchase .6486 -> .6580); on the paper's synthetic data,
        100 Gaussian columns whose labels depend on two linear projections of them, it cut MMoE's
        test R² from .97 to .2, a column's value being what its vector loses."""
        if option is None or isinstance(option, PeriodicEmbedding):
            return option
        if isinstance(option, Mapping):
            try:
                return cls.from_dict(dict(option))
            except (KeyError, TypeError, ValueError):
                raise MmoeError(
                    f"{source}: {dict(option)!r} is not a periodic embedding; expected "
                    f"{{'kind': 'periodic', 'frequencies': K, 'dim': D, 'sigma': S}}"
                ) from None
        if option == "auto":  # without an input spec: None (the option is being checked)
            mixed = input_spec is not None and input_spec.num_numeric > 0 and input_spec.num_categorical > 0
            return cls() if mixed else None
        if option == "periodic":
            return cls()
        if option == "none":
            return None
        raise MmoeError(f"{source}: {option!r} is not one of {', '.join(NUMERIC_EMBEDDINGS)}")

    def describe(self) -> str | dict[str, Any]:
        """The option's value that gives this embedding: "periodic" for the defaults, else `to_dict`."""
        return "periodic" if self == PeriodicEmbedding() else self.to_dict()


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

    numeric_embedding: how the numeric columns enter the model: None = as they are (the paper's
        input), a `PeriodicEmbedding` = each as a learned vector of its dim values.

    multi_values: the multi-valued columns among `categorical` (`MultiValue`; () = none, as in
        specs written before them). Such a column is always embedded; it takes max_values
        positions of the categorical tensor (`code_positions`), its pooled embedding is its
        part of the dense input. One that shares another column's rows has that column's
        cardinality, dimension and offset and adds no rows of its own.

    The two kinds of columns index two vocabularies: column j's indices live in
    [offsets[j], offsets[j] + cardinalities[j]) of the one-hot vocabulary (`vocabulary_size`
    slots) when it is one-hot, of the embedding vocabulary (`embedding_vocabulary_size` rows)
    when it is embedded.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    cardinalities: tuple[int, ...] = ()
    embedding_dims: tuple[int, ...] = ()
    multi_values: tuple[MultiValue, ...] = ()
    numeric_embedding: PeriodicEmbedding | None = None

    def __post_init__(self) -> None:
        if len(self.categorical) != len(self.cardinalities):
            raise ValueError("InputSpec: one cardinality per categorical column")
        if self.embedding_dims and len(self.embedding_dims) != len(self.categorical):
            raise ValueError("InputSpec: one embedding dimension (0: one-hot) per categorical column, or none")
        if any(dim < 0 for dim in self.embedding_dims):
            raise ValueError(
                f"InputSpec: embedding dimensions must be 0 (one-hot) or positive, got {self.embedding_dims}"
            )
        for multi in self.multi_values:
            if multi.column not in self.categorical:
                raise ValueError(f"InputSpec: multi-valued column {multi.column!r} is not a categorical column")
            if self.column_embedding_dims[self.categorical.index(multi.column)] == 0:
                raise ValueError(f"InputSpec: multi-valued column {multi.column!r} must be embedded")
            if multi.shares is not None:
                if multi.shares not in self.categorical or multi.shares in self.multi_value_of:
                    raise ValueError(
                        f"InputSpec: {multi.column!r} shares {multi.shares!r}, "
                        f"expected a single-valued categorical column"
                    )
                j, k = self.categorical.index(multi.column), self.categorical.index(multi.shares)
                if (self.cardinalities[j], self.column_embedding_dims[j]) != (
                    self.cardinalities[k],
                    self.column_embedding_dims[k],
                ):
                    raise ValueError(
                        f"InputSpec: {multi.column!r} must have the cardinality and dimension of {multi.shares!r}"
                    )

    @property
    def num_numeric(self) -> int:
        return len(self.numeric)

    @property
    def numeric_width(self) -> int:
        """The numeric columns' part of the dense input: one value per column, or dim when embedded."""
        return self.num_numeric * (self.numeric_embedding.dim if self.numeric_embedding else 1)

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
    def one_hot_positions(self) -> list[int]:
        """Positions (in the categorical tensor, see `code_positions`) of the one-hot columns."""
        positions = self.code_positions
        return [positions[j] for j in self.one_hot_columns]

    @property
    def embedded_columns(self) -> list[int]:
        """Positions (in `categorical`) of the embedded columns."""
        return [j for j, dim in enumerate(self.column_embedding_dims) if dim > 0]

    @property
    def vocabulary_size(self) -> int:
        """Slots of the one-hot vocabulary (the one-hot columns' cardinalities)."""
        return sum(self.cardinalities[j] for j in self.one_hot_columns)

    @property
    def multi_value_of(self) -> dict[str, MultiValue]:
        """{column: its MultiValue} of the multi-valued columns."""
        return {multi.column: multi for multi in self.multi_values}

    @property
    def shared_columns(self) -> dict[int, int]:
        """{position of a column that shares another's rows: position of that other column}."""
        return {
            self.categorical.index(multi.column): self.categorical.index(multi.shares)
            for multi in self.multi_values
            if multi.shares is not None
        }

    @property
    def column_widths(self) -> list[int]:
        """Per categorical column, its positions in the categorical tensor: max_values for a
        multi-valued column, else 1."""
        multi = self.multi_value_of
        return [multi[c].max_values if c in multi else 1 for c in self.categorical]

    @property
    def code_positions(self) -> list[int]:
        """Per categorical column, its first position in the categorical tensor (the column
        index itself when no column is multi-valued)."""
        starts, position = [], 0
        for width in self.column_widths:
            starts.append(position)
            position += width
        return starts

    @property
    def num_codes(self) -> int:
        """Width of the categorical tensor: num_categorical plus L - 1 per multi-valued column."""
        return sum(self.column_widths)

    @property
    def embedding_vocabulary_size(self) -> int:
        """Rows of the embedding vocabulary (the embedded columns' cardinalities; a column that
        shares another's rows adds none)."""
        shared = self.shared_columns
        return sum(self.cardinalities[j] for j in self.embedded_columns if j not in shared)

    @property
    def embedding_width(self) -> int:
        """Sum of the embedded columns' dimensions: their part of the dense input."""
        return sum(self.column_embedding_dims)

    @property
    def offsets(self) -> list[int]:
        """Per categorical column, where its indices start in its kind's vocabulary."""
        starts, totals = [], {False: 0, True: 0}
        shared = self.shared_columns
        for j, (cardinality, dim) in enumerate(zip(self.cardinalities, self.column_embedding_dims)):
            if j in shared:  # the shared column's own offset (set below: it may come later)
                starts.append(-1)
                continue
            starts.append(totals[dim > 0])
            totals[dim > 0] += cardinality
        for j, k in shared.items():
            starts[j] = starts[k]
        return starts

    @property
    def one_hot_dim(self) -> int:
        """Width d of the dense input the paper's formulas use: numeric columns plus one-hot slots
        (plus the embeddings' dimensions where columns are embedded)."""
        return self.numeric_width + self.vocabulary_size + self.embedding_width

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "cardinalities": list(self.cardinalities),
        }
        if any(self.embedding_dims):  # absent when every column is one-hot, as written before embeddings
            data["embedding_dims"] = list(self.embedding_dims)
        if self.multi_values:  # absent when no column is multi-valued, as written before them
            data["multi_values"] = [multi.to_dict() for multi in self.multi_values]
        if self.numeric_embedding is not None:  # absent for the paper's input, as written before it
            data["numeric_embedding"] = self.numeric_embedding.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        dims = tuple(int(d) for d in data.get("embedding_dims") or ())
        return cls(
            tuple(data["numeric"]),
            tuple(data["categorical"]),
            tuple(int(c) for c in data["cardinalities"]),
            dims if any(dims) else (),
            tuple(MultiValue.from_dict(m) for m in data.get("multi_values") or ()),
            PeriodicEmbedding.from_dict(data["numeric_embedding"]) if data.get("numeric_embedding") else None,
        )


__all__ = [
    "DEFAULT_NUMERIC_EMBEDDING",
    "JOINT_SEPARATOR",
    "PADDING_CODE",
    "POOLINGS",
    "TASK_KINDS",
    "NUMERIC_EMBEDDINGS",
    "InputSpec",
    "MultiValue",
    "PeriodicEmbedding",
    "Task",
    "condition_chains",
    "joint_name",
    "joint_tasks",
    "prediction_names",
]
