"""Loss weighting: the object that turns per-task losses into one update (mmoe.train.weighting)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from mmoe.errors import MmoeError
from mmoe.models import build_model
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.loss import MultiTaskLoss
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig, load_checkpoint, options_identity
from mmoe.train.weighting import (
    WEIGHTINGS,
    LossWeighting,
    describe_weightings,
    make_weighting,
)
from tests.conftest import toy_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = [Task("clicked", "binary"), Task("watch", "regression", 10.0, 3.0)]


def _batch(rows: int = 9, second_labelled: bool = True) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A model, its outputs on a batch and the batch's labels (the second task's all missing when
    `second_labelled` is False)."""
    torch.manual_seed(0)
    model = build_model("shared-bottom", InputSpec(("a", "b"), ("colour",), (4,)), 2, hidden_units=(8,))
    labels = torch.stack([torch.randint(0, 2, (rows,)).float(), 10 + 3 * torch.randn(rows)], 1)
    if not second_labelled:
        labels[:, 1] = math.nan
    return model, model(torch.randn(rows, 2), torch.randint(0, 4, (rows, 1))), labels


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("name", "task_weights", "weights"), [("ew", None, (1.0, 1.0)), ("fixed", (1.0, 0.5), (1.0, 0.5))]
)
def test_loss_and_gradient_are_the_weighted_sum(name: str, task_weights: Any, weights: tuple[float, ...]) -> None:
    # What the loop backpropagated before weightings were objects: Σ_k w_k · loss_k (+ penalty), bit for bit.
    model, outputs, labels = _batch()
    per_task, labelled = MultiTaskLoss(TASKS)(outputs, labels)
    penalty = sum(p.square().sum() for p in model.parameters()) * 1e-3
    expected = (per_task * torch.tensor(weights)).sum(-1) + penalty
    expected.backward(retain_graph=True)
    wanted = _gradients(model)
    model.zero_grad(set_to_none=True)
    got = make_weighting(name, 2, task_weights).backward(per_task, labelled, list(model.parameters()), penalty)
    assert torch.equal(got, expected.detach())
    assert not got.requires_grad
    for key, gradient in _gradients(model).items():
        assert torch.equal(gradient, wanted[key]), key


def test_a_task_without_labels_in_the_batch_contributes_nothing() -> None:
    for weighting, first_weight in ((make_weighting("ew", 2), 1.0), (make_weighting("fixed", 2, (0.3, 5.0)), 0.3)):
        model, outputs, labels = _batch(second_labelled=False)
        per_task, labelled = MultiTaskLoss(TASKS)(outputs, labels)
        assert labelled.tolist() == [True, False] and per_task[1].item() == 0.0
        (first_weight * per_task[0]).backward(retain_graph=True)  # as if the task did not exist
        first_only = _gradients(model)
        model.zero_grad(set_to_none=True)
        loss = weighting.backward(per_task, labelled, list(model.parameters()))
        assert loss.item() == pytest.approx(first_weight * per_task[0].item(), rel=1e-6)
        for key, gradient in _gradients(model).items():
            torch.testing.assert_close(gradient, first_only[key], rtol=1e-6, atol=0)


def test_population_losses_stay_per_replica() -> None:
    # [N, K] -> [N]: replica r's loss is its own row's weighted sum.
    per_task = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.5, 0.0]])
    labelled = torch.ones(3, 2, dtype=torch.bool)
    assert make_weighting("fixed", 2, (1.0, 0.5)).combine(per_task, labelled).tolist() == [2.0, 5.0, 0.5]
    assert make_weighting("ew", 2).combine(per_task, labelled).tolist() == [3.0, 7.0, 0.5]


def test_training_backpropagates_the_weighted_task_losses() -> None:
    # No penalty: each epoch's train_loss is Σ_k w_k · train_task_loss_k (up to the order of sums).
    for config, weights in (
        (TrainConfig(epochs=2, batch_size=64), (1.0, 1.0)),
        (TrainConfig(epochs=2, batch_size=64, task_weights=(1.0, 0.5)), (1.0, 0.5)),
    ):
        result = fit(toy_data(missing_second=0.3), "mmoe", config)
        for entry in result.history:
            task_losses = list(entry["train_task_loss"].values())
            assert entry["train_loss"] == pytest.approx(sum(w * v for w, v in zip(weights, task_losses)), rel=1e-6)


def test_task_weights_select_fixed_and_the_name_says_the_same() -> None:
    implicit = TrainConfig(epochs=2, batch_size=64, task_weights=(1.0, 0.5))
    explicit = TrainConfig(epochs=2, batch_size=64, task_weights=(1.0, 0.5), weighting="fixed")
    assert implicit.weighting == explicit.weighting == "fixed"
    first, second = fit(toy_data(), "mmoe", implicit), fit(toy_data(), "mmoe", explicit)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    equal = fit(toy_data(), "mmoe", TrainConfig(epochs=2, batch_size=64))
    assert equal.history[-1]["train_loss"] != first.history[-1]["train_loss"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"weighting": "fixed"}, "weighting 'fixed' needs task_weights"),
        ({"weighting": "nonsense"}, "weighting 'nonsense' is unknown; expected one of: ew, fixed, uw"),
        ({"weighting": "fixed", "task_weights": (1.0, -1.0)}, "task_weights must be non-negative"),
    ],
)
def test_nonsense_weighting_is_a_one_line_error(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MmoeError, match=fragment) as error:
        TrainConfig(**options)
    assert "\n" not in str(error.value)


def test_configs_and_checkpoints_without_the_option_mean_what_they_meant() -> None:
    # A config.json or checkpoint identity of the release before `weighting` has no such key.
    assert "weighting" not in TrainConfig().to_dict()
    assert TrainConfig(**TrainConfig().to_dict()).weighting == "ew"
    weighted = TrainConfig(task_weights=(1.0, 2.0)).to_dict()
    assert "weighting" not in weighted and TrainConfig(**weighted).weighting == "fixed"
    assert "weighting" not in options_identity("mmoe", {}, TrainConfig())["training"]
    assert describe_weightings().splitlines()[0].startswith("ew ")
    assert all(cls.__doc__ and cls.__doc__.strip() for cls in WEIGHTINGS.values())


class StepDecay(LossWeighting):
    """decay: (test only) the later tasks weigh 1 / (1 + steps / 10), steps counted over training."""

    def __init__(self, num_tasks: int, task_weights: Any = None) -> None:
        super().__init__(num_tasks)
        self.steps = 0

    def combine(self, task_losses: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        weights = torch.ones(task_losses.shape[-1])
        weights[1:] = 1 / (1 + self.steps / 10)
        return (task_losses * weights).sum(-1)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": torch.tensor(self.steps)}

    def load_state_dict(self, state: Any) -> None:
        self.steps = int(state["steps"])


@pytest.fixture()
def step_decay(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(WEIGHTINGS, "decay", StepDecay)
    return "decay"


def test_a_weighting_state_resumes_as_the_uninterrupted_run(tmp_path: Path, step_decay: str) -> None:
    options = {"patience": 0, "batch_size": 64, "seed": 3, "weighting": step_decay}
    full = fit(toy_data(), "mmoe", TrainConfig(epochs=4, **options))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(toy_data(), "mmoe", TrainConfig(epochs=2, **options), checkpoint_path=checkpoint)
    saved = load_checkpoint(checkpoint)  # weights_only=True: the state is plain tensors and containers
    assert int(saved["weighting"]["steps"]) == 2 * 7 and saved["identity"]["training"]["weighting"] == step_decay
    resumed = fit(toy_data(), "mmoe", TrainConfig(epochs=4, **options), resume_from=checkpoint)
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # The state matters: restarted from zero steps, the same epochs train other weights.
    saved["weighting"] = {"steps": torch.tensor(0)}
    forgetful = fit(toy_data(), "mmoe", TrainConfig(epochs=4, **options), resume_from=checkpoint, resume_state=saved)
    assert forgetful.history[-1]["train_loss"] != full.history[-1]["train_loss"]
    # A checkpoint of another weighting is another run.
    with pytest.raises(MmoeError, match=r"training.weighting: 'decay' in the checkpoint, None now"):
        fit(toy_data(), "mmoe", TrainConfig(epochs=4, patience=0, batch_size=64, seed=3), resume_from=checkpoint)


def test_a_checkpoint_without_weighting_state_resumes(tmp_path: Path) -> None:
    # Checkpoints of the release before weightings have no "weighting" key.
    options = {"patience": 0, "batch_size": 64, "seed": 2, "task_weights": (1.0, 0.5)}
    full = fit(toy_data(), "omoe", TrainConfig(epochs=3, **options))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(toy_data(), "omoe", TrainConfig(epochs=1, **options), checkpoint_path=checkpoint)
    saved = load_checkpoint(checkpoint)
    del saved["weighting"]
    torch.save(saved, checkpoint)
    resumed = fit(toy_data(), "omoe", TrainConfig(epochs=3, **options), resume_from=checkpoint)
    assert resumed.metrics == full.metrics


def test_population_with_fixed_weights_equals_each_run_alone() -> None:
    options = {"epochs": 3, "batch_size": 64, "patience": 1, "task_weights": (1.0, 0.5)}
    seeds = [1, 4]
    population = train_population("mmoe", toy_data(missing_second=0.3), TrainConfig(**options), seeds=seeds)
    for replica, state, seed in zip(population.replicas, population.state_dicts, seeds):
        alone = fit(toy_data(missing_second=0.3), "mmoe", TrainConfig(**options, seed=seed))
        assert replica.best_epoch == alone.best_epoch
        assert [e["train_loss"] for e in replica.history] == pytest.approx(
            [e["train_loss"] for e in alone.history], rel=1e-5
        )
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)


# -- methods' options, the CLI and the estimator ----------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"weighting": "dwa", "weighting_options": {"alpha": 1.5}}, "'alpha' is not an option of weighting 'dwa'"),
        ({"weighting": "pcgrad", "weighting_options": {"c": 0.5}}, "expected one of: none (it takes no option)"),
        ({"weighting": "cagrad", "weighting_options": {"c": math.inf}}, "c must be a finite number, got inf"),
        ({"weighting": "cagrad", "weighting_options": {"c": "big"}}, "c must be a finite number, got 'big'"),
    ],
)
def test_a_method_option_it_does_not_take_is_a_one_line_error(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MmoeError, match=re.escape(fragment)) as error:
        TrainConfig(**options)
    assert "\n" not in str(error.value)


def test_method_options_are_kept_only_when_given() -> None:
    plain = TrainConfig(weighting="gradnorm")
    assert plain.weighting_options is None and "weighting_options" not in plain.to_dict()
    tuned = TrainConfig(weighting="gradnorm", weighting_options={"alpha": 1})
    assert tuned.to_dict()["weighting_options"] == {"alpha": 1.0}
    assert TrainConfig(**tuned.to_dict()) == tuned
    assert options_identity("mmoe", {}, tuned)["training"]["weighting_options"] == {"alpha": 1.0}
    assert TrainConfig(weighting="gradnorm", weighting_options={}).weighting_options is None


def test_an_option_changes_the_training() -> None:
    base = {"epochs": 2, "batch_size": 64, "weighting": "cagrad"}
    default = fit(toy_data(), "mmoe", TrainConfig(**base))
    wider = fit(toy_data(), "mmoe", TrainConfig(**base, weighting_options={"c": 0.0}))
    assert default.history[-1]["train_loss"] != wider.history[-1]["train_loss"]


def test_mmoe_weightings_lists_every_method_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from mmoe.cli import main

    assert main(["weightings"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(WEIGHTINGS)
    assert all(len(line.split()) > 3 for line in lines)
    assert main(["weightings", "-v"]) == 0
    assert "alpha=1.5: " in capsys.readouterr().out


def test_the_cli_trains_with_a_weighting_and_its_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mmoe.cli import main

    out = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--rows", "600", "--epochs", "1", "--quiet", "--out", str(out)]
    assert main([*argv, "--weighting", "gradnorm", "--weighting-option", "alpha=0.5"]) == 0
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["weighting"] == "gradnorm" and training["weighting_options"] == {"alpha": 0.5}
    capsys.readouterr()
    assert main([*argv, "--weighting", "mgda", "--weighting-option", "alpha=2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--weighting-option: 'alpha' is not an option of weighting 'mgda'" in error[0], error
    with pytest.raises(SystemExit):
        main([*argv, "--weighting", "mgda", "--weighting-option", "alpha"])


def test_the_estimator_takes_a_weighting(tmp_path: Path) -> None:
    from mmoe import MultiTaskEstimator

    frame = toy_frame()
    estimator = MultiTaskEstimator(
        tasks={"clicked": "binary", "watch": "regression"},
        weighting="uw",
        epochs=2,
        batch_size=64,
        num_experts=3,
    ).fit(frame)
    assert estimator.training_.weighting == "uw" and estimator.get_params()["weighting"] == "uw"
    estimator.save(tmp_path / "run")
    loaded = MultiTaskEstimator.load(tmp_path / "run")
    assert loaded.weighting == "uw" and loaded.weighting_options is None
    tuned = MultiTaskEstimator(
        tasks={"clicked": "binary", "watch": "regression"},
        weighting="dwa",
        weighting_options={"temperature": 4},
        epochs=1,
        num_experts=3,
    ).fit(frame)
    assert tuned.training_.weighting_options == {"temperature": 4.0}


def toy_frame(rows: int = 300) -> Any:
    import pandas as pd

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 2, generator=generator)
    return pd.DataFrame(
        {
            "a": x[:, 0].numpy(),
            "b": x[:, 1].numpy(),
            "clicked": (x[:, 0] > 0).int().numpy(),
            "watch": (3 * x[:, 1] + 0.1 * torch.randn(rows, generator=generator)).numpy(),
        }
    )
