"""The streaming vocabulary pass: cost per row of learning an id column's values as they grow.

`--streaming` fits a categorical column in one pass over record batches
(`mmoe.data.arrow_encoding._CategoryColumn.observe`). This feeds one column of random ids
(`--rows` rows drawn uniformly from `--ids` values, so that most batches bring new values for a
long time) batch by batch to two contenders, each with its own state, on the same batches,
alternating which goes first:
- `dict`: the column as mmoe has it (each batch reduced to its distinct values by pyarrow, those
  looked up in a dict of known values);
- `index_in`: the former lookup, kept here as the reference: `pyarrow.compute.index_in` of the
  batch against every value known so far, whose hash table is rebuilt per batch, and the known
  values re-concatenated when new ones arrive.
Both count the same rows per value (checked at the end). Prints, at a few points of the pass,
the values known and each contender's microseconds per row over the batches since the last point,
and writes benchmarks/results/vocabulary-pass.json (atomically).

    PYTHONPATH=src python benchmarks/vocabulary_pass.py                      # 8M rows, 4M ids
    PYTHONPATH=src python benchmarks/vocabulary_pass.py --rows 400000 --ids 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmoe.data.arrow_encoding import _CategoryColumn
from mmoe.data.values import category_texts, missing
from mmoe.io import atomic_write_json

HERE = Path(__file__).resolve().parent


class IndexInColumn:
    """The reference: every batch looked up with `index_in` against all values known so far."""

    def __init__(self) -> None:
        self.known = pa.array([], type=pa.int64())
        self.texts: list[str] = []
        self.in_training = np.zeros(0, dtype=np.int64)

    def _lookup(self, values: pa.Array) -> np.ndarray:
        found = pc.index_in(values, value_set=self.known) if len(self.known) else pa.nulls(len(values), pa.int32())
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)

    def observe(self, values: pa.Array) -> None:
        index = self._lookup(values)
        if (index < 0).any():
            new = pc.unique(values.filter(pa.array(index < 0)))
            new = new.filter(pa.array(~missing(new)))
            self.texts += category_texts(new.to_pandas()).tolist()
            self.known = pa.concat_arrays([self.known, new])
            self.in_training = np.concatenate([self.in_training, np.zeros(len(new), dtype=np.int64)])
            index = self._lookup(values)
        distinct, rows = np.unique(index[index >= 0], return_counts=True)
        self.in_training[distinct] += rows

    def fitted_counts(self) -> dict[str, int]:
        return dict(zip(self.texts, self.in_training.tolist()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=8_000_000, help="rows of the id column")
    parser.add_argument("--ids", type=int, default=4_000_000, help="distinct ids the rows are drawn from")
    parser.add_argument("--batch-rows", type=int, default=65_536, help="rows per record batch")
    parser.add_argument("--points", type=int, default=8, help="points of the pass to report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "vocabulary-pass.json", help="JSON output")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    contenders: dict[str, Any] = {"dict": _CategoryColumn(pa.int64(), None), "index_in": IndexInColumn()}
    batches = -(-args.rows // args.batch_rows)
    every = max(1, batches // args.points)
    spent = dict.fromkeys(contenders, 0.0)
    since = dict.fromkeys(contenders, 0.0)
    points: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    rows_since = 0
    for b in range(batches):
        values = pa.array(rng.integers(0, args.ids, size=min(args.batch_rows, args.rows - b * args.batch_rows)))
        order = list(contenders) if b % 2 == 0 else list(reversed(contenders))  # alternate who goes first
        for name in order:
            start = time.perf_counter()
            contenders[name].observe(values)
            since[name] += time.perf_counter() - start
        rows_since += len(values)
        if (b + 1) % every == 0 or b + 1 == batches:
            point = {"rows": (b * args.batch_rows) + len(values), "known": len(contenders["dict"].texts)}
            point |= {f"{name}_us_per_row": 1e6 * since[name] / rows_since for name in contenders}
            points.append(point)
            print(
                f"rows {point['rows']:>11,}  known {point['known']:>10,}  "
                + "  ".join(f"{name} {point[f'{name}_us_per_row']:6.2f} µs/row" for name in contenders),
                flush=True,
            )
            for name in contenders:
                spent[name] += since[name]
            since, rows_since = dict.fromkeys(contenders, 0.0), 0
    same = contenders["dict"].fitted_counts() == contenders["index_in"].fitted_counts()
    print("total seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items()))
    print(f"index_in / dict: {spent['index_in'] / spent['dict']:.2f}x; same counts: {same}")
    report = {
        "rows": args.rows,
        "ids": args.ids,
        "batch_rows": args.batch_rows,
        "seed": args.seed,
        "points": points,
        "total_seconds": spent,
        "ratio_index_in_over_dict": spent["index_in"] / spent["dict"],
        "same_counts": same,
        "load_average": [load_before, os.getloadavg()[0]],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "pyarrow": pa.__version__},
    }
    atomic_write_json(args.out, report)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
