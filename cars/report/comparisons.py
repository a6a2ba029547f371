"""Per-image predictions of the scored models, and the paired comparisons between regimes.

``predictions.parquet`` keeps every scored model's answer on every test image;
``comparisons.parquet`` holds, for each pair of regimes, the difference of their
best models' test accuracy (McNemar's exact test, paired bootstrap interval) and
of their Grad-CAM energy-in-box ratios (Wilcoxon's signed-rank test, paired
bootstrap interval), each over the images both models saw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cars.stats import (
    CONFIDENCE,
    Interval,
    format_p_value,
    mcnemar_exact,
    paired_bootstrap_interval,
    wilcoxon_p_value,
)

PREDICTION_COLUMNS = (
    "image",
    "source_file",
    "model",
    "trial_id",
    "regime",
    "stage",
    "true_label",
    "pred_label",
    "true_probability",
    "correct",
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
)
ACCURACY_TEST = "McNemar exact"
RATIO_TEST = "Wilcoxon signed-rank"
INTERVAL_METHOD = "paired bootstrap"


@dataclass(frozen=True)
class ScoredModel:
    """One scored model's identity and its softmax probabilities on the test split."""

    model: str
    trial_id: str
    regime: str
    stage: str
    probabilities: np.ndarray
    labels: np.ndarray


def build_predictions(models: Sequence[ScoredModel], source_files: Sequence[str]) -> pd.DataFrame:
    """One row per test image and model (``predictions.parquet``).

    ``true_probability`` and ``correct`` are null where the image's label is unknown.
    """
    frames = []
    for scored in models:
        labels = np.asarray(scored.labels, dtype=np.int64)
        known = labels >= 0
        predicted = scored.probabilities.argmax(axis=1) if len(labels) else labels
        rows = np.arange(len(labels))
        true_probability = np.full(len(labels), np.nan)
        true_probability[known] = scored.probabilities[rows[known], labels[known]]
        correct = pd.Series(predicted == labels, dtype="boolean")
        correct[~known] = pd.NA
        frames.append(
            pd.DataFrame(
                {
                    "image": rows,
                    "source_file": list(source_files),
                    "model": scored.model,
                    "trial_id": scored.trial_id,
                    "regime": scored.regime,
                    "stage": scored.stage,
                    "true_label": labels,
                    "pred_label": predicted.astype(np.int64),
                    "true_probability": true_probability,
                    "correct": correct,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    return pd.concat(frames, ignore_index=True).reindex(columns=list(PREDICTION_COLUMNS))


def _ordered_pairs(values: dict[str, float]) -> list[tuple[str, str]]:
    """Each pair once, the higher value first (ties keep the given order)."""
    pairs = []
    for first, second in itertools.combinations(values, 2):
        swap = values[second] > values[first]
        pairs.append((second, first) if swap else (first, second))
    return pairs


def compare_accuracies(predictions: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Each pair of ``models`` on the labelled test images both were scored on."""
    labelled = predictions[predictions["model"].isin(models) & predictions["correct"].notna()]
    table = labelled.pivot(index="image", columns="model", values="correct").dropna()
    regime = dict(zip(predictions["model"], predictions["regime"], strict=False))
    accuracy = {m: float(table[m].astype(bool).mean()) if len(table) else math.nan for m in models}
    rows = []
    for a, b in _ordered_pairs(accuracy):
        correct_a = table[a].to_numpy(dtype=bool) if len(table) else np.zeros(0, bool)
        correct_b = table[b].to_numpy(dtype=bool) if len(table) else np.zeros(0, bool)
        interval = paired_bootstrap_interval(correct_a, correct_b)
        test = mcnemar_exact(correct_a, correct_b)
        rows.append(
            _row(
                "test_acc",
                (a, regime[a], accuracy[a]),
                (b, regime[b], accuracy[b]),
                interval,
                test=ACCURACY_TEST,
                p_value=test.p_value if len(table) else math.nan,
                discordant=(test.only_a, test.only_b),
            )
        )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def compare_cam_ratios(gradcam: pd.DataFrame) -> pd.DataFrame:
    """Each pair of models' energy-in-box ratios over the images both have a ratio for."""
    table = gradcam.pivot(index="test_index", columns="model", values="energy_ratio")
    regime = dict(zip(gradcam["model"], gradcam["regime"], strict=False))
    models = list(dict.fromkeys(gradcam["model"]))
    means = {m: float(table[m].mean()) for m in models}
    rows = []
    for first, second in _ordered_pairs(means):
        pair = table[[first, second]].dropna()
        # The images both have a ratio for decide which comes first, as the difference does.
        swap = pair[second].mean() > pair[first].mean()
        a, b = (second, first) if swap else (first, second)
        interval = paired_bootstrap_interval(pair[a].to_numpy(), pair[b].to_numpy())
        rows.append(
            _row(
                "energy_ratio",
                (a, regime[a], float(pair[a].mean()) if len(pair) else math.nan),
                (b, regime[b], float(pair[b].mean()) if len(pair) else math.nan),
                interval,
                test=RATIO_TEST,
                p_value=wilcoxon_p_value(pair[a].to_numpy(), pair[b].to_numpy()),
                discordant=None,
            )
        )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def _row(
    measure: str,
    a: tuple[str, str, float],
    b: tuple[str, str, float],
    interval: Interval,
    *,
    test: str,
    p_value: float,
    discordant: tuple[int, int] | None,
) -> dict[str, object]:
    return {
        "measure": measure,
        "model_a": a[0],
        "regime_a": a[1],
        "model_b": b[0],
        "regime_b": b[1],
        "images": interval.n,
        "value_a": a[2],
        "value_b": b[2],
        "difference": interval.value,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "interval": INTERVAL_METHOD,
        "test": test,
        "p_value": p_value,
        "only_a": discordant[0] if discordant else None,
        "only_b": discordant[1] if discordant else None,
    }


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
