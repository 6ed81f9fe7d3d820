"""AITM: what is easy to get wrong (the direction of the transfer, the attention's normalisation,
the calibrator's sign and which task pairs it applies to), checked against a reference computed
task by task from the paper's formulas, and through every trainer (single, population, resumed,
distributed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import torch

from mmoe.cli import main
from mmoe.data.dataset import MultiTaskData, Split
from mmoe.errors import MmoeError
from mmoe.models import build_model
from mmoe.models.aitm import AITM, calibrator
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig, load_checkpoint
from tests.test_distributed_models import SEQUENCE_TASKS, sequence_frame

MIXED = InputSpec(("a", "b", "c"), ("colour", "size"), (4, 6))
BINARY3 = [Task("shown", "binary"), Task("clicked", "binary"), Task("bought", "binary")]


def inputs(rows: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, 3, generator=generator)
    categorical = torch.stack(
        [torch.randint(0, 4, (rows,), generator=generator), 4 + torch.randint(0, 6, (rows,), generator=generator)], 1
    )
    return numeric, categorical


def reference(model: AITM, numeric: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs [B, K], attention [B, K − 1, 2]) one task and one vector at a time, from the module
    docstring's formulas and parameter layout (tower t: columns t·U[0].. of the first layer;
    step t: W^Q | W^K | W^V side by side)."""
    K, units = model.num_tasks, model.hyperparameters["hidden_units"]
    first = model.input_layer(numeric, categorical)
    towers = []
    for t in range(K):
        hidden = torch.relu(first[:, t * units[0] : (t + 1) * units[0]])
        for layer in model.bottom.hidden:
            hidden = torch.relu(hidden @ layer.weight[t] + layer.bias[t])
        towers.append(hidden)
    d = units[-1]
    z, attention = [towers[0]], []
    for t in range(1, K):
        W = model.attention_weight[t - 1]
        W_q, W_k, W_v = W[:, :d], W[:, d : 2 * d], W[:, 2 * d :]
        p = torch.relu(z[-1] @ model.transfer_weight[t - 1] + model.transfer_bias[t - 1])
        q = towers[t]
        score_p = ((p @ W_q) * (p @ W_k)).sum(-1) / math.sqrt(d)
        score_q = ((q @ W_q) * (q @ W_k)).sum(-1) / math.sqrt(d)
        w_p = torch.exp(score_p) / (torch.exp(score_p) + torch.exp(score_q))
        w_q = 1 - w_p
        z.append(w_p.unsqueeze(-1) * (p @ W_v) + w_q.unsqueeze(-1) * (q @ W_v))
        attention.append(torch.stack([w_p, w_q], -1))
    outputs = []
    for t in range(K):
        hidden = z[t]
        for layer in model.towers.hidden:
            hidden = torch.relu(hidden @ layer.weight[t] + layer.bias[t])
        outputs.append((hidden @ model.towers.output.weight[t] + model.towers.output.bias[t]).squeeze(-1))
    return torch.stack(outputs, 1), torch.stack(attention, 1) if attention else torch.zeros(len(numeric), 0, 2)


@pytest.mark.parametrize(
    "num_tasks, options",
    [
        (2, {}),
        (3, {"hidden_units": (6, 5), "tower_units": (3,)}),
        (4, {"hidden_units": (7,), "tower_units": ()}),
        (1, {}),
    ],
)
def test_batched_model_equals_the_task_by_task_reference(num_tasks: int, options: dict) -> None:
    torch.manual_seed(0)
    model = build_model("aitm", MIXED, num_tasks, **options)
    assert isinstance(model, AITM)
    numeric, categorical = inputs()
    outputs, attention = reference(model, numeric, categorical)
    torch.testing.assert_close(model(numeric, categorical), outputs)
    torch.testing.assert_close(model.attention(numeric, categorical), attention)


def test_attention_weights_sum_to_one_over_the_transferred_and_the_own_vector() -> None:
    torch.manual_seed(1)
    model = build_model("aitm", MIXED, 4, hidden_units=(16,))
    assert isinstance(model, AITM)
    numeric, categorical = inputs(rows=13)
    with torch.no_grad():  # larger scores than a fresh model's, so the softmax is far from 1/2
        model.attention_weight.mul_(4.0)
    attention = model.attention(numeric, categorical)
    assert attention.shape == (13, 3, 2) and (attention > 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(13, 3))
    assert (attention - 0.5).abs().max() > 0.1


def _perturb(parameter: torch.Tensor, index: int | slice) -> None:
    with torch.no_grad():
        parameter[index] += torch.randn_like(parameter[index])


def test_information_flows_from_each_task_to_the_next_only() -> None:
    torch.manual_seed(0)
    model = build_model("aitm", MIXED, 3, hidden_units=(8,))
    assert isinstance(model, AITM)
    numeric, categorical = inputs()
    before = model(numeric, categorical).detach()
    # Task 2's tower (its first-layer columns) and step 3's transfer reach task 2 only.
    _perturb(model.input_layer.numeric_weight, (slice(None), slice(16, 24)))
    _perturb(model.transfer_weight, 1)
    after = model(numeric, categorical).detach()
    torch.testing.assert_close(after[:, :2], before[:, :2], rtol=0, atol=0)
    assert (after[:, 2] - before[:, 2]).abs().min() > 0
    # Task 0's tower reaches every later task through the transfers.
    _perturb(model.input_layer.numeric_weight, (slice(None), slice(0, 8)))
    assert ((model(numeric, categorical) - after).abs().max(0).values > 0).all()


def test_with_one_task_it_is_single_task() -> None:
    torch.manual_seed(2)
    aitm = build_model("aitm", MIXED, 1, hidden_units=(6, 5), tower_units=(3,))
    torch.manual_seed(2)
    single = build_model("single-task", MIXED, 1, hidden_units=(6, 5), tower_units=(3,))
    numeric, categorical = inputs()
    torch.testing.assert_close(aitm(numeric, categorical), single(numeric, categorical), rtol=0, atol=0)
    _, auxiliary = aitm.forward_with_aux(numeric, categorical, BINARY3[:1])
    assert auxiliary == 0


def test_calibrator_by_hand() -> None:
    # σ(0) = .5, σ(1) = .7310586, σ(5) = .9933071, σ(2) = .8807971, σ(−1) = .2689414
    logits = torch.tensor([[0.0, 1.0, 5.0], [2.0, -1.0, 0.0]], requires_grad=True)
    # Only the binary pair (0, 1): row 0 has .7310586 − .5 above; row 1 is below (0).
    two = calibrator(logits, [Task("a", "binary"), Task("b", "binary"), Task("c", "regression", 1.0, 2.0)])
    assert float(two.detach()) == pytest.approx(0.2310586, abs=1e-6)
    # All three binary: + (.9933071 − .7310586) in row 0 and (.5 − .2689414) in row 1.
    three = calibrator(logits, BINARY3)
    assert float(three.detach()) == pytest.approx(0.2310586 + 0.2622485 + 0.2310586, abs=1e-6)
    # Its gradient lowers the later task and raises the earlier one where the order is broken.
    two.backward()
    assert logits.grad is not None
    assert logits.grad[0, 1] > 0 and logits.grad[0, 0] < 0 and (logits.grad[1] == 0).all()
    assert (logits.grad[:, 2] == 0).all()
    # A regression task between two binary ones breaks the sequence: no pair.
    assert calibrator(logits, [BINARY3[0], Task("c", "regression"), BINARY3[2]]) == 0
    # Every later probability at or below the one before: exactly 0.
    ordered = torch.tensor([[3.0, 1.0, 1.0], [0.0, -2.0, -2.5]])
    assert calibrator(ordered, BINARY3) == 0


def test_forward_with_aux_weighs_the_calibrator() -> None:
    torch.manual_seed(0)
    numeric, categorical = inputs()
    model = build_model("aitm", MIXED, 3, calibrator_weight=0.25)
    outputs, auxiliary = model.forward_with_aux(numeric, categorical, BINARY3)
    torch.testing.assert_close(outputs, model(numeric, categorical), rtol=0, atol=0)
    assert float(auxiliary.detach()) == pytest.approx(0.25 * float(calibrator(outputs, BINARY3).detach()), rel=1e-6)
    assert auxiliary > 0  # a fresh model breaks the order on some rows
    off = build_model("aitm", MIXED, 3, calibrator_weight=0.0)
    assert off.forward_with_aux(numeric, categorical, BINARY3)[1] == 0
    with pytest.raises(MmoeError, match="2 tasks given for a model of 3"):
        model.forward_with_aux(numeric, categorical, BINARY3[:2])


def funnel_data(rows: int = 1200, seed: int = 0) -> MultiTaskData:
    """A click, and a purchase that only follows a click."""
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, 3, generator=generator)
    categorical = torch.randint(0, 5, (rows, 1), generator=generator)
    clicked = (numeric[:, 0] + 0.5 * torch.randn(rows, generator=generator) > 0).float()
    bought = clicked * (numeric[:, 1] + 0.5 * torch.randn(rows, generator=generator) > 0.3).float()
    split = Split(numeric, categorical, torch.stack([clicked, bought], 1))
    cut1, cut2 = int(rows * 0.7), int(rows * 0.85)
    return MultiTaskData(
        [Task("clicked", "binary"), Task("bought", "binary")],
        InputSpec(("a", "b", "c"), ("colour",), (5,)),
        split.subset(torch.arange(cut1)),
        split.subset(torch.arange(cut1, cut2)),
        split.subset(torch.arange(cut2, rows)),
    )


def test_the_calibrator_keeps_the_purchase_below_the_click(one_torch_thread: None) -> None:
    data = funnel_data()
    config = TrainConfig(epochs=4, patience=0, batch_size=64, learning_rate=1e-2, seed=0, restore_best=False)
    violations = []
    for weight in (0.0, 0.6):  # none, and the paper's
        model = fit(data, "aitm", config, calibrator_weight=weight).model
        with torch.no_grad():
            outputs = model(data.test.numeric, data.test.categorical)
        violations.append(float(calibrator(outputs, data.tasks)) / len(data.test))
    assert violations[0] > 0 and violations[1] < violations[0] / 4


def test_each_replica_equals_its_run_alone(one_torch_thread: None) -> None:
    """Population training (vmap) adds each replica's calibrator as its run alone does."""
    seeds, rates = [3, 5], [1e-2, 3e-3]
    options = {"epochs": 3, "batch_size": 64, "patience": 2}
    population = train_population(
        "aitm", funnel_data(600), TrainConfig(**options), seeds=seeds, learning_rates=rates, calibrator_weight=2.0
    )
    for replica, state, seed, rate in zip(population.replicas, population.state_dicts, seeds, rates):
        config = TrainConfig(**options, seed=seed, learning_rate=rate)
        alone = fit(funnel_data(600), "aitm", config, calibrator_weight=2.0)
        assert replica.best_epoch == alone.best_epoch
        assert [h["train_loss"] for h in replica.history] == pytest.approx(
            [h["train_loss"] for h in alone.history], rel=1e-5
        )
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)


def test_resume_equals_uninterrupted(tmp_path: Path, one_torch_thread: None) -> None:
    options = {"patience": 0, "batch_size": 64, "seed": 3}
    full = fit(funnel_data(600), "aitm", TrainConfig(epochs=4, **options), hidden_units=(8, 4))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(funnel_data(600), "aitm", TrainConfig(epochs=2, **options), checkpoint_path=checkpoint, hidden_units=(8, 4))
    assert load_checkpoint(checkpoint)["epoch"] == 2
    resumed = fit(
        funnel_data(600),
        "aitm",
        TrainConfig(epochs=4, **options),
        checkpoint_path=checkpoint,
        resume_from=checkpoint,
        hidden_units=(8, 4),
    )
    assert resumed.metrics == full.metrics
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"calibrator_weight": -1.0}, "calibrator_weight must be a finite number, zero or more"),
        ({"calibrator_weight": math.inf}, "calibrator_weight must be a finite number, zero or more"),
        ({"hidden_units": ()}, "hidden_units must be positive integers"),
        ({"tower_units": (0,)}, "tower_units must be positive integers"),
        ({"num_experts": 4}, "does not take num_experts"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        build_model("aitm", MIXED, 2, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("max_units", [16, 2048])
def test_search_space_keeps_the_towers_within_the_cap(max_units: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        drawn = AITM.search_space(study.ask(), max_units)
        assert 8 <= drawn["hidden_units"][0] <= max(8, max_units)
        assert 0.1 <= drawn["calibrator_weight"] <= 1.0
        build_model("aitm", MIXED, 2, **drawn)


def test_listed_and_trained_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture, one_torch_thread: None) -> None:
    assert main(["models", "-v"]) == 0
    listing = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(listing) if line.startswith("aitm "))
    assert "Xi et al., 2021" in listing[at]
    assert listing[at + 1].split() == ["defaults:", "hidden_units=(64,),", "tower_units=(8,),", "calibrator_weight=0.6"]
    table = sequence_table(tmp_path, rows=500)
    run = tmp_path / "run"
    arguments = ["train", "--model", "aitm", "--data", table, "--tasks", SEQUENCE_TASKS]
    arguments += ["--hidden-units", "16,8", "--calibrator-weight", "1.5"]
    arguments += ["--epochs", "6", "--batch-size", "32", "--lr", "0.01", "--out", run, "--quiet"]
    code = main([str(a) for a in arguments])
    assert code == 0, capsys.readouterr().err
    saved = torch.load(run / "model.pt", weights_only=False)
    assert saved["model"] == "aitm"
    assert saved["hyperparameters"] == {"hidden_units": (16, 8), "tower_units": (8,), "calibrator_weight": 1.5}
    assert json.loads((run / "metrics.json").read_text())["test"]["clicked"]["auc"] > 0.7


def sequence_table(directory: Path, rows: int = 2489) -> Path:
    """`sequence_frame(rows)` (a click, a purchase that only follows it, a watch time missing on
    30% of the rows) as a CSV file in `directory`."""
    path = directory / "sequence.csv"
    sequence_frame(rows).to_csv(path, index=False)
    return path


# Two ranks, interrupted and resumed, train what one process trains (the calibrator, a per-row mean
# over the global batch, with uneven and empty shares): tests/test_distributed_models.py.
