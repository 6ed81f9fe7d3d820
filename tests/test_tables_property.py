"""Properties of `load_table` on small generated tables.

- A valid table (numbers, words, empty cells and missing-value spellings, labels that are 0/1 or
  numbers) is accepted, and what comes back is the file's rows: the labelled rows, split as
  `split_indices` says, with their labels and standardised numbers.
- A table with a bad label cell (a word in a 0/1 or a number column, ±inf) is refused with a
  one-line MmoeError.
- Any table, with a bad cell anywhere or not, loads consistently or raises a one-line MmoeError,
  never anything else.

The generated tables are classified first, so a loader that refused every table fails the first
two properties rather than passing vacuously.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmoe.data.dataset import MultiTaskData  # noqa: E402
from mmoe.data.tabular import load_table, split_indices  # noqa: E402
from mmoe.errors import MmoeError  # noqa: E402

TASKS = "clicked:binary,spent:regression"
TEST_FRACTION = 0.1
# Cells as they may appear in a CSV: numbers, words, missing-value spellings, non-ASCII.
NUMBER = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
CELL = st.one_of(
    NUMBER, st.none(), st.sampled_from(["", "NaN", "NA", "red", "blue", "é", "1", "0", "yes", "no", "true"])
)
BINARY_LABEL = st.sampled_from([0, 1, None, "", 1, 0])
REGRESSION_LABEL = st.one_of(NUMBER, st.none())
POISON = st.sampled_from(["maybe", "inf", "-inf", "text", "é"])  # one bad cell, in some tables


@st.composite
def valid_tables(draw: st.DrawFn, min_rows: int = 1) -> pd.DataFrame:
    """Feature columns of numbers, of words, or of anything (read as text then); labels 0/1 and
    numbers, each possibly missing. No value in it is an error."""
    rows = draw(st.integers(min_rows, 30))
    columns = draw(st.integers(1, 3))
    frame = {}
    for index in range(columns):
        kind = draw(st.sampled_from(["number", "word", "mixed"]))
        cell = {"number": st.one_of(NUMBER, st.none()), "word": st.sampled_from(["a", "b", "c", None]), "mixed": CELL}[
            kind
        ]
        frame[f"f{index}"] = draw(st.lists(cell, min_size=rows, max_size=rows))
    frame["clicked"] = draw(st.lists(BINARY_LABEL, min_size=rows, max_size=rows))
    frame["spent"] = draw(st.lists(REGRESSION_LABEL, min_size=rows, max_size=rows))
    return pd.DataFrame(frame).astype(object)


@st.composite
def poisoned_tables(draw: st.DrawFn, labels_only: bool = False) -> tuple[pd.DataFrame, str]:
    """A valid table with one cell (of a label column, with labels_only) replaced by a bad value;
    returns it and the poisoned column."""
    table = draw(valid_tables())
    row = draw(st.integers(0, len(table) - 1))
    column = draw(st.sampled_from(["clicked", "spent"] if labels_only else list(table.columns)))
    table.iloc[row, table.columns.get_loc(column)] = draw(POISON)
    return table, column


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """[rows, 2] float64: clicked as 1/0, spent as its number, NaN where missing (None or "")."""
    clicked = [math.nan if v is None or v == "" else float(v) for v in frame["clicked"]]
    spent = [math.nan if v is None or v == "" else float(v) for v in frame["spent"]]
    return np.array([clicked, spent], dtype=np.float64).T


def expected_split(frame: pd.DataFrame, validation_fraction: float) -> tuple[np.ndarray, ...] | None:
    """(labelled rows, train, validation, test positions among them), or None when the table is
    too small for non-empty splits (which load_table refuses, rightly)."""
    labelled = np.flatnonzero(~np.isnan(labels_of(frame)).all(axis=1))
    sizes = [round(len(labelled) * fraction) for fraction in (validation_fraction, TEST_FRACTION)]
    if min(sizes) < 1 or len(labelled) - sum(sizes) < 1:
        return None
    return (labelled, *split_indices(len(labelled), validation_fraction, TEST_FRACTION, 0, "table"))


def load(frame: pd.DataFrame, validation_fraction: float) -> tuple[MultiTaskData, pd.DataFrame]:
    """`frame` written as CSV, loaded; and the CSV as pandas reads it (for the numbers in it)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.csv"
        frame.to_csv(path, index=False)
        data = load_table(path, TASKS, validation_fraction=validation_fraction, test_fraction=TEST_FRACTION)
        return data, pd.read_csv(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=valid_tables(min_rows=10), validation_fraction=st.sampled_from([0.1, 0.2, 0.5]))
def test_valid_tables_are_accepted_and_give_back_their_rows(frame: pd.DataFrame, validation_fraction: float) -> None:
    expected = expected_split(frame, validation_fraction)
    if expected is None:
        event("too few labelled rows for three splits")
        with pytest.raises(MmoeError, match=r"split|training rows|no row has a value"):
            load(frame, validation_fraction)
        return
    event("accepted")
    data, written = load(frame, validation_fraction)  # no error: every value in it is valid
    labelled, train, validation, test = expected
    labels = labels_of(frame)[labelled]
    assert data.info["dropped_unlabelled_rows"] == len(frame) - len(labelled)
    assert data.info["rows"] == {"train": len(train), "validation": len(validation), "test": len(test)}
    for split, rows in ((data.train, train), (data.validation, validation), (data.test, test)):
        # The labels are the file's, row for row, in the file's order (float32, NaN where missing).
        np.testing.assert_allclose(split.labels.numpy(), labels[rows].astype(np.float32), rtol=1e-6)
        # Numeric features: standardised with the training moments, a missing value at the mean (0).
        for j, column in enumerate(data.input_spec.numeric):
            raw = pd.to_numeric(written[column]).to_numpy(dtype=np.float64)[labelled][rows]
            want = np.nan_to_num((raw - data.encoder.means[j]) / data.encoder.stds[j], nan=0.0).astype(np.float32)
            np.testing.assert_allclose(split.numeric[:, j].numpy(), want, rtol=1e-6, atol=1e-6)
        # Categorical slots: inside each column's block of the shared vocabulary.
        offsets = np.asarray(data.input_spec.offsets)
        codes = split.categorical.numpy() - offsets
        assert ((codes >= 0) & (codes < np.asarray(data.input_spec.cardinalities))).all()
    # Every category of the training rows has a slot of its own (none of them lands in slot 0).
    assert (data.train.categorical.numpy() - np.asarray(data.input_spec.offsets) > 0).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=poisoned_tables(labels_only=True))
def test_a_bad_label_cell_is_refused_with_one_line(table: tuple[pd.DataFrame, str]) -> None:
    # (A bad cell in a feature column need not be an error: the column may read as text, a category.)
    frame, column = table
    with pytest.raises(MmoeError) as error:
        load(frame, 0.2)
    message = str(error.value)
    assert "\n" not in message and f"column {column!r}" in message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.one_of(valid_tables().map(lambda frame: (frame, None)), poisoned_tables()),
    validation_fraction=st.sampled_from([0.1, 0.2, 0.5]),
)
def test_load_table_loads_consistently_or_raises_mmoe_error(
    table: tuple[pd.DataFrame, str | None], validation_fraction: float
) -> None:
    frame, _ = table
    try:
        data, _ = load(frame, validation_fraction)
    except MmoeError as error:
        event("refused")
        assert "\n" not in str(error) and str(error)
        return
    event("accepted")
    splits = [data.train, data.validation, data.test]
    labelled = frame[["clicked", "spent"]].replace("", np.nan).notna().any(axis=1).sum()
    assert sum(len(split) for split in splits) + data.info["dropped_unlabelled_rows"] == len(frame)
    assert sum(len(split) for split in splits) <= labelled
    for split in splits:
        assert split.labels.shape == (len(split), 2)
        assert split.numeric.shape == (len(split), data.input_spec.num_numeric)
        # Missing numeric features become the training mean: every input is finite.
        assert bool(split.numeric.isfinite().all())
        binary = split.labels[:, 0]
        assert all(math.isnan(v) or v in (0.0, 1.0) for v in binary.tolist())
        assert not bool(split.labels.isinf().any())
