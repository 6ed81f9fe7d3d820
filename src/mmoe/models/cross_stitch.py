"""Cross-Stitch networks (Misra et al., 2016): per-task networks mixed after each hidden layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_units, suggest_hidden_units
from mmoe.models.layers import GroupedLinear, SparseLinear, Towers
from mmoe.models.options import Help
from mmoe.models.single_task import HiddenUnits
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna

Stitch = Literal["layer", "unit"]
STITCH_KINDS = get_args(Stitch)


class CrossStitch(MultiTaskModel):
    """Cross-Stitch: one network per task; after every hidden layer, [x̃_1; …; x̃_K] = A·[x_1; …; x_K].

    A is a trainable K×K matrix per layer (stitch="layer") or per unit (stitch="unit"),
    initialised to keep `self_weight` of each task's own activation and share the rest equally
    (rows sum to 1), as in the Cross-Stitch paper. hidden_units: the layer widths; the paper's
    "hidden size" and "cross-stitch layer size" are hidden_units[0] and hidden_units[1].
    """

    name = "cross-stitch"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        hidden_units: HiddenUnits = (64,),
        tower_units: TowerUnits = (8,),
        stitch: Annotated[Stitch, Help("one cross-stitch matrix per layer or per unit")] = "layer",
        self_weight: Annotated[float, Help("the initial share of a task's own activation, in [0, 1]")] = 0.9,
    ) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        if stitch not in STITCH_KINDS:
            raise MmoeError(f"model {self.name}: stitch must be one of {', '.join(STITCH_KINDS)}, got {stitch!r}")
        if not 0.0 <= self_weight <= 1.0:
            raise MmoeError(f"model {self.name}: self_weight must be in [0, 1], got {self_weight!r}")
        super().__init__(
            input_spec,
            num_tasks,
            hidden_units=hidden_units,
            tower_units=tower_units,
            stitch=stitch,
            self_weight=self_weight,
        )
        self.input_layer = SparseLinear(input_spec, num_tasks * hidden_units[0])
        self.layers = nn.ModuleList(GroupedLinear(num_tasks, a, b) for a, b in zip(hidden_units[:-1], hidden_units[1:]))
        share = (1.0 - self_weight) / (num_tasks - 1) if num_tasks > 1 else 0.0
        start = torch.full((num_tasks, num_tasks), share).fill_diagonal_(self_weight if num_tasks > 1 else 1.0)
        self.stitches = nn.ParameterList(
            nn.Parameter(start.clone() if stitch == "layer" else start.repeat(width, 1, 1)) for width in hidden_units
        )
        self.towers = Towers(num_tasks, hidden_units[-1], tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return {"hidden_units": (suggest_hidden_units(trial, max_units),)}

    def _stitch(self, hidden: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
        if mixing.dim() == 2:
            return torch.einsum("kj,bju->bku", mixing, hidden)
        return torch.einsum("ukj,bju->bku", mixing, hidden)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        width = self.hyperparameters["hidden_units"][0]
        hidden = torch.relu(self.input_layer(numeric, categorical).view(-1, self.num_tasks, width))
        hidden = self._stitch(hidden, self.stitches[0])
        for layer, mixing in zip(self.layers, self.stitches[1:]):
            hidden = self._stitch(torch.relu(layer(hidden)), mixing)
        return self.towers(hidden)
