"""`mmoe export`: a run's trained model as one ONNX or TorchScript file for serving.

The exported file maps a batch of rows to exactly what `mmoe predict` prints for them: the
positive class's probability for a binary task, the value in the label's own units for a
regression task. What lives where:

- Folded into the file: the numeric standardisation (the training means and stds, computed in
  float64 as the encoder does; a missing value, NaN, becomes the training mean), the offsets of
  each categorical column into its kind's vocabulary (the one-hot slots, or the embedding rows
  of an embedded column; a code outside a column's range lands in its unseen slot 0), the model
  (embedding tables included), and the output transforms (sigmoid for binary tasks,
  de-standardisation for regression tasks).
- Beside the file, FILE.signature.json: the inputs in order (name, dtype, shape, columns), each
  categorical column's vocabulary (code = 1 + the value's position in the list, 0 = unseen) and
  how it enters the model (`embedding_dims`: 0 one-hot, e an embedding of dimension e; the
  caller passes the same per-column codes either way), the
  outputs (task names and kinds), and the run's encoder.json verbatim. Category strings stay out
  of the graph: ONNX string tensors would need a lookup table per column that few runtimes serve
  well, and the mapping is one dictionary look-up per cell on the caller's side.
- `encode_inputs(frame, signature)` turns a DataFrame into the file's inputs with the run's
  encoder kept in that JSON (the same column checks, number parsing and category strings as
  `mmoe predict`), so a server needs onnxruntime (or torch, for TorchScript), that JSON and this
  helper; nothing of the run directory. A server in another language builds the same two arrays
  from the JSON alone.

ONNX goes through torch's default exporter (torch.export-based, which needs `onnxscript`). It
lowers `F.embedding_bag` to an ONNX Loop with one iteration per row (40x slower in onnxruntime
than a Gather on 20,000 rows of 30 categories), so the exported copy of the model has each
`SparseLinear` swapped for the same map written as gather-and-sum (Gather + ReduceSum); the
models and their training keep embedding_bag, untouched. TorchScript keeps embedding_bag, which
it runs natively.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mmoe import __version__
from mmoe.data.dataset import Split, Task
from mmoe.data.encoders import MISSING_CATEGORY, TableEncoder
from mmoe.data.values import HASH_KEY
from mmoe.errors import MmoeError
from mmoe.io import atomic_write, atomic_write_json
from mmoe.models.base import MultiTaskModel
from mmoe.models.layers import SparseLinear
from mmoe.predict import predictions_of
from mmoe.runs import RUN_FILES, Run
from mmoe.spec import PADDING_CODE, joint_tasks, prediction_names
from mmoe.train.metrics import with_joint_predictions

FORMATS = ("onnx", "torchscript")
NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
OUTPUT = "predictions"
UNSEEN_CODE = 0
SIGNATURE_SUFFIX = ".signature.json"
SIGNATURE_VERSION = 1
INSTALL_HINT = "pip install 'mmoe[export]'"
# The exported file is checked against the model it came from on rows of this many (a batch size
# other than the one it was traced with, so a batch dimension that was frozen fails here).
TRACE_ROWS, CHECK_ROWS = 3, 7


def signature_path(file: str | Path) -> Path:
    """Where the signature JSON of an exported FILE lives: FILE.signature.json, beside it."""
    file = Path(file)
    return file.with_name(file.name + SIGNATURE_SUFFIX)


# -- the serving graph ------------------------------------------------------------------------------
class GatherSumLinear(nn.Module):
    """A `SparseLinear`'s map with the embedding bag written as gather-and-sum, for ONNX.

    The same weights (shared, not copied), the same function, the same order of additions."""

    def __init__(self, layer: SparseLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        # Embedded columns: one Gather per table (CategoryEmbeddings is gathers already).
        dense = layer.dense_input(numeric, categorical)
        if layer.one_hot_columns:
            codes = layer._one_hot_codes(categorical)
            out = F.embedding(codes, layer.category_weight).sum(1)  # ONNX Gather, ReduceSum
            if dense.shape[-1]:
                out = out + dense @ layer.numeric_weight
        else:
            out = dense @ layer.numeric_weight
        return out if layer.bias is None else out + layer.bias


class ServingModel(nn.Module):
    """The run's model with its input and output transforms folded in.

    forward(numeric [B, num_numeric] float64 in the table's units, NaN = missing;
            categorical [B, num_codes] int64 per-column codes, 0 = unseen; a multi-valued
            column's positions after its last value hold PADDING_CODE)
        -> predictions [B, K + J] float32, as `mmoe predict` prints them (the K tasks, then the
           J conditional tasks' joint probabilities, `mmoe.train.metrics.with_joint_predictions`).
    Either input is None when the model has no column of that kind.
    """

    mean: torch.Tensor
    log_columns: torch.Tensor
    std: torch.Tensor
    offsets: torch.Tensor
    cardinalities: torch.Tensor
    multi_positions: torch.Tensor
    binary: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        model: MultiTaskModel,
        means: list[float],
        stds: list[float],
        tasks: list[Task],
        numeric_transforms: list[str] | None = None,
    ) -> None:
        super().__init__()
        spec = model.input_spec
        self.model = model
        self.has_numeric, self.has_categorical = spec.num_numeric > 0, spec.num_categorical > 0
        # The encoder's "log" numeric transform, sign(x)·log(1 + |x|), on the columns that have it
        # (`mmoe.data.encoders.NUMERIC_TRANSFORMS`); without one the graph is as before the option.
        logged = [name == "log" for name in numeric_transforms or ()]
        self.has_log_columns = any(logged)
        self.register_buffer("log_columns", torch.tensor(logged if self.has_log_columns else [], dtype=torch.bool))
        # float64, as the encoder standardises in float64 before its cast to float32.
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float64))
        # Per position of the categorical tensor (a multi-valued column has max_values of them).
        widths = torch.tensor(spec.column_widths, dtype=torch.int64)
        self.register_buffer("offsets", torch.tensor(spec.offsets, dtype=torch.int64).repeat_interleave(widths))
        self.register_buffer(
            "cardinalities", torch.tensor(spec.cardinalities, dtype=torch.int64).repeat_interleave(widths)
        )
        self.has_multi_values = bool(spec.multi_values)
        multi = [c in spec.multi_value_of for c in spec.categorical]
        self.register_buffer("multi_positions", torch.tensor(multi, dtype=torch.bool).repeat_interleave(widths))
        self.register_buffer("binary", torch.tensor([task.kind == "binary" for task in tasks]))
        self.register_buffer("scale", torch.tensor([task.label_std for task in tasks], dtype=torch.float32))
        self.register_buffer("shift", torch.tensor([task.label_mean for task in tasks], dtype=torch.float32))
        self.tasks = list(tasks)  # the conditional tasks' joint products, a fixed structure traced as such

    def forward(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None) -> torch.Tensor:
        given = numeric if numeric is not None else categorical
        assert given is not None, "a model reads numeric or categorical columns"
        batch = given.shape[0]
        if numeric is None:  # never read by the model (it has no numeric column); keeps its call uniform
            numeric = torch.zeros(batch, 0)
        else:
            if self.has_log_columns:
                numeric = torch.where(self.log_columns, torch.sign(numeric) * torch.log1p(torch.abs(numeric)), numeric)
            standardised = (numeric - self.mean) / self.std
            numeric = torch.where(torch.isnan(standardised), 0.0, standardised).float()
        if categorical is None:
            categorical = torch.zeros(batch, 0, dtype=torch.int64)
        else:
            valid = (categorical >= 0) & (categorical < self.cardinalities)
            coded = torch.where(valid, categorical, UNSEEN_CODE) + self.offsets
            if self.has_multi_values:  # a multi-valued column's padding stays padding
                coded = torch.where(self.multi_positions & (categorical == PADDING_CODE), PADDING_CODE, coded)
            categorical = coded
        outputs = self.model(numeric, categorical).float()
        predictions = torch.where(self.binary, torch.sigmoid(outputs), outputs * self.scale + self.shift)
        return with_joint_predictions(self.tasks, predictions)


class NumericOnly(nn.Module):
    """A model without categorical columns takes one input (a width-0 ONNX input would be one
    more thing for a server to build)."""

    def __init__(self, serving: ServingModel) -> None:
        super().__init__()
        self.serving = serving

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        return self.serving(numeric, None)


class CategoricalOnly(nn.Module):
    """A model without numeric columns takes one input."""

    def __init__(self, serving: ServingModel) -> None:
        super().__init__()
        self.serving = serving

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:
        return self.serving(None, categorical)


def serving_model(run: Run, gather_sum: bool = False) -> nn.Module:
    """The run's model with the encoder's numeric statistics, the category offsets and the output
    transforms folded in, in eval mode; it takes the inputs `input_names(run)` names, in order.
    It works on a copy of the model whose weights need no gradient, so that its outputs (and a
    traced file's) are plain tensors; run.model is left as it is.

    gather_sum: run the first layers as gather-and-sum (for ONNX; see the module docstring)
    instead of the embedding bag the model trains with."""
    encoder = _encoder_of(run)
    model = copy.deepcopy(run.network("mmoe export")).requires_grad_(False)
    if gather_sum:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, SparseLinear):
                    setattr(parent, name, GatherSumLinear(child))
    serving = ServingModel(model, encoder.means, encoder.stds, run.tasks, encoder.numeric_transforms)
    served: nn.Module = serving
    if not serving.has_categorical:
        served = NumericOnly(serving)
    elif not serving.has_numeric:
        served = CategoricalOnly(serving)
    served.eval()
    if model.input_spec.embedded_columns:
        # The first layer builds its column-index tensors (which columns are one-hot, which
        # embedded) on first use: built now, a trace sees them as constants every time (the
        # TorchScript check traces twice and compares the graphs).
        with torch.no_grad():
            served(*_example_inputs(run, 1, seed=0))
    return served


def input_names(run: Run) -> list[str]:
    """The exported file's inputs, in order: "numeric" and/or "categorical" (only those the model has)."""
    spec = run.model.input_spec
    return [
        name for name, count in ((NUMERIC_INPUT, spec.num_numeric), (CATEGORICAL_INPUT, spec.num_categorical)) if count
    ]


def _encoder_of(run: Run) -> TableEncoder:
    if run.encoder is None:
        raise MmoeError(f"{run.directory}: the run has no encoder.json; an export needs the run's fitted encoder")
    return run.encoder


def _example_inputs(run: Run, rows: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Rows to trace and check with: random numbers with some NaN, random codes including the
    unseen slot and codes out of range (which the graph sends to the unseen slot)."""
    spec = run.model.input_spec
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    if spec.num_numeric:
        means = torch.tensor(_encoder_of(run).means, dtype=torch.float64)
        stds = torch.tensor(_encoder_of(run).stds, dtype=torch.float64)
        numeric = means + stds * torch.randn(rows, spec.num_numeric, generator=generator, dtype=torch.float64)
        numeric[0, 0] = float("nan")
        inputs.append(numeric)
    if spec.num_categorical:
        widths = torch.tensor(spec.column_widths, dtype=torch.int64)
        high = (torch.tensor(spec.cardinalities) + 1).repeat_interleave(widths)  # one past the last slot: out of range
        codes = (torch.rand(rows, spec.num_codes, generator=generator) * high).long()
        codes[0, 0] = -1
        positions = dict(zip(spec.categorical, spec.code_positions))
        for multi in spec.multi_values:  # the last positions padded, the first row's list empty
            end = positions[multi.column] + multi.max_values
            codes[:, end - 1] = PADDING_CODE
            codes[0, positions[multi.column] : end] = PADDING_CODE
        inputs.append(codes)
    return tuple(inputs)


# -- exporting --------------------------------------------------------------------------------------
def export_run(run_dir: str | Path, out: str | Path, format: str = "onnx", verify: bool = True) -> Path:
    """`mmoe export`: the saved run in `run_dir` written by `export_model`; `out` must not be one of
    the run's own files."""
    out, run_dir = Path(out), Path(run_dir)
    _check_format(format)
    if out.name in RUN_FILES and out.resolve().parent == run_dir.resolve():
        raise MmoeError(f"option out: {out} would overwrite the run's own {out.name}; expected another file name")
    return export_model(Run.load(run_dir), out, format, verify)


def export_model(run: Run, out: str | Path, format: str = "onnx", verify: bool = True) -> Path:
    """Writes the fitted model of `run` (a saved run, or `MultiTaskEstimator`'s fitted state) as
    `format` ("onnx" or "torchscript") to `out`, and the signature JSON beside it
    (`signature_path(out)`); returns `out`. Both files are written atomically.

    verify: run the written file (onnxruntime for ONNX, when installed; torch.jit.load for
    TorchScript) on rows of another batch size than the one traced, and compare with what the
    predict path (`mmoe.predict.predictions_of`) gives for the same rows: an exporter that froze a
    shape or mistranslated an operator, or a folded transform that differs from the encoder's,
    fails here, not on a server. Raises MmoeError for an unknown format, a run without an
    encoder, an `out` that is a directory, and missing ONNX packages."""
    _check_format(format)
    run.network("mmoe export")  # a baseline's run (LightGBM) has no network to export
    out = Path(out)
    if out.is_dir():
        raise MmoeError(f"option out: {out} is a directory; expected a file name such as model.{_suffix(format)}")
    if format == "onnx":
        _require_onnx_exporter()
    _encoder_of(run)
    if format == "onnx":
        opset = _export_onnx(run, out, verify)
    else:
        opset = None
        _export_torchscript(run, out, verify)
    atomic_write_json(signature_path(out), build_signature(run, out, format, opset))
    return out


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise MmoeError(f"unknown export format {format!r}; expected one of: {', '.join(FORMATS)}")


def _suffix(format: str) -> str:
    return "onnx" if format == "onnx" else "pt"


def _require_onnx_exporter() -> None:
    """The torch.export-based exporter with dynamic shapes needs torch 2.6 or later (the package
    itself accepts torch 2.2), and onnx + onnxscript."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 6):
        raise MmoeError(
            f"ONNX export needs torch 2.6 or later (this is torch {torch.__version__}); "
            f"--format torchscript works with this torch"
        )
    missing = []
    for package in ("onnx", "onnxscript"):
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise MmoeError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which are not installed; "
            f"{INSTALL_HINT} (or --format torchscript, which needs only torch)"
        )


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch's exporters log progress and warn about torchvision and deprecations on every call;
    the CLI's output is one line, so those are muted while exporting (errors still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_onnx(run: Run, out: Path, verify: bool) -> int:
    """Writes the ONNX file (batch dimension dynamic); returns its opset."""
    serving = serving_model(run, gather_sum=True)
    names = input_names(run)
    example = _example_inputs(run, TRACE_ROWS, seed=0)
    batch = torch.export.Dim("batch")
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                serving,
                example,
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes=tuple({0: batch} for _ in names),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as error:  # the exporter's own errors are long; this is a bug, not bad input
            raise RuntimeError(f"ONNX export of model {run.model.name} failed: {error}") from error
    if program is None:  # torch returns None only when asked to write the file itself
        raise RuntimeError(f"ONNX export of model {run.model.name} returned no program")
    opset = int(program.model.opset_imports.get("", 0))

    def write(temp: Path) -> None:
        program.save(temp, external_data=False)
        if verify:
            _verify_onnx(run, temp)

    atomic_write(out, write)
    return opset


def _verify_onnx(run: Run, file: Path) -> None:
    try:
        import onnxruntime
    except ImportError:  # exporting needs no runtime; the check is skipped without one
        return
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # seven rows: threads would cost more than they save
    session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    inputs = _example_inputs(run, CHECK_ROWS, seed=1)
    got = session.run([OUTPUT], {name: x.numpy() for name, x in zip(input_names(run), inputs)})[0]
    _check_close(run, got, inputs, "ONNX (onnxruntime)")


def _export_torchscript(run: Run, out: Path, verify: bool) -> None:
    serving = serving_model(run)
    example = _example_inputs(run, TRACE_ROWS, seed=0)
    check = _example_inputs(run, CHECK_ROWS, seed=1)
    with _quiet_exporter(), torch.no_grad():  # torch.jit.trace warns that it is deprecated
        traced = torch.jit.trace(serving, example, check_inputs=[check])

    def write(temp: Path) -> None:
        with _quiet_exporter():
            torch.jit.save(traced, str(temp))
            if verify:
                with torch.no_grad():
                    got = torch.jit.load(str(temp), map_location="cpu")(*check).numpy()
                _check_close(run, got, check, "TorchScript")

    atomic_write(out, write)


def _check_close(run: Run, got: np.ndarray, inputs: tuple[torch.Tensor, ...], what: str) -> None:
    """The exported file's predictions against the predict path's for the same rows (float32
    rounding apart): the rows encoded as the encoder encodes them, then `predictions_of`."""
    expected = _predicted(run, inputs)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        difference = np.abs(got - expected).max() if got.shape == expected.shape else f"shape {got.shape}"
        raise RuntimeError(
            f"{what} export of model {run.model.name} does not reproduce the model "
            f"(max difference {difference} on {len(expected)} check rows)"
        )


def _predicted(run: Run, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """`predictions_of` for the exported file's inputs (raw numbers, NaN = missing; per-column
    codes, where a code out of range counts as unseen, as the graph reads it)."""
    spec = run.model.input_spec
    parts = dict(zip(input_names(run), inputs))
    rows = len(inputs[0])
    raw = parts[NUMERIC_INPUT].numpy() if NUMERIC_INPUT in parts else np.zeros((rows, 0))
    codes = parts[CATEGORICAL_INPUT].numpy() if CATEGORICAL_INPUT in parts else np.zeros((rows, 0), dtype=np.int64)
    widths = spec.column_widths
    cardinalities = np.repeat(np.asarray(spec.cardinalities, dtype=np.int64), widths)
    multi = np.asarray([c in spec.multi_value_of for c in spec.categorical], dtype=bool)
    padding = np.repeat(multi, widths) & (codes == PADDING_CODE)
    codes = np.where((codes >= 0) & (codes < cardinalities) | padding, codes, UNSEEN_CODE)
    numeric, categorical = _encoder_of(run).model_inputs(raw, codes)
    split = Split(
        torch.from_numpy(numeric), torch.from_numpy(categorical), torch.full((rows, len(run.tasks)), math.nan)
    )
    return predictions_of(run.model, run.tasks, split)


# -- the signature ----------------------------------------------------------------------------------
def build_signature(run: Run, file: str | Path, format: str, opset: int | None = None) -> dict[str, Any]:
    """The JSON that ships beside an exported file: everything a server needs to build the
    inputs and read the outputs without the run directory."""
    encoder = _encoder_of(run)
    spec = run.model.input_spec
    inputs: list[dict[str, Any]] = []
    if spec.num_numeric:
        inputs.append(
            {
                "name": NUMERIC_INPUT,
                "dtype": "float64",
                "shape": ["batch", spec.num_numeric],
                "columns": list(spec.numeric),
                "meaning": "the numeric columns in the table's own units (standardised inside the model"
                + (
                    ", after sign(x)*log(1+|x|) on the columns whose encoder numeric_transforms is log"
                    if any(name != "standard" for name in encoder.numeric_transforms)
                    else ""
                )
                + "); NaN for a missing value (the model uses the training mean)",
            }
        )
    if spec.num_categorical:
        inputs.append(
            {
                "name": CATEGORICAL_INPUT,
                "dtype": "int64",
                "shape": ["batch", spec.num_codes],
                "columns": list(spec.categorical),
                "meaning": f"per column, 1 + the value's position in vocabularies[column]; {UNSEEN_CODE} for a value "
                f"not in it (unseen in training); a missing value is the category missing_category; a code "
                f"out of range counts as unseen",
                "unseen_code": UNSEEN_CODE,
                "missing_category": MISSING_CATEGORY,
                "vocabularies": {column: list(encoder.column_codes(j)[0]) for j, column in enumerate(spec.categorical)},
                **_hash_signature(encoder),
                # Per column: 0 one-hot, e > 0 embedded with dimension e (codes are given the same way).
                "embedding_dims": dict(zip(spec.categorical, spec.column_embedding_dims)),
                **(_multi_value_signature(spec) if spec.multi_values else {}),
            }
        )
    tasks = run.tasks
    joints = joint_tasks(tasks)
    return {
        "signature_version": SIGNATURE_VERSION,
        "format": format,
        "file": Path(file).name,
        "opset": opset,
        "model": run.model.name,
        "hyperparameters": run.model.hyperparameters,
        "run": str(run.directory),
        "inputs": inputs,
        "outputs": [
            {
                "name": OUTPUT,
                "dtype": "float32",
                "shape": ["batch", len(tasks) + len(joints)],
                "columns": prediction_names(tasks),
                "kinds": [task.kind for task in tasks] + ["binary"] * len(joints),
                "meaning": "per task, as `mmoe predict` prints it: the positive class's probability (binary) "
                "or the value in the label's own units (regression)"
                + (
                    "; then per conditional task the probability of its joint event (e.g. click&purchase: "
                    "P(click) x P(purchase | click))"
                    if joints
                    else ""
                ),
            }
        ],
        "encoder": encoder.to_dict(),
        "versions": {"mmoe": __version__, "torch": torch.__version__},
    }


def _hash_signature(encoder: TableEncoder) -> dict[str, Any]:
    """The categorical input's keys for hashed columns (none when no column is hashed): each one's
    number of buckets and how a server computes a value's code (`mmoe.data.values.hash_buckets`)."""
    buckets = {
        column: encoder.column_codes(j)[1] for j, column in enumerate(encoder.categorical) if encoder.column_codes(j)[1]
    }
    if not buckets:
        return {}
    return {
        "hash_buckets": buckets,
        "hash": {
            "meaning": "a hashed column's code is its bucket in [0, hash_buckets[column]) (it has no vocabulary "
            "and no unseen code): pandas.util.hash_array([text], encoding='utf8', hash_key=key, "
            "categorize=False) modulo the bucket count, where text is the value as written in the table "
            "(missing_category for a missing value): SipHash-2-4 of the UTF-8 bytes under the 16-byte key, "
            "then splitmix64's finaliser, unsigned 64-bit; mmoe.export.encode_inputs computes it",
            "key": HASH_KEY,
        },
    }


def _multi_value_signature(spec: Any) -> dict[str, Any]:
    """The categorical input's keys for multi-valued columns: each position's name, the padding
    code, and per multi-valued column its positions, pooling and shared column."""
    positions: list[str] = []
    for column, width in zip(spec.categorical, spec.column_widths):
        positions += [f"{column}[{i}]" for i in range(width)] if column in spec.multi_value_of else [column]
    starts = dict(zip(spec.categorical, spec.code_positions))
    return {
        "positions": positions,
        "padding_code": PADDING_CODE,
        "multi_values": {
            multi.column: {
                "positions": [starts[multi.column], starts[multi.column] + multi.max_values],
                "max_values": multi.max_values,
                "pooling": multi.pooling,
                "shares": multi.shares,
                "meaning": f"the codes of the row's first {multi.max_values} values (codes as in vocabularies), "
                f"then padding_code; the model pools their embeddings ({multi.pooling}; no value: zeros)",
            }
            for multi in spec.multi_values
        },
    }


def load_signature(path: str | Path) -> dict[str, Any]:
    """Reads an exported file's signature JSON (pass the JSON's path or the exported file's)."""
    path = Path(path)
    if not path.name.endswith(".json"):
        path = signature_path(path)
    try:
        signature = json.loads(path.read_text())
    except FileNotFoundError:
        raise MmoeError(
            f"{path}: no such file; expected the signature JSON `mmoe export` writes beside its file"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MmoeError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(signature, dict) or "inputs" not in signature or "encoder" not in signature:
        raise MmoeError(f"{path}: not a signature written by `mmoe export` (no inputs or encoder)")
    return signature


def encode_inputs(
    frame: pd.DataFrame, signature: Mapping[str, Any] | str | Path, source: str = "data"
) -> dict[str, np.ndarray]:
    """The exported file's inputs for `frame`'s rows, by input name, in the signature's order:
    "numeric" float64 [N, num_numeric] in the table's units (NaN where missing) and/or
    "categorical" int64 [N, num_codes] per-column codes (0 = unseen in training; a multi-valued
    column's positions after its last value: PADDING_CODE).

    Columns are read exactly as `mmoe predict` reads them (the run's encoder: text or ±inf in a
    numeric column and missing columns are MmoeErrors); other columns are ignored. Feed the dict
    to onnxruntime's `session.run`, or its values in order to a TorchScript module."""
    if not isinstance(signature, Mapping):
        signature = load_signature(signature)
    encoder = TableEncoder.from_dict(dict(signature["encoder"]))
    wanted = encoder.numeric + encoder.categorical
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        raise MmoeError(
            f"{source}: missing column(s) {', '.join(map(repr, missing[:5]))}"
            f"{', ...' if len(missing) > 5 else ''}; the exported model reads {len(wanted)} columns, "
            f"named in its signature's inputs"
        )
    arrays: dict[str, np.ndarray] = {}
    for entry in signature["inputs"]:
        # The encoder's own conversion, before the standardising and offsets the model does itself,
        # so that "<missing>", numbers stored as categories and pandas categoricals map as they do
        # in `mmoe predict`.
        if entry["name"] == NUMERIC_INPUT:
            arrays[NUMERIC_INPUT] = encoder.raw_numeric(frame, source)
        elif entry["name"] == CATEGORICAL_INPUT:
            arrays[CATEGORICAL_INPUT] = encoder.category_codes(frame, source)  # 0 = UNSEEN_CODE
        else:
            raise MmoeError(f"signature input {entry['name']!r} is not one this version of mmoe knows")
    return arrays


__all__ = [
    "FORMATS",
    "build_signature",
    "encode_inputs",
    "export_model",
    "export_run",
    "input_names",
    "load_signature",
    "serving_model",
    "signature_path",
]
