"""The report's statistics: intervals of scores and paired tests between models.

Pure functions of per-image outcomes (numpy arrays), no Ray and no torch, so
anyone can redo the analysis from ``predictions.parquet``. Every interval is
two-sided at ``CONFIDENCE``; where a statistic rests on no data it is NaN, and
the report says why.

- A proportion (test accuracy, top-5, pointing hits): Wilson's score interval.
- Two models on the same images: McNemar's exact test on the discordant
  pairs, and a paired bootstrap interval of the accuracy difference.
- A mean of a continuous measure (a CAM's energy share): Student's t interval;
  two models' measures on the same images: Wilcoxon's signed-rank test and a
  paired bootstrap interval of the mean difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
# Fixed, so that the report's intervals are the same every time it is written.
BOOTSTRAP_SEED = 0
NAN = math.nan
BOOTSTRAP_CHUNK = 2**22


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval and the count it rests on."""

    value: float
    low: float
    high: float
    n: int

    @property
    def covers_zero(self) -> bool:
        """Whether the interval includes 0 (no detectable difference); True when unknown."""
        return not (self.low > 0 or self.high < 0)


def _outcomes(values: np.ndarray | list[bool], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one outcome per image (1-D), got shape {array.shape}")
    return array.astype(bool)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """A proportion ``successes / n`` with Wilson's score interval; NaN when ``n`` is 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return Interval(NAN, NAN, NAN, 0)
    ci = scipy.stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high), int(n))


def proportion_interval(hits: np.ndarray | list[bool], confidence: float = CONFIDENCE) -> Interval:
    """The share of True among ``hits``, with Wilson's interval."""
    outcomes = _outcomes(hits, "hits")
    return wilson_interval(int(outcomes.sum()), outcomes.size, confidence)


def mean_interval(values: np.ndarray | list[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` (NaNs left out) with Student's t interval.

    One value has a mean but no interval; none has neither.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return Interval(NAN, NAN, NAN, 0)
    mean = float(data.mean())
    if data.size == 1:
        return Interval(mean, NAN, NAN, 1)
    sem = float(data.std(ddof=1) / math.sqrt(data.size))
    if sem == 0:
        return Interval(mean, mean, mean, int(data.size))
    low, high = scipy.stats.t.interval(confidence, data.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), int(data.size))


def _chunks(total: int, size: int) -> list[int]:
    """``total`` split into counts of at most ``size``."""
    return [min(size, total - start) for start in range(0, total, size)]


def paired_bootstrap_interval(
    a: np.ndarray,
    b: np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """The mean of ``a - b`` over the same images, with a percentile bootstrap interval.

    Images are resampled with replacement, each keeping its pair of values, so
    the interval accounts for the two models' outcomes being correlated.
    """
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"paired values need the same images in the same order, got shapes "
            f"{first.shape} and {second.shape}"
        )
    differences = first - second
    differences = differences[~np.isnan(differences)]
    if differences.size == 0:
        return Interval(NAN, NAN, NAN, 0)
    rng = np.random.default_rng(seed)
    # Resampled in chunks of about BOOTSTRAP_CHUNK indices: 10,000 resamples of the 8,041
    # real test images at once would take 640 MB.
    per_chunk = max(1, BOOTSTRAP_CHUNK // differences.size)
    means = np.concatenate(
        [
            differences[rng.integers(0, differences.size, size=(count, differences.size))].mean(1)
            for count in _chunks(resamples, per_chunk)
        ]
    )
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(differences.mean()), float(low), float(high), int(differences.size))


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two models' correct/incorrect outcomes on the same images."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test: a two-sided binomial test of the discordant pairs at 1/2.

    Images both models got right or both got wrong say nothing about which is
    better; under no difference, each discordant image is equally likely to
    favour either model. No discordant image at all gives p = 1.
    """
    a, b = _outcomes(correct_a, "correct_a"), _outcomes(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"outcomes of different image sets: {a.size} and {b.size} images")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return McNemar(only_a, only_b, 1.0)
    p_value = scipy.stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    return McNemar(only_a, only_b, float(p_value))


def wilcoxon_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Wilcoxon's signed-rank test of paired measures (pairs with a NaN left out).

    NaN without any pair; 1 when every pair is equal (no evidence of a difference).
    Pairs equal up to float32 rounding count as ties: the measures come from float32
    maps, and a last-bit difference between two runs must not move the p-value.
    """
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"measures of different image sets: {first.size} and {second.size}")
    keep = ~(np.isnan(first) | np.isnan(second))
    first, second = first[keep], second[keep]
    differences = first - second
    differences[np.isclose(first, second, rtol=1e-5, atol=1e-6)] = 0.0
    if differences.size == 0:
        return NAN
    if not differences.any():
        return 1.0
    return float(scipy.stats.wilcoxon(differences).pvalue)


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of a figure over repeated runs."""

    mean: float
    std: float
    n: int


def seed_spread(values: np.ndarray | list[float]) -> Spread:
    """Mean ± standard deviation (ddof 1) over runs; no deviation from fewer than two."""
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return Spread(NAN, NAN, 0)
    std = float(data.std(ddof=1)) if data.size > 1 else NAN
    return Spread(float(data.mean()), std, int(data.size))


def format_p_value(p_value: float) -> str:
    """``p = 0.031``, ``p < 1e-6``, or ``p n/a``."""
    if math.isnan(p_value):
        return "p n/a"
    if p_value < 1e-6:
        return "p < 1e-6"
    if p_value < 1e-3:
        return f"p = {p_value:.1e}"
    return f"p = {p_value:.2g}" if p_value < 0.1 else f"p = {p_value:.2f}"
