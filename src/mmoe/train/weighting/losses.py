"""Weightings from the losses alone: one backward pass per step, as equal weights.

Each backpropagates Σ_k w_k · loss_k (UW adds its own terms), the weights w computed from the
detached losses (the global batch's, under torch.distributed: see `mmoe.train.weighting.base`),
so R ranks train as one process. A task without labels in the batch gets weight 0 and moves no
state of the method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmoe.train.weighting.base import LossWeighting, global_losses, state_device, sum_over_ranks_, world_size

TINY = 1e-12


def _masked_softmax(logits: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """softmax over the labelled tasks [..., K]; 0 for the others (and everywhere when none is)."""
    weights = torch.softmax(logits.masked_fill(~labelled, -math.inf), dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


class UncertaintyWeighting(LossWeighting):
    """uw: Σ_k loss_k·e^(−s_k)/2 + s_k/2, learned log-variances s_k (Kendall et al., 2018).

    s starts at 0 (weights 1/2) and is trained by the loop's Adam with the model; at a fixed
    point e^(s_k) = loss_k, so a task's weight e^(−s_k)/2 tends to 1/(2·loss_k): the inverse of
    its noise variance for a regression task. Under R ranks the s_k/2 term is split over them."""

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.log_variance: torch.Tensor | None = None

    def prepare(
        self,
        model: nn.Module,
        parameters: Mapping[str, torch.Tensor],
        tables: Sequence[torch.Tensor] = (),
        replicas: int | None = None,
    ) -> list[torch.Tensor]:
        shape = (replicas, self.num_tasks) if replicas is not None else (self.num_tasks,)
        self.log_variance = torch.zeros(shape, device=state_device(parameters), requires_grad=True)
        return [self.log_variance]

    def own_parameters(self) -> list[torch.Tensor]:
        return [self.log_variance] if self.log_variance is not None else []

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        if self.log_variance is None:  # used without a loop: starts at 0 (not trained)
            self.log_variance = torch.zeros(task_losses.shape, device=task_losses.device, requires_grad=True)
        s = self.log_variance
        terms = task_losses * torch.exp(-s) / 2 + s / (2 * world_size())
        return torch.where(labelled, terms, torch.zeros_like(terms)).sum(-1)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.log_variance is None else {"log_variance": self.log_variance.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "log_variance" in state and self.log_variance is not None:
            with torch.no_grad():
                self.log_variance.copy_(state["log_variance"])


class _LossWeights(LossWeighting):
    """A method that backpropagates Σ_k w_k · loss_k with weights `weights(...)` (detached)."""

    def weights(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        return (self.weights(task_losses, labelled).detach() * task_losses).sum(-1)


class DynamicWeightAverage(_LossWeights):
    """dwa: w_k = K·softmax_k(r_k / T), r_k the ratio of task k's last two epoch losses (Liu et al., 2019).

    The first two epochs weigh every task 1. r_k = L̄_k(t−1) / L̄_k(t−2), L̄ an epoch's mean
    training loss over the batches labelled for task k (a task not labelled in either epoch: r_k = 1)."""

    options = {"temperature": (2.0, "the softmax temperature T (larger: closer to equal weights)")}

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.history: list[torch.Tensor] = []  # the last two epochs' mean losses [..., K]
        self._sum: torch.Tensor | None = None
        self._count: torch.Tensor | None = None

    def weights(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        losses = task_losses.detach()
        if self._sum is None or self._count is None:
            self._sum, self._count = torch.zeros_like(losses), torch.zeros_like(losses)
        self._sum += losses  # this rank's shares: summed over the ranks at the epoch's end
        self._count += labelled.to(losses.dtype)
        if len(self.history) < 2:
            return torch.ones_like(losses)
        ratio = self.history[-1].to(losses.device) / self.history[-2].to(losses.device)
        ratio = torch.where(ratio.isfinite(), ratio, torch.ones_like(ratio))
        return self.num_tasks * torch.softmax(ratio / self.option["temperature"], dim=-1)

    def end_epoch(self) -> None:
        if self._sum is None or self._count is None:
            return
        total = sum_over_ranks_(self._sum)
        mean = torch.where(self._count > 0, total / self._count.clamp(min=1), torch.full_like(total, math.nan))
        self.history = [*self.history, mean][-2:]
        self._sum = self._count = None

    def state_dict(self) -> dict[str, Any]:
        return {"history": [mean.clone() for mean in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [torch.as_tensor(mean) for mean in state.get("history", [])]


class RandomLossWeighting(_LossWeights):
    """rlw: w = softmax(z), z ~ N(0, I) drawn anew each step from the run's RNG (Lin et al., 2022).

    The draw is torch's global generator, which the loop seeds with the run's seed and saves in
    its checkpoint: the same seed gives the same weights, and a resumed run continues them."""

    def weights(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        draw = torch.randn(task_losses.shape).to(task_losses.device)
        return _masked_softmax(draw, labelled)


class GeometricLossStrategy(_LossWeights):
    """gls: the geometric mean of the labelled tasks' losses, (Π_k loss_k)^(1/K) (Chennupati et al., 2019).

    Its gradient is Σ_k w_k ∇loss_k with w_k = GM / (K·loss_k): a task's weight is inversely
    proportional to its loss, so every task's relative improvement counts alike."""

    def weights(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        losses = global_losses(task_losses).clamp(min=TINY)
        count = labelled.sum(-1, keepdim=True).clamp(min=1).to(losses.dtype)
        log_mean = torch.where(labelled, losses.log(), torch.zeros_like(losses)).sum(-1, keepdim=True) / count
        return torch.where(labelled, log_mean.exp() / (count * losses), torch.zeros_like(losses))


class FastAdaptiveMultitask(_LossWeights):
    """famo: weights z = softmax(ξ) on log-losses, ξ moved by each step's observed decrease (Liu et al., 2023).

    The update is Σ_k (z_k / c)·∇log loss_k, c = Σ_k z_k / loss_k (so that w_k = z_k / (c·loss_k)
    sum-normalises the log-loss gradient). After each step the logits ξ move by their own Adam
    (`lr`, L2 `gamma`) along J_softmaxᵀ·δ, δ_k = log loss_k(before) − log loss_k(after): a task
    that improved more than the weighted mean loses weight. The paper measures "after" with one
    more forward pass over the same batch; here it is the next step's batch (no extra pass), so δ
    mixes the decrease with the batches' difference, which averages out over steps."""

    options = {
        "lr": (0.025, "learning rate of the weight logits' Adam"),
        "gamma": (0.001, "L2 decay of the weight logits"),
    }

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.state: dict[str, torch.Tensor] = {}

    def weights(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        losses = global_losses(task_losses).clamp(min=0) + 1e-8
        if not self.state:
            zeros = torch.zeros_like(losses)
            self.state = {"logits": zeros, "exp_avg": zeros.clone(), "exp_avg_sq": zeros.clone()}
            self.state["step"] = torch.zeros((), dtype=losses.dtype)
        elif "previous" in self.state:
            self._update(losses, labelled)
        z = _masked_softmax(self.state["logits"].to(losses.device), labelled)
        scale = (z / losses).sum(-1, keepdim=True)
        self.state["previous"], self.state["previous_labelled"] = losses, labelled.clone()
        return torch.where(scale > 0, z / (scale.clamp(min=TINY) * losses), torch.zeros_like(z))

    def _update(self, losses: torch.Tensor, labelled: torch.Tensor) -> None:
        state = self.state
        both = labelled & state["previous_labelled"].to(labelled.device)
        delta = torch.where(both, state["previous"].to(losses.device).log() - losses.log(), torch.zeros_like(losses))
        logits = state["logits"].to(losses.device)
        z = torch.softmax(logits, dim=-1)
        grad = z * (delta - (z * delta).sum(-1, keepdim=True)) + self.option["gamma"] * logits
        beta1, beta2 = 0.9, 0.999
        state["step"] = state["step"] + 1
        step = float(state["step"])
        state["exp_avg"] = state["exp_avg"].to(losses.device).lerp(grad, 1 - beta1)
        state["exp_avg_sq"] = state["exp_avg_sq"].to(losses.device).mul(beta2).addcmul(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt() + 1e-8
        state["logits"] = logits - self.option["lr"] * state["exp_avg"] / (1 - beta1**step) / denom

    def state_dict(self) -> dict[str, Any]:
        return {name: value.clone() for name, value in self.state.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = {name: torch.as_tensor(value) for name, value in state.items()}
