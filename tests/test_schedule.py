"""The learning-rate schedule (warm-up, cosine / linear decay) and AdamW's decoupled weight decay."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mmoe.cli import main
from mmoe.config_file import read_train_config
from mmoe.errors import MmoeError
from mmoe.runs import fit
from mmoe.train.callbacks import Callback
from mmoe.train.population import train_population
from mmoe.train.schedule import LearningRateSchedule, learning_rate_factor, make_dense_optimizer
from mmoe.train.trainer import TrainConfig
from tests.conftest import toy_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")
OPTIONS: dict[str, Any] = {"epochs": 4, "batch_size": 64, "patience": 0}


def test_factor_warms_up_then_decays() -> None:
    # 10 steps, 2 of warm-up: 1/2, 2/2, then the decay over the 8 others.
    assert [learning_rate_factor(s, 10, 2, "constant") for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert learning_rate_factor(2, 10, 2, "cosine") == 1.0
    assert learning_rate_factor(6, 10, 2, "cosine") == pytest.approx(0.5)  # halfway: cos(π/2)
    assert learning_rate_factor(10, 10, 2, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor(6, 10, 2, "linear") == pytest.approx(0.5)
    assert learning_rate_factor(50, 10, 2, "linear") == 0.0  # beyond the last step: the final rate
    schedule = LearningRateSchedule("cosine", 0.01, 0.5, epochs=3, steps_per_epoch=4)
    assert (schedule.total_steps, schedule.warmup_steps, schedule.first_step(2)) == (12, 2, 4)
    assert schedule.rate(0) == pytest.approx(0.005)
    assert not LearningRateSchedule("constant", 0.01, 0.0, 3, 4).active


def test_defaults_leave_config_dict_as_before() -> None:
    default = TrainConfig().to_dict()
    assert not {"lr_schedule", "warmup_epochs", "weight_decay_mode"} & set(default)
    chosen = TrainConfig(lr_schedule="cosine", warmup_epochs=0.5, weight_decay_mode="decoupled").to_dict()
    assert (chosen["lr_schedule"], chosen["warmup_epochs"], chosen["weight_decay_mode"]) == ("cosine", 0.5, "decoupled")
    for bad in ({"lr_schedule": "step"}, {"weight_decay_mode": "adamw"}, {"warmup_epochs": -1.0}):
        with pytest.raises(MmoeError, match=next(iter(bad))):
            TrainConfig(**bad)


def test_a_schedule_changes_training_and_constant_is_the_default() -> None:
    data = toy_data()
    default = fit(data, "mmoe", TrainConfig(**OPTIONS))
    constant = fit(data, "mmoe", TrainConfig(**OPTIONS, lr_schedule="constant", warmup_epochs=0.0))
    cosine = fit(data, "mmoe", TrainConfig(**OPTIONS, lr_schedule="cosine", warmup_epochs=1.0))
    for name, weight in default.model.state_dict().items():
        assert torch.equal(weight, constant.model.state_dict()[name]), name
    assert [e["train_loss"] for e in cosine.history] != [e["train_loss"] for e in default.history]


def test_the_rate_each_step_follows_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    original = LearningRateSchedule.apply

    def spy(self: LearningRateSchedule, step: int, optimizers: list) -> None:
        original(self, step, optimizers)
        seen.append(optimizers[0].param_groups[0]["lr"])

    monkeypatch.setattr(LearningRateSchedule, "apply", spy)
    data = toy_data()  # 420 training rows: 7 steps of 64 per epoch
    fit(data, "mmoe", TrainConfig(**OPTIONS, lr_schedule="linear", warmup_epochs=1.0, learning_rate=0.01))
    assert len(seen) == 28
    assert seen[:7] == pytest.approx([0.01 * (s + 1) / 7 for s in range(7)])
    assert seen[7] == pytest.approx(0.01) and seen[-1] == pytest.approx(0.01 * (1 - 20 / 21))


class _Stop(Exception):
    pass


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, entry: Any, replica: int | None = None) -> None:
        if entry.epoch == self.epoch:
            raise _Stop


def test_a_resumed_scheduled_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    data = toy_data()
    config = TrainConfig(**OPTIONS, lr_schedule="cosine", warmup_epochs=1.5, weight_decay=1e-3)
    full = fit(data, "mmoe", config)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(_Stop):
        fit(data, "mmoe", config, checkpoint_path=checkpoint, callbacks=[_StopAfter(2)])
    resumed = fit(data, "mmoe", config, checkpoint_path=checkpoint, resume_from=checkpoint)
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    for name, weight in full.model.state_dict().items():
        assert torch.equal(weight, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_population_replicas_equal_their_scheduled_runs_alone(mode: str) -> None:
    config = TrainConfig(**OPTIONS, lr_schedule="cosine", warmup_epochs=1.0, weight_decay=1e-2, weight_decay_mode=mode)
    population = train_population("mmoe", toy_data(), config, seeds=[0, 1])
    for replica, state, seed in zip(population.replicas, population.state_dicts, [0, 1]):
        alone = fit(toy_data(), "mmoe", TrainConfig(**{**config.__dict__, "seed": seed}))
        assert [e["train_loss"] for e in replica.history] == pytest.approx(
            [e["train_loss"] for e in alone.history], rel=1e-5
        )
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)


def test_decoupled_weight_decay_is_adamw() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = make_dense_optimizer([weight], 0.1, 0.5, "decoupled")
    assert isinstance(optimizer, torch.optim.AdamW)
    weight.grad = torch.zeros(3)
    optimizer.step()  # zero gradient: Adam's step is 0, the decay alone shrinks w by lr·λ·w
    torch.testing.assert_close(weight.detach(), torch.full((3,), 1 - 0.1 * 0.5))
    l2 = torch.nn.Parameter(torch.ones(3))
    adam = make_dense_optimizer([l2], 0.1, 0.5, "l2")
    l2.grad = torch.zeros(3)
    adam.step()  # L2: the gradient λ·w, normalised by Adam, moves w by lr
    torch.testing.assert_close(l2.detach(), torch.full((3,), 1 - 0.1), rtol=1e-5, atol=1e-6)
    data = toy_data()
    options = {**OPTIONS, "weight_decay": 0.05}
    decoupled = fit(data, "mmoe", TrainConfig(**options, weight_decay_mode="decoupled"))
    coupled = fit(data, "mmoe", TrainConfig(**options))
    assert decoupled.history[-1]["train_loss"] != coupled.history[-1]["train_loss"]
    assert math.isfinite(decoupled.history[-1]["train_loss"])


def test_cli_flags_reach_config_json_and_load_back(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "synthetic",
            "--rows",
            "600",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--lr-schedule",
            "cosine",
            "--warmup-epochs",
            "0.5",
            "--weight-decay-mode",
            "decoupled",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    training = json.loads((out / "config.json").read_text())["training"]
    assert (training["lr_schedule"], training["warmup_epochs"], training["weight_decay_mode"]) == (
        "cosine",
        0.5,
        "decoupled",
    )
    read = read_train_config(out / "config.json")["training"]
    assert (read["lr_schedule"], read["warmup_epochs"], read["weight_decay_mode"]) == ("cosine", 0.5, "decoupled")
