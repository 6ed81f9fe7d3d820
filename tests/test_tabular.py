"""The user's own tables: task specs, reading CSV / Parquet, bad inputs, splitting and encoding."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmoe.data.dataset import Task
from mmoe.data.tabular import infer_column_types, load_table, parse_task_spec, read_table, split_indices
from mmoe.errors import MmoeError


def make_frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(50.0, 10.0, rows).round(3),
            "city": rng.choice(["paris", "rome", "oslo"], rows),
            "vip": rng.choice([True, False], rows),
            "clicked": rng.choice([0, 1], rows),
            "watch_time": rng.normal(10.0, 2.0, rows).round(3),
        }
    )


TASKS = "clicked:binary,watch_time:regression"


def write_csv(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def all_rows(data, attribute: str) -> np.ndarray:
    return np.concatenate([getattr(split, attribute).numpy() for split in (data.train, data.validation, data.test)])


# -- task specs -----------------------------------------------------------------------------------
def test_parse_task_spec():
    tasks = parse_task_spec(" clicked:binary , watch_time:Regression")
    assert tasks == [Task("clicked", "binary"), Task("watch_time", "regression")]
    assert parse_task_spec("a:b:binary") == [Task("a:b", "binary")]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty"),
        ("clicked", "'clicked' is not NAME:KIND"),
        ("clicked:binary,", "'' is not NAME:KIND"),
        (":binary", "not NAME:KIND"),
        ("clicked:", "not NAME:KIND"),
        ("clicked:classification", "unknown kind 'classification'; expected one of binary, regression"),
        ("clicked:binary,clicked:regression", "task 'clicked' is listed more than once"),
    ],
)
def test_parse_task_spec_errors(spec, message):
    with pytest.raises(MmoeError, match=message):
        parse_task_spec(spec)


# -- reading --------------------------------------------------------------------------------------
def test_csv_and_parquet_round_trip(tmp_path):
    frame = make_frame()
    frame.loc[7, "income"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "parts").mkdir()
    frame.iloc[:25].to_parquet(tmp_path / "parts" / "a.parquet")
    frame.iloc[25:].to_parquet(tmp_path / "parts" / "b.pq")
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_csv(tmp_path / "semi.txt", index=False, sep=";")

    for path, delimiter in [("t.csv", None), ("t.parquet", None), ("parts", None), ("t.tsv", None), ("semi.txt", ";")]:
        table = read_table(tmp_path / path, delimiter=delimiter)
        assert list(table.columns) == list(frame.columns), path
        assert len(table) == len(frame)
        np.testing.assert_allclose(table["income"].to_numpy(dtype=float), frame["income"].to_numpy(), equal_nan=True)
        assert table["city"].tolist() == frame["city"].tolist()

    from_csv = load_table(tmp_path / "t.csv", TASKS)
    from_parquet = load_table(tmp_path / "t.parquet", TASKS)
    assert from_csv.info["column_types"] == {
        "age": "numeric",
        "income": "numeric",
        "city": "categorical",
        "vip": "categorical",
    }
    assert from_parquet.info["column_types"] == from_csv.info["column_types"]
    for name in ("train", "validation", "test"):
        a, b = from_csv.splits()[name], from_parquet.splits()[name]
        np.testing.assert_allclose(a.numeric.numpy(), b.numeric.numpy(), rtol=1e-6)
        assert np.array_equal(a.categorical.numpy(), b.categorical.numpy())
        np.testing.assert_allclose(a.labels.numpy(), b.labels.numpy(), rtol=1e-6)
    assert from_csv.info["rows"] == {"train": 48, "validation": 6, "test": 6}
    # Labels in their own units; every file row lands in exactly one split.
    assert sorted(all_rows(from_csv, "labels")[:, 1].tolist()) == pytest.approx(sorted(frame["watch_time"]), rel=1e-6)
    assert from_csv.tasks[1].label_mean == pytest.approx(
        float(frame["watch_time"].to_numpy()[_train_positions(from_csv, frame)].mean()), rel=1e-6
    )


def _train_positions(data, frame: pd.DataFrame) -> np.ndarray:
    # Each split keeps the file's row order, so matching watch_time values finds the train rows.
    values = data.train.labels.numpy()[:, 1]
    return np.array([int(np.flatnonzero(np.isclose(frame["watch_time"].to_numpy(), v, rtol=1e-6))[0]) for v in values])


def test_delimiter_must_be_one_character(tmp_path):
    path = write_csv(tmp_path, "t.csv", "a::b\n1::2\n")
    with pytest.raises(MmoeError, match=r"t\.csv: CSV delimiter '::' is not allowed; expected one character"):
        read_table(path, delimiter="::")


def test_missing_file(tmp_path):
    with pytest.raises(MmoeError, match=r"nope\.csv: no such file or directory; expected a CSV"):
        read_table(tmp_path / "nope.csv")


def test_unknown_extension(tmp_path):
    path = write_csv(tmp_path, "table.xlsx", "a,b\n1,2\n")
    with pytest.raises(MmoeError, match=r"table\.xlsx: unknown file extension '\.xlsx'; expected a CSV"):
        read_table(path)


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_file(tmp_path, text):
    path = write_csv(tmp_path, "empty.csv", text)
    with pytest.raises(MmoeError, match=r"empty\.csv: the file is empty; expected a header row"):
        read_table(path)


def test_header_only(tmp_path):
    path = write_csv(tmp_path, "header.csv", "a,b,c\n")
    with pytest.raises(MmoeError, match=r"header\.csv: the table has a header but no data rows"):
        read_table(path)


def test_non_utf8_bytes_name_offset_and_line(tmp_path):
    path = write_csv(tmp_path, "latin.csv", b"name,score\nana,1\n" + "jos\u00e9,2\n".encode("latin-1"))
    with pytest.raises(MmoeError, match=r"latin\.csv: byte 0xe9 at byte offset 20 \(line 3\) is not UTF-8"):
        read_table(path)


def test_non_utf8_bytes_far_into_a_large_file(tmp_path):
    body = "a,b\n" + "1,2\n" * 400_000
    path = write_csv(tmp_path, "big.csv", body.encode() + b"3,\xff\n")
    with pytest.raises(MmoeError, match=rf"byte 0xff at byte offset {len(body) + 2} \(line 400002\)"):
        read_table(path)


def test_utf8_byte_order_mark_is_fine(tmp_path):
    path = write_csv(tmp_path, "bom.csv", "\ufeffa,b\n1,x\n".encode())
    assert list(read_table(path).columns) == ["a", "b"]


@pytest.mark.parametrize(
    "text, line",
    [
        ("a,b\n1,2\n3,4,5\n6,7\n", 3),
        # A longer first data row makes pandas guess an index column (or drop data) instead of failing.
        ("a,b\n1,2,3\n4,5\n", 2),
        ("a,b\n1,2\n3,4,\n", 3),
    ],
)
def test_ragged_row_names_the_line(tmp_path, text, line):
    path = write_csv(tmp_path, "ragged.csv", text)
    with pytest.raises(MmoeError, match=rf"ragged\.csv: line {line} has 3 fields but the header has 2"):
        read_table(path)


def test_trailing_delimiter_on_every_row_is_tolerated(tmp_path):
    # Some exporters end every line with the delimiter; the empty last field carries no data.
    table = read_table(write_csv(tmp_path, "trailing.csv", "a,b\n1,2,\n3,4,\n"))
    assert list(table.columns) == ["a", "b"] and table.values.tolist() == [[1, 2], [3, 4]]


def five_column_table(rows: int = 200) -> str:
    frame = make_frame(rows).drop(columns=["vip"])  # age, income, city, clicked, watch_time
    return frame.to_csv(index=False)


def test_truncated_last_line_is_an_error_naming_the_line(tmp_path):
    # A write cut off in its last line: 200 rows, then "1,2" under a five-column header. pandas
    # reads it as a row with three empty cells; it must not train without a word.
    path = write_csv(tmp_path, "cut.csv", five_column_table() + "1,2\n")
    with pytest.raises(MmoeError, match=r"cut\.csv: line 202 has 2 fields but the header has 5; expected 5 fields"):
        load_table(path, TASKS)
    # Without the final line break too.
    path.write_text(five_column_table() + "1,2")
    with pytest.raises(MmoeError, match=r"cut\.csv: line 202 has 2 fields but the header has 5"):
        read_table(path)


def test_short_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    lines = five_column_table().splitlines(keepends=True)
    lines[50] = "33,41.5,rome\n"
    path = write_csv(tmp_path, "short.csv", "".join(lines))
    with pytest.raises(MmoeError, match=r"short\.csv: line 51 has 3 fields but the header has 5") as error:
        load_table(path, TASKS)
    assert "\n" not in str(error.value)
    # A quoted value (it may hold the delimiter, or a line break) is counted as one field, and the
    # line named is the one the row ends on.
    lines[49] = '40,"50.5","rome,\nnorth",1,9.5\n'
    path.write_text("".join(lines))
    with pytest.raises(MmoeError, match=r"short\.csv: line 52 has 3 fields but the header has 5"):
        read_table(path)
    lines[50] = "1\n"
    path.write_text("".join(lines))
    with pytest.raises(MmoeError, match=r"short\.csv: line 52 has 1 field but the header has 5"):
        read_table(path)


def test_long_line_is_an_error_naming_the_line(tmp_path):
    lines = five_column_table().splitlines(keepends=True)
    lines[120] = lines[120].rstrip("\n") + ",7\n"
    path = write_csv(tmp_path, "long.csv", "".join(lines))
    with pytest.raises(MmoeError, match=r"long\.csv: line 121 has 6 fields but the header has 5; expected at most 5"):
        load_table(path, TASKS)


def test_blank_lines_and_empty_cells_are_not_short_rows(tmp_path):
    # Blank lines are skipped (as pandas skips them); a row may leave any cell empty with its
    # delimiters in place, and Windows line endings count as one line break.
    text = "a,b,c\r\n\r\n1,,\r\n  \r\n,,6\r\n"
    table = read_table(write_csv(tmp_path, "holes.csv", text))
    assert table.shape == (2, 3) and math.isnan(table.loc[0, "c"]) and table.loc[1, "c"] == 6


def test_duplicate_column_names(tmp_path):
    path = write_csv(tmp_path, "dup.csv", "a,b,a\n1,2,3\n")
    with pytest.raises(MmoeError, match=r"dup\.csv: duplicate column name\(s\) 'a'"):
        read_table(path)
    # A real column called "a.1" is not a duplicate.
    assert list(read_table(write_csv(tmp_path, "ok.csv", "a,a.1\n1,2\n")).columns) == ["a", "a.1"]


def test_unreadable_parquet(tmp_path):
    path = write_csv(tmp_path, "broken.parquet", "this is not parquet")
    with pytest.raises(MmoeError, match=r"broken\.parquet: cannot read as Parquet .*expected a Parquet file"):
        read_table(path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MmoeError, match=r"nothing: the directory holds no \.parquet / \.pq files"):
        read_table(tmp_path / "nothing")


def test_parquet_directory_with_different_columns(tmp_path):
    (tmp_path / "parts").mkdir()
    pd.DataFrame({"a": [1], "b": [2]}).to_parquet(tmp_path / "parts" / "1.parquet")
    pd.DataFrame({"a": [1], "c": [2]}).to_parquet(tmp_path / "parts" / "2.parquet")
    with pytest.raises(MmoeError, match=r"2\.parquet: columns \['a', 'c'\] differ from 1\.parquet's"):
        read_table(tmp_path / "parts")


def test_missing_value_spellings(tmp_path):
    table = read_table(write_csv(tmp_path, "na.csv", "a,b\n1,x\n,NaN\nNaN,\n4,y\n"))
    assert table["a"].isna().tolist() == [False, True, True, False]
    assert table["b"].isna().tolist() == [False, True, True, False]


# -- column types ---------------------------------------------------------------------------------
def test_infer_column_types_and_overrides():
    frame = make_frame(10)
    frame["zip"] = [75001] * 10
    frame["level"] = pd.Categorical(["x"] * 10)
    features = ["age", "income", "city", "vip", "zip", "level"]
    assert infer_column_types(frame, features, None) == (["age", "income", "zip"], ["city", "vip", "level"])
    assert infer_column_types(frame, features, {"zip": "categorical", "vip": "numeric"}) == (
        ["age", "income", "vip"],
        ["city", "zip", "level"],
    )
    with pytest.raises(MmoeError, match=r"'nope' is not a feature column; the features are 'age'"):
        infer_column_types(frame, features, {"nope": "numeric"})
    with pytest.raises(MmoeError, match=r"override for 'zip': 'text' is not one of numeric, categorical"):
        infer_column_types(frame, features, {"zip": "text"})


def test_override_to_numeric_with_text_names_the_row(tmp_path):
    frame = make_frame()
    frame["city"] = frame["city"].astype(object)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"t\.csv: column 'city', row 1: '\w+' is not a number"):
        load_table(path, TASKS, column_types={"city": "numeric"})


# -- load_table: column errors ----------------------------------------------------------------------
def test_unknown_task_column_lists_the_columns(tmp_path):
    path = tmp_path / "t.csv"
    make_frame().to_csv(path, index=False)
    with pytest.raises(
        MmoeError,
        match=r"t\.csv: task column 'bought' not found; the table has columns 'age', "
        r"'income', 'city', 'vip', 'clicked', 'watch_time'",
    ):
        load_table(path, "bought:binary")


def test_task_listed_as_feature(tmp_path):
    path = tmp_path / "t.csv"
    make_frame().to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"task column\(s\) 'clicked' also listed as feature"):
        load_table(path, TASKS, features=["age", "clicked"])
    with pytest.raises(MmoeError, match=r"feature column\(s\) 'height' not found"):
        load_table(path, TASKS, features=["age", "height"])


def test_positive_for_a_regression_task(tmp_path):
    path = tmp_path / "t.csv"
    make_frame().to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"positive value given for 'watch_time', which is not a binary task"):
        load_table(path, TASKS, positive={"watch_time": "1"})


def test_infinite_value_is_an_error(tmp_path):
    frame = make_frame().astype({"income": object})
    frame.loc[9, "income"] = "inf"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"t\.csv: column 'income', row 10: .*is infinite"):
        load_table(path, TASKS)


def test_bad_value_row_is_the_file_row_not_the_split_row(tmp_path):
    frame = make_frame().astype({"income": object})
    frame.loc[36, "income"] = "n/a?"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    # The stray text makes the column text, so by default it is categorical; named numeric, the
    # error points at the row as the file has it, not its position in a shuffled split.
    assert load_table(path, TASKS).info["column_types"]["income"] == "categorical"
    with pytest.raises(MmoeError, match=r"t\.csv: column 'income', row 37: 'n/a\?' is not a number"):
        load_table(path, TASKS, column_types={"income": "numeric"})


# -- load_table: labels -----------------------------------------------------------------------------
def test_binary_column_with_three_values(tmp_path):
    frame = make_frame().astype({"clicked": object})
    frame.loc[5, "clicked"] = "maybe"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(
        MmoeError,
        match=r"t\.csv: binary task column 'clicked' has 3 distinct values "
        r"\('0', '1', 'maybe'\); expected two",
    ):
        load_table(path, TASKS)


@pytest.mark.parametrize("values", [("true", "false"), ("True", "False"), ("yes", "no"), ("Y", "N")])
def test_true_false_and_yes_no_labels(tmp_path, values):
    frame = make_frame()
    expected = frame["clicked"].to_numpy(dtype=np.float32)
    frame["clicked"] = np.where(frame["clicked"] == 1, values[0], values[1])
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = load_table(path, TASKS, validation_path=path, test_path=path)
    np.testing.assert_array_equal(data.train.labels.numpy()[:, 0], expected)
    np.testing.assert_array_equal(data.test.labels.numpy()[:, 0], expected)


def test_other_label_values_need_positive(tmp_path):
    frame = make_frame()
    expected = frame["clicked"].to_numpy(dtype=np.float32)
    frame["clicked"] = np.where(frame["clicked"] == 1, "bought", "skipped")
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"'clicked' has values 'bought', 'skipped'; name the positive one"):
        load_table(path, TASKS)
    data = load_table(path, TASKS, positive={"clicked": "bought"}, validation_path=path, test_path=path)
    np.testing.assert_array_equal(data.train.labels.numpy()[:, 0], expected)
    # "skipped" as the positive value flips the labels.
    flipped = load_table(path, TASKS, positive={"clicked": "skipped"}, validation_path=path, test_path=path)
    np.testing.assert_array_equal(flipped.train.labels.numpy()[:, 0], 1 - expected)


def test_positive_matches_a_0_1_column_with_missing_cells(tmp_path):
    # pandas reads such a column as 0.0 / 1.0; positive "1" (or "0") must still match.
    frame = make_frame().astype({"clicked": float})
    frame.loc[3, "clicked"] = np.nan
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    expected = frame["clicked"].to_numpy(dtype=np.float32)
    data = load_table(path, TASKS, positive={"clicked": "1"}, validation_path=path, test_path=path)
    np.testing.assert_array_equal(data.train.labels.numpy()[:, 0], expected)
    flipped = load_table(path, TASKS, positive={"clicked": "0"}, validation_path=path, test_path=path)
    np.testing.assert_array_equal(flipped.train.labels.numpy()[:, 0], 1 - expected)


def test_row_missing_one_label_keeps_the_other(tmp_path):
    frame = make_frame(10)
    frame["clicked"] = frame["clicked"].astype(object)
    frame.loc[2, "clicked"] = None  # main task missing, watch_time kept
    frame.loc[5, "watch_time"] = np.nan  # watch_time missing, clicked kept
    frame.loc[7, ["clicked", "watch_time"]] = [None, np.nan]  # no label at all: dropped
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    holdout = tmp_path / "holdout.csv"
    make_frame(8, seed=1).to_csv(holdout, index=False)
    data = load_table(path, TASKS, validation_path=holdout, test_path=holdout)

    assert data.info["dropped_unlabelled_rows"] == 1
    assert len(data.train) == 9
    labels = data.train.labels.numpy()
    kept = frame.drop(index=7).reset_index(drop=True)
    assert math.isnan(labels[2, 0]) and labels[2, 1] == pytest.approx(kept.loc[2, "watch_time"], rel=1e-6)
    assert math.isnan(labels[5, 1]) and labels[5, 0] == float(kept.loc[5, "clicked"])
    assert np.isnan(labels).sum() == 2
    # The regression statistics come from the labels that are there.
    present = kept["watch_time"].dropna().to_numpy()
    assert data.tasks[1].label_mean == pytest.approx(present.mean(), rel=1e-6)


def test_table_without_any_label(tmp_path):
    frame = make_frame(10).astype({"clicked": float})
    frame[["clicked", "watch_time"]] = np.nan
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"t\.csv: no row has a value in any task column"):
        load_table(path, TASKS)


# -- load_table: splits and encoding ---------------------------------------------------------------
def test_split_is_reproducible(tmp_path):
    path = tmp_path / "t.csv"
    make_frame(200).to_csv(path, index=False)
    first, second = load_table(path, TASKS, split_seed=7), load_table(path, TASKS, split_seed=7)
    other = load_table(path, TASKS, split_seed=8)
    for name in ("train", "validation", "test"):
        assert np.array_equal(first.splits()[name].labels.numpy(), second.splits()[name].labels.numpy())
        assert np.array_equal(first.splits()[name].numeric.numpy(), second.splits()[name].numeric.numpy())
    assert not np.array_equal(first.test.numeric.numpy(), other.test.numeric.numpy())
    sizes = load_table(path, TASKS, validation_fraction=0.25, test_fraction=0.15).info["rows"]
    assert sizes == {"train": 120, "validation": 50, "test": 30}


def test_empty_validation_split_suggests_a_fix(tmp_path):
    path = tmp_path / "t.csv"
    make_frame(4).to_csv(path, index=False)
    with pytest.raises(
        MmoeError,
        match=r"t\.csv: a validation fraction of 0\.1 of 4 row\(s\) is an empty validation "
        r"split; .*use a larger table, a larger validation_fraction",
    ):
        load_table(path, TASKS)
    make_frame(40).to_csv(path, index=False)
    with pytest.raises(MmoeError, match=r"t\.csv: test_fraction must be between 0 and 1"):
        load_table(path, TASKS, test_fraction=0.0)
    with pytest.raises(MmoeError, match=r"leave no training rows"):
        split_indices(10, 0.5, 0.5, 0, "t.csv")


def test_encoder_is_fitted_on_training_rows_only(tmp_path):
    train = make_frame(50)
    holdout = make_frame(10, seed=1).astype({"vip": object})
    holdout.loc[0, "income"] = 1e9  # an extreme value only in the test file
    holdout.loc[1, "city"] = "tokyo"  # a category only in the test file
    holdout.loc[2, "vip"] = None
    train.to_csv(tmp_path / "train.csv", index=False)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    data = load_table(
        tmp_path / "train.csv", TASKS, validation_path=tmp_path / "holdout.csv", test_path=tmp_path / "holdout.csv"
    )
    income = data.encoder.numeric.index("income")
    assert data.encoder.means[income] == pytest.approx(train["income"].mean())
    assert data.encoder.stds[income] == pytest.approx(train["income"].std(ddof=0))
    # Standardised with the training statistics: the training column has mean 0 and std 1.
    assert data.train.numeric.numpy()[:, income].mean() == pytest.approx(0.0, abs=1e-5)
    assert data.test.numeric.numpy()[0, income] == pytest.approx(
        (1e9 - train["income"].mean()) / train["income"].std(ddof=0), rel=1e-5
    )
    # Unseen category and a missing value never seen in training go to slot 0 of their column.
    city, vip = data.encoder.categorical.index("city"), data.encoder.categorical.index("vip")
    offsets = data.input_spec.offsets
    assert data.test.categorical[1, city].item() == offsets[city]
    assert data.test.categorical[2, vip].item() == offsets[vip]
    assert (data.train.categorical[:, city] > offsets[city]).all()
    assert data.input_spec.cardinalities[city] == 4  # slot 0 + paris, rome, oslo
    assert data.info["rows"] == {"train": 50, "validation": 10, "test": 10}
    assert data.info["test_path"].endswith("holdout.csv")


def test_missing_feature_values(tmp_path):
    frame = make_frame(40).astype({"city": object})
    frame.loc[3, "income"] = np.nan
    frame.loc[4, "city"] = None
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = load_table(path, TASKS, validation_path=path, test_path=path)
    income = data.encoder.numeric.index("income")
    assert data.encoder.means[income] == pytest.approx(frame["income"].mean())  # NaN left out
    assert data.train.numeric[3, income].item() == 0.0  # the training mean, standardised
    city = data.encoder.categorical.index("city")
    assert "<missing>" in data.encoder.vocabularies[city]
    missing_slot = data.train.categorical[4, city].item()
    assert missing_slot != data.input_spec.offsets[city]  # its own category, not "unseen"
    assert (data.train.categorical[:, city] == missing_slot).sum().item() == 1


def test_holdout_file_with_missing_column(tmp_path):
    make_frame().to_csv(tmp_path / "train.csv", index=False)
    make_frame(10).drop(columns=["city"]).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(MmoeError, match=r"test\.csv: missing column\(s\) 'city' that .*train\.csv has"):
        load_table(tmp_path / "train.csv", TASKS, test_path=tmp_path / "test.csv")


def test_only_a_test_file_carves_validation_from_the_table(tmp_path):
    make_frame(100).to_csv(tmp_path / "train.csv", index=False)
    make_frame(7, seed=3).to_csv(tmp_path / "test.csv", index=False)
    data = load_table(tmp_path / "train.csv", TASKS, test_path=tmp_path / "test.csv", validation_fraction=0.2)
    assert data.info["rows"] == {"train": 80, "validation": 20, "test": 7}


def test_task_objects_and_explicit_features(tmp_path):
    path = tmp_path / "t.parquet"
    make_frame().to_parquet(path)
    data = load_table(path, [Task("watch_time", "regression")], features=["city", "age"])
    assert data.task_names == ["watch_time"]
    assert data.input_spec.numeric == ("age",) and data.input_spec.categorical == ("city",)
    assert data.info["dataset"] == "table" and data.info["path"] == str(path)
