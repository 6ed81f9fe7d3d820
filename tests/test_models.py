"""The seven models: shapes, what they share, and the paper's definitions."""

from __future__ import annotations

import pytest
import torch

from mmoe.data.dataset import InputSpec
from mmoe.errors import MmoeError
from mmoe.models import MODELS, MMoE, OMoE, build_model, model_summary
from mmoe.models.experts import ExpertBank
from mmoe.models.l2_constrained import pairwise_squared_distance
from mmoe.models.layers import SparseLinear

MIXED = InputSpec(("a", "b", "c"), ("colour", "size"), (4, 6))
NUMERIC = InputSpec(tuple(f"x{i}" for i in range(10)))


def inputs(spec: InputSpec, rows: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, spec.num_numeric, generator=generator)
    columns = [offset + torch.randint(0, card, (rows,), generator=generator)
               for offset, card in zip(spec.offsets, spec.cardinalities)]
    categorical = torch.stack(columns, 1) if columns else torch.zeros(rows, 0, dtype=torch.long)
    return numeric, categorical


def one_hot(spec: InputSpec, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    dense = torch.zeros(numeric.shape[0], spec.vocabulary_size)
    dense.scatter_(1, categorical, 1.0)
    return torch.cat([numeric, dense], 1)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("num_tasks", [1, 2, 4])
@pytest.mark.parametrize("spec", [MIXED, NUMERIC], ids=["mixed", "numeric"])
def test_output_shape_and_backward(name: str, num_tasks: int, spec: InputSpec) -> None:
    torch.manual_seed(0)
    model = build_model(name, spec, num_tasks)
    out = model(*inputs(spec))
    assert out.shape == (7, num_tasks)
    assert torch.isfinite(out).all()
    (out.sum() + model.penalty()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.numel())


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_has_a_one_line_summary_and_rebuilds_from_its_hyperparameters(name: str) -> None:
    assert model_summary(name) and "\n" not in model_summary(name)
    model = build_model(name, MIXED, 3)
    rebuilt = type(model)(MIXED, 3, **model.hyperparameters)
    rebuilt.load_state_dict(model.state_dict())
    numeric, categorical = inputs(MIXED)
    torch.testing.assert_close(rebuilt(numeric, categorical), model(numeric, categorical))


def test_sparse_linear_is_a_linear_map_on_the_one_hot_input() -> None:
    layer = SparseLinear(MIXED, 5)
    numeric, categorical = inputs(MIXED)
    weight = torch.cat([layer.numeric_weight, layer.category_weight], 0)
    expected = one_hot(MIXED, numeric, categorical) @ weight + layer.bias
    torch.testing.assert_close(layer(numeric, categorical), expected)


@pytest.mark.parametrize("dense_cardinality", [0, 4, 16], ids=["all-scatter", "mixed", "all-dense"])
def test_sparse_linear_column_backward_equals_embedding_bags(dense_cardinality: int) -> None:
    spec = InputSpec(numeric=("a", "b"), categorical=("c", "d", "e"), cardinalities=(4, 7, 3))
    torch.manual_seed(0)
    layer = SparseLinear(spec, 12)
    layer.dense_gradient_cardinality = dense_cardinality
    numeric, categorical = inputs(spec, rows=64)
    grads = []
    for custom_backward in (True, False):
        layer.custom_backward = custom_backward
        layer.zero_grad()
        output = layer(numeric, categorical)
        (output * torch.linspace(-1, 1, 12)).square().sum().backward()
        grads.append((output.detach(), layer.category_weight.grad.clone(), layer.numeric_weight.grad.clone()))
    for fast, reference in zip(*grads):
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


def test_expert_bank_matches_experts_computed_one_by_one() -> None:
    torch.manual_seed(1)
    bank = ExpertBank(MIXED, num_experts=3, expert_units=(5, 4), num_gates=2)
    numeric, categorical = inputs(MIXED)
    experts, gate_logits = bank(numeric, categorical)
    assert experts.shape == (7, 3, 4) and gate_logits.shape == (7, 2, 3)
    first = bank.input_layer(numeric, categorical)
    for e in range(3):
        hidden = torch.relu(first[:, e * 5:(e + 1) * 5] + bank.expert_bias[e])
        layer = bank.deeper.hidden[0]
        alone = torch.relu(hidden @ layer.weight[e] + layer.bias[e])
        torch.testing.assert_close(experts[:, e], alone)


@pytest.mark.parametrize("model_class", [MMoE, OMoE])
def test_gates_are_distributions_over_experts(model_class: type) -> None:
    model = model_class(MIXED, 3, num_experts=5)
    gates = model.gates(*inputs(MIXED, rows=11))
    assert gates.shape == (11, 3, 5)
    assert (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(11, 3))


def test_mmoe_has_a_gate_per_task_and_omoe_shares_one() -> None:
    torch.manual_seed(0)
    mmoe_gates = MMoE(MIXED, 3).gates(*inputs(MIXED))
    omoe_gates = OMoE(MIXED, 3).gates(*inputs(MIXED))
    assert not torch.allclose(mmoe_gates[:, 0], mmoe_gates[:, 1])
    torch.testing.assert_close(omoe_gates[:, 0], omoe_gates[:, 1])
    torch.testing.assert_close(omoe_gates[:, 0], omoe_gates[:, 2])


def test_omoe_is_mmoe_with_one_shared_gate() -> None:
    torch.manual_seed(0)
    experts, units, tasks = 4, 6, 3
    mmoe, omoe = MMoE(MIXED, tasks, experts, (units,)), OMoE(MIXED, tasks, experts, (units,))
    with torch.no_grad():
        split = experts * units
        for name in ("numeric_weight", "category_weight"):
            source = getattr(mmoe.experts.input_layer, name)
            gate = source[:, split:split + experts]
            for k in range(1, tasks):  # make every MMoE gate equal to the first
                source[:, split + k * experts:split + (k + 1) * experts] = gate
            getattr(omoe.experts.input_layer, name).copy_(source[:, :split + experts])
        omoe.experts.expert_bias.copy_(mmoe.experts.expert_bias)
        for target, source in zip(omoe.towers.parameters(), mmoe.towers.parameters()):
            target.copy_(source)
    numeric, categorical = inputs(MIXED)
    torch.testing.assert_close(omoe(numeric, categorical), mmoe(numeric, categorical))


def _gradient_footprints(model: torch.nn.Module, numeric: torch.Tensor, categorical: torch.Tensor) -> list:
    footprints = []
    for k in range(model.num_tasks):
        model.zero_grad()
        model(numeric, categorical)[:, k].sum().backward()
        footprints.append([(p.grad != 0) if p.grad is not None else torch.zeros_like(p, dtype=torch.bool)
                           for p in model.parameters()])
    return footprints


def _shared_entries(model: torch.nn.Module, spec: InputSpec) -> int:
    first, second = _gradient_footprints(model, *inputs(spec, rows=32))
    return sum(int((a & b).sum()) for a, b in zip(first, second))


@pytest.mark.parametrize("name", ["single-task", "l2-constrained"])
def test_per_task_networks_share_no_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, MIXED, 2, hidden_units=(6, 5))
    assert _shared_entries(model, MIXED) == 0


def test_cross_stitch_with_identity_stitches_shares_nothing_but_mixes_by_default() -> None:
    torch.manual_seed(0)
    assert _shared_entries(build_model("cross-stitch", MIXED, 2, self_weight=1.0), MIXED) == 0
    assert _shared_entries(build_model("cross-stitch", MIXED, 2, hidden_units=(6, 5)), MIXED) > 0


@pytest.mark.parametrize("name", ["shared-bottom", "omoe", "mmoe", "tensor-factorization"])
def test_shared_models_share_parameters(name: str) -> None:
    torch.manual_seed(0)
    assert _shared_entries(build_model(name, MIXED, 2), MIXED) > 0


def test_cross_stitch_per_unit_matrices() -> None:
    model = build_model("cross-stitch", MIXED, 3, hidden_units=(6, 5), stitch="unit")
    assert [tuple(s.shape) for s in model.stitches] == [(6, 3, 3), (5, 3, 3)]
    torch.testing.assert_close(model.stitches[0].sum(-1), torch.ones(6, 3))


def test_l2_penalty_is_alpha_times_the_squared_distance_of_the_bottoms() -> None:
    torch.manual_seed(0)
    model = build_model("l2-constrained", MIXED, 2, hidden_units=(4, 3), l2_alpha=0.5)
    layer = model.input_layer
    width = 4
    expected = 0.0
    for weight in (layer.numeric_weight, layer.category_weight):
        expected += (weight[:, :width] - weight[:, width:]).pow(2).sum()
    expected += (layer.bias[:width] - layer.bias[width:]).pow(2).sum()
    for deeper in model.bottom.hidden:
        expected += (deeper.weight[0] - deeper.weight[1]).pow(2).sum() + (deeper.bias[0] - deeper.bias[1]).pow(2).sum()
    torch.testing.assert_close(model.penalty(), 0.5 * expected)
    # Identical task networks cost nothing.
    with torch.no_grad():
        for weight in (layer.numeric_weight, layer.category_weight):
            weight[:, width:] = weight[:, :width]
        layer.bias[width:] = layer.bias[:width]
        for deeper in model.bottom.hidden:
            deeper.weight[1] = deeper.weight[0]
            deeper.bias[1] = deeper.bias[0]
    assert float(model.penalty().detach()) == pytest.approx(0.0, abs=1e-6)


def test_pairwise_squared_distance_counts_every_pair() -> None:
    per_task = torch.randn(4, 3, 2)
    expected = sum((per_task[i] - per_task[j]).pow(2).sum() for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(pairwise_squared_distance(per_task), expected)


def test_tensor_factorization_equals_the_explicit_tucker_weights() -> None:
    torch.manual_seed(0)
    model = build_model("tensor-factorization", NUMERIC, 3, hidden_units=(5,), ranks=(4, 3, 2))
    numeric, categorical = inputs(NUMERIC)
    u1 = model.input_factor.numeric_weight  # d × r1
    # W[d, h, k] = Σ_abc S[a,b,c] U1[d,a] U2[h,b] U3[k,c]
    weights = torch.einsum("abc,da,hb,kc->dhk", model.core, u1, model.hidden_factor, model.task_factor)
    for k in range(3):
        hidden = torch.relu(numeric @ weights[:, :, k] + model.bias[k])
        expected = model.towers.hidden[0]
        tower = torch.relu(hidden @ expected.weight[k] + expected.bias[k])
        output = tower @ model.towers.output.weight[k] + model.towers.output.bias[k]
        torch.testing.assert_close(model(numeric, categorical)[:, k], output.squeeze(-1))


def test_default_moe_sizes_are_the_papers() -> None:
    model = build_model("mmoe", NUMERIC, 2)
    assert model.hyperparameters == {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)}


@pytest.mark.parametrize("name, options, fragment", [
    ("transformer", {}, "unknown model 'transformer'"),
    ("shared-bottom", {"num_experts": 4}, "does not take num_experts"),
    ("mmoe", {"num_experts": 0}, "num_experts must be a positive integer"),
    ("mmoe", {"expert_units": (16, -1)}, "expert_units must be positive integers"),
    ("l2-constrained", {"l2_alpha": -1.0}, "l2_alpha must be a positive number"),
    ("tensor-factorization", {"ranks": (4, 4)}, "ranks must be three integers"),
    ("cross-stitch", {"stitch": "diagonal"}, "stitch must be one of"),
])
def test_bad_model_options_are_one_line_errors(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        build_model(name, MIXED, 2, **options)
    assert "\n" not in str(error.value)
