"""Callbacks: one interface for the single-model and the population loop, and the loggers on it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mmoe.errors import MmoeError, TrainingDiverged
from mmoe.runs import fit, fit_replicas
from mmoe.train.callbacks import (
    Callback,
    MLflowLogger,
    TensorBoardLogger,
    entry_scalars,
)
from mmoe.train.population import train_population
from mmoe.train.progress import HistoryEntry
from mmoe.train.trainer import TrainConfig
from tests.conftest import toy_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HISTORY_KEYS = ["epoch", "train_loss", "train_task_loss", "validation", "seconds", "main_metric", "improved"]


class Recorder(Callback):
    def __init__(self) -> None:
        self.entries: list[tuple[int | None, HistoryEntry]] = []
        self.population_epochs: list[tuple[int, int]] = []
        self.ended: list[BaseException | None] = []

    def on_epoch_end(self, entry: HistoryEntry, replica: int | None = None) -> None:
        self.entries.append((replica, entry))

    def on_population_epoch_end(self, epoch: int, still_training: int) -> None:
        self.population_epochs.append((epoch, still_training))

    def on_train_end(self, error: BaseException | None = None) -> None:
        self.ended.append(error)


def test_single_training_tells_each_epoch_and_the_end() -> None:
    recorder, dicts = Recorder(), []
    result = fit(
        toy_data(),
        "mmoe",
        TrainConfig(epochs=3, batch_size=64, patience=0),
        callbacks=[recorder],
        on_epoch=dicts.append,
    )
    assert [replica for replica, _ in recorder.entries] == [None, None, None]
    assert [entry.to_dict() for _, entry in recorder.entries] == result.history == dicts
    assert list(result.history[0]) == HISTORY_KEYS
    assert result.history[0]["main_metric"] == "validation clicked auc"
    assert recorder.ended == [None] and recorder.population_epochs == []


def test_a_failed_training_still_ends_its_callbacks() -> None:
    recorder = Recorder()
    with pytest.raises(TrainingDiverged):
        fit(toy_data(), "shared-bottom", TrainConfig(learning_rate=1e30, epochs=3), callbacks=recorder)
    assert len(recorder.ended) == 1 and isinstance(recorder.ended[0], TrainingDiverged)


def test_population_tells_each_replica_its_own_history() -> None:
    recorder, calls = Recorder(), []
    seeds, rates = [3, 5, 11], [1e-2, 1e-2, 3e-2]  # two learning-rate groups: replicas 0, 1 then 2
    population = train_population(
        "omoe",
        toy_data(),
        TrainConfig(epochs=5, batch_size=64, patience=1),
        seeds=seeds,
        learning_rates=rates,
        callbacks=[recorder],
        on_epoch=lambda epoch, still: calls.append((epoch, still)),
    )
    for index, replica in enumerate(population.replicas):
        told = [entry.to_dict() for r, entry in recorder.entries if r == index]
        assert told == replica.history and told
        assert all(list(entry) == HISTORY_KEYS for entry in replica.history)
        assert all(
            entry["seconds"] > 0 and entry["main_metric"] == "validation clicked auc" for entry in replica.history
        )
    assert calls == recorder.population_epochs
    # Per group, one call per epoch it trained, counting the replicas still training.
    group_epochs = max(len(population.replicas[0].history), len(population.replicas[1].history))
    first_group = calls[:group_epochs]
    assert [epoch for epoch, _ in first_group] == list(range(1, group_epochs + 1))
    assert first_group[-1][1] == sum(not population.replicas[i].stopped_early for i in (0, 1))
    assert recorder.ended == [None]


def test_fit_replicas_passes_callbacks_on() -> None:
    recorder = Recorder()
    result, summary = fit_replicas(
        toy_data(), "mmoe", TrainConfig(epochs=2, batch_size=64, seed=4), 2, callbacks=[recorder]
    )
    assert sorted({r for r, _ in recorder.entries}) == [0, 1] and len(summary) == 2
    kept = next(i for i, r in enumerate(summary) if r["kept"])
    assert [e.to_dict() for r, e in recorder.entries if r == kept] == result.history


def _expected_scalars(history: list[dict[str, Any]], prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    expected: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for name, value in entry_scalars(HistoryEntry.from_dict(entry), prefix).items():
            expected.setdefault(name, []).append((entry["epoch"], value))
    return expected


def test_tensorboard_scalars_are_the_history(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(
        toy_data(),
        "mmoe",
        TrainConfig(epochs=3, batch_size=64, patience=0),
        callbacks=[TensorBoardLogger(tmp_path / "single")],
    )
    population = train_population(
        "mmoe",
        toy_data(),
        TrainConfig(epochs=2, batch_size=64),
        seeds=[0, 1],
        callbacks=[TensorBoardLogger(tmp_path / "population")],
    )
    expected = _expected_scalars(result.history)
    assert {"train/loss", "train/task_loss/watch_time", "validation/clicked/auc", "validation/watch_time/mse"} <= set(
        expected
    )
    for directory, wanted in (
        (tmp_path / "single", expected),
        (
            tmp_path / "population",
            {
                **_expected_scalars(population.replicas[0].history, "replica_0/"),
                **_expected_scalars(population.replicas[1].history, "replica_1/"),
            },
        ),
    ):
        events = EventAccumulator(str(directory)).Reload()
        assert set(events.Tags()["scalars"]) == set(wanted)
        for tag, points in wanted.items():
            got = [(event.step, event.value) for event in events.Scalars(tag)]
            assert [step for step, _ in got] == [step for step, _ in points], tag
            # Event files hold float32.
            assert [value for _, value in got] == pytest.approx([value for _, value in points], rel=1e-6), tag


def test_mlflow_metrics_are_the_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install 'mmoe[mlflow]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = (tmp_path / "store").as_uri()
    logger = MLflowLogger(tracking_uri=uri, experiment="toy", run_name="mmoe")
    result = fit(toy_data(), "mmoe", TrainConfig(epochs=3, batch_size=64, patience=0), callbacks=[logger])
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "mmoe"
    assert client.get_experiment(run.info.experiment_id).name == "toy"
    expected = _expected_scalars(result.history)
    assert set(run.data.metrics) == set(expected)
    for key, points in expected.items():
        assert sorted((m.step, m.value) for m in client.get_metric_history(logger.run_id, key)) == points, key

    monkeypatch.chdir(tmp_path)  # the default: the file store ./mlruns
    default = MLflowLogger()
    default.on_train_end(TrainingDiverged("diverged"))
    assert (tmp_path / "mlruns").is_dir()
    assert MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri()).get_run(default.run_id).info.status == "FAILED"


@pytest.mark.parametrize(
    ("make", "modules", "extra"),
    [
        (lambda path: TensorBoardLogger(path), ("torch.utils.tensorboard",), "tensorboard"),
        (lambda path: MLflowLogger(path.as_uri()), ("mlflow", "mlflow.tracking"), "mlflow"),
    ],
)
def test_a_missing_logger_package_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any, modules: tuple[str, ...], extra: str
) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(MmoeError, match=rf"pip install 'mmoe\[{extra}\]'") as error:
        make(tmp_path)
    assert "\n" not in str(error.value)


def test_the_progress_bar_reads_entries_and_their_dicts() -> None:
    from mmoe.report.console import EpochProgress

    entry = HistoryEntry(
        1, 0.5, {"a": 0.5}, {"a": {"auc": 0.75, "logloss": 0.6, "rows": 3}}, 0.1, "validation a auc", True
    )
    with EpochProgress(3, enabled=True) as progress:
        progress.on_epoch_end(entry)
        progress.update(entry.to_dict())
        progress.on_epoch_end(entry, replica=0)  # a population's replicas are not this bar's epochs
        assert progress.bar.n == 2


def test_train_log_dir_and_mlflow_flags_log_the_runs_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`mmoe train --log-dir DIR --mlflow URI` logs what history.json holds, for one model and
    (under replica_R/ tags) for --replicas."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow", reason="MLflow is an optional extra: pip install 'mmoe[mlflow]'")
    import json

    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmoe.cli import main

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = (tmp_path / "store").as_uri()
    common = ["--dataset", "synthetic", "--rows", "600", "--epochs", "2", "--threads", "1", "--quiet", "--mlflow", uri]
    run = tmp_path / "run"
    assert main(["train", *common, "--out", str(run), "--log-dir", str(tmp_path / "tb")]) == 0
    history = json.loads((run / "history.json").read_text())
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    for tag, points in _expected_scalars(history).items():
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(tag)] == points, tag
    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert logged.info.run_name == "run" and set(logged.data.metrics) == set(_expected_scalars(history))

    assert (
        main(["train", *common, "--out", str(tmp_path / "pair"), "--replicas", "2", "--log-dir", str(tmp_path / "tb2")])
        == 0
    )
    tags = set(EventAccumulator(str(tmp_path / "tb2")).Reload().Tags()["scalars"])
    assert {"replica_0/train/loss", "replica_1/train/loss"} <= tags
    capsys.readouterr()
