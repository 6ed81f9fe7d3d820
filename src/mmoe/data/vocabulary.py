"""How each categorical column enters the model, and how large its vocabulary may grow.

One set of options (`VocabularyOptions`), read by both encoders (the pandas `TableEncoder` and
the Arrow `BatchEncoder`), so that a streamed table and the same table in memory give the same
columns. docs/tables.md ("Vocabularies, embeddings and hashing") has the user's view. The rules:

- **Vocabulary** (`mmoe.data.values.kept_vocabulary`): a column's training texts seen at least
  `min_frequency` times (default 1: all), at most the `max_categories` most frequent (default: no
  limit). Slot 0 is shared by values never seen in training and the values left out, so it is
  learned from the rare values. Slots: len(vocabulary) + 1.
- **Hashing** (`hash_buckets`, for all categorical columns or per column): the column keeps no
  vocabulary; a value's slot is `mmoe.data.values.hash_buckets` of its text, one of N buckets.
  Slots: N. For unbounded vocabularies and for streams whose values cannot be known in advance.
- **Representation**: a column listed in `one_hot` enters one-hot (the paper's input), one in
  `embed` as an embedding of `embedding_dim` (default 16); any other column is embedded when it
  has more than EMBED_ABOVE_SLOTS (100) slots, else one-hot. Census (at most 52 values a column)
  stays one-hot.
- **Nearly unique columns** are refused: a column that is not hashed, with at least
  UNIQUE_CHECK_ROWS (1000) training rows and more distinct values than NEARLY_UNIQUE_SHARE (0.9)
  of them (an event id, a timestamp stored as text). Hashing it keeps it anyway.
- **Memory**: before anything is allocated, the categorical weights and their optimiser state are
  estimated (`parameter_bytes`) and checked against the memory available (`check_parameter_memory`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmoe.errors import MmoeError
from mmoe.spec import InputSpec

DEFAULT_EMBEDDING_DIM = 16
EMBED_ABOVE_SLOTS = 100  # more slots than this (values + slot 0, or buckets): an embedding by default
NEARLY_UNIQUE_SHARE = 0.9  # distinct training values / training rows above this: refused (an event id or a
# timestamp is ≈ 1.0; a user id of a log where most users come once or twice, ≈ 0.5-0.8, still repeats enough
# to learn from and is kept) ...
UNIQUE_CHECK_ROWS = 1000  # ... in a table of at least this many training rows (small tables repeat little)
OPTIMIZER_STATES = 2  # Adam's two moments per weight: each weight costs (1 + 2) float32 values
# Outputs per one-hot slot of the default model's first layer (8 experts x 16 units + 2 tasks' gates
# of 8): the estimate for one-hot columns; the model layer knows its own width (`parameter_bytes`).
ONE_HOT_WIDTH = 8 * 16 + 2 * 8
FLOAT_BYTES = 4

OPTION_FLAGS = {
    "embedding_dim": "--embedding-dim",
    "embed": "--embed",
    "one_hot": "--one-hot",
    "min_frequency": "--min-frequency",
    "max_categories": "--max-categories",
    "hash_buckets": "--hash-buckets",
}


def _option(name: str) -> str:
    return f"option {name} ({OPTION_FLAGS[name]})"


def _positive_int(name: str, value: Any, what: str, column: str | None = None) -> int:
    """`value` as an int when it is a whole number >= 1, else an MmoeError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        valid = False
    else:
        valid = int(value) >= 1
    if not valid:
        where = f" for column {column!r}" if column is not None else ""
        raise MmoeError(f"{_option(name)}{where}: expected {what}, got {value!r}")
    return int(value)


def _names(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(c.strip() for c in value.split(",") if c.strip())
    if not isinstance(value, Sequence):
        raise MmoeError(f"{_option(name)}: expected a list of column names, got {value!r}")
    return tuple(str(c) for c in value)


@dataclass(frozen=True)
class VocabularyOptions:
    """The vocabulary and representation options of a table's categorical columns (module docstring).

    hash_buckets: 0 (no hashing), N (every categorical column into N buckets), or {column: N}."""

    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    embed: tuple[str, ...] = ()
    one_hot: tuple[str, ...] = ()
    min_frequency: int = 1
    max_categories: int | None = None
    hash_buckets: int | Mapping[str, int] = field(default=0)

    @classmethod
    def of(
        cls,
        embedding_dim: int | None = None,
        embed: Sequence[str] | str | None = None,
        one_hot: Sequence[str] | str | None = None,
        min_frequency: int | None = None,
        max_categories: int | None = None,
        hash_buckets: int | Mapping[str, int] | None = None,
    ) -> VocabularyOptions:
        """Checked options from keyword arguments (None: the default); a bad value is an MmoeError
        naming the option and what was expected."""
        dim = DEFAULT_EMBEDDING_DIM
        if embedding_dim is not None:
            dim = _positive_int("embedding_dim", embedding_dim, "a positive embedding dimension such as 16")
        embedded, one_hots = _names("embed", embed), _names("one_hot", one_hot)
        both = sorted(set(embedded) & set(one_hots))
        if both:
            raise MmoeError(
                f"{_option('embed')} and {_option('one_hot')} both list {', '.join(map(repr, both))}; "
                f"expected each column in one of them"
            )
        frequency = 1
        if min_frequency is not None:
            frequency = _positive_int("min_frequency", min_frequency, "a whole number of rows >= 1")
        most = None
        if max_categories is not None:
            most = _positive_int("max_categories", max_categories, "a whole number of categories >= 1")
        buckets: int | dict[str, int] = 0
        if isinstance(hash_buckets, Mapping):
            buckets = {
                str(c): _positive_int("hash_buckets", n, "a positive number of buckets such as 1000000", str(c))
                for c, n in hash_buckets.items()
            }
        elif hash_buckets is not None:
            buckets = _positive_int("hash_buckets", hash_buckets, "a positive number of buckets such as 1000000")
        return cls(dim, embedded, one_hots, frequency, most, buckets)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> VocabularyOptions:
        """The options among a data set description's (or `load_table`'s) keys."""
        return cls.of(**{name: spec.get(name) for name in OPTION_FLAGS})

    def spec(self) -> dict[str, Any]:
        """The options that differ from the defaults, as JSON (a data set description's keys:
        absent when unset, so that descriptions written before these options stay the same)."""
        defaults = VocabularyOptions()
        data: dict[str, Any] = {}
        for name in OPTION_FLAGS:
            value = getattr(self, name)
            if value != getattr(defaults, name):
                if isinstance(value, tuple):
                    value = list(value)
                elif isinstance(value, Mapping):
                    value = dict(value)
                data[name] = value
        return data

    def buckets(self, column: str) -> int:
        """The number of buckets `column` is hashed into, 0 when it keeps a vocabulary."""
        if isinstance(self.hash_buckets, Mapping):
            return int(self.hash_buckets.get(column, 0))
        return int(self.hash_buckets)

    def check_columns(self, categorical: Sequence[str], numeric: Sequence[str], source: str) -> None:
        """MmoeError when embed / one_hot / hash_buckets name a column that is not a categorical feature."""
        named = [("embed", c) for c in self.embed] + [("one_hot", c) for c in self.one_hot]
        if isinstance(self.hash_buckets, Mapping):
            named += [("hash_buckets", c) for c in self.hash_buckets]
        for option, column in named:
            if column in categorical:
                continue
            if column in numeric:
                raise MmoeError(
                    f"{source}: {_option(option)}: column {column!r} is numeric; expected a categorical "
                    f"column (read it as one with --categorical {column} / categorical=[{column!r}])"
                )
            shown = ", ".join(map(repr, list(categorical)[:12])) or "none"
            raise MmoeError(
                f"{source}: {_option(option)}: {column!r} is not a categorical feature column; the "
                f"categorical columns are {shown}"
            )

    def embedding_dim_of(self, column: str, slots: int) -> int:
        """0 (one-hot) or the embedding dimension of `column` with `slots` slots (module docstring)."""
        if column in self.one_hot:
            return 0
        if column in self.embed or slots > EMBED_ABOVE_SLOTS:
            return self.embedding_dim
        return 0

    def check_not_unique(self, column: str, distinct: int, rows: int, source: str) -> None:
        """MmoeError for a column (not hashed) whose `distinct` training values are nearly one per row."""
        if self.buckets(column) or rows < UNIQUE_CHECK_ROWS or distinct <= NEARLY_UNIQUE_SHARE * rows:
            return
        raise MmoeError(
            f"{source}: categorical column {column!r} has {distinct} distinct values in {rows} training rows "
            f"(nearly one per row, like an event id or a timestamp stored as text); expected values that "
            f"repeat: leave it out of the features, or keep it hashed with --hash-buckets {column}=N "
            f"(hash_buckets={{{column!r}: N}})"
        )


def parameter_bytes(
    spec: InputSpec, one_hot_width: int = ONE_HOT_WIDTH, optimizer_states: int = OPTIMIZER_STATES
) -> list[int]:
    """Per categorical column, the bytes of its weights and their optimiser state: slots x width x
    4 bytes x (1 + optimizer_states), width = its embedding dimension, or `one_hot_width` (the
    first layer's outputs) for a one-hot column."""
    return [
        slots * (dim or one_hot_width) * FLOAT_BYTES * (1 + optimizer_states)
        for slots, dim in zip(spec.cardinalities, spec.column_embedding_dims)
    ]


def available_memory() -> int:
    """Bytes of memory available now (Linux: MemAvailable), else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_parameter_memory(
    spec: InputSpec,
    source: str,
    one_hot_width: int = ONE_HOT_WIDTH,
    optimizer_states: int = OPTIMIZER_STATES,
    limit: int | None = None,
) -> None:
    """MmoeError, naming the largest column and what to change, when the categorical weights and
    their optimiser state (`parameter_bytes`) would not fit in `limit` bytes (default: the memory
    available now). Called before any of them is allocated."""
    sizes = parameter_bytes(spec, one_hot_width, optimizer_states)
    limit = available_memory() if limit is None else limit
    if not sizes or sum(sizes) <= limit:
        return
    j = max(range(len(sizes)), key=sizes.__getitem__)
    column, slots, dim = spec.categorical[j], spec.cardinalities[j], spec.column_embedding_dims[j]
    kind = f"an embedding of {dim}" if dim else f"one-hot into {one_hot_width} first-layer outputs"
    raise MmoeError(
        f"{source}: the categorical columns' weights and optimiser state need about {sum(sizes) / 2**30:.1f} GiB "
        f"but {limit / 2**30:.1f} GiB of memory is available; the largest is {column!r} ({slots} slots, {kind}): "
        f"expected less: hash it (--hash-buckets {column}=N), drop rare values (--min-frequency, "
        f"--max-categories) or use a smaller --embedding-dim"
    )


__all__ = [
    "DEFAULT_EMBEDDING_DIM",
    "EMBED_ABOVE_SLOTS",
    "NEARLY_UNIQUE_SHARE",
    "OPTION_FLAGS",
    "UNIQUE_CHECK_ROWS",
    "VocabularyOptions",
    "available_memory",
    "check_parameter_memory",
    "parameter_bytes",
]
