"""What the training loops tell the outside world after each epoch: one interface for the
single-model loop and the population loop, and loggers to TensorBoard and MLflow built on it.

A callback sees each model's `HistoryEntry` as the epoch ends. In a population every replica
still training gets its own call, with `replica` its index (the order of the seeds), so one logger
records them all under their own names. Under torch.distributed only rank 0 calls the callbacks
(the one that writes the run's files).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmoe.errors import MmoeError
from mmoe.train.progress import HistoryEntry


class Callback:
    """Hooks the training loops call; each does nothing unless a subclass overrides it."""

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        """After an epoch of one model: `entry` is its history entry; `replica` is None in
        single-model training, else the replica's index in the population."""

    def on_population_epoch_end(self, epoch: int, still_training: int) -> None:
        """Population training only: after the epoch's `on_epoch_end` of every replica still
        training; `still_training` counts the replicas that go on (0 after the last epoch)."""

    def on_train_end(self, error: BaseException | None = None) -> None:
        """Once, when the loop ends: normally (error None) or by `error`, which then propagates
        (a divergence, an interrupt, a pruned trial). Close files, end runs."""


class Callbacks(Callback):
    """Several callbacks as one, called in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(entry, replica)

    def on_population_epoch_end(self, epoch: int, still_training: int) -> None:
        for callback in self.callbacks:
            callback.on_population_epoch_end(epoch, still_training)

    def on_train_end(self, error: BaseException | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_end(error)


@contextmanager
def reporting_to(callback: Callback) -> Iterator[Callback]:
    """`with reporting_to(callback):` around a training loop: on_train_end when it ends, however."""
    try:
        yield callback
    except BaseException as error:
        callback.on_train_end(error)
        raise
    callback.on_train_end()


class EpochFunction(Callback):
    """A plain function of each single-model epoch's history entry as a dict (the `on_epoch`
    argument of `train` and `fit`: e.g. the CLI's progress bar, tuning's pruning)."""

    def __init__(self, function: Callable[[dict[str, Any]], None]) -> None:
        self.function = function

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        if replica is None:
            self.function(entry.to_dict())


class PopulationEpochFunction(Callback):
    """A plain function(epoch, still_training) called after each population epoch (the `on_epoch`
    argument of `train_population` and `fit_replicas`)."""

    def __init__(self, function: Callable[[int, int], None]) -> None:
        self.function = function

    def on_population_epoch_end(self, epoch: int, still_training: int) -> None:
        self.function(epoch, still_training)


def as_callbacks(
    callbacks: Sequence[Callback] | Callback | None = None, on_epoch: Any = None, population: bool = False
) -> Callbacks:
    """The loops' one callback: `callbacks` and the older `on_epoch` argument (a Callback, or a
    function: of the entry's dict in single-model training, of (epoch, still_training) in a
    population)."""
    listed = [] if callbacks is None else [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    if isinstance(on_epoch, Callback):
        listed.append(on_epoch)
    elif on_epoch is not None:
        listed.append(PopulationEpochFunction(on_epoch) if population else EpochFunction(on_epoch))
    return Callbacks(listed)


def entry_scalars(entry: HistoryEntry, prefix: str = "") -> dict[str, float]:
    """The numbers a logger records for one epoch: "train/loss", "train/task_loss/TASK" and
    "validation/TASK/METRIC" (row counts and metrics that do not exist, such as the AUC of a
    validation set with one class, left out), each name after `prefix`."""
    scalars = {"train/loss": entry.train_loss}
    scalars.update({f"train/task_loss/{task}": value for task, value in entry.train_task_loss.items()})
    for task, metrics in entry.validation.items():
        for metric, value in metrics.items():
            if metric != "rows" and isinstance(value, (int, float)) and math.isfinite(value):
                scalars[f"validation/{task}/{metric}"] = float(value)
    return {prefix + name: value for name, value in scalars.items()}


def replica_prefix(replica: int | None) -> str:
    """Where a replica's scalars go: "replica_3/" ("" for a single model)."""
    return "" if replica is None else f"replica_{replica}/"


class TensorBoardLogger(Callback):
    """Per-epoch scalars (`entry_scalars`, step = epoch) to TensorBoard event files in `log_dir`
    through torch's SummaryWriter; a population's replicas under "replica_R/". Needs the
    `tensorboard` package: pip install 'mmoe[tensorboard]'."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MmoeError(
                "TensorBoard logging needs the tensorboard package: pip install 'mmoe[tensorboard]'"
            ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        for name, value in entry_scalars(entry, replica_prefix(replica)).items():
            self.writer.add_scalar(name, value, global_step=entry.epoch)

    def on_train_end(self, error: BaseException | None = None) -> None:
        self.writer.flush()
        self.writer.close()


# MLflow's metric names: letters, digits, and _ - . / and space.
_MLFLOW_UNSAFE = re.compile(r"[^\w\-./ ]")


class MLflowLogger(Callback):
    """Per-epoch metrics (`entry_scalars`, step = epoch) to one MLflow run; a population's replicas
    under "replica_R/".

    tracking_uri: where MLflow keeps runs; default: the local file store ./mlruns (of the working
    directory when the logger is made). MLflow 3 refuses a file store unless the environment
    variable MLFLOW_ALLOW_FILE_STORE is true; for a file store the logger sets it when it is not set.
    experiment: the experiment's name (made when missing; default MLflow's "Default");
    run_name: the run's name (default: MLflow picks one). The run ends with training, FINISHED or,
    when training failed, FAILED. Needs MLflow: pip install 'mmoe[mlflow]'."""

    def __init__(
        self, tracking_uri: str | None = None, experiment: str | None = None, run_name: str | None = None
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise MmoeError("MLflow logging needs the mlflow package: pip install 'mmoe[mlflow]'") from None
        self.tracking_uri = tracking_uri or (Path.cwd() / "mlruns").as_uri()
        if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment_id = "0"
        if experiment is not None:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        self.run_id: str = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.finished = False

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(_MLFLOW_UNSAFE.sub("_", name), value, now, entry.epoch)
            for name, value in entry_scalars(entry, replica_prefix(replica)).items()
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, error: BaseException | None = None) -> None:
        if not self.finished:  # one logger serves one training
            self.client.set_terminated(self.run_id, status="FINISHED" if error is None else "FAILED")
            self.finished = True
