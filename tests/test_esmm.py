"""ESMM (`--model esmm`, Ma et al., SIGIR 2018): one tower per task over the shared input, trained
on the entire space by default; it trains on the click-log generator from the estimator and the
CLI, tunes, and trains data-parallel as one process does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.data.clicklog import ClickLogConfig, generate_clicklog
from mmoe.estimator import MultiTaskEstimator
from mmoe.models import MODELS, build_model
from mmoe.models.esmm import ESMM, PAPER_TOWER_UNITS
from mmoe.runs import fit
from mmoe.spec import InputSpec, Task
from mmoe.train.trainer import TrainConfig
from tests.test_conditional import SPEC, TASKS, tensor_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MIXED = InputSpec(("a", "b"), ("colour", "user"), (4, 50), (0, 6))  # one one-hot column, one embedded
FAST = ["--batch-size", "256", "--learning-rate", "0.01"]
LOG = ClickLogConfig(rows=6000, users=300, items=100, seed=0)


def test_esmm_is_registered_with_the_papers_towers(capsys: pytest.CaptureFixture) -> None:
    assert MODELS["esmm"] is ESMM
    assert main(["models"]) == 0
    assert "esmm" in capsys.readouterr().out
    model = build_model("esmm", MIXED, 3)
    assert model.hyperparameters == {"tower_units": PAPER_TOWER_UNITS} == {"tower_units": (360, 200, 80)}
    numeric, categorical = (
        torch.randn(5, 2),
        torch.stack([torch.randint(0, 4, (5,)), torch.randint(0, 50, (5,))], 1),
    )
    assert model(numeric, categorical).shape == (5, 3)


def test_each_tower_is_its_own_and_only_the_embeddings_are_shared() -> None:
    torch.manual_seed(0)
    model = build_model("esmm", MIXED, 2, tower_units=(8, 4))
    numeric, categorical = (
        torch.randn(6, 2),
        torch.stack([torch.randint(0, 4, (6,)), torch.randint(0, 50, (6,))], 1),
    )
    model(numeric, categorical)[:, 1].sum().backward()
    # Task 0's tower and its slice of the input layer get no gradient from task 1's output.
    for layer in model.towers.hidden:
        assert bool((layer.weight.grad[0] == 0).all()) and bool((layer.weight.grad[1] != 0).any())
    first = model.input_layer
    units = 8
    assert bool((first.numeric_weight.grad[:, :units] == 0).all())  # numbers and embeddings -> task 0's units
    assert bool((first.category_weight.grad[:, :units] == 0).all())  # one-hot slots -> task 0's units
    # The embedding table is shared: task 1's output reaches the rows it looked up.
    assert bool((first.embeddings.tables[0].grad.to_dense() != 0).any())


def test_esmm_trains_entire_space_by_default() -> None:
    data = tensor_data()
    options = {"epochs": 2, "batch_size": 64, "patience": 0}
    default = fit(data, "esmm", TrainConfig(**options), tower_units=(16, 8))
    on = fit(data, "esmm", TrainConfig(**options, entire_space=True), tower_units=(16, 8))
    off = fit(data, "esmm", TrainConfig(**options, entire_space=False), tower_units=(16, 8))
    assert [h["train_loss"] for h in default.history] == [h["train_loss"] for h in on.history]
    assert default.metrics == on.metrics
    assert [h["train_loss"] for h in off.history] != [h["train_loss"] for h in on.history]
    assert list(default.metrics["test"]) == ["click", "purchase", "click&purchase"]


@pytest.mark.parametrize("max_units", [16, 2048])
def test_search_space_stays_within_the_papers_towers(max_units: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        drawn = ESMM.search_space(study.ask(), max_units)
        units = drawn["tower_units"]
        assert 1 <= len(units) <= 3 and all(u >= 1 for u in units)
        assert units[0] <= max(8, min(max_units, 360)) and list(units) == sorted(units, reverse=True)
        assert all(u <= paper for u, paper in zip(units, PAPER_TOWER_UNITS))
        build_model("esmm", MIXED, 2, **drawn)


@pytest.fixture(scope="module")
def click_log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clicklog")
    train, test, info = generate_clicklog(LOG)
    train.to_parquet(root / "train.parquet", index=False)
    test.to_parquet(root / "test.parquet", index=False)
    return {"root": root, "train": root / "train.parquet", "test": root / "test.parquet"}


def test_esmm_learns_the_click_log_from_the_estimator(click_log: dict[str, Path]) -> None:
    train, test = pd.read_parquet(click_log["train"]), pd.read_parquet(click_log["test"])
    estimator = MultiTaskEstimator(
        "esmm",
        [Task("click", "binary"), Task("purchase", "binary", given="click")],
        categorical=["user_id", "item_id"],
        embed=["user_id", "item_id"],
        tower_units=(32, 16),
        epochs=4,
        batch_size=256,
        learning_rate=3e-3,
        test_fraction=None,
        seed=0,
    )
    estimator.fit(train)
    assert estimator.training_.entire_space is None and estimator.tasks_ == TASKS
    score = estimator.score(test)
    assert score["click"]["auc"] > 0.6 and score["click&purchase"]["auc"] > 0.6
    assert score["click&purchase"]["rows"] == len(test) and score["purchase"]["rows"] == int(test["click"].sum())
    predicted = estimator.predict(test)
    np.testing.assert_array_equal(
        predicted["click&purchase"].to_numpy(), (predicted["click"] * predicted["purchase"]).to_numpy(np.float32)
    )


def test_esmm_trains_from_the_cli_and_tunes(click_log: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    data = ["--data", str(click_log["train"]), "--test-data", str(click_log["test"]), "--tasks", SPEC]
    data += ["--categorical", "user_id,item_id", "--threads", "1", "--quiet"]
    out = click_log["root"] / "run"
    code = main(["train", *data, "--model", "esmm", "--tower-units", "16,8", "--epochs", "3", *FAST, "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert set(metrics) == {"click", "purchase", "click&purchase"} and metrics["click&purchase"]["auc"] > 0.5
    assert "entire_space" not in json.loads((out / "config.json").read_text())["training"]  # the model's default

    tuned = click_log["root"] / "tune"
    code = main(
        ["tune", *data, "--model", "esmm", "--entire-space", "--epochs", "1", "--trials", "2"]
        + ["--max-units", "16", "--out", str(tuned)]
    )
    assert code == 0, capsys.readouterr().err
    best = json.loads((tuned / "best.json").read_text())
    assert best["model"] == "esmm" and best["training"]["entire_space"] is True
    assert len(best["hyperparameters"]["tower_units"]) <= 3
    again = click_log["root"] / "again"
    assert main(["train", "--config", str(tuned / "best.json"), "--threads", "1", "--quiet", "--out", str(again)]) == 0
    assert json.loads((again / "config.json").read_text())["training"]["entire_space"] is True


# Two ranks, interrupted and resumed, train what one process trains (a conditional task trained
# entire-space): tests/test_distributed_models.py.
