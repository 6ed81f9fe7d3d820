"""The interface every model implements."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna

# Every model, by name, in the order the classes were defined: a subclass of MultiTaskModel that
# sets its own `name` registers itself here (see MultiTaskModel.__init_subclass__).
MODELS: dict[str, type[MultiTaskModel]] = {}

TowerUnits = Annotated[Units, Help("units per tower layer")]


class MultiTaskModel(nn.Module):
    """A model of K tasks over one input.

    forward(numeric [B, num_numeric], categorical [B, num_categorical]) -> outputs [B, K]: a logit
    for a binary task, the standardised prediction for a regression task.
    `penalty()` is the model's own loss term (the L2 constraint); 0 for the others.
    `hyperparameters` holds exactly what the constructor took besides input_spec and num_tasks,
    so that `type(model)(input_spec, num_tasks, **model.hyperparameters)` rebuilds it.

    A model is declared once: a subclass that sets `name` is registered in MODELS; its
    constructor's signature declares its hyperparameters (types, defaults and a one-line help each,
    see `mmoe.models.options`), from which the CLI flags, the config-file keys and `mmoe models -v`
    come; `search_space` says how `mmoe tune` draws them.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a model of its own (MixtureOfExperts, say, only shares code)
            if cls.name in MODELS and MODELS[cls.name] is not cls:
                raise TypeError(
                    f"model name {cls.name!r} of {cls.__qualname__} is already taken by {MODELS[cls.name].__qualname__}"
                )
            MODELS[cls.name] = cls

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        """The hyperparameters one tuning trial trains with, drawn from `trial` (the learning rate
        is drawn for every model by `mmoe.tune`). `max_units` caps the hidden units per layer (for
        mixtures of experts: experts × units per expert). A model without a search space of its own
        is tuned on its learning rate only."""
        return {}

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


def suggest_hidden_units(trial: optuna.Trial, max_units: int) -> int:
    """The hidden layer's width of a trial, log-uniform in [8, max_units] (the paper's cap is 2048)."""
    return trial.suggest_int("hidden_units", 8, max(8, max_units), log=True)


def check_units(model: str, option: str, units: Any, allow_empty: bool = False) -> tuple[int, ...]:
    """Layer widths as a tuple of positive ints; an int means one layer."""
    values = (units,) if isinstance(units, int) else tuple(units)
    if (not values and not allow_empty) or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise MmoeError(f"model {model}: {option} must be positive integers (one per layer), got {units!r}")
    return values


def check_positive(model: str, option: str, value: Any, kind: type = int) -> Any:
    # not (value > 0) rather than value <= 0: NaN fails every comparison; inf is not a usable size or weight.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or math.isinf(value)
        or (kind is int and value != int(value))
    ):
        raise MmoeError(
            f"model {model}: {option} must be a positive {'integer' if kind is int else 'number'}, got {value!r}"
        )
    return kind(value)
