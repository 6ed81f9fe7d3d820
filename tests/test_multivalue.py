"""Multi-valued categorical columns (a list of ids per row, e.g. recently clicked items): pooling,
padding, shared tables, the two ways of writing lists, streaming, export and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmoe.cli import main
from mmoe.data.encoders import TableEncoder
from mmoe.data.split_rule import SplitRule
from mmoe.data.streaming import load_streaming_table
from mmoe.data.tabular import load_table, parse_task_spec, read_table, table_data
from mmoe.data.vocabulary import VocabularyOptions
from mmoe.errors import MmoeError
from mmoe.models.layers import CategoryEmbeddings, SparseLinear
from mmoe.spec import PADDING_CODE, InputSpec, MultiValue
from tests.test_export import FORMAT_PARAMS, exported_predictions

TASKS = "clicked:binary,watch:regression"
ITEMS = [f"i{k}" for k in range(12)]
OPTIONS = {"multi_value": "recent:max=4:shares=item_id,tags:max=2:pooling=sum"}
TRAIN_FLAGS = ("--epochs", "1", "--threads", "1", "--quiet", "--batch-size", "64")


def clicks(rows: int, seed: int = 0) -> pd.DataFrame:
    """An item per row, the user's recent items (0 to 6 of them, a list) and tags ("a|b" text)."""
    rng = np.random.default_rng(seed)
    recent = [[str(i) for i in rng.choice(ITEMS, rng.integers(0, 7))] for _ in range(rows)]
    item = rng.choice(ITEMS, rows)
    signal = np.array([item[r] in recent[r] for r in range(rows)], dtype=float) + rng.normal(0, 0.5, rows)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "item_id": item,
            "recent": recent,
            "tags": ["|".join(rng.choice(["a", "b", "c"], rng.integers(0, 4))) for _ in range(rows)],
            "clicked": (signal > 0.5).astype(int),
            "watch": 10 + 3 * signal + rng.normal(0, 1, rows),
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)
    return path


def one_line_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    assert main(args) != 0
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0, error
    return error


# -- the model: pooling, padding, sharing -------------------------------------------------------------
def _spec() -> InputSpec:
    """item_id (6 rows), recent (up to 3 of item_id's rows, mean), tags (4 rows of its own, up to 2, sum)."""
    return InputSpec(
        ("x",),
        ("item_id", "recent", "tags"),
        (6, 6, 4),
        (3, 3, 3),
        (MultiValue("recent", 3, "mean", "item_id"), MultiValue("tags", 2, "sum")),
    )


def test_pooling_is_the_mean_or_sum_of_the_values_embeddings() -> None:
    spec = _spec()
    assert spec.offsets == [0, 0, 6] and spec.code_positions == [0, 1, 4] and spec.num_codes == 6
    assert spec.embedding_vocabulary_size == 10 and spec.embedding_width == 9
    torch.manual_seed(0)
    embeddings = CategoryEmbeddings(spec)
    (table,) = embeddings.tables
    assert table.shape == (11, 3)  # item_id's 6 rows, tags' 4, the padding row
    pad = PADDING_CODE
    codes = torch.tensor(
        [
            [2, 1, 4, 4, 7, 9],  # recent: items 1, 4, 4; tags: rows 7 and 9
            [5, 3, pad, pad, 8, pad],
            [0, pad, pad, pad, pad, pad],  # empty lists
        ]
    )
    out = embeddings(codes).detach()
    table = table.detach()
    expected = torch.stack(
        [
            torch.cat([table[2], (table[1] + 2 * table[4]) / 3, table[7] + table[9]]),
            torch.cat([table[5], table[3], table[8]]),
            torch.cat([table[0], torch.zeros(3), torch.zeros(3)]),
        ]
    )
    torch.testing.assert_close(out, expected)
    assert torch.equal(table[10], torch.zeros(3))


def test_padding_contributes_nothing_and_its_row_stays_zero() -> None:
    spec = _spec()
    torch.manual_seed(0)
    layer = SparseLinear(spec, 5)
    pad = PADDING_CODE
    codes = torch.tensor([[2, 1, pad, pad, 7, pad], [3, pad, pad, pad, pad, pad]])
    with torch.no_grad():
        before = layer(torch.zeros(2, 1), codes)
        layer.embeddings.tables[0][10] = 1.0  # whatever the padding row holds, padding is not read
        torch.testing.assert_close(layer(torch.zeros(2, 1), codes), before)
        layer.embeddings.tables[0][10] = 0.0
    layer(torch.randn(2, 1), codes).square().sum().backward()
    grad = layer.embeddings.tables[0].grad
    assert torch.equal(grad[10], torch.zeros(3)) and grad[1].abs().sum() > 0
    # Row-sparse gradients and lazy Adam: the padding row is looked up, with zero gradient and zero state.
    from mmoe.models.layers import use_sparse_gradients
    from mmoe.train.optim import make_row_sparse_optimizer

    layer.zero_grad()
    use_sparse_gradients(layer)
    optimizer = make_row_sparse_optimizer("lazy-adam", [layer.embeddings.tables[0]], 0.1, 0.0)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(2, 1), codes).square().sum().backward()
        optimizer.step()
    assert torch.equal(layer.embeddings.tables[0][10].detach(), torch.zeros(3))


def test_a_shared_column_reads_and_moves_the_other_columns_rows() -> None:
    """recent's value 4 is item_id's row 4: a gradient step through recent alone moves item_id's vector."""
    spec = _spec()
    torch.manual_seed(0)
    embeddings = CategoryEmbeddings(spec)
    pad = PADDING_CODE
    only_recent = torch.tensor([[0, 4, pad, pad, pad, pad]])
    item_four = torch.tensor([[4, pad, pad, pad, pad, pad]])
    with torch.no_grad():
        torch.testing.assert_close(embeddings(only_recent)[0, 3:6], embeddings(item_four)[0, 0:3])
    before = embeddings(item_four)[0, 0:3].detach().clone()
    optimizer = torch.optim.SGD(embeddings.parameters(), lr=0.5)
    embeddings(only_recent)[0, 3:6].sum().backward()  # the loss reads recent's pooled vector only
    optimizer.step()
    after = embeddings(item_four)[0, 0:3].detach()
    torch.testing.assert_close(after, before - 0.5)  # d(sum)/d(row 4) = 1 per dimension
    with torch.no_grad():
        torch.testing.assert_close(embeddings(only_recent)[0, 3:6], after)


# -- encoding -------------------------------------------------------------------------------------------
def test_list_column_and_delimited_text_give_the_same_codes(tmp_path: Path) -> None:
    frame = clicks(200)
    as_lists = load_table(write(frame, tmp_path / "lists.parquet"), TASKS, **OPTIONS)
    # The separator is the table's: tags' values are ;-separated there too.
    texts = frame.assign(
        recent=[";".join(values) for values in frame["recent"]], tags=frame["tags"].str.replace("|", ";")
    )
    texts.to_csv(tmp_path / "texts.csv", index=False)
    as_text = load_table(tmp_path / "texts.csv", TASKS, multi_value_separator=";", **OPTIONS)
    assert as_text.input_spec == as_lists.input_spec
    for name in ("train", "validation", "test"):
        assert torch.equal(getattr(as_text, name).categorical, getattr(as_lists, name).categorical)

    spec = as_lists.input_spec
    assert spec.multi_values == (MultiValue("recent", 4, "mean", "item_id"), MultiValue("tags", 2, "sum"))
    assert spec.column_embedding_dims[0] == 16  # item_id is embedded: recent shares its rows
    encoder = as_lists.encoder
    assert encoder.vocabularies[0] == sorted(ITEMS) and encoder.vocabularies[1] == []
    assert encoder.vocabularies[2] == ["a", "b", "c"]
    codes = encoder.category_codes(
        pd.DataFrame(
            {
                "x": [0.0] * 3,
                "item_id": ["i3"] * 3,
                "recent": [["i3", "zzz"], [], [*ITEMS[:6]]],
                "tags": ["c", "", "b|b|a"],
            }
        )
    )
    i3 = 1 + sorted(ITEMS).index("i3")
    first_four = [1 + sorted(ITEMS).index(i) for i in ITEMS[:4]]  # longer lists keep their first values
    np.testing.assert_array_equal(
        codes,
        [
            [i3, i3, 0, PADDING_CODE, PADDING_CODE, 3, PADDING_CODE],
            [i3, *[PADDING_CODE] * 4, PADDING_CODE, PADDING_CODE],
            [i3, *first_four, 2, 2],
        ],
    )


@pytest.mark.parametrize(
    "values",
    [
        pa.array([[3, 17], None, [], [-2, 3, 3]], type=pa.list_(pa.int64())),
        pa.array([[3], [0, 4000000000]], type=pa.list_(pa.uint32())),
        pa.array([["a", None], None, ["b", "a", ""]], type=pa.list_(pa.string())),
    ],
    ids=["int64", "uint32", "string"],
)
def test_the_fast_path_of_list_columns_gives_the_general_paths_texts(values: pa.Array, monkeypatch) -> None:
    from mmoe.data import values as rules

    series = values.to_pandas()
    fast = rules.multi_value_texts(series, "c", "t")
    monkeypatch.setattr(rules, "_array_list_texts", lambda values: None)
    general = rules.multi_value_texts(series, "c", "t")
    assert fast[0] == general[0] and np.array_equal(fast[1], general[1])
    assert len(fast[0]) == sum(len(cell) for cell in values.to_pylist() if cell is not None)


def test_vocabulary_rules_apply_to_the_values() -> None:
    frame = clicks(300)
    frame["recent"] = [values + ["rare"] if r == 5 else values for r, values in enumerate(frame["recent"])]
    options = VocabularyOptions.of(multi_value="recent:max=3", min_frequency=2)
    tasks = parse_task_spec(TASKS)
    encoder = TableEncoder(["x"], ["item_id", "recent"], tasks, vocabulary=options).fit(frame)
    assert "rare" not in encoder.vocabularies[1] and "i0" in encoder.vocabularies[1]
    hashed = VocabularyOptions.of(multi_value="recent:max=3", hash_buckets={"recent": 5})
    encoder = TableEncoder(["x"], ["item_id", "recent"], tasks, vocabulary=hashed).fit(frame)
    from mmoe.data.values import hash_buckets

    codes = encoder.category_codes(frame.head(1).assign(recent=[["i7", "i2"]]))
    np.testing.assert_array_equal(codes[0, 1:], [*hash_buckets(["i7", "i2"], 5), PADDING_CODE])
    assert encoder.input_spec.cardinalities[1] == 5


def test_streaming_equals_in_memory(tmp_path: Path) -> None:
    frame = clicks(600, seed=2)
    path = write(frame, tmp_path / "clicks.parquet")
    options = {**OPTIONS, "min_frequency": 2}
    data = load_streaming_table(path, TASKS, read_rows=128, **options)
    frame = read_table(path)
    split = SplitRule(0, 0.1, 0.1).assign(0, len(frame))
    vocabulary = VocabularyOptions.of(**options)
    memory = TableEncoder(["x"], ["item_id", "recent", "tags"], parse_task_spec(TASKS), vocabulary=vocabulary)
    memory.fit(frame[split == 0], "memory")
    streamed, fitted = data.encoder.to_dict(), memory.to_dict()
    np.testing.assert_allclose(streamed.pop("means"), fitted.pop("means"), rtol=1e-12)  # equal up to rounding
    np.testing.assert_allclose(streamed.pop("stds"), fitted.pop("stds"), rtol=1e-12)
    assert streamed == fitted
    assert data.input_spec == memory.input_spec and data.input_spec.num_codes == 1 + 4 + 2
    for name, code in (("validation", 1), ("test", 2)):
        expected = memory.transform(frame[split == code], "memory")
        assert torch.equal(getattr(data, name).categorical, expected.categorical)
        torch.testing.assert_close(getattr(data, name).numeric, expected.numeric)


# -- end to end: CLI, predict, export ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("multi")
    data, rows = write(clicks(400), root / "train.parquet"), write(clicks(30, seed=5), root / "rows.parquet")
    run = root / "run"
    flags = ["--multi-value", "recent:max=4:shares=item_id", "--multi-value", "tags:max=2:pooling=sum"]
    assert main(["train", "--data", str(data), "--tasks", TASKS, *flags, "--out", str(run), *TRAIN_FLAGS]) == 0
    yield {"data": data, "rows": rows, "run": run, "root": root}
    torch.set_num_threads(threads)


def test_train_evaluate_predict_and_the_saved_spec(trained: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    import json

    config = json.loads((trained["run"] / "config.json").read_text())
    assert config["dataset"]["multi_value"] == {
        "recent": {"max_values": 4, "pooling": "mean", "shares": "item_id"},
        "tags": {"max_values": 2, "pooling": "sum"},
    }
    encoder = json.loads((trained["run"] / "encoder.json").read_text())
    assert [m["column"] for m in encoder["multi_values"]] == ["recent", "tags"]
    assert main(["evaluate", str(trained["run"])]) == 0
    out = trained["root"] / "predicted.csv"
    assert main(["predict", str(trained["run"]), "--data", str(trained["rows"]), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    assert len(predicted) == 30 and predicted["clicked"].between(0, 1).all()
    capsys.readouterr()


@pytest.mark.parametrize("format", FORMAT_PARAMS)
def test_export_predicts_as_mmoe_predict(format: str, trained: dict[str, Path], tmp_path: Path) -> None:
    from mmoe.export import encode_inputs, load_signature

    file = tmp_path / f"model.{'onnx' if format == 'onnx' else 'pt'}"
    assert main(["export", str(trained["run"]), "--format", format, "--out", str(file)]) == 0
    predicted = tmp_path / "predicted.parquet"
    assert main(["predict", str(trained["run"]), "--data", str(trained["rows"]), "--out", str(predicted)]) == 0
    signature = load_signature(file)
    categorical = signature["inputs"][1]
    assert categorical["shape"] == ["batch", 7] and categorical["padding_code"] == PADDING_CODE
    assert categorical["positions"] == [
        "item_id",
        "recent[0]",
        "recent[1]",
        "recent[2]",
        "recent[3]",
        "tags[0]",
        "tags[1]",
    ]
    assert categorical["multi_values"]["recent"]["pooling"] == "mean"
    assert categorical["multi_values"]["recent"]["shares"] == "item_id"
    assert categorical["vocabularies"]["recent"] == categorical["vocabularies"]["item_id"]
    inputs = encode_inputs(pd.read_parquet(trained["rows"]), signature)
    assert (inputs["categorical"] == PADDING_CODE).any()
    got = exported_predictions(file, format, inputs)
    np.testing.assert_allclose(got, pd.read_parquet(predicted).to_numpy(), rtol=1e-5, atol=1e-6)


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frame = clicks(120)
    good = write(frame, tmp_path / "good.parquet")
    out = tmp_path / "never"
    train = ["train", "--tasks", TASKS, "--out", str(out), *TRAIN_FLAGS, "--data", str(good)]

    error = one_line_error(capsys, [*train, "--multi-value", "nope"])
    assert "--multi-value" in error and "'nope' is not a categorical feature column" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent:shares=x"])
    assert "--multi-value" in error and "'x' is numeric" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent:shares=ghost"])
    assert "'ghost' is not a categorical feature column" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent:max=0"])
    assert "--multi-value" in error and "'recent'" in error and "max=L" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent:pooling=max"])
    assert "--multi-value" in error and "pooling 'max' is not one of mean, sum" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent:size=3"])
    assert "'size=3'" in error and "max=L, pooling=mean|sum or shares=COL" in error
    error = one_line_error(capsys, [*train, "--multi-value", "recent", "--one-hot", "recent"])
    assert "--one-hot" in error and "'recent'" in error

    numbers = write(frame.assign(count=np.arange(len(frame))), tmp_path / "numbers.parquet")
    for streaming in ([], ["--streaming"]):
        error = one_line_error(capsys, [*train[:-1], str(numbers), *streaming, "--multi-value", "count"])
        assert "numbers.parquet: multi-valued column 'count', row 1: 0 is neither a list nor text" in error

    # A list column of a DataFrame (the Python API) with numbers in some lists and text in others.
    mixed = frame.assign(recent=[["i1", "i2"]] * 60 + [[3]] * 60)
    with pytest.raises(
        MmoeError, match=r"frame: multi-valued column 'recent', row 61: value 3 is int but row 1 holds str"
    ):
        table_data(mixed, "frame", TASKS)
    with pytest.raises(MmoeError, match=r"multi-valued column 'recent', row 2: value 2.5 is float but row 1 holds int"):
        table_data(frame.assign(recent=[[1], [2.5]] + [[]] * 118), "frame", TASKS)
    assert not out.exists()


# -- training: population, resume, the estimator --------------------------------------------------------
@pytest.fixture(scope="module")
def multi_data(tmp_path_factory: pytest.TempPathFactory):
    path = write(clicks(500, seed=4), tmp_path_factory.mktemp("data") / "clicks.parquet")
    return load_table(path, TASKS, **OPTIONS, embedding_dim=4)


@pytest.mark.parametrize("sparse_optimizer", ["lazy-adam", "dense"])
def test_population_replicas_equal_their_runs_alone(multi_data, sparse_optimizer: str) -> None:
    from mmoe.runs import fit
    from mmoe.train.population import train_population
    from mmoe.train.trainer import TrainConfig

    seeds = [3, 5]
    options = {"epochs": 2, "batch_size": 64, "patience": 0, "sparse_optimizer": sparse_optimizer}
    population = train_population("mmoe", multi_data, TrainConfig(**options), seeds=seeds, learning_rates=[1e-2] * 2)
    for state, seed in zip(population.state_dicts, seeds):
        alone = fit(multi_data, "mmoe", TrainConfig(**options, seed=seed, learning_rate=1e-2))
        for name, weight in alone.model.state_dict().items():
            torch.testing.assert_close(state[name], weight, rtol=1e-4, atol=1e-5)
        table = alone.model.experts.input_layer.embeddings.tables[0]
        assert torch.equal(table[-1], torch.zeros(table.shape[1]))  # the padding row


def test_resume_equals_uninterrupted(multi_data, tmp_path: Path) -> None:
    from mmoe.runs import fit
    from mmoe.train.trainer import TrainConfig

    options = {"patience": 0, "batch_size": 64, "seed": 3}
    full = fit(multi_data, "mmoe", TrainConfig(epochs=3, **options), num_experts=3)
    checkpoint = tmp_path / "checkpoint.pt"
    fit(multi_data, "mmoe", TrainConfig(epochs=1, **options), checkpoint_path=checkpoint, num_experts=3)
    config = TrainConfig(epochs=3, **options)
    resumed = fit(multi_data, "mmoe", config, checkpoint_path=checkpoint, resume_from=checkpoint, num_experts=3)
    assert resumed.metrics == full.metrics
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_estimator_with_a_list_column_of_a_dataframe() -> None:
    from mmoe.estimator import MultiTaskEstimator

    frame = clicks(300, seed=6)
    estimator = MultiTaskEstimator(
        tasks=TASKS, multi_value={"recent": {"max_values": 3, "shares": "item_id"}}, epochs=1, threads=1
    )
    estimator.fit(frame)
    predicted = estimator.predict(frame.head(20))
    assert predicted.shape == (20, 2) and predicted["clicked"].between(0, 1).all()
    spec = estimator.input_spec_
    assert spec.multi_value_of["recent"] == MultiValue("recent", 3, "mean", "item_id")
    assert "tags" not in spec.multi_value_of  # text, not named: one category per distinct text
