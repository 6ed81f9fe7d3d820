"""A run: one trained model saved in a directory (what `mmoe train --out` and
`MultiTaskEstimator.save` write, and what `Run.load` / `MultiTaskEstimator.load` read).

A run directory holds:
  config.json    how to get the data again, the model and its hyperparameters, the training
                 options, the tasks, the input spec, the package version
  model.pt       the weights (with the model name and hyperparameters to rebuild it; an ensemble,
                 `--replicas N --ensemble`, its N members' weights and "ensemble", as config.json)
  encoder.json   the fitted input encoders (numeric statistics, category vocabularies, labels)
  metrics.json   {split: {task: {metric: value}}} of the restored best model
  history.json   one entry per epoch
  checkpoint.pt  the last epoch's full training state
  replicas.json  with several replicas (seeds) trained at once: each replica's metrics and their spread
A baseline's run (`mmoe.baselines`, e.g. --model lightgbm) holds its own files instead of model.pt
and checkpoint.pt (booster-K.txt, one LightGBM booster per task), and history.json holds one entry
per task. Every file is written atomically.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmoe.baselines import Baseline, BaselineResult, Predictor, evaluate_rows, is_baseline, load_baseline, neural_only
from mmoe.data import DATASET_KINDS, load_dataset
from mmoe.data.dataset import InputSpec, MultiTaskData, Task
from mmoe.data.encoders import TableEncoder
from mmoe.errors import MmoeError
from mmoe.io import atomic_write, atomic_write_json
from mmoe.models import MultiTaskModel, build_model
from mmoe.models.ensemble import EnsembleModel
from mmoe.train.fit import fit, fit_replicas, summarize_replicas
from mmoe.train.metrics import Metrics, evaluate_predictions
from mmoe.train.trainer import TrainConfig, TrainResult

CHECKPOINT_FILE = "checkpoint.pt"


RUN_FILES = (
    "model.pt",
    "encoder.json",
    "config.json",
    "metrics.json",
    "history.json",
    CHECKPOINT_FILE,
    "replicas.json",
)
# What a run's config.json must hold to be loaded; a directory without one of them was written by
# an mmoe older than the run format (or by something else), and is refused with how to convert it.
CONFIG_KEYS = ("dataset", "model", "hyperparameters", "training", "tasks", "input_spec")


def run_config(
    dataset: dict[str, Any] | None,
    model: Predictor,
    tasks: list[Task],
    input_spec: InputSpec,
    training: TrainConfig | dict[str, Any],
    result: TrainResult | BaselineResult,
    data_info: dict[str, Any],
) -> dict[str, Any]:
    """The content of a run's config.json: how to get the data again (`dataset`, the description
    `mmoe.data.load_dataset` takes; None when the rows were given in memory), the model, the
    training options, the fitted tasks and inputs, and the versions that wrote it. A baseline's
    `training` is the dict of the options it takes (seed, threads), and its config has each
    task's best round (`best_rounds`) where a network's has its best epoch."""
    from mmoe import __version__

    if isinstance(result, BaselineResult):  # -- a baseline (mmoe.baselines): no epochs, no torch weights
        assert isinstance(model, Baseline) and isinstance(training, dict)
        return {
            "dataset": dataset,
            "model": model.name,
            "hyperparameters": model.hyperparameters,
            "training": training,
            "tasks": [task.to_dict() for task in tasks],
            "input_spec": input_spec.to_dict(),
            "parameters": model.num_parameters(),
            "best_rounds": result.best_rounds,
            "train_seconds": result.train_seconds,
            "samples_per_second": result.samples_per_second,
            "versions": {"mmoe": __version__, **model.versions(), "python": platform.python_version()},
            "data_info": data_info,
        }
    assert isinstance(model, MultiTaskModel) and isinstance(training, TrainConfig)
    # An ensemble (--replicas N --ensemble) reads as its members' model, marked by its member count.
    marked = {"ensemble": model.size} if isinstance(model, EnsembleModel) else {}
    return {
        **marked,
        "dataset": dataset,
        "model": model.name,
        "hyperparameters": model.hyperparameters,
        "training": training.to_dict(),
        "tasks": [task.to_dict() for task in tasks],
        "input_spec": input_spec.to_dict(),
        "parameters": model.num_parameters(),
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "versions": {"mmoe": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "data_info": data_info,
    }


def write_run(
    directory: str | Path,
    config: dict[str, Any],
    model: Predictor,
    encoder: TableEncoder | None,
    result: TrainResult | BaselineResult,
    replicas: dict[str, Any] | None = None,
) -> Path:
    """Writes a run's files (see the module docstring) into `directory`: `config` (`run_config`)
    as config.json, the model (a baseline: its own files), the encoder, the history and metrics
    of `result`, and replicas.json when `replicas` is given."""
    directory = Path(directory)
    if isinstance(model, Baseline):
        directory.mkdir(parents=True, exist_ok=True)
        model.save(directory)
    else:
        weights = {
            "model": model.name,
            "hyperparameters": model.hyperparameters,
            "num_tasks": model.num_tasks,
            "input_spec": model.input_spec.to_dict(),
            "state_dict": model.state_dict(),
        }
        if isinstance(model, EnsembleModel):  # N members' weights ("members.{i}.…") and the tasks' kinds
            weights["ensemble"] = {"members": model.size, "binary": model.binary.tolist()}
        atomic_write(directory / "model.pt", lambda temp: torch.save(weights, temp))
    if encoder is not None:
        encoder.save(directory / "encoder.json")
    atomic_write_json(directory / "history.json", result.history)
    atomic_write_json(directory / "config.json", config)
    atomic_write_json(directory / "metrics.json", result.metrics)
    if replicas is not None:
        atomic_write_json(directory / "replicas.json", replicas)
    return directory


def save_run(
    directory: str | Path, dataset: dict[str, Any] | None, data: MultiTaskData, result: TrainResult, config: TrainConfig
) -> Path:
    """Writes the run of `result`, trained on `data` (described by `dataset`), into `directory`."""
    written = run_config(dataset, result.model, data.tasks, data.input_spec, config, result, data.info)
    return write_run(directory, written, result.model, data.encoder, result)


def load_model(path: str | Path) -> MultiTaskModel:
    """Rebuilds a model from a run's model.pt."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        members = saved["ensemble"]["members"] if "ensemble" in saved else 1
        spec = InputSpec.from_dict(saved["input_spec"])
        networks = [
            build_model(saved["model"], spec, saved["num_tasks"], **saved["hyperparameters"]) for _ in range(members)
        ]
        model = EnsembleModel(networks, saved["ensemble"]["binary"]) if "ensemble" in saved else networks[0]
        model.load_state_dict(saved["state_dict"])
    except MmoeError:
        raise
    except FileNotFoundError:
        raise MmoeError(f"{path}: no such file; expected the model.pt of a run made by `mmoe train`") from None
    except Exception as error:  # torch.load / load_state_dict fail in many ways on a damaged file
        raise MmoeError(
            f"{path}: not a readable mmoe model file ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'})"
        ) from None
    model.eval()
    return model


def _check_model_matches_config(directory: Path, model: MultiTaskModel, config: dict[str, Any]) -> None:
    """A model.pt copied in from another run would otherwise fail deep inside the first forward
    pass (or, worse, predict quietly when the shapes happen to agree)."""
    from mmoe.io import to_jsonable

    written = {
        "model": model.name,
        "hyperparameters": to_jsonable(model.hyperparameters),
        "tasks": model.num_tasks,
        "input_spec": model.input_spec.to_dict(),
        "ensemble": model.size if isinstance(model, EnsembleModel) else None,
    }
    expected = {
        "model": config.get("model"),
        "hyperparameters": to_jsonable(config.get("hyperparameters")),
        "tasks": len(config.get("tasks") or []),
        "input_spec": config.get("input_spec"),
        "ensemble": config.get("ensemble"),
    }
    different = [key for key in written if to_jsonable(written[key]) != to_jsonable(expected[key])]
    if different:
        shown = "; ".join(f"{key} {_brief(written[key])} vs {_brief(expected[key])}" for key in different)
        raise MmoeError(
            f"{directory / 'model.pt'}: the model does not belong to this run ({shown} in config.json); "
            f"expected the model.pt that `mmoe train` wrote next to this config.json"
        )


def _brief(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Run:
    """A fitted model with what it needs to read rows and name its outputs: its run config (what
    config.json holds), the network and the fitted encoder. `Run.load` reads a run directory;
    `MultiTaskEstimator` hands its fitted state over as one (directory: where it was saved or
    loaded from, else a name for messages), so that predicting, evaluating and exporting are one
    code path for both (`mmoe.predict`, `mmoe.export`). `model` is a network or a baseline
    (`mmoe.baselines`); `network` is the network, for what only a network does."""

    directory: Path
    config: dict[str, Any]
    model: Predictor
    encoder: TableEncoder | None

    @property
    def tasks(self) -> list[Task]:
        return [Task.from_dict(task) for task in self.config["tasks"]]

    def network(self, purpose: str) -> MultiTaskModel:
        """The run's network; a one-line MmoeError for a baseline's run, saying that `purpose`
        ("mmoe export", "gates", ...) is a neural-model option."""
        if isinstance(self.model, Baseline):
            raise neural_only(self.model.name, purpose)
        return self.model

    @classmethod
    def load(cls, directory: str | Path) -> Run:
        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise MmoeError(
                f"{directory}: not a run directory (no config.json); expected the --out of `mmoe train` "
                f"or a directory written by MultiTaskEstimator.save"
            )
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise MmoeError(f"{config_path}: not valid JSON ({error})") from None
        missing = [key for key in CONFIG_KEYS if not isinstance(config, dict) or key not in config]
        if missing:
            raise MmoeError(
                f"{config_path}: no {', '.join(missing)}; this run was written by another program or an "
                f"older mmoe; convert it by training it again: `mmoe train --config {config_path} "
                f"--out NEW_RUN`"
            )
        encoder_path = directory / "encoder.json"
        encoder = TableEncoder.load(encoder_path) if encoder_path.is_file() else None
        if is_baseline(str(config["model"])):
            baseline = load_baseline(
                config["model"],
                directory,
                InputSpec.from_dict(config["input_spec"]),
                len(config["tasks"]),
                config["hyperparameters"],
            )
            return cls(directory, config, baseline, encoder)
        model = load_model(directory / "model.pt")
        _check_model_matches_config(directory, model, config)
        return cls(directory, config, model, encoder)

    def dataset(self) -> MultiTaskData:
        """The run's own data set, loaded again from its description (the same split)."""
        spec = self.config["dataset"]
        if not isinstance(spec, dict) or spec.get("kind") not in DATASET_KINDS:
            raise MmoeError(
                f"{self.directory}: the model was fitted on rows given in memory (a DataFrame), which "
                f"the run cannot load again; expected a labelled table to evaluate on (--data TABLE, "
                f"or MultiTaskEstimator.score(frame))"
            )
        return load_dataset(spec)

    def evaluate(self, split: str = "test") -> Metrics:
        """Metrics on one split of the run's own data set (loaded again the same way)."""
        data = self.dataset()
        if split not in data.splits():
            raise MmoeError(f"unknown split {split!r}; expected train, validation or test")
        return evaluate_rows(self.model, self.tasks, data.splits()[split])

    def require_encoder(self, source: str | Path) -> TableEncoder:
        """The fitted encoder; MmoeError when the run has none to encode `source` with."""
        if self.encoder is None:
            raise MmoeError(
                f"{self.directory}: the run has no encoder.json, so it cannot encode {source}; expected a "
                f"run trained on a table"
            )
        return self.encoder


__all__ = [
    "CHECKPOINT_FILE",
    "RUN_FILES",
    "Run",
    "evaluate_predictions",
    "fit",
    "fit_replicas",
    "load_model",
    "run_config",
    "save_run",
    "summarize_replicas",
    "write_run",
]
