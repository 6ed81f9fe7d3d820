"""The seven models of the paper behind one interface (`MultiTaskModel`), and their registry.

Adding a model is one new module in this package: a subclass of MultiTaskModel with a `name`,
its hyperparameters declared in its constructor's signature (`mmoe.models.options`) and its
`search_space`. Every module of the package is imported here, and a model class registers itself
when it is defined, so the new model is in MODELS, `mmoe models`, `mmoe train`'s flags, the
config file's keys and `mmoe tune` with no other edit.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable
from typing import Any

import torch

from mmoe.errors import MmoeError
from mmoe.models.base import MODELS, MultiTaskModel
from mmoe.spec import InputSpec

# The paper's models, imported in the order `mmoe models` lists them (MODELS keeps the order in
# which the classes were defined): from nothing shared to MMoE. isort must not reorder them.
# isort: off
from mmoe.models.single_task import SingleTask
from mmoe.models.shared_bottom import SharedBottom
from mmoe.models.l2_constrained import L2Constrained
from mmoe.models.cross_stitch import CrossStitch
from mmoe.models.tensor_factorization import TensorFactorization
from mmoe.models.moe import MixtureOfExperts, MMoE, OMoE

# isort: on
from mmoe.models.experts import ExpertBank
from mmoe.models.options import Option, declared_hyperparameters, options

# Any other module of the package defines its models by being imported: they are listed after these.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

# 2**30 float32 weights are 4 GiB, 16 GiB with Adam's two moments and the gradients: far beyond
# any of the paper's models (< 100k parameters), so a larger count is a typo such as
# expert_units=1600000, which would otherwise exhaust memory or be killed by the OS.
MAX_PARAMETERS = 2**30


def model_summary(name: str) -> str:
    """The model's one-line description (its docstring's first line)."""
    return (inspect.getdoc(model_class(name)) or name).splitlines()[0]


def model_class(name: str) -> type[MultiTaskModel]:
    if name not in MODELS:
        raise MmoeError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}")
    return MODELS[name]


def model_hyperparameters(name: str) -> dict[str, Any]:
    """The model's hyperparameters with their defaults."""
    return {key: declared.default for key, declared in declared_hyperparameters(model_class(name)).items()}


def hyperparameter_options() -> dict[str, Option]:
    """Every hyperparameter name of every model, merged over the models that take it: one flag of
    `mmoe train` and one key of a config file each (see `mmoe.models.options.options`)."""
    return options(MODELS.values())


def check_hyperparameters(name: str, hyperparameters: Iterable[str]) -> None:
    """MmoeError naming the hyperparameters model `name` does not take (an unknown model too); the
    estimator and `mmoe train` ask before reading any data, `build_model` before building."""
    accepted = model_hyperparameters(name)
    unexpected = [key for key in hyperparameters if key not in accepted]
    if unexpected:
        raise MmoeError(
            f"model {name} does not take {', '.join(unexpected)}; it takes {', '.join(accepted)} "
            f"(see `mmoe models --verbose`)"
        )


def build_model(name: str, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> MultiTaskModel:
    """Builds model `name`; a hyperparameter the model does not take is an error, not ignored, and
    so is a model of more than MAX_PARAMETERS parameters."""
    check_hyperparameters(name, sorted(hyperparameters))
    # Counted on the meta device first (shapes only: no memory, no random numbers drawn, so the
    # real build below gets the same initial weights as without this check).
    with torch.device("meta"):
        parameters = model_class(name)(input_spec, num_tasks, **hyperparameters).num_parameters()
    if parameters > MAX_PARAMETERS:
        options = ", ".join(f"{key}={value}" for key, value in hyperparameters.items())
        raise MmoeError(
            f"model {name} ({options or 'defaults'}) would have {parameters:,} parameters; expected at "
            f"most {MAX_PARAMETERS:,} (use fewer experts or units)"
        )
    return model_class(name)(input_spec, num_tasks, **hyperparameters)


__all__ = [
    "MAX_PARAMETERS",
    "MODELS",
    "CrossStitch",
    "ExpertBank",
    "L2Constrained",
    "MMoE",
    "MixtureOfExperts",
    "MultiTaskModel",
    "OMoE",
    "SharedBottom",
    "SingleTask",
    "TensorFactorization",
    "build_model",
    "check_hyperparameters",
    "hyperparameter_options",
    "model_class",
    "model_hyperparameters",
    "model_summary",
]
