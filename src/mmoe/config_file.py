"""The JSON configuration file that `mmoe train --config FILE` reads and `mmoe tune` writes.

One document describes one training run:

    {"model": "mmoe",
     "hyperparameters": {"num_experts": 6, "expert_units": [24]},
     "training": {"learning_rate": 0.0031, "epochs": 7, "batch_size": 1024, "patience": 0, "seed": 3, ...},
     "dataset": {"kind": "census", "group": 1, ...},      # the JSON spec of `mmoe.data.load_dataset`
     "tuned": {...}}                                        # written by `mmoe tune`, not read by train

Only "model" is required. A run's own config.json has the same four keys, so it is accepted too
(its extra keys, such as "tasks" or "versions", are ignored). The keys inside "hyperparameters" and
"training" are checked here, so that a typo is an error rather than a silently ignored setting.
The hyperparameters a file may set are those the models declare (`mmoe.models.options`), each
also a flag of `mmoe train`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmoe.errors import MmoeError

# The training options a file may set, each also a flag of `mmoe train`, with the kind of value each takes.
TRAINING_KINDS = {
    "learning_rate": float,
    "batch_size": int,
    "epochs": int,
    "weight_decay": float,
    "patience": int,
    "task_weights": "numbers",
    "seed": int,
    "threads": int,
    "sparse_optimizer": str,  # written only when not the default (TrainConfig.to_dict)
    "entire_space": bool,  # written only when set (TrainConfig.to_dict)
    "counterfactual_weight": float,  # written only when not 0 (TrainConfig.to_dict)
    "weighting": str,  # written only when task_weights do not already say it
    "weighting_options": "options",  # written only when set
    "lr_schedule": str,  # these three written only when not the default (TrainConfig.to_dict)
    "warmup_epochs": float,
    "weight_decay_mode": str,
}
TRAINING_KEYS = tuple(TRAINING_KINDS)
NULLABLE_TRAINING_KEYS = ("task_weights", "threads", "entire_space", "weighting_options")  # flags whose default is None
# TrainConfig fields without a flag: a run's config.json lists them; only their defaults can be honoured.
TRAINING_KEYS_WITHOUT_FLAG = ("eval_batch_size", "restore_best")


def read_train_config(path: str | Path) -> dict[str, Any]:
    """The document at `path` as {"model", "hyperparameters", "training", "dataset" (None when
    absent)}; MmoeError (naming the file and the key) when it is missing, not JSON, or holds a
    value of the wrong kind or a training option `mmoe train` does not have."""
    from mmoe.baselines import hyperparameter_options, hyperparameters_of, model_names
    from mmoe.train.trainer import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise MmoeError(
            f"--config {path}: no such file; expected a JSON file written by `mmoe tune` "
            f"(best.json) or a run's config.json"
        )
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MmoeError(f"--config {path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise MmoeError(f'--config {path}: expected a JSON object with a "model" key, got {type(document).__name__}')
    model = document.get("model")
    if model not in model_names():
        raise MmoeError(f'--config {path}: "model" is {model!r}; expected one of: {", ".join(model_names())}')
    hyperparameters: dict[str, Any] = {}
    options = hyperparameter_options()
    for key, value in _object(document, "hyperparameters", path).items():
        if key not in options:
            raise MmoeError(
                f"--config {path}: hyperparameter {key!r} = {value!r} is not one of model {model}'s; "
                f"expected only {', '.join(hyperparameters_of(model))}"
            )
        try:
            hyperparameters[key] = options[key].parse(value)
        except ValueError as error:
            raise MmoeError(f"--config {path}: hyperparameter {key!r} is {value!r}; expected {error}") from None
    training: dict[str, Any] = {}
    defaults = TrainConfig().to_dict()
    for key, value in _object(document, "training", path).items():
        if key in NULLABLE_TRAINING_KEYS and value is None:  # "not set", as without the flag
            training[key] = None
        elif key in TRAINING_KEYS:
            training[key] = _checked(value, TRAINING_KINDS[key], f"training option {key!r}", path)
        elif not (key in TRAINING_KEYS_WITHOUT_FLAG and value == defaults[key]):
            raise MmoeError(
                f"--config {path}: training option {key!r} = {value!r} cannot be set by `mmoe train`; "
                f"expected only {', '.join(TRAINING_KEYS)}"
            )
    dataset = document.get("dataset")
    if dataset is not None and not (isinstance(dataset, dict) and isinstance(dataset.get("kind"), str)):
        raise MmoeError(
            f'--config {path}: "dataset" must be an object with a "kind" (census, synthetic, clicklog or table), '
            f"got {dataset!r}"
        )
    return {"model": model, "hyperparameters": hyperparameters, "training": training, "dataset": dataset}


def train_config_document(
    model: str,
    hyperparameters: dict[str, Any],
    training: dict[str, Any],
    dataset: dict[str, Any],
    tuned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document `read_train_config` reads back (JSON-able; write it with atomic_write_json)."""
    from mmoe.io import to_jsonable

    unknown = sorted(set(training) - set(TRAINING_KEYS))
    if unknown:  # a bug in the writer, not bad input
        raise ValueError(f"training options {unknown} are not flags of `mmoe train`")
    document = {"model": model, "hyperparameters": hyperparameters, "training": training, "dataset": dataset}
    if tuned is not None:
        document["tuned"] = tuned
    return to_jsonable(document)


def _checked(value: Any, kind: Any, what: str, path: Path) -> Any:
    """`value` as the flag would have parsed it; MmoeError when it is of another kind."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == "options":
        if isinstance(value, dict) and all(is_int(v) or isinstance(v, float) for v in value.values()):
            return {str(name): float(v) for name, v in value.items()}
        expected = 'an object of numbers, e.g. {"alpha": 1.5}'
    elif kind == "numbers":
        if isinstance(value, list) and all(is_int(v) or isinstance(v, float) for v in value):
            return tuple(float(v) for v in value)
        expected = "a list of numbers, e.g. [1, 0.5]"
    elif kind is float:
        if is_int(value) or isinstance(value, float):
            return float(value)
        expected = "a number"
    elif kind is str:
        if isinstance(value, str):
            return value
        expected = "a string"
    elif kind is bool:
        if isinstance(value, bool):
            return value
        expected = "true or false"
    else:
        if is_int(value):
            return value
        expected = "an integer"
    raise MmoeError(f"--config {path}: {what} is {value!r}; expected {expected}")


def _object(document: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = document.get(key) or {}
    if not isinstance(value, dict):
        raise MmoeError(f"--config {path}: {key!r} must be a JSON object, got {value!r}")
    return value
