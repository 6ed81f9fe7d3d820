"""The encoder's numeric transforms ("log": sign(x)·log(1 + |x|) before standardising): fitted on
the training rows, equal when streamed, saved in encoder.json, folded into the exported model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.data.assemble import fit_encode
from mmoe.data.encoders import Moments, TableEncoder, signed_log1p
from mmoe.errors import MmoeError
from mmoe.export import encode_inputs, load_signature
from mmoe.runs import Run, fit, save_run
from mmoe.spec import Task
from mmoe.train.trainer import TrainConfig
from tests.test_export import table

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
TASKS = [Task("clicked", "binary"), Task("watch_time", "regression")]


def encoder(transform: str | dict[str, str] | None) -> TableEncoder:
    return TableEncoder(["age", "income"], ["device", "city"], TASKS, numeric_transform=transform)


def test_log_standardises_the_transformed_training_values() -> None:
    frame = table(300, seed=0)
    fitted = encoder({"income": "log"}).fit(frame)
    assert fitted.numeric_transforms == ["standard", "log"]
    logged = signed_log1p(frame["income"].to_numpy(dtype=np.float64))
    assert fitted.means[1] == pytest.approx(logged.mean()) and fitted.stds[1] == pytest.approx(logged.std())
    assert fitted.means[0] == pytest.approx(np.nanmean(frame["age"]))  # "standard": as before
    numeric, _ = fitted.transform_features(frame)
    np.testing.assert_allclose(numeric[:, 1].numpy(), (logged - logged.mean()) / logged.std(), rtol=1e-5, atol=1e-6)
    # sign(x)·log(1 + |x|): odd, 0 at 0, NaN stays NaN (missing: the mean, 0 after standardising).
    np.testing.assert_allclose(signed_log1p(np.array([-9.0, 0.0, 9.0])), [-np.log(10), 0.0, np.log(10)])
    assert np.isnan(signed_log1p(np.array([np.nan])))[0]


def test_default_encoder_json_is_as_before_and_old_files_load() -> None:
    frame = table(200, seed=0)
    plain = encoder(None).fit(frame)
    saved = plain.to_dict()
    assert "numeric_transforms" not in saved and plain.numeric_transforms == ["standard", "standard"]
    assert TableEncoder.from_dict(saved).numeric_transforms == ["standard", "standard"]
    logged = encoder("log").fit(frame)
    again = TableEncoder.from_dict(json.loads(json.dumps(logged.to_dict())))
    assert again.numeric_transforms == ["log", "log"]
    torch.testing.assert_close(again.transform_features(frame)[0], logged.transform_features(frame)[0])
    assert not torch.equal(plain.transform_features(frame)[0], logged.transform_features(frame)[0])


def test_moments_of_transformed_batches_merge_to_the_whole_tables() -> None:
    """What a streamed table's encoder does: each batch's transformed moments, merged."""
    frame = table(500, seed=3)
    whole = encoder("log").fit(frame)
    streamed = encoder("log")
    moments = [Moments(), Moments()]
    for start in range(0, len(frame), 128):
        batch = frame.iloc[start : start + 128]
        for j, column in enumerate(streamed.numeric):
            values = batch[column].to_numpy(dtype=np.float64)
            moments[j] = moments[j].merge(Moments.of(streamed.transform_numeric_column(j, values)))
    categories = [frame[c].fillna("<missing>").astype(str).value_counts().to_dict() for c in streamed.categorical]
    labels = {"clicked": {"0", "1"}, "watch_time": Moments.of(frame["watch_time"].to_numpy(dtype=np.float64))}
    streamed.fit_statistics(moments, categories, labels)
    np.testing.assert_allclose(streamed.means, whole.means, rtol=1e-12)
    np.testing.assert_allclose(streamed.stds, whole.stds, rtol=1e-12)


def test_bad_transforms_are_one_line_errors() -> None:
    with pytest.raises(MmoeError, match="numeric_transform 'quantile' of column 'age' is unknown"):
        encoder("quantile")
    with pytest.raises(MmoeError, match="'device', not numeric"):
        encoder({"device": "log"})


def test_a_log_run_exports_as_it_predicts(tmp_path: Path) -> None:
    frame = table(300, seed=0)
    rows = table(40, seed=1)
    rows.loc[2, "income"] = np.nan
    rows.loc[3, "income"] = -5.0  # negative: the sign is kept
    parts = {
        "train": (frame.iloc[:200], "train"),
        "validation": (frame.iloc[200:250], "v"),
        "test": (frame.iloc[250:], "t"),
    }
    data = fit_encode(encoder({"income": "log"}), parts, {"dataset": "test"})
    config = TrainConfig(epochs=1, batch_size=64, threads=1)
    directory = save_run(tmp_path / "run", None, data, fit(data, "mmoe", config), config)
    run = Run.load(directory)
    assert run.encoder is not None and run.encoder.numeric_transforms == ["standard", "log"]
    from mmoe.estimator import MultiTaskEstimator

    estimator = MultiTaskEstimator.load(directory)
    expected = estimator.predict(rows.drop(columns=["clicked", "watch_time"]))
    file = estimator.export(tmp_path / "model.pt")
    signature = load_signature(file)
    assert "log" in signature["inputs"][0]["meaning"]
    inputs = encode_inputs(rows, signature)
    got = torch.jit.load(str(file))(*(torch.from_numpy(a) for a in inputs.values())).numpy()
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-5, atol=1e-5)
    assert isinstance(expected, pd.DataFrame)
