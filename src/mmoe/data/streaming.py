"""Tables larger than memory: a Parquet file or directory read in batches (`--streaming`).

`load_streaming_table` takes `load_table`'s arguments and returns a `MultiTaskData` whose training
rows are never all in memory. docs/tables.md ("Streaming") has the rules; in short:

- **One pass fits the encoders.** The table is read once, record batch by record batch, with
  pyarrow. Every value is checked as `load_table` checks it (numbers, ±inf, binary labels), each
  row is assigned to train / validation / test, and the training rows feed running statistics:
  numeric moments merged batch by batch (`Moments.merge`), the training rows per category text,
  the label values. `TableEncoder.fit_statistics` turns them into the encoder `TableEncoder.fit` would give
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

This module holds the streamed data set itself: the training rows (`StreamingRows`), the loading
pass (`load_streaming_table`) and a saved run's split of its table (`run_split_rows`). Its parts
live in modules of their own: `mmoe.data.parquet` (reading), `mmoe.data.arrow_encoding`
(encoding batches), `mmoe.data.split_rule` (the row hash) and `mmoe.data.shuffle` (the shuffle
buffer and the background reader).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmoe.data.arrow_encoding import BatchEncoder, encoded_table
from mmoe.data.assemble import fitted_data
from mmoe.data.dataset import MultiTaskData, RowSource, Split, Task
from mmoe.data.encoders import TableEncoder
from mmoe.data.parquet import PARQUET_SUFFIXES, READ_ROWS, ParquetTable, RowGroup
from mmoe.data.shuffle import Arrays, ShuffleBuffer, in_background, take_rows
from mmoe.data.split_rule import SPLITS, TEST, TRAIN, VALIDATION, SplitRule, row_uniforms
from mmoe.data.tabular import (
    _shown,
    check_fraction,
    infer_column_types,
    multi_valued_types,
    resolve_columns,
    resolve_tasks,
)
from mmoe.data.vocabulary import VocabularyOptions
from mmoe.errors import MmoeError

SHUFFLE_ROWS = 131_072  # rows in the shuffle buffer (about 16 MB at 128 bytes per encoded row)
INTERLEAVE = 4  # row groups read side by side
PREFETCH = 8  # mini-batches the background reader may run ahead (0: no thread)
TRAIN_METRICS_ROWS = 1_000_000  # training's final train-split metrics: a sample of about this many rows
SAMPLE_SALT = 0x5A17  # offsets the seed of that sample's hash from the split's


# -- the training rows ----------------------------------------------------------------------------
class StreamingRows:
    """The training rows of a streamed table: what the trainer reads in place of a `Split`.

    `shuffled_batches` and `len` are all the trainer needs; `batches` reads the rows in table
    order, and `sample` gives them (or a sample of them) as a `RowSource` to measure a model on.
    """

    def __init__(
        self,
        table: ParquetTable,
        encoder: BatchEncoder,
        rule: SplitRule,
        rows: int,
        *,
        read_rows: int = READ_ROWS,
        shuffle_rows: int = SHUFFLE_ROWS,
        interleave: int = INTERLEAVE,
        prefetch: int = PREFETCH,
        split: int = TRAIN,
    ) -> None:
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

    def _blocks(
        self, pieces: Sequence[RowGroup], rng: np.random.Generator | None, share: float = 1.0
    ) -> Iterator[Arrays]:
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
            yield arrays if labelled.all() else take_rows(arrays, labelled)

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
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        batches = self._epoch(seed, batch_size)
        return in_background(batches, self.prefetch) if self.prefetch > 0 else batches

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
            raise MmoeError(
                "the training rows of a streamed table are not held in memory; evaluate on them "
                "with `mmoe evaluate RUN --split train` or `mmoe.train.trainer.evaluate_data`"
            )
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
        return {
            "train": self.train.sample(TRAIN_METRICS_ROWS),  # type: ignore[attr-defined]
            "validation": self.validation,
            "test": self.test,
        }


# -- loading --------------------------------------------------------------------------------------
def _fractions(
    validation_fraction: float, test_fraction: float | None, validation_path: Any, test_path: Any, source: str
) -> tuple[float, float]:
    """The shares of the rows held out for validation and test (0 where a file gives the split, and
    for test_fraction None: no test rows, as in memory)."""
    shares = {}
    for name, fraction, path in (
        ("validation", validation_fraction, validation_path),
        ("test", test_fraction, test_path),
    ):
        if path is not None or (name == "test" and fraction is None):
            shares[name] = 0.0
            continue
        check_fraction(source, name, fraction)
        shares[name] = float(fraction or 0.0)  # check_fraction refused None and 0
    if shares["validation"] + shares["test"] >= 1.0:
        raise MmoeError(
            f"{source}: validation and test fractions {shares['validation']} + {shares['test']} leave no "
            f"training rows; expected a sum below 1"
        )
    return shares["validation"], shares["test"]


def _encode_held(encoder: BatchEncoder, held: list[tuple[str, np.ndarray, pa.RecordBatch]], rows: int) -> Split:
    """Encodes the kept validation / test record batches into one `Split`, freeing each batch as
    it goes (the encoded rows are smaller than the raw ones)."""
    numeric = np.empty((rows, len(encoder.numeric)), dtype=np.float32)
    assert encoder.encoder is not None
    categorical = np.empty((rows, encoder.encoder.input_spec.num_codes), dtype=np.int64)
    labels = np.empty((rows, len(encoder.tasks)), dtype=np.float32)
    filled = 0
    while held:
        source, file_rows, batch = held.pop(0)
        part = encoder.encode(batch, source, file_rows)  # only labelled rows were kept
        n = len(part[0])
        numeric[filled : filled + n], categorical[filled : filled + n], labels[filled : filled + n] = part
        filled += n
    return Split(
        torch.from_numpy(numeric[:filled]), torch.from_numpy(categorical[:filled]), torch.from_numpy(labels[:filled])
    )


def _read_extra(path: str | Path, main: ParquetTable, encoder: TableEncoder, role: str, read_rows: int) -> Split:
    """A separate validation / test table, read in batches and encoded in memory (every row kept,
    labelled or not, as `load_table` keeps them)."""
    table, batch_encoder = encoded_table(
        path,
        encoder,
        True,
        f" that {main.path} has; expected the same feature and task columns as the training table ({role} data)",
    )
    parts = [
        batch_encoder.encode(batch, str(table.files[file]), first)
        for file, first, _, batch in table.read(batch_encoder.columns, read_rows)
    ]
    return Split(*(torch.from_numpy(np.concatenate([p[i] for p in parts])) for i in range(3)))


def load_streaming_table(
    path: str | Path,
    tasks: Sequence[Task] | str,
    features: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    positive: Mapping[str, str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float | None = 0.1,
    split_seed: int = 0,
    validation_path: str | Path | None = None,
    test_path: str | Path | None = None,
    *,
    read_rows: int = READ_ROWS,
    shuffle_rows: int = SHUFFLE_ROWS,
    interleave: int = INTERLEAVE,
    prefetch: int = PREFETCH,
    embedding_dim: int | None = None,
    embed: Sequence[str] | None = None,
    one_hot: Sequence[str] | None = None,
    min_frequency: int | None = None,
    max_categories: int | None = None,
    hash_buckets: int | Mapping[str, int] | None = None,
    multi_value: Sequence[str] | Mapping[str, Mapping[str, Any]] | str | None = None,
    multi_value_separator: str | None = None,
) -> StreamingTableData:
    """A Parquet table (file or directory) as a `MultiTaskData` whose training rows are streamed.

    The arguments mean what they mean for `load_table` (Parquet only, everywhere); the split is
    drawn row by row from `split_seed` (module docstring). read_rows: rows per record batch read;
    shuffle_rows: rows in the shuffle buffer; interleave: row groups read side by side; prefetch:
    mini-batches a background thread prepares ahead (0: none). One pass over the table fits the
    encoder and collects the validation and test rows. embedding_dim ... multi_value_separator: as for
    `load_table` (the same rules, `mmoe.data.vocabulary`; a hashed column is hashed row by row
    and keeps no vocabulary, so its memory does not grow with the stream's values).
    """
    source = str(path)
    task_list = resolve_tasks(tasks, source)
    vocabulary = VocabularyOptions.of(
        embedding_dim, embed, one_hot, min_frequency, max_categories, hash_buckets, multi_value, multi_value_separator
    )
    table = ParquetTable(path)
    shares = _fractions(validation_fraction, test_fraction, validation_path, test_path, source)
    feature_list, positive_values = resolve_columns(table.columns, source, task_list, features, positive)
    columns = feature_list + [task.name for task in task_list]
    table.use(columns)
    listed = [c for c in feature_list if pa.types.is_list(table.types[c]) or pa.types.is_large_list(table.types[c])]
    vocabulary = vocabulary.with_list_columns(listed)
    types = multi_valued_types(vocabulary, column_types, feature_list)
    numeric, categorical = infer_column_types(table.pandas_dtypes(), feature_list, types)
    vocabulary.check_columns(categorical, numeric, source)
    rule = SplitRule(split_seed, *shares)
    batch_encoder = BatchEncoder(table, numeric, categorical, task_list, positive_values, vocabulary)

    counts = dict.fromkeys(SPLITS, 0)
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
        raise MmoeError(
            f"{source}: no row has a value in any task column ({_shown([t.name for t in task_list])}); "
            f"expected labelled rows"
        )
    for name, share in (("validation", shares[0]), ("test", shares[1])):
        if share and not counts[name]:
            raise MmoeError(
                f"{source}: no row fell into the {name} split ({share} of {table.rows - dropped} "
                f"labelled row(s), drawn row by row); expected at least one {name} row (use a larger "
                f"table, a larger {name}_fraction, or a separate {name} file)"
            )
    if not counts["train"]:
        raise MmoeError(
            f"{source}: no training rows are left after the validation and test rows; expected at least "
            f"one training row (use a larger table or smaller fractions)"
        )

    encoder = batch_encoder.fit(source)
    splits: dict[str, Split | StreamingRows] = {}
    for code, name, extra in ((VALIDATION, "validation", validation_path), (TEST, "test", test_path)):
        if extra is not None:
            splits[name] = _read_extra(extra, table, encoder, name, read_rows)
        else:
            splits[name] = _encode_held(batch_encoder, held[code], counts[name])
    splits["train"] = StreamingRows(
        table,
        batch_encoder,
        rule,
        counts["train"],
        read_rows=read_rows,
        shuffle_rows=shuffle_rows,
        interleave=interleave,
        prefetch=prefetch,
    )
    info = {
        "dataset": "table",
        "path": source,
        "column_types": {column: ("numeric" if column in numeric else "categorical") for column in feature_list},
        "rows": None,  # the split sizes, filled in by fitted_data
        "dropped_unlabelled_rows": dropped,
        "split_seed": split_seed,
        "streaming": {
            "files": len(table.files),
            "row_groups": len(table.pieces),
            "table_rows": table.rows,
            "read_rows": read_rows,
            "shuffle_rows": shuffle_rows,
            "interleave": interleave,
        },
    }
    if validation_path is not None:
        info["validation_path"] = str(validation_path)
    if test_path is not None:
        info["test_path"] = str(test_path)
    data = fitted_data(encoder, splits, info, StreamingTableData)
    assert isinstance(data, StreamingTableData)
    return data


# -- a saved encoder's tables ----------------------------------------------------------------------
def run_split_rows(
    spec: dict[str, Any], encoder: TableEncoder, split: str, source: str, read_rows: int = READ_ROWS
) -> StreamingRows:
    """The rows of one split of a streamed data set (`spec`, the dataset description a run saved),
    encoded with its fitted `encoder` (no refitting): the split rule picks the rows training used.
    source: who asks, for the missing-column message (" that the run DIR was trained on")."""
    if split not in SPLITS:
        raise MmoeError(f"unknown split {split!r}; expected train, validation or test")
    extra = spec.get(f"{split}_path")
    path = extra if split != "train" and extra else spec["path"]
    table, batch_encoder = encoded_table(path, encoder, True, source)
    if path != spec["path"]:
        rule = SplitRule(0, 0.0, 0.0)  # a separate file is the split, every row of it
        code = TRAIN
    else:
        shares = _fractions(
            spec.get("validation_fraction", 0.1),
            spec.get("test_fraction", 0.1),
            spec.get("validation_path"),
            spec.get("test_path"),
            str(path),
        )
        rule = SplitRule(int(spec.get("split_seed", 0)), *shares)
        code = SPLITS.index(split)
    return StreamingRows(table, batch_encoder, rule, 0, read_rows=read_rows, prefetch=0, split=code)


__all__ = [
    "PARQUET_SUFFIXES",
    "BatchEncoder",
    "ParquetTable",
    "StreamingRows",
    "StreamingTableData",
    "encoded_table",
    "load_streaming_table",
    "run_split_rows",
]
