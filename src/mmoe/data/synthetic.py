"""Synthetic two-task regression data with a controllable task correlation (paper, Section 3.2).

The generator, for a correlation score p in [-1, 1]:

1. Two orthogonal unit vectors u1, u2 in R^d (a Gaussian d x 2 matrix, orthonormalised).
2. w1 = c·u1, w2 = c·(p·u1 + sqrt(1 - p²)·u2), so that cos(w1, w2) = p and |w1| = |w2| = c.
3. x ~ N(0, I_d).
4. y_k = w_kᵀx + Σ_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k, with α_i, β_i shared by both tasks.

What the paper leaves open is a parameter of `SyntheticConfig`. The defaults (scale c = 0.5, sines m = 10,
α_i ~ N(0, 1)·11, β_i ~ N(0, 1), ε_k ~ N(0, 0.1²)) were chosen by measuring the labels' Pearson
correlation against the paper's Figure 2; docs/synthetic.md has the measured table and the
command that measured it.

Everything random comes from one `numpy.random.default_rng(seed)`, drawn in a fixed order
(u, α, β, x, ε), so the same config always gives the same data.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mmoe.data.assemble import fit_encode
from mmoe.data.dataset import MultiTaskData, Task
from mmoe.data.encoders import TableEncoder
from mmoe.data.tabular import split_indices
from mmoe.errors import MmoeError

TASK_NAMES = ("y1", "y2")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic generator (the paper's symbol in brackets).

    correlation (p): the cosine similarity of w1 and w2, in [-1, 1].
    dim (d): input dimension (the paper uses 100).
    scale (c): length of the weight vectors, |w1| = |w2| = c.
    sines (m): number of sine terms.
    alpha_scale: α_i ~ N(0, 1)·alpha_scale. Large values make the sines high-frequency, which is
        what pulls the label correlation far below p as in the paper's Figure 2.
    noise: standard deviation of the label noise ε_k. The paper writes ε ~ N(0, 0.01); read as
        N(mean, variance), that is a standard deviation of 0.1, the default.
    rows: number of generated rows (Figure 2 uses 10k points per p).
    seed: seed of `numpy.random.default_rng`; the same config gives identical data.
    """

    correlation: float = 0.5
    dim: int = 100
    scale: float = 0.5
    sines: int = 10
    alpha_scale: float = 11.0
    noise: float = 0.1
    rows: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("correlation", "scale", "alpha_scale", "noise"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)):
                raise MmoeError(f"synthetic data: {name} must be a finite number, got {value!r}")
            # Plain Python numbers, so that asdict(config) is JSON-ready even when built from numpy values.
            object.__setattr__(self, name, float(value))
        for name in ("dim", "sines", "rows", "seed"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
                raise MmoeError(f"synthetic data: {name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not -1.0 <= self.correlation <= 1.0:
            raise MmoeError(f"synthetic data: correlation (p) must be in [-1, 1], got {self.correlation!r}")
        if self.dim < 2:
            raise MmoeError(f"synthetic data: dim (d) must be >= 2 (two orthogonal vectors), got {self.dim!r}")
        if self.scale <= 0:
            raise MmoeError(f"synthetic data: scale (c) must be positive, got {self.scale!r}")
        if self.sines < 0:
            raise MmoeError(f"synthetic data: sines (m) must be >= 0, got {self.sines!r}")
        if self.alpha_scale < 0:
            raise MmoeError(f"synthetic data: alpha_scale must be >= 0, got {self.alpha_scale!r}")
        if self.noise < 0:
            raise MmoeError(f"synthetic data: noise (a standard deviation) must be >= 0, got {self.noise!r}")
        if self.rows < 1:
            raise MmoeError(f"synthetic data: rows must be >= 1, got {self.rows!r}")
        if self.seed < 0:
            raise MmoeError(f"synthetic data: seed must be >= 0 (numpy's default_rng), got {self.seed!r}")

    @property
    def noise_variance(self) -> float:
        return self.noise**2


@dataclass(frozen=True)
class SyntheticParameters:
    """The drawn parameters behind one generated data set (for tests and inspection)."""

    u1: np.ndarray
    u2: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def _draw_parameters(config: SyntheticConfig, rng: np.random.Generator) -> SyntheticParameters:
    # QR of a Gaussian matrix is Gram-Schmidt done stably: two orthonormal columns, uniformly
    # oriented. The sign fix makes the result depend only on the draw, not on the LAPACK build.
    q, r = np.linalg.qr(rng.standard_normal((config.dim, 2)))
    q = q * np.sign(np.diag(r))
    u1, u2 = q[:, 0], q[:, 1]
    p = config.correlation
    w1 = config.scale * u1
    w2 = config.scale * (p * u1 + math.sqrt(max(0.0, 1.0 - p * p)) * u2)
    alpha = rng.standard_normal(config.sines) * config.alpha_scale
    beta = rng.standard_normal(config.sines)
    return SyntheticParameters(u1, u2, w1, w2, alpha, beta)


def synthetic_parameters(config: SyntheticConfig) -> SyntheticParameters:
    """The u1, u2, w1, w2, α, β that `generate_synthetic(config)` uses."""
    return _draw_parameters(config, np.random.default_rng(config.seed))


def generate_synthetic(config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """x [rows, d] float32 and y [rows, 2] float32 (columns y1, y2)."""
    rng = np.random.default_rng(config.seed)
    params = _draw_parameters(config, rng)
    x = rng.standard_normal((config.rows, config.dim))
    projections = x @ np.stack([params.w1, params.w2], axis=1)  # [rows, 2]: w_kᵀx
    # One [rows, 2, m] block of sines; α_i, β_i are broadcast over both tasks (shared, as specified).
    sines = np.sin(projections[:, :, None] * params.alpha + params.beta).sum(axis=2)
    y = projections + sines + rng.standard_normal((config.rows, 2)) * config.noise
    return x.astype(np.float32), y.astype(np.float32)


def label_correlation(config: SyntheticConfig) -> float:
    """Pearson correlation of y1 and y2 over the rows `config` generates."""
    _, y = generate_synthetic(config)
    return _pearson(y[:, 0], y[:, 1])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean(dtype=np.float64)
    b = b.astype(np.float64) - b.mean(dtype=np.float64)
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else float("nan")


def feature_names(d: int) -> list[str]:
    """The synthetic feature column names x0..x{d-1}."""
    return [f"x{j}" for j in range(d)]


def synthetic_frame(config: SyntheticConfig) -> pd.DataFrame:
    """The generated rows as a table: columns x0..x{d-1}, y1, y2."""
    x, y = generate_synthetic(config)
    frame = pd.DataFrame(x, columns=feature_names(config.dim))
    frame[TASK_NAMES[0]] = y[:, 0]
    frame[TASK_NAMES[1]] = y[:, 1]
    return frame


def load_synthetic(
    config: SyntheticConfig, validation_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int | None = None
) -> MultiTaskData:
    """The generated rows as a `MultiTaskData` with tasks y1, y2 (regression) and numeric x0..x{d-1}.

    Features and labels are kept in the paper's raw units (no standardising), since the synthetic
    study reports MSE on those. split_seed: seed of the row shuffle; None uses `config.seed`.
    """
    frame = synthetic_frame(config)
    tasks = [Task(TASK_NAMES[0], "regression"), Task(TASK_NAMES[1], "regression")]
    source = "synthetic data"
    train_index, validation_index, test_index = split_indices(
        len(frame), validation_fraction, test_fraction, config.seed if split_seed is None else split_seed, source
    )
    encoder = TableEncoder(
        numeric=feature_names(config.dim),
        categorical=[],
        tasks=tasks,
        standardize_numeric=False,
        standardize_regression=False,
    )
    parts = {
        "train": (frame.iloc[train_index], source),
        "validation": (frame.iloc[validation_index], source),
        "test": (frame.iloc[test_index], source),
    }
    info = {
        "dataset": "synthetic",
        "config": asdict(config),
        "label_correlation": _pearson(frame[TASK_NAMES[0]].to_numpy(), frame[TASK_NAMES[1]].to_numpy()),
    }
    return fit_encode(encoder, parts, info)


__all__ = [
    "SyntheticConfig",
    "SyntheticParameters",
    "generate_synthetic",
    "label_correlation",
    "load_synthetic",
    "synthetic_frame",
    "synthetic_parameters",
    "feature_names",
]
