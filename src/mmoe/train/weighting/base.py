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
  * `prepare(model, parameters, tables, replicas)` is called once, before the optimiser is built:
    the model (unstacked; a meta-device template in a population), every trained tensor by name
    (stacked [N, ...] in a population of `replicas`), and the embedding tables a row-sparse
    optimiser trains. It returns the method's own trained tensors (UW's log-variances, GradNorm's
    weights), which the loop's Adam trains with the model's weights (and saves in the
    optimiser's state).
  * `backward(task_losses, labelled, parameters, extra)` backpropagates and returns the loss it
    backpropagated, detached ([...]: what the history reports as train_loss). The default is
    `combine(...)` (+ `extra`, the model's own penalty, never weighted) and one `backward()`.
    Methods that need each task's gradient (`mmoe.train.weighting.balancing`) override it and
    leave the combined gradient in each parameter's `.grad` (which the loop zeroed before).
  * `end_epoch()`: the loop's call after each epoch's last step (DWA's loss ratios are per epoch).
  * Under torch.distributed a method whose weights depend on the losses' values computes them
    from the global batch's losses (`global_losses`: one all_reduce of K numbers per step), and
    backpropagates Σ_k w_k · loss_k with those weights, so that the ranks' summed gradients are
    one process's. A method with `sums_over_ranks` (the gradient methods) sums every gradient
    over the ranks itself: the loop then does not wrap the model in DDP.
  * `state_dict()` / `load_state_dict()`: whatever the method learns over the steps, saved in the
    checkpoint as plain tensors, numbers and containers (it is read with weights_only=True), so
    that a resumed run continues as the uninterrupted one. `load_state_dict` copies into the
    tensors `prepare` returned, which the optimiser holds.

Options: each method declares its own (`options`: name -> (default, one-line help)), numbers all,
given as `TrainConfig.weighting_options` ({"alpha": 1.5}; `--weighting-option alpha=1.5`).
Choosing: `TrainConfig(weighting=NAME, task_weights=..., weighting_options=...)`; `WEIGHTINGS`
lists the methods, and `make_weighting` builds one. A new method is a subclass plus its entry in
`WEIGHTINGS`; the training loops do not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

from mmoe.errors import MmoeError


def state_device(parameters: Mapping[str, torch.Tensor]) -> torch.device:
    """Where a weighting's own tensors live: the model's device, or the CPU when the parameters
    are on the meta device (population training's vmapped template)."""
    reference = next(iter(parameters.values()))
    return reference.device if reference.device.type != "meta" else torch.device("cpu")


def world_size() -> int:
    """The number of ranks training together (1 without a torch.distributed process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_over_ranks_(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the ranks, in place (nothing in one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def global_losses(task_losses: torch.Tensor) -> torch.Tensor:
    """The global batch's task losses, detached [..., K]: each rank's loss is its share's, and the
    shares sum to the global batch's loss (see the module docstring)."""
    return sum_over_ranks_(task_losses.detach().clone())


class LossWeighting:
    """Base class: one object per training run, called once per batch (see the module docstring)."""

    #: Whether the method takes the per-task weights of `task_weights` (the rest refuse them).
    takes_task_weights: ClassVar[bool] = False
    #: The method's options: name -> (default, one-line help).
    options: ClassVar[dict[str, tuple[float, str]]] = {}
    #: Whether `backward` sums every gradient over the ranks itself (no DDP around the model).
    sums_over_ranks: ClassVar[bool] = False

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        self.num_tasks = num_tasks
        self.option = {name: float(default) for name, (default, _) in self.options.items()}
        self.option.update({name: float(value) for name, value in options.items()})

    def prepare(
        self,
        model: nn.Module,
        parameters: Mapping[str, torch.Tensor],
        tables: Sequence[torch.Tensor] = (),
        replicas: int | None = None,
    ) -> list[torch.Tensor]:
        """Called once before the optimiser is built (see the module docstring); returns the
        method's own trained tensors (none, by default)."""
        return []

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """task_losses [..., K], labelled [..., K] -> the loss to backpropagate [...]."""
        raise NotImplementedError

    def own_parameters(self) -> list[torch.Tensor]:
        """The tensors `prepare` returned (their gradients are summed over the ranks here)."""
        return []

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
        for tensor in self.own_parameters():  # outside DDP: summed here
            if tensor.grad is not None:
                sum_over_ranks_(tensor.grad)
        return loss.detach()

    def end_epoch(self) -> None:
        """The loop's call after each epoch's last step."""

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

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        if task_weights is None:
            raise MmoeError("loss weighting 'fixed' needs task_weights (one weight per task)")
        if len(task_weights) != num_tasks:
            raise MmoeError(f"training option task_weights has {len(task_weights)} values for {num_tasks} tasks")
        self.weights = torch.tensor([float(w) for w in task_weights], dtype=torch.float32)

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        if self.weights.device != task_losses.device:
            self.weights = self.weights.to(task_losses.device)
        return (task_losses * self.weights).sum(-1)
