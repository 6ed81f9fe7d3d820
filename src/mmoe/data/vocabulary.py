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
- **Multi-valued columns** (`multi_value`; a Parquet list column is one without being named): a
  list of values per row, e.g. a user's recently clicked items, always embedded. The rules above
  apply to its values (each value occurrence counts once towards min_frequency). A row's first
  `max_values` values (default 20) fill that many positions of the categorical tensor, the rest
  of them `mmoe.spec.PADDING_CODE`; the model pools their embeddings ("mean" or "sum"). A column
  that `shares` another uses that column's vocabulary (or buckets) and embedding rows, which
  makes that column embedded. Text cells are split on `multi_value_separator` (default "|").
- **Memory**: before anything is allocated, the categorical weights and their optimiser state are
  estimated (`parameter_bytes`) and checked against the memory available (`check_parameter_memory`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmoe.errors import MmoeError
from mmoe.spec import InputSpec, MultiValue

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
    "multi_value": "--multi-value",
    "multi_value_separator": "--multi-value-separator",
}
MULTI_VALUE_KEYS = {"max": "max_values", "max_values": "max_values", "pooling": "pooling", "shares": "shares"}
MULTI_VALUE_EXAMPLE = "e.g. --multi-value recent_items:max=20:pooling=mean:shares=item_id"


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


def parse_multi_value(text: str) -> MultiValue:
    """One multi-valued column from "COL[:max=L][:pooling=mean|sum][:shares=OTHER]"."""
    column, *settings = (part.strip() for part in text.split(":"))
    if not column:
        raise MmoeError(
            f"{_option('multi_value')}: {text!r} names no column; expected COL[:KEY=VALUE...], {MULTI_VALUE_EXAMPLE}"
        )
    keywords: dict[str, Any] = {}
    for setting in settings:
        key, equals, value = (part.strip() for part in setting.partition("="))
        if not equals or key not in MULTI_VALUE_KEYS:
            raise MmoeError(
                f"{_option('multi_value')}: {setting!r} in {text!r} is not max=L, pooling=mean|sum or shares=COL; "
                f"{MULTI_VALUE_EXAMPLE}"
            )
        keywords[MULTI_VALUE_KEYS[key]] = value
    return _multi_value(column, keywords)


def _multi_value(column: str, settings: Mapping[str, Any]) -> MultiValue:
    """A checked MultiValue; a bad setting is an MmoeError naming the option and the column."""
    unknown = sorted(set(settings) - {"max_values", "pooling", "shares"})
    if unknown:
        raise MmoeError(
            f"{_option('multi_value')} for column {column!r}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"expected max_values, pooling, shares"
        )
    length = settings.get("max_values")
    if length is None:
        length = MultiValue.max_values
    elif isinstance(length, str):
        try:
            length = int(length)
        except ValueError:
            length = None
    length = _positive_int("multi_value", length, "max=L with L a whole number of values >= 1 such as 20", column)
    try:
        return MultiValue(column, length, str(settings.get("pooling") or "mean"), settings.get("shares") or None)
    except MmoeError as error:
        raise MmoeError(f"{_option('multi_value')}: {error}") from None


def _multi_values(value: Any) -> tuple[MultiValue, ...]:
    """--multi-value "A,B:max=5" / ["A", "B:max=5"] / {"A": {}, "B": {"max_values": 5}} as MultiValues."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    if isinstance(value, Mapping):
        multis = []
        for column, settings in value.items():
            if not isinstance(settings, Mapping):
                raise MmoeError(
                    f"{_option('multi_value')} for column {column!r}: expected its settings as a mapping "
                    f"(max_values, pooling, shares), got {settings!r}"
                )
            multis.append(_multi_value(str(column), settings))
        return tuple(multis)
    if not isinstance(value, Sequence):
        raise MmoeError(
            f"{_option('multi_value')}: expected COL[:KEY=VALUE...] items, got {value!r}; {MULTI_VALUE_EXAMPLE}"
        )
    multis = [item if isinstance(item, MultiValue) else parse_multi_value(str(item)) for item in value]
    return tuple(multis)


@dataclass(frozen=True)
class VocabularyOptions:
    """The vocabulary and representation options of a table's categorical columns (module docstring).

    hash_buckets: 0 (no hashing), N (every categorical column into N buckets), or {column: N}.
    multi_value: the multi-valued columns named (`MultiValue`s); multi_value_separator: the
    separator of their values in text cells."""

    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    embed: tuple[str, ...] = ()
    one_hot: tuple[str, ...] = ()
    min_frequency: int = 1
    max_categories: int | None = None
    hash_buckets: int | Mapping[str, int] = field(default=0)
    multi_value: tuple[MultiValue, ...] = ()
    multi_value_separator: str = "|"

    @classmethod
    def of(
        cls,
        embedding_dim: int | None = None,
        embed: Sequence[str] | str | None = None,
        one_hot: Sequence[str] | str | None = None,
        min_frequency: int | None = None,
        max_categories: int | None = None,
        hash_buckets: int | Mapping[str, int] | None = None,
        multi_value: Sequence[str] | Mapping[str, Mapping[str, Any]] | str | None = None,
        multi_value_separator: str | None = None,
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
        multis = _multi_values(multi_value)
        repeated = sorted({m.column for m in multis if [n.column for n in multis].count(m.column) > 1})
        if repeated:
            raise MmoeError(f"{_option('multi_value')}: {', '.join(map(repr, repeated))} named more than once")
        embedded_only = {m.column for m in multis} | {m.shares for m in multis if m.shares is not None}
        forced = sorted(embedded_only & set(one_hots))
        if forced:
            raise MmoeError(
                f"{_option('one_hot')} lists {', '.join(map(repr, forced))}, a multi-valued column or one whose rows "
                f"one shares ({_option('multi_value')}); expected those embedded"
            )
        separator = "|"
        if multi_value_separator is not None:
            if not isinstance(multi_value_separator, str) or not multi_value_separator:
                raise MmoeError(
                    f"{_option('multi_value_separator')}: expected a non-empty separator such as '|', "
                    f"got {multi_value_separator!r}"
                )
            separator = multi_value_separator
        return cls(dim, embedded, one_hots, frequency, most, buckets, multis, separator)

    def with_list_columns(self, columns: Sequence[str]) -> VocabularyOptions:
        """These options plus `columns` (list-typed columns not named) as multi-valued with the defaults."""
        named = {m.column for m in self.multi_value}
        extra = tuple(MultiValue(c) for c in columns if c not in named)
        if not extra:
            return self
        return VocabularyOptions(
            self.embedding_dim,
            self.embed,
            self.one_hot,
            self.min_frequency,
            self.max_categories,
            self.hash_buckets,
            self.multi_value + extra,
            self.multi_value_separator,
        )

    def multi_value_of(self, column: str) -> MultiValue | None:
        """`column`'s MultiValue, None when it is single-valued."""
        return next((m for m in self.multi_value if m.column == column), None)

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
                if name == "multi_value":
                    value = {
                        m.column: {k: v for k, v in m.to_dict().items() if k != "column" and v is not None}
                        for m in value
                    }
                elif isinstance(value, tuple):
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
        named += [("multi_value", m.column) for m in self.multi_value]
        named += [("multi_value", m.shares) for m in self.multi_value if m.shares is not None]
        multi = {m.column for m in self.multi_value}
        for m in self.multi_value:
            if m.shares in multi:
                raise MmoeError(
                    f"{source}: {_option('multi_value')}: {m.column!r} shares {m.shares!r}, itself multi-valued; "
                    f"expected a single-valued categorical column"
                )
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
        shared = {m.shares for m in self.multi_value}
        if column in self.embed or slots > EMBED_ABOVE_SLOTS or column in shared or self.multi_value_of(column):
            return self.embedding_dim
        return 0

    def check_not_unique(self, column: str, distinct: int, rows: int, source: str) -> None:
        """MmoeError for a column (not hashed) whose `distinct` training values are nearly one per row."""
        # Naming the column in `embed` says it is an id column on purpose (10M users in 11M rows):
        # each value keeps its own learned row.
        if self.buckets(column) or column in self.embed or rows < UNIQUE_CHECK_ROWS:
            return
        if distinct <= NEARLY_UNIQUE_SHARE * rows:
            return
        raise MmoeError(
            f"{source}: categorical column {column!r} has {distinct} distinct values in {rows} training rows "
            f"(nearly one per row, like an event id or a timestamp stored as text); expected values that "
            f"repeat: leave it out of the features, keep it hashed with --hash-buckets {column}=N "
            f"(hash_buckets={{{column!r}: N}}), or keep every value with --embed {column} (embed=[{column!r}])"
        )


def parameter_bytes(
    spec: InputSpec, one_hot_width: int = ONE_HOT_WIDTH, optimizer_states: int = OPTIMIZER_STATES
) -> list[int]:
    """Per categorical column, the bytes of its weights and their optimiser state: slots x width x
    4 bytes x (1 + optimizer_states), width = its embedding dimension, or `one_hot_width` (the
    first layer's outputs) for a one-hot column."""
    shared = spec.shared_columns  # a column that shares another's rows has none of its own
    return [
        0 if j in shared else slots * (dim or one_hot_width) * FLOAT_BYTES * (1 + optimizer_states)
        for j, (slots, dim) in enumerate(zip(spec.cardinalities, spec.column_embedding_dims))
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
    "MULTI_VALUE_KEYS",
    "EMBED_ABOVE_SLOTS",
    "NEARLY_UNIQUE_SHARE",
    "OPTION_FLAGS",
    "UNIQUE_CHECK_ROWS",
    "VocabularyOptions",
    "available_memory",
    "check_parameter_memory",
    "parameter_bytes",
    "parse_multi_value",
]
