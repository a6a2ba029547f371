"""The report's statistics on constructed outcomes, against hand computation and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from cars.stats import (
    format_p_value,
    mcnemar_exact,
    mean_interval,
    paired_bootstrap_interval,
    proportion_interval,
    seed_spread,
    wilcoxon_p_value,
    wilson_interval,
)

Z = 1.959963984540054  # the normal quantile of 0.975


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(8, 10), (1, 3), (7_000, 8_041), (0, 5)])
def test_wilson_interval_matches_the_formula(k: int, n: int) -> None:
    interval = wilson_interval(k, n)
    low, high = _wilson_by_hand(k, n)
    assert interval.value == pytest.approx(k / n)
    assert interval.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert interval.high == pytest.approx(high, abs=1e-12)
    assert interval.n == n


def test_wilson_interval_of_all_correct_reaches_one_but_not_down_to_it() -> None:
    interval = wilson_interval(16, 16)
    assert interval.value == 1.0
    assert interval.high == pytest.approx(1.0)
    assert interval.low == pytest.approx(16 / (16 + Z**2))  # the closed form at p = 1
    assert interval.low < 1.0


def test_wilson_interval_without_images_is_null() -> None:
    interval = wilson_interval(0, 0)
    assert interval.n == 0
    assert all(math.isnan(v) for v in (interval.value, interval.low, interval.high))


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(5, 4)


def test_proportion_interval_counts_the_hits() -> None:
    assert proportion_interval([True, False, True, True]) == wilson_interval(3, 4)


def test_mcnemar_on_a_known_table() -> None:
    # a right & b wrong: 9 images; a wrong & b right: 2; both right 20, both wrong 5.
    a = np.array([1] * 9 + [0] * 2 + [1] * 20 + [0] * 5, bool)
    b = np.array([0] * 9 + [1] * 2 + [1] * 20 + [0] * 5, bool)
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (9, 2)
    # Two-sided exact binomial test of 2 in 11 at 1/2: 2 * (C(11,0)+C(11,1)+C(11,2)) / 2^11.
    assert result.p_value == pytest.approx(2 * (1 + 11 + 55) / 2**11)
    assert mcnemar_exact(b, a).p_value == pytest.approx(result.p_value)


def test_mcnemar_without_discordant_images_finds_nothing() -> None:
    all_correct = np.ones(12, bool)
    result = mcnemar_exact(all_correct, all_correct)
    assert (result.only_a, result.only_b, result.p_value) == (0, 0, 1.0)
    empty = mcnemar_exact(np.zeros(0, bool), np.zeros(0, bool))
    assert empty.p_value == 1.0


def test_mcnemar_refuses_different_image_sets() -> None:
    with pytest.raises(ValueError, match="different image sets"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_paired_bootstrap_is_reproducible_and_brackets_the_difference() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(400) < 0.8
    b = a.copy()
    b[:60] = ~b[:60]
    first = paired_bootstrap_interval(a, b)
    assert first == paired_bootstrap_interval(a, b)
    assert first.value == pytest.approx(a.mean() - b.mean())
    assert first.low < first.value < first.high
    assert first.n == 400
    # The standard error of a paired difference of proportions, by hand: the interval
    # should be about 2 x 1.96 of it wide.
    d = a.astype(float) - b.astype(float)
    width = 2 * Z * d.std(ddof=1) / math.sqrt(d.size)
    assert first.high - first.low == pytest.approx(width, rel=0.15)


def test_paired_bootstrap_of_identical_outcomes_covers_zero() -> None:
    outcomes = np.ones(30, bool)
    interval = paired_bootstrap_interval(outcomes, outcomes)
    assert (interval.value, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert interval.covers_zero
    always_better = paired_bootstrap_interval(np.ones(5), np.zeros(5))
    assert (always_better.low, always_better.high) == (1.0, 1.0)
    assert not always_better.covers_zero


def test_paired_bootstrap_without_pairs_is_null() -> None:
    interval = paired_bootstrap_interval(np.zeros(0), np.zeros(0))
    assert interval.n == 0 and math.isnan(interval.value) and interval.covers_zero
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_interval(np.zeros(3), np.zeros(2))


def test_mean_interval_is_students_t() -> None:
    interval = mean_interval([1.0, 2.0, 3.0, np.nan])
    # mean 2, sd 1, n 3: 2 +- t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302653.
    assert interval.value == 2.0 and interval.n == 3
    assert interval.low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert interval.high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6)
    values = np.random.default_rng(0).normal(1, 2, 50)
    low, high = scipy.stats.t.interval(0.95, 49, loc=values.mean(), scale=scipy.stats.sem(values))
    assert (mean_interval(values).low, mean_interval(values).high) == pytest.approx((low, high))


def test_mean_interval_of_one_or_no_value() -> None:
    one = mean_interval([0.4])
    assert one.value == 0.4 and math.isnan(one.low) and one.n == 1
    none = mean_interval([np.nan])
    assert none.n == 0 and math.isnan(none.value)
    constant = mean_interval([0.5, 0.5, 0.5])
    assert (constant.low, constant.high) == (0.5, 0.5)


def test_wilcoxon_matches_scipy_and_handles_ties_and_gaps() -> None:
    a = np.array([2.1, 1.4, 3.3, 0.9, 2.8, 1.7, np.nan])
    b = np.array([1.2, 1.5, 2.0, 0.4, 1.9, 1.1, 5.0])
    expected = scipy.stats.wilcoxon(a[:6] - b[:6]).pvalue
    assert wilcoxon_p_value(a, b) == pytest.approx(expected)
    assert wilcoxon_p_value(np.ones(4), np.ones(4)) == 1.0
    assert math.isnan(wilcoxon_p_value(np.zeros(0), np.zeros(0)))


def test_wilcoxon_counts_pairs_equal_up_to_float32_rounding_as_ties() -> None:
    # Two runs of the same report: CAM measures from float32 maps differ in their last bits.
    a = np.array([1.30, 0.85, 1.10, 2.40, 0.95])
    b = np.array([1.10, 0.85, 1.10, 2.00, 0.70])
    rerun = b + np.array([0.0, 3e-7, -2e-7, 0.0, 0.0])
    assert wilcoxon_p_value(a, rerun) == wilcoxon_p_value(a, b)
    assert wilcoxon_p_value(b, rerun) == 1.0


def test_seed_spread_is_mean_and_sample_deviation() -> None:
    spread = seed_spread([0.5, 0.7, np.nan])
    assert spread.mean == pytest.approx(0.6)
    assert spread.std == pytest.approx(math.sqrt(0.02))
    assert spread.n == 2
    single = seed_spread([0.5])
    assert single.mean == 0.5 and math.isnan(single.std)
    assert seed_spread([]).n == 0


@pytest.mark.parametrize(
    ("p", "text"),
    [(3e-9, "p < 1e-6"), (2.5e-4, "p = 2.5e-04"), (0.031, "p = 0.031"), (0.5, "p = 0.50")],
)
def test_p_values_read_as_the_issue_writes_them(p: float, text: str) -> None:
    assert format_p_value(p) == text
    assert format_p_value(math.nan) == "p n/a"
