"""The training loop: loss, determinism, early stopping, checkpoints."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

from mmoe.data.dataset import Task
from mmoe.errors import DeadTaskWarning, MmoeError, TrainingDiverged
from mmoe.runs import fit
from mmoe.train.loss import MultiTaskLoss
from mmoe.train.metrics import main_score, task_metrics
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from mmoe.train.weighting import make_weighting
from tests.conftest import toy_data


def test_loss_leaves_missing_labels_out_of_their_task_only() -> None:
    tasks = [Task("a", "binary"), Task("b", "regression", 1.0, 2.0)]
    loss = MultiTaskLoss(tasks)
    outputs = torch.tensor([[0.0, 0.0], [2.0, 1.0], [-1.0, 5.0]])
    labels = torch.tensor([[1.0, 1.0], [0.0, math.nan], [math.nan, 3.0]])
    per_task, labelled = loss(outputs, labels)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
    mse = ((torch.tensor([0.0, 5.0]) - torch.tensor([0.0, 1.0])) ** 2).mean()  # targets standardised
    torch.testing.assert_close(per_task, torch.stack([bce, mse]))
    assert labelled.tolist() == [True, True]
    torch.testing.assert_close(make_weighting("ew", 2).combine(per_task, labelled), bce + mse)
    weighted = make_weighting("fixed", 2, [1.0, 0.0]).combine(per_task, labelled)
    torch.testing.assert_close(weighted, bce)


def test_metrics_skip_missing_labels_and_report_none_for_one_class() -> None:
    import numpy as np

    binary = Task("a", "binary")
    metrics = task_metrics(binary, np.array([0.9, 0.2, 0.7, 0.5]), np.array([1.0, 0.0, np.nan, 0.0]))
    assert metrics["auc"] == 1.0 and metrics["rows"] == 3
    assert task_metrics(binary, np.array([0.9, 0.2]), np.array([1.0, 1.0]))["auc"] is None
    regression = task_metrics(Task("b", "regression"), np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert regression["mse"] == pytest.approx(1 / 3)
    assert main_score(Task("b", "regression"), regression) == pytest.approx(-1 / 3)


def test_training_lowers_the_loss_and_learns_both_tasks() -> None:
    result = fit(toy_data(), "mmoe", TrainConfig(epochs=15, batch_size=64, learning_rate=1e-2, patience=0))
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.metrics["test"]["clicked"]["auc"] > 0.9
    assert result.metrics["test"]["watch_time"]["r2"] > 0.8


@pytest.mark.parametrize("model", ["mmoe", "shared-bottom", "cross-stitch"])
def test_same_seed_same_numbers(model: str) -> None:
    config = TrainConfig(epochs=3, batch_size=64, seed=7)
    first, second = fit(toy_data(), model, config), fit(toy_data(), model, config)
    assert first.metrics == second.metrics
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    other = fit(toy_data(), model, TrainConfig(epochs=3, batch_size=64, seed=8))
    assert other.metrics != first.metrics


def test_early_stopping_restores_the_best_epoch() -> None:
    result = fit(toy_data(), "shared-bottom", TrainConfig(epochs=40, batch_size=32, learning_rate=0.05, patience=2))
    best = result.history[result.best_epoch - 1]
    assert best["improved"]
    assert result.metrics["validation"]["clicked"]["auc"] == pytest.approx(best["validation"]["clicked"]["auc"])
    if result.stopped_early:
        assert len(result.history) == result.best_epoch + 2


def test_rows_missing_one_label_still_train_the_other_task() -> None:
    result = fit(
        toy_data(missing_second=0.5), "mmoe", TrainConfig(epochs=10, batch_size=64, learning_rate=1e-2, patience=0)
    )
    assert result.metrics["train"]["watch_time"]["rows"] < result.metrics["train"]["clicked"]["rows"]
    assert result.metrics["test"]["watch_time"]["r2"] > 0.5


def test_checkpoint_is_written_and_loadable(tmp_path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    fit(toy_data(), "omoe", TrainConfig(epochs=2, batch_size=64), checkpoint_path=path)
    state = torch.load(path, weights_only=False)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"learning_rate": -1.0}, "learning_rate must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"task_weights": (1.0, -2.0)}, "task_weights must be non-negative"),
    ],
)
def test_bad_training_options(options: dict, fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment):
        TrainConfig(**options)


def test_task_weights_must_match_the_tasks() -> None:
    with pytest.raises(MmoeError, match="task_weights has 3 values for 2 tasks"):
        fit(toy_data(), "mmoe", TrainConfig(epochs=1, task_weights=(1.0, 1.0, 1.0)))


def test_divergence_is_its_own_error_type_naming_the_learning_rate() -> None:
    # Tuning prunes a diverged trial by this type instead of failing the worker.
    with pytest.raises(TrainingDiverged, match="lower the learning rate") as caught:
        fit(toy_data(), "shared-bottom", TrainConfig(learning_rate=1e30, epochs=3, seed=0))
    assert isinstance(caught.value, MmoeError)


def test_fused_adam_updates_equal_torchs_own_and_survive_a_state_reload() -> None:
    from mmoe.train.optim import FusedAdam

    torch.manual_seed(0)
    reference_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    model = copy.deepcopy(reference_model)
    reference = torch.optim.Adam(reference_model.parameters(), lr=1e-2, weight_decay=1e-3, fused=True)
    fast = FusedAdam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    inputs = torch.randn(5, 32, 6)
    for step, batch in enumerate(inputs):
        for network, optimizer in ((reference_model, reference), (model, fast)):
            optimizer.zero_grad(set_to_none=True)
            network(batch).square().mean().backward()
            optimizer.step()
        if step == 2:  # a reload replaces the state tensors the fast path holds
            fast.load_state_dict(copy.deepcopy(fast.state_dict()))
    for expected, actual in zip(reference_model.parameters(), model.parameters()):
        assert torch.equal(expected, actual)
    assert fast._state_lists is not None  # the direct path ran
    assert float(next(iter(fast.state.values()))["step"]) == 5


def _dead_first_tower(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model built from here on starts with task 0's tower silent on every row (its hidden
    units' biases far below any input), as a too-large step leaves it: no gradient reaches them."""
    from mmoe.models import layers

    built = layers.Towers.__init__

    def dead(self: layers.Towers, *args: object, **kwargs: object) -> None:
        built(self, *args, **kwargs)
        with torch.no_grad():
            self.hidden[0].bias[0] = -1e4

    monkeypatch.setattr(layers.Towers, "__init__", dead)


def test_a_task_whose_outputs_die_is_warned_of_once_per_run_and_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    config = TrainConfig(epochs=3, batch_size=64, patience=0)
    with warnings.catch_warnings(record=True) as healthy:
        warnings.simplefilter("always")
        fit(toy_data(), "mmoe", config)
    assert not [w for w in healthy if issubclass(w.category, DeadTaskWarning)]
    _dead_first_tower(monkeypatch)
    with pytest.warns(DeadTaskWarning) as caught:
        result = fit(toy_data(), "mmoe", config)
    dead = [str(w.message) for w in caught if issubclass(w.category, DeadTaskWarning)]
    assert len(dead) == 1 and "task 'clicked'" in dead[0] and "after epoch 1" in dead[0] and "0.001" in dead[0]
    assert result.metrics["test"]["clicked"]["auc"] == 0.5  # and watch_time, still learning, was not named
    with pytest.warns(DeadTaskWarning) as caught:  # the population loop, per replica
        train_population("mmoe", toy_data(), config, seeds=[0, 1], learning_rates=[1e-3, 1e-3])
    dead = sorted(str(w.message) for w in caught if issubclass(w.category, DeadTaskWarning))
    assert len(dead) == 2 and dead[0].startswith("replica 0: task 'clicked'") and dead[1].startswith("replica 1: ")
