"""Predicting and measuring with a fitted model, on rows in memory or read batch by batch.

One path for all: `predict_outputs` turns encoded rows (a `Split`, or a `RowSource` yielding
`Split`s) into raw outputs; `to_predictions` maps them to probabilities and values in label units;
`evaluate_predictions` scores them. The estimator, `mmoe evaluate`/`predict` and the streamed
variants below all go through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmoe.data.dataset import Split
from mmoe.data.encoders import TableEncoder
from mmoe.data.streaming import PARQUET_SUFFIXES, ParquetTable, BatchEncoder, encoded_table, run_split_rows
from mmoe.errors import MmoeError
from mmoe.io import atomic_write
from mmoe.train.metrics import to_predictions
from mmoe.train.trainer import evaluate_source, predict_outputs


def _saved_encoder(run: Any, path: str | Path) -> TableEncoder:
    if run.encoder is None:
        raise MmoeError(f"{run.directory}: the run has no encoder.json, so it cannot encode {path}; expected a run "
                        f"trained on a table (--data)")
    return run.encoder


def evaluate_run(run: Any, split: str = "test", batch_size: int = 65_536) -> dict[str, dict]:
    """Metrics of a run trained with streaming on one split of its own table, read in one pass
    with the saved encoder (the split rule picks the same rows as in training)."""
    spec = run.config["dataset"]
    rows = run_split_rows(spec, _saved_encoder(run, spec["path"]), split,
                          f" that the run {run.directory} was trained on")
    return evaluate_source(run.model, run.tasks, rows.sample(None), batch_size)


def _table_rows(run: Any, path: str | Path, labels: bool) -> tuple[ParquetTable, BatchEncoder]:
    """A table to evaluate or predict on, with the run's saved encoder (labels: read the tasks too)."""
    return encoded_table(path, _saved_encoder(run, path), labels,
                         f"; expected the columns the run {run.directory} was trained on")


class _TableBatches:
    """Every row of a Parquet table, encoded batch by batch with a frozen encoder (a `RowSource`)."""

    def __init__(self, table: ParquetTable, encoder: BatchEncoder, batch_size: int) -> None:
        self.table, self.encoder, self.batch_size = table, encoder, batch_size

    def batches(self) -> Iterator[Split]:
        for file, first, _, batch in self.table.read(self.encoder.columns, self.batch_size):
            arrays = self.encoder.encode(batch, str(self.table.files[file]), first)
            yield Split(*(torch.from_numpy(a) for a in arrays))


def evaluate_table(run: Any, path: str | Path, batch_size: int = 65_536) -> dict[str, dict]:
    """Metrics of a saved run on a labelled Parquet table read in batches (every row counts, as
    in `Run.evaluate_frame`)."""
    table, batch_encoder = _table_rows(run, path, labels=True)
    return evaluate_source(run.model, run.tasks, _TableBatches(table, batch_encoder, batch_size), batch_size)


def predict_table(run: Any, path: str | Path, out: str | Path, keep: Sequence[str] = (),
                  batch_size: int = 65_536) -> int:
    """Writes a saved run's predictions for a Parquet table read in batches to `out` (.parquet or
    .pq: Parquet, else CSV), one column per task after the `keep` columns, atomically; returns
    the number of rows."""
    table, batch_encoder = _table_rows(run, path, labels=False)
    tasks = run.tasks
    keep = list(keep)
    missing = [c for c in keep if c not in table.columns]
    if missing:
        raise MmoeError(f"{path}: --keep column(s) {', '.join(map(repr, missing))} not in the table")
    clash = [c for c in keep if c in {task.name for task in tasks}]
    if clash:
        raise MmoeError(f"--keep column(s) {', '.join(map(repr, clash))} share a task's name; keep other columns")
    columns = list(dict.fromkeys(batch_encoder.columns + keep))
    out = Path(out)
    parquet = out.suffix.lower() in PARQUET_SUFFIXES
    written = 0

    def frames() -> Iterator[pd.DataFrame]:
        for file, first, _, batch in table.read(columns, batch_size):
            numeric, categorical, _ = batch_encoder.encode(batch, str(table.files[file]), first, labels=False)
            split = Split(torch.from_numpy(numeric), torch.from_numpy(categorical),
                          torch.zeros(batch.num_rows, len(tasks)))
            predictions = to_predictions(tasks, predict_outputs(run.model, split, batch_size)).numpy()
            frame = batch.select(keep).to_pandas() if keep else pd.DataFrame(index=range(batch.num_rows))
            for k, task in enumerate(tasks):
                frame[task.name] = predictions[:, k]
            yield frame

    def write(temp: Path) -> None:
        nonlocal written
        writer = None
        try:
            for frame in frames():
                if parquet:
                    chunk = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(temp, chunk.schema)
                    writer.write_table(chunk)
                else:
                    frame.to_csv(temp, mode="a" if written else "w", header=not written, index=False)
                written += len(frame)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write)
    return written


__all__ = ["evaluate_run", "evaluate_table", "predict_table"]
