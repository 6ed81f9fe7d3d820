"""A battery of broken inputs, each fed to the CLI and to the Python API.

Every case must end with one line naming the place (file, column, row, option) and what was
expected: on the CLI `mmoe: error: ...`, exit status 2, no traceback (unless --debug), and no
output file; in Python an `MmoeError`. A few inputs that look broken but are not (missing values,
a category never seen in training) must work.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.data.tabular import load_table
from mmoe.errors import MmoeError
from mmoe.models import build_model
from mmoe.runs import Run
from mmoe.train.trainer import TrainConfig, load_checkpoint

TRAIN_FLAGS = ("--epochs", "1", "--threads", "1", "--quiet")


def good_frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """A small valid table: a numeric and a text feature, a binary and a regression label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "colour": rng.choice(["red", "blue"], rows),
            "clicked": rng.integers(0, 2, rows),
            "spent": rng.normal(10, 2, rows),
        }
    )


def good_csv(directory: Path, name: str = "good.csv") -> Path:
    path = directory / name
    good_frame().to_csv(path, index=False)
    return path


def with_line(directory: Path, name: str, line: str | bytes) -> Path:
    """The good table with one extra (broken) line appended."""
    path = directory / name
    text = good_frame().to_csv(index=False).encode()
    path.write_bytes(text + (line if isinstance(line, bytes) else line.encode()))
    return path


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny runs of different models on different columns (for "model.pt of another run")."""
    threads = torch.get_num_threads()
    base = tmp_path_factory.mktemp("runs")
    data = good_csv(base)
    runs = {"omoe": base / "omoe", "mmoe": base / "mmoe"}
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--tasks",
                "clicked:binary",
                "--model",
                "omoe",
                "--out",
                str(runs["omoe"]),
                *TRAIN_FLAGS,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--tasks",
                "clicked:binary,spent:regression",
                "--features",
                "x",
                "--model",
                "mmoe",
                "--num-experts",
                "2",
                "--out",
                str(runs["mmoe"]),
                *TRAIN_FLAGS,
            ]
        )
        == 0
    )
    torch.set_num_threads(threads)
    return runs


@dataclass
class Case:
    """One broken input: `setup(tmp, runs)` writes what it needs and returns the CLI arguments and
    the output paths that must not appear; `api(tmp)` (after setup) is the Python call that must raise."""

    name: str
    setup: Callable[[Path, dict[str, Path]], tuple[list[str], list[Path]]]
    expect: tuple[str, ...]
    api: Callable[[Path], object] | None = None
    api_expect: tuple[str, ...] = field(default=())


def train_case(make_table: Callable[[Path], Path], tasks: str, *flags: str) -> Callable:
    def setup(tmp: Path, runs: dict[str, Path]) -> tuple[list[str], list[Path]]:
        out = tmp / "out"
        # The case's flags last: they override TRAIN_FLAGS (argparse keeps the last value).
        return (
            ["train", "--data", str(make_table(tmp)), "--tasks", tasks, "--out", str(out), *TRAIN_FLAGS, *flags],
            [out / "metrics.json", out / "model.pt"],
        )

    return setup


def event_id_csv(directory: Path) -> Path:
    """The good table, 2000 rows, with an event id: a different text in every row."""
    frame = good_frame(2000)
    frame["event"] = [f"ev-{i:05d}" for i in range(len(frame))]
    path = directory / "events.csv"
    frame.to_csv(path, index=False)
    return path


def table_api(name: str, tasks: str, **options: object) -> Callable[[Path], object]:
    return lambda tmp: load_table(tmp / name, tasks, **options)


def copied_run(tmp: Path, runs: dict[str, Path]) -> Path:
    run = tmp / "run"
    shutil.copytree(runs["omoe"], run)
    return run


def predict_case(damage: Callable[[Path, dict[str, Path]], None], table: Callable[[Path], Path] = good_csv) -> Callable:
    def setup(tmp: Path, runs: dict[str, Path]) -> tuple[list[str], list[Path]]:
        run = copied_run(tmp, runs)
        damage(run, runs)
        out = tmp / "predictions.csv"
        return ["predict", str(run), "--data", str(table(tmp)), "--out", str(out)], [out]

    return setup


def resume_case(content: bytes) -> Callable:
    def setup(tmp: Path, runs: dict[str, Path]) -> tuple[list[str], list[Path]]:
        out = tmp / "out"
        out.mkdir()
        (out / "checkpoint.pt").write_bytes(content)
        return (
            [
                "train",
                "--data",
                str(good_csv(tmp)),
                "--tasks",
                "clicked:binary",
                "--out",
                str(out),
                "--resume",
                *TRAIN_FLAGS,
            ],
            [out / "metrics.json", out / "model.pt"],
        )

    return setup


def corrupt_model(run: Path, runs: dict[str, Path]) -> None:
    (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:200])


def foreign_model(run: Path, runs: dict[str, Path]) -> None:
    shutil.copy(runs["mmoe"] / "model.pt", run / "model.pt")


CATALOGUE = [
    Case(
        "ragged row",
        train_case(lambda t: with_line(t, "ragged.csv", "1.0,red,1,3.0,9\n"), "clicked:binary"),
        ("ragged.csv", "line 62", "5 fields", "header has 4"),
        table_api("ragged.csv", "clicked:binary"),
    ),
    Case(
        "truncated file inside a quote",
        train_case(lambda t: with_line(t, "cut.csv", '1.0,"red,1'), "clicked:binary"),
        ("cut.csv", "line 62", "quoted value"),
        table_api("cut.csv", "clicked:binary"),
    ),
    Case(
        "wrong delimiter",
        train_case(
            lambda t: (t / "semi.csv", good_frame().to_csv(t / "semi.csv", sep=";", index=False))[0], "clicked:binary"
        ),
        ("semi.csv", "'clicked' not found", "';'-separated"),
        table_api("semi.csv", "clicked:binary"),
    ),
    Case(
        "non-UTF-8 bytes",
        train_case(lambda t: with_line(t, "latin.csv", b"1.0,r\xe9d,1,3.0\n"), "clicked:binary"),
        ("latin.csv", "0xe9", "line 62", "UTF-8"),
        table_api("latin.csv", "clicked:binary"),
    ),
    Case(
        "header only",
        train_case(lambda t: (t / "head.csv", (t / "head.csv").write_text("x,clicked\n"))[0], "clicked:binary"),
        ("head.csv", "no data rows"),
        table_api("head.csv", "clicked:binary"),
    ),
    Case(
        "duplicate column names",
        train_case(
            lambda t: (t / "dup.csv", (t / "dup.csv").write_text("x,x,clicked\n1,2,0\n3,4,1\n"))[0], "clicked:binary"
        ),
        ("dup.csv", "duplicate column", "'x'"),
        table_api("dup.csv", "clicked:binary"),
    ),
    Case(
        "+inf in a feature",
        train_case(lambda t: with_line(t, "inf.csv", "inf,red,1,3.0\n"), "clicked:binary"),
        ("inf.csv", "column 'x'", "row 61", "inf is infinite", "finite"),
        table_api("inf.csv", "clicked:binary"),
    ),
    Case(
        "-inf in a label",
        train_case(lambda t: with_line(t, "ninf.csv", "1.0,red,1,-inf\n"), "clicked:binary,spent:regression"),
        ("ninf.csv", "column 'spent'", "row 61", "-inf is infinite"),
        table_api("ninf.csv", "clicked:binary,spent:regression"),
    ),
    Case(
        "regression label that is text",
        train_case(lambda t: with_line(t, "text.csv", "1.0,red,1,lots\n"), "clicked:binary,spent:regression"),
        ("text.csv", "column 'spent'", "row 61", "'lots' is not a number"),
        table_api("text.csv", "clicked:binary,spent:regression"),
    ),
    Case(
        "binary label with a third value",
        train_case(lambda t: with_line(t, "three.csv", "1.0,red,2,3.0\n"), "clicked:binary"),
        ("three.csv", "clicked", "2"),
        table_api("three.csv", "clicked:binary"),
    ),
    Case(
        "task column also a feature",
        train_case(good_csv, "clicked:binary", "--features", "x,clicked"),
        ("good.csv", "'clicked' also listed as feature"),
        table_api("good.csv", "clicked:binary", features=["x", "clicked"]),
    ),
    Case(
        "corrupted model.pt",
        predict_case(corrupt_model),
        ("model.pt", "not a readable mmoe model file"),
        lambda tmp: Run.load(tmp / "run"),
    ),
    Case(
        "model.pt of another run",
        predict_case(foreign_model),
        ("model.pt", "does not belong to this run", "'mmoe' vs 'omoe'"),
        lambda tmp: Run.load(tmp / "run"),
    ),
    Case(
        "inf at predict time",
        predict_case(lambda run, runs: None, lambda t: with_line(t, "new.csv", "inf,red,1,3.0\n")),
        ("new.csv", "column 'x'", "infinite"),
    ),
    Case(
        "corrupted checkpoint",
        resume_case(b"not a checkpoint at all"),
        ("checkpoint.pt", "not a readable checkpoint"),
        lambda tmp: load_checkpoint(tmp / "out" / "checkpoint.pt"),
    ),
    Case("empty checkpoint", resume_case(b""), ("checkpoint.pt", "not a readable checkpoint")),
    Case(
        "--epochs 0",
        train_case(good_csv, "clicked:binary", "--epochs", "0"),
        ("epochs", "at least 1", "0"),
        lambda tmp: TrainConfig(epochs=0),
    ),
    Case(
        "--num-experts -3",
        train_case(good_csv, "clicked:binary", "--num-experts", "-3"),
        ("--num-experts", "positive integer", "-3"),
    ),
    Case(
        "--lr -1",
        train_case(good_csv, "clicked:binary", "--lr", "-1"),
        ("--learning-rate", "positive", "-1"),
        lambda tmp: TrainConfig(learning_rate=-1),
        ("learning_rate", "positive", "-1"),
    ),
    Case(
        "--batch-size 0",
        train_case(good_csv, "clicked:binary", "--batch-size", "0"),
        ("--batch-size", "positive integer", "0"),
        lambda tmp: TrainConfig(batch_size=0),
        ("batch_size", "positive integer", "0"),
    ),
    Case(
        "--weight-decay inf",
        train_case(good_csv, "clicked:binary", "--weight-decay", "inf"),
        ("--weight-decay", "finite", "inf"),
        lambda tmp: TrainConfig(weight_decay=math.inf),
        ("weight_decay", "finite", "inf"),
    ),
    Case(
        "--l2-alpha nan",
        train_case(good_csv, "clicked:binary", "--model", "l2-constrained", "--l2-alpha", "nan"),
        ("--l2-alpha", "positive number", "nan"),
    ),
    Case(
        "absurd --expert-units",
        train_case(good_csv, "clicked:binary", "--expert-units", "100000000"),
        ("model mmoe", "parameters", "expected at most"),
    ),
    Case(
        "--validation-fraction 2",
        train_case(good_csv, "clicked:binary", "--validation-fraction", "2"),
        ("--validation-fraction", "between 0 and 1"),
    ),
    # Vocabulary options (mmoe.data.vocabulary).
    Case(
        "--hash-buckets 0",
        train_case(good_csv, "clicked:binary", "--hash-buckets", "0"),
        ("--hash-buckets", "positive number of buckets", "got 0"),
        table_api("good.csv", "clicked:binary", hash_buckets=0),
        ("hash_buckets", "positive number of buckets", "got 0"),
    ),
    Case(
        "--hash-buckets colour=-5",
        train_case(good_csv, "clicked:binary", "--hash-buckets", "colour=-5"),
        ("--hash-buckets", "'colour'", "got -5"),
        table_api("good.csv", "clicked:binary", hash_buckets={"colour": -5}),
    ),
    Case(
        "--hash-buckets many",
        train_case(good_csv, "clicked:binary", "--hash-buckets", "many"),
        ("--hash-buckets 'many'", "expected N or COL=N"),
    ),
    Case(
        "--embedding-dim 0",
        train_case(good_csv, "clicked:binary", "--embedding-dim", "0"),
        ("--embedding-dim", "positive embedding dimension", "got 0"),
        table_api("good.csv", "clicked:binary", embedding_dim=0),
        ("embedding_dim", "positive embedding dimension", "got 0"),
    ),
    Case(
        "--embedding-dim -4",
        train_case(good_csv, "clicked:binary", "--embedding-dim", "-4"),
        ("--embedding-dim", "got -4"),
    ),
    Case(
        "--min-frequency 0",
        train_case(good_csv, "clicked:binary", "--min-frequency", "0"),
        ("--min-frequency", ">= 1", "got 0"),
    ),
    Case(
        "--max-categories 0",
        train_case(good_csv, "clicked:binary", "--max-categories", "0"),
        ("--max-categories", ">= 1", "got 0"),
    ),
    Case(
        "--embed of a column that is not there",
        train_case(good_csv, "clicked:binary", "--embed", "shade"),
        ("good.csv", "--embed", "'shade' is not a categorical feature column", "'colour'"),
        table_api("good.csv", "clicked:binary", embed=["shade"]),
    ),
    Case(
        "--one-hot of a numeric column",
        train_case(good_csv, "clicked:binary", "--one-hot", "x"),
        ("good.csv", "--one-hot", "'x' is numeric", "--categorical x"),
        table_api("good.csv", "clicked:binary", one_hot=["x"]),
    ),
    Case(
        "--hash-buckets of a column that is not there",
        train_case(good_csv, "clicked:binary", "--hash-buckets", "user=100"),
        ("good.csv", "--hash-buckets", "'user' is not a categorical feature column"),
        table_api("good.csv", "clicked:binary", hash_buckets={"user": 100}),
    ),
    Case(
        "a column both embedded and one-hot",
        train_case(good_csv, "clicked:binary", "--embed", "colour", "--one-hot", "colour"),
        ("--embed", "--one-hot", "'colour'", "one of them"),
    ),
    Case(
        "a vocabulary that would not fit in memory",
        train_case(good_csv, "clicked:binary", "--embed", "colour", "--embedding-dim", "1000000000000"),
        ("good.csv", "GiB", "'colour'", "--hash-buckets colour=N", "--min-frequency", "smaller --embedding-dim"),
        table_api("good.csv", "clicked:binary", embed=["colour"], embedding_dim=10**12),
    ),
    Case(
        "a nearly unique column (an event id)",
        train_case(event_id_csv, "clicked:binary"),
        ("events.csv", "'event'", "distinct values", "nearly one per row", "--hash-buckets event=N"),
        table_api("events.csv", "clicked:binary"),
    ),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_cli_gives_one_line_and_no_output(
    case: Case, tmp_path: Path, trained_runs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    argv, outputs = case.setup(tmp_path, trained_runs)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # train logs a "data: ..." line first when the data itself is fine
    assert last.startswith("mmoe: error: "), err
    assert all(not line.startswith("mmoe: error") for line in err.strip().splitlines()[:-1])
    for fragment in case.expect:
        assert fragment in last, (fragment, last)
    for output in outputs:
        assert not output.exists(), output


@pytest.mark.parametrize(
    "case", [c for c in CATALOGUE if c.api is not None], ids=[c.name for c in CATALOGUE if c.api is not None]
)
def test_python_api_raises_one_line_mmoe_error(case: Case, tmp_path: Path, trained_runs: dict[str, Path]) -> None:
    case.setup(tmp_path, trained_runs)
    with pytest.raises(MmoeError) as error:
        case.api(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    for fragment in case.api_expect or case.expect:
        assert fragment in message, (fragment, message)


def test_python_api_model_options() -> None:
    from mmoe.data.synthetic import SyntheticConfig, load_synthetic

    spec = load_synthetic(SyntheticConfig(correlation=0.5, rows=100, dim=5)).input_spec
    for options, fragment in (
        ({"num_experts": -3}, "num_experts"),
        ({"expert_units": (10**8,)}, "parameters"),
        ({"num_experts": float("nan")}, "num_experts"),
    ):
        with pytest.raises(MmoeError, match=fragment):
            build_model("mmoe", spec, 2, **options)
    with pytest.raises(MmoeError, match="l2_alpha"):
        build_model("l2-constrained", spec, 2, l2_alpha=float("nan"))


@pytest.mark.parametrize("name", ["ragged row", "model.pt of another run", "--epochs 0"])
def test_debug_shows_the_traceback(
    name: str, tmp_path: Path, trained_runs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    case = next(c for c in CATALOGUE if c.name == name)
    argv, _ = case.setup(tmp_path, trained_runs)
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "MmoeError" in err
    assert err.strip().splitlines()[-1].startswith("mmoe: error: ")


def test_missing_values_and_unseen_categories_are_not_errors(
    tmp_path: Path, trained_runs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    frame = good_frame().astype({"spent": object, "colour": object})
    frame.loc[3, "x"] = np.nan  # written as an empty cell
    frame.loc[4, "colour"] = None
    frame.loc[5, "spent"] = "NaN"
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    # A short row (a cell left off the end) reads as missing values too, as docs/tables.md says.
    path.write_text(path.read_text() + "0.5,red,1,\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(path),
                "--tasks",
                "clicked:binary,spent:regression",
                "--out",
                str(out),
                *TRAIN_FLAGS,
            ]
        )
        == 0
    )
    new = good_frame(5, seed=1).drop(columns=["clicked"])  # that run's features: x, colour, spent
    new.loc[0, "colour"] = "ultraviolet"  # never seen in training: shares the reserved slot
    new.to_csv(tmp_path / "new.csv", index=False)
    predictions = tmp_path / "predictions.csv"
    assert (
        main(["predict", str(trained_runs["omoe"]), "--data", str(tmp_path / "new.csv"), "--out", str(predictions)])
        == 0
    )
    capsys.readouterr()
    assert len(pd.read_csv(predictions)) == 5
