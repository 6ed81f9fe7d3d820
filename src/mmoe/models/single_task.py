"""Single-Task: one independent network per task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import torch

from mmoe.models.base import MultiTaskModel, TowerUnits, check_units, suggest_hidden_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna

HiddenUnits = Annotated[Units, Help("each task's own network: its hidden layer widths, e.g. 64 or 64,32")]


class SingleTask(MultiTaskModel):
    """Single-Task: one independent network per task; nothing is shared.

    Each task k has its own bottom MLP (hidden_units) and tower (tower_units). The K networks are
    evaluated side by side as one grouped product, but no parameter serves two tasks: task k's
    output depends only on task k's slice of every weight. (Embedded columns are the exception:
    their embedding tables are part of the input, looked up once and read by every task's own
    first-layer weights, so the tasks share them, as they share the input itself.)
    """

    name = "single-task"

    def __init__(
        self, input_spec: InputSpec, num_tasks: int, hidden_units: HiddenUnits = (64,), tower_units: TowerUnits = (8,)
    ) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        super().__init__(input_spec, num_tasks, hidden_units=hidden_units, tower_units=tower_units)
        self.input_layer = SparseLinear(input_spec, num_tasks * hidden_units[0])
        self.bottom = GroupedMLP(num_tasks, hidden_units[0], hidden_units[1:])
        self.towers = Towers(num_tasks, hidden_units[-1], tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return {"hidden_units": (suggest_hidden_units(trial, max_units),)}

    def first_hidden(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """[B, num_tasks, hidden_units[0]]: each task's first hidden layer."""
        first = self.input_layer(numeric, categorical)
        return torch.relu(first.view(-1, self.num_tasks, self.hyperparameters["hidden_units"][0]))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.towers(self.bottom(self.first_hidden(numeric, categorical)))
