"""L2-Constrained: one network per task, their bottoms pulled together by an L2 penalty."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import torch

from mmoe.models.base import TowerUnits, check_positive
from mmoe.models.layers import GroupedLinear
from mmoe.models.options import Help
from mmoe.models.single_task import HiddenUnits, SingleTask
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna


def pairwise_squared_distance(per_task: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} ‖θ_i − θ_j‖² for per_task [K, ...], via K·Σ‖θ_i‖² − ‖Σθ_i‖² (one pass, any K)."""
    flat = per_task.reshape(per_task.shape[0], -1)
    return flat.shape[0] * flat.pow(2).sum() - flat.sum(0).pow(2).sum()


class L2Constrained(SingleTask):
    """L2-Constrained: one network per task; loss adds α·Σ_{i<j} ‖θ_i − θ_j‖² over the bottoms.

    θ_k are task k's bottom parameters (every hidden layer's weights and biases; the towers are
    free). With two tasks this is the paper's α·‖θ_1 − θ_2‖²; with more, every pair counts.
    """

    name = "l2-constrained"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        hidden_units: HiddenUnits = (64,),
        tower_units: TowerUnits = (8,),
        l2_alpha: Annotated[float, Help("weight alpha of the L2 penalty on the bottoms' differences")] = 1e-3,
    ) -> None:
        l2_alpha = check_positive(self.name, "l2_alpha", l2_alpha, float)
        super().__init__(input_spec, num_tasks, hidden_units, tower_units)
        self.hyperparameters["l2_alpha"] = l2_alpha

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        hp = super().search_space(trial, max_units)
        hp["l2_alpha"] = trial.suggest_float("l2_alpha", 1e-6, 1e-1, log=True)
        return hp

    def penalty(self) -> torch.Tensor:
        width = self.hyperparameters["hidden_units"][0]
        first = self.input_layer
        assert first.bias is not None  # the per-task networks' first layer has a bias
        # The first layer's columns are laid out task-major: [.., K * width] -> [K, .., width].
        terms = [
            pairwise_squared_distance(first.numeric_weight.view(-1, self.num_tasks, width).transpose(0, 1)),
            pairwise_squared_distance(first.category_weight.view(-1, self.num_tasks, width).transpose(0, 1)),
            pairwise_squared_distance(first.bias.view(self.num_tasks, width)),
        ]
        for layer in self.bottom.hidden:
            assert isinstance(layer, GroupedLinear)
            terms += [pairwise_squared_distance(layer.weight), pairwise_squared_distance(layer.bias)]
        return self.hyperparameters["l2_alpha"] * torch.stack(terms).sum()
