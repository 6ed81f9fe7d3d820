"""The seven models of the paper behind one interface (`MultiTaskModel`), and their registry."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from mmoe.spec import InputSpec
from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel
from mmoe.models.cross_stitch import CrossStitch
from mmoe.models.experts import ExpertBank
from mmoe.models.l2_constrained import L2Constrained
from mmoe.models.moe import MixtureOfExperts, MMoE, OMoE
from mmoe.models.shared_bottom import SharedBottom
from mmoe.models.single_task import SingleTask
from mmoe.models.tensor_factorization import TensorFactorization

# 2**30 float32 weights are 4 GiB, 16 GiB with Adam's two moments and the gradients: far beyond
# any of the paper's models (< 100k parameters), so a larger count is a typo such as
# --expert-units 1600000, which would otherwise exhaust memory or be killed by the OS.
MAX_PARAMETERS = 2**30

MODELS: dict[str, type[MultiTaskModel]] = {
    model.name: model
    for model in (SingleTask, SharedBottom, L2Constrained, CrossStitch, TensorFactorization, OMoE, MMoE)
}


def model_summary(name: str) -> str:
    """The model's one-line description (its docstring's first line)."""
    return inspect.getdoc(model_class(name)).splitlines()[0]


def model_class(name: str) -> type[MultiTaskModel]:
    if name not in MODELS:
        raise MmoeError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}")
    return MODELS[name]


def model_hyperparameters(name: str) -> dict[str, Any]:
    """The model's hyperparameters with their defaults."""
    parameters = inspect.signature(model_class(name).__init__).parameters
    return {key: p.default for key, p in parameters.items() if key not in ("self", "input_spec", "num_tasks")}


def build_model(name: str, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> MultiTaskModel:
    """Builds model `name`; a hyperparameter the model does not take is an error, not ignored, and
    so is a model of more than MAX_PARAMETERS parameters."""
    accepted = model_hyperparameters(name)
    unexpected = sorted(set(hyperparameters) - set(accepted))
    if unexpected:
        raise MmoeError(f"model {name} does not take {', '.join(unexpected)}; it takes {', '.join(accepted)}")
    # Counted on the meta device first (shapes only: no memory, no random numbers drawn, so the
    # real build below gets the same initial weights as without this check).
    with torch.device("meta"):
        parameters = model_class(name)(input_spec, num_tasks, **hyperparameters).num_parameters()
    if parameters > MAX_PARAMETERS:
        options = ", ".join(f"{key}={value}" for key, value in hyperparameters.items())
        raise MmoeError(f"model {name} ({options or 'defaults'}) would have {parameters:,} parameters; expected at "
                        f"most {MAX_PARAMETERS:,} (use fewer experts or units)")
    return model_class(name)(input_spec, num_tasks, **hyperparameters)


__all__ = ["MODELS", "CrossStitch", "ExpertBank", "L2Constrained", "MMoE", "MixtureOfExperts", "MultiTaskModel",
           "OMoE", "SharedBottom", "SingleTask", "TensorFactorization", "build_model", "model_class",
           "model_hyperparameters", "model_summary"]
