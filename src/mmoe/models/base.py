"""The interface every model implements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec, Task

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
    `penalty()` is the model's own loss term on its parameters alone (the L2 constraint); 0 for
    the others.
    `forward_with_aux(numeric, categorical, tasks) -> (outputs [B, K], auxiliary or None)` is
    what the training loops call instead of forward: the outputs, and the model's own loss term
    that depends on the batch (AITM's calibrator, DSelect-k's entropy regulariser), as the *sum*
    over the batch's rows of a per-row term, a scalar tensor. The loops divide it by the batch's
    rows (the global batch's, under torch.distributed), so that it enters the loss as a per-row
    mean, as the task losses do: each rank's sum over its share, divided by the global batch's
    rows, adds up over the ranks (DDP sums their gradients) to the one-process term, however
    unevenly the rows fall, and an empty share adds exactly 0. `tasks` (in the outputs' order)
    say which outputs are logits. The default is forward's outputs and None (no term); a model
    that overrides it returns a tensor on every call (a zero where nothing applies: population
    training's vmap takes tensors only), never stores it on the module (under vmap it is one
    replica's slice), and computes it from the same forward pass, so it costs no second one.
    Prediction, evaluation and export call forward only.
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

    def forward_with_aux(
        self, numeric: torch.Tensor, categorical: torch.Tensor, tasks: Sequence[Task]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(outputs [B, K], the batch-dependent loss term summed over the rows, or None): see the class docstring."""
        return self(numeric, categorical), None

    @property
    def has_auxiliary_loss(self) -> bool:
        """Whether the model has a batch-dependent loss term (overrides `forward_with_aux`)."""
        return type(self).forward_with_aux is not MultiTaskModel.forward_with_aux

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TrainingForward(nn.Module):
    """`model.forward_with_aux(numeric, categorical, tasks)` as a module's forward, which is what
    the training loops call: DistributedDataParallel's hooks run on forward, and
    `torch.func.functional_call` calls forward. Its parameters are the model's, named "model.*".

    forward(numeric [B, num_numeric], categorical [B, num_categorical]) -> (outputs [B, K], auxiliary or None)
    """

    def __init__(self, model: MultiTaskModel, tasks: Sequence[Task]) -> None:
        super().__init__()
        self.model = model
        self.tasks = tuple(tasks)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.forward_with_aux(numeric, categorical, self.tasks)


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


def check_non_negative(model: str, option: str, value: Any) -> float:
    """A finite number, zero or more (a loss term's weight, where 0 turns the term off), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise MmoeError(f"model {model}: {option} must be a finite number, zero or more, got {value!r}")
    return float(value)
