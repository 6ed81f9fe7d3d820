"""Loss weighting: the step that turns a batch's per-task losses into one update.

The training loops (`mmoe.train.trainer`, `mmoe.train.population`) compute each task's loss
(`MultiTaskLoss`) and hand it to a `LossWeighting`, which backpropagates what the update is made
of; the optimiser then steps on the gradients it left. The contract every method keeps:

  * `task_losses` [..., K]: task k's loss on the batch, still attached to the graph, already a
    mean over the rows that have task k's label. With R ranks (`mmoe.train.distributed`), each
    rank's value is its share's sum divided by task k's labelled rows in the whole global batch,
    and DDP sums the ranks' gradients: a method that is linear in the task losses (a weighted sum)
    then trains R ranks exactly as one process. A task with no labelled row in the batch has a
    loss of exactly 0 and no gradient. A leading dimension (population training: [N, K], one row
    per replica) holds independent models: the result is [N], and replica r's update may depend on
    row r only.
  * `labelled` [..., K] (bool): whether task k has labelled rows in the (global) batch. A method
    whose terms do not vanish with the loss (a learned log-variance, a loss ratio) leaves such a
    task out of this batch, so that a batch without a task's labels does not move that task.
  * `backward(task_losses, labelled, parameters, extra)` backpropagates and returns the loss it
    backpropagated, detached ([...]: what the history reports as train_loss). The default is
    `combine(...)` (+ `extra`, the model's own penalty, never weighted) and one `backward()`.
    Methods that need each task's gradient (GradNorm, PCGrad, MGDA, ...) override `backward`: they
    may take `torch.autograd.grad(task_losses[..., k].sum(), parameters, retain_graph=True)` per
    task and must leave the combined gradient in each parameter's `.grad` (which the loop zeroed
    before the call). `parameters` are every trained tensor (stacked [N, ...] in a population,
    where replica r's gradient is slice r). Under torch.distributed such a method must also sum its
    per-task gradients over the ranks itself, as only `.backward()` goes through DDP's hooks.
  * `state_dict()` / `load_state_dict()`: whatever the method learns over the steps, saved in the
    checkpoint as plain tensors, numbers and containers (it is read with weights_only=True), so
    that a resumed run continues as the uninterrupted one.

Choosing: `TrainConfig(weighting=NAME, task_weights=...)`; `WEIGHTINGS` lists the methods, and
`make_weighting` builds one. A new method is a subclass here plus its entry in `WEIGHTINGS`; the
training loops do not change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from mmoe.errors import MmoeError


class LossWeighting:
    """Base class: one object per training run, called once per batch (see the module docstring)."""

    #: Whether the method takes the per-task weights of `task_weights` (the rest refuse them).
    takes_task_weights: ClassVar[bool] = False

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None) -> None:
        self.num_tasks = num_tasks

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """task_losses [..., K], labelled [..., K] -> the loss to backpropagate [...]."""
        raise NotImplementedError

    def backward(
        self,
        task_losses: torch.Tensor,
        labelled: torch.Tensor,
        parameters: Sequence[torch.Tensor],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Backpropagates `combine(task_losses, labelled) + extra` (summed over a leading replica
        dimension: replicas share no weight) and returns it detached [...]."""
        loss = self.combine(task_losses, labelled)
        if extra is not None:
            loss = loss + extra
        (loss if loss.dim() == 0 else loss.sum()).backward()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        """What the method has learned so far (nothing, for a fixed weighting)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state; got {sorted(state)}")


class EqualWeighting(LossWeighting):
    """ew: every task weighs 1, the update is Σ_k loss_k (the paper's setting)."""

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        return task_losses.sum(-1)


class FixedWeighting(LossWeighting):
    """fixed: Σ_k w_k · loss_k with constant weights w = task_weights (one per task, >= 0)."""

    takes_task_weights = True

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None) -> None:
        super().__init__(num_tasks)
        if task_weights is None:
            raise MmoeError("loss weighting 'fixed' needs task_weights (one weight per task)")
        if len(task_weights) != num_tasks:
            raise MmoeError(f"training option task_weights has {len(task_weights)} values for {num_tasks} tasks")
        self.weights = torch.tensor([float(w) for w in task_weights], dtype=torch.float32)

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        if self.weights.device != task_losses.device:
            self.weights = self.weights.to(task_losses.device)
        return (task_losses * self.weights).sum(-1)


WEIGHTINGS: dict[str, type[LossWeighting]] = {"ew": EqualWeighting, "fixed": FixedWeighting}


def describe_weightings() -> str:
    """One line per method: "ew  every task weighs 1, ..." (the first line of its docstring)."""
    return "\n".join(
        f"{name:<8}{(cls.__doc__ or '').strip().splitlines()[0].split(': ', 1)[-1]}" for name, cls in WEIGHTINGS.items()
    )


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


def implied_weighting(task_weights: Sequence[float] | None) -> str:
    """The weighting a configuration without a `weighting` option (the releases before it) means."""
    return "fixed" if task_weights is not None else "ew"


def make_weighting(weighting: str, num_tasks: int, task_weights: Sequence[float] | None = None) -> LossWeighting:
    """The `LossWeighting` named by `weighting` (see `resolve_weighting`) for `num_tasks` tasks."""
    if task_weights is not None and any(w < 0 or not math.isfinite(w) for w in task_weights):
        raise MmoeError(f"training option task_weights must be non-negative numbers, got {tuple(task_weights)}")
    return WEIGHTINGS[resolve_weighting(weighting, task_weights)](num_tasks, task_weights)
