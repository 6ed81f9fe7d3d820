"""DSelect-k: what is easy to get wrong (the smooth step's ends, the binary encoding, gates that
sum to one, the entropy regulariser on every task, at most k experts once settled), checked
against a reference computed expert by expert from the paper's formulas, and through every
trainer (single, population, resumed, distributed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.errors import MmoeError
from mmoe.models import build_model
from mmoe.models.dselect import DSelectK, selector_entropy, smooth_step
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig, load_checkpoint
from tests.conftest import toy_data

MIXED = InputSpec(("a", "b", "c"), ("colour", "size"), (4, 6))
TWO_BINARY = [Task("clicked", "binary"), Task("bought", "binary"), Task("spent", "regression")]


def inputs(rows: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, 3, generator=generator)
    categorical = torch.stack(
        [torch.randint(0, 4, (rows,), generator=generator), 4 + torch.randint(0, 6, (rows,), generator=generator)], 1
    )
    return numeric, categorical


def reference(model: DSelectK, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs [B, K], gates [B, K, E]) one expert, task, selector and code at a time, from the
    module docstring's formulas and parameter layout (experts, then z logits, then weight logits)."""
    E, K, k, gamma = model.num_experts, model.num_tasks, model.k, model.hyperparameters["gamma"]
    m = max(1, math.ceil(math.log2(E)))
    first = model.input_layer(numeric, categorical)
    units = model.first_units
    experts = []
    for e in range(E):
        hidden = torch.relu(first[:, e * units : (e + 1) * units])
        for layer in model.deeper.hidden:
            hidden = torch.relu(hidden @ layer.weight[e] + layer.bias[e])
        experts.append(hidden)
    z_at, w_at = E * units, E * units + K * k * m
    outputs, gates = [], []
    for t in range(K):
        weights = torch.softmax(first[:, w_at + t * k : w_at + (t + 1) * k], -1)
        gate = torch.zeros(len(numeric), E)
        for i in range(k):
            z = first[:, z_at + (t * k + i) * m : z_at + (t * k + i + 1) * m]
            s = smooth_step(z, gamma)
            for code in range(2**m):
                r = torch.ones(len(numeric))
                for j in range(m):
                    r = r * (s[:, j] if (code >> j) & 1 else 1 - s[:, j])
                expert = code if code < E else code - E  # the documented fold of the spare codes
                gate[:, expert] += weights[:, i] * r
        mixed = sum(gate[:, [e]] * experts[e] for e in range(E))
        hidden = mixed
        for layer in model.towers.hidden:
            hidden = torch.relu(hidden @ layer.weight[t] + layer.bias[t])
        outputs.append((hidden @ model.towers.output.weight[t] + model.towers.output.bias[t]).squeeze(-1))
        gates.append(gate)
    return torch.stack(outputs, 1), torch.stack(gates, 1)


@pytest.mark.parametrize(
    "options",
    [
        {"num_experts": 8, "k": 2},
        {"num_experts": 5, "k": 3, "expert_units": (6, 4), "tower_units": (), "gamma": 0.5},
        {"num_experts": 2, "k": 1},
        {"num_experts": 3, "k": 3, "gamma": 10.0},
    ],
)
def test_batched_model_equals_the_expert_by_expert_reference(options: dict) -> None:
    torch.manual_seed(0)
    model = build_model("dselect-k", MIXED, 3, **options)
    assert isinstance(model, DSelectK)
    numeric, categorical = inputs()
    # Spread the z logits over the smooth step's three parts (a fresh model's are all near 0).
    with torch.no_grad():
        model.input_layer.numeric_weight.mul_(30.0)
    outputs, gates = reference(model, numeric, categorical)
    torch.testing.assert_close(model(numeric, categorical), outputs)
    torch.testing.assert_close(model.gates(numeric, categorical), gates)
    # Both saturated and cubic steps were exercised.
    z = model.selection(numeric, categorical)[1].selectors
    assert ((z == 0) | (z == 1)).any() and ((z > 0) & (z < 1)).any()


def test_smooth_step_is_0_and_1_outside_its_interval_and_cubic_inside() -> None:
    for gamma in (0.1, 1.0, 3.0):
        half = gamma / 2
        t = torch.tensor([-10.0, -half - 1e-3, -half, half, half + 1e-3, 10.0], requires_grad=True)
        s = smooth_step(t, gamma)
        assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # exactly
        s.sum().backward()
        assert t.grad is not None and t.grad.abs().max() == 0  # no gradient where it is saturated
        inside = torch.linspace(-half * 0.99, half * 0.99, 21)
        expected = -2 * inside**3 / gamma**3 + 1.5 * inside / gamma + 0.5
        torch.testing.assert_close(smooth_step(inside, gamma), expected)
        assert smooth_step(torch.tensor(0.0), gamma) == 0.5
        assert (smooth_step(inside, gamma).diff() > 0).all()  # increasing, within (0, 1)


def test_selector_entropy_is_zero_for_one_hot_and_log_e_for_uniform() -> None:
    one_hot = torch.eye(8)[[3, 0, 7]]
    assert torch.equal(selector_entropy(one_hot), torch.zeros(3))
    torch.testing.assert_close(selector_entropy(torch.full((2, 8), 1 / 8)), torch.full((2,), math.log(8)))
    half = torch.tensor([0.5, 0.5, 0.0])
    torch.testing.assert_close(selector_entropy(half), torch.tensor(math.log(2)))


def saturate(model: DSelectK, codes: list[list[int]]) -> None:
    """Makes every row's selectors one-hot: selector i of task t picks code codes[t][i] (z logits
    ±10 from the bias alone, far outside [−γ/2, γ/2])."""
    E, k, m = model.num_experts, model.k, model.gate.bits
    z_at = E * model.first_units
    layer = model.input_layer
    with torch.no_grad():
        layer.numeric_weight[:, z_at : z_at + model.num_tasks * k * m] = 0
        layer.category_weight[:, z_at : z_at + model.num_tasks * k * m] = 0
        assert layer.bias is not None
        for t, task_codes in enumerate(codes):
            for i, code in enumerate(task_codes):
                for j in range(m):
                    layer.bias[z_at + (t * k + i) * m + j] = 10.0 if (code >> j) & 1 else -10.0


def test_a_one_hot_selection_has_zero_entropy_and_at_most_k_experts() -> None:
    torch.manual_seed(0)
    model = build_model("dselect-k", MIXED, 2, num_experts=5, k=2, entropy_weight=0.5)
    assert isinstance(model, DSelectK)
    numeric, categorical = inputs()
    _, fresh = model.forward_with_aux(numeric, categorical, TWO_BINARY[:2])
    assert fresh > 0
    # Task 0 picks codes 1 and 3 (experts 1 and 3); task 1 picks code 6 (expert 1: 6 − 5) and code 4.
    saturate(model, [[1, 3], [6, 4]])
    outputs, auxiliary = model.forward_with_aux(numeric, categorical, TWO_BINARY[:2])
    assert auxiliary == 0  # exactly
    torch.testing.assert_close(outputs, model(numeric, categorical), rtol=0, atol=0)
    selection = model.selection(numeric, categorical)[1]
    assert selection.selectors[:, 0].argmax(-1).tolist() == [[1, 3]] * 9
    assert selection.selectors[:, 1].argmax(-1).tolist() == [[1, 4]] * 9
    gates = model.gates(numeric, categorical)
    assert ((gates > 0).sum(-1) <= 2).all()
    assert (gates[:, 0, [0, 2, 4]] == 0).all() and (gates[:, 1, [0, 2, 3]] == 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(9, 2))


@pytest.mark.parametrize("num_experts", [2, 3, 5, 8, 16])
def test_gates_are_distributions_over_the_experts(num_experts: int) -> None:
    torch.manual_seed(1)
    model = build_model("dselect-k", MIXED, 3, num_experts=num_experts, k=2)
    numeric, categorical = inputs(rows=13)
    with torch.no_grad():
        model.input_layer.numeric_weight.mul_(20.0)  # logits of every kind, not only near 0
    gates = model.gates(numeric, categorical)
    assert gates.shape == (13, 3, num_experts) and (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(13, 3))
    selectors = model.selection(numeric, categorical)[1].selectors
    assert selectors.shape == (13, 3, 2, num_experts)
    torch.testing.assert_close(selectors.sum(-1), torch.ones(13, 3, 2))


@torch.no_grad()
def test_a_fresh_gate_is_near_uniform_and_the_entropy_counts_every_task() -> None:
    torch.manual_seed(0)
    model = build_model("dselect-k", MIXED, 3, num_experts=8, k=2, entropy_weight=0.25)
    assert isinstance(model, DSelectK)
    numeric, categorical = inputs()
    gates = model.gates(numeric, categorical)
    torch.testing.assert_close(gates, torch.full_like(gates, 1 / 8), rtol=0, atol=0.05)  # s(z) ≈ 1/2: no saturation
    _, auxiliary = model.forward_with_aux(numeric, categorical, TWO_BINARY)
    selectors = model.selection(numeric, categorical)[1].selectors
    per_task = [sum(float(selector_entropy(selectors[b, t]).sum()) for b in range(9)) for t in range(3)]
    assert all(term > 0 for term in per_task)
    assert float(auxiliary) == pytest.approx(0.25 * sum(per_task), rel=1e-5)
    # One task settled: its term is gone, the others' stay.
    saturate(model, [[0, 1]])
    _, auxiliary = model.forward_with_aux(numeric, categorical, TWO_BINARY)
    selectors = model.selection(numeric, categorical)[1].selectors
    assert float(selector_entropy(selectors[:, 0]).sum()) == 0
    assert float(auxiliary) == pytest.approx(0.25 * float(selector_entropy(selectors[:, 1:]).sum()), rel=1e-5)
    assert auxiliary > 0


def test_training_settles_every_gate_on_at_most_k_experts(one_torch_thread: None) -> None:
    data = toy_data(rows=1000)
    config = TrainConfig(epochs=12, patience=0, batch_size=64, learning_rate=1e-2, seed=0, restore_best=False)
    model = build_model("dselect-k", data.input_spec, 2, num_experts=8, k=2)
    rows = data.validation
    assert ((model.gates(rows.numeric, rows.categorical) > 0).sum(-1) == 8).all()  # all experts at first
    result = fit(data, "dselect-k", config, num_experts=8, k=2, entropy_weight=0.3)
    assert isinstance(result.model, DSelectK)
    with torch.no_grad():
        selectors = result.model.selection(rows.numeric, rows.categorical)[1].selectors
        gates = result.model.gates(rows.numeric, rows.categorical)
    # Nearly every selector is one-hot, exactly (all its smooth steps saturated) ...
    assert ((selectors == 0) | (selectors == 1)).all(-1).float().mean() > 0.99
    # ... and on every row each gate gives the experts other than k of them exactly 0.
    assert ((gates > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(len(rows), 2))
    assert result.metrics["test"]["clicked"]["auc"] > 0.95


def test_the_entropy_weight_changes_training_and_the_loss_reports_it(one_torch_thread: None) -> None:
    data = toy_data()
    config = TrainConfig(epochs=1, patience=0, batch_size=600, learning_rate=1e-2, seed=0, restore_best=False)
    plain = fit(data, "dselect-k", config, entropy_weight=0.0)
    weighted = fit(data, "dselect-k", config, entropy_weight=0.5)
    # One batch (all 420 training rows): the reported loss is the task losses + the per-row mean
    # of the entropy term at the step's weights, i.e. those of a fresh model of that seed.
    torch.manual_seed(0)
    fresh = build_model("dselect-k", data.input_spec, 2, entropy_weight=0.5)
    rows = data.train
    _, auxiliary = fresh.forward_with_aux(rows.numeric, rows.categorical, data.tasks)
    extra = weighted.history[0]["train_loss"] - plain.history[0]["train_loss"]
    assert extra == pytest.approx(float(auxiliary.detach()) / len(rows), rel=1e-4)
    assert not torch.equal(plain.model.input_layer.bias, weighted.model.input_layer.bias)


def test_each_replica_equals_its_run_alone(one_torch_thread: None) -> None:
    """Population training (vmap) adds each replica's entropy term as its run alone does."""
    seeds, rates = [3, 5], [1e-2, 3e-3]
    options = {"epochs": 3, "batch_size": 64, "patience": 2}
    hyperparameters = {"num_experts": 5, "k": 2, "entropy_weight": 0.2}
    population = train_population(
        "dselect-k", toy_data(), TrainConfig(**options), seeds=seeds, learning_rates=rates, **hyperparameters
    )
    for replica, state, seed, rate in zip(population.replicas, population.state_dicts, seeds, rates):
        alone = fit(toy_data(), "dselect-k", TrainConfig(**options, seed=seed, learning_rate=rate), **hyperparameters)
        assert replica.best_epoch == alone.best_epoch
        assert [h["train_loss"] for h in replica.history] == pytest.approx(
            [h["train_loss"] for h in alone.history], rel=1e-5
        )
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)


def test_resume_equals_uninterrupted(tmp_path: Path, one_torch_thread: None) -> None:
    options = {"patience": 0, "batch_size": 64, "seed": 3}
    hyperparameters = {"num_experts": 4, "k": 2, "entropy_weight": 0.1}
    full = fit(toy_data(), "dselect-k", TrainConfig(epochs=4, **options), **hyperparameters)
    checkpoint = tmp_path / "checkpoint.pt"
    fit(toy_data(), "dselect-k", TrainConfig(epochs=2, **options), checkpoint_path=checkpoint, **hyperparameters)
    assert load_checkpoint(checkpoint)["epoch"] == 2
    resumed = fit(
        toy_data(),
        "dselect-k",
        TrainConfig(epochs=4, **options),
        checkpoint_path=checkpoint,
        resume_from=checkpoint,
        **hyperparameters,
    )
    assert resumed.metrics == full.metrics
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"num_experts": 1}, "num_experts must be at least 2"),
        ({"k": 0}, "k must be a positive integer"),
        ({"num_experts": 4, "k": 5}, "k must be at most num_experts \\(4\\)"),
        ({"gamma": 0.0}, "gamma must be a positive number"),
        ({"gamma": math.inf}, "gamma must be a positive number"),
        ({"entropy_weight": -0.1}, "entropy_weight must be a finite number, zero or more"),
        ({"entropy_weight": math.nan}, "entropy_weight must be a finite number, zero or more"),
        ({"expert_units": (0,)}, "expert_units must be positive integers"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        build_model("dselect-k", MIXED, 2, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("max_units", [16, 2048])
def test_search_space_keeps_the_experts_within_the_cap(max_units: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        drawn = DSelectK.search_space(study.ask(), max_units)
        assert drawn["num_experts"] * drawn["expert_units"][0] <= max(max_units, drawn["num_experts"])
        assert 1 <= drawn["k"] <= drawn["num_experts"]
        build_model("dselect-k", MIXED, 2, **drawn)


def test_defaults_are_mmoes_experts() -> None:
    model = build_model("dselect-k", MIXED, 2)
    assert model.hyperparameters == {
        "num_experts": 8,
        "expert_units": (16,),
        "tower_units": (8,),
        "k": 2,
        "gamma": 1.0,
        "entropy_weight": 0.01,
    }
    mmoe = build_model("mmoe", MIXED, 2)
    # MMoE's gates: 2 tasks × 8 logits per input, no bias. DSelect-k's: 2 tasks × (k·m z logits
    # + k weight logits) = 2 × (2·3 + 2), the same 16 per input, and a bias each.
    assert model.num_parameters() == mmoe.num_parameters() + 2 * (2 * 3 + 2)


def test_listed_and_trained_from_the_cli_and_the_estimator(
    tmp_path: Path, capsys: pytest.CaptureFixture, one_torch_thread: None
) -> None:
    assert main(["models", "-v"]) == 0
    listing = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(listing) if line.startswith("dselect-k "))
    assert "Hazimeh et al., 2021" in listing[at]
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame(
        {
            "x": x,
            "colour": rng.choice(["red", "green", "blue"], 400),
            "clicked": (x + rng.normal(0, 0.5, 400) > 0).astype(int),
            "spent": 2 * x + rng.normal(0, 0.1, 400),
        }
    )
    table = tmp_path / "table.csv"
    frame.to_csv(table, index=False)
    run = tmp_path / "run"
    arguments = ["train", "--model", "dselect-k", "--data", table, "--tasks", "clicked:binary,spent:regression"]
    arguments += ["--num-experts", "6", "--k", "3", "--gamma", "2", "--entropy-weight", "0.05"]
    arguments += ["--epochs", "6", "--batch-size", "32", "--lr", "0.01", "--out", run, "--quiet"]
    code = main([str(a) for a in arguments])
    assert code == 0, capsys.readouterr().err
    saved = torch.load(run / "model.pt", weights_only=False)
    assert saved["model"] == "dselect-k"
    assert saved["hyperparameters"] == {
        "num_experts": 6,
        "expert_units": (16,),
        "tower_units": (8,),
        "k": 3,
        "gamma": 2.0,
        "entropy_weight": 0.05,
    }
    assert json.loads((run / "metrics.json").read_text())["test"]["clicked"]["auc"] > 0.7

    from mmoe import MultiTaskEstimator

    estimator = MultiTaskEstimator(
        model="dselect-k", tasks={"clicked": "binary", "spent": "regression"}, num_experts=4, epochs=2, seed=0
    ).fit(frame)
    gates = estimator.gates(frame.drop(columns=["clicked", "spent"]))
    assert list(gates) == ["clicked", "spent"]
    for task in gates:
        assert list(gates[task].columns) == [f"expert_{e}" for e in range(4)]
        np.testing.assert_allclose(gates[task].sum(axis=1), 1.0, rtol=1e-5)


# Two ranks, interrupted and resumed, train what one process trains (the entropy term, a per-row
# mean over the global batch, with uneven and empty shares): tests/test_distributed_models.py.
