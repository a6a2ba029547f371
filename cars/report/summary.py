"""``summary.md``: what was compared, how each regime scored, and what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cars.config import METRIC
from cars.data import DatasetInfo
from cars.report.gaps import describe_boxes, describe_test_gap, missing_test_reason
from cars.report.results import SweepResults, is_number

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


def _pct(value: object) -> str:
    return f"{100 * float(value):.1f}%" if is_number(value) else "n/a"


def _int(value: object) -> str:
    return str(int(value)) if is_number(value) else "n/a"


def _config_text(row: pd.Series) -> str:
    parts = [f"lr {row['lr']:.2g}", f"augment {row['augment']}"]
    if row["regime"] == "finetune":
        parts.insert(0, f"{int(row['trainable_blocks'])} blocks")
    return ", ".join(parts)


def _regime_table(regimes: pd.DataFrame, missing_test: str | None) -> list[str]:
    lines = [
        "| regime | trial | config | epochs | best val acc (epoch) | test acc | test top-5 "
        "| trainable params | s / epoch | images / s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in regimes.iterrows():
        test_acc = missing_test or _pct(row["test_acc"])
        test_top5 = missing_test or _pct(row["test_top5"])
        lines.append(
            f"| {row['regime']} | {row['trial_id']} | {_config_text(row)} "
            f"| {_int(row['epochs_run'])}/{_int(row['max_epochs'])} "
            f"| {_pct(row['best_val_acc'])} ({_int(row['best_epoch'])}) | {test_acc} | {test_top5} "
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
    means = measured.groupby(["model", "regime"], sort=False).agg(
        images=("energy_inside", "size"),
        energy_inside=("energy_inside", "mean"),
        box_area_share=("box_area_share", "mean"),
        energy_ratio=("energy_ratio", "mean"),
        pointing=("pointing_hit", "mean"),
        centre=("center_hit", "mean"),
        accuracy=("correct", "mean"),
    )
    tolerance = float(gradcam["tolerance_px"].iloc[0])
    lines = [
        "How much of each model's Grad-CAM (on `act4`, Keras' `block14_sepconv2_act`) falls "
        "on the car: the share of the CAM's energy inside the true bounding box, against "
        "the box's share of the image (what a uniform map scores); their ratio (above 1: "
        "the CAM concentrates on the car); and the pointing game (the centre of the CAM's "
        f"maximal region inside the box, {tolerance:.1f} px tolerance), against always "
        "pointing at the image centre. Means over the same test images for every model. "
        + coverage,
        "",
        "| model | regime | images | energy in box | box area share | ratio | pointing hits "
        "| centre baseline | correct |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, regime), row in means.iterrows():
        ratio = f"{row['energy_ratio']:.2f}" if is_number(row["energy_ratio"]) else "n/a"
        lines.append(
            f"| {model} | {regime} | {int(row['images'])} | {_pct(row['energy_inside'])} "
            f"| {_pct(row['box_area_share'])} | {ratio} | {_pct(row['pointing'])} "
            f"| {_pct(row['centre'])} | {_pct(row['accuracy'])} |"
        )
    return lines


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
        + f"), augmentation from {', '.join(config.augments)}, `finetune` depth from "
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
        lines += [
            "",
            "Figures: `gradcam/<model>.png`, `gradcam/regimes.png`, "
            f"{measures}per image: `gradcam/gradcam.parquet`.",
        ]
    lines += ["", "## Missing or incomplete", ""]
    notes = [*results.missing, *inputs.notes]
    lines += [f"- {note}" for note in notes] if notes else ["Nothing: every trial finished."]
    return "\n".join(lines) + "\n"
