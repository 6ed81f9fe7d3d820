"""`--replicas N --ensemble`: the replicas averaged into one model that predicts, saves, loads,
evaluates and exports as one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.errors import MmoeError
from mmoe.estimator import MultiTaskEstimator
from mmoe.export import encode_inputs, load_signature
from mmoe.models import build_model
from mmoe.models.ensemble import EnsembleModel
from mmoe.runs import Run, fit_replicas
from mmoe.train.trainer import TrainConfig, evaluate, predict_outputs
from tests.conftest import toy_data
from tests.test_export import TASKS, table

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def test_forward_is_the_logit_of_the_mean_probability_and_the_mean_value() -> None:
    data = toy_data()
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(build_model("mmoe", data.input_spec, 2))
    ensemble = EnsembleModel(members, [True, False]).eval()
    split = data.test
    with torch.no_grad():
        each = torch.stack([m(split.numeric, split.categorical) for m in members]).double()  # [3, B, 2]
        got = ensemble(split.numeric, split.categorical).double()
    torch.testing.assert_close(torch.sigmoid(got[:, 0]), torch.sigmoid(each[..., 0]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[:, 1], each[..., 1].mean(0), rtol=1e-5, atol=1e-5)
    # Far-out logits keep their precision (log space): the mean of p = σ(50), σ(40) stays finite.
    with torch.no_grad():
        for member, bias in zip(members, (50.0, 40.0, 45.0)):
            member.towers.output.bias.fill_(bias)
        far = ensemble(split.numeric, split.categorical)
    assert torch.isfinite(far).all() and (far[:, 0] > 30).all()


def test_members_must_share_one_architecture() -> None:
    data = toy_data()
    with pytest.raises(MmoeError, match="one architecture"):
        EnsembleModel([build_model("mmoe", data.input_spec, 2), build_model("omoe", data.input_spec, 2)], [True, False])
    with pytest.raises(MmoeError, match="task kinds"):
        EnsembleModel([build_model("mmoe", data.input_spec, 2)], [True])


def test_fit_replicas_ensemble_predicts_the_mean_of_its_replicas() -> None:
    data = toy_data()
    config = TrainConfig(epochs=3, batch_size=64, patience=0)
    single, summary = fit_replicas(data, "mmoe", config, 3)
    result, ensemble_summary = fit_replicas(data, "mmoe", config, 3, ensemble=True)
    network = result.model
    assert isinstance(network, EnsembleModel) and network.size == 3 and network.name == "mmoe"
    assert all(r["kept"] for r in ensemble_summary) and sum(r["kept"] for r in summary) == 1
    # Each member is the replica trained alone in the population (same seeds): its own metrics.
    for member, replica in zip(network.members, ensemble_summary):
        member_metrics = evaluate(member, data.tasks, data.test)
        assert member_metrics["clicked"]["logloss"] == pytest.approx(
            replica["metrics"]["test"]["clicked"]["logloss"], rel=1e-4
        )
    outputs = torch.stack([predict_outputs(m, data.test) for m in network.members]).double()
    got = predict_outputs(network, data.test).double()
    torch.testing.assert_close(torch.sigmoid(got[:, 0]), torch.sigmoid(outputs[..., 0]).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[:, 1], outputs[..., 1].mean(0), rtol=1e-5, atol=1e-5)
    assert result.metrics["test"] == evaluate(network, data.tasks, data.test)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ensemble")
    train_path, rows_path = root / "train.csv", root / "rows.csv"
    table(300, seed=0).to_csv(train_path, index=False)
    table(40, seed=1).drop(columns=["clicked", "watch_time"]).to_csv(rows_path, index=False)
    out = root / "run"
    code = main(
        [
            "train",
            "--data",
            str(train_path),
            "--tasks",
            TASKS,
            "--features",
            "age,income,device,city",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--threads",
            "1",
            "--replicas",
            "3",
            "--ensemble",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return {"train": train_path, "rows": rows_path, "run": out}


def test_an_ensemble_run_saves_loads_and_predicts_as_one(ensemble_run: dict[str, Path]) -> None:
    run = Run.load(ensemble_run["run"])
    assert isinstance(run.model, EnsembleModel) and run.model.size == 3
    config = json.loads((ensemble_run["run"] / "config.json").read_text())
    assert config["ensemble"] == 3 and config["model"] == "mmoe"
    estimator = MultiTaskEstimator.load(ensemble_run["run"])
    assert estimator.ensemble is True and estimator.replicas == 3
    rows = pd.read_csv(ensemble_run["rows"])
    predicted = estimator.predict(rows)
    # The saved members' own predictions, averaged.
    members = []
    for member in run.model.members:
        single = MultiTaskEstimator.load(ensemble_run["run"])
        single.model_ = member
        members.append(single.predict(rows).to_numpy(dtype=np.float64))
    np.testing.assert_allclose(predicted["clicked"], np.mean([m[:, 0] for m in members], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predicted["watch_time"], np.mean([m[:, 1] for m in members], 0), rtol=1e-5, atol=1e-4)
    with pytest.raises(MmoeError, match="no gates of its own"):
        estimator.gates(rows)
    # The saved metrics are the ensemble's, as `mmoe evaluate` finds them again.
    assert estimator.score(pd.read_csv(ensemble_run["train"]))["clicked"]["auc"] > 0.5


def test_an_ensemble_run_exports_as_it_predicts(ensemble_run: dict[str, Path], tmp_path: Path) -> None:
    estimator = MultiTaskEstimator.load(ensemble_run["run"])
    file = estimator.export(tmp_path / "model.pt")
    rows = pd.read_csv(ensemble_run["rows"])
    inputs = encode_inputs(rows, load_signature(file))
    got = torch.jit.load(str(file))(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    np.testing.assert_allclose(got, estimator.predict(rows).to_numpy(), rtol=1e-5, atol=1e-5)


def test_ensemble_needs_replicas(tmp_path: Path) -> None:
    with pytest.raises(MmoeError, match="replicas of 2 or more"):
        MultiTaskEstimator("mmoe", TASKS, ensemble=True, epochs=1).fit(table(100, seed=0))
    with pytest.raises(MmoeError, match="ensemble"):
        MultiTaskEstimator("lightgbm", TASKS, ensemble=True).fit(table(100, seed=0))
