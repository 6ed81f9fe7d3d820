"""AITM (Xi et al., KDD 2021): task towers in sequence, each task told about the one before it by
attention, and the behavioural-expectation calibrator.

Notation: K tasks, in the order of `--tasks`, which is the sequence (impression → click →
purchase → ...); U = hidden_units, d = U[-1].

    q_t = f_t(x)                 task t's tower: its own ReLU MLP of widths U over x      [B, K, d]
    z_1 = q_1
    p_{t−1} = ReLU(W^p_t z_{t−1} + b^p_t)        the transfer MLP: what task t−1 passes on   [B, d]
    for v ∈ {p_{t−1}, q_t}:
        w_v = softmax_v(⟨W^Q_t v, W^K_t v⟩ / √d)  attention over the two (the AIT module)   [B, 2]
    z_t = Σ_v w_v W^V_t v                                                                  [B, d]
    y_t = h_t(z_t)               task t's output MLP (tower_units) to one logit / value     [B, K]
W^Q, W^K, W^V are the paper's projections h1, h2, h3 (linear, d → d); every step t = 2..K has
its own W^p, b^p, W^Q, W^K, W^V.

Calibrator: a later task of the sequence is a deeper conversion (no purchase without a click),
so P(task t) ≤ P(task t−1). For every two consecutive binary tasks the loss gains
    calibrator_weight · Σ_t max(σ(y_t) − σ(y_{t−1}), 0)      per row, a mean over the rows
(through `forward_with_aux`; the paper's weight α = 0.6). A pair with a regression task has no
such order and is left out. The calibrator assumes that the binary tasks are steps of one
funnel in the order given; for binary tasks without that order (census's income and marital
status) set calibrator_weight to 0.

Input: the paper's towers share the embedding layer. Here every tower has its own first layer,
as Single-Task's networks do: an embedded categorical column's table is looked up once and
read by every tower (shared embeddings, the paper's setting), while a one-hot column's weight
row in a tower's first layer is that tower's own embedding of the category.

Batched: the K towers are one `SparseLinear` and one `GroupedMLP` (as Single-Task's), the output
MLPs one `Towers`. The transfer and the attention run in a Python loop over the K − 1 steps of
the sequence, which is the model's definition (z_t needs z_{t−1}); a step is two products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_non_negative, check_units, suggest_hidden_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec, Task

if TYPE_CHECKING:
    import optuna


def calibrator(outputs: torch.Tensor, tasks: Sequence[Task]) -> torch.Tensor:
    """Σ over rows and consecutive binary tasks (t−1, t) of max(σ(y_t) − σ(y_{t−1}), 0): outputs
    [B, K] logits (and values of regression tasks, which no pair includes) -> a scalar."""
    later = [t for t in range(1, len(tasks)) if tasks[t].kind == tasks[t - 1].kind == "binary"]
    if not later:
        return outputs.new_zeros(())
    probabilities = torch.sigmoid(outputs)
    earlier = [t - 1 for t in later]
    return torch.relu(probabilities[..., later] - probabilities[..., earlier]).sum()


class AITM(MultiTaskModel):
    """AITM: task towers in sequence, attention from each task to the next, and a calibrator (Xi et al., 2021).

    Defaults: towers of 64 units per task (Single-Task's), output MLPs of 8, calibrator weight
    0.6 (the paper's).
    """

    name = "aitm"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        hidden_units: Annotated[
            Units, Help("each task's tower: its layer widths, the last the attention's width, e.g. 64 or 64,32")
        ] = (64,),
        tower_units: TowerUnits = (8,),
        calibrator_weight: Annotated[
            float, Help("weight of the calibrator: a later binary task's probability above the one before (0: none)")
        ] = 0.6,
    ) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        calibrator_weight = check_non_negative(self.name, "calibrator_weight", calibrator_weight)
        super().__init__(
            input_spec,
            num_tasks,
            hidden_units=hidden_units,
            tower_units=tower_units,
            calibrator_weight=calibrator_weight,
        )
        self.calibrator_weight = calibrator_weight
        self.input_layer = SparseLinear(input_spec, num_tasks * hidden_units[0])
        self.bottom = GroupedMLP(num_tasks, hidden_units[0], hidden_units[1:])
        width = hidden_units[-1]
        bound = 1.0 / math.sqrt(width)  # nn.Linear's
        steps = num_tasks - 1
        # Per step t = 2..K: the transfer MLP's W^p [d, d] and b^p [d], and W^Q | W^K | W^V [d, 3d].
        self.transfer_weight = nn.Parameter(torch.empty(steps, width, width).uniform_(-bound, bound))
        self.transfer_bias = nn.Parameter(torch.empty(steps, width).uniform_(-bound, bound))
        self.attention_weight = nn.Parameter(torch.empty(steps, width, 3 * width).uniform_(-bound, bound))
        self.towers = Towers(num_tasks, width, tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return {
            "hidden_units": (suggest_hidden_units(trial, max_units),),
            "calibrator_weight": trial.suggest_float("calibrator_weight", 0.1, 1.0),
        }

    def transferred(self, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z [B, K, d]: every task's representation after the transfer, z_1 = q_1; the attention
        weights [B, K − 1, 2]: step t's w over (p_{t−1}, q_t), each row summing to 1)."""
        first = self.input_layer(numeric, categorical)
        towers = self.bottom(torch.relu(first.unflatten(-1, (self.num_tasks, -1))))  # q [B, K, d]
        width = towers.shape[-1]
        represented, weights = [towers[:, 0]], []
        for step in range(self.num_tasks - 1):
            passed = torch.relu(represented[-1] @ self.transfer_weight[step] + self.transfer_bias[step])  # p [B, d]
            pair = torch.stack([passed, towers[:, step + 1]], 1)  # [B, 2, d]
            query, key, value = (pair @ self.attention_weight[step]).split(width, -1)  # [B, 2, d] each
            weight = torch.softmax((query * key).sum(-1) / math.sqrt(width), -1)  # [B, 2]
            represented.append((weight.unsqueeze(-1) * value).sum(1))
            weights.append(weight)
        attention = torch.stack(weights, 1) if weights else towers.new_zeros(towers.shape[0], 0, 2)
        return torch.stack(represented, 1), attention

    def attention(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """[B, K − 1, 2]: step t's attention weights over (p_{t−1}, q_t), each row summing to 1."""
        return self.transferred(numeric, categorical)[1]

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.towers(self.transferred(numeric, categorical)[0])

    def forward_with_aux(
        self, numeric: torch.Tensor, categorical: torch.Tensor, tasks: Sequence[Task]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs [B, K], calibrator_weight · `calibrator(outputs, tasks)`: summed over the rows)."""
        if len(tasks) != self.num_tasks:
            raise MmoeError(f"model {self.name}: {len(tasks)} tasks given for a model of {self.num_tasks}")
        outputs = self(numeric, categorical)
        return outputs, self.calibrator_weight * calibrator(outputs, tasks)
