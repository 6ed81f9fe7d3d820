"""What the terminal shows: training progress and the end-of-run summary."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmoe.baselines import BaselineResult
from mmoe.data.dataset import Task
from mmoe.train.callbacks import Callback
from mmoe.train.progress import HistoryEntry


class EpochProgress(Callback):
    """A progress bar over epochs showing the training loss and the main validation metric: a
    training callback (`fit(..., callbacks=[progress])`), or `fit(..., on_epoch=progress.update)`."""

    def __init__(self, epochs: int, enabled: bool = True) -> None:
        self.bar = tqdm(
            total=epochs, desc="training", unit="epoch", disable=not enabled, file=sys.stderr, dynamic_ncols=True
        )

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        if replica is None:
            self.update(entry)

    def update(self, entry: HistoryEntry | dict[str, Any]) -> None:
        """One epoch done: `entry` is its history entry (or the entry's dict)."""
        if not isinstance(entry, HistoryEntry):
            entry = HistoryEntry.from_dict(entry)
        main_task, validation = next(iter(entry.validation.items()))
        metric = "auc" if "auc" in validation else "mse"
        value = validation.get("auc") if metric == "auc" else validation.get("mse")
        self.bar.set_postfix_str(
            f"loss {entry.train_loss:.4f}  val {main_task} {metric} {value:.4f}"
            if value is not None
            else f"loss {entry.train_loss:.4f}"
        )
        self.bar.update(1)
        if not self.bar.disable:
            self.bar.write(
                f"epoch {entry.epoch:>3}  loss {entry.train_loss:.4f}  "
                + "  ".join(f"val {task} {_short(m)}" for task, m in entry.validation.items())
                + ("  *" if entry.improved else "")
                + f"  [{entry.seconds:.1f}s]",
                file=sys.stderr,
            )

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


class TrainProgress(Callback):
    """The progress bar of `mmoe train`, opened at the first epoch (so that an error in the data
    leaves no empty bar above it): one line per epoch for one model, for --replicas how many
    still train. A resumed run's bar starts at the epochs already done."""

    def __init__(self, epochs: int, replicas: int, enabled: bool) -> None:
        self.epochs, self.replicas, self.enabled = epochs, replicas, enabled
        self.bar: Any = None

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        if replica is not None:  # population training: the bar counts epochs, not replicas
            return
        if self.bar is None:
            self.bar = EpochProgress(self.epochs, enabled=self.enabled)
            self.bar.bar.update(min(entry.epoch - 1, self.epochs))
        self.bar.update(entry)

    def on_population_epoch_end(self, epoch: int, still_training: int) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=self.epochs,
                desc=f"{self.replicas} replicas",
                unit="epoch",
                disable=not self.enabled,
                file=sys.stderr,
            )
        self.bar.set_postfix_str(f"{still_training} still training")
        self.bar.update(1)

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:  # an EpochProgress holds its tqdm bar; replicas have a bare one
            (self.bar.bar if self.replicas == 1 else self.bar).close()


def _short(metrics: Mapping[str, Any]) -> str:
    metric = "auc" if "auc" in metrics else "mse"
    value = metrics[metric]
    return f"{metric} {value:.4f}" if value is not None else f"{metric} n/a"


def metrics_table(metrics_by_split: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """A plain text table: one row per (split, task), one column per metric."""
    rows = []
    for split, per_task in metrics_by_split.items():
        for task, metrics in per_task.items():
            rows.append((split, task, metrics))
    names = [m for m in ("auc", "logloss", "mse", "r2", "rows") if any(m in r[2] for r in rows)]
    header = ["split", "task", *names]
    lines = [[split, task, *[_format(metrics.get(name)) for name in names]] for split, task, metrics in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header, *lines])


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_summary(result: Any, tasks: list[Task], out: Path) -> None:
    if isinstance(result, BaselineResult):
        print_baseline_summary(result, out)
        return
    epochs = len(result.history)
    reason = f"stopped early after {epochs} epochs" if result.stopped_early else f"ran {epochs} epochs"
    print(
        f"{result.model.name}: {result.model.num_parameters():,} parameters; {reason}; best epoch "
        f"{result.best_epoch}; {result.train_seconds:.1f}s training ({result.samples_per_second:,.0f} rows/s)"
    )
    print(metrics_table({split: result.metrics[split] for split in ("validation", "test")}))
    print(f"saved to {out}/ (model.pt, encoder.json, config.json, metrics.json, history.json)")


def print_baseline_summary(result: BaselineResult, out: Path) -> None:
    """A baseline's end of `mmoe train`: each task's best round, then the metrics as for a network."""
    rounds = ", ".join(f"{entry['task']} {entry['best_round']} of {entry['rounds']}" for entry in result.history)
    print(
        f"{result.model.name}: one model per task, {result.model.num_parameters():,} leaves; best rounds {rounds}; "
        f"{result.train_seconds:.1f}s training ({result.samples_per_second:,.0f} rows/s)"
    )
    print(metrics_table({split: result.metrics[split] for split in ("validation", "test")}))
    print(f"saved to {out}/ ({', '.join(result.model.files())}, encoder.json, config.json, metrics.json, history.json)")
