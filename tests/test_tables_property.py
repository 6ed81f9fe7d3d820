"""Property: any small table either loads consistently or raises MmoeError, never anything else."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from mmoe.data.tabular import load_table  # noqa: E402
from mmoe.errors import MmoeError  # noqa: E402

# Cells as they may appear in a CSV: numbers, ±inf, words, missing-value spellings, non-ASCII.
NUMBER = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
CELL = st.one_of(NUMBER, st.none(), st.sampled_from(["", "NaN", "NA", "inf", "-inf", "red", "blue", "é", "1", "0",
                                                     "yes", "no", "true"]))
BINARY_LABEL = st.sampled_from([0, 1, None, "", 1, 0])
REGRESSION_LABEL = st.one_of(NUMBER, st.none())
POISON = st.sampled_from(["maybe", "inf", "-inf", "text", "é"])  # one bad cell, in some tables


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(1, 30))
    columns = draw(st.integers(1, 3))
    frame = {}
    for index in range(columns):
        kind = draw(st.sampled_from(["number", "word", "mixed"]))
        cell = {"number": st.one_of(NUMBER, st.none()), "word": st.sampled_from(["a", "b", "c", None]),
                "mixed": CELL}[kind]
        frame[f"f{index}"] = draw(st.lists(cell, min_size=rows, max_size=rows))
    frame["clicked"] = draw(st.lists(BINARY_LABEL, min_size=rows, max_size=rows))
    frame["spent"] = draw(st.lists(REGRESSION_LABEL, min_size=rows, max_size=rows))
    table = pd.DataFrame(frame).astype(object)
    if draw(st.booleans()):
        table.iloc[draw(st.integers(0, rows - 1)), draw(st.integers(0, columns + 1))] = draw(POISON)
    return table


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tables(), validation_fraction=st.sampled_from([0.1, 0.2, 0.5]))
def test_load_table_loads_consistently_or_raises_mmoe_error(frame: pd.DataFrame, validation_fraction: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "table.csv"
        frame.to_csv(path, index=False)
        try:
            data = load_table(path, "clicked:binary,spent:regression", validation_fraction=validation_fraction,
                              test_fraction=0.1)
        except MmoeError as error:
            assert "\n" not in str(error) and str(error)
            return
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
