"""Tensor-Factorization (Yang & Hospedales, 2016): task-specific weights from a Tucker decomposition."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_units, suggest_hidden_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.models.single_task import HiddenUnits
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna


class TensorFactorization(MultiTaskModel):
    """Tensor-Factorization: task-specific hidden weights W (d × h × K) = S ×₁ U1 ×₂ U2 ×₃ U3.

    The Tucker decomposition has core S (r1 × r2 × r3) and factors U1 (d × r1), U2 (h × r2),
    U3 (K × r3).

    Task k's hidden layer is relu(xᵀ W_k + b_k) with W_k = U1 · (Σ_c S[:, :, c] U3[k, c]) · U2ᵀ;
    computed as (xᵀU1) M_k U2ᵀ so W is never built. hidden_units[0] is h; further hidden layers
    and the towers are task-specific. ranks: (r1, r2, r3).
    """

    name = "tensor-factorization"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        hidden_units: HiddenUnits = (64,),
        tower_units: TowerUnits = (8,),
        ranks: Annotated[Units, Help("Tucker ranks r1,r2,r3")] = (16, 16, 2),
    ) -> None:
        hidden_units = check_units(self.name, "hidden_units", hidden_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        ranks = check_units(self.name, "ranks", ranks)
        if len(ranks) != 3:
            raise MmoeError(f"model {self.name}: ranks must be three integers r1,r2,r3, got {ranks!r}")
        super().__init__(input_spec, num_tasks, hidden_units=hidden_units, tower_units=tower_units, ranks=ranks)
        r1, r2, r3 = ranks
        self.input_factor = SparseLinear(input_spec, r1, bias=False)  # xᵀU1
        # Scales chosen so each contraction keeps an O(1) activation, like nn.Linear's init.
        self.core = nn.Parameter(torch.empty(r1, r2, r3).uniform_(-1, 1) / math.sqrt(r1))
        self.hidden_factor = nn.Parameter(torch.empty(hidden_units[0], r2).uniform_(-1, 1) * math.sqrt(3 / r2))
        self.task_factor = nn.Parameter(torch.empty(num_tasks, r3).uniform_(-1, 1) * math.sqrt(3 / r3))
        self.bias = nn.Parameter(torch.zeros(num_tasks, hidden_units[0]))
        self.bottom = GroupedMLP(num_tasks, hidden_units[0], hidden_units[1:])
        self.towers = Towers(num_tasks, hidden_units[-1], tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        hidden = suggest_hidden_units(trial, max_units)
        r1 = trial.suggest_int("r1", 2, 64, log=True)
        r2 = trial.suggest_int("r2", 2, 64, log=True)
        r3 = trial.suggest_int("r3", 1, 2)
        return {"hidden_units": (hidden,), "ranks": (r1, min(r2, hidden), r3)}

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        projected = self.input_factor(numeric, categorical)  # [B, r1]
        per_task_core = torch.einsum("abc,kc->kab", self.core, self.task_factor)  # [K, r1, r2]
        hidden = torch.einsum("na,kab->nkb", projected, per_task_core) @ self.hidden_factor.T  # [B, K, h]
        return self.towers(self.bottom(torch.relu(hidden + self.bias)))
