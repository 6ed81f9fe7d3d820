"""Fitted encoders: table rows -> tensors, with every statistic taken from the training rows only.

- Numeric columns are standardised with the training mean and standard deviation; a missing
  value becomes the training mean (0 after standardising); a constant column keeps std 1.
  A column may first be transformed (`NUMERIC_TRANSFORMS`, the encoder's numeric_transform):
  "log" is sign(x)·log(1 + |x|), for heavy-tailed columns such as capital gains, whose raw
  standardised values put a few rows at 20–100 standard deviations and all others near 0; the
  mean and std are then those of the transformed training values ("standard", the default, is x).
- Categorical columns map each value seen in training to its own slot; slot 0 of every column is
  reserved for values never seen in training. A missing value is the category "<missing>", so it
  gets a slot of its own when training has missing values and slot 0 otherwise. Values rarer
  than `min_frequency` (or beyond `max_categories`) share slot 0 too; a hashed column has a
  bucket per value instead; each column enters one-hot or as an embedding
  (`mmoe.data.vocabulary`'s rules).
- A multi-valued column (a list per row) keeps the vocabulary of its values (or shares another
  column's); a row's first L values fill L positions, the rest `PADDING_CODE`
  (`multi_value_codes`).
- Binary labels become 0/1 (positive = 1); regression labels stay in their own units, and their
  training mean and std go into the `Task` so that the loss can standardise them.

What counts as missing, how a value is written as text, which labels are binary and which
numbers are bad are `mmoe.data.values`' rules, shared with the Arrow encoder of streamed tables.
The encoder is saved as JSON beside the model weights and used again by `mmoe predict`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmoe.data.dataset import InputSpec, Split, Task
from mmoe.data.values import (
    FALSE_WORDS,
    MISSING_CATEGORY,
    TRUE_WORDS,
    bad_label_error,
    binary_label_matches,
    binary_label_pair,
    category_counts,
    category_texts,
    hash_buckets,
    kept_vocabulary,
    multi_value_texts,
    present_label_texts,
    to_numeric_column,
)
from mmoe.data.vocabulary import VocabularyOptions, check_parameter_memory
from mmoe.errors import MmoeError
from mmoe.spec import PADDING_CODE, MultiValue

# Per numeric column, what is done to a value before it is standardised (see the module docstring).
NUMERIC_TRANSFORMS = ("standard", "log")


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(x)·log(1 + |x|) elementwise (NaN stays NaN): the "log" numeric transform."""
    return np.sign(values) * np.log1p(np.abs(values))


def numeric_transforms(numeric: Sequence[str], option: str | Mapping[str, str] | None, source: str) -> list[str]:
    """Per numeric column, its transform: `option` is one name of NUMERIC_TRANSFORMS for every
    numeric column, or {column: name} (the others "standard"); None means "standard"."""
    chosen = dict.fromkeys(numeric, option or "standard") if not isinstance(option, Mapping) else dict(option)
    unknown = [column for column in chosen if column not in numeric]
    if unknown:
        raise MmoeError(
            f"{source}: numeric_transform names {', '.join(map(repr, unknown))}, not numeric column(s); "
            f"expected some of {', '.join(map(repr, numeric[:8]))}{', ...' if len(numeric) > 8 else ''}"
        )
    bad = {column: name for column, name in chosen.items() if name not in NUMERIC_TRANSFORMS}
    if bad:
        column, name = next(iter(bad.items()))
        raise MmoeError(
            f"{source}: numeric_transform {name!r} of column {column!r} is unknown; expected one of: "
            f"{', '.join(NUMERIC_TRANSFORMS)}"
        )
    return [chosen.get(column, "standard") for column in numeric]


def element_counts(texts: Sequence[str]) -> dict[str, int]:
    """{text: occurrences} of a multi-valued column's values."""
    return dict(Counter(texts))


def multi_value_codes(
    texts: Sequence[str], lengths: np.ndarray, vocabulary: Sequence[str], buckets: int, max_values: int
) -> np.ndarray:
    """int64 [rows, max_values]: per row, the slots of its first `max_values` values (`texts`, all
    rows' values one after another, `lengths` per row: `values.multi_value_texts`), 1 + the
    position in `vocabulary` (0: not in it) or the hash bucket when `buckets`; `PADDING_CODE`
    after a row's last value."""
    if buckets:
        slots = hash_buckets(np.asarray(texts, dtype=object), buckets)
    else:
        slots = (
            pd.Index(list(vocabulary), dtype=object).get_indexer(np.asarray(texts, dtype=object)).astype(np.int64) + 1
        )
    codes = np.full((len(lengths), max_values), PADDING_CODE, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, dtype=np.int64)
    kept = np.minimum(lengths, max_values)
    rows = np.repeat(np.arange(len(lengths)), kept)
    positions = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    codes[rows, positions] = slots[np.repeat(starts, kept) + positions]
    return codes


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of a column's present (non-NaN) values.

    `of` takes them from one array (numpy's own mean and std, so the in-memory encoder's numbers
    are what they always were); `merge` pools two sets of rows exactly (Chan et al.'s update), so
    a table streamed in batches gets the same statistics, up to rounding, as the table whole.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        finite = values[~np.isnan(values)]
        if not finite.size:
            return cls()
        mean = float(finite.mean())
        deviations = finite - mean
        # The same operations as numpy's std, so sqrt(m2 / count) is bit for bit finite.std().
        return cls(int(finite.size), mean, float(np.sum(deviations * deviations)))

    def merge(self, other: Moments) -> Moments:
        if not other.count:
            return self
        if not self.count:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        return Moments(
            count,
            self.mean + delta * other.count / count,
            self.m2 + other.m2 + delta * delta * self.count * other.count / count,
        )

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's default, ddof=0)."""
        return math.sqrt(self.m2 / self.count) if self.count else math.nan


class BinaryLabelCoder:
    """Maps a binary column's two values to 0/1 (the rules: `mmoe.data.values`).

    0/1 and true/false (any case, also yes/no) are recognised; any other pair of values needs
    `positive`, the value that means 1.
    """

    def __init__(self, column: str, positive: str | None = None, negative: str | None = None) -> None:
        self.column = column
        self.positive = positive
        self.negative = negative

    def fit(self, values: pd.Series, source: str) -> BinaryLabelCoder:
        return self.fit_texts(present_label_texts(values), source)

    def fit_texts(self, seen: Iterable[str], source: str) -> BinaryLabelCoder:
        """Fits from the column's distinct present values as text (`label_texts`)."""
        self.positive, self.negative = binary_label_pair(seen, self.column, self.positive, source)
        return self

    def transform(self, values: pd.Series, source: str, first_row: int = 0) -> np.ndarray:
        """1.0 / 0.0, NaN where missing; any other value is an error naming its row (counted from
        `first_row`, the data rows before `values`)."""
        labels, bad = self.match(values)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise self.bad_value(values.iloc[position], first_row + position, source)
        return labels

    def match(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(labels, bad): 1.0 / 0.0 per value, NaN where missing; bad marks a present value that
        is neither of the pair. `transform` without the error (the Arrow encoder codes distinct values)."""
        return binary_label_matches(values, self.positive, self.negative)

    def bad_value(self, value: object, row: int, source: str) -> MmoeError:
        """The error for `value`, at 0-based data row `row`, being neither of the pair."""
        return bad_label_error(value, row, self.column, self.positive, self.negative, source)

    def to_dict(self) -> dict[str, Any]:
        return {"positive": self.positive, "negative": self.negative}


class TableEncoder:
    """Turns a table's rows into a `Split`; fitted once on the training rows.

    numeric, categorical: feature column names. tasks: the label columns with their kinds.
    positive: per binary task, the value that means 1 (needed unless the column is 0/1 or
    true/false). standardize_numeric / standardize_regression: whether numeric features and
    regression labels are standardised (the synthetic study keeps its raw units).
    vocabulary: how the categorical columns' vocabularies are kept and how each enters the model
    (`mmoe.data.vocabulary`; default: every value seen in training, one-hot up to 100 slots).
    numeric_transform: what is done to numeric values before standardising: a name of
    NUMERIC_TRANSFORMS for every numeric column, or {column: name} (`numeric_transforms`).

    Fitted per categorical column: `vocabularies[j]` (its kept training texts, sorted; [] when
    hashed), `hash_sizes[j]` (its number of hash buckets, 0 when it keeps a vocabulary) and
    `embedding_dims[j]` (0: one-hot, e: an embedding of e), which `input_spec` carries.
    """

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        tasks: Sequence[Task],
        positive: Mapping[str, str] | None = None,
        standardize_numeric: bool = True,
        standardize_regression: bool = True,
        vocabulary: VocabularyOptions | None = None,
        numeric_transform: str | Mapping[str, str] | None = None,
    ) -> None:
        self.numeric = list(numeric)
        self.numeric_transforms = numeric_transforms(self.numeric, numeric_transform, "training data")
        self.categorical = list(categorical)
        self.tasks = list(tasks)
        self.positive = dict(positive or {})
        self.standardize_numeric = standardize_numeric
        self.standardize_regression = standardize_regression
        self.means: list[float] = []
        self.stds: list[float] = []
        self.vocabulary = vocabulary or VocabularyOptions()
        self.vocabulary.check_columns(self.categorical, self.numeric, "training data")
        self.vocabularies: list[list[str]] = []
        self.hash_sizes: list[int] = [0] * len(self.categorical)
        self.embedding_dims: list[int] = [0] * len(self.categorical)
        self.label_coders: dict[str, BinaryLabelCoder] = {}
        # The multi-valued columns, in column order (a Parquet list column is one unnamed).
        self.multi_values: list[MultiValue] = [
            multi for column in self.categorical if (multi := self.vocabulary.multi_value_of(column)) is not None
        ]
        self.separator = self.vocabulary.multi_value_separator
        self.fitted = False

    @property
    def shared_columns(self) -> dict[int, int]:
        """{position of a column that shares another's vocabulary: position of that column}."""
        return {
            self.categorical.index(m.column): self.categorical.index(m.shares)
            for m in self.multi_values
            if m.shares is not None
        }

    def multi_value_texts(self, frame: pd.DataFrame, column: str, source: str) -> tuple[list[str], np.ndarray]:
        """A multi-valued column's values as texts and their number per row (`values.multi_value_texts`)."""
        return multi_value_texts(frame[column], column, source, self.separator)

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, source: str = "training data") -> TableEncoder:
        self._check_columns(frame, source, labels=True)
        if len(frame) == 0:
            raise MmoeError(f"{source}: the table has no rows; expected at least one training row")
        numeric = [
            Moments.of(self.transform_numeric_column(j, to_numeric_column(frame[column], source, column)))
            for j, column in enumerate(self.numeric)
        ]
        # Hashed columns need no counts (they keep no vocabulary and are never refused as unique).
        shared = {self.categorical[j] for j in self.shared_columns}
        categories = [
            {}
            if self.vocabulary.buckets(column) or column in shared
            else element_counts(self.multi_value_texts(frame, column, source)[0])
            if self.vocabulary.multi_value_of(column)
            else category_counts(frame[column])
            for column in self.categorical
        ]
        labels: dict[str, set[str] | Moments] = {
            task.name: present_label_texts(frame[task.name])
            if task.kind == "binary"
            else Moments.of(to_numeric_column(frame[task.name], source, task.name))
            for task in self.tasks
        }
        return self.fit_statistics(numeric, categories, labels, source)

    def fit_statistics(
        self,
        numeric: Sequence[Moments],
        categories: Sequence[Mapping[str, int]],
        labels: Mapping[str, Iterable[str] | Moments],
        source: str = "training data",
    ) -> TableEncoder:
        """Fits from statistics of the training rows rather than the rows themselves, so that a
        table read in batches (`mmoe.data.streaming`) ends with the encoder `fit` would give.

        numeric: per numeric column, the moments of its present values, transformed
        (`transform_numeric_column`: a streamed table's batches are transformed before their
        moments are merged, as the whole table's are). categories: per
        categorical column, {value as text ("<missing>" for a missing one): training rows holding
        it} (a multi-valued column: occurrences of each value; anything for a hashed column or
        one that shares another's vocabulary, which keep none). labels: per task,
        a binary task's distinct present label values as text (`values.present_label_texts`) or
        a regression label's moments.
        """
        self.means, self.stds = [], []
        for moments in numeric:
            mean = moments.mean if moments.count else 0.0
            std = moments.std if moments.count > 1 else 1.0
            if not self.standardize_numeric:
                mean, std = 0.0, 1.0
            self.means.append(mean)
            self.stds.append(std if std > 1e-12 else 1.0)
        self._fit_categories(categories, source)
        fitted_tasks = []
        for task in self.tasks:
            if task.kind == "binary":
                texts = labels[task.name]
                assert not isinstance(texts, Moments), f"binary task {task.name!r}: label texts expected"
                coder = BinaryLabelCoder(task.name, self.positive.get(task.name)).fit_texts(texts, source)
                self.label_coders[task.name] = coder
                fitted_tasks.append(Task(task.name, task.kind, given=task.given))
            else:
                label = labels[task.name]
                assert isinstance(label, Moments), f"regression task {task.name!r}: label moments expected"
                mean, std = (label.mean, label.std) if label.count > 1 else (0.0, 1.0)
                if not self.standardize_regression or not math.isfinite(std) or std <= 1e-12:
                    mean, std = 0.0, 1.0
                fitted_tasks.append(Task(task.name, task.kind, mean, std, task.given))
        self.tasks = fitted_tasks
        self.fitted = True
        return self

    def _fit_categories(self, categories: Sequence[Mapping[str, int]], source: str) -> None:
        """Per categorical column: its vocabulary or hash buckets, then its representation, by the
        rules of `mmoe.data.vocabulary`; the weights this asks for are checked against the memory
        available before anything is allocated."""
        options = self.vocabulary
        self.vocabularies, self.hash_sizes, self.embedding_dims = [], [], []
        shared = self.shared_columns
        for j, (column, counts) in enumerate(zip(self.categorical, categories)):
            if j in shared:  # filled in below from the column it shares
                self.vocabularies.append([])
                self.hash_sizes.append(0)
                self.embedding_dims.append(0)
                continue
            buckets = options.buckets(column)
            if not buckets:
                options.check_not_unique(column, len(counts), sum(counts.values()), source)
            vocabulary = [] if buckets else kept_vocabulary(counts, options.min_frequency, options.max_categories)
            self.vocabularies.append(vocabulary)
            self.hash_sizes.append(buckets)
            self.embedding_dims.append(options.embedding_dim_of(column, buckets or len(vocabulary) + 1))
        for j, k in shared.items():  # its codes are those of column k: no vocabulary of its own
            self.embedding_dims[j] = self.embedding_dims[k]
        check_parameter_memory(self.input_spec, source)

    @property
    def cardinalities(self) -> list[int]:
        """Slots per categorical column: its hash buckets, or its vocabulary plus slot 0 (a column
        that shares another's vocabulary: that column's)."""
        slots = [buckets or len(vocabulary) + 1 for vocabulary, buckets in zip(self.vocabularies, self.hash_sizes)]
        for j, k in self.shared_columns.items():
            slots[j] = slots[k]
        return slots

    @property
    def input_spec(self) -> InputSpec:
        dims = tuple(self.embedding_dims) if any(self.embedding_dims) else ()
        return InputSpec(
            tuple(self.numeric), tuple(self.categorical), tuple(self.cardinalities), dims, tuple(self.multi_values)
        )

    def column_codes(self, j: int) -> tuple[list[str], int]:
        """(vocabulary, hash buckets) that categorical column j's values are coded with (those of
        the column it shares, for a column that shares another's)."""
        k = self.shared_columns.get(j, j)
        return self.vocabularies[k], self.hash_sizes[k]

    # -- transforming ----------------------------------------------------------------------------
    def _check_columns(self, frame: pd.DataFrame, source: str, labels: bool) -> None:
        wanted = self.numeric + self.categorical + ([task.name for task in self.tasks] if labels else [])
        missing = [column for column in wanted if column not in frame.columns]
        if missing:
            shown = ", ".join(repr(c) for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise MmoeError(
                f"{source}: missing column(s) {shown}; the table has "
                f"{', '.join(repr(c) for c in list(frame.columns)[:8])}{', ...' if frame.shape[1] > 8 else ''}"
            )

    def raw_numeric(self, frame: pd.DataFrame, source: str = "data") -> np.ndarray:
        """float64 [N, num_numeric]: the numeric columns in the table's own units, NaN where
        missing, before standardising; text or ±inf is an MmoeError naming the column and row.
        The caller checks that the columns are there."""
        numeric = np.empty((len(frame), len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            numeric[:, j] = to_numeric_column(frame[column], source, column)
        return numeric

    def category_codes(self, frame: pd.DataFrame, source: str = "data") -> np.ndarray:
        """int64 [N, num_categorical]: per column, 1 + the value's position in its vocabulary (a
        missing value is the category "<missing>"), 0 for a value unseen in training or left out
        of it (min_frequency, max_categories); for a hashed column, the bucket of the value's text
        (`values.hash_buckets`). Before the columns' offsets into their kind's vocabulary. A
        multi-valued column fills its L positions (`multi_value_codes`), [N, InputSpec.num_codes]
        in all. The caller checks that the columns are there."""
        spec = self.input_spec
        codes = np.empty((len(frame), spec.num_codes), dtype=np.int64)
        for j, (column, start) in enumerate(zip(self.categorical, spec.code_positions)):
            multi = spec.multi_value_of.get(column)
            if multi is not None:
                vocabulary, buckets = self.column_codes(j)
                texts, lengths = self.multi_value_texts(frame, column, source)
                codes[:, start : start + multi.max_values] = multi_value_codes(
                    texts, lengths, vocabulary, buckets, multi.max_values
                )
                continue
            if self.hash_sizes[j]:
                codes[:, start] = hash_buckets(category_texts(frame[column]), self.hash_sizes[j])
                continue
            # Positions are -1 for values unseen in training, so +1 lands them in the reserved slot 0.
            positions = pd.Index(self.vocabularies[j], dtype=object).get_indexer(category_texts(frame[column]))
            codes[:, start] = positions.astype(np.int64) + 1
        return codes

    def transform_features(self, frame: pd.DataFrame, source: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
        """Returns numeric [N, num_numeric] float32 and categorical [N, num_categorical] int64."""
        if not self.fitted:
            raise RuntimeError("TableEncoder.transform before fit")
        self._check_columns(frame, source, labels=False)
        numeric, categorical = self.model_inputs(self.raw_numeric(frame, source), self.category_codes(frame, source))
        return torch.from_numpy(numeric), torch.from_numpy(categorical)

    def transform_numeric_column(self, j: int, values: np.ndarray) -> np.ndarray:
        """Numeric column j's float64 values in the table's units -> the values its moments are of
        (its numeric transform; the values themselves for "standard")."""
        return signed_log1p(values) if self.numeric_transforms[j] == "log" else values

    def model_inputs(self, raw_numeric: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`raw_numeric` and `category_codes` values -> the model's inputs: numeric float32,
        transformed (`numeric_transforms`) and standardised with the training moments (a missing
        value becomes the mean: 0), and int64 category slots in the shared vocabulary (each
        column's codes moved by its offset). Streaming encodes its record batches through here
        too, so both give the same float32 values."""
        logged = [j for j, name in enumerate(self.numeric_transforms) if name == "log"]
        if logged:
            raw_numeric = raw_numeric.copy()
            raw_numeric[:, logged] = signed_log1p(raw_numeric[:, logged])
        numeric = np.nan_to_num(
            (raw_numeric - np.asarray(self.means, dtype=np.float64)) / np.asarray(self.stds, dtype=np.float64), nan=0.0
        ).astype(np.float32)
        spec = self.input_spec
        if not spec.multi_values:
            return numeric, codes + np.asarray(spec.offsets, dtype=np.int64)
        offsets = np.repeat(np.asarray(spec.offsets, dtype=np.int64), spec.column_widths)
        return numeric, np.where(codes == PADDING_CODE, PADDING_CODE, codes + offsets)

    def transform_labels(self, frame: pd.DataFrame, source: str = "data") -> torch.Tensor:
        """[N, num_tasks] float32 in the labels' own units, NaN where missing."""
        labels = np.zeros((len(frame), len(self.tasks)), dtype=np.float32)
        for k, task in enumerate(self.tasks):
            if task.name not in frame.columns:
                raise MmoeError(f"{source}: missing task column {task.name!r}")
            if task.kind == "binary":
                labels[:, k] = self.label_coders[task.name].transform(frame[task.name], source)
            else:
                labels[:, k] = to_numeric_column(frame[task.name], source, task.name)
        return torch.from_numpy(labels)

    def transform(self, frame: pd.DataFrame, source: str = "data") -> Split:
        numeric, categorical = self.transform_features(frame, source)
        return Split(numeric, categorical, self.transform_labels(frame, source))

    # -- saving ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "tasks": [task.to_dict() for task in self.tasks],
            "positive": {name: coder.positive for name, coder in self.label_coders.items()},
            "negative": {name: coder.negative for name, coder in self.label_coders.items()},
            "standardize_numeric": self.standardize_numeric,
            "standardize_regression": self.standardize_regression,
            "means": self.means,
            "stds": self.stds,
            "vocabularies": self.vocabularies,
            # Only when used, so that the encoders of tables without hashing or embeddings read as before.
            **({"hash_buckets": self.hash_sizes} if any(self.hash_sizes) else {}),
            **({"embedding_dims": self.embedding_dims} if any(self.embedding_dims) else {}),
            **(
                {"numeric_transforms": self.numeric_transforms}
                if any(name != "standard" for name in self.numeric_transforms)
                else {}
            ),
            **(
                {"multi_values": [m.to_dict() for m in self.multi_values], "multi_value_separator": self.separator}
                if self.multi_values
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableEncoder:
        encoder = cls(
            data["numeric"],
            data["categorical"],
            [Task.from_dict(t) for t in data["tasks"]],
            data.get("positive"),
            data["standardize_numeric"],
            data["standardize_regression"],
            # encoder.json files written before the option: every column "standard".
            numeric_transform=dict(zip(data["numeric"], data["numeric_transforms"]))
            if "numeric_transforms" in data
            else None,
        )
        encoder.means, encoder.stds = list(data["means"]), list(data["stds"])
        encoder.vocabularies = [list(v) for v in data["vocabularies"]]
        columns = len(encoder.categorical)
        # encoder.json files written before hashing and embeddings: every column a vocabulary, one-hot.
        encoder.hash_sizes = [int(n) for n in data.get("hash_buckets") or [0] * columns]
        encoder.embedding_dims = [int(d) for d in data.get("embedding_dims") or [0] * columns]
        encoder.multi_values = [MultiValue.from_dict(m) for m in data.get("multi_values") or ()]
        encoder.separator = str(data.get("multi_value_separator", "|"))
        encoder.label_coders = {
            name: BinaryLabelCoder(name, positive, data.get("negative", {}).get(name))
            for name, positive in data.get("positive", {}).items()
        }
        encoder.fitted = True
        return encoder

    def save(self, path: str | Path) -> None:
        from mmoe.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TableEncoder:
        return cls.from_dict(json.loads(Path(path).read_text()))


__all__ = [
    "FALSE_WORDS",
    "MISSING_CATEGORY",
    "NUMERIC_TRANSFORMS",
    "TRUE_WORDS",
    "BinaryLabelCoder",
    "Moments",
    "TableEncoder",
    "element_counts",
    "multi_value_codes",
    "numeric_transforms",
    "signed_log1p",
    "to_numeric_column",
]
