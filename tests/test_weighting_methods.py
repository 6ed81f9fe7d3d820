"""The loss weightings and gradient-balancing methods (mmoe.train.weighting): known answers, every
method with every model, determinism, resumption, missing labels, population and ranks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mmoe.errors import MmoeError
from mmoe.models import MODELS, build_model
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.gradients import shared_parameter_names, task_gradients
from mmoe.train.loss import MultiTaskLoss
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig, load_checkpoint
from mmoe.train.weighting import WEIGHTINGS, GradientBalancing, make_weighting, min_norm_weights
from tests.conftest import toy_data
from tests.test_embeddings import embedded_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRC = Path(__file__).resolve().parents[1] / "src"
METHODS = [name for name in WEIGHTINGS if name != "fixed"]  # fixed needs task_weights (tests/test_weighting.py)
GRADIENT_METHODS = [name for name in METHODS if issubclass(WEIGHTINGS[name], GradientBalancing)]


def _solve(name: str, grads: list[list[float]], losses: list[float] | None = None, **options: float) -> Any:
    """The method's (update, weights) for one replica's per-task gradients (rows)."""
    method = make_weighting(name, len(grads), options=options or None)
    assert isinstance(method, GradientBalancing)
    g = torch.tensor([grads], dtype=torch.float32)
    l_ = torch.tensor([losses or [1.0] * len(grads)])
    update, weights = method.solve(g, l_, torch.tensor([0]), torch.arange(len(grads)))
    return update[0], weights[0]


# -- known answers ------------------------------------------------------------------------------------
def test_pcgrad_projects_two_conflicting_gradients() -> None:
    # g1·g2 = −1 < 0: g1' = g1 − (−1/2) g2 = (0.5, 0.5); g2' = g2 − (−1/1) g1 = (0, 1); update g1' + g2'.
    update, weights = _solve("pcgrad", [[1.0, 0.0], [-1.0, 1.0]])
    torch.testing.assert_close(update, torch.tensor([0.5, 1.5]))
    assert weights.tolist() == [1.0, 1.0]
    # No conflict: the plain sum.
    update, _ = _solve("pcgrad", [[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(update, torch.tensor([2.0, 1.0]))


def test_mgda_finds_the_min_norm_point_of_two_vectors() -> None:
    # min over γ of ‖γ(1, 0) + (1 − γ)(0, 2)‖² = γ² + 4(1 − γ)²: γ = 4/5, the point (0.8, 0.4).
    update, weights = _solve("mgda", [[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(weights, torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(update, torch.tensor([0.8, 0.4]))
    # A vector inside the other's reach: the hull's min-norm point is the shorter one.
    update, weights = _solve("mgda", [[1.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0]))
    # Opposite vectors: 0 (Pareto-stationary).
    update, _ = _solve("mgda", [[1.0, 1.0], [-2.0, -2.0]])
    torch.testing.assert_close(update, torch.zeros(2), atol=1e-6, rtol=0)


def test_min_norm_weights_of_more_tasks_agree_with_a_grid_search() -> None:
    torch.manual_seed(0)
    grads = torch.randn(3, 5, dtype=torch.float64)
    weights = min_norm_weights((grads @ grads.T).unsqueeze(0), iterations=2000)[0]
    steps = torch.linspace(0, 1, 201, dtype=torch.float64)
    best = min(
        float((a * grads[0] + b * grads[1] + (1 - a - b) * grads[2]).norm())
        for a in steps
        for b in steps
        if a + b <= 1 + 1e-12
    )
    assert float(weights @ grads @ grads.T @ weights) ** 0.5 <= best + 1e-6
    assert weights.min() >= 0 and float(weights.sum()) == pytest.approx(1.0)


def test_imtl_nash_aligned_and_cagrad_meet_their_definitions() -> None:
    torch.manual_seed(1)
    grads = torch.randn(3, 6)
    rows = grads.tolist()
    # IMTL-G: equal projections of the update on every unit gradient.
    update, weights = _solve("imtl", rows)
    projections = grads / grads.norm(dim=-1, keepdim=True) @ update
    torch.testing.assert_close(projections, projections[:1].expand(3), rtol=1e-4, atol=1e-5)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    # Nash-MTL: (G Gᵀ a)_k = 1 / a_k, a > 0 (unclipped).
    update, weights = _solve("nash-mtl", rows, max_norm=0.0)
    assert (weights > 0).all()
    torch.testing.assert_close((grads @ grads.T @ weights) * weights, torch.ones(3), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(update, weights @ grads)
    clipped, _ = _solve("nash-mtl", rows, max_norm=0.1)
    assert float(clipped.norm()) == pytest.approx(min(0.1, float(update.norm())), rel=1e-5)
    # Aligned-MTL: a = √λ_min · V Λ^(−1/2) Vᵀ 1, so the aligned matrix's Gram matrix is λ_min·I.
    update, weights = _solve("aligned-mtl", rows)
    values, vectors = torch.linalg.eigh((grads @ grads.T).double())
    basis = values.min().sqrt() * vectors @ torch.diag(values.rsqrt()) @ vectors.T
    torch.testing.assert_close(weights, basis.sum(0).float(), rtol=1e-4, atol=1e-5)
    aligned = basis.float() @ grads
    torch.testing.assert_close(aligned @ aligned.T, values.min().float() * torch.eye(3), rtol=1e-3, atol=1e-4)
    # CAGrad with c = 0 is the mean gradient; with c > 0 the worst task does no worse than under the mean.
    update, weights = _solve("cagrad", rows, c=0.0)
    torch.testing.assert_close(update, grads.mean(0), rtol=1e-5, atol=1e-6)
    update, _ = _solve("cagrad", rows, c=0.5)
    assert float((grads @ update).min()) >= float((grads @ grads.mean(0)).min()) - 1e-6


def test_db_mtl_rescales_log_loss_gradients_to_the_largest_norm() -> None:
    # First step: ĝ_k = g_k / loss_k (β_1 = 0.9 of a zero buffer: 0.1·g/loss); both rescaled to the largest.
    update, weights = _solve("db-mtl", [[2.0, 0.0], [0.0, 1.0]], losses=[1.0, 4.0])
    smoothed = 0.1 * torch.tensor([[2.0, 0.0], [0.0, 0.25]])
    scale = torch.tensor([1.0, 8.0])
    torch.testing.assert_close(update, (scale.unsqueeze(1) * smoothed).sum(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, scale / torch.tensor([1.0, 4.0]), rtol=1e-5, atol=1e-6)


def test_uw_weights_approach_the_inverse_noise_variances() -> None:
    # Two regression tasks on one linear model, noise σ = 0.5 and 2: at UW's fixed point e^(s_k) =
    # loss_k = σ_k² (the model fits the mean exactly), so the weight e^(−s_k) is 1/σ_k².
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 3, generator=generator)
    truth = torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]])
    noise = torch.tensor([0.5, 2.0])
    y = x @ truth + noise * torch.randn(4096, 2, generator=generator)
    weight = torch.zeros(3, 2, requires_grad=True)
    method = make_weighting("uw", 2)
    own = method.prepare(torch.nn.Linear(1, 1), {"weight": weight})
    optimizer = torch.optim.Adam([weight, *own], lr=0.05)
    labelled = torch.ones(2, dtype=torch.bool)
    for _ in range(600):
        optimizer.zero_grad()
        method.backward(((x @ weight - y) ** 2).mean(0), labelled, [weight])
        optimizer.step()
    precision = torch.exp(-own[0].detach())
    torch.testing.assert_close(precision, 1 / noise**2, rtol=0.1, atol=0)


@pytest.mark.parametrize(("alpha", "ratio"), [(0.0, 1.0), (1.0, 2.0)])
def test_gradnorm_equalises_the_training_rates(alpha: float, ratio: float) -> None:
    # Fixed gradients of norms 1 and 10. Task 1's loss stays at its start while task 2's halves:
    # relative rates r = (1, 0.5) / 0.75, so GradNorm's weights settle where
    # w_1‖g_1‖ / (w_2‖g_2‖) = (r_1 / r_2)^α: 1 with α = 0 (equal gradient norms), 2 with α = 1.
    model = torch.nn.Module()
    model.theta = theta = torch.nn.Parameter(torch.zeros(2))
    method = make_weighting("gradnorm", 2, options={"alpha": alpha})
    own = method.prepare(model, dict(model.named_parameters()))
    optimizer = torch.optim.Adam(own, lr=0.01)
    labelled = torch.ones(2, dtype=torch.bool)
    for step in range(800):
        optimizer.zero_grad()
        offsets = torch.tensor([1.0, 1.0 if step == 0 else 0.5])
        losses = torch.stack([theta[0], 10 * theta[1]]) + offsets
        method.backward(losses, labelled, [theta])
        optimizer.step()
    weights = own[0].detach()[0] * 2 / own[0].detach()[0].sum()
    assert float(weights[0] * 1 / (weights[1] * 10)) == pytest.approx(ratio, rel=0.05)


# -- which parameters are shared ------------------------------------------------------------------------
def test_shared_parameters_leave_out_towers_and_task_gates() -> None:
    spec = InputSpec(("a", "b"), ("colour",), (4,))
    mmoe = shared_parameter_names(build_model("mmoe", spec, 2))
    assert mmoe == ["experts.expert_bias", "experts.input_layer.numeric_weight", "experts.input_layer.category_weight"]
    ple = shared_parameter_names(build_model("ple", spec, 2))
    assert "levels.1.task_gate" not in ple and not any(name.startswith("towers.") for name in ple)
    assert "task_factor" not in shared_parameter_names(build_model("tensor-factorization", spec, 2))
    assert "stitches.0" in shared_parameter_names(build_model("cross-stitch", spec, 2))


def test_task_gradients_in_one_pass_equal_one_pass_per_task() -> None:
    torch.manual_seed(0)
    spec = InputSpec(("a", "b"), ("colour",), (4,))
    model = build_model("mmoe", spec, 3, num_experts=3)
    tasks = [Task("a", "binary"), Task("b", "binary"), Task("c", "regression")]
    labels = torch.stack([torch.randint(0, 2, (32,)).float(), torch.randint(0, 2, (32,)).float(), torch.randn(32)], 1)
    losses, _ = MultiTaskLoss(tasks)(model(torch.randn(32, 2), torch.randint(0, 4, (32, 1))), labels)
    shared = [p for name, p in model.named_parameters() if name in shared_parameter_names(model)]
    batched = task_gradients(losses, shared)
    assert batched.shape == (1, 3, sum(p.numel() for p in shared))
    for k in range(3):
        one = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[k], shared, retain_graph=True)])
        torch.testing.assert_close(batched[0, k], one, rtol=1e-6, atol=1e-7)


# -- every method, every model --------------------------------------------------------------------------
OPTIONS = {"epochs": 2, "batch_size": 64, "patience": 0, "learning_rate": 1e-2}


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("weighting", METHODS)
def test_every_method_trains_every_model(weighting: str, model: str) -> None:
    result = fit(toy_data(rows=300, missing_second=0.3), model, TrainConfig(weighting=weighting, **OPTIONS))
    assert all(math.isfinite(entry["train_loss"]) for entry in result.history)
    torch.manual_seed(0)  # the same draw as fit's seed 0
    start = build_model(model, toy_data().input_spec, 2)
    moved = [not torch.equal(start.state_dict()[k], v) for k, v in result.model.state_dict().items()]
    assert any(moved)


@pytest.mark.parametrize("weighting", METHODS)
def test_same_seed_same_numbers_and_resume_continues_identically(weighting: str, tmp_path: Path) -> None:
    data = toy_data(rows=400, missing_second=0.3)
    options = {**OPTIONS, "seed": 5, "weighting": weighting}
    full = fit(data, "mmoe", TrainConfig(**{**options, "epochs": 3}))
    again = fit(data, "mmoe", TrainConfig(**{**options, "epochs": 3}))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(data, "mmoe", TrainConfig(**{**options, "epochs": 2}), checkpoint_path=checkpoint)
    assert load_checkpoint(checkpoint)["identity"]["training"].get("weighting", "ew") == weighting
    resumed = fit(data, "mmoe", TrainConfig(**{**options, "epochs": 3}), resume_from=checkpoint)
    for other in (again, resumed):
        assert [e["train_loss"] for e in other.history[-1:]] == [e["train_loss"] for e in full.history[-1:]]
        for name, tensor in full.model.state_dict().items():
            assert torch.equal(tensor, other.model.state_dict()[name]), (weighting, name)


@pytest.mark.parametrize("weighting", METHODS)
def test_a_task_without_labels_takes_no_part(weighting: str) -> None:
    """The second task has no label in the batch: its tower gets no gradient, the shared update
    points along the first task's gradient alone, and the method's state for it does not move."""
    tasks = [Task("clicked", "binary"), Task("watch", "regression", 10.0, 3.0)]
    torch.manual_seed(0)
    model = build_model("shared-bottom", InputSpec(("a", "b"), ("colour",), (4,)), 2, hidden_units=(8,))
    labels = torch.stack([torch.randint(0, 2, (16,)).float(), torch.full((16,), math.nan)], 1)
    inputs = torch.randn(16, 2), torch.randint(0, 4, (16, 1))
    method = make_weighting(weighting, 2)
    own = method.prepare(model, dict(model.named_parameters()))
    optimizer = torch.optim.SGD([*model.parameters(), *own], lr=0.1)
    shared = [p for name, p in model.named_parameters() if name in shared_parameter_names(model)]
    for step in range(3):  # a few steps: the state of methods with memory too
        per_task, labelled = MultiTaskLoss(tasks)(model(*inputs), labels)
        first = torch.cat([g.reshape(-1) for g in torch.autograd.grad(per_task[0], shared, retain_graph=True)])
        optimizer.zero_grad(set_to_none=True)
        loss = method.backward(per_task, labelled, list(model.parameters()))
        assert math.isfinite(float(loss))
        for name, p in model.named_parameters():
            if name.startswith("towers."):
                assert p.grad is None or float(p.grad[1].abs().max()) == 0.0, name
        update = torch.cat([p.grad.reshape(-1) for p in shared])
        if step == 0 or weighting != "db-mtl":  # DB-MTL's update is an average over steps of task 1's
            assert float(torch.nn.functional.cosine_similarity(update, first, dim=0)) == pytest.approx(1.0, abs=1e-5)
        for tensor in own:
            assert tensor.grad is None or float(tensor.grad.reshape(-1, 2)[:, 1].abs().max()) == 0.0
        optimizer.step()


@pytest.mark.parametrize("weighting", ["pcgrad", "mgda", "uw"])
@pytest.mark.parametrize("sparse_optimizer", ["lazy-adam", "dense"])
def test_embedding_tables_stay_out_of_the_gradient_matrix(weighting: str, sparse_optimizer: str) -> None:
    # An embedded user column of 5,000 ids: its table is not a column block of the per-task matrix.
    data = embedded_data(rows=300, users=5000)
    method = make_weighting(weighting, 2)
    torch.manual_seed(0)
    model = build_model("mmoe", data.input_spec, 2, num_experts=3)
    method.prepare(model, dict(model.named_parameters()))
    if isinstance(method, GradientBalancing):
        assert all(p.shape[0] != 5000 for p in method.shared)
    result = fit(data, "mmoe", TrainConfig(weighting=weighting, sparse_optimizer=sparse_optimizer, **OPTIONS))
    assert all(math.isfinite(entry["train_loss"]) for entry in result.history)


# -- population and ranks --------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", METHODS)
def test_population_trains_with_every_method(weighting: str) -> None:
    population = train_population(
        "mmoe", toy_data(rows=300, missing_second=0.3), TrainConfig(weighting=weighting, **OPTIONS), seeds=[1, 2]
    )
    for replica in population.replicas:
        assert all(math.isfinite(entry["train_loss"]) for entry in replica.history)


@pytest.mark.parametrize("weighting", ["uw", "gls", "mgda", "nash-mtl", "db-mtl"])
def test_a_population_replica_trains_as_its_run_alone(weighting: str) -> None:
    options = {**OPTIONS, "epochs": 2, "weighting": weighting}
    data = toy_data(rows=400, missing_second=0.3)
    population = train_population("mmoe", data, TrainConfig(**options), seeds=[1, 4])
    for replica, state, seed in zip(population.replicas, population.state_dicts, [1, 4]):
        alone = fit(data, "mmoe", TrainConfig(**options, seed=seed))
        assert [e["train_loss"] for e in replica.history] == pytest.approx(
            [e["train_loss"] for e in alone.history], rel=1e-4
        )
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-3, atol=1e-4)


# Two ranks train what one process trains with gls, uw, mgda (and its upper bound) and pcgrad (with
# L2-Constrained's penalty and DSelect-k's entropy term): tests/test_distributed_models.py, whose
# one torchrun launch trains those cases beside the models'.


# -- the benchmark -----------------------------------------------------------------------------------------
def test_the_benchmark_smoke_mode_times_every_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import json

    path = SRC.parent / "benchmarks" / "weighting.py"
    spec = importlib.util.spec_from_file_location("weighting_benchmark", path)
    assert spec is not None and spec.loader is not None
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    out = tmp_path / "weighting.json"
    assert benchmark.main(["--smoke", "--threads", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["summary"]) == METHODS and report["smoke"]
    assert report["summary"]["ew"]["ratio_to_ew"] == 1.0
    assert all(row["ms_per_step_median"] > 0 for row in report["summary"].values())
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "weighting" and len(table) == 1 + len(METHODS)


# -- MGDA's upper bound on the shared representation --------------------------------------------------------
def test_mgda_upper_bound_weighs_by_the_representation_gradients() -> None:
    tasks = [Task("clicked", "binary"), Task("watch", "regression", 10.0, 3.0)]
    torch.manual_seed(0)
    model = build_model("shared-bottom", InputSpec(("a", "b"), ("colour",), (4,)), 2, hidden_units=(8,))
    labels = torch.stack([torch.randint(0, 2, (16,)).float(), 10 + 3 * torch.randn(16)], 1)
    inputs = torch.randn(16, 2), torch.randint(0, 4, (16, 1))
    method = make_weighting("mgda", 2, options={"upper_bound": 1})
    method.prepare(model, dict(model.named_parameters()))
    kept: list[torch.Tensor] = []
    hook = model.bottom.register_forward_hook(lambda module, i, output: kept.append(output))
    per_task, labelled = MultiTaskLoss(tasks)(model(*inputs), labels)
    hook.remove()
    grads = torch.stack([torch.autograd.grad(per_task[k], kept[0], retain_graph=True)[0].reshape(-1) for k in (0, 1)])
    weights = min_norm_weights((grads @ grads.T).double().unsqueeze(0))[0].float()
    (weights * per_task).sum().backward(retain_graph=True)
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    loss = method.backward(per_task, labelled, list(model.parameters()))
    assert float(loss) == pytest.approx(float((weights * per_task).sum().detach()), rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_mgda_upper_bound_needs_a_shared_representation_and_one_run() -> None:
    config = TrainConfig(weighting="mgda", weighting_options={"upper_bound": 1}, **OPTIONS)
    assert all(math.isfinite(e["train_loss"]) for e in fit(toy_data(rows=300), "mmoe", config).history)
    with pytest.raises(MmoeError, match="model cross-stitch exposes no shared representation") as error:
        fit(toy_data(rows=300), "cross-stitch", config)
    assert "\n" not in str(error.value)
    with pytest.raises(MmoeError, match="upper_bound: not in population training"):
        train_population("mmoe", toy_data(rows=300), config, seeds=[0, 1])
