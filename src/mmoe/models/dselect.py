"""DSelect-k (Hazimeh et al., NeurIPS 2021): MMoE whose gates choose at most k experts, differentiably.

Notation: K tasks, E = num_experts, k selectors per gate, m = ⌈log₂ E⌉ bits, C = 2^m binary codes,
γ = gamma, U = expert_units, u = U[-1]. The experts are MMoE's: E ReLU MLPs f_e of widths U.

Each task t has its own gate, computed per example x (the paper's multi-task, per-example version):
    z_{t,i} = W^z_{t,i} x + b^z_{t,i} ∈ R^m      selector i's logits, i = 1..k            [B, K, k, m]
    a_t = softmax(W^a_t x + b^a_t) ∈ Δ^k          the selectors' weights                   [B, K, k]
    s(z) = 0 if z ≤ −γ/2,  1 if z ≥ γ/2,  −2z³/γ³ + 3z/(2γ) + 1/2 between      (the smooth step)
    r_{t,i}(c) = Π_{j=1..m} (s(z_{t,i,j}) if bit j of c is 1 else 1 − s(z_{t,i,j}))
                 over the codes c = 0..C−1: a distribution (Σ_c r(c) = Π_j (s_j + 1 − s_j) = 1)
    selector i's weight on expert e: r_{t,i}(e) + r_{t,i}(e + E) (the second only if e + E < C)
                                                                                          [B, K, k, E]
    gate:   g_t = Σ_i a_{t,i} r_{t,i}       (Σ_e g_{t,e} = 1)                               [B, K, E]
    y_t = h_t(Σ_e g_{t,e} f_e(x))           (MMoE's mixture and towers)
A selector whose m smooth steps are all 0 or 1 (outside [−γ/2, γ/2], where s has no gradient) is
one-hot: a gate whose selectors are all one-hot has at most k non-zero weights, exactly, in
training as in prediction (no top-k, nothing discrete in the graph).

Codes beyond the experts (E not a power of two): the paper leaves codes E..C−1 unused, so a
selector's weights over the experts sum to less than one until it settles, and it adds the
barrier Σ 1/Σ_e r(e) to keep selectors off the unused codes. Here code c ≥ E selects expert
c − E instead: every code is an expert, every gate sums to one at every step, and no barrier is
needed. With E a power of two (the default 8) this is the paper's gate.

Entropy regulariser (the paper's, on every task's selectors): per row,
    entropy_weight · Σ_t Σ_i H(r_{t,i}),   H(r) = −Σ_e r_e log r_e     (0 · log 0 = 0)
which is 0 exactly when every selector is one-hot, and pushes them there. It reaches the training
loss through `forward_with_aux` (a mean over the batch's rows, see `MultiTaskModel`).

Initialisation as the authors': the z logits' weights and bias U(±γ/100), so that every s(z)
starts near 1/2, far from saturation (each expert about equally likely); the selector weights'
logits U(±0.05).

Batched (no Python loop over experts, tasks or selectors): the experts' first layer and every
gate's logits read x, so they are one `SparseLinear` of E·U[0] + K·k·m + K·k outputs (experts,
then the z logits, then the selector-weight logits); deeper expert layers are one `GroupedMLP`
over the E experts; the selectors of all tasks are one product over the codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel, TowerUnits, check_non_negative, check_positive, check_units
from mmoe.models.layers import GroupedMLP, SparseLinear, Towers
from mmoe.models.options import Help, Units
from mmoe.spec import InputSpec, Task

if TYPE_CHECKING:
    import optuna


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """s(t): 0 for t ≤ −γ/2, 1 for t ≥ γ/2, −2t³/γ³ + 3t/(2γ) + 1/2 between (C¹: the cubic meets 0
    and 1 with zero slope). Exactly 0 or 1 outside the interval, with a zero gradient there."""
    cubic = (-2.0 / gamma**3) * t**3 + (1.5 / gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, 0.0, torch.where(t >= gamma / 2, 1.0, cubic))


def selector_entropy(selectors: torch.Tensor) -> torch.Tensor:
    """H(r) = −Σ_e r_e log r_e over the last dimension: [..., E] -> [...]. Exactly 0 for a one-hot r.
    (log of r clamped to 1e-12: 0 · log 0 counts 0, and the gradient stays finite at r = 0.)"""
    return -(selectors * selectors.clamp(min=1e-12).log()).sum(-1)


# The gate's options, declared once: DSelectK's, and PLE's / CGC's with gate="dselect-k".
SelectorCount = Annotated[int, Help("the most experts a gate chooses (its single-expert selectors)")]
SmoothStepWidth = Annotated[float, Help("width of the smooth step's cubic part, [-gamma/2, gamma/2]")]
EntropyWeight = Annotated[float, Help("weight of the selectors' entropy regulariser (0: none)")]


class Selection(NamedTuple):
    """A DSelect-k gate's output."""

    gates: torch.Tensor  # [..., E] g: the mixture weights over the experts, summing to 1
    selectors: torch.Tensor  # [..., k, E] r_i: each single-expert selector's distribution over the experts
    weights: torch.Tensor  # [..., k] a: the selectors' weights (a softmax)


class DSelectGate(nn.Module):
    """The DSelect-k gate over `num_experts` choices, from logits computed elsewhere (no parameters).

    forward(z_logits [..., k, m], weight_logits [..., k]) -> Selection (gates [..., E],
    selectors [..., k, E], weights [..., k]); m = `bits` = ⌈log₂ E⌉ (see the module docstring).
    """

    def __init__(self, num_experts: int, k: int, gamma: float) -> None:
        super().__init__()
        self.num_experts, self.k, self.gamma = num_experts, k, gamma
        self.bits = max(1, math.ceil(math.log2(num_experts)))
        self.codes = 2**self.bits
        self._code_bits(torch.device("cpu"))

    def _code_bits(self, device: torch.device) -> torch.Tensor:
        """[C, m] bool: bit j of code c. A plain tensor, not a buffer (population training's vmapped
        template lives on the meta device, as `CategoryEmbeddings._indices` says), made on the CPU
        when the gate is built (so that every trace of the model reads the same constant) and
        moved to another device the first time one is asked for."""
        cached = getattr(self, "_bits_cache", None)
        if cached is None or cached.device != device:
            table = [[(code >> bit) & 1 == 1 for bit in range(self.bits)] for code in range(self.codes)]
            cached = torch.tensor(table, dtype=torch.bool, device=device)
            self._bits_cache = cached
        return cached

    @property
    def packed_width(self) -> int:
        """k·m + k: the width of one gate's logits packed as `from_packed` reads them."""
        return self.k * self.bits + self.k

    def from_packed(self, logits: torch.Tensor) -> Selection:
        """forward on one gate's logits packed as [..., k·m + k]: the k selectors' z logits (k runs
        of m), then the selectors' weights' k logits."""
        z_logits, weight_logits = logits.split([self.k * self.bits, self.k], -1)
        return self(z_logits.unflatten(-1, (self.k, self.bits)), weight_logits)

    def init_packed_(self, columns: torch.Tensor) -> None:
        """Draws in place, as the authors initialise a gate (see the module docstring), the weights
        `columns` [..., gates·(k·m + k)] of a layer computing packed logits (a view of its parameter):
        the z logits' U(±γ/100), the selector weights' U(±0.05)."""
        packed = columns.unflatten(-1, (-1, self.packed_width))
        with torch.no_grad():
            packed[..., : self.k * self.bits].uniform_(-self.gamma / 100, self.gamma / 100)
            packed[..., self.k * self.bits :].uniform_(-0.05, 0.05)

    def forward(self, z_logits: torch.Tensor, weight_logits: torch.Tensor) -> Selection:
        steps = smooth_step(z_logits, self.gamma).unsqueeze(-2)  # [..., k, 1, m]
        # [..., k, C, m] -> [..., k, C]: r(c) = Π_j (s_j if bit j of c else 1 − s_j)
        over_codes = torch.where(self._code_bits(z_logits.device), steps, 1 - steps).prod(-1)
        experts, spare = self.num_experts, self.codes - self.num_experts
        if spare:  # code c ≥ E selects expert c − E
            selectors = torch.cat(
                [over_codes[..., :spare] + over_codes[..., experts:], over_codes[..., spare:experts]], -1
            )
        else:
            selectors = over_codes
        # Softmax over the k selectors with them leading: torch's CPU kernel is slow over a short
        # last dimension (see `MixtureOfExperts._experts_and_gates`).
        weights = torch.softmax(weight_logits.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1)
        gates = (weights.unsqueeze(-2) @ selectors).squeeze(-2)  # [..., 1, k] @ [..., k, E] -> [..., E]
        return Selection(gates, selectors, weights)


class DSelectK(MultiTaskModel):
    """DSelect-k: MMoE with a differentiable gate per task that chooses at most k experts (Hazimeh et al., 2021).

    Defaults: MMoE's 8 experts × 16 units and towers of 8; k = 2 selectors per task; γ = 1 (the
    authors' code's default); entropy_weight 0.01 on the per-row entropy. (The authors' code
    weighs the entropy summed over the batch by 1e-6, which settles the selectors slowly; with
    0.01 on the mean, a toy problem's selectors are mostly one-hot within tens of epochs.)
    """

    name = "dselect-k"

    def __init__(
        self,
        input_spec: InputSpec,
        num_tasks: int,
        num_experts: Annotated[int, Help("number of experts")] = 8,
        expert_units: Annotated[Units, Help("units per expert layer, e.g. 16 or 32,16")] = (16,),
        tower_units: TowerUnits = (8,),
        k: SelectorCount = 2,
        gamma: SmoothStepWidth = 1.0,
        entropy_weight: EntropyWeight = 0.01,
    ) -> None:
        num_experts = check_positive(self.name, "num_experts", num_experts)
        if num_experts < 2:
            raise MmoeError(f"model {self.name}: num_experts must be at least 2 (a gate chooses among them), got 1")
        expert_units = check_units(self.name, "expert_units", expert_units)
        tower_units = check_units(self.name, "tower_units", tower_units, allow_empty=True)
        k = check_positive(self.name, "k", k)
        if k > num_experts:
            raise MmoeError(f"model {self.name}: k must be at most num_experts ({num_experts}), got {k}")
        gamma = check_positive(self.name, "gamma", gamma, float)
        entropy_weight = check_non_negative(self.name, "entropy_weight", entropy_weight)
        super().__init__(
            input_spec,
            num_tasks,
            num_experts=num_experts,
            expert_units=expert_units,
            tower_units=tower_units,
            k=k,
            gamma=gamma,
            entropy_weight=entropy_weight,
        )
        self.num_experts, self.k, self.entropy_weight = num_experts, k, entropy_weight
        self.gate = DSelectGate(num_experts, k, gamma)
        self.first_units = expert_units[0]
        bits = self.gate.bits
        self.widths = [num_experts * expert_units[0], num_tasks * k * bits, num_tasks * k]
        self.input_layer = SparseLinear(input_spec, sum(self.widths))
        # The gates' columns (weights and bias) drawn again, small (see the module docstring).
        z_columns = slice(self.widths[0], self.widths[0] + self.widths[1])
        weight_columns = slice(self.widths[0] + self.widths[1], None)
        with torch.no_grad():
            for parameter in self.input_layer.parameters(recurse=False):
                parameter[..., z_columns].uniform_(-gamma / 100, gamma / 100)
                parameter[..., weight_columns].uniform_(-0.05, 0.05)
        self.deeper = GroupedMLP(num_experts, expert_units[0], expert_units[1:])
        self.towers = Towers(num_tasks, expert_units[-1], tower_units)

    @classmethod
    def search_space(cls, trial: optuna.Trial, max_units: int) -> dict[str, Any]:
        # At least 4 experts, so that any k drawn (1 to 4) is at most num_experts.
        experts = trial.suggest_int("num_experts", 4, 16)
        units = trial.suggest_int("expert_units", 4, max(4, max_units), log=True)
        return {
            "num_experts": experts,
            # The paper's limit, as MMoE's: experts × units per expert ≤ the cap.
            "expert_units": (max(1, min(units, max_units // experts)),),
            "k": trial.suggest_int("k", 1, 4),
            "gamma": trial.suggest_float("gamma", 0.1, 10.0, log=True),
            "entropy_weight": trial.suggest_float("entropy_weight", 1e-5, 1e-1, log=True),
        }

    def selection(self, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        """(the experts' outputs [B, E, u], every task's Selection: gates [B, K, E], selectors
        [B, K, k, E], weights [B, K, k])."""
        expert_part, z_part, weight_part = self.input_layer(numeric, categorical).split(self.widths, dim=-1)
        hidden = torch.relu(expert_part.unflatten(-1, (self.num_experts, self.first_units)))
        experts = self.deeper(hidden)
        z_logits = z_part.unflatten(-1, (self.num_tasks, self.k, self.gate.bits))
        return experts, self.gate(z_logits, weight_part.unflatten(-1, (self.num_tasks, self.k)))

    def gates(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """[B, num_tasks, num_experts]: each task's gate weights (rows sum to 1, at most k non-zero
        once its selectors have settled)."""
        return self.selection(numeric, categorical)[1].gates

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        experts, selection = self.selection(numeric, categorical)
        return self.towers(torch.bmm(selection.gates, experts))  # [B, K, E] @ [B, E, u] -> [B, K, u]

    def forward_with_aux(
        self, numeric: torch.Tensor, categorical: torch.Tensor, tasks: Sequence[Task]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs [B, K], entropy_weight · the selectors' entropy summed over rows, tasks and selectors)."""
        experts, selection = self.selection(numeric, categorical)
        outputs = self.towers(torch.bmm(selection.gates, experts))  # [B, K, E] @ [B, E, u] -> [B, K, u]
        return outputs, self.entropy_weight * selector_entropy(selection.selectors).sum()
