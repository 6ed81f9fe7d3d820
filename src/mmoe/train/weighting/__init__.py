"""Loss weighting and gradient balancing: how a batch's per-task losses become one update.

The contract every method keeps is in `mmoe.train.weighting.base`; the methods from the losses
alone are in `mmoe.train.weighting.losses`, those from per-task gradients over the shared
parameters in `mmoe.train.weighting.balancing`. `WEIGHTINGS` lists them by name (what
`TrainConfig.weighting`, `--weighting` and `mmoe weightings` take) and `make_weighting` builds one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mmoe.errors import MmoeError
from mmoe.train.weighting.balancing import (
    DBMTL,
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradientBalancing,
    GradNorm,
    NashMTL,
    PCGrad,
    min_norm_weights,
)
from mmoe.train.weighting.base import EqualWeighting, FixedWeighting, LossWeighting
from mmoe.train.weighting.losses import (
    DynamicWeightAverage,
    FastAdaptiveMultitask,
    GeometricLossStrategy,
    RandomLossWeighting,
    UncertaintyWeighting,
)

__all__ = [
    "WEIGHTINGS",
    "GradientBalancing",
    "LossWeighting",
    "check_weighting_options",
    "describe_weightings",
    "implied_weighting",
    "make_weighting",
    "min_norm_weights",
    "resolve_weighting",
]

WEIGHTINGS: dict[str, type[LossWeighting]] = {
    "ew": EqualWeighting,
    "fixed": FixedWeighting,
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "rlw": RandomLossWeighting,
    "gls": GeometricLossStrategy,
    "famo": FastAdaptiveMultitask,
    "gradnorm": GradNorm,
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "imtl": IMTL,
    "nash-mtl": NashMTL,
    "aligned-mtl": AlignedMTL,
    "db-mtl": DBMTL,
}


def summary(name: str) -> str:
    """A method's one line: its docstring's first line after "name: "."""
    return (WEIGHTINGS[name].__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1]


def describe_weightings(verbose: bool = False) -> str:
    """One line per method: "ew          every task weighs 1, ..." (the first line of its
    docstring); verbose: each option's default and help on the lines below."""
    width = max(len(name) for name in WEIGHTINGS) + 2
    lines = []
    for name, cls in WEIGHTINGS.items():
        lines.append(f"{name:<{width}}{summary(name)}")
        if verbose:
            lines += [f"{'':<{width}}  {key}={default:g}: {text}" for key, (default, text) in cls.options.items()]
    return "\n".join(lines)


def resolve_weighting(weighting: str, task_weights: Sequence[float] | None) -> str:
    """The method a (weighting, task_weights) pair names, or MmoeError when it names none.

    task_weights select "fixed": weighting "ew" (the default) with task_weights is "fixed", as
    `--task-weights` alone always was. "fixed" needs task_weights; a method that does not take
    per-task weights refuses them."""
    if weighting not in WEIGHTINGS:
        raise MmoeError(f"training option weighting {weighting!r} is unknown; expected one of: {', '.join(WEIGHTINGS)}")
    if task_weights is not None:
        if weighting == "ew":
            return "fixed"
        if not WEIGHTINGS[weighting].takes_task_weights:
            raise MmoeError(
                f"training option task_weights does not apply to weighting {weighting!r}; expected "
                f"weighting 'fixed' (or 'ew', which task_weights turn into 'fixed')"
            )
    elif weighting == "fixed":
        raise MmoeError("training option weighting 'fixed' needs task_weights (one non-negative weight per task)")
    return weighting


def check_weighting_options(weighting: str, options: Mapping[str, float] | None) -> dict[str, float] | None:
    """`options` as {name: float} for the method `weighting` (a resolved name), or MmoeError naming
    the option that it does not take or whose value is not a finite number. None or {}: None."""
    if not options:
        return None
    declared = WEIGHTINGS[weighting].options
    checked = {}
    for name, value in options.items():
        if name not in declared:
            expected = ", ".join(declared) if declared else "none (it takes no option)"
            raise MmoeError(
                f"training option weighting_options: {name!r} is not an option of weighting {weighting!r}; "
                f"expected one of: {expected}"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise MmoeError(f"training option weighting_options: {name} must be a finite number, got {value!r}")
        checked[name] = number
    return checked


def implied_weighting(task_weights: Sequence[float] | None) -> str:
    """The weighting a configuration without a `weighting` option (the releases before it) means."""
    return "fixed" if task_weights is not None else "ew"


def make_weighting(
    weighting: str,
    num_tasks: int,
    task_weights: Sequence[float] | None = None,
    options: Mapping[str, float] | None = None,
) -> LossWeighting:
    """The `LossWeighting` named by `weighting` (see `resolve_weighting`) for `num_tasks` tasks,
    with its `options` (see `check_weighting_options`)."""
    if task_weights is not None and any(w < 0 or not math.isfinite(w) for w in task_weights):
        raise MmoeError(f"training option task_weights must be non-negative numbers, got {tuple(task_weights)}")
    name = resolve_weighting(weighting, task_weights)
    return WEIGHTINGS[name](num_tasks, task_weights, **(check_weighting_options(name, options) or {}))
