"""Baselines: models that are not neural networks, trained and measured through mmoe's own pipeline.

`lightgbm` (one LightGBM booster per task) is the one a user asks about first: "why not one
gradient-boosted model per task?". A baseline trains on the splits and encodings of a
`MultiTaskData`, and is measured with `mmoe.train.metrics` on every split, so that its numbers sit
beside the neural models' (`mmoe train --model lightgbm`, `MultiTaskEstimator(model="lightgbm")`,
`mmoe evaluate` / `predict` on its run, a row of `mmoe reproduce`'s census tables).

Its options are declared like a model's hyperparameters (`mmoe.models.options`), so that this
module answers for the models and the baselines together: `MODEL_NAMES`, `check_hyperparameters`,
`hyperparameters_of`, `hyperparameter_options` (one flag of `mmoe train` per name). What a
baseline cannot do (export, replicas, distributed training, resuming, streaming) is a neural-model
option: `neural_only` says so in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import torch

from mmoe.baselines.base import BASELINES, Baseline, BaselineResult, parts
from mmoe.baselines.lightgbm import LightGBM
from mmoe.data.dataset import MultiTaskData, RowSource, Split
from mmoe.errors import MmoeError
from mmoe.models import MODELS, MultiTaskModel, model_summary
from mmoe.models import check_hyperparameters as check_model_hyperparameters
from mmoe.models import model_hyperparameters as model_defaults
from mmoe.models.options import Option, declared_hyperparameters, options
from mmoe.spec import InputSpec, Task
from mmoe.train.metrics import Metrics, evaluate_predictions, to_predictions
from mmoe.train.trainer import evaluate_source, predict_outputs

# What a fitted run holds: a neural network, or a baseline.
Predictor: TypeAlias = MultiTaskModel | Baseline


def is_baseline(name: str) -> bool:
    return name in BASELINES


def model_names() -> list[str]:
    """Every name `--model` takes: the neural models, then the baselines."""
    return [*MODELS, *BASELINES]


def baseline_class(name: str) -> type[Baseline]:
    if name not in BASELINES:
        raise MmoeError(f"unknown model {name!r}; expected one of: {', '.join(model_names())}")
    return BASELINES[name]


def summary(name: str) -> str:
    """The one-line description of a model or a baseline (its docstring's first line)."""
    if name in BASELINES:
        return (BASELINES[name].__doc__ or name).splitlines()[0]
    return model_summary(name)


def hyperparameters_of(name: str) -> dict[str, Any]:
    """The hyperparameters of a model or a baseline, with their defaults."""
    if name in BASELINES:
        return {key: declared.default for key, declared in declared_hyperparameters(BASELINES[name]).items()}
    if name not in MODELS:
        baseline_class(name)  # the unknown-model error, listing the baselines too
    return model_defaults(name)


def check_hyperparameters(name: str, hyperparameters: Iterable[str]) -> None:
    """`mmoe.models.check_hyperparameters` for the models and the baselines: MmoeError naming the
    hyperparameters `name` does not take, or an unknown name."""
    if name in MODELS:
        check_model_hyperparameters(name, hyperparameters)
        return
    accepted = hyperparameters_of(name)
    unexpected = [key for key in hyperparameters if key not in accepted]
    if unexpected:
        raise MmoeError(
            f"model {name} does not take {', '.join(unexpected)}; it takes {', '.join(accepted)} "
            f"(see `mmoe models --verbose`)"
        )


def hyperparameter_options() -> dict[str, Option]:
    """`mmoe.models.hyperparameter_options` over the models and the baselines: one flag of `mmoe
    train` and one key of a config file per name."""
    return options([*MODELS.values(), *BASELINES.values()])


def neural_only(name: str, option: str) -> MmoeError:
    """The error for an option a baseline cannot take (`option` as the library names it: "option
    replicas", "mmoe export", ...), naming the baseline's own option that stands for it, if any."""
    own = baseline_class(name).counterparts.get(option.removeprefix("option "))
    instead = f" (its own is {own})" if own else ""
    return MmoeError(f"{option} is a neural-model option; model {name} is a baseline and cannot take it{instead}")


def build_baseline(name: str, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> Baseline:
    """Baseline `name` with `hyperparameters` (the others at their defaults, every one recorded)."""
    check_hyperparameters(name, sorted(hyperparameters))
    return baseline_class(name)(input_spec, num_tasks, **hyperparameters)


def fit_baseline(
    data: MultiTaskData,
    name: str,
    seed: int = 0,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    **hyperparameters: Any,
) -> BaselineResult:
    """Builds baseline `name` and fits it on `data` (training rows, early stopping on the
    validation rows), then measures it on every split with mmoe's metrics. log: one line per task."""
    model = build_baseline(name, data.input_spec, len(data.tasks), **hyperparameters)
    if len(data.train) == 0:
        raise MmoeError("the training split has no rows")
    started = time.perf_counter()
    history = model.fit(data, seed, threads, log)
    seconds = time.perf_counter() - started
    metrics = {split: evaluate_rows(model, data.tasks, rows) for split, rows in data.metric_splits().items()}
    return BaselineResult(model, history, seconds, len(data.train) / max(seconds, 1e-9), metrics)


def load_baseline(
    name: str, directory: Any, input_spec: InputSpec, num_tasks: int, hyperparameters: dict[str, Any]
) -> Baseline:
    """The fitted baseline of a run directory (its config.json says name, inputs and options)."""
    model = build_baseline(name, input_spec, num_tasks, **hyperparameters)
    model.load_fitted(directory)
    return model


# -- the predict path, for either kind --------------------------------------------------------------
def outputs_of(model: Predictor, rows: Split | RowSource, batch_size: int = 65536) -> torch.Tensor:
    """Raw outputs [N, K] (logits / standardised values) of a network or a baseline."""
    if isinstance(model, Baseline):
        return model.outputs(rows)
    return predict_outputs(model, rows, batch_size)


def evaluate_rows(model: Predictor, tasks: list[Task], rows: Split | RowSource, batch_size: int = 65536) -> Metrics:
    """{task: metrics} of a network or a baseline on rows in memory or read batch by batch
    (`mmoe.train.trainer.evaluate_source` for a network)."""
    if not isinstance(model, Baseline):
        return evaluate_source(model, tasks, rows, batch_size)
    outputs, labels = [], []
    for piece in parts(rows):  # a streamed table's batches: only outputs and labels are kept
        outputs.append(model.outputs(piece))
        labels.append(piece.labels.cpu())
    if not outputs:
        raise MmoeError("no rows to evaluate on")
    return evaluate_predictions(tasks, to_predictions(tasks, torch.cat(outputs)), torch.cat(labels))


__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineResult",
    "LightGBM",
    "Predictor",
    "baseline_class",
    "build_baseline",
    "check_hyperparameters",
    "evaluate_rows",
    "fit_baseline",
    "hyperparameter_options",
    "hyperparameters_of",
    "is_baseline",
    "load_baseline",
    "model_names",
    "neural_only",
    "outputs_of",
    "summary",
]
