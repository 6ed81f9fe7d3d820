"""The interface every model implements."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from mmoe.spec import InputSpec
from mmoe.errors import MmoeError


class MultiTaskModel(nn.Module):
    """A model of K tasks over one input.

    forward(numeric [B, num_numeric], categorical [B, num_categorical]) -> outputs [B, K]: a logit
    for a binary task, the standardised prediction for a regression task.
    `penalty()` is the model's own loss term (the L2 constraint); 0 for the others.
    `hyperparameters` holds exactly what the constructor took besides input_spec and num_tasks,
    so that `type(model)(input_spec, num_tasks, **model.hyperparameters)` rebuilds it.
    """

    name: ClassVar[str]

    def __init__(self, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> None:
        super().__init__()
        if num_tasks < 1:
            raise MmoeError(f"model {self.name}: needs at least one task, got {num_tasks}")
        self.input_spec = input_spec
        self.num_tasks = num_tasks
        self.hyperparameters = hyperparameters

    def penalty(self) -> torch.Tensor:
        return torch.zeros((), device=next(self.parameters()).device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def check_units(model: str, option: str, units: Any, allow_empty: bool = False) -> tuple[int, ...]:
    """Layer widths as a tuple of positive ints; an int means one layer."""
    values = (units,) if isinstance(units, int) else tuple(units)
    if (not values and not allow_empty) or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise MmoeError(f"model {model}: {option} must be positive integers (one per layer), got {units!r}")
    return values


def check_positive(model: str, option: str, value: Any, kind: type = int) -> Any:
    # not (value > 0) rather than value <= 0: NaN fails every comparison; inf is not a usable size or weight.
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value)
            or (kind is int and value != int(value))):
        raise MmoeError(f"model {model}: {option} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return kind(value)
