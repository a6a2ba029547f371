"""The paired comparisons between regimes.

``comparisons.parquet`` holds, for each pair of swept regimes, the difference of
their best models' test accuracy (McNemar's exact test, paired bootstrap
interval) and of their Grad-CAM energy-in-box ratios (Wilcoxon's signed-rank
test, paired bootstrap interval), each over the images both models saw, and each
regime's ratios against those of the untrained baseline `random-init`. A pair
that cannot be compared (a regime without a scored model, no test images, no
known test label, no box) keeps its row: nulls, and ``not_compared`` says why.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cars.config import RANDOM_INIT, REGIMES
from cars.report.predictions import model_name
from cars.stats import (
    CONFIDENCE,
    Interval,
    format_p_value,
    mcnemar_exact,
    paired_bootstrap_interval,
    wilcoxon_p_value,
)

COMPARISON_COLUMNS = (
    "measure",
    "model_a",
    "regime_a",
    "model_b",
    "regime_b",
    "images",
    "value_a",
    "value_b",
    "difference",
    "ci_low",
    "ci_high",
    "interval",
    "test",
    "p_value",
    "only_a",
    "only_b",
    "not_compared",
)
# Fixed types, so that comparisons.parquet has one schema whatever could be compared.
COMPARISON_TYPES = {
    **dict.fromkeys(COMPARISON_COLUMNS, "string"),
    "images": "int64",
    **dict.fromkeys(
        ("value_a", "value_b", "difference", "ci_low", "ci_high", "p_value"), "float64"
    ),
    **dict.fromkeys(("only_a", "only_b"), "Int64"),
}
# The columns of gradcam.parquet the comparisons read.
GRADCAM_KEYS = ("test_index", "model", "regime", "energy_ratio")
ACCURACY_TEST = "McNemar exact"
RATIO_TEST = "Wilcoxon signed-rank"
INTERVAL_METHOD = "paired bootstrap"


@dataclass(frozen=True)
class ComparedRegime:
    """A swept regime as the comparisons see it: its best model's name, or why it has none."""

    regime: str
    model: str | None
    unscored_because: str | None = None


def _ordered_pairs(
    regimes: Sequence[ComparedRegime], values: dict[str, float]
) -> list[tuple[ComparedRegime, ComparedRegime]]:
    """Each pair once, the higher value first (ties and unknown values keep the given order)."""
    pairs = []
    for first, second in itertools.combinations(regimes, 2):
        swap = values.get(second.regime, math.nan) > values.get(first.regime, math.nan)
        pairs.append((second, first) if swap else (first, second))
    return pairs


def _unscored(pair: tuple[ComparedRegime, ComparedRegime]) -> str | None:
    """Why a pair cannot be compared for want of a model; None when both have one."""
    for side in pair:
        if side.model is None:
            return f"{side.regime} has no scored model ({side.unscored_because})"
    return None


def compare_accuracies(
    predictions: pd.DataFrame, regimes: Sequence[ComparedRegime]
) -> pd.DataFrame:
    """Each pair of ``regimes``' models on the labelled test images both were scored on.

    A pair that cannot be compared (a regime without a model, no test images, no
    known test label) is a row of nulls whose ``not_compared`` says why.
    """
    models = [r.model for r in regimes if r.model is not None]
    scored = predictions[predictions["model"].isin(models)]
    labelled = scored[scored["correct"].notna()]
    table = labelled.pivot(index="image", columns="model", values="correct")
    accuracy = {
        r.regime: float(table[r.model].dropna().astype(bool).mean())
        for r in regimes
        if r.model in table and table[r.model].notna().any()
    }
    rows = []
    for a, b in _ordered_pairs(regimes, accuracy):
        gap = _unscored((a, b)) or _accuracy_gap(scored, labelled, a.model, b.model)
        pair = table[[a.model, b.model]].dropna() if gap is None else table.iloc[0:0]
        if gap is None and pair.empty:
            gap = "no labelled test image was scored by both"
        if gap is not None:
            rows.append(_missing_row("test_acc", a, b, gap))
            continue
        correct_a, correct_b = (pair[m].to_numpy(dtype=bool) for m in (a.model, b.model))
        test = mcnemar_exact(correct_a, correct_b)
        rows.append(
            _row(
                "test_acc",
                (a, float(correct_a.mean())),
                (b, float(correct_b.mean())),
                paired_bootstrap_interval(correct_a, correct_b),
                test=ACCURACY_TEST,
                p_value=test.p_value,
                discordant=(test.only_a, test.only_b),
            )
        )
    return comparison_table(rows)


def _accuracy_gap(scored: pd.DataFrame, labelled: pd.DataFrame, *models: str | None) -> str | None:
    """Why two scored models' test outcomes cannot be compared; None when they can."""
    if not all(scored["model"].eq(m).any() for m in models):
        return "no test images"
    if not all(labelled["model"].eq(m).any() for m in models):
        return "no test image has a known label"
    return None


def compare_cam_ratios(
    gradcam: pd.DataFrame | None, regimes: Sequence[ComparedRegime]
) -> pd.DataFrame:
    """Each pair of models' energy-in-box ratios over the images both have a ratio for.

    The untrained baseline (``random-init``), where ``gradcam`` has its rows, is paired
    with every regime as the regimes are with each other. A pair that cannot be compared
    is a row of nulls whose ``not_compared`` says why.
    """
    gradcam = gradcam if gradcam is not None else pd.DataFrame(columns=GRADCAM_KEYS)
    if gradcam["model"].eq(RANDOM_INIT).any():
        regimes = [*regimes, ComparedRegime(RANDOM_INIT, RANDOM_INIT)]
    table = gradcam.pivot(index="test_index", columns="model", values="energy_ratio")
    table = table.astype(float)
    means = {
        r.regime: float(table[r.model].mean())
        for r in regimes
        if r.model in table and table[r.model].notna().any()
    }
    rows = []
    for a, b in _ordered_pairs(regimes, means):
        gap = _unscored((a, b))
        if gap is None and not (a.model in table and b.model in table):
            gap = "no Grad-CAM was drawn (no test images)"
        pair = table[[a.model, b.model]].dropna() if gap is None else table.iloc[0:0]
        if gap is None and pair.empty:
            gap = (
                "no image has an energy-in-box ratio for both (its box unknown, or a CAM all zero)"
            )
        if gap is not None:
            rows.append(_missing_row("energy_ratio", a, b, gap))
            continue
        # The images both have a ratio for decide which comes first, as the difference does.
        first, second = (b, a) if pair[b.model].mean() > pair[a.model].mean() else (a, b)
        ratios_a, ratios_b = (pair[m].to_numpy() for m in (first.model, second.model))
        rows.append(
            _row(
                "energy_ratio",
                (first, float(ratios_a.mean())),
                (second, float(ratios_b.mean())),
                paired_bootstrap_interval(ratios_a, ratios_b),
                test=RATIO_TEST,
                p_value=wilcoxon_p_value(ratios_a, ratios_b),
                discordant=None,
            )
        )
    return comparison_table(rows)


def comparison_table(rows: Sequence[dict[str, object]]) -> pd.DataFrame:
    """Comparison rows as ``comparisons.parquet`` holds them, in its columns and types."""
    return pd.DataFrame(list(rows), columns=list(COMPARISON_COLUMNS)).astype(COMPARISON_TYPES)


def _row(
    measure: str,
    a: tuple[ComparedRegime, float],
    b: tuple[ComparedRegime, float],
    interval: Interval,
    *,
    test: str,
    p_value: float,
    discordant: tuple[int, int] | None,
) -> dict[str, object]:
    return {
        "measure": measure,
        "model_a": a[0].model,
        "regime_a": a[0].regime,
        "model_b": b[0].model,
        "regime_b": b[0].regime,
        "images": interval.n,
        "value_a": a[1],
        "value_b": b[1],
        "difference": interval.value,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "interval": INTERVAL_METHOD,
        "test": test,
        "p_value": p_value,
        "only_a": discordant[0] if discordant else None,
        "only_b": discordant[1] if discordant else None,
        "not_compared": None,
    }


def _missing_row(measure: str, a: ComparedRegime, b: ComparedRegime, why: str) -> dict[str, object]:
    """A pair that could not be compared: no number, only the reason."""
    row: dict[str, object] = dict.fromkeys(COMPARISON_COLUMNS)
    numbers = ("value_a", "value_b", "difference", "ci_low", "ci_high", "p_value")
    row.update(dict.fromkeys(numbers, math.nan))
    row.update(
        measure=measure,
        model_a=a.model,
        regime_a=a.regime,
        model_b=b.model,
        regime_b=b.regime,
        images=0,
        not_compared=why,
    )
    return row


def compared_regimes(
    swept: Sequence[str], bests: pd.DataFrame, unscored_because: str
) -> list[ComparedRegime]:
    """Every swept regime, in study order, with its best trial's model name or why it has none.

    Args:
        bests: each scored regime's best trial (``regime``, ``trial_id``).
        unscored_because: why a swept regime missing from ``bests`` has no model.
    """
    models = {row.regime: model_name(row.regime, row.trial_id) for row in bests.itertuples()}
    return [
        ComparedRegime(r, models.get(r), None if r in models else unscored_because)
        for r in REGIMES
        if r in swept
    ]


def compare_regimes(
    predictions: pd.DataFrame, gradcam: pd.DataFrame | None, regimes: Sequence[ComparedRegime]
) -> pd.DataFrame:
    """``comparisons.parquet``: every pair of ``regimes`` on test accuracy, then on CAM ratios."""
    parts = [compare_accuracies(predictions, regimes), compare_cam_ratios(gradcam, regimes)]
    found = [part for part in parts if len(part)]
    return pd.concat(found, ignore_index=True).astype(COMPARISON_TYPES) if found else parts[0]


def _range(low: float, high: float, scale: float, digits: int) -> str:
    """``12.9-15.6``, or ``-0.8 to 3.1`` where a dash would read as a minus."""
    sep = " to " if low < 0 else "-"
    return f"{scale * low:.{digits}f}{sep}{scale * high:.{digits}f}"


def describe_comparison(row: pd.Series) -> str:
    """One sentence stating a comparison, its interval and its test."""
    level = f"{100 * CONFIDENCE:.0f} %"
    images = int(row["images"])
    a, b = row["regime_a"], row["regime_b"]
    if row["measure"] == "test_acc":
        what, scale, digits, unit, test = "test accuracy", 100, 1, " points", "McNemar"
    else:
        what, scale, digits, unit, test = "Grad-CAM energy-in-box ratio", 1, 2, "", "Wilcoxon"
    why = row.get("not_compared")
    if isinstance(why, str):
        return f"{a} vs {b} ({what}): not compared, {why}."
    if images == 0 or math.isnan(row["difference"]):
        return f"{a} vs {b} ({what}): not compared, no image has a value for both."
    evidence = (
        f"95 % CI {_range(row['ci_low'], row['ci_high'], scale, digits)}, "
        f"{test} {format_p_value(row['p_value'])} on {images:,} images"
    ).replace("95 %", level)
    difference = f"{scale * row['difference']:.{digits}f}{unit}"
    if row["ci_low"] <= 0 <= row["ci_high"]:
        gap = f"{a} ahead by {difference}" if row["difference"] else f"the same {what}"
        return f"{a} vs {b} ({what}): no detectable difference ({gap}, {evidence})."
    verb = "beats" if row["measure"] == "test_acc" else "has a higher ratio than"
    return f"{a} {verb} {b} by {difference}, {evidence}."


def render_comparisons(comparisons: pd.DataFrame | None, measure: str) -> list[str]:
    """One bulleted sentence per comparison of ``measure``."""
    if comparisons is None:
        return []
    rows = comparisons[comparisons["measure"] == measure]
    return [f"- {describe_comparison(row)}" for _, row in rows.iterrows()]
