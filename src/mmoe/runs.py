"""A run: one trained model saved in a directory, and the Python API the CLI is a layer over.

A run directory holds:
  config.json    how to get the data again, the model and its hyperparameters, the training
                 options, the tasks, the input spec, the package version
  model.pt       the weights (with the model name and hyperparameters to rebuild it)
  encoder.json   the fitted input encoders (numeric statistics, category vocabularies, labels)
  metrics.json   {split: {task: {metric: value}}} of the restored best model
  history.json   one entry per epoch
  checkpoint.pt  the last epoch's full training state
Every file is written atomically.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmoe.data import load_dataset
from mmoe.data.dataset import InputSpec, MultiTaskData, Split, Task
from mmoe.data.encoders import TableEncoder
from mmoe.errors import MmoeError
from mmoe.io import atomic_write, atomic_write_json
from mmoe.models import MultiTaskModel, build_model
from mmoe.train.fit import fit, fit_replicas, summarize_replicas
from mmoe.train.metrics import evaluate_predictions, to_predictions
from mmoe.train.trainer import TrainConfig, TrainResult, evaluate, predict_outputs

CHECKPOINT_FILE = "checkpoint.pt"


def save_run(directory: str | Path, dataset: dict[str, Any], data: MultiTaskData, result: TrainResult,
             config: TrainConfig) -> Path:
    """Writes the run's files (see the module docstring) into `directory`."""
    from mmoe import __version__

    directory = Path(directory)
    model = result.model
    run_config = {
        "dataset": dataset,
        "model": model.name,
        "hyperparameters": model.hyperparameters,
        "training": config.to_dict(),
        "tasks": [task.to_dict() for task in data.tasks],
        "input_spec": data.input_spec.to_dict(),
        "parameters": model.num_parameters(),
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "versions": {"mmoe": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "data_info": data.info,
    }
    weights = {"model": model.name, "hyperparameters": model.hyperparameters, "num_tasks": model.num_tasks,
               "input_spec": data.input_spec.to_dict(), "state_dict": model.state_dict()}
    atomic_write(directory / "model.pt", lambda temp: torch.save(weights, temp))
    if data.encoder is not None:
        data.encoder.save(directory / "encoder.json")
    atomic_write_json(directory / "history.json", result.history)
    atomic_write_json(directory / "config.json", run_config)
    atomic_write_json(directory / "metrics.json", result.metrics)
    return directory


def load_model(path: str | Path) -> MultiTaskModel:
    """Rebuilds a model from a run's model.pt."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model = build_model(saved["model"], InputSpec.from_dict(saved["input_spec"]), saved["num_tasks"],
                            **saved["hyperparameters"])
        model.load_state_dict(saved["state_dict"])
    except MmoeError:
        raise
    except FileNotFoundError:
        raise MmoeError(f"{path}: no such file; expected the model.pt of a run made by `mmoe train`") from None
    except Exception as error:  # torch.load / load_state_dict fail in many ways on a damaged file
        raise MmoeError(f"{path}: not a readable mmoe model file ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    model.eval()
    return model


def _check_model_matches_config(directory: Path, model: MultiTaskModel, config: dict[str, Any]) -> None:
    """A model.pt copied in from another run would otherwise fail deep inside the first forward
    pass (or, worse, predict quietly when the shapes happen to agree)."""
    from mmoe.io import to_jsonable

    written = {"model": model.name, "hyperparameters": to_jsonable(model.hyperparameters),
               "tasks": model.num_tasks, "input_spec": model.input_spec.to_dict()}
    expected = {"model": config.get("model"), "hyperparameters": to_jsonable(config.get("hyperparameters")),
                "tasks": len(config.get("tasks") or []), "input_spec": config.get("input_spec")}
    different = [key for key in written if to_jsonable(written[key]) != to_jsonable(expected[key])]
    if different:
        shown = "; ".join(f"{key} {_brief(written[key])} vs {_brief(expected[key])}" for key in different)
        raise MmoeError(f"{directory / 'model.pt'}: the model does not belong to this run ({shown} in config.json); "
                        f"expected the model.pt that `mmoe train` wrote next to this config.json")


def _brief(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Run:
    """A saved run, loaded: its config, model and fitted encoder."""

    directory: Path
    config: dict[str, Any]
    model: MultiTaskModel
    encoder: TableEncoder | None

    @property
    def tasks(self) -> list[Task]:
        return [Task.from_dict(task) for task in self.config["tasks"]]

    @classmethod
    def load(cls, directory: str | Path) -> Run:
        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise MmoeError(f"{directory}: not a run directory (no config.json); expected the --out of `mmoe train`")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as error:
            raise MmoeError(f"{config_path}: not valid JSON ({error})") from None
        encoder_path = directory / "encoder.json"
        encoder = TableEncoder.load(encoder_path) if encoder_path.is_file() else None
        model = load_model(directory / "model.pt")
        _check_model_matches_config(directory, model, config)
        return cls(directory, config, model, encoder)

    def evaluate(self, split: str = "test") -> dict[str, dict]:
        """Metrics on one split of the run's own data set (loaded again the same way)."""
        data = load_dataset(self.config["dataset"])
        if split not in data.splits():
            raise MmoeError(f"unknown split {split!r}; expected train, validation or test")
        return evaluate(self.model, self.tasks, data.splits()[split])

    def evaluate_frame(self, frame: pd.DataFrame, source: str) -> dict[str, dict]:
        """Metrics on a labelled table (rows encoded with the run's fitted encoder)."""
        split = self._encoder(source).transform(frame, source)
        return evaluate(self.model, self.tasks, split)

    def predict_frame(self, frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
        """One column per task: the positive class's probability (binary) or the value (regression)."""
        numeric, categorical = self._encoder(source).transform_features(frame, source)
        empty_labels = torch.zeros(len(frame), len(self.tasks))
        outputs = predict_outputs(self.model, Split(numeric, categorical, empty_labels))
        predictions = to_predictions(self.tasks, outputs).numpy()
        return pd.DataFrame({task.name: predictions[:, k] for k, task in enumerate(self.tasks)}, index=frame.index)

    def _encoder(self, source: str) -> TableEncoder:
        if self.encoder is None:
            raise MmoeError(f"{self.directory}: the run has no encoder.json, so it cannot encode {source}")
        return self.encoder


__all__ = ["Run", "evaluate_predictions", "fit", "fit_replicas", "load_model", "save_run", "summarize_replicas"]
