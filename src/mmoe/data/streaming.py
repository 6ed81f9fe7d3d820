"""Tables larger than memory: a Parquet file or directory read in batches (`--streaming`).

`load_streaming_table` takes `load_table`'s arguments and returns a `MultiTaskData` whose training
rows are never all in memory. docs/tables.md ("Streaming") has the rules; in short:

- **One pass fits the encoders.** The table is read once, record batch by record batch, with
  pyarrow. Every value is checked as `load_table` checks it (numbers, ±inf, binary labels), each
  row is assigned to train / validation / test, and the training rows feed running statistics:
  numeric moments merged batch by batch (`Moments.merge`), the set of category texts, the label
  values. `TableEncoder.fit_statistics` turns them into the encoder `TableEncoder.fit` would give
  on the same rows (the same vocabularies and label coding; means and stds equal up to rounding).
- **Splits are drawn row by row.** Row i of the table (files in `read_table`'s order) goes to
  validation when a hash of (split_seed, i) falls below validation_fraction, to test when it falls
  in the next test_fraction, else to training; rows without any label are dropped, as in
  `load_table`. The split needs no row count and no permutation, so it costs no memory, and the
  same table and seed always give the same split; the shares are the fractions on average rather
  than exactly. `validation_path` / `test_path` give those splits from separate Parquet tables
  instead. Validation and test rows are kept in memory, encoded (4 bytes per numeric column and
  task, 8 per categorical column, per row), so metrics always cover the whole of them.
- **Training batches are shuffled with bounded memory.** Each epoch draws one seed from the
  trainer's generator. The row groups of the table are read in an order drawn from it, `interleave`
  row groups side by side (the next record batch comes from one of them at random), and the
  encoded rows pass through a shuffle buffer of `shuffle_rows` rows: when it is full it is
  shuffled, half of it leaves as mini-batches and the other half stays to mix with what comes
  next. The same seed gives the same batches; unlike the in-memory full shuffle, two rows far
  apart in the table rarely meet in one batch, and rows of one row group leave close together,
  so tables written with many small row groups (about 100,000 rows or fewer) shuffle best.

Reading and encoding run in a background thread (`prefetch` batches ahead) so that they overlap
the training step; the order of the batches does not depend on it.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from mmoe.data.dataset import MultiTaskData, RowSource, Split, Task
# The in-memory encoder's own text forms, so that both paths name categories and labels alike.
from mmoe.data.encoders import (MISSING_CATEGORY, BinaryLabelCoder, Moments, TableEncoder, _category_strings,
                                _label_texts, to_numeric_column)
from mmoe.data.tabular import (PARQUET_SUFFIXES, _shown, check_fraction, infer_column_types, parquet_files,
                               resolve_columns, resolve_tasks)
from mmoe.errors import MmoeError

READ_ROWS = 16_384        # rows per record batch read from a row group
SHUFFLE_ROWS = 131_072    # rows in the shuffle buffer (about 16 MB at 128 bytes per encoded row)
INTERLEAVE = 4            # row groups read side by side
PREFETCH = 8              # mini-batches the background reader may run ahead (0: no thread)
TRAIN_METRICS_ROWS = 1_000_000   # training's final train-split metrics: a sample of about this many rows
SAMPLE_SALT = 0x5A17             # offsets the seed of that sample's hash from the split's
EXPECTED_PARQUET = "expected a Parquet file (.parquet, .pq) or a directory of Parquet files"
SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2


# -- the files ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Piece:
    """One row group: the unit whose reading order is shuffled."""

    file: int
    row_group: int
    first_row: int   # in its file
    start: int       # in the whole table (the row index the split rule hashes)
    rows: int


class ParquetTable:
    """A Parquet file or a directory of them, opened for reading in batches.

    The files are those `read_table` reads, in the same order, so row i is the same row in both.
    Every file must have the same columns (pandas index columns aside); `use` then checks that
    the columns a run reads have compatible types in every file (e.g. int32 and int64, or int and
    float, which are read as the wider type) and rejects the rest with the file named.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise MmoeError(f"{path}: no such file or directory; {EXPECTED_PARQUET}")
        if path.is_dir():
            files = parquet_files(path)
        elif path.suffix.lower() in PARQUET_SUFFIXES:
            files = [path]
        else:
            what = repr(path.suffix) if path.suffix else "a file without an extension"
            raise MmoeError(f"{path}: streaming reads Parquet only, not {what}; {EXPECTED_PARQUET} (convert the "
                            f"table once, e.g. with pandas' to_parquet)")
        self.path = path
        self.files = files
        self.metadata: list[pq.FileMetaData] = []
        self.schemas: list[pa.Schema] = []
        for file in files:
            try:
                handle = pq.ParquetFile(file)
                self.metadata.append(handle.metadata)
                self.schemas.append(handle.schema_arrow)
                handle.close()
            except Exception as error:  # pyarrow raises several unrelated types for a bad file
                reason = " ".join(str(error).split())[:200]
                raise MmoeError(f"{file}: cannot read as Parquet ({type(error).__name__}: {reason}); "
                                f"expected a Parquet file") from None
        self.columns = _data_columns(self.schemas[0], files[0])
        for file, schema in zip(files[1:], self.schemas[1:]):
            names = _data_columns(schema, file)
            missing = [c for c in self.columns if c not in names]
            extra = [c for c in names if c not in self.columns]
            if missing or extra:
                what = "; ".join(part for part in (f"no column(s) {_shown(missing)}" if missing else "",
                                                   f"extra column(s) {_shown(extra)}" if extra else "") if part)
                raise MmoeError(f"{file}: {what} compared with {files[0].name}; expected every Parquet file in "
                                f"{path} to have the same columns")
        self.pieces: list[_Piece] = []
        start = 0
        for f, metadata in enumerate(self.metadata):
            first = 0
            for g in range(metadata.num_row_groups):
                rows = metadata.row_group(g).num_rows
                if rows:
                    self.pieces.append(_Piece(f, g, first, start, rows))
                first += rows
                start += rows
        self.rows = start
        if self.rows == 0:
            raise MmoeError(f"{path}: the table has columns but no data rows; expected at least one row")
        self.types: dict[str, pa.DataType] = {}
        self._frame: pd.DataFrame | None = None

    def use(self, columns: Sequence[str]) -> None:
        """Fixes the columns to read and the type each is read as (the widest over the files)."""
        types = {}
        for column in columns:
            target = _plain_type(self.schemas[0].field(column).type)
            for file, schema in zip(self.files[1:], self.schemas[1:]):
                found = _plain_type(schema.field(column).type)
                wider = _unified(target, found)
                if wider is None:
                    raise MmoeError(f"{file}: column {column!r} is {found} but {target} in {self.files[0].name}; "
                                    f"expected the same type in every Parquet file of {self.path}")
                target = wider
            types[column] = target
        self.types = types

    def is_dictionary(self, column: str) -> bool:
        """Stored as a dictionary (a pandas categorical) in the first file."""
        return pa.types.is_dictionary(self.schemas[0].field(column).type)

    def pandas_dtypes(self) -> pd.DataFrame:
        """An empty frame with the first file's columns as pandas reads them (its pandas metadata
        included, e.g. nullable Int64), for `infer_column_types` and `category_dtype`."""
        if self._frame is None:
            self._frame = self.schemas[0].empty_table().to_pandas()
        return self._frame

    def category_dtype(self, column: str) -> Any:
        """The dtype `read_table` gives `column` (None for a dictionary column, whose categories
        are named as they are), so that a streamed value is turned into the same text: notably
        pandas reads an integer column with a missing value anywhere as floats ("3.0", not "3")."""
        if self.is_dictionary(column):
            return None
        dtype = self.pandas_dtypes()[column].dtype
        numpy_kind = dtype.kind if isinstance(dtype, np.dtype) else None
        if numpy_kind in ("i", "u") and (pa.types.is_floating(self.types[column]) or self.has_missing(column)):
            return np.dtype("float64")
        return dtype

    def has_missing(self, column: str) -> bool:
        """Whether any file has a null in `column`: from the row groups' statistics, else by
        reading that one column."""
        for file, metadata in zip(self.files, self.metadata):
            index = metadata.schema.names.index(column) if column in metadata.schema.names else None
            known = index is not None
            for g in range(metadata.num_row_groups):
                statistics = metadata.row_group(g).column(index).statistics if known else None
                if statistics is None or not statistics.has_null_count:
                    known = False
                    break
                if statistics.null_count:
                    return True
            if not known and pq.read_table(file, columns=[column]).column(0).null_count:
                return True
        return False

    def read(self, columns: Sequence[str], read_rows: int = READ_ROWS,
             piece: _Piece | None = None) -> Iterator[tuple[int, int, int, pa.RecordBatch]]:
        """(file index, first row in its file, first row in the table, batch) for every record
        batch of `piece`, or of the whole table in order."""
        pieces = [piece] if piece is not None else self.pieces
        for part in pieces:
            file = self.files[part.file]
            handle = pq.ParquetFile(file, metadata=self.metadata[part.file])
            try:
                first, start = part.first_row, part.start
                # use_threads=False: decoding stays in this (the reader's) thread, off the cores
                # torch was given.
                batches = handle.iter_batches(batch_size=read_rows, row_groups=[part.row_group],
                                              columns=list(columns), use_threads=False)
                while True:
                    try:
                        batch = next(batches, None)
                    except (pa.ArrowException, OSError) as error:   # a damaged page or a file changed meanwhile
                        reason = " ".join(str(error).split())[:200]
                        raise MmoeError(f"{file}: cannot read row group {part.row_group} ({type(error).__name__}: "
                                        f"{reason}); expected a readable Parquet file") from None
                    if batch is None:
                        break
                    yield part.file, first, start, batch
                    first += batch.num_rows
                    start += batch.num_rows
            finally:
                handle.close()

    def column(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        """A batch's column in the type `use` fixed (dictionaries decoded, narrower types widened)."""
        values = batch.column(name)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        target = self.types.get(name, values.type)
        return values if values.type == target else values.cast(target)


def _data_columns(schema: pa.Schema, file: Path) -> list[str]:
    """The columns pandas reads as columns (a stored index is not one)."""
    index = {entry for entry in ((schema.pandas_metadata or {}).get("index_columns") or []) if isinstance(entry, str)}
    names = [name for name in schema.names if name not in index]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MmoeError(f"{file}: duplicate column name(s) {', '.join(map(repr, repeated))}; "
                        f"expected every column name once")
    return names


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_large_string(kind) or getattr(pa.types, "is_string_view", lambda _: False)(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.binary()
    return kind


def _unified(first: pa.DataType, second: pa.DataType) -> pa.DataType | None:
    if first == second:
        return first
    try:
        schema = pa.unify_schemas([pa.schema([("c", first)]), pa.schema([("c", second)])], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return schema.field("c").type


# -- the split rule -------------------------------------------------------------------------------
_MASK = (1 << 64) - 1


def _splitmix(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def row_uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """A number in [0, 1) for each of rows start..start+count-1, a hash of (seed, row): the same
    row and seed always give the same number, whatever batch the row is read in."""
    z = np.arange(start, start + count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = z + np.uint64(_splitmix(seed & _MASK))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


@dataclass(frozen=True)
class SplitRule:
    """Which split a row of the main table belongs to (before unlabelled rows are dropped)."""

    seed: int
    validation: float   # share of rows; 0 when the validation rows come from a file
    test: float

    def assign(self, start: int, count: int) -> np.ndarray:
        """TRAIN (0), VALIDATION (1) or TEST (2) for rows start..start+count-1."""
        if not self.validation and not self.test:
            return np.zeros(count, dtype=np.int8)
        u = row_uniforms(self.seed, start, count)
        return np.where(u < self.validation, VALIDATION, np.where(u < self.validation + self.test, TEST, TRAIN)
                        ).astype(np.int8)


# -- encoding record batches ----------------------------------------------------------------------
class _CategoryColumn:
    """One categorical column: arrow values -> the text `TableEncoder` gives them -> slot.

    Each distinct value is turned into text once (with pandas, as the in-memory encoder does) and
    remembered; later batches are looked up with pyarrow's `index_in`, in C++.
    """

    def __init__(self, kind: pa.DataType, dtype: Any) -> None:
        self.kind = kind
        self.dtype = dtype   # the pandas dtype the in-memory path sees (ParquetTable.category_dtype)
        self.known = pa.array([], type=kind)
        self.texts: list[str] = []
        self.in_training = np.zeros(0, dtype=bool)
        self.missing_in_training = False
        self.codes = np.zeros(1, dtype=np.int64)   # per known value, then one entry for missing
        self.vocabulary: dict[str, int] | None = None

    def _lookup(self, values: pa.Array) -> np.ndarray:
        """Index into `known` per value, -1 for a missing value or one not seen yet."""
        found = pc.index_in(values, value_set=self.known) if len(self.known) else pa.nulls(len(values), pa.int32())
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def _learn(self, values: pa.Array, index: np.ndarray) -> np.ndarray:
        """Remembers the values not known yet (index -1, not missing) and looks them up again."""
        if not (index < 0).any():
            return index
        new = pc.unique(values.filter(pa.array(index < 0)))
        new = new.filter(pc.invert(pc.is_null(new, nan_is_null=True)))
        if not len(new):
            return index
        series = new.to_pandas()
        if self.dtype is not None and series.dtype != self.dtype:
            series = series.astype(self.dtype)
        texts = _category_strings(series).tolist()
        self.known = pa.concat_arrays([self.known, new.cast(self.kind)])
        self.texts += texts
        self.in_training = np.concatenate([self.in_training, np.zeros(len(texts), dtype=bool)])
        if self.vocabulary is not None:
            missing = self.codes[-1:]
            self.codes = np.concatenate([self.codes[:-1], [self.vocabulary.get(t, -1) for t in texts], missing])
        return self._lookup(values)

    def observe(self, values: pa.Array) -> None:
        """Training rows: their values join the vocabulary."""
        index = self._learn(values, self._lookup(values))
        self.in_training[index[index >= 0]] = True
        if pc.any(pc.is_null(values, nan_is_null=True)).as_py():
            self.missing_in_training = True

    def fitted_vocabulary(self) -> set[str]:
        texts = {text for text, used in zip(self.texts, self.in_training) if used}
        return texts | ({MISSING_CATEGORY} if self.missing_in_training else set())

    def freeze(self, vocabulary: Sequence[str]) -> None:
        """From now on `encode` gives each value its slot in `vocabulary` (-1: never seen in training)."""
        self.vocabulary = {text: k for k, text in enumerate(vocabulary)}
        self.codes = np.array([self.vocabulary.get(t, -1) for t in self.texts] +
                              [self.vocabulary.get(MISSING_CATEGORY, -1)], dtype=np.int64)

    def encode(self, values: pa.Array) -> np.ndarray:
        index = self._learn(values, self._lookup(values))
        return self.codes[index]   # index -1 (missing) picks the last entry: the missing value's slot


def _numbers(values: pa.Array, source: str, column: str, rows: np.ndarray) -> np.ndarray:
    """float64 with NaN for missing, as `to_numeric_column` reads the column; an error names the
    file and the row (`rows`: each value's 0-based row in its file)."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if not np.isinf(numbers).any():
            return numbers
        series = values.to_pandas()
    else:
        series = values.to_pandas()
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = (np.isnan(numbers) & ~series.isna().to_numpy()) | np.isinf(numbers)
        if not bad.any():
            return numbers
    # The error path: let the in-memory check word the message, on the first bad row alone.
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    position = int(np.flatnonzero((np.isnan(numbers) & ~series.isna().to_numpy()) | np.isinf(numbers))[0])
    to_numeric_column(series.iloc[[position]].reset_index(drop=True), source, column, first_row=int(rows[position]))
    raise AssertionError("unreachable: to_numeric_column accepted a bad value")


def _label_values(values: pa.Array) -> list[str]:
    """The distinct present values of a binary label column, as the label coder writes them."""
    distinct = pc.unique(values)
    distinct = distinct.filter(pc.invert(pc.is_null(distinct, nan_is_null=True)))
    return _label_texts(distinct.to_pandas())


def _binary_labels(coder: BinaryLabelCoder, values: pa.Array, source: str, rows: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 / NaN per row; each distinct value is coded once."""
    encoded = pc.dictionary_encode(values)
    distinct = encoded.dictionary.to_pandas()
    try:
        coded = coder.transform(distinct, source)
    except MmoeError:
        # Name the first row holding a value the coder rejects, as the in-memory path does.
        bad = []
        for k in range(len(distinct)):
            try:
                coder.transform(distinct.iloc[[k]].reset_index(drop=True), source)
            except MmoeError:
                bad.append(k)
        index = encoded.indices.to_numpy(zero_copy_only=False)
        position = int(np.flatnonzero(np.isin(index, bad))[0])
        coder.transform(pd.Series([distinct.iloc[int(index[position])]], dtype=distinct.dtype), source,
                        first_row=int(rows[position]))
        raise AssertionError("unreachable: the label coder accepted a bad value") from None
    index = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return np.append(coded, np.nan)[index]


class BatchEncoder:
    """Record batches of one Parquet table -> encoded arrays, with a `TableEncoder`'s meaning.

    In fitting mode (`observe`) it gathers the training rows' statistics; after `freeze(encoder)`
    `encode` gives what `encoder.transform` gives for the same rows. One per table, since a
    column's text form depends on the table it is in (see `_CategoryColumn`).
    """

    def __init__(self, table: ParquetTable, numeric: Sequence[str], categorical: Sequence[str],
                 tasks: Sequence[Task], positive: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.numeric, self.categorical, self.tasks = list(numeric), list(categorical), list(tasks)
        self.positive = dict(positive or {})
        self.categories = [_CategoryColumn(table.types[c], table.category_dtype(c)) for c in self.categorical]
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
        numbers = {c: _numbers(self.table.column(batch, c), source, c, rows) for c in self.numeric}
        labelled = np.zeros(batch.num_rows, dtype=bool)
        for task in self.tasks:
            values = self.table.column(batch, task.name)
            if task.kind == "regression":
                numbers[task.name] = _numbers(values, source, task.name, rows)
                labelled |= ~np.isnan(numbers[task.name])
                continue
            seen = self.all_labels[task.name]
            seen.update(_label_values(values))
            if len(seen) > 2:   # as soon as a third value shows, rather than after the whole table
                BinaryLabelCoder(task.name, self.positive.get(task.name)).fit(pd.Series(sorted(seen)), source)
            labelled |= ~pc.is_null(values, nan_is_null=True).to_numpy(zero_copy_only=False)
        return numbers, labelled

    def observe(self, batch: pa.RecordBatch, numbers: Mapping[str, np.ndarray], train: np.ndarray) -> None:
        """Training rows (`train`: a mask over the batch) join the statistics."""
        if not train.any():
            return
        mask = pa.array(train)
        for j, column in enumerate(self.numeric):
            self.numeric_moments[j] = self.numeric_moments[j].merge(Moments.of(numbers[column][train]))
        for column, category in zip(self.categorical, self.categories):
            category.observe(self.table.column(batch, column).filter(mask))
        for task in self.tasks:
            if task.kind == "regression":
                moments = Moments.of(numbers[task.name][train])
                self.label_moments[task.name] = self.label_moments[task.name].merge(moments)
            else:
                self.train_labels[task.name].update(_label_values(self.table.column(batch, task.name).filter(mask)))

    def fit(self, source: str) -> TableEncoder:
        """The encoder of the observed training rows; label checks over every row first, as `load_table`."""
        for task in self.tasks:
            if task.kind == "binary":
                BinaryLabelCoder(task.name, self.positive.get(task.name)).fit(
                    pd.Series(sorted(self.all_labels[task.name]), dtype=object), source)
        labels: dict[str, Any] = {name: pd.Series(sorted(texts), dtype=object)
                                  for name, texts in self.train_labels.items()}
        labels.update(self.label_moments)
        encoder = TableEncoder(self.numeric, self.categorical, self.tasks, self.positive)
        encoder.fit_statistics(self.numeric_moments, [c.fitted_vocabulary() for c in self.categories], labels, source)
        self.freeze(encoder)
        return encoder

    def freeze(self, encoder: TableEncoder) -> BatchEncoder:
        """Encodes with `encoder` from now on (its fitted tasks replace the ones given)."""
        self.encoder = encoder
        wanted = {task.name for task in self.tasks}
        self.tasks = [task for task in encoder.tasks if task.name in wanted]
        for category, vocabulary in zip(self.categories, encoder.vocabularies):
            category.freeze(vocabulary)
        return self

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, batch: pa.RecordBatch, source: str, rows: np.ndarray | int,
               labels: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
            numeric[:, j] = _numbers(self.table.column(batch, column), source, column, rows)
        codes = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, (column, category) in enumerate(zip(self.categorical, self.categories)):
            codes[:, j] = category.encode(self.table.column(batch, column)) + 1  # -1 (unseen) -> slot 0
        numeric, categorical = encoder.model_inputs(numeric, codes)
        coded = np.empty((n, len(self.tasks) if labels else 0), dtype=np.float32)
        for k, task in enumerate(self.tasks if labels else []):
            values = self.table.column(batch, task.name)
            if task.kind == "binary":
                coded[:, k] = _binary_labels(encoder.label_coders[task.name], values, source, rows)
            else:
                coded[:, k] = _numbers(values, source, task.name, rows)
        return numeric, categorical, coded


# -- shuffling ------------------------------------------------------------------------------------
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _take(arrays: Arrays, index: np.ndarray | slice) -> Arrays:
    return tuple(array[index] for array in arrays)  # type: ignore[return-value]


def _concat(parts: list[Arrays]) -> Arrays:
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]


class ShuffleBuffer:
    """Rows in, shuffled mini-batches out, holding at most about `capacity` + one block of rows.

    When `capacity` rows are in, they are shuffled; a whole number of batches, about half of
    them, leave, and the rest stay to mix with the rows that come next (so a row's stay is
    random, and rows of different blocks meet). `drain` shuffles and empties what is left; only
    the very last batch may be short.
    """

    def __init__(self, capacity: int, batch_size: int, rng: np.random.Generator) -> None:
        self.capacity = max(capacity, 2 * batch_size)
        self.batch_size = batch_size
        self.rng = rng
        self.parts: list[Arrays] = []
        self.rows = 0

    def add(self, arrays: Arrays) -> Iterator[Arrays]:
        if len(arrays[0]):
            self.parts.append(arrays)
            self.rows += len(arrays[0])
        if self.rows < self.capacity:
            return
        merged, order = _concat(self.parts), self.rng.permutation(self.rows)
        leave = max(self.rows // 2 // self.batch_size, 1) * self.batch_size
        # Two gathers into fresh arrays: the rows leaving now, and those that stay (so the batches
        # handed out, views of `leaving`, never keep the staying rows' memory alive, nor it theirs).
        leaving, kept = _take(merged, order[:leave]), _take(merged, order[leave:])
        self.parts, self.rows = [kept], self.rows - leave
        for start in range(0, leave, self.batch_size):
            yield _take(leaving, slice(start, start + self.batch_size))

    def drain(self) -> Iterator[Arrays]:
        if not self.rows:
            return
        shuffled = _take(_concat(self.parts), self.rng.permutation(self.rows))
        self.parts, self.rows = [], 0
        for start in range(0, len(shuffled[0]), self.batch_size):
            yield _take(shuffled, slice(start, start + self.batch_size))


class _Stop(Exception):
    pass


def _in_background(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced by a daemon thread at most `depth` ahead; an error there is raised here,
    and leaving the loop early stops the thread."""
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                channel.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def work() -> None:
        try:
            for item in items:
                put(("item", item))
            put(("done", done))
        except _Stop:
            pass
        except BaseException as error:  # handed to the consumer, which raises it
            try:
                put(("error", error))
            except _Stop:
                pass

    worker = threading.Thread(target=work, name="mmoe-streaming-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = channel.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


# -- the training rows ----------------------------------------------------------------------------
class StreamingRows:
    """The training rows of a streamed table: what the trainer reads in place of a `Split`.

    `shuffled_batches` and `len` are all the trainer needs; `batches` reads the rows in table
    order and `evaluate` gives a model's metrics on them (one pass).
    """

    def __init__(self, table: ParquetTable, encoder: BatchEncoder, rule: SplitRule, rows: int, *,
                 read_rows: int = READ_ROWS, shuffle_rows: int = SHUFFLE_ROWS, interleave: int = INTERLEAVE,
                 prefetch: int = PREFETCH, split: int = TRAIN) -> None:
        self.table, self.encoder, self.rule, self.rows = table, encoder, rule, rows
        self.read_rows, self.shuffle_rows = read_rows, shuffle_rows
        self.interleave, self.prefetch, self.split = max(1, interleave), prefetch, split
        self.device: torch.device | None = None

    def __len__(self) -> int:
        return self.rows

    def to(self, device: torch.device | str) -> StreamingRows:
        """The same rows, each batch moved to `device` as it is yielded."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def _split(self, arrays: Arrays) -> Split:
        numeric, categorical, labels = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        split = Split(numeric, categorical, labels)
        return split if self.device is None or self.device.type == "cpu" else split.to(self.device)

    def _blocks(self, pieces: Sequence[_Piece], rng: np.random.Generator | None,
                share: float = 1.0) -> Iterator[Arrays]:
        """Encoded rows of this split, record batch by record batch; `rng` picks which of
        `interleave` open row groups gives the next batch (None: one after another). share < 1:
        only a sample of the rows, each kept when a second hash of its index is below `share`."""
        columns = self.encoder.columns
        width = self.interleave if rng is not None else 1
        waiting = iter(pieces)
        readers: list[Iterator[tuple[int, int, int, pa.RecordBatch]]] = []
        while True:
            while len(readers) < width:
                piece = next(waiting, None)
                if piece is None:
                    break
                readers.append(self.table.read(columns, self.read_rows, piece))
            if not readers:
                return
            k = int(rng.integers(len(readers))) if rng is not None and len(readers) > 1 else 0
            item = next(readers[k], None)
            if item is None:
                readers.pop(k)
                continue
            file, first, start, batch = item
            chosen = self.rule.assign(start, batch.num_rows) == self.split
            if share < 1.0:
                chosen &= row_uniforms(self.rule.seed + SAMPLE_SALT, start, batch.num_rows) < share
            rows = np.arange(first, first + batch.num_rows)
            if not chosen.all():
                batch, rows = batch.filter(pa.array(chosen)), rows[chosen]
            if not batch.num_rows:
                continue
            arrays = self.encoder.encode(batch, str(self.table.files[file]), rows)
            labelled = ~np.isnan(arrays[2]).all(axis=1)
            yield arrays if labelled.all() else _take(arrays, labelled)

    def _epoch(self, seed: int, batch_size: int) -> Iterator[Split]:
        rng = np.random.default_rng(seed)
        order = [self.table.pieces[i] for i in rng.permutation(len(self.table.pieces))]
        buffer = ShuffleBuffer(self.shuffle_rows, batch_size, rng)
        for block in self._blocks(order, rng):
            for arrays in buffer.add(block):
                yield self._split(arrays)
        for arrays in buffer.drain():
            yield self._split(arrays)

    def shuffled_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Split]:
        """One epoch of mini-batches of `batch_size` rows (the last may be smaller) in an order
        drawn from `generator`: one number per epoch is drawn from it, which seeds the row-group
        order, the interleaving and the shuffle buffer (module docstring)."""
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        batches = self._epoch(seed, batch_size)
        return _in_background(batches, self.prefetch) if self.prefetch > 0 else batches

    def batches(self, share: float = 1.0) -> Iterator[Split]:
        """The rows in table order (or a sample of about `share` of them, the same every time),
        one batch per record batch read (at most `read_rows` rows)."""
        for block in self._blocks(self.table.pieces, None, share):
            yield self._split(block)

    def sample(self, max_rows: int | None) -> _SampledRows:
        """These rows as a `RowSource`, or a sample of about `max_rows` of them when there are more
        (drawn row by row, the same sample every time)."""
        return _SampledRows(self, min(1.0, max_rows / self.rows) if max_rows and self.rows else 1.0)


@dataclass
class _SampledRows:
    """A share of a streamed split's rows, read in table order (a `RowSource`)."""

    rows: StreamingRows
    share: float

    def batches(self) -> Iterator[Split]:
        return self.rows.batches(self.share)


class _Splits(Mapping):
    """`MultiTaskData.splits()` of a streamed table: validation and test (in memory). Asking for
    "train" is an error that says how to evaluate on the training rows, rather than a KeyError, so
    that `Run.evaluate("train")` explains itself."""

    def __init__(self, data: StreamingTableData) -> None:
        self.data = data

    def __getitem__(self, name: str) -> Split:
        if name == "train":
            raise MmoeError("the training rows of a streamed table are not held in memory; evaluate on them "
                            "with `mmoe evaluate RUN --split train` or `mmoe.train.trainer.evaluate_data`")
        if name not in ("validation", "test"):
            raise KeyError(name)
        return getattr(self.data, name)

    def __iter__(self) -> Iterator[str]:
        return iter(("validation", "test"))

    def __len__(self) -> int:
        return 2


@dataclass
class StreamingTableData(MultiTaskData):
    """A `MultiTaskData` whose `train` is `StreamingRows`. `splits()` holds validation and test
    only; `metric_splits`, which training ends by measuring, adds a sample of the training rows."""

    def splits(self) -> Mapping[str, Split]:  # type: ignore[override]
        return _Splits(self)

    def metric_splits(self) -> dict[str, Split | RowSource]:
        """train: a sample of about TRAIN_METRICS_ROWS training rows (the same sample every time;
        every row when there are fewer), read in one pass; validation and test in memory."""
        return {"train": self.train.sample(TRAIN_METRICS_ROWS),  # type: ignore[attr-defined]
                "validation": self.validation, "test": self.test}


# -- loading --------------------------------------------------------------------------------------
def _fractions(validation_fraction: float, test_fraction: float, validation_path: Any, test_path: Any,
               source: str) -> tuple[float, float]:
    shares = {}
    for name, fraction, path in (("validation", validation_fraction, validation_path),
                                 ("test", test_fraction, test_path)):
        if path is not None:
            shares[name] = 0.0
            continue
        check_fraction(source, name, fraction)
        shares[name] = float(fraction)
    if shares["validation"] + shares["test"] >= 1.0:
        raise MmoeError(f"{source}: validation and test fractions {shares['validation']} + {shares['test']} leave no "
                        f"training rows; expected a sum below 1")
    return shares["validation"], shares["test"]


def _encode_held(encoder: BatchEncoder, held: list[tuple[str, np.ndarray, pa.RecordBatch]], rows: int) -> Split:
    """Encodes the kept validation / test record batches into one `Split`, freeing each batch as
    it goes (the encoded rows are smaller than the raw ones)."""
    numeric = np.empty((rows, len(encoder.numeric)), dtype=np.float32)
    categorical = np.empty((rows, len(encoder.categorical)), dtype=np.int64)
    labels = np.empty((rows, len(encoder.tasks)), dtype=np.float32)
    filled = 0
    while held:
        source, file_rows, batch = held.pop(0)
        part = encoder.encode(batch, source, file_rows)   # only labelled rows were kept
        n = len(part[0])
        numeric[filled:filled + n], categorical[filled:filled + n], labels[filled:filled + n] = part
        filled += n
    return Split(torch.from_numpy(numeric[:filled]), torch.from_numpy(categorical[:filled]),
                 torch.from_numpy(labels[:filled]))


def _read_extra(path: str | Path, main: ParquetTable, encoder: TableEncoder, role: str,
                read_rows: int) -> Split:
    """A separate validation / test table, read in batches and encoded in memory (every row kept,
    labelled or not, as `load_table` keeps them)."""
    table, batch_encoder = encoded_table(path, encoder, True, f" that {main.path} has; expected the same feature "
                                          f"and task columns as the training table ({role} data)")
    parts = [batch_encoder.encode(batch, str(table.files[file]), first)
             for file, first, _, batch in table.read(batch_encoder.columns, read_rows)]
    return Split(*(torch.from_numpy(np.concatenate([p[i] for p in parts])) for i in range(3)))


def load_streaming_table(path: str | Path, tasks: Sequence[Task] | str, features: Sequence[str] | None = None,
                         column_types: Mapping[str, str] | None = None, positive: Mapping[str, str] | None = None,
                         validation_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
                         validation_path: str | Path | None = None, test_path: str | Path | None = None, *,
                         read_rows: int = READ_ROWS, shuffle_rows: int = SHUFFLE_ROWS, interleave: int = INTERLEAVE,
                         prefetch: int = PREFETCH) -> StreamingTableData:
    """A Parquet table (file or directory) as a `MultiTaskData` whose training rows are streamed.

    The arguments mean what they mean for `load_table` (Parquet only, everywhere); the split is
    drawn row by row from `split_seed` (module docstring). read_rows: rows per record batch read;
    shuffle_rows: rows in the shuffle buffer; interleave: row groups read side by side; prefetch:
    mini-batches a background thread prepares ahead (0: none). One pass over the table fits the
    encoder and collects the validation and test rows.
    """
    source = str(path)
    task_list = resolve_tasks(tasks, source)
    table = ParquetTable(path)
    shares = _fractions(validation_fraction, test_fraction, validation_path, test_path, source)
    feature_list, positive_values = resolve_columns(table.columns, source, task_list, features, positive)
    columns = feature_list + [task.name for task in task_list]
    table.use(columns)
    numeric, categorical = infer_column_types(table.pandas_dtypes(), feature_list, column_types)
    rule = SplitRule(split_seed, *shares)
    batch_encoder = BatchEncoder(table, numeric, categorical, task_list, positive_values)

    counts = {name: 0 for name in SPLITS}
    dropped = 0
    held: dict[int, list[tuple[str, np.ndarray, pa.RecordBatch]]] = {VALIDATION: [], TEST: []}
    for file, first, start, batch in table.read(batch_encoder.columns, read_rows):
        file_source = str(table.files[file])
        numbers, labelled = batch_encoder.check(batch, file_source, first)
        assigned = rule.assign(start, batch.num_rows)
        dropped += int((~labelled).sum())
        train = labelled & (assigned == TRAIN)
        batch_encoder.observe(batch, numbers, train)
        counts["train"] += int(train.sum())
        for code, name in ((VALIDATION, "validation"), (TEST, "test")):
            chosen = labelled & (assigned == code)
            if chosen.any():
                counts[name] += int(chosen.sum())
                held[code].append((file_source, np.flatnonzero(chosen) + first, batch.filter(pa.array(chosen))))
    if dropped == table.rows:
        raise MmoeError(f"{source}: no row has a value in any task column ({_shown([t.name for t in task_list])}); "
                        f"expected labelled rows")
    for name, share in (("validation", shares[0]), ("test", shares[1])):
        if share and not counts[name]:
            raise MmoeError(f"{source}: no row fell into the {name} split ({share} of {table.rows - dropped} "
                            f"labelled row(s), drawn row by row); expected at least one {name} row (use a larger "
                            f"table, a larger {name}_fraction, or a separate {name} file)")
    if not counts["train"]:
        raise MmoeError(f"{source}: no training rows are left after the validation and test rows; expected at least "
                        f"one training row (use a larger table or smaller fractions)")

    encoder = batch_encoder.fit(source)
    splits: dict[str, Split] = {}
    for code, name, extra in ((VALIDATION, "validation", validation_path), (TEST, "test", test_path)):
        if extra is not None:
            splits[name] = _read_extra(extra, table, encoder, name, read_rows)
            counts[name] = len(splits[name])
        else:
            splits[name] = _encode_held(batch_encoder, held[code], counts[name])
    train = StreamingRows(table, batch_encoder, rule, counts["train"], read_rows=read_rows, shuffle_rows=shuffle_rows,
                          interleave=interleave, prefetch=prefetch)
    info = {
        "dataset": "table",
        "path": source,
        "column_types": {column: ("numeric" if column in numeric else "categorical") for column in feature_list},
        "rows": counts,
        "dropped_unlabelled_rows": dropped,
        "split_seed": split_seed,
        "streaming": {"files": len(table.files), "row_groups": len(table.pieces), "table_rows": table.rows,
                      "read_rows": read_rows, "shuffle_rows": shuffle_rows, "interleave": interleave},
    }
    if validation_path is not None:
        info["validation_path"] = str(validation_path)
    if test_path is not None:
        info["test_path"] = str(test_path)
    return StreamingTableData(tasks=list(encoder.tasks), input_spec=encoder.input_spec,
                              train=train,  # type: ignore[arg-type]
                              validation=splits["validation"], test=splits["test"], encoder=encoder, info=info)


# -- a saved encoder's tables ----------------------------------------------------------------------
def run_split_rows(spec: dict[str, Any], encoder: TableEncoder, split: str, source: str,
                   read_rows: int = READ_ROWS) -> StreamingRows:
    """The rows of one split of a streamed data set (`spec`, the dataset description a run saved),
    encoded with its fitted `encoder` (no refitting): the split rule picks the rows training used.
    source: who asks, for the missing-column message (" that the run DIR was trained on")."""
    if split not in SPLITS:
        raise MmoeError(f"unknown split {split!r}; expected train, validation or test")
    extra = spec.get(f"{split}_path")
    path = extra if split != "train" and extra else spec["path"]
    table, batch_encoder = encoded_table(path, encoder, True, source)
    if path != spec["path"]:
        rule = SplitRule(0, 0.0, 0.0)   # a separate file is the split, every row of it
        code = TRAIN
    else:
        shares = _fractions(spec.get("validation_fraction", 0.1), spec.get("test_fraction", 0.1),
                            spec.get("validation_path"), spec.get("test_path"), str(path))
        rule = SplitRule(int(spec.get("split_seed", 0)), *shares)
        code = SPLITS.index(split)
    return StreamingRows(table, batch_encoder, rule, 0, read_rows=read_rows, prefetch=0, split=code)


def encoded_table(path: str | Path, encoder: TableEncoder, labels: bool,
                  missing_message: str) -> tuple[ParquetTable, BatchEncoder]:
    """The table at `path` reading the fitted encoder's feature columns (and task columns, with
    labels), with a batch encoder frozen to it. A missing column is an MmoeError:
    "{path}: missing column(s) {names}" + missing_message."""
    table = ParquetTable(path)
    wanted = encoder.numeric + encoder.categorical + ([task.name for task in encoder.tasks] if labels else [])
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise MmoeError(f"{path}: missing column(s) {_shown(missing)}{missing_message}")
    table.use(wanted)
    batch_encoder = BatchEncoder(table, encoder.numeric, encoder.categorical, encoder.tasks if labels else [],
                                 encoder.positive)
    return table, batch_encoder.freeze(encoder)


__all__ = ["BatchEncoder", "ParquetTable", "ShuffleBuffer", "SplitRule", "StreamingRows", "StreamingTableData",
           "encoded_table", "load_streaming_table", "row_uniforms", "run_split_rows"]
