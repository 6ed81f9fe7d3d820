"""The command line end to end: train / evaluate / predict / synthetic, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmoe.cli import build_parser, main
from mmoe.models import MODELS


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def recommendation_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Clicks for every row, watch time only for some (missing otherwise), a text column."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    device = rng.choice(["phone", "tablet", "tv"], rows)
    signal = (age - 40) / 10 + (device == "tv") * 1.5
    clicked = np.where(signal + rng.normal(0, 0.5, rows) > 0.3, "yes", "no")
    watch_time = np.where(rng.random(rows) < 0.7, 30 + 12 * signal + rng.normal(0, 1, rows), np.nan)
    return pd.DataFrame({"user": np.arange(rows), "age": age, "device": device, "clicked": clicked,
                         "watch_time": watch_time})


def test_models_lists_the_seven_models(capsys) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == list(MODELS)


def _subcommands() -> dict:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


def test_the_command_list_is_what_the_readme_documents() -> None:
    assert set(_subcommands()) == {"models", "train", "tune", "evaluate", "predict", "export", "synthetic",
                                   "reproduce"}


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_has_help_with_defaults(command: str) -> None:
    help_text = _subcommands()[command].format_help()
    assert "usage: mmoe " + command in help_text
    if command in ("train", "tune", "synthetic", "reproduce", "export"):
        assert "(default:" in help_text


def test_synthetic_writes_a_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth.csv"
    code, _, err = run_cli(capsys, "synthetic", "--correlation", "0.9", "--rows", "500", "--seed", "3", "--out", out)
    assert code == 0, err
    frame = pd.read_csv(out)
    assert frame.shape == (500, 102) and list(frame.columns[-2:]) == ["y1", "y2"]


def test_train_evaluate_predict_on_your_own_table(tmp_path: Path, capsys) -> None:
    table, new_rows = tmp_path / "table.csv", tmp_path / "new.parquet"
    recommendation_table().to_csv(table, index=False)
    fresh = recommendation_table(20, seed=1).drop(columns=["clicked", "watch_time"])
    fresh.loc[0, "device"] = "watch"  # a category never seen in training
    fresh.to_parquet(new_rows)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--data", table, "--tasks", "clicked:binary,watch_time:regression",
                             "--features", "age,device", "--positive", "clicked=yes", "--epochs", "5",
                             "--batch-size", "32", "--lr", "0.01", "--out", run, "--quiet")
    assert code == 0, err
    for name in ("model.pt", "encoder.json", "config.json", "metrics.json", "history.json", "checkpoint.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    assert set(metrics["test"]["clicked"]) >= {"auc", "logloss"}
    assert set(metrics["test"]["watch_time"]) >= {"mse", "r2"}
    assert metrics["test"]["watch_time"]["rows"] < metrics["test"]["clicked"]["rows"]  # missing labels left out
    assert metrics["test"]["clicked"]["auc"] > 0.8

    code, out, err = run_cli(capsys, "evaluate", run, "--json")
    assert code == 0, err
    assert json.loads(out)["clicked"]["auc"] == pytest.approx(metrics["test"]["clicked"]["auc"])

    predictions = tmp_path / "predictions.csv"
    code, _, err = run_cli(capsys, "predict", run, "--data", new_rows, "--out", predictions, "--keep", "user")
    assert code == 0, err
    result = pd.read_csv(predictions)
    assert list(result.columns) == ["user", "clicked", "watch_time"] and len(result) == 20
    assert result["clicked"].between(0, 1).all()
    assert result["watch_time"].between(-50, 150).all()  # in the label's own units (about 30 ± 12)


def test_train_on_synthetic_data_is_deterministic(tmp_path: Path, capsys) -> None:
    runs = []
    for name in ("first", "second"):
        code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--correlation", "0.5", "--rows", "1000",
                               "--model", "omoe", "--epochs", "3", "--out", tmp_path / name, "--quiet")
        assert code == 0, err
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert runs[0] == runs[1]
    assert set(runs[0]["test"]) == {"y1", "y2"}


@pytest.fixture()
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    recommendation_table(60).to_csv(path, index=False)
    return path


def _bad(capsys, tmp_path: Path, *args: str, expect: tuple[str, ...]) -> None:
    out = tmp_path / "bad-run"
    code, _, err = run_cli(capsys, *args, "--out", out) if "--out" not in args else run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    for fragment in expect:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (out / "metrics.json").exists()


def test_error_missing_file(tmp_path: Path, capsys) -> None:
    _bad(capsys, tmp_path, "train", "--data", tmp_path / "nope.csv", "--tasks", "a:binary", expect=("nope.csv",))


def test_error_task_column_does_not_exist(tmp_path: Path, capsys, table_file: Path) -> None:
    _bad(capsys, tmp_path, "train", "--data", table_file, "--tasks", "converted:binary", expect=("converted",))


def test_error_binary_column_with_three_values(tmp_path: Path, capsys) -> None:
    path = tmp_path / "three.csv"
    frame = recommendation_table(60)
    frame.loc[::3, "clicked"] = "maybe"
    frame.to_csv(path, index=False)
    _bad(capsys, tmp_path, "train", "--data", path, "--tasks", "clicked:binary", expect=("clicked", "maybe"))


def test_error_text_in_a_numeric_column(tmp_path: Path, capsys) -> None:
    path = tmp_path / "text.csv"
    frame = recommendation_table(60).astype({"age": object})
    frame.loc[7, "age"] = "forty"
    frame.to_csv(path, index=False)
    _bad(capsys, tmp_path, "train", "--data", path, "--tasks", "clicked:binary", "--positive", "clicked=yes",
         "--numeric", "age", expect=("age", "forty"))


def test_error_empty_table(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("age,device,clicked\n")
    _bad(capsys, tmp_path, "train", "--data", path, "--tasks", "clicked:binary", expect=("empty.csv",))


def test_error_unknown_model(tmp_path: Path, capsys, table_file: Path) -> None:
    _bad(capsys, tmp_path, "train", "--data", table_file, "--tasks", "clicked:binary", "--model", "gpt",
         expect=("gpt", "mmoe"))


def test_error_option_the_model_does_not_take(tmp_path: Path, capsys) -> None:
    _bad(capsys, tmp_path, "train", "--dataset", "synthetic", "--rows", "300", "--model", "shared-bottom",
         "--num-experts", "4", expect=("--num-experts", "shared-bottom"))


def test_error_census_file_with_a_wrong_checksum(tmp_path: Path, capsys) -> None:
    import gzip

    data_dir = tmp_path / "census"
    data_dir.mkdir()
    for name in ("census-income.data.gz", "census-income.test.gz"):
        with gzip.open(data_dir / name, "wt") as handle:
            handle.write("not the census\n")
    _bad(capsys, tmp_path, "train", "--dataset", "census", "--data-dir", data_dir,
         expect=("census-income", "sha256"))


def test_error_predict_leaves_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "predictions.csv"
    _bad(capsys, tmp_path, "predict", tmp_path / "no-run", "--data", tmp_path / "x.csv", "--out", out,
         expect=("no-run",))
    assert not out.exists()


def test_model_flags_come_from_the_models_declarations_with_their_names_types_and_defaults(tmp_path: Path,
                                                                                          capsys) -> None:
    """One flag per hyperparameter name (generated, not listed by hand): the seven flags of before
    keep their name, type and default (None: the model's own default), and --self-weight, which
    Cross-Stitch always took, is a flag now too."""
    train = _subcommands()["train"]
    group = next(g for g in train._action_groups if g.title.startswith("model"))
    flags = {action.option_strings[0]: action for action in group._group_actions if action.dest != "model"}
    assert set(flags) == {"--num-experts", "--expert-units", "--tower-units", "--hidden-units", "--l2-alpha",
                          "--ranks", "--stitch", "--self-weight"}
    assert all(action.default is None and action.dest == flag[2:].replace("-", "_") for flag, action in flags.items())
    assert flags["--num-experts"].type is int and flags["--l2-alpha"].type is float
    assert flags["--self-weight"].type is float
    for flag in ("--expert-units", "--tower-units", "--hidden-units", "--ranks"):
        assert flags[flag].type("32,16") == (32, 16) and flags[flag].type("8") == (8,)
    assert list(flags["--stitch"].choices) == ["layer", "unit"]
    # The help names every model that takes the flag, with its default.
    help_text = " ".join(train.format_help().split())
    help_text = help_text[help_text.index("model (options"):help_text.index(" training:")]
    assert "number of experts (default 8: omoe, mmoe)" in help_text
    assert "(default 128: shared-bottom)" in help_text and "(default 16,16,2: tensor-factorization)" in help_text
    assert "(default: None)" not in help_text
    # A flag reaches the model under its parameter name; unset ones keep the model's default.
    code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--rows", "300", "--model", "cross-stitch",
                           "--self-weight", "1.0", "--hidden-units", "6", "--epochs", "1", "--threads", "1", "--quiet",
                           "--out", tmp_path / "run")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["hyperparameters"] == {"hidden_units": [6], "tower_units": [8], "stitch": "layer",
                                         "self_weight": 1.0}
