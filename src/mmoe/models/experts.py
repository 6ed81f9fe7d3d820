"""The batched expert bank every mixture-of-experts model shares."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mmoe.models.layers import GroupedMLP, SparseLinear
from mmoe.spec import InputSpec


class ExpertBank(nn.Module):
    """`num_experts` identical ReLU MLPs f_i, and the gates' logits W_g x, in one pass.

    Every expert's first layer and every gate read the same input x, so they are one product:
    a `SparseLinear` with num_experts·expert_units[0] + num_gates·num_experts outputs. Deeper
    expert layers run as a grouped (batched) product over experts; no Python loop over experts.
    Gates have no bias, as in the paper: g(x) = softmax(W_g x).

    forward(numeric, categorical) -> (experts [B, num_experts, expert_units[-1]],
                                      gate_logits [B, num_gates, num_experts])
    """

    def __init__(self, input_spec: InputSpec, num_experts: int, expert_units: Sequence[int], num_gates: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.num_gates = num_gates
        self.first_units = expert_units[0]
        self.input_layer = SparseLinear(input_spec, num_experts * expert_units[0] + num_gates * num_experts, bias=False)
        bound = 1.0 / math.sqrt(max(1, input_spec.num_numeric + input_spec.num_categorical))
        self.expert_bias = nn.Parameter(torch.empty(num_experts, expert_units[0]).uniform_(-bound, bound))
        self.deeper = GroupedMLP(num_experts, expert_units[0], expert_units[1:])
        self.out_features = expert_units[-1]

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # split (not slicing): its backward concatenates the two gradients instead of zero-filling
        # a full-size buffer for each part.
        expert_part, gate_part = self.input_layer(numeric, categorical).split(
            [self.num_experts * self.first_units, self.num_gates * self.num_experts], dim=-1
        )
        hidden = torch.relu(expert_part.unflatten(-1, (self.num_experts, self.first_units)) + self.expert_bias)
        gate_logits = gate_part.unflatten(-1, (self.num_gates, self.num_experts))
        return self.deeper(hidden), gate_logits
