"""An ensemble: N trained networks of one architecture (population training's replicas, `--replicas N
--ensemble`) that predict as one model.

Per binary task the ensemble's probability is the mean of the members' probabilities,
p = (1/N) Σ_i σ(z_i); its output, like every model's, is a logit: logit(p), computed without
leaving log space as logsumexp_i(log σ(z_i)) − logsumexp_i(log σ(−z_i)) (the 1/N cancels), so
that probabilities near 0 or 1 keep their precision. Per regression task the output is the mean
of the members' standardised outputs, i.e. the mean prediction. Averaging probabilities rather
than logits keeps each member's calibration: a mean of logits is a geometric mean of odds,
which overstates the ensemble's confidence wherever the members disagree.

The ensemble is not trained as one: it has no loss term and no gates of its own. It reads as its
members' model (`name`, `hyperparameters`, `input_spec` are theirs), so that a run's config.json
names the architecture; a run directory marks it by "ensemble" (the member count) in config.json
and model.pt (`mmoe.runs`). Its state_dict is its members', "members.{i}.…".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel


class EnsembleModel(MultiTaskModel):
    """forward(numeric [B, num_numeric], categorical [B, num_categorical]) -> outputs [B, K]: per
    binary task (`binary[k]`) the logit of the members' mean probability, per regression task the
    members' mean output (see the module docstring). members: N ≥ 1 models of one architecture
    and input; binary: per task, whether it is binary (the order of the outputs)."""

    binary: torch.Tensor

    def __init__(self, members: Sequence[MultiTaskModel], binary: Sequence[bool]) -> None:
        if not members:
            raise MmoeError("an ensemble needs at least one member model")
        first = members[0]
        different = [m.name for m in members if m.name != first.name or m.hyperparameters != first.hyperparameters]
        if different or any(m.input_spec != first.input_spec for m in members):
            raise MmoeError(
                f"an ensemble's members must share one architecture and input; got {first.name} and {different}"
            )
        if len(binary) != first.num_tasks:
            raise MmoeError(f"an ensemble of {first.num_tasks} tasks got {len(binary)} task kinds")
        super().__init__(first.input_spec, first.num_tasks, **first.hyperparameters)
        # It reads as its members' model (not registered in MODELS: it is built, not named).
        setattr(self, "name", first.name)  # noqa: B010 (an instance's value of the class-level name)
        self.members = nn.ModuleList(members)
        self.register_buffer("binary", torch.tensor([bool(b) for b in binary]), persistent=False)

    @property
    def size(self) -> int:
        """The number of members, N."""
        return len(self.members)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(numeric, categorical) for member in self.members])  # [N, B, K]
        mean_logit = torch.logsumexp(F.logsigmoid(outputs), 0) - torch.logsumexp(F.logsigmoid(-outputs), 0)
        return torch.where(self.binary, mean_logit, outputs.mean(0))
