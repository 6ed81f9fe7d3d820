"""The statistics behind the report's spreads and the claims' verdicts.

Bootstrap percentile intervals (of a mean, of a difference of means, of any statistic), the
t-interval of a mean, and the Brown-Forsythe test of equal variances (Levene's test centred on
the median, robust to the skewed loss distributions of Figure 5), implemented here so that the
numbers do not depend on an optional scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_RESAMPLES = 4000
Values = Sequence[float] | np.ndarray  # a sample: a list of numbers or a 1-d array


def as_array(values: Values) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def t_interval(values: Values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean. One value gives (mean, nan, nan)."""
    x = as_array(values)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = _t_quantile(0.5 + confidence / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def _t_quantile(q: float, df: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(q, df))
    except ImportError:  # the normal quantile with a Cornish-Fisher correction, close for df >= 3
        z = _normal_quantile(q)
        return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def bootstrap_ci(
    statistic: Callable[..., float],
    samples: Sequence[Values],
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high): the percentile bootstrap of statistic(*samples), each sample
    resampled independently with replacement."""
    arrays = [as_array(s) for s in samples]
    estimate = float(statistic(*arrays))
    if any(a.size < 2 for a in arrays):
        return estimate, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for b in range(resamples):
        draws[b] = statistic(*[a[rng.integers(0, a.size, a.size)] for a in arrays])
    alpha = (1 - confidence) / 2
    return estimate, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def bootstrap_mean_ci(
    values: Values, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    return bootstrap_ci(np.mean, [values], confidence, resamples, seed)


def bootstrap_difference_ci(
    a: Values, b: Values, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """(mean(a) − mean(b), low, high), a and b resampled independently."""
    return bootstrap_ci(lambda x, y: float(np.mean(x) - np.mean(y)), [a, b], confidence, resamples, seed)


def brown_forsythe(*groups: Values) -> tuple[float, float]:
    """(F statistic, p-value) of the Brown-Forsythe test that the groups have equal variances:
    a one-way ANOVA on each value's absolute deviation from its group's median."""
    arrays = [as_array(g) for g in groups]
    if len(arrays) < 2 or any(a.size < 2 for a in arrays):
        return float("nan"), float("nan")
    deviations = [np.abs(a - np.median(a)) for a in arrays]
    sizes = np.array([d.size for d in deviations], dtype=float)
    means = np.array([d.mean() for d in deviations])
    grand = np.concatenate(deviations).mean()
    k, n = len(deviations), sizes.sum()
    between = float((sizes * (means - grand) ** 2).sum()) / (k - 1)
    within = float(sum(((d - m) ** 2).sum() for d, m in zip(deviations, means))) / (n - k)
    if within == 0:
        return (float("inf"), 0.0) if between > 0 else (float("nan"), float("nan"))
    statistic = between / within
    return statistic, _f_survival(statistic, k - 1, n - k)


def _f_survival(f: float, df1: float, df2: float) -> float:
    """P(F > f) for the F distribution (scipy when present, else the regularised incomplete beta)."""
    try:
        from scipy.stats import f as f_distribution

        return float(f_distribution.sf(f, df1, df2))
    except ImportError:
        return _incomplete_beta(df2 / 2, df1 / 2, df2 / (df2 + df1 * f))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) by its continued fraction (Numerical Recipes)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, 1 - x)
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1.0 + numerator / c
            c = c if abs(c) > 1e-300 else 1e-300
            result *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return front * result / a


def variance_ratio(a: Values, b: Values) -> float:
    """var(a) / var(b) (sample variances)."""
    x, y = as_array(a), as_array(b)
    return float(x.var(ddof=1) / y.var(ddof=1)) if x.size > 1 and y.size > 1 and y.var() > 0 else float("nan")
