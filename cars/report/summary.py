"""``summary.md``: what was compared, how each regime scored, and what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cars.config import METRIC, TrainConfig, field_defaults
from cars.data import DatasetInfo
from cars.learn.optim import LR_SCALING, scale_lr
from cars.report.comparisons import render_comparisons
from cars.report.gaps import describe_boxes, describe_test_gap, missing_test_reason
from cars.report.repeats import render_repeats
from cars.report.results import SweepResults, is_number
from cars.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    mean_interval,
    proportion_interval,
)

# The reference study's figures (Keras, real Stanford Cars, 299 px, batch 32,
# 30 epochs, one run per regime): reference/reference-study.md.
REFERENCE = pd.DataFrame(
    [
        ("scratch", "random init", 21_208_556, 228, 0.5886, 28, 0.5787, 0.9340),
        ("frozen", "frozen feature extractor", 401_604, 196, 0.4126, 29, 0.4105, 0.8459),
        ("finetune", "fine-tune last block", 5_150_404, 210, 0.5705, 24, 0.5365, 0.9798),
    ],
    columns=[
        "regime",
        "reference_name",
        "trainable_params",
        "seconds_per_epoch",
        "best_val_acc",
        "best_epoch",
        "final_val_acc",
        "final_train_acc",
    ],
)


@dataclass(frozen=True)
class SummaryInputs:
    """Everything ``summary.md`` states."""

    results: SweepResults
    info: DatasetInfo
    weights: str
    regimes: pd.DataFrame
    best_trial: str | None
    gradcam: pd.DataFrame | None
    notes: Sequence[str]
    comparisons: pd.DataFrame | None = None
    confirm_seeds: int = 0


def _pct(value: object) -> str:
    return f"{100 * float(value):.1f}%" if is_number(value) else "n/a"


def _pct_interval(value: object, low: object, high: object) -> str:
    """``90.0% [84.2-94.1]``; the value alone where the interval is unknown."""
    if not (is_number(low) and is_number(high)):
        return _pct(value)
    return f"{_pct(value)} [{100 * float(low):.1f}-{100 * float(high):.1f}]"


def _int(value: object) -> str:
    return str(int(value)) if is_number(value) else "n/a"


def _config_text(row: pd.Series) -> str:
    parts = [f"lr {row['lr']:.2g}", f"augment {row['augment']}"]
    if row["regime"] == "finetune":
        parts.insert(0, f"{int(row['trainable_blocks'])} blocks")
    return ", ".join(parts)


def _regime_table(regimes: pd.DataFrame, missing_test: str | None) -> list[str]:
    lines = [
        "| regime | trial | config | epochs | best val acc (epoch) | test acc [95 % CI] "
        "| test top-5 [95 % CI] | test images | trainable params | s / epoch | images / s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in regimes.iterrows():
        test = {
            name: missing_test
            or _pct_interval(row[name], row.get(f"{name}_low"), row.get(f"{name}_high"))
            for name in ("test_acc", "test_top5")
        }
        lines.append(
            f"| {row['regime']} | {row['trial_id']} | {_config_text(row)} "
            f"| {_int(row['epochs_run'])}/{_int(row['max_epochs'])} "
            f"| {_pct(row['best_val_acc'])} ({_int(row['best_epoch'])}) | {test['test_acc']} "
            f"| {test['test_top5']} | {_int(row.get('test_images'))} "
            f"| {int(row['trainable_params']):,} | {row['seconds_per_epoch']:.1f} "
            f"| {row['images_per_second']:.0f} |"
        )
    return lines


def _reference_table() -> list[str]:
    lines = [
        "| regime | the reference's run | trainable params | s / epoch | best val acc (epoch) "
        "| final val acc | final train acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in REFERENCE.iterrows():
        lines.append(
            f"| {row['regime']} | {row['reference_name']} | {row['trainable_params']:,} "
            f"| ~{row['seconds_per_epoch']} | {_pct(row['best_val_acc'])} ({row['best_epoch']}) "
            f"| {_pct(row['final_val_acc'])} | {_pct(row['final_train_acc'])} |"
        )
    return lines


def _ratio_interval(values: pd.Series) -> str:
    interval = mean_interval(values.astype(float).to_numpy())
    if not is_number(interval.value):
        return "n/a"
    if not is_number(interval.low):
        return f"{interval.value:.2f}"
    return f"{interval.value:.2f} [{max(interval.low, 0.0):.2f}-{interval.high:.2f}]"


# Boxes that cover this much of the input on average leave the measures no room.
FILLING_BOX_SHARE = 0.75


def _filling_box_lines(measured: pd.DataFrame) -> list[str]:
    """A warning when the boxes fill the inputs (a run cropped to them, close-up photos)."""
    share = float(measured["box_area_share"].astype(float).mean())
    if not share >= FILLING_BOX_SHARE:
        return []
    centre = float(measured["center_hit"].astype(float).mean())
    return [
        "",
        f"The boxes cover {_pct(share)} of the inputs on average (they fill the frame, as "
        "in a run cropped to them with `--bbox-crop`): no CAM can score an energy ratio much "
        f"above {1 / share:.2f}, and pointing at the centre already hits {_pct(centre)}. "
        "Here these measures cannot tell a CAM on the car from one spread over the whole "
        "input; only Grad-CAM on inputs where the car leaves room around it can.",
    ]


def _gradcam_lines(gradcam: pd.DataFrame) -> list[str]:
    if "box_known" not in gradcam:
        gradcam = gradcam.assign(box_known=True)
    measured = gradcam[gradcam["box_known"].astype(bool)]
    first = gradcam[gradcam["model"] == gradcam["model"].iloc[0]]  # every model sees the same
    shown, unknown = len(first), int((~first["box_known"].astype(bool)).sum())
    coverage = (
        f"Measured on {shown - unknown} of the {shown} images drawn; the other {unknown} "
        "have no known box (the data set stores their box as unknown), so they are drawn "
        "without one and not measured."
        if unknown
        else f"Measured on all {shown} images drawn."
    )
    if measured.empty:
        return [coverage]
    tolerance = float(gradcam["tolerance_px"].iloc[0])
    level = f"{100 * CONFIDENCE:.0f} %"
    lines = [
        "How much of each model's Grad-CAM (on `act4`, Keras' `block14_sepconv2_act`) falls "
        "on the car: the share of the CAM's energy inside the true bounding box, against "
        "the box's share of the image (what a uniform map scores); their ratio (above 1: "
        "the CAM concentrates on the car); and the pointing game (the centre of the CAM's "
        f"maximal region inside the box, {tolerance:.1f} px tolerance), against always "
        "pointing at the image centre. Means over the same test images for every model, "
        f"with {level} intervals in brackets: Student's t for the means of the energy share "
        "and the ratio (cut to the measure's range: a share within 0-100 %, a ratio above 0), "
        "Wilson's score interval for the share of pointing hits. " + coverage,
        "",
        "| model | regime | images | energy in box | box area share | ratio | pointing hits "
        "| centre baseline | correct |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, regime), group in measured.groupby(["model", "regime"], sort=False):
        energy = mean_interval(group["energy_inside"].astype(float).to_numpy())
        pointing = proportion_interval(group["pointing_hit"].to_numpy(dtype=bool))
        energy_range = np.clip([energy.low, energy.high], 0.0, 1.0)
        lines.append(
            f"| {model} | {regime} | {len(group)} "
            f"| {_pct_interval(energy.value, *energy_range)} "
            f"| {_pct(group['box_area_share'].mean())} | {_ratio_interval(group['energy_ratio'])} "
            f"| {_pct_interval(pointing.value, pointing.low, pointing.high)} "
            f"| {_pct(group['center_hit'].astype(float).mean())} "
            f"| {_pct(group['correct'].astype(float).mean())} |"
        )
    return lines + _filling_box_lines(measured)


def _comparison_lines(inputs: SummaryInputs, missing_test: str | None) -> list[str]:
    regimes = inputs.regimes
    if regimes.empty:
        return ["No regime was scored: nothing to compare."]
    if missing_test == "unknown labels":
        return [
            "The test split's labels are unknown: the regimes' test outcomes cannot be compared."
        ]
    if missing_test is not None or (
        "test_images" in regimes and not regimes["test_images"].fillna(0).any()
    ):
        return ["The test split has no labelled image: no test outcomes to compare."]
    if len(regimes) == 1:
        return [f"Only one regime ({regimes['regime'].iloc[0]}) was scored: nothing to compare."]
    level = f"{100 * CONFIDENCE:.0f} %"
    return [
        "Each regime's best model was scored on the same test images, so each pair is compared "
        f"image by image: the difference of their test accuracies with a {level} paired "
        f"bootstrap interval ({BOOTSTRAP_RESAMPLES:,} resamples of the test images, seed "
        f"{BOOTSTRAP_SEED}), and McNemar's exact test (a two-sided binomial test of the images "
        "exactly one of the two got right). Where the interval covers zero, no difference is "
        "detectable. Test scores above carry Wilson's score interval. Per-image answers: "
        "`predictions.parquet`; these figures: `comparisons.parquet`.",
        "",
        *render_comparisons(inputs.comparisons, "test_acc"),
    ]


def _repeat_lines(inputs: SummaryInputs) -> list[str]:
    if inputs.confirm_seeds == 0:
        return [
            "Off: each regime's figures above rest on one training run (one seed). "
            "`--confirm K` retrains each regime's best configuration with K fresh seeds."
        ]
    if "confirm_runs" not in inputs.regimes:
        return ["The confirmation stage has not run: see below."]
    return render_repeats(inputs.regimes, inputs.confirm_seeds)


def _lr_scaling_text(batch_size: int, lr_batch_size: int | None) -> str:
    """How the trials scaled the rates they drew to their batch; empty when they did not."""
    if lr_batch_size is None or lr_batch_size == batch_size:
        return ""
    optimizer = field_defaults(TrainConfig)["optimizer"]
    factor = scale_lr(1.0, batch_size, lr_batch_size, optimizer)
    return (
        f" for global batches of {lr_batch_size}, trained at {factor:.2f} times that "
        f"({LR_SCALING[optimizer]} scaling to batches of {batch_size})"
    )


def render_summary(inputs: SummaryInputs) -> str:
    """The text of ``summary.md``."""
    results, info, config = inputs.results, inputs.info, inputs.results.config
    trials = results.trials
    counts = trials["status"].value_counts()
    stopped = int(trials["stopped_early"].sum())
    missing_test = missing_test_reason(info)
    lines = [
        f"# Xception transfer-learning study: `{results.name}`",
        "",
        "## What was compared",
        "",
        f"- Data set: **{info.name}** ({info.num_classes} classes; "
        + ", ".join(f"{split} {count:,}" for split, count in info.counts.items())
        + " images). Model selection uses `val` (held out of the official train split); "
        "`test` is scored once, for each regime's best trial.",
        f"- Pretrained weights of `frozen` and `finetune`: {inputs.weights}. "
        "`scratch` starts from random weights.",
        f"- Input {config.image_size} px, {config.epochs} epochs at most, global batch "
        f"{config.batch_size}, {config.num_workers} Ray Train worker(s) per trial"
        f"{' on GPUs' if config.use_gpu else ' on CPUs'}.",
        f"- {len(trials)} trials ({config.num_samples} per regime): learning rate log-uniform "
        "per regime ("
        + "; ".join(f"{r} {lo:.0e}-{hi:.0e}" for r, (lo, hi) in config.lr_ranges.items())
        + ")"
        + _lr_scaling_text(config.batch_size, config.lr_batch_size)
        + f", augmentation from {', '.join(config.augments)}, `finetune` depth from "
        f"{', '.join(map(str, config.finetune_blocks))} blocks. ASHA (within each regime) "
        f"stopped {stopped} trial(s) early.",
        *describe_boxes(info, bbox_crop=config.bbox_crop),
        "- Trials: " + ", ".join(f"{n} {state}" for state, n in counts.items()) + ".",
        "",
        "## Each regime's best trial",
        "",
    ]
    if inputs.regimes.empty and info.counts.get("val", 0) == 0:
        lines.append("No trial has a validation score (the val split is empty): none scored.")
    elif inputs.regimes.empty:
        lines.append("No trial has a checkpoint yet: nothing could be scored.")
    else:
        lines += _regime_table(inputs.regimes, missing_test)
        if missing_test is not None:
            lines += ["", str(describe_test_gap(info))]
    if inputs.best_trial is not None:
        best = trials[trials["trial_id"] == inputs.best_trial].iloc[0]
        lines += [
            "",
            f"**Best overall: trial {inputs.best_trial} ({best['regime']}, "
            f"{_config_text(best)})**, chosen because it reached the highest best validation "
            f"accuracy ({_pct(best['best_val_acc'])} at epoch {_int(best['best_epoch'])}; "
            "ties go to the lower validation loss). Its weights are in `best/`.",
        ]
    lines += ["", "## Paired comparisons between regimes", ""]
    lines += _comparison_lines(inputs, missing_test)
    lines += ["", "## Repeated seeds", "", *_repeat_lines(inputs)]
    lines += [
        "",
        "## Beside the reference study",
        "",
        "The reference study's own figures, **Keras on the real Stanford Cars** (8,144 train / "
        "8,041 test images, 299 px, batch 32, 30 epochs, one run per regime). They are "
        "comparable to ours only when this report is of Stanford Cars at 299 px; its frozen "
        "and fine-tuned runs left BatchNorm in training mode and used no learning-rate or "
        "augmentation study.",
        "",
        *_reference_table(),
        "",
        "## Learning curves",
        "",
        f"`curves.png`: {METRIC} per epoch of every trial, coloured by regime; "
        "`epochs.parquet` holds the numbers.",
        "",
        "## Grad-CAM",
        "",
    ]
    if info.counts.get("test", 0) == 0:
        lines.append("No Grad-CAM: the test split has no images.")
    elif inputs.gradcam is None or inputs.gradcam.empty:
        lines.append("No Grad-CAM: no regime has a scored model.")
    else:
        lines += _gradcam_lines(inputs.gradcam)
        known = inputs.gradcam.get("box_known", pd.Series([True])).astype(bool)
        measures = "`gradcam/measures.png`; " if known.any() else ""
        ratios = render_comparisons(inputs.comparisons, "energy_ratio")
        if ratios:
            lines += [
                "",
                "Energy-in-box ratios compared on the same images: Wilcoxon's signed-rank test "
                "and a paired bootstrap interval of the mean difference.",
                "",
                *ratios,
            ]
        lines += [
            "",
            "Figures: `gradcam/<model>.png`, `gradcam/regimes.png`, "
            f"{measures}per image: `gradcam/gradcam.parquet`.",
        ]
    lines += ["", "## Missing or incomplete", ""]
    notes = [*results.missing, *inputs.notes]
    lines += [f"- {note}" for note in notes] if notes else ["Nothing: every trial finished."]
    return "\n".join(lines) + "\n"
