"""Numeric columns as learned vectors (`InputSpec.numeric_embedding`, `PeriodicEmbeddings`): the
formula, every model with it, and the equivalences every input representation joins (population =
runs alone, resume = uninterrupted, export = predict); the estimator's and the CLI's option."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.data import load_dataset, with_numeric_embedding
from mmoe.errors import MmoeError
from mmoe.estimator import MultiTaskEstimator
from mmoe.models import MODELS, build_model
from mmoe.models.layers import PeriodicEmbeddings, SparseLinear
from mmoe.runs import fit
from mmoe.spec import InputSpec, PeriodicEmbedding
from mmoe.train.population import train_population
from mmoe.train.trainer import TrainConfig
from tests.conftest import toy_data

PERIODIC = PeriodicEmbedding(frequencies=3, dim=4, sigma=0.5)


def periodic_toy(rows: int = 600, seed: int = 0) -> object:
    return with_numeric_embedding(toy_data(rows, seed), PERIODIC)


def test_periodic_embeddings_compute_the_formula_column_by_column() -> None:
    torch.manual_seed(0)
    layer = PeriodicEmbeddings(2, PERIODIC)
    x = torch.tensor([[0.3, -1.2], [2.0, 0.0]])
    got = layer(x)
    assert got.shape == (2, 2 * 4)
    for j in range(2):
        angles = 2 * math.pi * x[:, j : j + 1] * layer.frequencies[j]  # [B, k]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], -1)  # [B, 2k]
        expected = torch.relu(features @ layer.weight[j] + layer.bias[j])
        torch.testing.assert_close(got[:, 4 * j : 4 * (j + 1)], expected)
    # The frequencies start ~ N(0, sigma²): their spread follows sigma.
    wide = PeriodicEmbeddings(200, PeriodicEmbedding(frequencies=50, sigma=3.0))
    assert wide.frequencies.std().item() == pytest.approx(3.0, rel=0.05)


def test_the_first_layer_reads_the_embedded_numeric_columns() -> None:
    spec = InputSpec(("a", "b", "c"), ("colour",), (5,), numeric_embedding=PERIODIC)
    assert spec.numeric_width == 12 and spec.one_hot_dim == 12 + 5
    layer = SparseLinear(spec, 6)
    assert layer.numeric_weight.shape == (12, 6)
    numeric, categorical = torch.randn(7, 3), torch.randint(0, 5, (7, 1))
    dense = layer.numeric_embeddings(numeric)
    expected = dense @ layer.numeric_weight + layer.category_weight[categorical[:, 0]] + layer.bias
    torch.testing.assert_close(layer(numeric, categorical), expected)
    # Without it, the paper's input: the spec and the layer's parameters are what they were.
    plain = InputSpec(("a", "b", "c"), ("colour",), (5,))
    assert SparseLinear(plain, 6).numeric_embeddings is None and "numeric_embedding" not in plain.to_dict()


def test_the_spec_round_trips_and_bad_options_are_one_line_errors() -> None:
    spec = InputSpec(("a",), numeric_embedding=PERIODIC)
    assert InputSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert PeriodicEmbedding.of("periodic") == PeriodicEmbedding() and PeriodicEmbedding.of("none") is None
    assert PeriodicEmbedding.of(PERIODIC.to_dict()) == PERIODIC and PERIODIC.describe() == PERIODIC.to_dict()
    with pytest.raises(MmoeError, match=r"option numeric_embedding: 'fourier' is not one of auto, none, periodic"):
        PeriodicEmbedding.of("fourier")
    with pytest.raises(MmoeError, match="sigma must be a positive number"):
        PeriodicEmbedding(sigma=0.0)
    with pytest.raises(MmoeError, match="dim must be a whole number"):
        PeriodicEmbedding(dim=0)


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_trains_with_embedded_numeric_columns(model: str) -> None:
    data = periodic_toy()
    network = build_model(model, data.input_spec, len(data.tasks))
    embeddings = [m for m in network.modules() if isinstance(m, PeriodicEmbeddings)]
    assert embeddings, f"{model} does not embed its numeric columns"
    before = [e.frequencies.detach().clone() for e in embeddings]
    result = fit(data, model, TrainConfig(epochs=2, batch_size=64, patience=0, learning_rate=1e-2, seed=1))
    trained = [m for m in result.model.modules() if isinstance(m, PeriodicEmbeddings)]
    assert any(not torch.equal(b, e.frequencies) for b, e in zip(before, trained)), "frequencies not trained"
    assert math.isfinite(result.history[-1]["train_loss"])


@pytest.mark.parametrize("model", ["mmoe", "ple"])
def test_each_replica_equals_its_run_alone(model: str) -> None:
    seeds, options = [3, 5], {"epochs": 3, "batch_size": 64, "patience": 0}
    population = train_population(model, periodic_toy(), TrainConfig(**options), seeds=seeds)
    for state, seed in zip(population.state_dicts, seeds):
        alone = fit(periodic_toy(), model, TrainConfig(**options, seed=seed))
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5, msg=name)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data, config = periodic_toy(), {"patience": 0, "batch_size": 64, "seed": 3}
    full = fit(data, "mmoe", TrainConfig(epochs=3, **config))
    checkpoint = tmp_path / "checkpoint.pt"
    fit(data, "mmoe", TrainConfig(epochs=2, **config), checkpoint_path=checkpoint)
    resumed = fit(data, "mmoe", TrainConfig(epochs=3, **config), checkpoint_path=checkpoint, resume_from=checkpoint)
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    # A checkpoint of the paper's input is refused for an embedded run (another model).
    plain = tmp_path / "plain.pt"
    fit(toy_data(), "mmoe", TrainConfig(epochs=1, **config), checkpoint_path=plain)
    with pytest.raises(MmoeError):
        fit(data, "mmoe", TrainConfig(epochs=2, **config), checkpoint_path=plain, resume_from=plain)


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"age": rng.normal(40, 10, rows), "gain": rng.exponential(1000, rows), "city": rng.choice(["a", "b"], rows)}
    )
    signal = np.sin(frame["age"] / 5) + (frame["gain"] > 1500) + (frame["city"] == "a")
    frame["clicked"] = (signal + 0.3 * rng.normal(size=rows) > 1).astype(int)
    frame["spend"] = 2 * signal + 0.1 * rng.normal(size=rows)
    return frame


def test_auto_embeds_the_numeric_columns_of_mixed_tables_only() -> None:
    mixed = toy_data()
    assert with_numeric_embedding(mixed, "auto").input_spec.numeric_embedding == PeriodicEmbedding()
    numeric_only = replace(mixed, input_spec=InputSpec(("a", "b", "c")))
    assert with_numeric_embedding(numeric_only, "auto").input_spec.numeric_embedding is None
    assert with_numeric_embedding(numeric_only, "periodic").input_spec.numeric_embedding == PeriodicEmbedding()
    assert with_numeric_embedding(mixed, "none") is mixed


def test_the_estimator_embeds_by_default_and_none_is_the_papers_input(tmp_path: Path) -> None:
    frame, tasks = _table(400, 0), "clicked:binary,spend:regression"
    default = MultiTaskEstimator(tasks=tasks, epochs=1, batch_size=64).fit(frame)
    assert default.input_spec_.numeric_embedding == PeriodicEmbedding()  # "auto": a mixed table
    assert default.config_["dataset"]["numeric_embedding"] == "auto"
    numeric_only = MultiTaskEstimator(tasks=tasks, epochs=1, batch_size=64).fit(frame.drop(columns="city"))
    assert numeric_only.input_spec_.numeric_embedding is None
    plain = MultiTaskEstimator(tasks=tasks, epochs=1, batch_size=64, numeric_embedding="none").fit(frame)
    assert plain.input_spec_.numeric_embedding is None
    assert plain.model_.num_parameters() < default.model_.num_parameters()
    # Saved and loaded, it predicts as before.
    default.save(tmp_path / "run")
    loaded = MultiTaskEstimator.load(tmp_path / "run")
    rows = _table(50, 1).drop(columns=["clicked", "spend"])
    pd.testing.assert_frame_equal(loaded.predict(rows), default.predict(rows))
    with pytest.raises(MmoeError, match="option numeric_embedding: 'sine' is not one of"):
        MultiTaskEstimator(tasks=tasks, numeric_embedding="sine").fit(frame)


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_equals_predict(tmp_path: Path, format: str) -> None:
    pytest.importorskip("onnxruntime" if format == "onnx" else "torch")
    frame = _table(400, 0)
    estimator = MultiTaskEstimator(tasks="clicked:binary,spend:regression", epochs=1, batch_size=64).fit(frame)
    rows = _table(60, 2).drop(columns=["clicked", "spend"])
    rows.loc[0, "gain"] = np.nan  # missing: the training mean, then embedded
    path = estimator.export(tmp_path / f"model.{'onnx' if format == 'onnx' else 'pt'}", format=format)
    from mmoe.export import encode_inputs, load_signature
    from tests.test_export import exported_predictions

    got = exported_predictions(Path(path), format, encode_inputs(rows, load_signature(Path(path))))
    np.testing.assert_allclose(got, estimator.predict(rows).to_numpy(), rtol=1e-4, atol=1e-5)


def test_the_cli_option_reaches_the_run_and_the_config_round_trips(tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    _table(300, 0).to_csv(table, index=False)
    common = ["train", "--data", str(table), "--tasks", "clicked:binary,spend:regression", "--epochs", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "periodic")]) == 0
    assert main([*common, "--numeric-embedding", "none", "--out", str(tmp_path / "none")]) == 0
    periodic = json.loads((tmp_path / "periodic" / "config.json").read_text())
    plain = json.loads((tmp_path / "none" / "config.json").read_text())
    assert periodic["input_spec"]["numeric_embedding"]["kind"] == "periodic"
    assert "numeric_embedding" not in plain["input_spec"] and plain["dataset"]["numeric_embedding"] == "none"
    # The saved description rebuilds the same input spec (what `mmoe evaluate RUN` does).
    assert load_dataset(periodic["dataset"]).input_spec.to_dict() == periodic["input_spec"]
    assert main(["evaluate", str(tmp_path / "periodic")]) == 0
    # A description written before the option (no key) reads as the paper's input.
    old = {k: v for k, v in periodic["dataset"].items() if k != "numeric_embedding"}
    assert load_dataset(old).input_spec.numeric_embedding is None
    # The config file of a run trains the same input again.
    assert main(["train", "--config", str(tmp_path / "none" / "config.json"), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert "numeric_embedding" not in again["input_spec"]


def test_a_spec_without_numeric_columns_ignores_the_embedding() -> None:
    spec = InputSpec((), ("colour",), (5,), numeric_embedding=PeriodicEmbedding())
    layer = SparseLinear(spec, 4)
    assert layer.numeric_embeddings is None and spec.numeric_width == 0
    out = layer(torch.empty(3, 0), torch.randint(0, 5, (3, 1)))
    assert out.shape == (3, 4)
    assert replace(spec, numeric_embedding=None).numeric_width == 0
