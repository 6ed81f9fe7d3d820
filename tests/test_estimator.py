"""`MultiTaskEstimator`: the issue's snippet on a DataFrame with text categories and missing values,
scikit-learn's conventions, and the run directory it shares with the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from mmoe import MmoeError, MultiTaskEstimator
from mmoe.cli import main
from mmoe.data.tabular import read_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TASKS = {"income": "binary", "never_married": "binary"}
SMALL = {"num_experts": 4, "expert_units": 8, "epochs": 3, "batch_size": 64, "learning_rate": 0.01}


def adult_like(rows: int = 800, seed: int = 0) -> pd.DataFrame:
    """Census-like rows: text categories with "?" for unknown (as the UCI files write it) and empty
    cells, numbers with missing values, and two binary tasks that depend on them."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, rows).astype(float)
    workclass = rng.choice(np.array(["Private", "Self-emp", "Federal-gov", "?"], dtype=object), rows)
    education = rng.choice(np.array(["HS-grad", "Bachelors", "Masters", "Doctorate"], dtype=object), rows)
    education[rng.random(rows) < 0.1] = None  # empty cells
    hours = rng.normal(40, 12, rows)
    hours[rng.random(rows) < 0.1] = np.nan
    signal = (age - 40) / 15 + (education == "Masters") + (education == "Doctorate") * 1.5 + (hours - 40) / 20
    income = (signal + rng.normal(0, 0.7, rows) > 0.5).astype(int)
    never_married = ((35 - age) / 10 + rng.normal(0, 0.8, rows) > 0).astype(int)
    frame = pd.DataFrame(
        {
            "age": age,
            "workclass": workclass,
            "education": education,
            "hours_per_week": hours,
            "income": income,
            "never_married": never_married,
        }
    )
    frame.index = pd.RangeIndex(1000, 1000 + rows)  # not 0..n-1, so that an index mix-up shows
    return frame


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = adult_like()
    return frame.iloc[:640], frame.iloc[640:]


@pytest.fixture(scope="module")
def fitted(frames: tuple[pd.DataFrame, pd.DataFrame]) -> MultiTaskEstimator:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL).fit(frames[0])
    finally:
        torch.set_num_threads(threads)


def readme_python_section() -> str:
    """The first Python block under the README's "### From Python": the issue's snippet."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    after = text[text.index("### From Python\n") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


def test_the_readme_python_section_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The README's block is executed as it stands, on census-like rows with text categories, "?",
    # empty cells and two binary tasks; 4,000 rows: with the default batch of 1,024 rows, the
    # snippet's 20 epochs are 60 steps.
    code = readme_python_section()
    assert "from mmoe import MultiTaskEstimator" in code and "est.fit(train_df)" in code
    frame = adult_like(4000)
    train_df, test_df = frame.iloc[:3200], frame.iloc[3200:]
    monkeypatch.chdir(tmp_path)  # its runs/ and serve/ go here
    pytest.importorskip("onnxruntime")  # the snippet ends with an ONNX export
    namespace = {"train_df": train_df, "test_df": test_df}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)
    est, proba, same = namespace["est"], namespace["proba"], namespace["same"]
    assert list(proba.columns) == ["income", "never_married"] and proba.index.equals(test_df.index)
    assert proba.notna().all().all() and proba.apply(lambda c: c.between(0, 1)).all().all()
    scores = est.score(test_df)
    assert set(scores) == {"income", "never_married"}
    for metrics in scores.values():
        assert {"auc", "logloss"} <= set(metrics) and metrics["rows"] == len(test_df)
    # The labels depend on the inputs, and the model learned it (0.867 and 0.835 here).
    assert scores["income"]["auc"] > 0.8 and scores["never_married"]["auc"] > 0.8
    gates = est.gates(test_df)
    assert set(gates) == {"income", "never_married"}
    for weights in gates.values():
        assert weights.shape == (len(test_df), 8) and weights.index.equals(test_df.index)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert (tmp_path / "runs" / "adult" / "config.json").is_file()
    pd.testing.assert_frame_equal(same.predict(test_df), proba)  # save/load: identical predictions
    assert (tmp_path / "serve" / "model.onnx").is_file()
    assert (tmp_path / "serve" / "model.onnx.signature.json").is_file()


def test_fitted_attributes_and_history(fitted: MultiTaskEstimator) -> None:
    assert fitted.model_.name == "mmoe" and fitted.model_.hyperparameters["num_experts"] == 4
    assert [task.name for task in fitted.tasks_] == ["income", "never_married"]
    assert len(fitted.history_) == 3 and 1 <= fitted.best_epoch_ <= 3
    assert set(fitted.metrics_) == {"train", "validation", "test"}
    assert fitted.config_["dataset"]["kind"] == "dataframe" and fitted.config_["dataset"]["rows"] == 640
    assert (
        "workclass" in fitted.encoder_.categorical
        and "?" in fitted.encoder_.vocabularies[fitted.encoder_.categorical.index("workclass")]
    )


def test_same_seed_same_model(frames, fitted: MultiTaskEstimator) -> None:
    again = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL).fit(frames[0])
    pd.testing.assert_frame_equal(again.predict(frames[1]), fitted.predict(frames[1]))
    assert again.metrics_ == fitted.metrics_


def test_get_params_set_params_and_clone(fitted: MultiTaskEstimator) -> None:
    params = fitted.get_params()
    assert params["num_experts"] == 4 and params["expert_units"] == 8 and params["tasks"] is TASKS
    assert params["epochs"] == 3 and params["model"] == "mmoe"
    copy = clone(fitted)
    assert copy.get_params() == params and not hasattr(copy, "model_")
    copy.set_params(num_experts=2, tower_units=4, epochs=1)
    assert copy.get_params()["num_experts"] == 2 and copy.get_params()["tower_units"] == 4
    assert copy.get_params()["epochs"] == 1 and fitted.get_params()["num_experts"] == 4
    assert clone(copy).get_params() == copy.get_params()
    # The constructor checks nothing; fit names what is wrong.
    wrong = MultiTaskEstimator(model="shared-bottom", tasks=TASKS, num_experts=3)
    assert wrong.get_params()["num_experts"] == 3
    with pytest.raises(MmoeError, match="model shared-bottom does not take num_experts"):
        wrong.fit(adult_like(50))
    with pytest.raises(MmoeError, match="training option batch_size must be a positive integer, got 0"):
        MultiTaskEstimator(tasks=TASKS, batch_size=0).fit(adult_like(50))
    with pytest.raises(MmoeError, match="option replicas must be at least 1, got 0"):
        MultiTaskEstimator(tasks=TASKS, replicas=0).fit(adult_like(50))
    with pytest.raises(MmoeError, match="option tasks is needed"):
        MultiTaskEstimator().fit(adult_like(50))
    with pytest.raises(MmoeError, match="task column 'spent' not found"):
        MultiTaskEstimator(tasks={"spent": "regression"}).fit(adult_like(50))


def test_predict_before_fit_is_a_clear_error(frames) -> None:
    for method in ("predict", "score", "gates"):
        with pytest.raises(MmoeError, match="is not fitted yet; call fit"):
            getattr(MultiTaskEstimator(tasks=TASKS), method)(frames[1])
    with pytest.raises(NotFittedError):
        MultiTaskEstimator(tasks=TASKS).predict(frames[1])
    with pytest.raises(MmoeError, match="is not fitted yet"):
        MultiTaskEstimator(tasks=TASKS).save("never")


def test_label_columns_and_other_columns_are_ignored_by_predict(fitted: MultiTaskEstimator, frames) -> None:
    test_df = frames[1]
    expected = fitted.predict(test_df)
    without = test_df.drop(columns=["income", "never_married"])
    pd.testing.assert_frame_equal(fitted.predict(without), expected)
    scrambled = test_df.assign(income=1 - test_df["income"], never_married="garbage", extra=3.0)
    pd.testing.assert_frame_equal(fitted.predict(scrambled), expected)
    with pytest.raises(MmoeError, match="missing column"):
        fitted.predict(without.drop(columns=["age"]))


def test_gates_need_a_model_with_gates(frames) -> None:
    est = MultiTaskEstimator(model="shared-bottom", tasks=TASKS, epochs=1).fit(frames[0])
    with pytest.raises(MmoeError, match="model shared-bottom has no gates"):
        est.gates(frames[1])


def test_validation_rows_of_your_own(frames) -> None:
    train_df, test_df = frames
    est = MultiTaskEstimator(tasks=TASKS, test_fraction=None, **SMALL).fit(train_df, validation=test_df)
    assert est.metrics_["validation"]["income"]["rows"] == len(test_df)
    assert est.metrics_["train"]["income"]["rows"] == len(train_df) and est.metrics_["test"]["income"]["rows"] == 0


def test_csv_path_and_parquet_folder_equal_the_dataframe(tmp_path: Path, frames, fitted: MultiTaskEstimator) -> None:
    train_df, test_df = frames
    csv = tmp_path / "train.csv"
    train_df.to_csv(csv, index=False)
    from_csv = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL).fit(csv)
    # The CSV's rows read back are the DataFrame's (empty cells and NaN both missing): the same model.
    pd.testing.assert_frame_equal(from_csv.predict(test_df), fitted.predict(test_df))
    assert from_csv.config_["dataset"]["kind"] == "table" and from_csv.config_["dataset"]["path"] == str(csv)
    folder = tmp_path / "parquet"
    folder.mkdir()
    table = train_df.reset_index(drop=True)
    table.iloc[:300].to_parquet(folder / "part-0.parquet")
    table.iloc[300:].to_parquet(folder / "part-1.parquet")
    from_folder = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL).fit(folder)
    pd.testing.assert_frame_equal(from_folder.predict(test_df), fitted.predict(test_df))
    # A path to predict and score reads the table the same way.
    test_csv = tmp_path / "test.csv"
    test_df.to_csv(test_csv, index=False)
    np.testing.assert_allclose(from_csv.predict(test_csv).to_numpy(), fitted.predict(test_df).to_numpy(), rtol=1e-6)
    assert from_csv.score(test_csv)["income"] == pytest.approx(fitted.score(test_df)["income"], rel=1e-6)


def test_streamed_table_scores_and_predicts_as_in_memory(tmp_path: Path, frames) -> None:
    train_df, test_df = frames
    folder = tmp_path / "table"
    folder.mkdir()
    train_df.reset_index(drop=True).to_parquet(folder / "part-0.parquet")
    test_file = tmp_path / "test.parquet"
    test_df.reset_index(drop=True).to_parquet(test_file)
    est = MultiTaskEstimator(model="mmoe", tasks=TASKS, streaming=True, seed=0, **SMALL).fit(folder)
    assert est.config_["dataset"]["streaming"] is True
    in_memory = est.score(read_table(test_file))
    streamed = est.score(test_file)  # streaming=True: read in batches
    for task in TASKS:
        assert streamed[task] == pytest.approx(in_memory[task], rel=1e-6)
    run = est.save(tmp_path / "run")
    assert main(["predict", str(run), "--data", str(test_file), "--streaming", "--out", str(tmp_path / "p.csv")]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv").to_numpy(), est.predict(test_file).to_numpy(), rtol=1e-6)
    with pytest.raises(MmoeError, match="streaming=True reads a Parquet table from disk"):
        MultiTaskEstimator(tasks=TASKS, streaming=True).fit(train_df)


def test_a_mmoe_train_directory_loads(tmp_path: Path, frames, capsys) -> None:
    train_df, test_df = frames
    csv, new_rows = tmp_path / "train.csv", tmp_path / "new.csv"
    train_df.to_csv(csv, index=False)
    test_df.to_csv(new_rows, index=False)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(csv),
                "--tasks",
                "income:binary,never_married:binary",
                "--num-experts",
                "4",
                "--expert-units",
                "8",
                "--epochs",
                "3",
                "--batch-size",
                "64",
                "--lr",
                "0.01",
                "--threads",
                "1",
                "--out",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["predict", str(run), "--data", str(new_rows), "--out", str(tmp_path / "cli.csv")]) == 0
    capsys.readouterr()
    loaded = MultiTaskEstimator.load(run)
    assert loaded.get_params()["num_experts"] == 4 and loaded.get_params()["epochs"] == 3
    assert loaded.metrics_ == json.loads((run / "metrics.json").read_text())
    np.testing.assert_allclose(
        loaded.predict(new_rows).to_numpy(), pd.read_csv(tmp_path / "cli.csv").to_numpy(), rtol=1e-6
    )
    # The same options in Python train the same model (the CLI is a layer over the estimator).
    same = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, threads=1, **SMALL).fit(csv)
    pd.testing.assert_frame_equal(same.predict(test_df), loaded.predict(test_df))
    assert same.config_["dataset"] == loaded.config_["dataset"]
    # And the loaded estimator is a fitted estimator: it saves and clones like one.
    loaded.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == json.loads((run / "config.json").read_text())
    assert not hasattr(clone(loaded), "model_")


def test_an_estimator_directory_is_read_by_evaluate_predict_and_export(
    tmp_path: Path, frames, fitted: MultiTaskEstimator, capsys
) -> None:
    train_df, test_df = frames
    labelled = tmp_path / "labelled.csv"
    test_df.to_csv(labelled, index=False)
    run = fitted.save(tmp_path / "run")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(labelled), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for task, metrics in fitted.score(test_df).items():
        assert evaluated[task] == pytest.approx(metrics, rel=1e-6)
    # Rows fitted from memory cannot be loaded again: evaluate says what to give instead.
    assert main(["evaluate", str(run)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mmoe: error: ") and "fitted on rows given in memory" in error and "--data" in error
    assert (
        main(["predict", str(run), "--data", str(labelled), "--out", str(tmp_path / "p.parquet"), "--keep", "age"]) == 0
    )
    predicted = pd.read_parquet(tmp_path / "p.parquet")
    assert list(predicted.columns) == ["age", "income", "never_married"]
    np.testing.assert_allclose(
        predicted[["income", "never_married"]].to_numpy(), fitted.predict(test_df).to_numpy(), rtol=1e-6
    )
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "model.pt")]) == 0

    # A run of a built-in data set keeps its description, and `mmoe evaluate` finds the same split.
    synthetic = {"kind": "synthetic", "config": {"rows": 400, "correlation": 0.5}, "split_seed": 0}
    est = MultiTaskEstimator(model="omoe", epochs=2, seed=0).fit(synthetic)
    est.save(tmp_path / "synthetic")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "synthetic"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated.keys() == est.metrics_["test"].keys() == {"y1", "y2"}
    for task, metrics in est.metrics_["test"].items():
        assert evaluated[task] == pytest.approx(metrics, rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load, which TorchScript serving uses
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_export_equals_predict(tmp_path: Path, fitted: MultiTaskEstimator, frames, suffix: str) -> None:
    from mmoe.export import encode_inputs, load_signature

    test_df = frames[1]
    path = fitted.export(tmp_path / f"model{suffix}")
    signature = load_signature(path)
    inputs = encode_inputs(test_df, signature)
    if suffix == ".onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["predictions"], inputs)[0]
    else:
        module = torch.jit.load(str(path))
        with torch.no_grad():
            got = module(*(torch.from_numpy(inputs[entry["name"]]) for entry in signature["inputs"])).numpy()
    np.testing.assert_allclose(got, fitted.predict(test_df).to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(MmoeError, match="cannot tell the export format"):
        fitted.export(tmp_path / "model.bin")


def test_a_run_directory_of_an_older_format_is_refused_with_how_to_convert(tmp_path: Path, fitted) -> None:
    run = fitted.save(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["tasks"], config["input_spec"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        MmoeError,
        match=r"no tasks, input_spec; .* older mmoe; convert it by training it again: "
        r"`mmoe train --config .*config.json --out NEW_RUN`",
    ):
        MultiTaskEstimator.load(run)


def test_replicas_and_callbacks(frames) -> None:
    entries: list[dict] = []
    est = MultiTaskEstimator(tasks=TASKS, callbacks=[entries.append], **SMALL).fit(frames[0])
    assert [entry["epoch"] for entry in entries] == [1, 2, 3] and entries == est.history_
    population = MultiTaskEstimator(tasks=TASKS, replicas=2, **SMALL).fit(frames[0])
    assert [r["seed"] for r in population.replicas_["replicas"]] == [0, 1]
    assert set(population.replicas_["test_summary"]) == set(TASKS)


def test_a_run_of_the_current_release_loads(tmp_path: Path, capsys) -> None:
    """tests/data/run-0.1.0: `mmoe train --data train.csv --tasks income:binary,never_married:binary
    --num-experts 2 --expert-units 4 --epochs 2 --threads 1` as mmoe 0.1.0 (commit 7dc5b1d, before
    the estimator) wrote it (without checkpoint.pt), and that release's `mmoe predict` of
    run-0.1.0-rows.csv. Today's estimator and CLI load it and predict the same numbers."""
    data = Path(__file__).parent / "data"
    release = pd.read_csv(data / "run-0.1.0-predictions.csv")
    loaded = MultiTaskEstimator.load(data / "run-0.1.0")
    assert loaded.get_params()["num_experts"] == 2 and loaded.config_["versions"]["mmoe"] == "0.1.0"
    np.testing.assert_allclose(loaded.predict(data / "run-0.1.0-rows.csv").to_numpy(), release.to_numpy(), rtol=1e-6)
    assert (
        main(
            [
                "predict",
                str(data / "run-0.1.0"),
                "--data",
                str(data / "run-0.1.0-rows.csv"),
                "--out",
                str(tmp_path / "p.csv"),
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv"), release)


def test_vocabulary_options_are_stored_unchanged_and_reach_the_encoder(tmp_path: Path, frames) -> None:
    train_df, test_df = frames
    options = {"hash_buckets": {"workclass": 8}, "min_frequency": 70, "one_hot": ["workclass"], "embedding_dim": 4}
    estimator = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL, **options)
    params = estimator.get_params()
    assert all(params[name] is value for name, value in options.items())  # scikit-learn: stored as given
    assert params["embed"] is None and params["max_categories"] is None
    assert clone(estimator).get_params() == params
    estimator.fit(train_df)
    encoder = estimator.encoder_
    assert encoder.hash_sizes == [8, 0] and encoder.vocabularies[0] == []
    # Each degree is in about a quarter of the ~510 training rows; the empty cells (a tenth) fall below 70.
    assert encoder.vocabularies[1] == ["Bachelors", "Doctorate", "HS-grad", "Masters"]
    assert estimator.input_spec_.embedding_dims == ()  # 8 buckets and a few values: one-hot
    assert {name: estimator.dataset_[name] for name in options} == options
    # The description written to config.json brings the options back with the run.
    estimator.save(tmp_path / "run")
    loaded = MultiTaskEstimator.load(tmp_path / "run")
    assert {name: loaded.get_params()[name] for name in options} == options
    pd.testing.assert_frame_equal(loaded.predict(test_df), estimator.predict(test_df))
    # A path is read with the same options (the data set description's keys).
    csv = tmp_path / "train.csv"
    train_df.to_csv(csv, index=False)
    from_csv = MultiTaskEstimator(model="mmoe", tasks=TASKS, seed=0, **SMALL, **options).fit(csv)
    assert from_csv.encoder_.to_dict() == encoder.to_dict()
    with pytest.raises(MmoeError, match=r"option hash_buckets \(--hash-buckets\) for column 'workclass'"):
        MultiTaskEstimator(tasks=TASKS, hash_buckets={"workclass": 0}).fit(train_df)
    with pytest.raises(MmoeError, match="'colour' is not a categorical feature column"):
        MultiTaskEstimator(tasks=TASKS, embed=["colour"]).fit(train_df)
