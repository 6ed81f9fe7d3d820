"""The one way a data source becomes a `MultiTaskData`: fit the encoder on the training rows
only, encode every split with it, and record the split sizes in the data's info.

Census (`census.build_census_data`), synthetic data (`synthetic.load_synthetic`) and the user's
tables (`tabular.load_table`) call `fit_encode` with their three parts; a streamed table, whose
encoder is fitted from statistics gathered batch by batch, encodes its own splits and calls
`fitted_data` (`streaming.load_streaming_table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mmoe.data.dataset import MultiTaskData
from mmoe.data.encoders import TableEncoder

PARTS = ("train", "validation", "test")


def fit_encode(
    encoder: TableEncoder, parts: Mapping[str, tuple[pd.DataFrame, str]], info: Mapping[str, Any]
) -> MultiTaskData:
    """`encoder` fitted on parts["train"]'s rows, and the three parts encoded with it.

    parts: {"train", "validation", "test"}: (rows, source), source naming the rows in error
    messages. info: the data set's description; see `fitted_data` for its "rows" entry.
    """
    rows, source = parts["train"]
    encoder.fit(rows, source)
    return fitted_data(encoder, {name: encoder.transform(*parts[name]) for name in PARTS}, info)


def fitted_data(
    encoder: TableEncoder, splits: Mapping[str, Any], info: Mapping[str, Any], kind: type[MultiTaskData] = MultiTaskData
) -> MultiTaskData:
    """A `kind` of the fitted `encoder` (its fitted tasks and input spec) and its encoded splits.

    splits: {"train", "validation", "test"}: a `Split` each (a streamed table's "train" is its
    `StreamingRows`). info's "rows" entry becomes {split: number of rows}, where info has it
    (a source that wants it among its other keys lists it, e.g. as None) or else last.
    """
    info = dict(info)
    info["rows"] = {name: len(splits[name]) for name in PARTS}
    return kind(
        tasks=list(encoder.tasks),
        input_spec=encoder.input_spec,
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        encoder=encoder,
        info=info,
    )


__all__ = ["fit_encode", "fitted_data"]
