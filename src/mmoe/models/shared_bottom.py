"""Shared-Bottom: y_k = h_k(f(x)), one bottom MLP shared by all tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import torch

from mmoe.models.base import MultiTaskModel, TowerUnits, check_units, suggest_hidden_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna


class SharedBottom(MultiTaskModel):
    """Shared-Bottom: one shared bottom MLP f (hidden_units), one tower h_k per task.

    The default bottom of 128 units has the width of the default expert bank (8 experts × 16).
    """

    name = "shared-bottom"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        hidden_units: Annotated[Units, Help("the shared bottom's layer widths, e.g. 128 or 128,64")] = (128,),
        tower_units: TowerUnits = (8,),
    ) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        super().__init__(input_spec, num_tasks, hidden_units=hidden_units, tower_units=tower_units)
        self.input_layer = SparseLinear(input_spec, hidden_units[0])
        self.bottom = GroupedMLP(1, hidden_units[0], hidden_units[1:])
        self.towers = Towers(num_tasks, hidden_units[-1], tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return {"hidden_units": (suggest_hidden_units(trial, max_units),)}

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        shared = self.bottom(torch.relu(self.input_layer(numeric, categorical)).unsqueeze(1))
        return self.towers(shared.expand(-1, self.num_tasks, -1))
