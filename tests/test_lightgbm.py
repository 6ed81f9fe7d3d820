"""The LightGBM baseline (`--model lightgbm`, `mmoe.baselines`): one booster per task on mmoe's own
split, encoding and metrics; the estimator's and the CLI's round trips; one-line errors for the
neural-model options it cannot take; and mmoe without lightgbm installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmoe import MmoeError, MultiTaskEstimator
from mmoe.baselines import BASELINES, fit_baseline, hyperparameter_options, model_names
from mmoe.cli import main
from mmoe.models import MODELS

TASKS = {"clicked": "binary", "watch_time": "regression"}
SMALL = {"max_rounds": 60, "early_stopping_rounds": 10, "num_leaves": 7, "min_data_in_leaf": 5, "threads": 1}


@pytest.fixture
def lgb():
    return pytest.importorskip("lightgbm", reason="the lightgbm baseline needs pip install 'mmoe[lightgbm]'")


def table(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A binary task on every row and a regression task missing on about 30% of them; a text
    category that matters (with a value that only shows up in a few rows), numbers with gaps."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    age[rng.random(rows) < 0.05] = np.nan
    device = rng.choice(np.array(["phone", "tablet", "tv", "watch"], dtype=object), rows, p=[0.4, 0.3, 0.28, 0.02])
    signal = (np.nan_to_num(age, nan=40) - 40) / 10 + (device == "tv") * 1.5 - (device == "tablet")
    clicked = (signal + rng.normal(0, 0.5, rows) > 0.2).astype(int)
    watch_time = np.where(rng.random(rows) < 0.7, 30 + 12 * signal + rng.normal(0, 1, rows), np.nan)
    frame = pd.DataFrame({"age": age, "device": device, "clicked": clicked, "watch_time": watch_time})
    frame.index = pd.RangeIndex(500, 500 + rows)
    return frame


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = table()
    return frame.iloc[:1600], frame.iloc[1600:]


def fitted_estimator(train: pd.DataFrame, **options) -> MultiTaskEstimator:
    return MultiTaskEstimator(model="lightgbm", tasks=TASKS, **{**SMALL, **options}).fit(train)


# -- declared like a model --------------------------------------------------------------------------
def test_lightgbm_is_listed_and_its_options_are_flags(capsys) -> None:
    assert "lightgbm" in BASELINES and "lightgbm" not in MODELS  # not a MultiTaskModel
    assert model_names() == [*MODELS, "lightgbm"]
    options = hyperparameter_options()
    assert options["num_leaves"].models == ("lightgbm",)
    assert "lightgbm" not in options["tower_units"].models
    assert main(["models", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == model_names()
    assert (
        "defaults: num_leaves=63, boosting_learning_rate=0.05, max_rounds=5000, early_stopping_rounds=50, "
        "min_data_in_leaf=20" in out
    )
    help_text = _train_help(capsys)
    for flag in ("--num-leaves", "--boosting-learning-rate", "--max-rounds", "--early-stopping-rounds"):
        assert flag in help_text


def _train_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    return capsys.readouterr().out


# -- the estimator --------------------------------------------------------------------------------
def test_fit_predict_score_save_load_round_trip(lgb, frames, tmp_path: Path) -> None:
    train, test = frames
    estimator = fitted_estimator(train)
    predictions = estimator.predict(test)
    assert list(predictions.columns) == list(TASKS) and predictions.index.equals(test.index)
    assert predictions["clicked"].between(0, 1).all()
    # The regression task comes back in the label's own units (the booster predicts it standardised).
    assert abs(predictions["watch_time"].mean() - train["watch_time"].mean()) < 3
    scores = estimator.score(test)
    assert scores["clicked"]["auc"] > 0.85 and scores["watch_time"]["r2"] > 0.8
    assert scores["watch_time"]["rows"] == int(test["watch_time"].notna().sum())  # missing labels left out
    assert set(estimator.metrics_) == {"train", "validation", "test"}

    directory = estimator.save(tmp_path / "run")
    assert sorted(p.name for p in directory.iterdir()) == [
        "booster-0.txt",
        "booster-1.txt",
        "config.json",
        "encoder.json",
        "history.json",
        "metrics.json",
    ]
    assert not list(directory.glob(".*.tmp"))  # written to a temp file, then renamed
    config = json.loads((directory / "config.json").read_text())
    assert config["model"] == "lightgbm" and config["training"] == {"seed": 0, "threads": 1}
    assert config["hyperparameters"] == {
        **{k: v for k, v in SMALL.items() if k != "threads"},
        "boosting_learning_rate": 0.05,
    }
    assert set(config["best_rounds"]) == set(TASKS) and config["versions"]["lightgbm"] == lgb.__version__
    # LightGBM's own text format, the category codes as a categorical feature (the column after "age").
    booster = lgb.Booster(model_file=str(directory / "booster-0.txt"))
    assert booster.num_trees() == config["best_rounds"]["clicked"]
    assert "[categorical_feature: 1]" in (directory / "booster-0.txt").read_text()

    loaded = MultiTaskEstimator.load(directory)
    pd.testing.assert_frame_equal(loaded.predict(test), predictions)
    assert loaded.score(test) == scores
    assert loaded.get_params()["num_leaves"] == 7 and loaded.model == "lightgbm"
    assert loaded.metrics_ == json.loads((directory / "metrics.json").read_text())


def test_each_task_trains_on_its_labelled_rows_and_stops_on_the_validation_split(lgb, frames) -> None:
    train, _ = frames
    estimator = fitted_estimator(train, max_rounds=400)
    income, watch = estimator.history_
    labelled = int(train["watch_time"].notna().sum())
    # 80% of the rows train (validation_fraction 0.1, test_fraction 0.1): every one for the binary
    # task, only those with a watch time for the regression task.
    assert income["train_rows"] + income["validation_rows"] < len(train)
    assert watch["train_rows"] < income["train_rows"] and watch["train_rows"] + watch["validation_rows"] <= labelled
    assert (income["metric"], watch["metric"]) == ("auc", "l2")
    for entry in (income, watch):
        assert entry["stopped_early"] and entry["rounds"] == entry["best_round"] + 10
        best = max(entry["validation"]) if entry["metric"] == "auc" else min(entry["validation"])
        assert entry["best_validation"] == best


def test_the_same_seed_gives_the_same_boosters_and_the_options_reach_lightgbm(lgb, frames) -> None:
    train, test = frames
    first = fitted_estimator(train).predict(test)
    pd.testing.assert_frame_equal(fitted_estimator(train).predict(test), first)
    stumps = fitted_estimator(train, num_leaves=2, max_rounds=3)
    assert [entry["rounds"] for entry in stumps.history_] == [3, 3]
    assert stumps.model_.num_parameters() == 2 * sum(entry["best_round"] for entry in stumps.history_)


def test_an_unseen_category_predicts(lgb, frames) -> None:
    train, test = frames
    estimator = fitted_estimator(train)
    odd = test.assign(device="fridge")
    assert np.isfinite(estimator.predict(odd).to_numpy()).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"learning_rate": 0.1},
            "option learning_rate is a neural-model option; model lightgbm is a baseline and "
            "cannot take it (its own is boosting_learning_rate)",
        ),
        (
            {"epochs": 5},
            "option epochs is a neural-model option; model lightgbm is a baseline and cannot take it "
            "(its own is max_rounds)",
        ),
        ({"batch_size": 64}, "option batch_size is a neural-model option"),
        ({"task_weights": (1, 2)}, "option task_weights is a neural-model option"),
        ({"replicas": 2}, "option replicas is a neural-model option"),
        ({"callbacks": [print]}, "option callbacks is a neural-model option"),
        ({"num_experts": 4}, "model lightgbm does not take num_experts; it takes num_leaves, "),
        ({"num_leaves": 1}, "model lightgbm: num_leaves must be at least 2, got 1"),
        ({"boosting_learning_rate": -1.0}, "model lightgbm: boosting_learning_rate must be a positive number"),
    ],
)
def test_options_it_cannot_take_are_one_line_errors(frames, options, message) -> None:
    train, _ = frames
    with pytest.raises(MmoeError) as error:
        MultiTaskEstimator(model="lightgbm", tasks=TASKS, **options).fit(train)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_resume_streaming_export_and_gates_are_neural_model_options(lgb, frames, tmp_path: Path) -> None:
    train, test = frames
    estimator = MultiTaskEstimator(model="lightgbm", tasks=TASKS)
    with pytest.raises(MmoeError, match="^option resume is a neural-model option"):
        estimator.fit(train, checkpoint=tmp_path / "c.pt", resume=True)
    train.to_parquet(tmp_path / "train.parquet")
    with pytest.raises(MmoeError, match="^option streaming is a neural-model option"):
        MultiTaskEstimator(model="lightgbm", tasks=TASKS, streaming=True).fit(tmp_path / "train.parquet")
    fitted = fitted_estimator(train)
    with pytest.raises(MmoeError, match="^mmoe export is a neural-model option; model lightgbm is a baseline"):
        fitted.export(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
    with pytest.raises(MmoeError, match="^gates is a neural-model option"):
        fitted.gates(test)


def test_a_multi_valued_column_is_refused(lgb, tmp_path: Path) -> None:
    frame = table(200).assign(recent=lambda f: np.where(f["clicked"] == 1, "a|b", "c"))
    with pytest.raises(MmoeError, match="column 'recent' is multi-valued"):
        MultiTaskEstimator(model="lightgbm", tasks=TASKS, multi_value="recent", **SMALL).fit(frame)


# -- the command line -----------------------------------------------------------------------------
def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_evaluate_predict_on_a_csv(lgb, capsys, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    table(400, seed=1).to_csv(data, index=False)
    run = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", "--data", data, "--tasks", "clicked:binary,watch_time:regression", "--model", "lightgbm",
        "--max-rounds", 40, "--num-leaves", 5, "--min-data-in-leaf", 5, "--threads", 1, "--out", run,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("lightgbm: one model per task, ") and "best rounds clicked " in out
    assert "lightgbm clicked: best round " in err  # the per-task line (verbose 1)
    config = json.loads((run / "config.json").read_text())
    assert config["hyperparameters"]["num_leaves"] == 5 and config["hyperparameters"]["max_rounds"] == 40

    code, out, err = run_cli(capsys, "evaluate", run, "--json")
    assert code == 0, err
    assert json.loads(out) == json.loads((run / "metrics.json").read_text())["test"]

    code, _, err = run_cli(capsys, "predict", run, "--data", data, "--out", tmp_path / "p.csv", "--keep", "age")
    assert code == 0, err
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert list(predictions.columns) == ["age", "clicked", "watch_time"] and len(predictions) == 400
    expected = MultiTaskEstimator.load(run).predict(pd.read_csv(data))
    np.testing.assert_allclose(predictions[["clicked", "watch_time"]].to_numpy(), expected.to_numpy(), rtol=1e-6)

    # A Parquet table read batch by batch: the same metrics and predictions as read whole.
    pd.read_csv(data).to_parquet(tmp_path / "rows.parquet")
    code, whole, err = run_cli(capsys, "evaluate", run, "--data", data, "--json")
    assert code == 0, err
    code, streamed, err = run_cli(capsys, "evaluate", run, "--data", tmp_path / "rows.parquet", "--streaming", "--json")
    assert code == 0, err
    for task, metrics in json.loads(whole).items():
        assert json.loads(streamed)[task] == pytest.approx(metrics)
    code, _, err = run_cli(
        capsys, "predict", run, "--data", tmp_path / "rows.parquet", "--out", tmp_path / "p.parquet", "--streaming"
    )
    assert code == 0, err
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "p.parquet").to_numpy(), expected.to_numpy(), rtol=1e-6)

    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "m.onnx")
    assert code == 2 and err.strip() == (
        "mmoe: error: mmoe export is a neural-model option; model lightgbm is a baseline and cannot take it"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--replicas", "2"], "--replicas is a neural-model option"),
        (["--resume"], "--resume is a neural-model option"),
        (["--distributed", "2"], "--distributed is a neural-model option"),
        (["--log-dir", "logs"], "--log-dir is a neural-model option"),
        (["--mlflow"], "--mlflow is a neural-model option"),
        (
            ["--learning-rate", "0.1"],
            "--learning-rate is a neural-model option; model lightgbm is a baseline and "
            "cannot take it (its own is --boosting-learning-rate)",
        ),
        (["--epochs", "3"], "(its own is --max-rounds)"),
        (["--num-experts", "3"], "model lightgbm does not take --num-experts"),
    ],
)
def test_neural_model_flags_are_one_line_errors(capsys, tmp_path: Path, flags, message) -> None:
    data = tmp_path / "rows.csv"
    table(100).to_csv(data, index=False)
    base = ["train", "--data", data, "--tasks", "clicked:binary", "--model", "lightgbm", "--out", tmp_path / "r"]
    code, _, err = run_cli(capsys, *base, *flags)
    assert code == 2 and message in err and err.count("\n") == 1


def test_tune_is_a_neural_model_option(capsys) -> None:
    code, _, err = run_cli(capsys, "tune", "--dataset", "synthetic", "--model", "lightgbm")
    assert code == 2 and err.strip() == (
        "mmoe: error: mmoe tune is a neural-model option; model lightgbm is a baseline and cannot take it"
    )


def test_a_neural_model_refuses_the_baselines_options(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--model", "mmoe", "--num-leaves", "8")
    assert code == 2 and "model mmoe does not take --num-leaves" in err


# -- without lightgbm -----------------------------------------------------------------------------
def test_mmoe_runs_without_lightgbm_and_says_how_to_install_it(monkeypatch, frames, capsys) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # `import lightgbm` now raises ImportError
    train, _ = frames
    assert main(["models"]) == 0 and "lightgbm" in capsys.readouterr().out
    with pytest.raises(
        MmoeError, match=r"needs the package lightgbm, which is not installed; pip install 'mmoe\[lightgbm\]'"
    ):
        MultiTaskEstimator(model="lightgbm", tasks=TASKS, **SMALL).fit(train)


def test_fit_baseline_on_a_multi_task_data(lgb) -> None:
    from tests.conftest import toy_data

    data = toy_data(missing_second=0.3)
    result = fit_baseline(data, "lightgbm", seed=0, threads=1, max_rounds=50, min_data_in_leaf=5)
    assert result.best_rounds.keys() == {"clicked", "watch_time"}
    assert result.metrics["test"]["clicked"]["auc"] > 0.8
    assert result.metrics["test"]["watch_time"]["rows"] == int((~data.test.labels[:, 1].isnan()).sum())


# -- mmoe reproduce's census tables ---------------------------------------------------------------
def test_the_census_tables_gain_a_lightgbm_row(lgb, census_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from mmoe.experiments import census
    from mmoe.experiments.context import StudyContext
    from mmoe.experiments.scale import get_scale
    from mmoe.report.report import _census

    scale = replace(get_scale("tiny"), census_models=("single-task",), census_groups=(1,))
    ctx = StudyContext(out=tmp_path, scale=scale, data_dir=census_dir, show_progress=False)
    result = census.run(ctx)
    group = result["groups"]["1"]
    assert list(group["models"]) == ["single-task"] and list(group["baselines"]) == ["lightgbm"]
    baseline = group["baselines"]["lightgbm"]
    assert [run["seed"] for run in baseline["runs"]] == [0, 1]  # the repeats' seeds
    assert len(list(tmp_path.rglob("census-baseline-runs-*.json"))) == 1  # cached: a rerun fits nothing again
    assert baseline["summary"]["income"]["mean"] > 0.85 and baseline["options"]["num_leaves"] == 63
    row = next(line for line in _census(result) if line.startswith("| lightgbm (baseline) |"))
    assert f"{baseline['summary']['income']['mean']:.4f} (—)" in row and "not tuned: num_leaves=63" in row
