"""PLE and CGC (Tang et al., RecSys 2020): per-task and shared experts, gated per task, in levels.

Notation: K tasks, S = specific_experts per task, H = shared_experts, E = K·S + H experts per
level, ordered [task 0's S experts, ..., task K−1's S experts, the H shared experts]; U =
expert_units (every expert of every level is a ReLU MLP of those widths), u = U[-1].

Level l = 1..L reads one input per task, a_k^{l−1} (task k's), and a shared one, a_s^{l−1};
level 1 reads the row x for all of them (a_k^0 = a_s^0 = x):
    expert i of task k:  f_i^l(a_k^{l−1}),   shared expert i:  f_i^l(a_s^{l−1})
    task gate:    g_k^l = softmax(W_k^l a_k^{l−1})        over task k's S experts ∪ the H shared
    task output:  a_k^l = Σ_{i ∈ own(k) ∪ shared} g_{k,i}^l f_i^l                          [B, K, u]
    shared gate:  g_s^l = softmax(W_s^l a_s^{l−1})        over all E experts (levels l < L only)
    shared output: a_s^l = Σ_{i=1..E} g_{s,i}^l f_i^l                                      [B, u]
    y_k = h_k(a_k^L)    (one tower per task)
Gates have no bias, as MMoE's. The last level has no shared gate: nothing reads a_s^L. Without
shared experts (H = 0) no level has one either, since no expert would read its output; each
task is then a separate network (its own experts, gate and tower). CGC is PLE with L = 1, and
CGC without specific experts (S = 0) is MMoE with H experts: same parameters, same function.

Batched as the MoE models are (never a Python loop over experts or tasks; one over levels):
level 1's experts' first layer, its task gates and its shared gate all read x, so they are one
`SparseLinear` with E·U[0] + K·(S+H) (+ E below the last level) outputs, laid out as MMoE's
`ExpertBank` (experts first, then the task gates); deeper expert layers are one `GroupedMLP`
over the E experts. At a deeper level each expert's input is gathered per expert group (task
k's S experts read a_k, the shared ones a_s) into [B, E, u], and its experts are one
`GroupedMLP` over E; its task gates are one batched product [K, B, u] @ [K, u, S+H].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_positive, check_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec

if TYPE_CHECKING:
    import optuna

SpecificExperts = Annotated[int, Help("experts per task that only that task's gate chooses from (0: none)")]
SharedExperts = Annotated[int, Help("experts that every task's gate chooses from (0: none)")]
ExpertUnits = Annotated[Units, Help("units per expert layer, e.g. 16 or 32,16")]


class LevelOutput(NamedTuple):
    """What one level computes: its outputs, which the next level reads, and its gates."""

    tasks: torch.Tensor  # [B, K, u] a_k: task k's gate's mixture
    shared: torch.Tensor | None  # [B, u] a_s: the shared gate's mixture (None without a shared gate)
    task_gates: torch.Tensor  # [B, K, S+H] g_k: over task k's own S experts, then the H shared ones
    shared_gate: torch.Tensor | None  # [B, E] g_s: over all E experts of the level


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, computed with it leading: torch's CPU kernel is slow over
    a short last dimension (see `MixtureOfExperts._experts_and_gates`)."""
    return torch.softmax(logits.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1)


class _Level(nn.Module):
    """What every level shares: the layout of its E experts and its gates, and their mixing."""

    def __init__(self, num_tasks: int, specific: int, shared: int, shared_gate: bool) -> None:
        super().__init__()
        self.num_tasks, self.specific, self.shared = num_tasks, specific, shared
        self.num_experts = num_tasks * specific + shared
        self.has_shared_gate = shared_gate

    def gate_and_mix(
        self, experts: torch.Tensor, task_logits: torch.Tensor, shared_logits: torch.Tensor | None
    ) -> LevelOutput:
        """experts [B, E, u], task gate logits [B, K, S+H], shared gate logits [B, E] or None ->
        the level's outputs and gates (see `LevelOutput`)."""
        task_gates = _softmax(task_logits)
        shared_gate = None if shared_logits is None else _softmax(shared_logits)
        specific, shared = self.specific, self.shared
        if specific and shared:
            own_experts, shared_experts = experts.split([self.num_tasks * specific, shared], 1)
            own_gates, shared_gates = task_gates.split([specific, shared], -1)
        else:
            own_experts = shared_experts = experts
            own_gates = shared_gates = task_gates
        tasks = None
        if specific:  # [B, K, 1, S] @ [B, K, S, u] -> [B, K, u]: task k's gate over task k's experts
            own = own_experts.unflatten(1, (self.num_tasks, specific))
            tasks = (own_gates.unsqueeze(-2) @ own).squeeze(-2)
        if shared:  # [B, K, H] @ [B, H, u] -> [B, K, u] (with S = 0 exactly MMoE's mixing)
            mixed = torch.bmm(shared_gates, shared_experts)
            tasks = mixed if tasks is None else tasks + mixed
        assert tasks is not None  # S + H ≥ 1, checked by the model
        if shared_gate is None:
            return LevelOutput(tasks, None, task_gates, None)
        mixed = torch.bmm(shared_gate.unsqueeze(1), experts).squeeze(1)  # [B, 1, E] @ [B, E, u] -> [B, u]
        return LevelOutput(tasks, mixed, task_gates, shared_gate)


class _InputLevel(_Level):
    """Level 1: every expert and gate reads x through one `SparseLinear` (as MMoE's ExpertBank:
    the experts' first layer E·U[0], then the task gates K·(S+H), then the shared gate's E),
    deeper expert layers as one grouped product.

    forward(numeric, categorical) -> LevelOutput (a_k [B, K, u], a_s [B, u] or None, the gates)
    """

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        specific: int,
        shared: int,
        expert_units: Sequence[int],
        shared_gate: bool,
    ) -> None:
        super().__init__(num_tasks, specific, shared, shared_gate)
        self.first_units = expert_units[0]
        self.widths = [self.num_experts * expert_units[0], num_tasks * (specific + shared)]
        if shared_gate:
            self.widths.append(self.num_experts)
        # Drawn in ExpertBank's order (input layer, expert bias, deeper layers): CGC without
        # specific experts starts from the weights MMoE starts from.
        self.input_layer = SparseLinear(input_spec, sum(self.widths), bias=False)
        bound = 1.0 / math.sqrt(max(1, input_spec.num_numeric + input_spec.num_categorical))
        self.expert_bias = nn.Parameter(torch.empty(self.num_experts, expert_units[0]).uniform_(-bound, bound))
        self.deeper = GroupedMLP(self.num_experts, expert_units[0], expert_units[1:])

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> LevelOutput:
        parts = self.input_layer(numeric, categorical).split(self.widths, dim=-1)
        hidden = torch.relu(parts[0].unflatten(-1, (self.num_experts, self.first_units)) + self.expert_bias)
        task_logits = parts[1].unflatten(-1, (self.num_tasks, self.specific + self.shared))
        return self.gate_and_mix(self.deeper(hidden), task_logits, parts[2] if self.has_shared_gate else None)


class _DeeperLevel(_Level):
    """Level l > 1: task k's experts and gate read a_k^{l−1}, the shared experts and gate a_s^{l−1}.

    forward(tasks a_k^{l−1} [B, K, in_features], shared a_s^{l−1} [B, in_features] or None) -> LevelOutput
    """

    def __init__(
        self,
        num_tasks: int,
        specific: int,
        shared: int,
        in_features: int,
        expert_units: Sequence[int],
        shared_gate: bool,
    ) -> None:
        super().__init__(num_tasks, specific, shared, shared_gate)
        self.experts = GroupedMLP(self.num_experts, in_features, expert_units)
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's
        self.task_gate = nn.Parameter(torch.empty(num_tasks, in_features, specific + shared).uniform_(-bound, bound))
        self.shared_gate = (
            nn.Parameter(torch.empty(in_features, self.num_experts).uniform_(-bound, bound)) if shared_gate else None
        )

    def forward(self, tasks: torch.Tensor, shared: torch.Tensor | None) -> LevelOutput:
        inputs = []
        if self.specific:  # task k's input once per expert of its own: [B, K·S, in_features]
            inputs.append(tasks.unsqueeze(2).expand(-1, -1, self.specific, -1).flatten(1, 2))
        if self.shared:
            assert shared is not None  # the level above has a shared gate when there are shared experts
            inputs.append(shared.unsqueeze(1).expand(-1, self.shared, -1))
        experts = self.experts(inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1))
        task_logits = torch.bmm(tasks.transpose(0, 1), self.task_gate).transpose(0, 1)  # [K, B, in] @ [K, in, S+H]
        if self.shared_gate is None:
            return self.gate_and_mix(experts, task_logits, None)
        assert shared is not None
        return self.gate_and_mix(experts, task_logits, shared @ self.shared_gate)


class LayeredExtraction(MultiTaskModel):
    """PLE's network, L levels (see the module docstring); PLE and CGC set L."""

    def _build(self, specific: int, shared: int, levels: int, expert_units: Units, tower_units: Units) -> None:
        if specific + shared < 1:
            raise MmoeError(
                f"model {self.name}: specific_experts + shared_experts must be at least 1 (a gate needs an expert), "
                f"got {specific} + {shared}"
            )
        self.specific_experts, self.shared_experts = specific, shared
        # A shared gate on every level but the last, when shared experts read its output.
        shared_gates = [shared > 0 and level < levels - 1 for level in range(levels)]
        self.levels = nn.ModuleList(
            [_InputLevel(self.input_spec, self.num_tasks, specific, shared, expert_units, shared_gates[0])]
            + [
                _DeeperLevel(self.num_tasks, specific, shared, expert_units[-1], expert_units, shared_gates[level])
                for level in range(1, levels)
            ]
        )
        self.towers = Towers(self.num_tasks, expert_units[-1], tower_units)

    def level_outputs(self, numeric: torch.Tensor, categorical: torch.Tensor) -> list[LevelOutput]:
        """Per level, in order: its outputs a_k [B, K, u] and a_s [B, u], its task gates
        [B, K, S+H] (task k's own S experts, then the H shared ones) and its shared gate [B, E]
        over all its experts (None at the last level, and without shared experts)."""
        outputs = [self.levels[0](numeric, categorical)]
        for level in self.levels[1:]:
            outputs.append(level(outputs[-1].tasks, outputs[-1].shared))
        return outputs

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.towers(self.level_outputs(numeric, categorical)[-1].tasks)

    def gates(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """[B, K, E]: the last level's task gates over all its E experts, in the order [task 0's
        S experts, ..., task K−1's S experts, the H shared ones]; zero on the other tasks' own
        experts, which task k's gate cannot choose. Rows sum to 1 (as MixtureOfExperts.gates;
        with S = 0 exactly MMoE's)."""
        task_gates = self.level_outputs(numeric, categorical)[-1].task_gates
        specific = self.specific_experts
        if not specific:
            return task_gates
        own, shared = task_gates.split([specific, self.shared_experts], -1)
        diagonal = torch.eye(self.num_tasks, dtype=own.dtype, device=own.device).unsqueeze(-1)  # [K, K, 1]
        own = (own.unsqueeze(2) * diagonal).flatten(2)  # [B, K, K, S] -> [B, K, K·S], task k's block only
        return torch.cat([own, shared], -1)

    @classmethod
    def _search(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        specific = trial.suggest_int("specific_experts", 1, 4)
        shared = trial.suggest_int("shared_experts", 1, 8)
        units = trial.suggest_int("expert_units", 4, max(4, max_units), log=True)
        # The paper's limit, experts × units per expert ≤ the cap, on one level's experts with two
        # tasks (the paper's studies have two; search_space is not told the number of tasks).
        experts = 2 * specific + shared
        return {
            "specific_experts": specific,
            "shared_experts": shared,
            "expert_units": (max(1, min(units, max_units // experts)),),
        }


class PLE(LayeredExtraction):
    """PLE: levels of per-task and shared experts, gated per task, a shared gate between levels (Tang et al., 2020).

    Defaults: 2 experts per task and 4 shared, so that with two tasks a level has MMoE's
    8 experts × 16 units; 2 levels (the second reads 16-wide inputs, a small fraction of the
    first level's parameters on a wide input); towers of 8.
    """

    name = "ple"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        specific_experts: SpecificExperts = 2,
        shared_experts: SharedExperts = 4,
        levels: Annotated[int, Help("extraction levels; each but the last has a shared gate, read by the next")] = 2,
        expert_units: ExpertUnits = (16,),
        tower_units: TowerUnits = (8,),
    ) -> None:
        specific_experts = _check_count(self.name, "specific_experts", specific_experts)
        shared_experts = _check_count(self.name, "shared_experts", shared_experts)
        levels = check_positive(self.name, "levels", levels)
        expert_units = check_units(self.name, "expert_units", expert_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        super().__init__(
            input_spec,
            num_tasks,
            specific_experts=specific_experts,
            shared_experts=shared_experts,
            levels=levels,
            expert_units=expert_units,
            tower_units=tower_units,
        )
        self._build(specific_experts, shared_experts, levels, expert_units, tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        drawn = cls._search(trial, max_units)
        return {**drawn, "levels": trial.suggest_int("levels", 1, 3)}


class CGC(LayeredExtraction):
    """CGC: per-task and shared experts, each task's gate over its own and the shared ones (Tang et al., 2020).

    Defaults as PLE's: 2 experts per task and 4 shared (8 experts × 16 units with two tasks,
    MMoE's size), towers of 8. With specific_experts=0 it is MMoE.
    """

    name = "cgc"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        specific_experts: SpecificExperts = 2,
        shared_experts: SharedExperts = 4,
        expert_units: ExpertUnits = (16,),
        tower_units: TowerUnits = (8,),
    ) -> None:
        specific_experts = _check_count(self.name, "specific_experts", specific_experts)
        shared_experts = _check_count(self.name, "shared_experts", shared_experts)
        expert_units = check_units(self.name, "expert_units", expert_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        super().__init__(
            input_spec,
            num_tasks,
            specific_experts=specific_experts,
            shared_experts=shared_experts,
            expert_units=expert_units,
            tower_units=tower_units,
        )
        self._build(specific_experts, shared_experts, 1, expert_units, tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return cls._search(trial, max_units)


def _check_count(model: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MmoeError(f"model {model}: {option} must be a non-negative integer, got {value!r}")
    return value
