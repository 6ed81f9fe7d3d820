"""Streaming Parquet tables (`--streaming`): the encoders of one pass equal the in-memory ones, the
split rule, the bounded-memory shuffle, training end to end through the CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmoe.cli import main
from mmoe.data import Split, arrow_encoding, load_dataset, streaming
from mmoe.data.encoders import TableEncoder
from mmoe.data.shuffle import ShuffleBuffer
from mmoe.data.split_rule import SplitRule
from mmoe.data.streaming import load_streaming_table
from mmoe.data.tabular import parse_task_spec, read_table
from mmoe.data.values import category_counts, category_texts
from mmoe.data.vocabulary import VocabularyOptions
from mmoe.errors import MmoeError
from mmoe.io import to_jsonable
from mmoe.runs import fit
from mmoe.train.trainer import TrainConfig

TASKS = "clicked:binary,spent:regression"
TRAIN_FLAGS = ("--epochs", "1", "--threads", "1", "--quiet")


def mixed_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Every kind of column the encoders treat differently, with missing values in most."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(3.0, 2.0, rows),
            "count": rng.integers(0, 50, rows),
            "city": rng.choice(np.array(["paris", "rome", "oslo", "lima"], dtype=object), rows),
            "level": rng.integers(0, 4, rows).astype(float),  # categorical by override, read as floats
            "vip": rng.choice([True, False], rows),
            "tier": pd.Categorical(rng.choice(["gold", "silver", "bronze"], rows)),  # a Parquet dictionary column
            "clicked": rng.choice(["yes", "no"], rows),
            "spent": rng.normal(10.0, 3.0, rows),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "x"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "city"] = None
    frame.loc[rng.random(rows) < 0.05, "clicked"] = None
    frame.loc[rng.random(rows) < 0.05, "spent"] = np.nan
    frame.loc[:3, ["clicked", "spent"]] = None  # rows without any label are dropped
    return frame


def write_parquet(frame: pd.DataFrame, path: Path, row_group_size: int = 200, **columns: pa.Array) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, values in columns.items():
        table = table.append_column(name, values)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_directory(frame: pd.DataFrame, directory: Path, parts: int = 3) -> Path:
    """`frame` in `parts` files (the integer categorical column "rank" as plain int64 with nulls,
    which pandas reads as floats) plus files a reader must skip."""
    directory.mkdir()
    rank = pa.array([None if i % 17 == 0 else i % 5 for i in range(len(frame))], type=pa.int64())
    for k, index in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[index].reset_index(drop=True)
        write_parquet(part, directory / f"part-{k}.parquet", rank=rank.take(pa.array(index)))
    (directory / "_SUCCESS").write_text("")
    return directory


def assign(frame: pd.DataFrame, seed: int = 0, validation: float = 0.1, test: float = 0.1) -> np.ndarray:
    """The split of each row of `frame` as the streaming loader draws it (labelled rows only)."""
    split = SplitRule(seed, validation, test).assign(0, len(frame))
    labelled = frame[["clicked", "spent"]].notna().any(axis=1).to_numpy()
    return np.where(labelled, split, -1)


def sorted_rows(split) -> np.ndarray:
    rows = np.concatenate(
        [split.numeric.numpy(), split.categorical.numpy(), np.nan_to_num(split.labels.numpy(), nan=-999.0)], axis=1
    )
    return rows[np.lexsort(rows.T[::-1])]


@pytest.fixture()
def table_dir(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = mixed_frame(1500)
    directory = write_directory(frame, tmp_path / "table")
    return directory, read_table(directory)  # the in-memory reading of the same rows


# -- encoders and the split -----------------------------------------------------------------------
def test_streaming_encoder_equals_in_memory_encoder_on_the_same_rows(table_dir):
    directory, frame = table_dir
    data = load_streaming_table(
        directory, TASKS, column_types={"level": "categorical", "rank": "categorical"}, read_rows=128, shuffle_rows=512
    )
    types = data.info["column_types"]
    assert types == {
        "x": "numeric",
        "count": "numeric",
        "city": "categorical",
        "level": "categorical",
        "vip": "categorical",
        "tier": "categorical",
        "rank": "categorical",
    }
    numeric = [c for c, t in types.items() if t == "numeric"]
    categorical = [c for c, t in types.items() if t == "categorical"]
    split = assign(frame)
    memory = TableEncoder(numeric, categorical, parse_task_spec(TASKS)).fit(frame[split == 0], "memory")
    streamed = data.encoder

    assert streamed.vocabularies == memory.vocabularies
    assert "3.0" in streamed.vocabularies[categorical.index("rank")]  # pandas reads int64 + nulls as floats
    np.testing.assert_allclose(streamed.means, memory.means, rtol=1e-12)
    np.testing.assert_allclose(streamed.stds, memory.stds, rtol=1e-12)
    for ours, theirs in zip(streamed.tasks, memory.tasks):
        assert (ours.name, ours.kind) == (theirs.name, theirs.kind)
        assert ours.label_mean == pytest.approx(theirs.label_mean, rel=1e-12)
        assert ours.label_std == pytest.approx(theirs.label_std, rel=1e-12)
    assert {n: c.to_dict() for n, c in streamed.label_coders.items()} == {
        n: c.to_dict() for n, c in memory.label_coders.items()
    }

    # Encoding: validation / test in memory, and one epoch of training batches, are exactly what
    # the encoder's own transform gives for those rows.
    for name, code in (("validation", 1), ("test", 2)):
        expected = streamed.transform(frame[split == code], "memory")
        got = getattr(data, name)
        assert len(got) == int((split == code).sum())
        for attribute in ("numeric", "categorical", "labels"):
            torch.testing.assert_close(
                getattr(got, attribute), getattr(expected, attribute), equal_nan=True, rtol=0, atol=0
            )
    batches = list(data.train.shuffled_batches(100, torch.Generator().manual_seed(0)))
    assert len(data.train) == int((split == 0).sum()) == sum(len(b) for b in batches)
    assert all(len(b) == 100 for b in batches[:-1])
    epoch = Split(*(torch.cat([getattr(b, a) for b in batches]) for a in ("numeric", "categorical", "labels")))
    np.testing.assert_array_equal(sorted_rows(epoch), sorted_rows(streamed.transform(frame[split == 0], "memory")))
    assert data.info["dropped_unlabelled_rows"] == int((split == -1).sum()) >= 4
    assert data.info["streaming"]["files"] == 3
    sample = [len(b) for b in data.train.batches(share=0.25)]
    assert 0.15 * len(data.train) < sum(sample) < 0.35 * len(data.train)
    assert sample == [len(b) for b in data.train.batches(share=0.25)]  # the same sample every time


def test_streaming_equals_in_memory_with_min_frequency_hashing_and_embeddings(tmp_path):
    """The vocabulary options (mmoe.data.vocabulary) mean the same in both encoders: a power-law
    "user" column cut by min_frequency and embedded, "item" and the integer-with-nulls "rank"
    hashed into buckets; max_categories caps "user" (the other columns have fewer values)."""
    frame = mixed_frame(1500, seed=3)
    rng = np.random.default_rng(7)
    frame["user"] = [f"u{int(k)}" for k in rng.zipf(1.6, len(frame)) % 400]
    frame["item"] = [f"i{int(k)}" for k in rng.integers(0, 5000, len(frame))]
    directory = write_directory(frame, tmp_path / "table")
    frame = read_table(directory)
    options = {
        "min_frequency": 3,
        "max_categories": 20,
        "embed": ["user"],
        "embedding_dim": 8,
        "hash_buckets": {"item": 64, "rank": 7},
    }
    data = load_streaming_table(
        directory, TASKS, column_types={"level": "categorical", "rank": "categorical"}, read_rows=128, **options
    )
    types = data.info["column_types"]
    numeric = [c for c, t in types.items() if t == "numeric"]
    categorical = [c for c, t in types.items() if t == "categorical"]
    split = assign(frame)
    vocabulary = VocabularyOptions.of(**options)
    memory = TableEncoder(numeric, categorical, parse_task_spec(TASKS), vocabulary=vocabulary).fit(
        frame[split == 0], "memory"
    )
    streamed = data.encoder

    assert streamed.vocabularies == memory.vocabularies
    assert streamed.hash_sizes == memory.hash_sizes
    assert streamed.embedding_dims == memory.embedding_dims
    assert data.input_spec == memory.input_spec
    user, item, rank = (categorical.index(c) for c in ("user", "item", "rank"))
    counts = frame.loc[split == 0, "user"].value_counts()
    frequent = sorted(counts[counts >= 3].index, key=lambda text: (-counts[text], text))
    assert len(frequent) > 20  # so that max_categories matters
    assert streamed.vocabularies[user] == sorted(frequent[:20])
    assert streamed.vocabularies[item] == streamed.vocabularies[rank] == []
    assert data.input_spec.cardinalities[item] == 64 and data.input_spec.cardinalities[rank] == 7
    assert data.input_spec.column_embedding_dims[user] == 8
    assert data.input_spec.column_embedding_dims[item] == 0  # 64 slots: one-hot by the rule

    for name, code in (("validation", 1), ("test", 2)):
        expected = memory.transform(frame[split == code], "memory")
        for attribute in ("numeric", "categorical", "labels"):
            torch.testing.assert_close(
                getattr(getattr(data, name), attribute), getattr(expected, attribute), equal_nan=True, rtol=0, atol=0
            )
    batches = list(data.train.shuffled_batches(100, torch.Generator().manual_seed(0)))
    epoch = Split(*(torch.cat([getattr(b, a) for b in batches]) for a in ("numeric", "categorical", "labels")))
    expected = memory.transform(frame[split == 0], "memory")
    np.testing.assert_array_equal(sorted_rows(epoch), sorted_rows(expected))
    codes = expected.categorical.numpy() - np.asarray(data.input_spec.offsets)
    assert (codes[:, user] == 0).any()  # the rare users share slot 0
    assert 0 <= codes[:, item].min() and codes[:, item].max() < 64


def test_the_split_is_drawn_row_by_row_whatever_the_batches(tmp_path):
    frame = mixed_frame(3000)
    path = write_parquet(frame, tmp_path / "t.parquet", row_group_size=500)
    small = load_streaming_table(path, TASKS, read_rows=64, split_seed=4)
    large = load_streaming_table(path, TASKS, read_rows=5000, split_seed=4)
    other = load_streaming_table(path, TASKS, split_seed=5)
    assert small.info["rows"] == large.info["rows"]
    torch.testing.assert_close(small.test.numeric, large.test.numeric, rtol=0, atol=0)
    assert small.info["rows"] != other.info["rows"] or not torch.equal(small.test.numeric, other.test.numeric)
    rows, labelled = small.info["rows"], int((assign(frame, seed=4) >= 0).sum())
    assert sum(rows.values()) == labelled
    assert 0.07 < rows["validation"] / labelled < 0.13 and 0.07 < rows["test"] / labelled < 0.13


@pytest.mark.parametrize(
    "values",
    [
        pa.array([3, 7, None, 3, 11, 7, 7, 250, None, 3], type=pa.int64()),
        pa.array([0.0, -0.0, float("nan"), 1.5, None, 0.0, 1.5, -0.0, 2.0, 2.0]),  # -0.0 is a value of its own
        pa.array(["b", "a", None, "b", "", "c", "a", "a", "é", "b"]),
    ],
)
def test_a_category_column_fed_in_small_batches_counts_and_codes_as_in_memory(values):
    # The pandas dtype the in-memory path reads the whole column with (ints with a gap: floats).
    column = arrow_encoding._CategoryColumn(values.type, values.to_pandas().dtype)
    for start in range(0, len(values), 3):  # batches of 3: values seen again, new ones mid-stream
        column.observe(values.slice(start, 3))
    counts = category_counts(values.to_pandas())
    assert column.fitted_counts() == counts
    vocabulary = sorted(counts)[1:]  # the first text left out: it shares slot 0 with unseen values
    column.freeze(vocabulary)
    # Every value again, in one batch, then one never seen in training (it joins, with slot 0).
    later = pa.concat_arrays([values, pa.array([values[0].as_py() * 5], type=values.type)])
    texts = category_texts(later.to_pandas().astype(values.to_pandas().dtype))
    assert column.encode(later).tolist() == [vocabulary.index(t) + 1 if t in vocabulary else 0 for t in texts]
    assert column.missing_code > 0 and len(column.texts) == len(set(texts)) - 1  # <missing> is no value


def test_shuffle_buffer_yields_every_row_once_in_full_batches():
    rng = np.random.default_rng(0)
    buffer = ShuffleBuffer(capacity=300, batch_size=64, rng=rng)
    out = []
    for start in range(0, 1000, 70):
        block = np.arange(start, min(start + 70, 1000))
        arrays = (block[:, None].astype(np.float32), block[:, None], block[:, None].astype(np.float32))
        out += [a[1][:, 0] for a in buffer.add(arrays)]
    out += [a[1][:, 0] for a in buffer.drain()]
    assert [len(b) for b in out[:-1]] == [64] * (len(out) - 1)
    order = np.concatenate(out)
    assert sorted(order.tolist()) == list(range(1000)) and not np.array_equal(order, np.arange(1000))


def test_same_seed_same_batches_with_or_without_the_reader_thread(tmp_path):
    path = write_parquet(mixed_frame(2000), tmp_path / "t.parquet", row_group_size=150)
    threaded = load_streaming_table(path, TASKS, read_rows=100, shuffle_rows=400)
    inline = load_streaming_table(path, TASKS, read_rows=100, shuffle_rows=400, prefetch=0)

    def epoch(data, seed: int) -> torch.Tensor:
        return torch.cat([b.numeric for b in data.train.shuffled_batches(128, torch.Generator().manual_seed(seed))])

    torch.testing.assert_close(epoch(threaded, 1), epoch(inline, 1), rtol=0, atol=0)
    assert not torch.equal(epoch(threaded, 1), epoch(threaded, 2))
    generator = torch.Generator().manual_seed(1)
    first = torch.cat([b.numeric for b in threaded.train.shuffled_batches(128, generator)])
    second = torch.cat([b.numeric for b in threaded.train.shuffled_batches(128, generator)])
    assert not torch.equal(first, second)  # each epoch draws its own order


# -- the command line -----------------------------------------------------------------------------
def test_streaming_training_end_to_end_with_evaluate_and_predict(tmp_path, table_dir, capsys, one_torch_thread):
    directory, frame = table_dir
    run = tmp_path / "run"
    flags = ["--categorical", "level,rank"]
    assert (
        main(
            [
                "train",
                "--data",
                str(directory),
                "--streaming",
                "--tasks",
                TASKS,
                *flags,
                "--out",
                str(run),
                *TRAIN_FLAGS,
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["streaming"] is True
    assert config["data_info"]["rows"]["train"] == int((assign(frame) == 0).sum())
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["train", "validation", "test"]
    assert metrics["train"]["spent"]["rows"] == int(((assign(frame) == 0) & frame["spent"].notna()).sum())

    capsys.readouterr()
    for split in ("test", "train"):
        assert main(["evaluate", str(run), "--split", split, "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        for task, values in metrics[split].items():
            assert evaluated[task] == pytest.approx(values, rel=1e-6)
    # Python API: the same data set from the saved spec (refitted in one pass), same test metrics.
    data = load_dataset(config["dataset"])
    with pytest.raises(MmoeError, match="not held in memory; evaluate on them with `mmoe evaluate RUN --split train`"):
        data.splits()["train"]

    # predict and evaluate --data in batches agree with the in-memory commands.
    single = write_parquet(
        frame.assign(rank=[None if i % 17 == 0 else i % 5 for i in range(len(frame))]), tmp_path / "new.parquet"
    )
    assert (
        main(
            [
                "predict",
                str(run),
                "--data",
                str(single),
                "--streaming",
                "--keep",
                "city",
                "--out",
                str(tmp_path / "streamed.csv"),
            ]
        )
        == 0
    )
    assert (
        main(["predict", str(run), "--data", str(single), "--keep", "city", "--out", str(tmp_path / "memory.csv")]) == 0
    )
    streamed, memory = pd.read_csv(tmp_path / "streamed.csv"), pd.read_csv(tmp_path / "memory.csv")
    assert list(streamed.columns) == ["city", "clicked", "spent"] and len(streamed) == len(frame)
    pd.testing.assert_frame_equal(streamed, memory)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(single), "--streaming", "--json"]) == 0
    streamed_metrics = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run), "--data", str(single), "--json"]) == 0
    for task, values in json.loads(capsys.readouterr().out).items():
        assert streamed_metrics[task] == pytest.approx(values, rel=1e-6)


def test_fit_measures_the_streamed_training_rows_as_the_cli_writes_them(tmp_path, monkeypatch, one_torch_thread):
    """The trainer itself measures the training rows (over a sample of about TRAIN_METRICS_ROWS of
    them), so `mmoe.runs.fit` (and `mmoe tune`) report what `mmoe train --streaming` writes."""
    monkeypatch.setattr(streaming, "TRAIN_METRICS_ROWS", 300)  # fewer than the training rows: a sample
    frame = mixed_frame(1000)
    path = write_parquet(frame, tmp_path / "t.parquet")
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--streaming", "--tasks", TASKS, "--out", str(run), *TRAIN_FLAGS]) == 0
    config = json.loads((run / "config.json").read_text())

    result = fit(
        load_dataset(config["dataset"]), config["model"], TrainConfig(**config["training"]), **config["hyperparameters"]
    )
    assert list(result.metrics) == ["train", "validation", "test"]
    spent_rows = int(((assign(frame) == 0) & frame["spent"].notna()).sum())
    assert 0 < result.metrics["train"]["spent"]["rows"] < 0.6 * spent_rows  # about 300 of about 780 rows
    assert json.loads(json.dumps(to_jsonable(result.metrics))) == json.loads((run / "metrics.json").read_text())


def test_same_seed_same_run_and_resume(tmp_path, one_torch_thread):
    path = write_parquet(mixed_frame(1200), tmp_path / "t.parquet", row_group_size=100)
    base = [
        "train",
        "--data",
        str(path),
        "--streaming",
        "--tasks",
        TASKS,
        "--threads",
        "1",
        "--quiet",
        "--batch-size",
        "64",
        "--patience",
        "0",
    ]
    for name in ("a", "b"):
        assert main([*base, "--epochs", "2", "--out", str(tmp_path / name)]) == 0
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "c")]) == 0
    assert main([*base, "--epochs", "2", "--out", str(tmp_path / "c"), "--resume"]) == 0

    def numbers(name: str) -> tuple:
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        history = json.loads((tmp_path / name / "history.json").read_text())
        return metrics, [entry["train_loss"] for entry in history]

    assert numbers("a") == numbers("b")
    assert numbers("c")[0] == numbers("a")[0] and numbers("c")[1][-1] == numbers("a")[1][-1]


def test_separate_validation_and_test_tables(tmp_path, one_torch_thread):
    frame = mixed_frame(600, seed=1)
    train = write_parquet(frame, tmp_path / "train.parquet")
    validation = write_parquet(mixed_frame(100, seed=2), tmp_path / "validation.parquet")
    test = write_parquet(mixed_frame(120, seed=3), tmp_path / "test.parquet")
    data = load_streaming_table(train, TASKS, validation_path=validation, test_path=test)
    # Separate files keep every row, labelled or not.
    assert data.info["rows"] == {"train": int((assign(frame) >= 0).sum()), "validation": 100, "test": 120}
    memory = data.encoder.transform(read_table(test), "memory")
    torch.testing.assert_close(data.test.categorical, memory.categorical, rtol=0, atol=0)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(train),
                "--validation-data",
                str(validation),
                "--test-data",
                str(test),
                "--streaming",
                "--tasks",
                TASKS,
                "--out",
                str(run),
                *TRAIN_FLAGS,
            ]
        )
        == 0
    )
    assert main(["evaluate", str(run), "--split", "validation"]) == 0


# -- bad input ------------------------------------------------------------------------------------
def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("mmoe: error: ") and "\n" not in error and "Traceback" not in error
    return error


def test_bad_input(tmp_path, capsys):
    frame = mixed_frame(300)
    good = write_parquet(frame, tmp_path / "good.parquet")
    train = ["train", "--streaming", "--tasks", TASKS, "--out", str(tmp_path / "never"), *TRAIN_FLAGS, "--data"]

    missing = tmp_path / "missing-column"
    missing.mkdir()
    write_parquet(frame, missing / "a.parquet")
    write_parquet(frame.drop(columns=["city"]), missing / "b.parquet")
    error = one_line_error(capsys, [*train, str(missing)])
    assert "b.parquet: no column(s) 'city' compared with a.parquet" in error and "same columns" in error

    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    write_parquet(frame, mismatch / "a.parquet")
    write_parquet(frame.assign(count=frame["count"].astype(str)), mismatch / "b.parquet")
    error = one_line_error(capsys, [*train, str(mismatch)])
    assert "b.parquet: column 'count' is string but int64 in a.parquet; expected the same type" in error

    csv = tmp_path / "table.csv"
    frame.to_csv(csv, index=False)
    error = one_line_error(capsys, [*train, str(csv)])
    assert f"{csv}: streaming reads Parquet only, not '.csv'" in error and "expected a Parquet file" in error

    fake = tmp_path / "fake.parquet"
    fake.write_text("x,y\n1,2\n")
    assert "fake.parquet: cannot read as Parquet" in one_line_error(capsys, [*train, str(fake)])

    text = write_parquet(
        frame.assign(x=frame["x"].astype(str).where(frame.index != 250, "lots")), tmp_path / "text.parquet"
    )
    error = one_line_error(capsys, [*train, str(text), "--numeric", "x"])
    assert "text.parquet: column 'x', row 251: 'lots' is not a number" in error

    third = write_parquet(
        frame.assign(clicked=frame["clicked"].where(frame.index != 200, "maybe")), tmp_path / "third.parquet"
    )
    assert "binary task column 'clicked' has 3 distinct values" in one_line_error(capsys, [*train, str(third)])

    assert "--streaming reads a Parquet table given with --data" in one_line_error(
        capsys, ["train", "--dataset", "synthetic", "--streaming", "--out", str(tmp_path / "never")]
    )
    assert "cannot be combined with --streaming" in one_line_error(capsys, [*train, str(good), "--replicas", "2"])
    assert "task column 'nope' not found" in one_line_error(
        capsys, ["train", "--streaming", "--tasks", "nope:binary", "--data", str(good), *TRAIN_FLAGS]
    )
    with pytest.raises(MmoeError, match="no row fell into the validation split"):
        load_streaming_table(write_parquet(frame.head(8), tmp_path / "tiny.parquet"), TASKS)
    assert not (tmp_path / "never").exists()
