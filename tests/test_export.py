"""`mmoe export`: every model in both formats predicts what `mmoe predict` prints for the same rows.

The runs are small tables (numeric and categorical columns, a binary and a regression task)
trained for one epoch; the rows predicted hold a missing number, a missing category and a
category never seen in training. ONNX tests need the `export` extra (onnx, onnxscript,
onnxruntime) and are skipped, with that reason, without it.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.data.dataset import Task
from mmoe.data.encoders import TableEncoder
from mmoe.errors import MmoeError
from mmoe.export import CATEGORICAL_INPUT, FORMATS, NUMERIC_INPUT, encode_inputs, load_signature, signature_path
from mmoe.models import MODELS
from mmoe.spec import InputSpec


def _not_importable(*packages: str) -> list[str]:
    missing = []
    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    return missing


MISSING_ONNX = _not_importable("onnx", "onnxscript", "onnxruntime")
needs_onnx = pytest.mark.skipif(
    bool(MISSING_ONNX),
    reason=f"ONNX export tests need {', '.join(MISSING_ONNX)}, not importable here (pip install 'mmoe[export]')",
)
FORMAT_PARAMS = [pytest.param(format, marks=needs_onnx) if format == "onnx" else format for format in FORMATS]
# torch 2.13 deprecates torch.jit (the TorchScript format) but still runs it.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
TASKS = "clicked:binary,watch_time:regression"
# float32 rounding: onnxruntime's kernels sum in another order than torch's (regression values
# are about 30, so 1e-5 relative is a few float32 ulps).
RTOL, ATOL = 1e-5, 1e-6


def table(rows: int, seed: int) -> pd.DataFrame:
    """Two numeric columns (one with missing values), two categorical (one with missing values),
    clicks for every row and watch time for most."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    device = rng.choice(["phone", "tablet", "tv"], rows)
    signal = (age - 40) / 10 + (device == "tv") * 1.5
    frame = pd.DataFrame(
        {
            "user": np.arange(rows),
            "age": age,
            "income": rng.lognormal(10, 1, rows),
            "device": device,
            "city": rng.choice(np.array(["north", "south", "east", None], dtype=object), rows),
            "clicked": (signal + rng.normal(0, 0.5, rows) > 0.3).astype(int),
            "watch_time": np.where(rng.random(rows) < 0.8, 30 + 12 * signal + rng.normal(0, 1, rows), np.nan),
        }
    )
    frame.loc[::13, "age"] = np.nan
    return frame


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_run(
    directory: Path, data_path: Path, model: str, features: list[str] | None = None, **hyperparameters: Any
) -> Path:
    """One epoch through the Python API (the same files `mmoe train --out` writes)."""
    from mmoe.data.tabular import load_table
    from mmoe.runs import fit, save_run
    from mmoe.train.trainer import TrainConfig

    features = features or ["age", "income", "device", "city"]  # not "user", an id
    spec = {"kind": "table", "path": str(data_path), "tasks": TASKS, "features": features}
    data = load_table(data_path, TASKS, features=features)
    config = TrainConfig(epochs=1, batch_size=64, seed=0)
    save_run(directory, spec, data, fit(data, model, config, **hyperparameters), config)
    return directory


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The training table, the rows to predict, and one run per model (plus a numeric-only and a
    categorical-only run), trained once for the module on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    train_path, rows_path = root / "train.csv", root / "rows.csv"
    table(300, seed=0).to_csv(train_path, index=False)
    rows = table(40, seed=1).drop(columns=["clicked", "watch_time"])
    rows.loc[0, "device"] = "watch"  # never seen in training: the reserved slot
    rows.loc[1, "city"] = None  # missing: a category of its own
    rows.loc[2, "income"] = np.nan  # missing: the training mean
    rows.to_csv(rows_path, index=False)
    paths = {"train": train_path, "rows": rows_path}
    for model in MODELS:
        paths[model] = train_run(root / model, train_path, model)
    paths["numeric-only"] = train_run(root / "numeric-only", train_path, "mmoe", ["age", "income"])
    paths["categorical-only"] = train_run(root / "categorical-only", train_path, "shared-bottom", ["device", "city"])
    paths["ple-dselect-k"] = train_run(root / "ple-dselect-k", train_path, "ple", gate="dselect-k", shared_experts=3)
    yield paths
    torch.set_num_threads(threads)


def exported_predictions(file: Path, format: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """What a server gets: onnxruntime on the ONNX file, torch.jit.load on the TorchScript one."""
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(inputs)
        return session.run(["predictions"], inputs)[0]
    module = torch.jit.load(str(file))
    return module(*(torch.from_numpy(array) for array in inputs.values())).numpy()


def check_export_matches_predict(
    capsys: pytest.CaptureFixture, workspace: dict[str, Path], run: str, format: str, tmp_path: Path
) -> dict:
    file = tmp_path / "served" / f"model.{'onnx' if format == 'onnx' else 'pt'}"
    code, _, err = run_cli(capsys, "export", workspace[run], "--format", format, "--out", file)
    assert code == 0, err
    assert file.is_file() and signature_path(file).is_file()
    assert sorted(p.name for p in file.parent.iterdir()) == sorted([file.name, signature_path(file).name])  # no temp

    predicted = tmp_path / "predicted.parquet"  # float32 kept exactly (a CSV rounds to its digits)
    code, _, err = run_cli(capsys, "predict", workspace[run], "--data", workspace["rows"], "--out", predicted)
    assert code == 0, err
    expected = pd.read_parquet(predicted)

    signature = load_signature(file)
    inputs = encode_inputs(pd.read_csv(workspace["rows"]), signature)
    got = exported_predictions(file, format, inputs)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert signature["outputs"][0]["columns"] == list(expected.columns) == ["clicked", "watch_time"]
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=RTOL, atol=ATOL)
    # The batch dimension is free: one row alone gives that row's predictions.
    one = exported_predictions(file, format, {name: array[3:4] for name, array in inputs.items()})
    np.testing.assert_allclose(one, got[3:4], rtol=RTOL, atol=ATOL)
    assert 0 <= got[:, 0].min() and got[:, 0].max() <= 1  # probabilities
    return signature


@pytest.mark.parametrize("format", FORMAT_PARAMS)
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_exports_and_predicts_as_mmoe_predict(
    model: str, format: str, workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    signature = check_export_matches_predict(capsys, workspace, model, format, tmp_path)
    assert signature["model"] == model and signature["format"] == format
    assert [(i["name"], i["dtype"], i["shape"], i["columns"]) for i in signature["inputs"]] == [
        ("numeric", "float64", ["batch", 2], ["age", "income"]),
        ("categorical", "int64", ["batch", 2], ["device", "city"]),
    ]
    vocabularies = signature["inputs"][1]["vocabularies"]
    assert vocabularies["device"] == ["phone", "tablet", "tv"] and "<missing>" in vocabularies["city"]
    assert signature["outputs"][0]["kinds"] == ["binary", "regression"]


@pytest.mark.parametrize("format", FORMAT_PARAMS)
def test_ple_with_dselect_k_gates_exports_and_predicts_as_mmoe_predict(
    format: str, workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert check_export_matches_predict(capsys, workspace, "ple-dselect-k", format, tmp_path)["model"] == "ple"


@pytest.mark.parametrize("format", FORMAT_PARAMS)
@pytest.mark.parametrize("run", ["numeric-only", "categorical-only"])
def test_a_model_with_one_kind_of_column_takes_one_input(
    run: str, format: str, workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    signature = check_export_matches_predict(capsys, workspace, run, format, tmp_path)
    assert [i["name"] for i in signature["inputs"]] == ["numeric" if run == "numeric-only" else "categorical"]


def test_encode_inputs_codes_unseen_and_missing_values(
    workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    file = tmp_path / "model.pt"
    assert run_cli(capsys, "export", workspace["mmoe"], "--format", "torchscript", "--out", file)[0] == 0
    signature = load_signature(signature_path(file))
    rows = pd.read_csv(workspace["rows"])
    inputs = encode_inputs(rows, signature)
    assert inputs["numeric"].dtype == np.float64 and inputs["categorical"].dtype == np.int64
    assert np.isnan(inputs["numeric"][2, 1])  # missing income stays NaN: the graph uses the training mean
    np.testing.assert_array_equal(inputs["numeric"][:, 0], rows["age"].to_numpy())  # the table's own units
    vocabularies = signature["inputs"][1]["vocabularies"]
    assert inputs["categorical"][0, 0] == 0  # "watch": unseen in training
    assert inputs["categorical"][1, 1] == 1 + vocabularies["city"].index("<missing>")
    assert inputs["categorical"][3, 0] == 1 + vocabularies["device"].index(rows.loc[3, "device"])
    # Codes a server gets wrong (negative, past the vocabulary) count as unseen, not as another column's slot.
    module = torch.jit.load(str(file))
    numeric = torch.from_numpy(inputs["numeric"][:2])
    unseen = module(numeric, torch.zeros(2, 2, dtype=torch.int64))
    for wrong in (-1, 99):
        torch.testing.assert_close(module(numeric, torch.full((2, 2), wrong)), unseen)


def test_encode_inputs_agrees_with_the_encoders_transform() -> None:
    """encode_inputs gives what the run's encoder gives before standardising and offsets (the
    exported model does those itself): a missing value, an unseen category and a missing category."""
    train = pd.DataFrame(
        {
            "age": [20.0, 30.0, np.nan, 50.0],
            "income": [1.0, 2.0, 3.0, 5.0],
            "device": ["phone", "tv", "phone", None],
            "city": ["north", "south", "east", "south"],
            "clicked": [0, 1, 1, 0],
        }
    )
    encoder = TableEncoder(["age", "income"], ["device", "city"], [Task("clicked", "binary")]).fit(train)
    rows = pd.DataFrame(
        {
            "age": [25.0, np.nan, 60.0],
            "income": [2.0, 4.0, np.nan],
            "device": ["watch", None, "tv"],
            "city": [None, "east", "north"],
            "extra": [1, 2, 3],
        }
    )
    signature = {"encoder": encoder.to_dict(), "inputs": [{"name": NUMERIC_INPUT}, {"name": CATEGORICAL_INPUT}]}
    inputs = encode_inputs(rows, signature)
    numeric, categorical = encoder.transform_features(rows)

    raw = inputs[NUMERIC_INPUT]
    assert np.isnan(raw[1, 0]) and np.isnan(raw[2, 1])  # missing stays NaN
    standardised = np.nan_to_num((raw - np.asarray(encoder.means)) / np.asarray(encoder.stds), nan=0.0)
    np.testing.assert_array_equal(standardised.astype(np.float32), numeric.numpy())
    codes = inputs[CATEGORICAL_INPUT]
    assert codes[0, 0] == 0 and codes[0, 1] == 0  # "watch" unseen; a missing city unseen in training
    assert codes[1, 0] == 1 + encoder.vocabularies[0].index("<missing>")  # a missing device seen in training
    np.testing.assert_array_equal(codes + np.asarray(encoder.input_spec.offsets), categorical.numpy())
    # The same error as `mmoe predict` for text in a numeric column, naming the source, column and row.
    bad = rows.assign(income=["2", "lots", "3"])
    with pytest.raises(MmoeError, match="rows.csv: column 'income', row 2: 'lots' is not a number") as error:
        encode_inputs(bad, signature, source="rows.csv")
    with pytest.raises(MmoeError) as same:
        encoder.transform_features(bad, source="rows.csv")
    assert str(error.value) == str(same.value)


@needs_onnx
def test_onnx_graph_uses_gather_and_sum_not_a_loop(
    workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """torch's exporter turns embedding_bag into a Loop over rows; the export swaps in gather-and-sum."""
    import onnx

    file = tmp_path / "model.onnx"
    assert run_cli(capsys, "export", workspace["mmoe"], "--out", file)[0] == 0  # onnx is the default format
    graph = onnx.load(str(file)).graph
    operators = {node.op_type for node in graph.node}
    assert "Loop" not in operators and {"Gather", "ReduceSum", "Sigmoid", "IsNaN"} <= operators
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim][0] == "batch"
    assert json.loads(signature_path(file).read_text())["opset"] >= 18


def _one_line_error(capsys: pytest.CaptureFixture, *args: object) -> str:
    code, _, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    return lines[0]


def test_bad_export_input_is_one_line(
    workspace: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.onnx"
    assert "not a run directory" in _one_line_error(capsys, "export", tmp_path, "--out", out)
    assert "'tflite'" in _one_line_error(capsys, "export", workspace["mmoe"], "--format", "tflite", "--out", out)
    assert "overwrite" in _one_line_error(
        capsys, "export", workspace["mmoe"], "--format", "torchscript", "--out", workspace["mmoe"] / "model.pt"
    )
    assert "is a directory" in _one_line_error(capsys, "export", workspace["mmoe"], "--out", tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed: import raises ImportError
    assert "pip install 'mmoe[export]'" in _one_line_error(capsys, "export", workspace["mmoe"], "--out", out)
    assert not out.exists() and not signature_path(out).exists()
    with pytest.raises(MmoeError, match="no such file"):
        load_signature(tmp_path / "nothing.onnx")


class _EmbeddingEncoder(TableEncoder):
    """The run's encoder with some categorical columns embedded (the spec a data option would
    give; the encoder's rule is not under test here): `dims` per categorical column."""

    dims: tuple[int, ...] = ()

    @property
    def input_spec(self) -> InputSpec:
        spec = super().input_spec
        return InputSpec(spec.numeric, spec.categorical, spec.cardinalities, self.dims)


@pytest.mark.parametrize("format", FORMAT_PARAMS)
@pytest.mark.parametrize("dims", [(0, 4), (3, 2)], ids=["city-embedded", "both-embedded"])
def test_embedded_columns_export_and_predict_as_mmoe_predict(
    dims: tuple[int, int], format: str, workspace: dict[str, Path], tmp_path: Path
) -> None:
    """The serving file takes the same per-column codes; it offsets an embedded column's codes
    into the embedding vocabulary (city's rows start after device's when both are embedded) and
    predicts what the predict path predicts; the signature says which columns are embedded."""
    from mmoe.export import export_model
    from mmoe.models import build_model
    from mmoe.predict import features_split, predictions_of
    from mmoe.runs import Run

    saved = Run.load(workspace["mmoe"])
    assert saved.encoder is not None
    encoder = _EmbeddingEncoder.from_dict(saved.encoder.to_dict())
    encoder.__class__ = _EmbeddingEncoder
    encoder.dims = dims
    assert encoder.input_spec.embedded_columns == [j for j, d in enumerate(dims) if d]
    torch.manual_seed(0)
    model = build_model("mmoe", encoder.input_spec, 2, num_experts=3)
    run = Run(tmp_path / "run", saved.config, model, encoder)
    file = export_model(run, tmp_path / f"model.{'onnx' if format == 'onnx' else 'pt'}", format)

    signature = load_signature(file)
    assert signature["inputs"][1]["embedding_dims"] == dict(zip(["device", "city"], dims))
    rows = pd.read_csv(workspace["rows"])
    inputs = encode_inputs(rows, signature)
    got = exported_predictions(file, format, inputs)
    expected = predictions_of(model, run.tasks, features_split(run, rows))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    # A city's row of the table moves the predictions of that city's rows, and only those.
    with torch.no_grad():
        model.experts.input_layer.embeddings.tables[-1][encoder.input_spec.offsets[1] + 1 - (4 if dims[0] else 0)] += 1
    moved = predictions_of(model, run.tasks, features_split(run, rows)) != expected
    codes = inputs[CATEGORICAL_INPUT][:, 1]
    assert bool(moved[codes == 1].all()) and not bool(moved[codes != 1].any())
