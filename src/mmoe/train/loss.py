"""The multi-task loss: per-task BCE-with-logits or MSE, masked where a label is missing, and the
entire-space loss of conditional tasks (ESMM, Ma et al., SIGIR 2018), optionally with ESCM²'s
inverse-propensity-weighted counterfactual term (Wang et al., SIGIR 2022)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmoe.data.dataset import Split
from mmoe.errors import MmoeError
from mmoe.spec import Task, condition_chains

# A probability's log is clamped to at most log(1 - 1e-7) before log(1 - p) is taken: BCE on a
# product probability that rounds to 1 stays finite (as torch's BCELoss clamps its logs).
_MAX_LOG_PROBABILITY = math.log1p(-1e-7)
# ESCM²'s inverse-propensity weights are clipped here (PaddleRec's ESCM² clips at 15 too): a row
# whose condition was predicted at 1% would otherwise weigh 100 rows, and one such row can swing a
# batch's loss.
MAX_IPW_WEIGHT = 15.0


def conditional_labels(tasks: Sequence[Task], labels: torch.Tensor, entire_space: bool = False) -> torch.Tensor:
    """The labels [..., B, K] each task's loss and metrics are computed against (NaN = none).

    A task that follows no other keeps its labels. A conditional task (`Task.given`) is labelled
    only where its condition's joint label is 1 (the given event happened): where it is 0 or
    unknown its own label, if any, is dropped. With `entire_space`, a conditional task's column
    holds instead its joint label, the label of the event "given ∧ task" (click ∧ purchase):
    0 where the given event's joint label is 0, the task's own label where it is 1, unknown
    (NaN) where that is unknown. Joint labels are built along the chain (`condition_chains`), so
    c given b given a has the label of a ∧ b ∧ c. Idempotent: labels already turned are kept.
    Returns `labels` itself when no task is conditional.
    """
    return _turn_labels(condition_chains(tasks), labels, entire_space)


def _turn_labels(chains: Sequence[tuple[int, ...]], labels: torch.Tensor, entire_space: bool) -> torch.Tensor:
    """`conditional_labels` with the chains already found."""
    if all(len(chain) == 1 for chain in chains):
        return labels
    joint = list(labels.unbind(-1))  # per task, the joint label of its chain (its own label at a root)
    turned = list(joint)
    for k, chain in enumerate(chains):
        if len(chain) == 1:
            continue
        condition = joint[chain[-2]]
        own = labels[..., k]
        # NaN compares unequal to everything: an unknown condition gives NaN in both columns.
        joint[k] = torch.where(condition == 0, 0.0, torch.where(condition == 1, own, math.nan))
        turned[k] = joint[k] if entire_space else torch.where(condition == 1, own, math.nan)
    return torch.stack(turned, -1)


class MultiTaskLoss:
    """Per task k: the mean over the rows with a label of ℓ_k(output_k, label_k).

    ℓ_k is BCE with logits for a binary task and the squared error on the standardised label for
    a regression task. All tasks are computed in one vectorised pass (no loop over tasks): this
    runs once per batch. Outputs and labels are [..., B, K] (a leading replica dimension is
    allowed); returns the per-task losses [..., K] (attached to the graph) and which tasks have
    labelled rows [..., K]. Turning them into one loss is the job of `mmoe.train.weighting`.

    Conditional tasks (`Task.given`; labels turned by `conditional_labels`). Without
    `entire_space`, a conditional task's output o_k is the logit of P(task | given, x) and its
    loss is that BCE on the rows where the given event happened and its label is known. With
    `entire_space` (ESMM's training), its loss is instead the BCE of the joint probability
        p = Π_{j ∈ chain(k)} σ(o_j)      (P(click ∧ purchase | x) = σ(o_click) · σ(o_purchase))
    against the joint label, over every row where that is known (the entire space of
    impressions): -[y log p + (1 - y) log(1 - p)], with log p = Σ_j log σ(o_j) and log(1 - p)
    from log p stably (see `log1mexp`). Still one loss per task, K of them: the condition's own
    task keeps its loss (click's BCE over all rows), so any weighting combines them as before.

    counterfactual_weight λ > 0 (with `entire_space` only) adds ESCM²'s IPW term to each
    conditional task's per-row loss: on the rows where its condition holds (click = 1),
        λ · ℓ(o_k, y_k) · min(1 / P̂(condition | x), MAX_IPW_WEIGHT)
    with ℓ the BCE of its own output P(purchase | click, x) against its own label and
    P̂(condition | x) = Π_{j ∈ chain(k), j ≠ k} σ(o_j) without gradient (the propensity; 0 on the
    other rows). Averaged over every row with the joint loss, it estimates the conditional loss
    over all impressions, not over the clicked ones only (the selection ESMM's product leaves
    unweighted).
    """

    def __init__(self, tasks: Sequence[Task], entire_space: bool = False, counterfactual_weight: float = 0.0) -> None:
        self.is_binary = torch.tensor([task.kind == "binary" for task in tasks])
        self.label_mean = torch.tensor([task.label_mean for task in tasks], dtype=torch.float32)
        self.label_std = torch.tensor([task.label_std for task in tasks], dtype=torch.float32)
        # Binary labels are 0/1 and never standardised (their tasks keep mean 0, std 1).
        self.all_binary = all(task.kind == "binary" and task.label_mean == 0 and task.label_std == 1 for task in tasks)
        self.chains = chains = condition_chains(tasks)
        self.conditional = any(len(chain) > 1 for chain in chains)
        self.entire_space = entire_space and self.conditional
        # chain[k, j] = 1 where task j's event is part of task k's joint event, for the tasks
        # trained entire-space (other rows stay 0 and are not used).
        self.chain = torch.zeros(len(tasks), len(tasks))
        for k, chain in enumerate(chains):
            if len(chain) > 1:
                self.chain[k, list(chain)] = 1.0
        self.joint_columns = self.chain.any(1) if self.entire_space else torch.zeros(len(tasks), dtype=torch.bool)
        self.counterfactual_weight = counterfactual_weight if self.entire_space else 0.0
        # given[k]: the position of task k's condition (k itself for a task that follows none);
        # condition_chain[k, j] = 1 where task j's event is part of task k's condition.
        self.given = torch.tensor([chain[-2] if len(chain) > 1 else k for k, chain in enumerate(chains)])
        self.condition_chain = self.chain.clone().fill_diagonal_(0.0)

    @classmethod
    def stacked(
        cls, task_lists: Sequence[Sequence[Task]], entire_space: bool = False, counterfactual_weight: float = 0.0
    ) -> MultiTaskLoss:
        """One loss for N replicas with their own label statistics (outputs [N, B, K])."""
        loss = cls(task_lists[0], entire_space, counterfactual_weight)
        loss.label_mean = torch.tensor([[t.label_mean for t in tasks] for tasks in task_lists]).unsqueeze(1)
        loss.label_std = torch.tensor([[t.label_std for t in tasks] for tasks in task_lists]).unsqueeze(1)
        return loss

    def to(self, device: torch.device | str) -> MultiTaskLoss:
        for name in ("is_binary", "label_mean", "label_std", "chain", "joint_columns", "given", "condition_chain"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def loss_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels [..., B, K] the losses are computed against (`conditional_labels` with this
        loss's entire_space); `labels` itself without conditional tasks. Under distributed
        training the trainer turns the global batch's labels before counting them, so that each
        task's mean divides by the rows its loss is over."""
        if not self.conditional:
            return labels
        return _turn_labels(self.chains, labels, self.entire_space)

    def with_loss_labels(self, batch: Split) -> Split:
        """The batch with its labels turned by `loss_labels` (the batch itself without conditional tasks)."""
        if not self.conditional:
            return batch
        return dataclasses.replace(batch, labels=self.loss_labels(batch.labels))

    def __call__(
        self, outputs: torch.Tensor, labels: torch.Tensor, label_counts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """label_counts [..., K]: what each task's mean divides by, when `labels` are one rank's
        share of a larger batch (see `mmoe.train.distributed`); default: this batch's labelled rows.
        A task without labelled rows has a loss of exactly 0 (its sum, 0, over a count clamped to 1).
        labels: as the data hold them, or already turned by `loss_labels` (turning is idempotent)."""
        labels = self.loss_labels(labels)
        present = ~torch.isnan(labels)
        if self.all_binary:  # the common case, in fewer ops: they are a few % of a census step
            per_element = F.binary_cross_entropy_with_logits(outputs, torch.nan_to_num(labels), reduction="none")
        else:
            targets = torch.nan_to_num((labels - self.label_mean) / self.label_std)
            per_element = torch.where(
                self.is_binary,
                F.binary_cross_entropy_with_logits(outputs, targets, reduction="none"),
                (outputs - targets).square(),
            )
        if self.entire_space:
            # log σ(o) once for both terms; regression outputs are masked out (their chain entries are 0).
            log_sigmoid = torch.where(self.is_binary, F.logsigmoid(outputs), 0.0)
            joint = self._joint_bce(log_sigmoid, labels)
            if self.counterfactual_weight:
                ipw = self._counterfactual_bce(log_sigmoid.detach(), labels, per_element)
                joint = joint + self.counterfactual_weight * ipw
            per_element = torch.where(self.joint_columns, joint, per_element)
        counts = present.sum(-2) if label_counts is None else label_counts
        return (per_element * present).sum(-2) / counts.clamp(min=1), counts > 0

    def _joint_bce(self, log_sigmoid: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[..., B, K]: per row, the BCE of each task's joint probability against its (joint)
        label, from log σ(o) [..., B, K] (0 in regression columns); meaningful in the entire-space
        columns only."""
        log_p = (log_sigmoid @ self.chain.T).clamp(max=_MAX_LOG_PROBABILITY)  # [..., B, K]
        y = torch.nan_to_num(labels)
        return -(y * log_p + (1 - y) * log1mexp(log_p))

    def _counterfactual_bce(
        self, log_sigmoid: torch.Tensor, labels: torch.Tensor, own_bce: torch.Tensor
    ) -> torch.Tensor:
        """[..., B, K]: ESCM²'s IPW term per row (see the class docstring), before λ; meaningful in
        the entire-space columns only. log_sigmoid: log σ(o), detached (the propensity carries no
        gradient). own_bce: each output's BCE against its column's label, which on the rows where
        the condition holds is the task's own label (joint = condition ∧ own)."""
        log_propensity = log_sigmoid @ self.condition_chain.T  # [..., B, K]
        weight = torch.exp(-log_propensity).clamp(max=MAX_IPW_WEIGHT)
        condition_holds = labels.index_select(-1, self.given) == 1
        return torch.where(condition_holds, own_bce * weight, 0.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate over the whole range (Mächler 2012): log(-expm1(x))
    near 0, log1p(-exp(x)) further out. x must be below 0 (the caller clamps)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def resolve_entire_space(option: bool | None, model: nn.Module, tasks: Sequence[Task]) -> bool:
    """Whether training uses the entire-space loss: the `entire_space` training option, where
    None takes the model's default (a model class sets `entire_space_by_default = True`, as
    ESMM does; every other model's is off). Off when no task is conditional; MmoeError when the
    option asks for it then."""
    conditional = any(task.given is not None for task in tasks)
    if option and not conditional:
        raise MmoeError(
            f"training option entire_space trains conditional tasks over every row, but none of the tasks "
            f"({', '.join(task.name for task in tasks)}) has a given=; expected e.g. "
            f"--tasks click:binary,purchase:binary:given=click"
        )
    wanted = bool(getattr(model, "entire_space_by_default", False)) if option is None else bool(option)
    return wanted and conditional


def resolve_loss_options(
    entire_space: bool | None, counterfactual_weight: float, model: nn.Module, tasks: Sequence[Task]
) -> tuple[bool, float]:
    """(entire_space, counterfactual_weight) as MultiTaskLoss takes them, from the training options
    (`TrainConfig`): entire_space by `resolve_entire_space`; MmoeError when counterfactual_weight
    asks for ESCM²'s term without entire-space training."""
    entire = resolve_entire_space(entire_space, model, tasks)
    if counterfactual_weight and not entire:
        raise MmoeError(
            f"training option counterfactual_weight ({counterfactual_weight:g}) adds ESCM²'s term to the "
            f"entire-space loss of conditional tasks; train entire-space: --entire-space (or --model esmm) with a "
            f"task given=another"
        )
    return entire, counterfactual_weight
