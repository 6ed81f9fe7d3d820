"""Single-Task: one independent network per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmoe.spec import InputSpec
from mmoe.models.base import MultiTaskModel, check_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers


class SingleTask(MultiTaskModel):
    """Single-Task: one independent network per task; nothing is shared.

    Each task k has its own bottom MLP (hidden_units) and tower (tower_units). The K networks are
    evaluated side by side as one grouped product, but no parameter serves two tasks: task k's
    output depends only on task k's slice of every weight.
    """

    name = "single-task"

    def __init__(self, input_spec: InputSpec, num_tasks: int, hidden_units: Sequence[int] = (64,),
                 tower_units: Sequence[int] = (8,)) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        super().__init__(input_spec, num_tasks, hidden_units=hidden_units, tower_units=tower_units)
        self.input_layer = SparseLinear(input_spec, num_tasks * hidden_units[0])
        self.bottom = GroupedMLP(num_tasks, hidden_units[0], hidden_units[1:])
        self.towers = Towers(num_tasks, hidden_units[-1], tower_units)

    def first_hidden(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """[B, num_tasks, hidden_units[0]]: each task's first hidden layer."""
        first = self.input_layer(numeric, categorical)
        return torch.relu(first.view(-1, self.num_tasks, self.hyperparameters["hidden_units"][0]))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.towers(self.bottom(self.first_hidden(numeric, categorical)))
