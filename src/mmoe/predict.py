"""Predicting and measuring with a fitted model, on rows in memory or read batch by batch.

One path for all: `mmoe.baselines.outputs_of` turns encoded rows (a `Split`, or a `RowSource`
yielding `Split`s) into raw outputs (a network's `predict_outputs`, or a baseline's: LightGBM);
`predictions_of` maps them to probabilities and values in label units; `evaluate_predictions`
scores them. `MultiTaskEstimator.predict`/`score`, `mmoe
evaluate`/`predict`, their streamed variants and `mmoe export`'s check of the exported file all
go through it. The fitted model comes as a `mmoe.runs.Run` (a saved run, or an estimator's
fitted state handed over as one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmoe.baselines import Predictor, evaluate_rows, outputs_of
from mmoe.data.dataset import RowSource, Split, Task
from mmoe.data.streaming import (
    PARQUET_SUFFIXES,
    BatchEncoder,
    ParquetTable,
    encoded_table,
    run_split_rows,
)
from mmoe.data.tabular import read_table
from mmoe.errors import MmoeError
from mmoe.io import atomic_write
from mmoe.runs import Run
from mmoe.spec import prediction_names
from mmoe.train.metrics import Metrics, to_predictions

BATCH_ROWS = 65_536


# -- the one predict path ---------------------------------------------------------------------------
def predictions_of(
    model: Predictor, tasks: list[Task], rows: Split | RowSource, batch_size: int = BATCH_ROWS
) -> np.ndarray:
    """[N, K + J] float32: per task, the positive class's probability (binary) or the value in the
    label's own units (regression), then per conditional task its joint probability (columns
    named by `mmoe.spec.prediction_names`), for encoded rows in memory or read batch by batch."""
    return to_predictions(tasks, outputs_of(model, rows, batch_size)).numpy()


def features_split(run: Run, frame: pd.DataFrame, source: str = "data") -> Split:
    """`frame`'s feature columns encoded with the run's encoder (labels unread: NaN); any other
    column, a task's label included, is ignored."""
    numeric, categorical = run.require_encoder(source).transform_features(frame, source)
    return Split(numeric, categorical, torch.full((len(frame), len(run.tasks)), float("nan")))


def predict_frame(run: Run, frame: pd.DataFrame, source: str = "data", batch_size: int = BATCH_ROWS) -> pd.DataFrame:
    """One column per task (probability or value), then one per conditional task's joint event
    ("click&purchase": P(click ∧ purchase)), indexed like `frame`."""
    tasks = run.tasks
    predictions = predictions_of(run.model, tasks, features_split(run, frame, source), batch_size)
    return pd.DataFrame({name: predictions[:, k] for k, name in enumerate(prediction_names(tasks))}, index=frame.index)


def evaluate_frame(run: Run, frame: pd.DataFrame, source: str = "data", batch_size: int = BATCH_ROWS) -> Metrics:
    """{task: metrics} on a labelled table (each task on the rows that have its label)."""
    split = run.require_encoder(source).transform(frame, source)
    return evaluate_rows(run.model, run.tasks, split, batch_size)


# -- tables read batch by batch ---------------------------------------------------------------------
def _table_rows(run: Run, path: str | Path, labels: bool) -> tuple[ParquetTable, BatchEncoder]:
    """A table to evaluate or predict on, with the run's saved encoder (labels: read the tasks too)."""
    return encoded_table(
        path, run.require_encoder(path), labels, f"; expected the columns the run {run.directory} was trained on"
    )


class _TableBatches:
    """Every row of a Parquet table, encoded batch by batch with a frozen encoder (a `RowSource`)."""

    def __init__(self, table: ParquetTable, encoder: BatchEncoder, batch_size: int) -> None:
        self.table, self.encoder, self.batch_size = table, encoder, batch_size

    def batches(self) -> Iterator[Split]:
        for file, first, _, batch in self.table.read(self.encoder.columns, self.batch_size):
            arrays = self.encoder.encode(batch, str(self.table.files[file]), first)
            yield Split(*(torch.from_numpy(a) for a in arrays))


def evaluate_run(run: Run, split: str = "test", batch_size: int = BATCH_ROWS) -> Metrics:
    """Metrics of a run trained with streaming on one split of its own table, read in one pass
    with the saved encoder (the split rule picks the same rows as in training)."""
    spec = run.config["dataset"]
    rows = run_split_rows(
        spec, run.require_encoder(spec["path"]), split, f" that the run {run.directory} was trained on"
    )
    return evaluate_rows(run.model, run.tasks, rows.sample(None), batch_size)


def evaluate_table(run: Run, path: str | Path, batch_size: int = BATCH_ROWS) -> Metrics:
    """Metrics of a saved run on a labelled Parquet table read in batches (every row counts, as
    in `evaluate_frame`)."""
    table, batch_encoder = _table_rows(run, path, labels=True)
    return evaluate_rows(run.model, run.tasks, _TableBatches(table, batch_encoder, batch_size), batch_size)


def evaluate(run: Run, split: str = "test", data: str | Path | None = None, streaming: bool = False) -> Metrics:
    """What `mmoe evaluate` prints: {task: metrics} on `data` (a labelled table; streaming: a
    Parquet table read in batches), or else on `split` of the run's own data set (a run trained
    with streaming reads its table again in batches)."""
    if data is not None:
        return evaluate_table(run, data) if streaming else evaluate_frame(run, read_table(data), str(data))
    spec = run.config.get("dataset")
    if isinstance(spec, dict) and spec.get("streaming"):
        return evaluate_run(run, split)
    return run.evaluate(split)


# -- writing predictions ----------------------------------------------------------------------------
def _check_keep(keep: Sequence[str], columns: Sequence[str], tasks: list[Task], source: str | Path) -> list[str]:
    keep = list(keep)
    missing = [c for c in keep if c not in columns]
    if missing:
        raise MmoeError(
            f"{source}: option keep names column(s) {', '.join(map(repr, missing))} that are not in the "
            f"table; expected input columns to copy into the predictions"
        )
    clash = [c for c in keep if c in set(prediction_names(tasks))]
    if clash:
        raise MmoeError(
            f"option keep names column(s) {', '.join(map(repr, clash))} that share a prediction's name (a task "
            f"or a joint event); expected other columns"
        )
    return keep


def _frames_of_table(run: Run, path: str | Path, keep: Sequence[str], batch_size: int) -> Iterator[pd.DataFrame]:
    """A Parquet table's predictions batch by batch: the `keep` columns, then one column per
    prediction (`predict_frame`'s)."""
    table, batch_encoder = _table_rows(run, path, labels=False)
    tasks = run.tasks
    keep = _check_keep(keep, table.columns, tasks, path)
    columns = list(dict.fromkeys(batch_encoder.columns + keep))
    for file, first, _, batch in table.read(columns, batch_size):
        numeric, categorical, _ = batch_encoder.encode(batch, str(table.files[file]), first, labels=False)
        split = Split(
            torch.from_numpy(numeric),
            torch.from_numpy(categorical),
            torch.full((batch.num_rows, len(tasks)), float("nan")),
        )
        predictions = predictions_of(run.model, tasks, split, batch_size)
        frame = batch.select(keep).to_pandas() if keep else pd.DataFrame(index=range(batch.num_rows))
        for k, name in enumerate(prediction_names(tasks)):
            frame[name] = predictions[:, k]
        yield frame


def write_predictions(
    run: Run,
    data: str | Path,
    out: str | Path,
    keep: Sequence[str] = (),
    streaming: bool = False,
    batch_size: int = BATCH_ROWS,
) -> int:
    """What `mmoe predict` does: the run's predictions for the table `data` written to `out`
    (.parquet or .pq: Parquet, else CSV), the `keep` columns first, then one column per task
    (and one per conditional task's joint event, `predict_frame`),
    atomically (an error leaves no file). streaming: read `data` (Parquet) and write `out` batch
    by batch, for tables larger than memory. Returns the number of rows written."""
    out = Path(out)
    parquet = out.suffix.lower() in PARQUET_SUFFIXES
    if streaming:
        frames: Iterator[pd.DataFrame] = _frames_of_table(run, data, keep, batch_size)
    else:
        frame = read_table(data)
        predictions = predict_frame(run, frame, str(data), batch_size)
        kept = _check_keep(keep, list(frame.columns), run.tasks, data)
        frames = iter([pd.concat([frame[kept], predictions], axis=1) if kept else predictions])
    written = 0

    def write(temp: Path) -> None:
        nonlocal written
        writer = None
        try:
            for part in frames:
                if parquet:
                    chunk = pa.Table.from_pandas(part, preserve_index=False)
                    writer = writer or pq.ParquetWriter(temp, chunk.schema)
                    writer.write_table(chunk)
                else:
                    part.to_csv(temp, mode="a" if written else "w", header=not written, index=False)
                written += len(part)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write)
    return written


__all__ = [
    "evaluate",
    "evaluate_frame",
    "evaluate_run",
    "evaluate_table",
    "features_split",
    "predict_frame",
    "predictions_of",
    "write_predictions",
]
