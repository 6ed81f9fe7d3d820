"""The command line end to end: train / evaluate / predict / synthetic, and bad input."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmoe.baselines import BASELINES
from mmoe.cli import build_parser, main
from mmoe.errors import MmoeError
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
    return pd.DataFrame(
        {"user": np.arange(rows), "age": age, "device": device, "clicked": clicked, "watch_time": watch_time}
    )


def test_models_lists_the_seven_models(capsys) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == [*MODELS, *BASELINES]  # then the baselines


def _subcommands() -> dict:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    """The first fenced code block after the README's `heading` line."""
    text = README.read_text()
    after = text[text.index(heading + "\n") :]
    start = after.index("```")
    body = after[after.index("\n", start) + 1 :]
    return body[: body.index("```")]


def quick_start_commands() -> dict[int, str]:
    """{n: command line} of the README's Quick start block, where "# n. ..." comments number them."""
    commands, number = {}, None
    for line in readme_block("## Quick start (a fresh machine)").splitlines():
        comment = re.match(r"#\s*(\d+)\.", line.strip())
        if comment:
            number = int(comment.group(1))
        elif line.strip() and number is not None:
            commands[number] = line.strip()
    return commands


def test_the_command_list_is_what_the_readme_documents() -> None:
    # Every command is in the README's list, and the README lists no command that does not exist.
    documented = set(re.findall(r"^mmoe ([a-z]+)", readme_block("## What you can do"), re.MULTILINE))
    assert documented == set(_subcommands())


def test_readme_quick_start_main_job_runs(capsys) -> None:
    """Command 1 of the README's Quick start installs and then runs the main job; the job is read
    from the README (so changing the README changes what runs here) and run at a reduced size:
    3,000 rows and 4 epochs instead of 20,000 and 30, as the full job takes a minute. What it must
    show: MMoE and Shared-Bottom side by side, at both correlations, with test R² per task."""
    first = quick_start_commands()[1]
    steps = [step.strip() for step in first.split("&&")]
    assert steps[0].startswith("python3 -m venv") and "pip install" in steps[1]
    job = shlex.split(steps[-1])
    assert job[0].endswith("/mmoe"), job
    code, out, err = run_cli(capsys, *job[1:], "--rows", "3000", "--epochs", "4")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["task", "correlation", "model", "test"] and "test R² y1" in lines[0]
    table = [line.split() for line in lines[1:5]]
    assert [(row[2], row[3]) for row in table] == [
        ("0.5", "shared-bottom"),
        ("0.5", "mmoe"),
        ("0.9", "shared-bottom"),
        ("0.9", "mmoe"),
    ]
    for row in table:
        r2_first, r2_second, mse = (float(value) for value in row[4:7])
        assert -1 < r2_first <= 1 and -1 < r2_second <= 1 and mse > 0
    assert lines[5].startswith("p = 0.5: lowest test MSE: ") and lines[6].startswith("p = 0.9: lowest test MSE: ")


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
    code, out, err = run_cli(
        capsys,
        "train",
        "--data",
        table,
        "--tasks",
        "clicked:binary,watch_time:regression",
        "--features",
        "age,device",
        "--positive",
        "clicked=yes",
        "--epochs",
        "5",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
        "--out",
        run,
        "--quiet",
    )
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
        code, _, err = run_cli(
            capsys,
            "train",
            "--dataset",
            "synthetic",
            "--correlation",
            "0.5",
            "--rows",
            "1000",
            "--model",
            "omoe",
            "--epochs",
            "3",
            "--out",
            tmp_path / name,
            "--quiet",
        )
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
    _bad(
        capsys,
        tmp_path,
        "train",
        "--data",
        path,
        "--tasks",
        "clicked:binary",
        "--positive",
        "clicked=yes",
        "--numeric",
        "age",
        expect=("age", "forty"),
    )


def test_error_empty_table(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("age,device,clicked\n")
    _bad(capsys, tmp_path, "train", "--data", path, "--tasks", "clicked:binary", expect=("empty.csv",))


def test_error_unknown_model(tmp_path: Path, capsys, table_file: Path) -> None:
    _bad(
        capsys,
        tmp_path,
        "train",
        "--data",
        table_file,
        "--tasks",
        "clicked:binary",
        "--model",
        "gpt",
        expect=("gpt", "mmoe"),
    )


def test_error_option_the_model_does_not_take(tmp_path: Path, capsys) -> None:
    _bad(
        capsys,
        tmp_path,
        "train",
        "--dataset",
        "synthetic",
        "--rows",
        "300",
        "--model",
        "shared-bottom",
        "--num-experts",
        "4",
        expect=("--num-experts", "shared-bottom"),
    )


def test_error_census_file_with_a_wrong_checksum(tmp_path: Path, capsys) -> None:
    import gzip

    data_dir = tmp_path / "census"
    data_dir.mkdir()
    for name in ("census-income.data.gz", "census-income.test.gz"):
        with gzip.open(data_dir / name, "wt") as handle:
            handle.write("not the census\n")
    _bad(capsys, tmp_path, "train", "--dataset", "census", "--data-dir", data_dir, expect=("census-income", "sha256"))


def test_error_predict_leaves_no_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "predictions.csv"
    _bad(
        capsys, tmp_path, "predict", tmp_path / "no-run", "--data", tmp_path / "x.csv", "--out", out, expect=("no-run",)
    )
    assert not out.exists()


def test_model_flags_come_from_the_models_declarations_with_their_names_types_and_defaults(
    tmp_path: Path, capsys
) -> None:
    """One flag per hyperparameter name (generated, not listed by hand): the seven flags of before
    keep their name, type and default (None: the model's own default), and --self-weight, which
    Cross-Stitch always took, is a flag now too."""
    train = _subcommands()["train"]
    group = next(g for g in train._action_groups if g.title.startswith("model"))
    flags = {action.option_strings[0]: action for action in group._group_actions if action.dest != "model"}
    assert set(flags) == {
        "--num-experts",
        "--expert-units",
        "--tower-units",
        "--hidden-units",
        "--l2-alpha",
        "--ranks",
        "--stitch",
        "--self-weight",
        # PLE and CGC (mmoe/models/ple.py): their new hyperparameters, generated the same way
        "--specific-experts",
        "--shared-experts",
        "--levels",
        # AITM and DSelect-k (mmoe/models/aitm.py, dselect.py)
        "--calibrator-weight",
        "--k",
        "--gamma",
        "--entropy-weight",
        # PLE's and CGC's kind of gate (softmax or DSelect-k's, which reads --k, --gamma, --entropy-weight)
        "--gate",
        # the LightGBM baseline's options (mmoe/baselines/lightgbm.py), declared the same way
        "--num-leaves",
        "--boosting-learning-rate",
        "--max-rounds",
        "--early-stopping-rounds",
        "--min-data-in-leaf",
    }
    assert all(action.default is None and action.dest == flag[2:].replace("-", "_") for flag, action in flags.items())
    assert flags["--num-experts"].type is int and flags["--l2-alpha"].type is float
    assert flags["--self-weight"].type is float
    for flag in ("--expert-units", "--tower-units", "--hidden-units", "--ranks"):
        assert flags[flag].type("32,16") == (32, 16) and flags[flag].type("8") == (8,)
    assert list(flags["--stitch"].choices) == ["layer", "unit"]
    assert list(flags["--gate"].choices) == ["softmax", "dselect-k"]
    # The help names every model that takes the flag, with its default.
    help_text = " ".join(train.format_help().split())
    help_text = help_text[help_text.index("model (options") : help_text.index(" training:")]
    assert "number of experts (default 8: omoe, mmoe, dselect-k)" in help_text
    assert "(default 128: shared-bottom)" in help_text and "(default 16,16,2: tensor-factorization)" in help_text
    assert "(default: None)" not in help_text
    # A flag reaches the model under its parameter name; unset ones keep the model's default.
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "synthetic",
        "--rows",
        "300",
        "--model",
        "cross-stitch",
        "--self-weight",
        "1.0",
        "--hidden-units",
        "6",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["hyperparameters"] == {"hidden_units": [6], "tower_units": [8], "stitch": "layer", "self_weight": 1.0}


# -- library parameter names become flags -------------------------------------------------------------
def test_library_errors_name_flags_on_the_command_line(tmp_path: Path, capsys) -> None:
    from mmoe.cli import command_flags, flag_message

    flags = command_flags(build_parser(), "train")
    assert flags["batch_size"] == "--batch-size" and flags["learning_rate"] == "--learning-rate"
    assert (
        flag_message("training option batch_size must be a positive integer, got 0", flags)
        == "--batch-size must be a positive integer, got 0"
    )
    assert (
        flag_message("replicas=2 trains seeds side by side; it cannot be combined with streaming=True", flags)
        == "--replicas 2 trains seeds side by side; it cannot be combined with --streaming"
    )
    assert (
        flag_message("model mmoe: num_experts must be a positive integer, got -3", flags)
        == "model mmoe: --num-experts must be a positive integer, got -3"
    )
    # Column names in quotes, paths, and names that are no option of the command stay as written.
    kept = "t.csv: column 'num_experts', row 3 in runs/batch_size/x.csv; eval_batch_size=5"
    assert flag_message(kept, flags) == kept
    # The same error from the library and from the CLI: the parameter's name, then its flag.
    with pytest.raises(MmoeError, match=r"^training option batch_size must be a positive integer, got 0$"):
        from mmoe import MultiTaskEstimator

        MultiTaskEstimator(batch_size=0).fit({"kind": "synthetic", "config": {"rows": 300}, "split_seed": 0})
    code, _, err = run_cli(
        capsys, "train", "--dataset", "synthetic", "--rows", "300", "--batch-size", "0", "--out", tmp_path / "run"
    )
    assert code == 2 and err.strip() == "mmoe: error: --batch-size must be a positive integer, got 0"


def test_bench_runs_a_benchmark_script_of_the_checkout(capfd: pytest.CaptureFixture) -> None:
    """`mmoe bench NAME ...` hands its options to benchmarks/NAME's script; an unknown name is the
    usual one-line error."""
    assert main(["bench", "clicklog", "--help"]) == 0
    assert "usage: clicklog.py" in capfd.readouterr().out
    assert main(["bench", "imagenet"]) == 2
    assert capfd.readouterr().err.strip() == (
        "mmoe: error: unknown benchmark 'imagenet'; expected one of census, clicklog, streaming, weighting"
    )
