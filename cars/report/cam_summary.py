"""The Grad-CAM section of ``summary.md``: what the CAMs explain, their measures beside
an untrained network's and chance, and, per regime, whether its CAM concentrates on
the car more than the untrained network's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cars.config import RANDOM_INIT
from cars.report.cam_view import PHOTOS
from cars.report.comparisons import describe_comparison, render_comparisons
from cars.report.formatting import embed_figure, percent, percent_interval
from cars.report.results import is_number
from cars.stats import CONFIDENCE, mean_interval, proportion_interval

COMPARISON_FIGURE = "gradcam/regimes.png"
MEASURES_FIGURE = "gradcam/measures.png"
# Boxes that cover this much of the input on average leave the measures no room.
FILLING_BOX_SHARE = 0.75
# Fewer act4 cells than this on a side can place a car only roughly.
COARSE_MAP = 4


def _view_lines(gradcam: pd.DataFrame, scored_size: int) -> list[str]:
    """What the CAMs explain, and the map they are taken from."""
    first = gradcam.iloc[0]
    size, height, width = (int(first[c]) for c in ("input_size", "map_height", "map_width"))
    if first["view"] == PHOTOS:
        view = (
            "The trials were trained and scored on crops to the cars' boxes (`--bbox-crop`), "
            "where a box covers nearly the whole input. Grad-CAM therefore explains the whole "
            f"test photos, at {size} px: there a car has about the scale it had in the "
            f"{scored_size} px crops (the median over the test images), with the photo around "
            "it. Predictions and `correct` below are the models' answers on these photos, "
            "which can differ from their scored answers on the crops."
        )
    else:
        view = f"Grad-CAM explains the test inputs the models were scored on ({size} px)."
    layer = (
        f" Each CAM is taken from `act4` (Keras' `block14_sepconv2_act`), a {height} × {width} "
        "map at this input size, and upsampled to the input. It explains the image's true "
        "class (the predicted one where the label is unknown), as the pointing game does: "
        "a wrong answer still shows where the model finds the car's class."
    )
    coarse = (
        " A map this coarse can place the car only roughly."
        if min(height, width) < COARSE_MAP
        else ""
    )
    return [view + layer + coarse]


def _baseline_lines(seed: int) -> list[str]:
    return [
        f"`{RANDOM_INIT}` is the same network untrained: the weights a `scratch` trial of "
        f"seed {seed} starts from, explained on the same images and layer. Saliency maps can "
        "look like the object even in a network that learned nothing (the model-randomisation "
        'check of Adebayo et al., "Sanity checks for saliency maps", 2018), so a regime\'s '
        "measures say where it looks only where they differ from this network's."
    ]


def _coverage(gradcam: pd.DataFrame) -> str:
    first = gradcam[gradcam["model"] == gradcam["model"].iloc[0]]  # every model sees the same
    images, unknown = len(first), int((~first["box_known"]).sum())
    drawn = int(first["drawn"].sum()) if "drawn" in first else images
    which = (
        f"the {images} images drawn"
        if drawn == images
        else f"{images} test images (the {drawn} drawn and {images - drawn} more at random)"
    )
    if not unknown:
        return f"Measured on all {which.removeprefix('the ')}."
    if unknown == images:
        return (
            f"None of {which} has a known box (the data set stores their boxes as unknown): "
            "the Grad-CAM measures (energy inside the box, pointing game) cannot be computed, "
            "and the CAMs are drawn without boxes."
        )
    return (
        f"Measured on {images - unknown} of {which}; the other {unknown} have no known box "
        "(the data set stores their box as unknown): they are not measured, and a figure "
        "draws them without a box."
    )


def _ratio_interval(values: pd.Series) -> str:
    interval = mean_interval(values.astype(float).to_numpy())
    if not is_number(interval.value):
        return "n/a"
    if not is_number(interval.low):
        return f"{interval.value:.2f}"
    return f"{interval.value:.2f} [{max(interval.low, 0.0):.2f}-{interval.high:.2f}]"


def _measures_table(measured: pd.DataFrame, tolerance: float, coverage: str) -> list[str]:
    level = f"{100 * CONFIDENCE:.0f} %"
    lines = [
        "How much of each model's Grad-CAM falls on the car: the share of the CAM's energy "
        "inside the true bounding box, against the box's share of the image (what a uniform "
        "map scores); their ratio (above 1: the CAM concentrates on the car); and the "
        f"pointing game (the centre of the CAM's maximal region inside the box, {tolerance:.1f} "
        "px tolerance), against always pointing at the image centre. Means over the same test "
        f"images for every model, with {level} intervals in brackets: Student's t for the means "
        "of the energy share and the ratio (cut to the measure's range: a share within "
        "0-100 %, a ratio above 0), Wilson's score interval for the share of pointing hits. "
        "An all-zero CAM (no place in the image supports the class) has no energy to share: "
        "it is left out of the energy means and misses the pointing game. " + coverage,
        "",
        "| model | regime | images | all-zero CAMs | energy in box | box area share | ratio "
        "| pointing hits | centre baseline | correct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, regime), group in measured.groupby(["model", "regime"], sort=False):
        energy = mean_interval(group["energy_inside"].astype(float).to_numpy())
        pointing = proportion_interval(group["pointing_hit"].to_numpy(dtype=bool))
        energy_range = np.clip([energy.low, energy.high], 0.0, 1.0)
        lines.append(
            f"| {model} | {regime} | {len(group)} | {len(group) - energy.n} "
            f"| {percent_interval(energy.value, *energy_range)} "
            f"| {percent(group['box_area_share'].mean())} "
            f"| {_ratio_interval(group['energy_ratio'])} "
            f"| {percent_interval(pointing.value, pointing.low, pointing.high)} "
            f"| {percent(group['center_hit'].astype(float).mean())} "
            f"| {percent(group['correct'].astype(float).mean())} |"
        )
    return lines


def _filling_box_lines(measured: pd.DataFrame) -> list[str]:
    """A warning when the boxes fill the inputs (close-up photos, a crop to the box)."""
    share = float(measured["box_area_share"].astype(float).mean())
    if not share >= FILLING_BOX_SHARE:
        return []
    centre = float(measured["center_hit"].astype(float).mean())
    return [
        "",
        f"The boxes cover {percent(share)} of the inputs on average (they fill the frame): "
        f"no CAM can score an energy ratio much above {1 / share:.2f}, and pointing at the "
        f"centre already hits {percent(centre)}. Here these measures cannot tell a CAM on the "
        "car from one spread over the whole input; only Grad-CAM on inputs where the car "
        "leaves room around it can.",
    ]


def _ratio_rows(comparisons: pd.DataFrame | None, *, baseline: bool) -> pd.DataFrame | None:
    """The energy-ratio comparisons with the untrained network, or those between regimes."""
    if comparisons is None:
        return None
    rows = comparisons[comparisons["measure"] == "energy_ratio"]
    involved = (rows["model_a"] == RANDOM_INIT) | (rows["model_b"] == RANDOM_INIT)
    return rows[involved if baseline else ~involved]


def describe_against_baseline(regime: str, model: str, row: pd.Series | None) -> str:
    """Whether ``model``'s CAM concentrates on the car more than the untrained network's."""
    who = f"**{regime}** (`{model}`)"
    if row is None or int(row["images"]) == 0 or not is_number(row["difference"]):
        return f"{who}: not compared with `{RANDOM_INIT}` (no image has a ratio for both)."
    if row["ci_low"] <= 0 <= row["ci_high"]:
        verdict = "no difference from the untrained network's CAM is detectable"
    elif row["model_a"] == model:
        verdict = "its CAM concentrates on the car more than the untrained network's does"
    else:
        verdict = "its CAM concentrates on the car less than the untrained network's does"
    return f"{who}: {verdict}. {describe_comparison(row)}"


def _baseline_verdicts(measured: pd.DataFrame, comparisons: pd.DataFrame | None) -> list[str]:
    rows = _ratio_rows(comparisons, baseline=True)
    if rows is None or RANDOM_INIT not in set(measured["model"]):
        return []
    lines = [
        "Each regime against the untrained network, on the energy-in-box ratios of the same "
        "images (Wilcoxon's signed-rank test and a paired bootstrap interval of the mean "
        "difference):",
        "",
    ]
    regimes = measured[measured["model"] != RANDOM_INIT].groupby("model", sort=False)["regime"]
    for model, regime in regimes.first().items():
        pair = rows[(rows["model_a"] == model) | (rows["model_b"] == model)]
        row = pair.iloc[0] if len(pair) else None
        lines.append(f"- {describe_against_baseline(str(regime), str(model), row)}")
    return lines


def _regime_pair_lines(comparisons: pd.DataFrame | None) -> list[str]:
    ratios = render_comparisons(_ratio_rows(comparisons, baseline=False), "energy_ratio")
    if not ratios:
        return []
    return [
        "Energy-in-box ratios of the regimes compared on the same images: Wilcoxon's "
        "signed-rank test and a paired bootstrap interval of the mean difference.",
        "",
        *ratios,
    ]


def _figure_lines(gradcam: pd.DataFrame, figures: Sequence[str]) -> list[str]:
    grids = [
        f"[{model}](gradcam/{model}.png)"
        for model in dict.fromkeys(gradcam["model"])
        if f"gradcam/{model}.png" in figures
    ]
    lines = embed_figure(
        figures,
        COMPARISON_FIGURE,
        "The same test images through each regime's best model and the untrained network",
    )
    if grids:
        lines += ["", "Each model's grid, with its measures per image: " + ", ".join(grids) + "."]
    return lines


def render_gradcam_section(
    gradcam: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    *,
    figures: Sequence[str],
    seed: int,
    scored_size: int,
) -> list[str]:
    """The lines of the Grad-CAM section for a non-empty ``gradcam.parquet`` table."""
    gradcam = gradcam.assign(box_known=gradcam["box_known"].astype(bool))
    measured = gradcam[gradcam["box_known"]]
    lines = _view_lines(gradcam, scored_size)
    if RANDOM_INIT in set(gradcam["model"]):
        lines += ["", *_baseline_lines(seed)]
    lines += _figure_lines(gradcam, figures)
    if measured.empty:
        lines += ["", _coverage(gradcam)]
    else:
        tolerance = float(gradcam["tolerance_px"].iloc[0])
        lines += ["", *_measures_table(measured, tolerance, _coverage(gradcam))]
        lines += _filling_box_lines(measured)
        for part in (_baseline_verdicts(measured, comparisons), _regime_pair_lines(comparisons)):
            lines += ["", *part] if part else []
        lines += embed_figure(
            figures,
            MEASURES_FIGURE,
            "Energy in the box and pointing game per model, beside the untrained network "
            "and chance",
        )
    return [*lines, "", "Per image: `gradcam/gradcam.parquet`."]
