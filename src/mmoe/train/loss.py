"""The multi-task loss: per-task BCE-with-logits or MSE, masked where a label is missing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmoe.spec import Task


class MultiTaskLoss:
    """Per task k: the mean over the rows with a label of ℓ_k(output_k, label_k).

    ℓ_k is BCE with logits for a binary task and the squared error on the standardised label for
    a regression task. All tasks are computed in one vectorised pass (no loop over tasks): this
    runs once per batch. Outputs and labels are [..., B, K] (a leading replica dimension is
    allowed); returns the per-task losses [..., K] (attached to the graph) and which tasks have
    labelled rows [..., K]. Turning them into one loss is the job of `mmoe.train.weighting`.
    """

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.is_binary = torch.tensor([task.kind == "binary" for task in tasks])
        self.label_mean = torch.tensor([task.label_mean for task in tasks], dtype=torch.float32)
        self.label_std = torch.tensor([task.label_std for task in tasks], dtype=torch.float32)
        # Binary labels are 0/1 and never standardised (their tasks keep mean 0, std 1).
        self.all_binary = all(task.kind == "binary" and task.label_mean == 0 and task.label_std == 1 for task in tasks)

    @classmethod
    def stacked(cls, task_lists: Sequence[Sequence[Task]]) -> MultiTaskLoss:
        """One loss for N replicas with their own label statistics (outputs [N, B, K])."""
        loss = cls(task_lists[0])
        loss.label_mean = torch.tensor([[t.label_mean for t in tasks] for tasks in task_lists]).unsqueeze(1)
        loss.label_std = torch.tensor([[t.label_std for t in tasks] for tasks in task_lists]).unsqueeze(1)
        return loss

    def to(self, device: torch.device | str) -> MultiTaskLoss:
        for name in ("is_binary", "label_mean", "label_std"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __call__(
        self, outputs: torch.Tensor, labels: torch.Tensor, label_counts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """label_counts [..., K]: what each task's mean divides by, when `labels` are one rank's
        share of a larger batch (see `mmoe.train.distributed`); default: this batch's labelled rows.
        A task without labelled rows has a loss of exactly 0 (its sum, 0, over a count clamped to 1)."""
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
        counts = present.sum(-2) if label_counts is None else label_counts
        return (per_element * present).sum(-2) / counts.clamp(min=1), counts > 0
