"""Weightings from per-task gradients over the shared parameters (gradient balancing).

Each step (`GradientBalancing.backward`):
  1. G [N, K, P]: every task's gradient over the shared dense parameters
     (`mmoe.train.gradients.task_gradients`, one batched backward; N = 1 replica outside a
     population), summed over the ranks under torch.distributed, with the global batch's losses;
  2. the method maps (G, losses) of the tasks labelled in the batch to the shared update d [N, P]
     and final task weights a [N, K] (a task without labels takes no part: weight 0, and its row
     of G is not seen; replicas with different labelled tasks are solved apart);
  3. every other parameter (towers, task gates, embedding tables, the method's own) gets the
     gradient of Σ_k a_k · loss_k (+ the model's penalty, everywhere), one more backward pass;
     the shared parameters get d (+ the penalty's gradient).
The model is not wrapped in DDP for these methods (`sums_over_ranks`): step 1 sums G and step 3
sums the other dense gradients over the ranks (one all_reduce each); row-sparse tables are summed
by the loop as always. Every rank then holds one process's gradients.

The solvers work on batches of replicas ([n, K, P], [n, K, K] Gram matrices) with a loop over
tasks or solver iterations at most, never over replicas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmoe.errors import MmoeError
from mmoe.models.base import MultiTaskModel
from mmoe.models.layers import row_sparse_tables
from mmoe.train.gradients import assign_gradient, shared_parameter_names, task_gradients
from mmoe.train.weighting.base import LossWeighting, state_device, sum_over_ranks_, world_size

EPS = 1e-8


class GradientBalancing(LossWeighting):
    """Base of the gradient methods: `solve` maps per-task gradients to (update, task weights)."""

    sums_over_ranks = True

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.shared: list[torch.Tensor] = []
        self.others: list[torch.Tensor] = []
        self.dense_others: list[torch.Tensor] = []
        self.stacked, self.replicas = False, 1
        self.penalised = False

    def prepare(
        self,
        model: nn.Module,
        parameters: Mapping[str, torch.Tensor],
        tables: Sequence[torch.Tensor] = (),
        replicas: int | None = None,
    ) -> list[torch.Tensor]:
        # Embedding tables stay out of the dense matrix even when dense Adam trains them.
        names = set(shared_parameter_names(model)) - {name for name, _, _, _ in row_sparse_tables(model)}
        is_table = {id(table) for table in tables}
        self.shared = [p for name, p in parameters.items() if name in names and id(p) not in is_table]
        chosen = {id(p) for p in self.shared}
        self.others = [p for p in parameters.values() if id(p) not in chosen]
        self.dense_others = [p for p in self.others if id(p) not in is_table]
        self.stacked, self.replicas = replicas is not None, replicas or 1
        # The loops add a model's penalty on rank 0 only, and its batch-dependent term (DSelect-k's
        # entropy, AITM's calibrator) per rank: their gradient on the shared parameters must be
        # summed over the ranks too (every rank must send the same tensors).
        penalty = getattr(type(model), "penalty", None)
        auxiliary = bool(getattr(model, "has_auxiliary_loss", False))
        self.penalised = (penalty is not None and penalty is not MultiTaskModel.penalty) or auxiliary
        return []

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """grads [n, k, P] and losses [n, k] of n replicas' labelled tasks (`replicas`, `tasks`:
        their indices, for a method's state) -> (shared update d [n, P], task weights a [n, k])."""
        raise NotImplementedError

    def backward(
        self,
        task_losses: torch.Tensor,
        labelled: torch.Tensor,
        parameters: Sequence[torch.Tensor],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not self.shared and not self.others:  # used without prepare: every parameter is shared
            self.shared = [p for p in parameters if p.requires_grad]
        grads = sum_over_ranks_(task_gradients(task_losses, self.shared))  # [n, K, P]
        losses = sum_over_ranks_(task_losses.detach().clone()).reshape(grads.shape[:2])
        update, weights = self._solve_labelled(grads, losses, labelled.reshape(grads.shape[:2]))
        # The penalty (and a model's batch-dependent term): unweighted, on every parameter it
        # reaches; a constant (AITM's calibrator without a binary pair) reaches none.
        if extra is not None and extra.requires_grad:
            torch.autograd.backward(extra.sum(), inputs=[*self.shared, *self.others], retain_graph=True)
        weights = weights.reshape(task_losses.shape)
        loss = (weights * task_losses).sum(-1)
        if self.others:
            torch.autograd.backward(loss.sum(), inputs=self.others)
        if world_size() > 1:
            self._sum_dense_gradients()
        assign_gradient(self.shared, update, self.stacked)
        return (loss + extra if extra is not None else loss).detach()

    def _solve_labelled(
        self, grads: torch.Tensor, losses: torch.Tensor, labelled: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`solve` on each group of replicas with the same labelled tasks (one group, usually)."""
        replicas, num_tasks, size = grads.shape
        if size == 0:  # no shared parameter: the method has nothing to balance
            return grads.new_zeros(replicas, 0), labelled.to(grads.dtype)
        if bool(labelled.all()):
            every = torch.arange(num_tasks, device=grads.device)
            return self.solve(grads, losses, torch.arange(replicas, device=grads.device), every)
        update, weights = grads.new_zeros(replicas, size), grads.new_zeros(replicas, num_tasks)
        for pattern in torch.unique(labelled, dim=0):
            members = (labelled == pattern).all(-1).nonzero().squeeze(-1)
            tasks = pattern.nonzero().squeeze(-1)
            if len(tasks) == 0:
                continue
            part_update, part_weights = self.solve(grads[members][:, tasks], losses[members][:, tasks], members, tasks)
            update[members] = part_update
            weights[members.unsqueeze(1), tasks.unsqueeze(0)] = part_weights
        return update, weights

    def _sum_dense_gradients(self, everything: bool = False) -> None:
        """The non-shared dense gradients (every dense one with `everything`) summed over the
        ranks, in one all_reduce."""
        tensors = list(self.dense_others)
        if everything or self.penalised:  # the shared ones hold only the penalty's gradient yet
            tensors += self.shared
        if not tensors:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in tensors]
        flat = sum_over_ranks_(torch.cat([g.reshape(-1) for g in grads]))
        for p, part in zip(tensors, flat.split([p.numel() for p in tensors])):
            p.grad = part.view_as(p).clone()


def _gram(grads: torch.Tensor) -> torch.Tensor:
    """[n, k, P] -> G Gᵀ [n, k, k], in float64 (the solvers divide by small differences)."""
    g = grads.double()
    return g @ g.transpose(1, 2)


def _combine(grads: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k a_k g_k: [n, k, P], [n, k] -> [n, P]."""
    return (weights.to(grads.dtype).unsqueeze(1) @ grads).squeeze(1)


def min_norm_weights(gram: torch.Tensor, iterations: int = 500, tolerance: float = 1e-12) -> torch.Tensor:
    """The weights a on the simplex of the min-norm point ‖Σ a_k g_k‖ of the gradients' convex
    hull, from their Gram matrix [n, k, k] -> [n, k]. Two tasks: the closed form
    γ = clamp((g_2 − g_1)·g_2 / ‖g_1 − g_2‖², 0, 1). More: accelerated projected gradient
    descent (FISTA, step 1/λ_max) on aᵀMa over the simplex, until a moves less than `tolerance`."""
    n, k, _ = gram.shape
    if k == 1:
        return gram.new_ones(n, 1)
    if k == 2:
        difference = gram[:, 0, 0] + gram[:, 1, 1] - 2 * gram[:, 0, 1]  # ‖g_1 − g_2‖²
        first = torch.where(
            difference > 0,
            ((gram[:, 1, 1] - gram[:, 0, 1]) / difference.clamp(min=1e-300)).clamp(0, 1),
            torch.full_like(difference, 0.5),
        )
        return torch.stack([first, 1 - first], dim=-1)
    largest = torch.linalg.eigvalsh(gram)[:, -1].clamp(min=1e-300).view(n, 1)
    weights = gram.new_full((n, k), 1.0 / k)
    previous, momentum = weights, 1.0
    for _ in range(iterations):
        gradient = (gram @ weights.unsqueeze(-1)).squeeze(-1)
        new = _project_to_simplex(weights - gradient / largest)
        next_momentum = (1 + (1 + 4 * momentum * momentum) ** 0.5) / 2
        weights = new + (momentum - 1) / next_momentum * (new - previous)
        moved = float((new - previous).abs().max())
        previous, momentum = new, next_momentum
        if moved < tolerance:
            break
    return previous


def _project_to_simplex(points: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each row of [n, k] onto the probability simplex."""
    ordered = points.sort(dim=-1, descending=True).values
    cumulative = ordered.cumsum(-1) - 1
    index = torch.arange(1, points.shape[-1] + 1, device=points.device, dtype=points.dtype)
    support = (ordered - cumulative / index > 0).sum(-1, keepdim=True)  # ≥ 1
    threshold = cumulative.gather(-1, support - 1) / support.to(points.dtype)
    return (points - threshold).clamp(min=0)


class GradNorm(GradientBalancing):
    """gradnorm: learned weights that make ‖w_k g_k‖ ∝ (relative training rate_k)^α (Chen et al., 2018).

    The weights w (start 1, renormalised to sum K each step) are trained by the loop's Adam on
    L_grad = Σ_k |w_k‖g_k‖ − mean_j(w_j‖g_j‖)·r_k^α|, r_k = (loss_k / loss_k(0)) / mean_j(·), the
    target held constant; g_k over all the shared parameters (not only the last shared layer).
    loss_k(0) is task k's first labelled loss. The update is Σ_k w_k g_k."""

    options = {"alpha": (1.5, "asymmetry α: how strongly slower tasks are pushed (0: equal gradient norms)")}

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.task_weights: torch.Tensor | None = None
        self.initial_losses: torch.Tensor | None = None

    def prepare(
        self,
        model: nn.Module,
        parameters: Mapping[str, torch.Tensor],
        tables: Sequence[torch.Tensor] = (),
        replicas: int | None = None,
    ) -> list[torch.Tensor]:
        super().prepare(model, parameters, tables, replicas)
        device = state_device(parameters)
        self.task_weights = torch.ones(self.replicas, self.num_tasks, device=device, requires_grad=True)
        return [self.task_weights]

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_weights is None:  # used without prepare: the weights are not trained
            self.task_weights = torch.ones(self.replicas, self.num_tasks, device=grads.device, requires_grad=True)
        if self.initial_losses is None:
            self.initial_losses = torch.full_like(self.task_weights.detach(), float("nan"))
        with torch.no_grad():  # renormalised after the optimiser's last step: Σ_k w_k = K
            all_weights = self.task_weights.clamp_(min=0)
            total = all_weights.sum(-1, keepdim=True)
            all_weights.mul_(torch.where(total > 0, self.num_tasks / total.clamp(min=EPS), torch.ones_like(total)))
            initial = self.initial_losses[replicas.unsqueeze(1), tasks.unsqueeze(0)]
            initial = torch.where(initial.isnan(), losses.to(initial.dtype), initial)
            self.initial_losses[replicas.unsqueeze(1), tasks.unsqueeze(0)] = initial
        weights = self.task_weights.detach()[replicas.unsqueeze(1), tasks.unsqueeze(0)]
        norms = grads.norm(dim=-1)  # ‖g_k‖ [n, k]
        rate = losses / initial.clamp(min=EPS)
        rate = rate / rate.mean(-1, keepdim=True).clamp(min=EPS)
        weighted = weights * norms
        target = weighted.mean(-1, keepdim=True) * rate.pow(self.option["alpha"])
        gradient = torch.zeros_like(self.task_weights)  # dL_grad/dw_k = sign(w_k‖g_k‖ − target_k)·‖g_k‖
        gradient[replicas.unsqueeze(1), tasks.unsqueeze(0)] = torch.sign(weighted - target) * norms
        if self.task_weights.grad is None:
            self.task_weights.grad = gradient
        else:
            self.task_weights.grad.add_(gradient)
        return _combine(grads, weights), weights

    def state_dict(self) -> dict[str, Any]:
        if self.task_weights is None or self.initial_losses is None:
            return {}
        return {"weights": self.task_weights.detach().clone(), "initial_losses": self.initial_losses.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            return
        if self.task_weights is not None:
            with torch.no_grad():
                self.task_weights.copy_(state["weights"])
        self.initial_losses = torch.as_tensor(state["initial_losses"]).clone()


#: The module whose output is a model's representation shared by every task (MGDA's upper bound),
#: for the models that have one; a model may name its own with a `shared_representation` attribute.
SHARED_REPRESENTATIONS = {"shared-bottom": "bottom", "mmoe": "experts", "omoe": "experts"}


class MGDA(GradientBalancing):
    """mgda: the min-norm point of the task gradients' convex hull (Sener & Koltun, 2018).

    a = argmin_{a ∈ simplex} ‖Σ_k a_k g_k‖ (`min_norm_weights`), update Σ_k a_k g_k:
    a common descent direction of every task, or 0 at a Pareto-stationary point. The weights sum
    to 1 (equal weights sum to K). `normalize` 1 divides each g_k by loss_k first (the paper's
    "loss" normalisation; 0: raw gradients).

    `upper_bound` 1 (MGDA-UB): a from the gradients with respect to the shared representation Z
    (the output of the module `SHARED_REPRESENTATIONS` names: Shared-Bottom's bottom, the expert
    bank's experts and gate logits of MMoE and OMoE) instead of the shared parameters, and then
    one backward pass of Σ_k a_k loss_k: no per-task gradient over the parameters at all. Z's
    gradient is per row, so the ranks' Gram matrices add up to the global batch's. One run at a
    time: not in population training."""

    options = {
        "normalize": (0.0, "1: each task's gradient divided by its loss before the min-norm (0: raw)"),
        "upper_bound": (0.0, "1: gradients on the shared representation (MGDA-UB; shared-bottom, mmoe, omoe)"),
    }

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.representation: Any = None

    def prepare(
        self,
        model: nn.Module,
        parameters: Mapping[str, torch.Tensor],
        tables: Sequence[torch.Tensor] = (),
        replicas: int | None = None,
    ) -> list[torch.Tensor]:
        own = super().prepare(model, parameters, tables, replicas)
        if self.option["upper_bound"]:
            name = getattr(model, "shared_representation", None) or SHARED_REPRESENTATIONS.get(
                str(getattr(model, "name", ""))
            )
            if name is None:
                raise MmoeError(
                    f"weighting option upper_bound: model {getattr(model, 'name', type(model).__name__)} exposes no "
                    f"shared representation; expected one of {', '.join(SHARED_REPRESENTATIONS)} (or upper_bound=0)"
                )
            if replicas is not None:
                raise MmoeError("weighting option upper_bound: not in population training; expected one run at a time")
            model.get_submodule(name).register_forward_hook(self._keep_representation)
        return own

    def _keep_representation(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.representation = output

    def backward(
        self,
        task_losses: torch.Tensor,
        labelled: torch.Tensor,
        parameters: Sequence[torch.Tensor],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not self.option["upper_bound"]:
            return super().backward(task_losses, labelled, parameters, extra)
        outputs = self.representation if isinstance(self.representation, (tuple, list)) else (self.representation,)
        representation = [z for z in outputs if isinstance(z, torch.Tensor) and z.requires_grad]
        gram = sum_over_ranks_(_gram(task_gradients(task_losses, representation)))[0]  # [K, K]
        losses = sum_over_ranks_(task_losses.detach().clone())
        tasks = labelled.nonzero().squeeze(-1)
        weights = torch.zeros_like(losses)
        if len(tasks):
            scale = 1.0 / losses[tasks].clamp(min=EPS) if self.option["normalize"] else torch.ones_like(losses[tasks])
            chosen = gram[tasks][:, tasks] * (scale.unsqueeze(0) * scale.unsqueeze(1)).double()
            weights[tasks] = min_norm_weights(chosen.unsqueeze(0))[0].to(losses.dtype) * scale
        loss = (weights * task_losses).sum(-1)
        total = loss + extra if extra is not None else loss
        total.backward()
        if world_size() > 1:
            self._sum_dense_gradients(everything=True)
        self.representation = None
        return total.detach()

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 / losses.clamp(min=EPS) if self.option["normalize"] else torch.ones_like(losses)
        weights = min_norm_weights(_gram(grads * scale.unsqueeze(-1))).to(grads.dtype) * scale
        return _combine(grads, weights), weights


class PCGrad(GradientBalancing):
    """pcgrad: each task's gradient projected off every other it conflicts with, in random order (Yu et al., 2020).

    g_i ← g_i − (g_i·g_j / ‖g_j‖²) g_j for each j ≠ i (a permutation of the run's RNG) with
    g_i·g_j < 0, against the unprojected g_j; update Σ_i g_i. Towers and tables weigh every task 1."""

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = grads.shape[1]
        squared = grads.square().sum(-1)  # [n, k]
        projected = grads.clone()
        for i in range(k):
            for j in torch.randperm(k).tolist():
                if j == i:
                    continue
                dot = (projected[:, i] * grads[:, j]).sum(-1)
                coefficient = torch.where(dot < 0, dot / squared[:, j].clamp(min=1e-30), torch.zeros_like(dot))
                projected[:, i] -= coefficient.unsqueeze(-1) * grads[:, j]
        return projected.sum(1), torch.ones_like(losses)


class CAGrad(GradientBalancing):
    """cagrad: the update near the mean gradient that best helps the worst task (Liu et al., 2021).

    In a ball of radius c‖ḡ‖ around the mean gradient ḡ:
    w = argmin_{w ∈ simplex} g_wᵀḡ + c‖ḡ‖‖g_w‖ (g_w = Σ w_k g_k, ḡ the mean; the authors' solver:
    softmax logits, 20 steps of SGD with momentum on the scale-normalised Gram matrix), update
    (ḡ + c‖ḡ‖/‖g_w‖ · g_w) / (1 + c²)."""

    options = {"c": (0.5, "radius of the ball around the mean gradient, relative to its norm (0: equal weights)")}

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, k, _ = grads.shape
        c = self.option["c"]
        gram = _gram(grads)
        scale = (torch.diagonal(gram, dim1=1, dim2=2) + 1e-4).sqrt().mean(-1)  # [n]
        gram = gram / scale.square().view(n, 1, 1)
        mean_products = gram.mean(-1)  # [n, k]: g_kᵀḡ
        radius = (mean_products.mean(-1) + 1e-4).sqrt() * c  # c‖ḡ‖ [n]
        # The objective's gradient in closed form (no autograd): ∂f/∂w = ḡ-products + c‖ḡ‖·Mw/‖g_w‖,
        # through the softmax: ∂f/∂θ = w ⊙ (∂f/∂w − w·∂f/∂w).
        logits = gram.new_zeros(n, k)
        velocity = torch.zeros_like(logits)
        for _ in range(21):
            w = torch.softmax(logits, -1)
            product = (gram @ w.unsqueeze(-1)).squeeze(-1)
            gw_norm = ((w * product).sum(-1) + 1e-4).sqrt()
            by_weight = mean_products + (radius / gw_norm).unsqueeze(-1) * product
            gradient = w * (by_weight - (w * by_weight).sum(-1, keepdim=True))
            velocity = 0.5 * velocity + gradient
            logits = logits - 25 * velocity
        w = torch.softmax(logits, -1)
        gw_norm = ((w.unsqueeze(1) @ gram @ w.unsqueeze(-1)).view(n) + 1e-4).sqrt()
        weights = ((1.0 / k + w * (radius / (gw_norm + 1e-4)).unsqueeze(-1)) / (1 + c * c)).to(grads.dtype)
        return _combine(grads, weights), weights


class IMTL(GradientBalancing):
    """imtl: the update whose projections on every task's unit gradient are equal (IMTL-G, Liu et al., 2021).

    Closed form: with D = [g_1 − g_k]_{k≥2}, U = [u_1 − u_k]_{k≥2} (u = g/‖g‖), a_{2..K} =
    g_1 Uᵀ (D Uᵀ)⁻¹ (a pseudo-inverse), a_1 = 1 − Σ a_{2..K}; update Σ a_k g_k. The paper's loss
    half (IMTL-L, learned loss scales) is left out."""

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if grads.shape[1] == 1:
            return grads[:, 0], torch.ones_like(losses)
        g = grads.double()
        units = g / g.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        differences = g[:, :1] - g[:, 1:]  # [n, k-1, P]
        unit_differences = units[:, :1] - units[:, 1:]
        rest = (g[:, :1] @ unit_differences.transpose(1, 2)) @ torch.linalg.pinv(
            differences @ unit_differences.transpose(1, 2)
        )  # [n, 1, k-1]
        weights = torch.cat([1 - rest.sum(-1), rest.squeeze(1)], dim=-1).to(grads.dtype)
        return _combine(grads, weights), weights


class NashMTL(GradientBalancing):
    """nash-mtl: the Nash bargaining solution, a with (G Gᵀ a)_k = 1/a_k, a > 0 (Navon et al., 2022).

    Solved exactly (not by the authors' sequence of convex programs): it is the minimum of the
    convex ½ aᵀMa − Σ log a_k, found by damped Newton steps that keep a > 0. Update Σ a_k g_k,
    clipped to norm `max_norm` as in the authors' code (0: not clipped)."""

    options = {"max_norm": (1.0, "clip the shared update to this norm (0: no clipping)")}

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gram = _gram(grads)
        n, k, _ = gram.shape
        diagonal = torch.diagonal(gram, dim1=1, dim2=2)
        weights = 1.0 / diagonal.clamp(min=1e-30).sqrt()  # the solution when the gradients are orthogonal
        weights = weights.clamp(max=1e8)
        for _ in range(30):
            gradient = (gram @ weights.unsqueeze(-1)).squeeze(-1) - 1.0 / weights
            hessian = gram + torch.diag_embed(1.0 / weights.square())
            step = torch.linalg.solve(hessian, gradient.unsqueeze(-1)).squeeze(-1)
            # The longest step ≤ 1 that keeps a > 0 (with a margin).
            ratio = torch.where(step > 0, 0.9 * weights / step.clamp(min=1e-300), torch.full_like(step, 1.0))
            length = ratio.min(-1).values.clamp(max=1.0).unsqueeze(-1)
            weights = weights - length * step
            if float(step.abs().max()) < 1e-10 * float(weights.abs().max()):
                break
        weights = weights.to(grads.dtype)
        update = _combine(grads, weights)
        if self.option["max_norm"] > 0:
            factor = (self.option["max_norm"] / update.norm(dim=-1).clamp(min=1e-30)).clamp(max=1.0)
            update, weights = update * factor.unsqueeze(-1), weights * factor.unsqueeze(-1)
        return update, weights


class AlignedMTL(GradientBalancing):
    """aligned-mtl: the update of the gradient matrix aligned to its smallest singular value (Senushkin et al., 2023).

    M = G Gᵀ = V Λ Vᵀ (torch.linalg.eigh), rank r (eigenvalues above max·K·eps);
    B = √λ_r · V Λ^(−1/2) Vᵀ over those r, a = B·1 (column sums); update Σ a_k g_k: all tasks'
    components made equally strong, the condition number 1."""

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gram = _gram(grads)
        values, vectors = torch.linalg.eigh(gram)  # ascending
        tolerance = values.max(-1, keepdim=True).values * gram.shape[-1] * torch.finfo(torch.float32).eps
        kept = values > tolerance
        inverse_root = torch.where(kept, 1.0 / values.clamp(min=1e-300).sqrt(), torch.zeros_like(values))
        smallest = torch.where(kept, values, torch.full_like(values, float("inf"))).min(-1).values
        smallest = torch.where(smallest.isfinite(), smallest, torch.zeros_like(smallest))
        basis = smallest.sqrt().view(-1, 1, 1) * (vectors * inverse_root.unsqueeze(1)) @ vectors.transpose(1, 2)
        weights = basis.sum(1).to(grads.dtype)
        weights = torch.where(kept.any(-1, keepdim=True), weights, torch.ones_like(weights))
        return _combine(grads, weights), weights


class DBMTL(GradientBalancing):
    """db-mtl: log-losses, an EMA of their gradients, each rescaled to the largest one's norm (Lin et al., 2023).

    ĝ_k ← ∇log loss_k + (ĝ_k − ∇log loss_k)·β_t, β_t = β / t^σ (t: this step's number);
    a_k = max_j‖ĝ_j‖ / ‖ĝ_k‖, update Σ a_k ĝ_k. Towers and tables get Σ_k a_k log loss_k's
    gradient (weights a_k / loss_k on the losses)."""

    options = {
        "beta": (0.9, "EMA factor β of the log-loss gradients"),
        "beta_sigma": (0.5, "decay σ of the EMA factor over steps, β_t = β / t^σ"),
    }

    def __init__(self, num_tasks: int, task_weights: Sequence[float] | None = None, **options: float) -> None:
        super().__init__(num_tasks, task_weights, **options)
        self.buffer: torch.Tensor | None = None  # [N, K, P]
        self.step = 0

    def solve(
        self, grads: torch.Tensor, losses: torch.Tensor, replicas: torch.Tensor, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buffer is None:
            self.buffer = grads.new_zeros(self.replicas, self.num_tasks, grads.shape[-1])
        self.step += 1
        beta = self.option["beta"] / self.step ** self.option["beta_sigma"]
        log_grads = grads / (losses.unsqueeze(-1) + EPS)
        index = (replicas.unsqueeze(1), tasks.unsqueeze(0))
        smoothed = log_grads + (self.buffer[index] - log_grads) * beta
        self.buffer[index] = smoothed
        norms = smoothed.norm(dim=-1)
        scale = norms.max(-1, keepdim=True).values / (norms + EPS)
        return _combine(smoothed, scale), scale / (losses + EPS)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.buffer is None else {"buffer": self.buffer.clone(), "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            self.buffer, self.step = torch.as_tensor(state["buffer"]).clone(), int(state["step"])
