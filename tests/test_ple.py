"""PLE and CGC: what is easy to get wrong (expert indexing, tower shapes, the shared gate), checked
against a reference computed expert by expert, and against the models they reduce to."""

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
from mmoe.models import MMoE, build_model
from mmoe.models.ple import CGC, PLE, LayeredExtraction
from mmoe.runs import fit
from mmoe.spec import InputSpec
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from tests.conftest import toy_data

MIXED = InputSpec(("a", "b", "c"), ("colour", "size"), (4, 6))


def inputs(rows: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, 3, generator=generator)
    categorical = torch.stack(
        [torch.randint(0, 4, (rows,), generator=generator), 4 + torch.randint(0, 6, (rows,), generator=generator)], 1
    )
    return numeric, categorical


def gate_width(model: LayeredExtraction, choices: int) -> int:
    """One gate's logits: one per expert (softmax), or k selectors' ⌈log₂ choices⌉ z logits and k
    weights' (DSelect-k)."""
    if model.hyperparameters["gate"] == "softmax":
        return choices
    k = model.hyperparameters["k"]
    return k * max(1, math.ceil(math.log2(choices))) + k


def gate_weights(model: LayeredExtraction, logits: torch.Tensor, choices: int) -> torch.Tensor:
    """[B, choices]: a softmax of the logits, or DSelect-k's gate from its formulas, code by code
    (a code c ≥ choices selects expert c − choices)."""
    if model.hyperparameters["gate"] == "softmax":
        return torch.softmax(logits, -1)
    k, gamma = model.hyperparameters["k"], model.hyperparameters["gamma"]
    bits = max(1, math.ceil(math.log2(choices)))
    weights = torch.softmax(logits[:, k * bits :], -1)
    gate = torch.zeros(len(logits), choices)
    for i in range(k):
        for code in range(2**bits):
            chance = torch.ones(len(logits))
            for j in range(bits):
                t = logits[:, i * bits + j]
                step = torch.where(
                    t <= -gamma / 2, 0.0, torch.where(t >= gamma / 2, 1.0, -2 * t**3 / gamma**3 + 1.5 * t / gamma + 0.5)
                )
                chance = chance * (step if (code >> j) & 1 else 1 - step)
            gate[:, code - choices if code >= choices else code] += weights[:, i] * chance
    return gate


def reference(model: LayeredExtraction, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    """The model's function, one expert, gate and tower at a time, from the paper's formulas and the
    documented parameter layout (experts ordered [task 0's S, ..., task K−1's S, the H shared])."""
    K, S, H = model.num_tasks, model.specific_experts, model.shared_experts
    E = K * S + H
    task_width, shared_width = gate_width(model, S + H), gate_width(model, E)
    choices = [[k * S + s for s in range(S)] + [K * S + h for h in range(H)] for k in range(K)]
    tasks_in: list[torch.Tensor] = []
    shared_in: torch.Tensor | None = None
    for number, level in enumerate(model.levels):
        experts, task_logits = [], []
        shared_logits = None
        if number == 0:
            first = level.input_layer(numeric, categorical)
            units = level.first_units
            for i in range(E):
                hidden = torch.relu(first[:, i * units : (i + 1) * units] + level.expert_bias[i])
                for layer in level.deeper.hidden:
                    hidden = torch.relu(hidden @ layer.weight[i] + layer.bias[i])
                experts.append(hidden)
            gates_at = E * units
            for k in range(K):
                task_logits.append(first[:, gates_at + k * task_width : gates_at + (k + 1) * task_width])
            if first.shape[1] > gates_at + K * task_width:
                shared_logits = first[:, gates_at + K * task_width :]
                assert shared_logits.shape[1] == shared_width
        else:
            for i in range(E):
                hidden = tasks_in[i // S] if i < K * S else shared_in
                for layer in level.experts.hidden:
                    hidden = torch.relu(hidden @ layer.weight[i] + layer.bias[i])
                experts.append(hidden)
            for k in range(K):
                task_logits.append(tasks_in[k] @ level.task_gate[k])
            if level.shared_gate is not None:
                shared_logits = shared_in @ level.shared_gate
        if level.task_head.bias is not None:  # DSelect-k gates have a bias, softmax gates none
            task_logits = [logits + level.task_head.bias[k] for k, logits in enumerate(task_logits)]
            if shared_logits is not None:
                shared_logits = shared_logits + level.shared_head.bias
        tasks_in = []
        for k in range(K):
            gate = gate_weights(model, task_logits[k], S + H)
            tasks_in.append(sum(gate[:, [j]] * experts[i] for j, i in enumerate(choices[k])))
        if shared_logits is not None:
            gate = gate_weights(model, shared_logits, E)
            shared_in = sum(gate[:, [i]] * experts[i] for i in range(E))
        else:
            shared_in = None
    outputs = []
    for k in range(K):
        hidden = tasks_in[k]
        for layer in model.towers.hidden:
            hidden = torch.relu(hidden @ layer.weight[k] + layer.bias[k])
        outputs.append((hidden @ model.towers.output.weight[k] + model.towers.output.bias[k]).squeeze(-1))
    return torch.stack(outputs, 1)


CONFIGS = [
    ("ple", {"specific_experts": 2, "shared_experts": 3, "levels": 3, "expert_units": (5, 4), "tower_units": (3,)}),
    ("ple", {"specific_experts": 1, "shared_experts": 2, "levels": 2}),
    ("ple", {"specific_experts": 0, "shared_experts": 3, "levels": 2, "expert_units": (4,)}),
    ("ple", {"specific_experts": 2, "shared_experts": 0, "levels": 2, "expert_units": (4,)}),
    ("cgc", {"specific_experts": 2, "shared_experts": 3, "expert_units": (6, 5), "tower_units": ()}),
    ("cgc", {"specific_experts": 1, "shared_experts": 0}),
    # DSelect-k gates: 5, 3 and 1 experts to choose from (codes beyond them fold back), k of 1 to 3
    ("ple", {"specific_experts": 2, "shared_experts": 3, "levels": 3, "gate": "dselect-k", "expert_units": (5, 4)}),
    ("ple", {"specific_experts": 0, "shared_experts": 3, "levels": 2, "gate": "dselect-k", "k": 3, "gamma": 2.0}),
    ("cgc", {"specific_experts": 1, "shared_experts": 0, "gate": "dselect-k", "k": 1}),
]


@pytest.mark.parametrize("name, options", CONFIGS)
def test_batched_model_equals_the_expert_by_expert_reference(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, MIXED, 3, **options)
    assert isinstance(model, LayeredExtraction)
    if options.get("gate") == "dselect-k":  # logits of all sizes: smooth steps at 0, 1 and between
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_()
    numeric, categorical = inputs()
    out = model(numeric, categorical)
    assert out.shape == (9, 3)
    torch.testing.assert_close(out, reference(model, numeric, categorical))


def test_cgc_without_specific_experts_is_mmoe() -> None:
    numeric, categorical = inputs()
    # Same seed: the same initial weights, drawn in the same order.
    torch.manual_seed(3)
    mmoe = MMoE(MIXED, 2, num_experts=5, expert_units=(6, 4))
    torch.manual_seed(3)
    cgc = CGC(MIXED, 2, specific_experts=0, shared_experts=5, expert_units=(6, 4))
    assert [p.shape for p in mmoe.parameters()] == [p.shape for p in cgc.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(mmoe.parameters(), cgc.parameters()))
    # Any weights: a differently seeded MMoE's, copied (experts.* are levels.0.*), give MMoE's outputs and gates.
    torch.manual_seed(4)
    other = MMoE(MIXED, 2, num_experts=5, expert_units=(6, 4))
    state = {key.replace("experts.", "levels.0.", 1): value for key, value in other.state_dict().items()}
    cgc.load_state_dict(state)  # strict: the same keys
    torch.testing.assert_close(cgc(numeric, categorical), other(numeric, categorical), rtol=0, atol=0)
    torch.testing.assert_close(cgc.gates(numeric, categorical), other.gates(numeric, categorical), rtol=0, atol=0)
    assert not torch.allclose(cgc(numeric, categorical), mmoe(numeric, categorical))


def _perturb_task_experts(model: LayeredExtraction, task: int, level: int) -> None:
    """Adds noise to every weight of task `task`'s own experts at `level` (and to nothing else)."""
    S = model.specific_experts
    own = slice(task * S, (task + 1) * S)
    block = model.levels[level]
    with torch.no_grad():
        if level == 0:
            units = block.first_units
            columns = slice(task * S * units, (task + 1) * S * units)
            for weight in (block.input_layer.numeric_weight, block.input_layer.category_weight):
                weight[:, columns] += torch.randn_like(weight[:, columns])
            block.expert_bias[own] += 1.0
            layers = list(block.deeper.hidden)
        else:
            layers = list(block.experts.hidden)
        for layer in layers:
            layer.weight[own] += torch.randn_like(layer.weight[own])
            layer.bias[own] += 1.0


@pytest.mark.parametrize("name, levels", [("cgc", 1), ("ple", 2), ("ple", 3)])
def test_without_shared_experts_each_task_sees_only_its_own(name: str, levels: int) -> None:
    torch.manual_seed(0)
    options = {"levels": levels} if name == "ple" else {}
    model = build_model(name, MIXED, 3, specific_experts=2, shared_experts=0, **options)
    numeric, categorical = inputs()
    before = model(numeric, categorical).detach()
    for level in range(levels):
        _perturb_task_experts(model, task=1, level=level)
    after = model(numeric, categorical).detach()
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]], rtol=0, atol=0)
    assert (after[:, 1] - before[:, 1]).abs().min() > 0
    assert all(gates.shared_gate is None for gates in model.level_outputs(numeric, categorical))


def test_a_tasks_own_experts_reach_another_task_only_through_the_shared_gate() -> None:
    numeric, categorical = inputs()
    # CGC: task 0's gate chooses among its own and the shared experts; task 1's are not among them.
    torch.manual_seed(0)
    cgc = build_model("cgc", MIXED, 2, specific_experts=2, shared_experts=2)
    before = cgc(numeric, categorical).detach()
    _perturb_task_experts(cgc, task=1, level=0)
    torch.testing.assert_close(cgc(numeric, categorical)[:, 0], before[:, 0], rtol=0, atol=0)
    # PLE: level 1's shared gate mixes all experts, task 1's included, into the shared experts' input
    # of level 2, which task 0's gate chooses from; level 2's task-1 experts still do not reach task 0.
    torch.manual_seed(0)
    ple = build_model("ple", MIXED, 2, specific_experts=2, shared_experts=2, levels=2)
    before = ple(numeric, categorical).detach()
    _perturb_task_experts(ple, task=1, level=1)
    torch.testing.assert_close(ple(numeric, categorical)[:, 0], before[:, 0], rtol=0, atol=0)
    _perturb_task_experts(ple, task=1, level=0)
    assert (ple(numeric, categorical)[:, 0] - before[:, 0]).abs().min() > 0


@pytest.mark.parametrize("levels", [2, 3])
def test_ple_has_a_shared_gate_at_every_level_but_the_last_and_it_feeds_the_next(levels: int) -> None:
    torch.manual_seed(0)
    model = build_model("ple", MIXED, 3, specific_experts=1, shared_experts=2, levels=levels)
    numeric, categorical = inputs()
    outputs = model.level_outputs(numeric, categorical)
    assert len(outputs) == levels
    for number, level in enumerate(outputs):
        if number < levels - 1:
            assert level.shared_gate is not None and level.shared_gate.shape == (9, 5)
            assert level.shared is not None and level.shared.shape == (9, 16)
        else:
            assert level.shared_gate is None and level.shared is None
    # Every shared gate's weights change the output (the first level's are the input layer's last E
    # columns). Random changes: adding one constant to all of a gate's logits would not change it.
    before = model(numeric, categorical).detach()
    with torch.no_grad():
        shared_columns = model.levels[0].input_layer.numeric_weight[:, -5:]
        shared_columns += torch.randn_like(shared_columns)
    middle = model(numeric, categorical).detach()
    assert (middle - before).abs().max() > 1e-4
    if levels == 3:
        with torch.no_grad():
            model.levels[1].shared_gate += torch.randn_like(model.levels[1].shared_gate)
        assert (model(numeric, categorical) - middle).abs().max() > 1e-4
    assert model.levels[-1].shared_gate is None
    model(numeric, categorical).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name, options", CONFIGS)
def test_gates_sum_to_one_over_the_experts_they_may_choose_and_are_zero_elsewhere(name: str, options: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, MIXED, 3, **options)
    K, S, H = 3, model.specific_experts, model.shared_experts
    E = K * S + H
    numeric, categorical = inputs(rows=11)
    for level in model.level_outputs(numeric, categorical):
        assert level.task_gates.shape == (11, K, S + H) and (level.task_gates >= 0).all()
        torch.testing.assert_close(level.task_gates.sum(-1), torch.ones(11, K))
        if level.shared_gate is not None:
            assert level.shared_gate.shape == (11, E) and (level.shared_gate >= 0).all()
            torch.testing.assert_close(level.shared_gate.sum(-1), torch.ones(11))
    gates = model.gates(numeric, categorical)
    assert gates.shape == (11, K, E) and (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(11, K))
    last = model.level_outputs(numeric, categorical)[-1].task_gates
    for k in range(K):
        chosen = [k * S + s for s in range(S)] + [K * S + h for h in range(H)]
        others = [i for i in range(E) if i not in chosen]
        torch.testing.assert_close(gates[:, k, chosen], last[:, k])
        assert (gates[:, k, others] == 0).all()


def expected_parameters(
    spec: InputSpec, K: int, S: int, H: int, L: int, units: tuple, towers: tuple, dselect_k: int | None = None
) -> int:
    """The parameter count from the module docstring's layout."""
    E = K * S + H

    def gate(choices: int) -> int:  # one gate's logits
        return choices if dselect_k is None else dselect_k * max(1, math.ceil(math.log2(choices))) + dselect_k

    def mlp(groups: int, width: int, widths: tuple) -> int:
        total = 0
        for out in widths:
            total += groups * (width * out + out)
            width = out
        return total

    inputs = spec.num_numeric + spec.embedding_width + spec.vocabulary_size
    first = E * units[0] + K * gate(S + H) + (gate(E) if H and L > 1 else 0)  # experts, task gates, shared gate
    count = inputs * first + E * units[0] + mlp(E, units[0], units[1:])
    for level in range(1, L):
        count += mlp(E, units[-1], units) + K * units[-1] * gate(S + H)
        count += units[-1] * gate(E) if H and level < L - 1 else 0
    if dselect_k is not None:  # each DSelect-k gate's bias
        count += L * K * gate(S + H) + (L - 1) * (gate(E) if H else 0)
    return count + mlp(K, units[-1], towers) + K * ((towers[-1] if towers else units[-1]) + 1)


@pytest.mark.parametrize("name, options", CONFIGS)
def test_parameter_count(name: str, options: dict) -> None:
    model = build_model(name, MIXED, 3, **options)
    hp = model.hyperparameters
    S, H, L = hp["specific_experts"], hp["shared_experts"], hp.get("levels", 1)
    dselect_k = hp["k"] if hp["gate"] == "dselect-k" else None
    count = expected_parameters(MIXED, 3, S, H, L, hp["expert_units"], hp["tower_units"], dselect_k)
    assert model.num_parameters() == count


def test_defaults_are_mmoes_size_with_two_tasks() -> None:
    assert build_model("ple", MIXED, 2).hyperparameters == {
        "specific_experts": 2,
        "shared_experts": 4,
        "levels": 2,
        "expert_units": (16,),
        "tower_units": (8,),
        "gate": "softmax",
        "k": 2,
        "gamma": 1.0,
        "entropy_weight": 0.01,
    }
    cgc, mmoe = build_model("cgc", MIXED, 2), build_model("mmoe", MIXED, 2)
    # 8 experts × 16 units; CGC's gates choose among 6 experts each instead of 8.
    assert cgc.num_parameters() == mmoe.num_parameters() - (MIXED.num_numeric + MIXED.vocabulary_size) * 2 * 2


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("cgc", {"specific_experts": 0, "shared_experts": 0}, "specific_experts \\+ shared_experts must be at least 1"),
        ("ple", {"specific_experts": -1}, "specific_experts must be a non-negative integer"),
        ("ple", {"shared_experts": 1.5}, "shared_experts must be a non-negative integer"),
        ("ple", {"levels": 0}, "levels must be a positive integer"),
        ("cgc", {"levels": 2}, "does not take levels"),
        ("ple", {"expert_units": (0,)}, "expert_units must be positive integers"),
        ("cgc", {"gate": "top-1"}, "gate must be one of softmax, dselect-k, got 'top-1'"),
        ("ple", {"gate": "dselect-k", "k": 0}, "k must be a positive integer"),
        ("cgc", {"gamma": -1.0}, "gamma must be a positive number"),
        ("ple", {"entropy_weight": float("nan")}, "entropy_weight must be a finite number, zero or more"),
    ],
)
def test_bad_options_are_one_line_errors(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        build_model(name, MIXED, 2, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("model_class", [PLE, CGC])
@pytest.mark.parametrize("max_units", [16, 2048])
def test_search_space_keeps_a_levels_experts_within_the_cap(model_class: type, max_units: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        drawn = model_class.search_space(study.ask(), max_units)
        experts = 2 * drawn["specific_experts"] + drawn["shared_experts"]  # one level, two tasks
        assert experts * drawn["expert_units"][0] <= max(max_units, experts)
        assert ("levels" in drawn) == (model_class is PLE)
        build_model(model_class.name, MIXED, 2, **drawn)


@pytest.mark.parametrize(
    "model, hyperparameters", [("ple", {}), ("cgc", {}), ("ple", {"gate": "dselect-k", "entropy_weight": 0.2})]
)
def test_each_replica_equals_its_run_alone(model: str, hyperparameters: dict, one_torch_thread: None) -> None:
    """Population training (vmap over stacked weights) trains each replica as it trains alone."""
    seeds, rates = [3, 5], [1e-2, 3e-3]
    options = {"epochs": 3, "batch_size": 64, "patience": 2}
    population = train_population(
        model, toy_data(), TrainConfig(**options), seeds=seeds, learning_rates=rates, **hyperparameters
    )
    for replica, state, seed, rate in zip(population.replicas, population.state_dicts, seeds, rates):
        alone = fit(toy_data(), model, TrainConfig(**options, seed=seed, learning_rate=rate), **hyperparameters)
        assert replica.best_epoch == alone.best_epoch
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)


def test_dselect_k_gates_settle_on_at_most_k_experts(one_torch_thread: None) -> None:
    """Every gate of every level (task and shared) is DSelect-k's: at first each gives every expert
    it may choose some weight; trained with its entropy term, each chooses at most k, exactly."""
    data = toy_data(rows=1000)
    options = {"specific_experts": 2, "shared_experts": 4, "levels": 2, "gate": "dselect-k", "k": 2}
    rows = data.validation
    fresh = build_model("ple", data.input_spec, 2, **options)
    first = fresh.level_outputs(rows.numeric, rows.categorical)[0]
    assert first.shared_gate is not None and ((first.shared_gate > 0).sum(-1) == 8).all()
    assert ((first.task_gates > 0).sum(-1) == 6).all()
    config = TrainConfig(epochs=12, patience=0, batch_size=64, learning_rate=1e-2, seed=0, restore_best=False)
    result = fit(data, "ple", config, **options, entropy_weight=0.3)
    with torch.no_grad():
        levels = result.model.level_outputs(rows.numeric, rows.categorical)
    for level in levels:
        for gates in (level.task_gates, level.shared_gate):
            if gates is not None:
                assert ((gates > 0).sum(-1) <= 2).all()
                torch.testing.assert_close(gates.sum(-1), torch.ones(gates.shape[:-1]))
    assert result.metrics["test"]["clicked"]["auc"] > 0.95


def test_the_entropy_term_covers_every_dselect_k_gate_and_softmax_gates_have_none() -> None:
    numeric, categorical = inputs()
    softmax = build_model("ple", MIXED, 2, levels=2)
    assert not softmax.has_auxiliary_loss and softmax.forward_with_aux(numeric, categorical, [])[1] is None
    # 4 shared experts, no specific ones: every gate chooses among 4 (2 bits, no folded codes). With
    # all weights 0 every smooth step is 1/2, so each selector is uniform over 4 experts: entropy
    # log 4. Selectors: k = 2 per gate; gates: 2 task gates per level + a shared gate at levels 1, 2.
    model = build_model("ple", MIXED, 2, specific_experts=0, shared_experts=4, levels=3, gate="dselect-k", k=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    outputs, auxiliary = model.forward_with_aux(numeric, categorical, [])
    torch.testing.assert_close(outputs, model(numeric, categorical))
    selectors = 2 * (2 + 1 + 2 + 1 + 2)
    assert model.has_auxiliary_loss
    assert float(auxiliary.detach()) == pytest.approx(0.01 * len(numeric) * selectors * math.log(4), rel=1e-5)


GATE = "gate=softmax, k=2, gamma=1.0, entropy_weight=0.01"


def test_listed_and_trained_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, one_torch_thread: None) -> None:
    assert main(["models", "-v"]) == 0
    listing = capsys.readouterr().out.splitlines()
    for name, defaults in (
        ("ple", "specific_experts=2, shared_experts=4, levels=2, expert_units=(16,), tower_units=(8,), " + GATE),
        ("cgc", "specific_experts=2, shared_experts=4, expert_units=(16,), tower_units=(8,), " + GATE),
    ):
        at = next(i for i, line in enumerate(listing) if line.startswith(f"{name} "))
        assert "Tang et al., 2020" in listing[at]
        assert listing[at + 1].split() == ["defaults:", *defaults.split()]

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
    arguments = ["train", "--model", "ple", "--data", table, "--tasks", "clicked:binary,spent:regression"]
    arguments += ["--specific-experts", "1", "--shared-experts", "3", "--levels", "3", "--expert-units", "8,4"]
    arguments += ["--epochs", "8", "--batch-size", "32", "--lr", "0.01", "--out", run, "--quiet"]
    code = main([str(a) for a in arguments])
    assert code == 0, capsys.readouterr().err
    saved = torch.load(run / "model.pt", weights_only=False)
    assert saved["model"] == "ple"
    assert saved["hyperparameters"] == {
        "specific_experts": 1,
        "shared_experts": 3,
        "levels": 3,
        "expert_units": (8, 4),
        "tower_units": (8,),
        "gate": "softmax",
        "k": 2,
        "gamma": 1.0,
        "entropy_weight": 0.01,
    }
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["clicked"]["auc"] > 0.7


def test_the_estimator_trains_cgc_and_returns_its_gates(one_torch_thread: None) -> None:
    from mmoe import MultiTaskEstimator

    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    frame = pd.DataFrame({"x": x, "y": rng.normal(size=300), "a": (x > 0).astype(int), "b": (x < 0.5).astype(int)})
    estimator = MultiTaskEstimator(
        model="cgc", tasks={"a": "binary", "b": "binary"}, specific_experts=1, shared_experts=2, epochs=2, seed=0
    ).fit(frame)
    gates = estimator.gates(frame.drop(columns=["a", "b"]))
    assert list(gates) == ["a", "b"]
    for k, task in enumerate(["a", "b"]):
        assert list(gates[task].columns) == ["expert_0", "expert_1", "expert_2", "expert_3"]
        np.testing.assert_allclose(gates[task].sum(axis=1), 1.0, rtol=1e-5)
        assert (gates[task][f"expert_{1 - k}"] == 0).all()  # the other task's own expert
    assert estimator.predict(frame).shape[0] == 300


# Two ranks, interrupted and resumed, train what one process trains: tests/test_distributed_models.py.
