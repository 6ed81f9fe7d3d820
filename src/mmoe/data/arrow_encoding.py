"""Record batches of a Parquet table -> encoded arrays, with a `TableEncoder`'s meaning.

A streamed table never becomes one DataFrame, so its values are encoded batch by batch with
pyarrow; every value rule (missing values, numbers and their errors, category and label texts,
the binary label pair) is `mmoe.data.values`', the pandas encoder's own, so the same rows give
the same tensors and the same errors either way (`tests/test_streaming.py` compares them).

`BatchEncoder` fits in one pass (`check` every value, `observe` the training rows' statistics,
`fit` hands them to `TableEncoder.fit_statistics`), or is frozen to a saved encoder
(`encoded_table`), and then `encode`s batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmoe.data.dataset import Task
from mmoe.data.encoders import BinaryLabelCoder, Moments, TableEncoder, element_counts, multi_value_codes
from mmoe.data.parquet import ParquetTable
from mmoe.data.tabular import _shown
from mmoe.data.values import (
    MISSING_CATEGORY,
    category_texts,
    check_two_values,
    hash_buckets,
    missing,
    multi_value_texts,
    present_label_texts,
    to_numeric_column,
)
from mmoe.data.vocabulary import VocabularyOptions
from mmoe.errors import MmoeError


class _CategoryColumn:
    """One categorical column: arrow values -> the text `TableEncoder` gives them -> slot.

    Each distinct value is turned into text once (with pandas, as the in-memory encoder does) and
    remembered, under its key (`_keys`), with the number of training rows holding it. A batch is
    reduced to its distinct values by pyarrow (`unique`, `index_in` over the batch's own values,
    in C++), and only those are looked up in the dict of known values, so a batch costs the same
    however large the vocabulary has grown: about 2 µs a row. (Looking every batch up with
    `index_in` against all known values rebuilt their hash table per batch: 21–31 µs a row once
    3.4M values were known, quadratic over a stream; `benchmarks/vocabulary_pass.py` measures both.)
    Frozen, each known text has its slot: 1 + its position in the fitted vocabulary, 0 when it is
    not in it, or its hash bucket (`values.hash_buckets`).
    """

    def __init__(self, kind: pa.DataType, dtype: Any) -> None:
        self.kind = kind
        self.dtype = dtype  # the pandas dtype the in-memory path sees (ParquetTable.category_dtype)
        self.index: dict[Any, int] = {}  # each known value's key -> its position in `texts`
        self.texts: list[str] = []
        # Training rows and (once frozen) slot per known value, in buffers that grow by doubling
        # (`_grown`): only their first len(texts) entries mean anything.
        self.in_training = np.zeros(0, dtype=np.int64)
        self.missing_in_training = 0  # training rows with a missing value
        self.codes = np.zeros(0, dtype=np.int64)
        self.missing_code = 0  # the slot of a missing value
        self.vocabulary: dict[str, int] | None = None
        self.buckets = 0  # frozen to a hashed column: its number of buckets

    def _slots(self, texts: Sequence[str]) -> np.ndarray:
        """The frozen column's slot per text (module docstring of `mmoe.data.vocabulary`)."""
        if self.buckets:
            return hash_buckets(np.asarray(texts, dtype=object), self.buckets)
        assert self.vocabulary is not None
        return np.array([self.vocabulary.get(t, -1) + 1 for t in texts], dtype=np.int64)

    def _keys(self, distinct: pa.Array) -> list[Any]:
        """A dict key per (present) value, equal exactly when pyarrow's hashing finds the values
        equal: Python values, but a float by its bits (arrow keeps -0.0 and 0.0 apart, and so
        do their texts)."""
        distinct = distinct.cast(self.kind)
        if pa.types.is_floating(distinct.type):
            floats = distinct.to_numpy(zero_copy_only=False)
            return floats.view(f"i{floats.itemsize}").tolist()
        return distinct.to_pylist()

    def _texts(self, values: pa.Array) -> np.ndarray:
        """The values' texts as the in-memory encoder writes them (the table's pandas dtype)."""
        series = values.to_pandas()
        if self.dtype is not None and series.dtype != self.dtype:
            series = series.astype(self.dtype)
        return category_texts(series)

    def _positions(self, values: pa.Array) -> np.ndarray:
        """Position in `texts` per value, -1 for a missing one; values not known yet are
        remembered first (their text, no training rows, and once frozen their slot)."""
        distinct = pc.unique(values)
        distinct = distinct.filter(pa.array(~missing(distinct)))
        if not len(distinct):
            return np.full(len(values), -1, dtype=np.int64)
        keys = self._keys(distinct)
        found = np.fromiter((self.index.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))
        new = np.flatnonzero(found < 0)
        if new.size:
            known = len(self.texts)
            found[new] = np.arange(known, known + new.size)
            self.index.update(zip((keys[i] for i in new), found[new].tolist()))
            texts = self._texts(distinct.take(pa.array(new))).tolist()
            self.texts += texts
            self.in_training = _grown(self.in_training, len(self.texts))
            if self.vocabulary is not None:
                self.codes = _grown(self.codes, len(self.texts))
                self.codes[known : len(self.texts)] = self._slots(texts)
        at = pc.fill_null(pc.index_in(values, value_set=distinct), -1).to_numpy(zero_copy_only=False)
        return np.where(at >= 0, found[at], -1)

    def observe(self, values: pa.Array) -> None:
        """Training rows: their values join the vocabulary."""
        index = self._positions(values)
        known = index[index >= 0]
        if known.size:
            # Per batch, not per known value: the cost stays with the batch as the vocabulary grows.
            distinct, rows = np.unique(known, return_counts=True)
            self.in_training[distinct] += rows
        self.missing_in_training += int(missing(values).sum())

    def fitted_counts(self) -> dict[str, int]:
        """{text: training rows holding it}, as `values.category_counts` gives for the training rows."""
        counts: dict[str, int] = {}
        for text, rows in zip(self.texts, self.in_training[: len(self.texts)].tolist()):
            if rows:
                counts[text] = counts.get(text, 0) + rows
        if self.missing_in_training:
            counts[MISSING_CATEGORY] = counts.get(MISSING_CATEGORY, 0) + self.missing_in_training
        return counts

    def freeze(self, vocabulary: Sequence[str], buckets: int = 0) -> None:
        """From now on `encode` gives each value its slot: 1 + its position in `vocabulary` (0 when
        it is not in it), or its hash bucket when `buckets` > 0."""
        self.vocabulary = {text: k for k, text in enumerate(vocabulary)}
        self.buckets = buckets
        self.codes = self._slots(self.texts)
        self.missing_code = int(self._slots([MISSING_CATEGORY])[0])

    def encode(self, values: pa.Array) -> np.ndarray:
        if self.buckets:
            # Hashed: every row's text hashed directly, so that an unbounded stream of new values
            # is not remembered (memory stays bounded by the batch).
            return hash_buckets(self._texts(values), self.buckets)
        index = self._positions(values)
        slots = np.full(len(index), self.missing_code, dtype=np.int64)
        present = index >= 0
        slots[present] = self.codes[index[present]]
        return slots


def _grown(buffer: np.ndarray, size: int) -> np.ndarray:
    """`buffer` if it holds `size` entries, else a copy at least twice as long, zero-filled after
    the old entries: amortised O(1) per entry added, as a list's append."""
    if size <= len(buffer):
        return buffer
    grown = np.zeros(max(size, 2 * len(buffer)), dtype=buffer.dtype)
    grown[: len(buffer)] = buffer
    return grown


class _MultiValueColumn:
    """One multi-valued column (a list column, or delimited text): its values' texts are those of
    the in-memory encoder (`values.multi_value_texts` on the batch as pandas reads it), counted
    per occurrence in the training rows, then coded by `encoders.multi_value_codes`."""

    def __init__(self, column: str, separator: str, max_values: int) -> None:
        self.column, self.separator, self.max_values = column, separator, max_values
        self.counts: dict[str, int] = {}
        self.vocabulary: list[str] = []
        self.buckets = 0

    def _texts(self, values: pa.Array, source: str) -> tuple[list[str], np.ndarray]:
        return multi_value_texts(values.to_pandas(), self.column, source, self.separator)

    def observe(self, values: pa.Array, source: str = "training data") -> None:
        for text, count in element_counts(self._texts(values, source)[0]).items():
            self.counts[text] = self.counts.get(text, 0) + count

    def fitted_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def freeze(self, vocabulary: Sequence[str], buckets: int = 0) -> None:
        self.vocabulary, self.buckets = list(vocabulary), buckets

    def encode(self, values: pa.Array, source: str = "data") -> np.ndarray:
        """[n, max_values] slots, `PADDING_CODE` after a row's last value."""
        texts, lengths = self._texts(values, source)
        return multi_value_codes(texts, lengths, self.vocabulary, self.buckets, self.max_values)


def _binary_labels(coder: BinaryLabelCoder, values: pa.Array, source: str, rows: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 / NaN per row, as `coder.transform` gives; each distinct value is coded once.
    A value the coder rejects is an error naming the first row that holds it (rows: each
    value's 0-based row in its file)."""
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary.to_pandas()
    coded, bad = coder.match(distinct)
    index = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if bad.any():
        position = int(np.flatnonzero(np.isin(index, np.flatnonzero(bad)))[0])
        raise coder.bad_value(distinct.iloc[int(index[position])], int(rows[position]), source)
    return np.append(coded, np.nan)[index]


class BatchEncoder:
    """Record batches of one Parquet table -> encoded arrays, with a `TableEncoder`'s meaning.

    In fitting mode (`observe`) it gathers the training rows' statistics; after `freeze(encoder)`
    `encode` gives what `encoder.transform` gives for the same rows. One per table, since a
    column's text form depends on the table it is in (see `_CategoryColumn`).
    """

    def __init__(
        self,
        table: ParquetTable,
        numeric: Sequence[str],
        categorical: Sequence[str],
        tasks: Sequence[Task],
        positive: Mapping[str, str] | None = None,
        vocabulary: VocabularyOptions | None = None,
    ) -> None:
        self.table = table
        self.vocabulary = vocabulary or VocabularyOptions()
        self.numeric, self.categorical, self.tasks = list(numeric), list(categorical), list(tasks)
        self.positive = dict(positive or {})
        self.categories: list[_CategoryColumn | _MultiValueColumn] = []
        for column in self.categorical:
            multi = self.vocabulary.multi_value_of(column)
            if multi is None:
                self.categories.append(_CategoryColumn(table.types[column], table.category_dtype(column)))
            else:
                separator = self.vocabulary.multi_value_separator
                self.categories.append(_MultiValueColumn(column, separator, multi.max_values))
        shared = {m.column for m in self.vocabulary.multi_value if m.shares is not None}
        # A column that shares another's vocabulary counts nothing (see TableEncoder.fit).
        self.counted = [not self.vocabulary.buckets(c) and c not in shared for c in self.categorical]
        self.numeric_moments = [Moments() for _ in self.numeric]
        self.label_moments = {task.name: Moments() for task in self.tasks if task.kind == "regression"}
        self.all_labels: dict[str, set[str]] = {task.name: set() for task in self.tasks if task.kind == "binary"}
        self.train_labels: dict[str, set[str]] = {task.name: set() for task in self.tasks if task.kind == "binary"}
        self.encoder: TableEncoder | None = None

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical + [task.name for task in self.tasks]

    # -- fitting ---------------------------------------------------------------------------------
    def check(self, batch: pa.RecordBatch, source: str, first_row: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Checks every value of a batch of the main table as `load_table` does; returns its
        numeric features and labels (NaN = missing) for `observe`, and the rows with a label."""
        rows = np.arange(first_row, first_row + batch.num_rows)
        numbers = {c: to_numeric_column(self.table.column(batch, c), source, c, rows) for c in self.numeric}
        for column, category in zip(self.categorical, self.categories):
            if isinstance(category, _MultiValueColumn):  # every row's cells, named by their row in the file
                multi_value_texts(
                    self.table.column(batch, column).to_pandas(), column, source, category.separator, first_row
                )
        labelled = np.zeros(batch.num_rows, dtype=bool)
        for task in self.tasks:
            values = self.table.column(batch, task.name)
            if task.kind == "regression":
                numbers[task.name] = to_numeric_column(values, source, task.name, rows)
                labelled |= ~np.isnan(numbers[task.name])
                continue
            seen = self.all_labels[task.name]
            seen.update(present_label_texts(values))
            # As soon as a third value shows, rather than after the whole table.
            check_two_values(seen, task.name, source)
            labelled |= ~missing(values)
        return numbers, labelled

    def observe(self, batch: pa.RecordBatch, numbers: Mapping[str, np.ndarray], train: np.ndarray) -> None:
        """Training rows (`train`: a mask over the batch) join the statistics."""
        if not train.any():
            return
        mask = pa.array(train)
        for j, column in enumerate(self.numeric):
            self.numeric_moments[j] = self.numeric_moments[j].merge(Moments.of(numbers[column][train]))
        for column, category, counted in zip(self.categorical, self.categories, self.counted):
            if counted:  # a hashed column keeps no vocabulary: nothing to count
                category.observe(self.table.column(batch, column).filter(mask))
        for task in self.tasks:
            if task.kind == "regression":
                moments = Moments.of(numbers[task.name][train])
                self.label_moments[task.name] = self.label_moments[task.name].merge(moments)
            else:
                self.train_labels[task.name].update(
                    present_label_texts(self.table.column(batch, task.name).filter(mask))
                )

    def fit(self, source: str) -> TableEncoder:
        """The encoder of the observed training rows; label checks over every row first, as `load_table`."""
        for task in self.tasks:
            if task.kind == "binary":
                BinaryLabelCoder(task.name, self.positive.get(task.name)).fit_texts(self.all_labels[task.name], source)
        labels: dict[str, set[str] | Moments] = {**self.train_labels, **self.label_moments}
        encoder = TableEncoder(self.numeric, self.categorical, self.tasks, self.positive, vocabulary=self.vocabulary)
        encoder.fit_statistics(self.numeric_moments, [c.fitted_counts() for c in self.categories], labels, source)
        self.freeze(encoder)
        return encoder

    def freeze(self, encoder: TableEncoder) -> BatchEncoder:
        """Encodes with `encoder` from now on (its fitted tasks replace the ones given)."""
        self.encoder = encoder
        wanted = {task.name for task in self.tasks}
        self.tasks = [task for task in encoder.tasks if task.name in wanted]
        for j, category in enumerate(self.categories):
            category.freeze(*encoder.column_codes(j))
        return self

    # -- encoding --------------------------------------------------------------------------------
    def encode(
        self, batch: pa.RecordBatch, source: str, rows: np.ndarray | int, labels: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """numeric [n, num_numeric] float32, categorical [n, num_categorical] int64 (shared-vocabulary
        slots), labels [n, tasks] float32 in their own units, NaN where missing (empty when
        `labels` is False). rows: each row's 0-based row in its file, or the first one's."""
        encoder = self.encoder
        assert encoder is not None, "BatchEncoder.encode before fit/freeze"
        n = batch.num_rows
        if isinstance(rows, (int, np.integer)):
            rows = np.arange(int(rows), int(rows) + n)
        numeric = np.empty((n, len(self.numeric)), dtype=np.float64)
        for j, column in enumerate(self.numeric):
            numeric[:, j] = to_numeric_column(self.table.column(batch, column), source, column, rows)
        spec = encoder.input_spec
        codes = np.empty((n, spec.num_codes), dtype=np.int64)
        for column, category, start, width in zip(
            self.categorical, self.categories, spec.code_positions, spec.column_widths
        ):
            if isinstance(category, _MultiValueColumn):
                codes[:, start : start + width] = category.encode(self.table.column(batch, column), source)
            else:
                codes[:, start] = category.encode(self.table.column(batch, column))
        numeric, categorical = encoder.model_inputs(numeric, codes)
        coded = np.empty((n, len(self.tasks) if labels else 0), dtype=np.float32)
        for k, task in enumerate(self.tasks if labels else []):
            values = self.table.column(batch, task.name)
            if task.kind == "binary":
                coded[:, k] = _binary_labels(encoder.label_coders[task.name], values, source, rows)
            else:
                coded[:, k] = to_numeric_column(values, source, task.name, rows)
        return numeric, categorical, coded


def encoded_table(
    path: str | Path, encoder: TableEncoder, labels: bool, missing_message: str
) -> tuple[ParquetTable, BatchEncoder]:
    """The table at `path` reading the fitted encoder's feature columns (and task columns, with
    labels), with a batch encoder frozen to it. A missing column is an MmoeError:
    "{path}: missing column(s) {names}" + missing_message."""
    table = ParquetTable(path)
    wanted = encoder.numeric + encoder.categorical + ([task.name for task in encoder.tasks] if labels else [])
    absent = [c for c in wanted if c not in table.columns]
    if absent:
        raise MmoeError(f"{path}: missing column(s) {_shown(absent)}{missing_message}")
    table.use(wanted)
    batch_encoder = BatchEncoder(
        table,
        encoder.numeric,
        encoder.categorical,
        encoder.tasks if labels else [],
        encoder.positive,
        VocabularyOptions(multi_value=tuple(encoder.multi_values), multi_value_separator=encoder.separator),
    )
    return table, batch_encoder.freeze(encoder)


__all__ = ["BatchEncoder", "encoded_table"]
