"""Which split a row of a streamed table belongs to, decided row by row from a hash.

Row i of the table (files in `read_table`'s order) goes to validation when `row_uniforms(seed,
i)`, a number in [0, 1) hashed from (split_seed, i) with splitmix64, falls below the validation
fraction, to test when it falls in the next test fraction, else to training. The rule needs no
row count and no permutation, so it costs no memory, and the same table and seed always give the
same split whatever batches the rows are read in; the shares are the fractions on average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2

_MASK = (1 << 64) - 1


def _splitmix(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def row_uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """A number in [0, 1) for each of rows start..start+count-1, a hash of (seed, row): the same
    row and seed always give the same number, whatever batch the row is read in."""
    z = np.arange(start, start + count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = z + np.uint64(_splitmix(seed & _MASK))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class SplitRule:
    """Which split a row of the main table belongs to (before unlabelled rows are dropped)."""

    seed: int
    validation: float  # share of rows; 0 when the validation rows come from a file
    test: float

    def assign(self, start: int, count: int) -> np.ndarray:
        """TRAIN (0), VALIDATION (1) or TEST (2) for rows start..start+count-1."""
        if not self.validation and not self.test:
            return np.zeros(count, dtype=np.int8)
        u = row_uniforms(self.seed, start, count)
        return np.where(u < self.validation, VALIDATION, np.where(u < self.validation + self.test, TEST, TRAIN)).astype(
            np.int8
        )


__all__ = ["SPLITS", "TEST", "TRAIN", "VALIDATION", "SplitRule", "row_uniforms"]
