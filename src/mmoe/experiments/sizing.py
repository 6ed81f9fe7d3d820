"""Equal parameter counts: the Shared-Bottom width that matches a mixture-of-experts model."""

from __future__ import annotations

from typing import Any

from mmoe.data.dataset import InputSpec
from mmoe.errors import MmoeError
from mmoe.models import build_model


def parameter_count(model: str, input_spec: InputSpec, num_tasks: int, **hyperparameters: Any) -> int:
    return build_model(model, input_spec, num_tasks, **hyperparameters).num_parameters()


def matching_width(
    model: str,
    target: int,
    input_spec: InputSpec,
    num_tasks: int,
    option: str = "hidden_units",
    low: int = 1,
    high: int = 8192,
    **hyperparameters: Any,
) -> tuple[int, int]:
    """(width, parameters): the one-layer width of `model` (set through `option`) whose parameter
    count is closest to `target`. The count grows with the width, so a bisection finds it."""
    if target < 1:
        raise MmoeError(f"target parameter count must be positive, got {target}")

    def count(width: int) -> int:
        return parameter_count(model, input_spec, num_tasks, **{option: (width,)}, **hyperparameters)

    lo, hi = low, high
    while lo < hi:  # smallest width with count >= target
        mid = (lo + hi) // 2
        if count(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [w for w in (lo - 1, lo) if w >= low]
    best = min(candidates, key=lambda w: abs(count(w) - target))
    return best, count(best)
