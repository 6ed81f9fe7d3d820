"""The learning-rate schedule and the kind of weight decay of the training loops (`TrainConfig`'s
lr_schedule, warmup_epochs and weight_decay_mode), shared by the single loop and population training.

Learning rate at optimiser step s (0-based), of T = epochs · steps_per_epoch steps, W of them warm-up
(W = round(warmup_epochs · steps_per_epoch)), base rate lr:

    warm-up (s < W):   lr · (s + 1) / W
    then, with progress p = (s − W) / max(1, T − W) in [0, 1]:
      "constant":      lr
      "cosine":        lr · ½ (1 + cos(π p))        (Loshchilov & Hutter's decay to 0, no restarts)
      "linear":        lr · (1 − p)

T is the *maximum* number of steps: under early stopping a run ends before the rate reaches 0,
having decayed by how far it got. The rate is a function of the step alone, so a resumed run
(which knows its epoch) continues the schedule exactly; a larger `epochs` on resume stretches
what remains of it. The schedule sets the rate of the dense Adam and of the embedding tables'
row-sparse optimiser alike. "constant" without warm-up never touches the optimisers, so the
default run's updates are those of the releases before the option, bit for bit.

Weight decay (`weight_decay` λ): "l2" (the default, Adam's own) adds λ·w to the gradient, which
Adam then rescales per weight, so a weight with large gradients is barely decayed; "decoupled"
(AdamW, Loshchilov & Hutter 2019) shrinks every weight by lr·λ·w after Adam's step, independent
of its gradients' scale. The embedding tables' row-sparse optimisers keep L2 decay of the rows a
step touched in both modes (a decoupled decay of every row would touch every row each step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from mmoe.train.optim import make_adam

if TYPE_CHECKING:
    from mmoe.train.trainer import TrainConfig

LR_SCHEDULES = ("constant", "cosine", "linear")
WEIGHT_DECAY_MODES = ("l2", "decoupled")


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The multiple of the base learning rate at optimiser step `step` (0-based), by the formulas
    of the module docstring; steps beyond `total_steps` keep the final rate."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


class LearningRateSchedule:
    """Sets the optimisers' learning rate before each step: `apply(step, optimizers)`.

    base_rate: the configured learning rate; steps_per_epoch: the optimiser steps of one epoch
    (⌈training rows / batch size⌉); epochs: the maximum number of epochs."""

    def __init__(
        self, schedule: str, base_rate: float, warmup_epochs: float, epochs: int, steps_per_epoch: int
    ) -> None:
        self.schedule = schedule
        self.base_rate = base_rate
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = epochs * self.steps_per_epoch
        self.warmup_steps = round(warmup_epochs * self.steps_per_epoch)
        # The default (constant, no warm-up) leaves the optimisers' rate alone.
        self.active = schedule != "constant" or self.warmup_steps > 0

    @classmethod
    def for_training(cls, config: TrainConfig, rows: int) -> LearningRateSchedule:
        """The schedule of `config` over an epoch of `rows` training rows (⌈rows / batch size⌉ steps)."""
        return cls(
            config.lr_schedule, config.learning_rate, config.warmup_epochs, config.epochs, -(-rows // config.batch_size)
        )

    def rate(self, step: int) -> float:
        return self.base_rate * learning_rate_factor(step, self.total_steps, self.warmup_steps, self.schedule)

    def first_step(self, epoch: int) -> int:
        """The step a run starting (or resuming) at 1-based `epoch` takes first."""
        return (epoch - 1) * self.steps_per_epoch

    def apply(self, step: int, optimizers: Sequence[torch.optim.Optimizer | None]) -> None:
        if not self.active:
            return
        rate = self.rate(step)
        for optimizer in optimizers:
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = rate


def make_dense_optimizer(
    parameters: Iterable[torch.Tensor], learning_rate: float, weight_decay: float, mode: str
) -> torch.optim.Optimizer:
    """The optimiser of every dense weight: Adam with L2 weight decay ("l2", `optim.make_adam`,
    as before the option) or AdamW's decoupled decay ("decoupled"; torch's fused kernel where
    this torch has it)."""
    if mode == "l2":
        return make_adam(parameters, learning_rate, weight_decay)
    if mode != "decoupled":
        raise ValueError(f"unknown weight decay mode {mode!r}")
    parameters = list(parameters)
    try:
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
