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
Gates have no bias, as MMoE's. With gate="dselect-k" every gate (task and shared) is instead
DSelect-k's (Hazimeh et al., 2021; `mmoe.models.dselect`) over the same experts: its logits are
the k selectors' z logits and weights' logits packed per gate (k·m + k of them, m = ⌈log₂ of
its expert count⌉, in place of the softmax's one per expert) plus a bias; it chooses at most k
experts once its selectors settle, and its selectors' entropy, weighted by entropy_weight,
joins the training loss (`forward_with_aux`). The last level has no shared gate: nothing reads
a_s^L. Without shared experts (H = 0) no level has one either, since no expert would read its
output; each task is then a separate network (its own experts, gate and tower). CGC is PLE with
L = 1, and CGC without specific experts (S = 0) is MMoE with H experts: same parameters, same
function.

Batched as the MoE models are (never a Python loop over experts or tasks; one over levels):
level 1's experts' first layer, its task gates and its shared gate all read x, so they are one
`SparseLinear` with E·U[0] + K·(S+H) (+ E below the last level) outputs, laid out as MMoE's
`ExpertBank` (experts first, then the task gates); deeper expert layers are one `GroupedMLP`
over the E experts. At a deeper level each expert's input is gathered per expert group (task
k's S experts read a_k, the shared ones a_s) into [B, E, u], and its experts are one
`GroupedMLP` over E; its task gates are one batched product [K, B, u] @ [K, u, S+H] (k·m + k
columns per gate instead of S+H with DSelect-k gates).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_non_negative, check_positive, check_units
from mmoe.models.dselect import DSelectGate, EntropyWeight, SelectorCount, SmoothStepWidth, selector_entropy
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec, Task

if TYPE_CHECKING:
    import optuna

SpecificExperts = Annotated[int, Help("experts per task that only that task's gate chooses from (0: none)")]
SharedExperts = Annotated[int, Help("experts that every task's gate chooses from (0: none)")]
ExpertUnits = Annotated[Units, Help("units per expert layer, e.g. 16 or 32,16")]
GateKind = Annotated[
    Literal["softmax", "dselect-k"],
    Help("every gate a softmax over its experts (the paper's) or DSelect-k's, choosing at most k of them"),
]
GATES: tuple[str, ...] = typing.get_args(typing.get_args(GateKind)[0])  # the Literal's choices


class LevelOutput(NamedTuple):
    """What one level computes: its outputs, which the next level reads, and its gates."""

    tasks: torch.Tensor  # [B, K, u] a_k: task k's gate's mixture
    shared: torch.Tensor | None  # [B, u] a_s: the shared gate's mixture (None without a shared gate)
    task_gates: torch.Tensor  # [B, K, S+H] g_k: over task k's own S experts, then the H shared ones
    shared_gate: torch.Tensor | None  # [B, E] g_s: over all E experts of the level
    entropy: torch.Tensor | None  # DSelect-k gates only: their selectors' entropy, summed over rows, gates, selectors


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, computed with it leading: torch's CPU kernel is slow over
    a short last dimension (see `MixtureOfExperts._experts_and_gates`)."""
    return torch.softmax(logits.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1)


class GateHead(nn.Module):
    """A kind of gate over `choices` experts, from the product W a computed elsewhere.

    forward(products [B, *gates, width]) -> (weights [B, *gates, choices] summing to 1, the
    selectors' entropy summed over everything, or None for a softmax). width: `choices` for a
    softmax (no bias, as MMoE's gates); k·m + k for DSelect-k (`DSelectGate.from_packed`'s
    packing), plus a bias [*gates, width] as the authors' gate has: a selector reading x without
    one could not settle on one expert for rows of both signs. gates: the leading shape, (K,)
    for a level's task gates, () for its shared gate.
    """

    def __init__(self, choices: int, dselect: tuple[int, float] | None, gates: tuple[int, ...]) -> None:
        super().__init__()
        self.dselect = None if dselect is None else DSelectGate(choices, *dselect)
        self.width = choices if self.dselect is None else self.dselect.packed_width
        self.bias = None
        if self.dselect is not None:
            self.bias = nn.Parameter(torch.empty(*gates, self.width))
            self.dselect.init_packed_(self.bias)

    def forward(self, products: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.dselect is None:
            return _softmax(products), None
        assert self.bias is not None
        selection = self.dselect.from_packed(products + self.bias)
        return selection.gates, selector_entropy(selection.selectors).sum()

    def init_(self, columns: torch.Tensor) -> None:
        """Draws a DSelect-k gate's weights `columns` [..., gates·width] (a view of the layer that
        computes the logits) as its authors do; a softmax gate keeps the layer's own draw."""
        if self.dselect is not None:
            self.dselect.init_packed_(columns)


class _Level(nn.Module):
    """What every level shares: the layout of its E experts and its gates, and their mixing."""

    def __init__(
        self, num_tasks: int, specific: int, shared: int, shared_gate: bool, dselect: tuple[int, float] | None
    ) -> None:
        super().__init__()
        self.num_tasks, self.specific, self.shared = num_tasks, specific, shared
        self.num_experts = num_tasks * specific + shared
        self.task_head = GateHead(specific + shared, dselect, (num_tasks,))
        self.shared_head = GateHead(self.num_experts, dselect, ()) if shared_gate else None

    def gate_and_mix(
        self, experts: torch.Tensor, task_logits: torch.Tensor, shared_logits: torch.Tensor | None
    ) -> LevelOutput:
        """experts [B, E, u], task gate logits [B, K, task_head.width], shared gate logits
        [B, shared_head.width] or None -> the level's outputs and gates (see `LevelOutput`)."""
        task_gates, entropy = self.task_head(task_logits)
        shared_gate = None
        if shared_logits is not None:
            assert self.shared_head is not None
            shared_gate, shared_entropy = self.shared_head(shared_logits)
            if shared_entropy is not None:
                assert entropy is not None  # one kind of gate per model
                entropy = entropy + shared_entropy
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
            return LevelOutput(tasks, None, task_gates, None, entropy)
        mixed = torch.bmm(shared_gate.unsqueeze(1), experts).squeeze(1)  # [B, 1, E] @ [B, E, u] -> [B, u]
        return LevelOutput(tasks, mixed, task_gates, shared_gate, entropy)


class _InputLevel(_Level):
    """Level 1: every expert and gate reads x through one `SparseLinear` (as MMoE's ExpertBank:
    the experts' first layer E·U[0], then the task gates' K·(S+H), then the shared gate's E; a
    DSelect-k gate has k·m + k columns instead),
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
        dselect: tuple[int, float] | None,
    ) -> None:
        super().__init__(num_tasks, specific, shared, shared_gate, dselect)
        self.first_units = expert_units[0]
        self.widths = [self.num_experts * expert_units[0], num_tasks * self.task_head.width]
        if self.shared_head is not None:
            self.widths.append(self.shared_head.width)
        # Drawn in ExpertBank's order (input layer, expert bias, deeper layers): CGC without
        # specific experts starts from the weights MMoE starts from.
        self.input_layer = SparseLinear(input_spec, sum(self.widths), bias=False)
        task_columns = slice(self.widths[0], self.widths[0] + self.widths[1])
        for parameter in self.input_layer.parameters(recurse=False):
            self.task_head.init_(parameter[..., task_columns])
            if self.shared_head is not None:
                self.shared_head.init_(parameter[..., task_columns.stop :])
        bound = 1.0 / math.sqrt(max(1, input_spec.num_numeric + input_spec.num_categorical))
        self.expert_bias = nn.Parameter(torch.empty(self.num_experts, expert_units[0]).uniform_(-bound, bound))
        self.deeper = GroupedMLP(self.num_experts, expert_units[0], expert_units[1:])

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> LevelOutput:
        parts = self.input_layer(numeric, categorical).split(self.widths, dim=-1)
        hidden = torch.relu(parts[0].unflatten(-1, (self.num_experts, self.first_units)) + self.expert_bias)
        task_logits = parts[1].unflatten(-1, (self.num_tasks, self.task_head.width))
        return self.gate_and_mix(self.deeper(hidden), task_logits, parts[2] if self.shared_head is not None else None)


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
        dselect: tuple[int, float] | None,
    ) -> None:
        super().__init__(num_tasks, specific, shared, shared_gate, dselect)
        self.experts = GroupedMLP(self.num_experts, in_features, expert_units)
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's
        self.task_gate = nn.Parameter(torch.empty(num_tasks, in_features, self.task_head.width).uniform_(-bound, bound))
        self.task_head.init_(self.task_gate)
        self.shared_gate = None
        if self.shared_head is not None:
            self.shared_gate = nn.Parameter(torch.empty(in_features, self.shared_head.width).uniform_(-bound, bound))
            self.shared_head.init_(self.shared_gate)

    def forward(self, tasks: torch.Tensor, shared: torch.Tensor | None) -> LevelOutput:
        inputs = []
        if self.specific:  # task k's input once per expert of its own: [B, K·S, in_features]
            inputs.append(tasks.unsqueeze(2).expand(-1, -1, self.specific, -1).flatten(1, 2))
        if self.shared:
            assert shared is not None  # the level above has a shared gate when there are shared experts
            inputs.append(shared.unsqueeze(1).expand(-1, self.shared, -1))
        experts = self.experts(inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1))
        task_logits = torch.bmm(tasks.transpose(0, 1), self.task_gate).transpose(0, 1)  # [K, B, in] @ [K, in, width]
        if self.shared_gate is None:
            return self.gate_and_mix(experts, task_logits, None)
        assert shared is not None
        return self.gate_and_mix(experts, task_logits, shared @ self.shared_gate)


class LayeredExtraction(MultiTaskModel):
    """PLE's network, L levels (see the module docstring); PLE and CGC set L."""

    def _build(self, specific: int, shared: int, levels: int, expert_units: Units, tower_units: Units) -> None:
        """The levels and towers; the gates' kind and options are in self.hyperparameters."""
        if specific + shared < 1:
            raise MmoeError(
                f"model {self.name}: specific_experts + shared_experts must be at least 1 (a gate needs an expert), "
                f"got {specific} + {shared}"
            )
        self.specific_experts, self.shared_experts = specific, shared
        options = self.hyperparameters
        self.gate_kind, self.entropy_weight = options["gate"], options["entropy_weight"]
        dselect = (options["k"], options["gamma"]) if self.gate_kind == "dselect-k" else None
        # A shared gate on every level but the last, when shared experts read its output.
        shared_gates = [shared > 0 and level < levels - 1 for level in range(levels)]
        self.levels = nn.ModuleList(
            [_InputLevel(self.input_spec, self.num_tasks, specific, shared, expert_units, shared_gates[0], dselect)]
            + [
                _DeeperLevel(
                    self.num_tasks, specific, shared, expert_units[-1], expert_units, shared_gates[level], dselect
                )
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

    @property
    def has_auxiliary_loss(self) -> bool:
        """With DSelect-k gates: their selectors' entropy regulariser (see `forward_with_aux`)."""
        return self.gate_kind == "dselect-k"

    def forward_with_aux(
        self, numeric: torch.Tensor, categorical: torch.Tensor, tasks: Sequence[Task]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(outputs [B, K], with DSelect-k gates entropy_weight · their selectors' entropy summed
        over rows, levels, gates and selectors; else None), from one forward pass."""
        outputs = self.level_outputs(numeric, categorical)
        predictions = self.towers(outputs[-1].tasks)
        if not self.has_auxiliary_loss:
            return predictions, None
        entropies = [output.entropy for output in outputs if output.entropy is not None]
        return predictions, self.entropy_weight * torch.stack(entropies).sum()

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
    first level's parameters on a wide input); towers of 8; softmax gates (gate="dselect-k":
    DSelect-k's, with DSelectK's defaults for k, gamma and entropy_weight).
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
        gate: GateKind = "softmax",
        k: SelectorCount = 2,
        gamma: SmoothStepWidth = 1.0,
        entropy_weight: EntropyWeight = 0.01,
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
            **_gate_options(self.name, gate, k, gamma, entropy_weight),
        )
        self._build(specific_experts, shared_experts, levels, expert_units, tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        drawn = cls._search(trial, max_units)
        return {**drawn, "levels": trial.suggest_int("levels", 1, 3)}


class CGC(LayeredExtraction):
    """CGC: per-task and shared experts, each task's gate over its own and the shared ones (Tang et al., 2020).

    Defaults as PLE's: 2 experts per task and 4 shared (8 experts × 16 units with two tasks,
    MMoE's size), towers of 8, softmax gates (or DSelect-k's, as PLE's). With specific_experts=0
    and softmax gates it is MMoE.
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
        gate: GateKind = "softmax",
        k: SelectorCount = 2,
        gamma: SmoothStepWidth = 1.0,
        entropy_weight: EntropyWeight = 0.01,
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
            **_gate_options(self.name, gate, k, gamma, entropy_weight),
        )
        self._build(specific_experts, shared_experts, 1, expert_units, tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        return cls._search(trial, max_units)


def _gate_options(model: str, gate: Any, k: Any, gamma: Any, entropy_weight: Any) -> dict[str, Any]:
    """The gate's options, checked (k, gamma and entropy_weight are read by DSelect-k gates only)."""
    if gate not in GATES:
        raise MmoeError(f"model {model}: gate must be one of {', '.join(GATES)}, got {gate!r}")
    return {
        "gate": gate,
        "k": check_positive(model, "k", k),
        "gamma": check_positive(model, "gamma", gamma, float),
        "entropy_weight": check_non_negative(model, "entropy_weight", entropy_weight),
    }


def _check_count(model: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MmoeError(f"model {model}: {option} must be a non-negative integer, got {value!r}")
    return value
