"""ESMM (Ma et al., SIGIR 2018): the entire-space multi-task model of conversion after a click.

The paper's network: the rows' embeddings are looked up once and shared; over them, one MLP
tower per task (a CTR tower and a CVR tower), nothing else shared (no experts, no bottom).
With U = tower_units (the paper's 360, 200, 80), task k's output is

    o_k = w_k · relu(... relu(W_k^1 x + b_k^1) ...) + c_k        x: the row's input (numbers,
                                                                   one-hot slots, shared embeddings)

ESMM's other half is its loss: a conversion (purchase) task declared to follow the click
(`Task("purchase", "binary", given="click")`) is trained on the entire space of impressions,
on P(click ∧ purchase | x) = σ(o_click) · σ(o_purchase) against click ∧ purchase, so that
σ(o_purchase) = P(purchase | click, x) is learnt from every row without the sample-selection
bias of training on clicked rows only (`mmoe.train.loss.MultiTaskLoss`). This model turns that
training on by default (`entire_space_by_default`; TrainConfig's entire_space None); an
explicit entire_space=False trains the same towers the naive way, the paper's baseline.
The same entire-space training is an option of every other model (ESMM-MMoE, ESMM-PLE: any
`--model` with `--entire-space`).

The towers are one grouped product (`Towers`), never a loop over tasks: the input layer of all
K towers is one `SparseLinear` with K·U[0] outputs, the deeper layers a grouped MLP. The
embedding tables (embedded columns; their dimension is a data option, 18 in the paper) are
part of that input layer and shared by the towers, as the paper's embedding layer is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mmoe.models.base import MultiTaskModel, TowerUnits, check_units
from mmoe.models.layers import SparseLinear, Towers
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna

# The paper's towers: 360 × 200 × 80 before the output layer (Section 3.2).
PAPER_TOWER_UNITS = (360, 200, 80)


class ESMM(MultiTaskModel):
    """ESMM: a tower per task over shared embeddings, conditional tasks trained on the entire space (Ma et al., 2018).

    Defaults: the paper's towers of 360, 200 and 80 units. Conditional tasks (NAME:binary:given=
    OTHER) train entire-space unless entire_space=False; without one, ESMM is K towers over a
    shared input.
    """

    name = "esmm"
    entire_space_by_default: ClassVar[bool] = True

    def __init__(self, input_spec: InputSpec, num_tasks: int, tower_units: TowerUnits = PAPER_TOWER_UNITS) -> None:
        tower_units = check_units(self.name, "tower_units", tower_units)
        super().__init__(input_spec, num_tasks, tower_units=tower_units)
        self.input_layer = SparseLinear(input_spec, num_tasks * tower_units[0])
        self.towers = Towers(num_tasks, tower_units[0], tower_units[1:])

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        """Towers of 1 to 3 layers narrowing as the paper's (360 : 200 : 80), the first layer
        log-uniform in [8, min(max_units, 360)]: the paper's towers are the largest drawn."""
        layers = trial.suggest_int("tower_layers", 1, 3)
        first = trial.suggest_int("tower_width", 8, max(8, min(max_units, PAPER_TOWER_UNITS[0])), log=True)
        widths = [max(1, round(first * units / PAPER_TOWER_UNITS[0])) for units in PAPER_TOWER_UNITS[:layers]]
        return {"tower_units": tuple(widths)}

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        first = torch.relu(self.input_layer(numeric, categorical))  # [B, K·U0]
        return self.towers(first.view(-1, self.num_tasks, self.hyperparameters["tower_units"][0]))
