"""Per-task gradients over a model's shared parameters: what gradient-balancing weightings read.

Which parameters are shared (`shared_parameter_names`): every parameter of the model that is not
task-specific. Task-specific, by the names every model of mmoe uses: the parameters of a `Towers`
module (one tower per task, stacked [K, ...]), and any parameter whose dotted name has a part
starting with "tower" or "task_" (PLE's `task_gate`, Tensor-Factorization's `task_factor`). A
model that knows better defines `shared_parameter_names()` itself (a list of names), and that
list is used instead. Consequences worth knowing:
  * MMoE's and OMoE's gates are columns of the expert bank's first layer (one product for experts
    and gates, `mmoe.models.experts.ExpertBank`), so they count as shared: task k's gradient is
    zero on the other tasks' gate columns, which adds nothing to a Gram matrix's off-diagonal.
  * Single-Task, L2-Constrained and Cross-Stitch keep one network per task side by side in one
    first layer ([..., K·H] columns): the per-task gradients over it are orthogonal, so the
    balancing methods see no conflict there (Cross-Stitch's stitches are the only truly shared
    weights).
  * Embedding tables (and `SparseLinear`'s one-hot weight of a huge vocabulary) that a row-sparse
    optimiser trains are left out by the caller (`mmoe.train.weighting`): they would make the
    dense per-task matrix as wide as the vocabulary. Their gradient is the combined one, the
    gradient of Σ_k a_k·loss_k with the method's final task weights a (as for towers).

`task_gradients` computes every task's gradient in one batched backward pass: `torch.autograd.grad`
with `is_grads_batched` over the K rows of a K×K identity (vmap over the backward), falling back to
K passes where torch's vmap has no rule for an operation of the graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmoe.models.layers import Towers

#: Name parts that mark a parameter as one task's own (see the module docstring).
TASK_SPECIFIC_PREFIXES = ("tower", "task_")


def shared_parameter_names(model: nn.Module) -> list[str]:
    """The names (as in `model.named_parameters()`) of the parameters every task's loss may reach:
    all but the task-specific ones (see the module docstring), in `named_parameters` order."""
    declared = getattr(model, "shared_parameter_names", None)
    if callable(declared):
        return list(declared())
    specific: set[str] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, Towers):
            specific.update(f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    for name in names:
        if any(part.startswith(TASK_SPECIFIC_PREFIXES) for part in name.split(".")):
            specific.add(name)
    return [name for name in names if name not in specific]


def task_gradients(task_losses: torch.Tensor, parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every task's gradient over `parameters`, flattened: task_losses [K] -> [1, K, P], or
    [N, K] (N stacked replicas, parameters [N, ...]) -> [N, K, P], P the parameters' elements
    (per replica). The graph is kept (retain_graph) for the caller's own backward afterwards.
    Parameters no loss reaches get zeros."""
    stacked = task_losses.dim() == 2
    replicas, num_tasks = (task_losses.shape[0], task_losses.shape[1]) if stacked else (1, task_losses.shape[0])
    if not parameters:
        return task_losses.new_zeros(replicas, num_tasks, 0)
    identity = torch.eye(num_tasks, dtype=task_losses.dtype, device=task_losses.device)
    outputs = identity.unsqueeze(1).expand(num_tasks, replicas, num_tasks) if stacked else identity
    try:
        grads = torch.autograd.grad(
            task_losses, parameters, grad_outputs=outputs, retain_graph=True, is_grads_batched=True, allow_unused=True
        )
    except (RuntimeError, NotImplementedError):  # an op without a vmap rule: one pass per task
        per_task = [
            torch.autograd.grad(task_losses[..., k].sum(), parameters, retain_graph=True, allow_unused=True)
            for k in range(num_tasks)
        ]
        grads = tuple(
            torch.stack([g[i] if g[i] is not None else torch.zeros_like(p) for g in per_task])
            for i, p in enumerate(parameters)
        )
    flat = [
        (g if g is not None else torch.zeros(num_tasks, *p.shape, dtype=p.dtype, device=p.device)).reshape(
            num_tasks, replicas, -1
        )
        for g, p in zip(grads, parameters)
    ]
    return torch.cat(flat, dim=-1).transpose(0, 1)  # [N, K, P]


def assign_gradient(parameters: Sequence[torch.Tensor], gradient: torch.Tensor, stacked: bool) -> None:
    """Adds the flat gradient [N, P] (`task_gradients`' layout; N = 1 unless `stacked`, where each
    parameter is [N, ...]) into the parameters' `.grad`, each its slice; `.grad` is created where
    it is None."""
    start = 0
    for p in parameters:
        size = p[0].numel() if stacked else p.numel()
        value = gradient[:, start : start + size].reshape(p.shape).to(p.dtype)
        start += size
        if p.grad is None:
            p.grad = value.clone()
        else:
            p.grad.add_(value)
