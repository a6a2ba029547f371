"""``summary.md``: what was compared, how each regime scored, and what is missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cars.config import METRIC, TrainConfig, field_defaults
from cars.data import DatasetInfo
from cars.learn.optim import LR_SCALING, scale_lr
from cars.report.cam_summary import render_gradcam_section
from cars.report.comparisons import render_comparisons
from cars.report.formatting import embed_figure, integer, percent, percent_interval
from cars.report.gaps import (
    describe_boxes,
    describe_classes,
    describe_test_gap,
    missing_test_reason,
)
from cars.report.repeats import render_repeats
from cars.report.results import SweepResults
from cars.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE

CURVES_FIGURE = "curves.png"

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
    figures: Sequence[str] = ()
    """The report's figures that were written, relative to its folder: those it embeds."""


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
            or percent_interval(row[name], row.get(f"{name}_low"), row.get(f"{name}_high"))
            for name in ("test_acc", "test_top5")
        }
        lines.append(
            f"| {row['regime']} | {row['trial_id']} | {_config_text(row)} "
            f"| {integer(row['epochs_run'])}/{integer(row['max_epochs'])} "
            f"| {percent(row['best_val_acc'])} ({integer(row['best_epoch'])}) | {test['test_acc']} "
            f"| {test['test_top5']} | {integer(row.get('test_images'))} "
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
            f"| ~{row['seconds_per_epoch']} | {percent(row['best_val_acc'])} ({row['best_epoch']}) "
            f"| {percent(row['final_val_acc'])} | {percent(row['final_train_acc'])} |"
        )
    return lines


def _comparison_lines(inputs: SummaryInputs, missing_test: str | None) -> list[str]:
    """The paired comparisons of test accuracy, and each pair that could not be compared, why."""
    regimes, comparisons = inputs.regimes, inputs.comparisons
    rows = (
        comparisons[comparisons["measure"] == "test_acc"]
        if comparisons is not None
        else pd.DataFrame(columns=["not_compared"])
    )
    if rows.empty:
        if regimes.empty:
            return ["No regime was scored: nothing to compare."]
        if len(regimes) == 1:
            return [
                f"Only one regime ({regimes['regime'].iloc[0]}) was scored: nothing to compare."
            ]
        return ["No pair of regimes was compared."]
    uncompared = rows[rows["not_compared"].notna()]
    not_compared = render_comparisons(uncompared, "test_acc")
    if missing_test == "unknown labels":
        lead = "The test split's labels are unknown: the regimes' test outcomes cannot be compared."
        return [lead, "", *not_compared]
    if missing_test is not None or (
        "test_images" in regimes and not regimes["test_images"].fillna(0).any()
    ):
        return [
            "The test split has no labelled image: no test outcomes to compare.",
            "",
            *not_compared,
        ]
    if len(uncompared) == len(rows):
        return ["No pair of regimes could be compared:", "", *not_compared]
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
        *render_comparisons(rows, "test_acc"),
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


def _compared_lines(inputs: SummaryInputs) -> list[str]:
    """What was compared: the data, the weights, the trials."""
    results, info, config = inputs.results, inputs.info, inputs.results.config
    trials = results.trials
    counts = trials["status"].value_counts()
    stopped = int(trials["stopped_early"].sum())
    return [
        f"- Data set: **{info.name}** ({info.num_classes} classes; "
        + ", ".join(f"{split} {count:,}" for split, count in info.counts.items())
        + " images). Model selection uses `val` (held out of the official train split); "
        "`test` is scored once, for each regime's best trial.",
        *describe_classes(info),
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
    ]


def _best_lines(inputs: SummaryInputs, missing_test: str | None) -> list[str]:
    """Each regime's best trial with its test scores, and the best overall."""
    info, trials = inputs.info, inputs.results.trials
    if inputs.regimes.empty and info.counts.get("val", 0) == 0:
        lines = ["No trial has a validation score (the val split is empty): none scored."]
    elif inputs.regimes.empty:
        lines = ["No trial has a checkpoint yet: nothing could be scored."]
    else:
        lines = _regime_table(inputs.regimes, missing_test)
        if missing_test is not None:
            lines += ["", str(describe_test_gap(info))]
    if inputs.best_trial is not None:
        best = trials[trials["trial_id"] == inputs.best_trial].iloc[0]
        lines += [
            "",
            f"**Best overall: trial {inputs.best_trial} ({best['regime']}, "
            f"{_config_text(best)})**, chosen because it reached the highest best validation "
            f"accuracy ({percent(best['best_val_acc'])} at epoch {integer(best['best_epoch'])}; "
            "ties go to the lower validation loss). Its weights are in `best/`.",
        ]
    return lines


def _reference_lines() -> list[str]:
    return [
        "The reference study's own figures, **Keras on the real Stanford Cars** (8,144 train / "
        "8,041 test images, 299 px, batch 32, 30 epochs, one run per regime). They are "
        "comparable to ours only when this report is of Stanford Cars at 299 px; its frozen "
        "and fine-tuned runs left BatchNorm in training mode and used no learning-rate or "
        "augmentation study.",
        "",
        *_reference_table(),
    ]


def _curve_lines(inputs: SummaryInputs) -> list[str]:
    if CURVES_FIGURE not in inputs.figures:
        return ["No learning curves: see below."]
    return [
        f"{METRIC} per epoch of every trial, coloured by regime; `epochs.parquet` holds "
        "the numbers.",
        *embed_figure(inputs.figures, CURVES_FIGURE, f"{METRIC} per epoch of every trial"),
    ]


def _gradcam_lines(inputs: SummaryInputs) -> list[str]:
    if inputs.info.counts.get("test", 0) == 0:
        return ["No Grad-CAM: the test split has no images."]
    if inputs.gradcam is None or inputs.gradcam.empty:
        return ["No Grad-CAM: no regime has a scored model."]
    config = inputs.results.config
    return render_gradcam_section(
        inputs.gradcam,
        inputs.comparisons,
        figures=inputs.figures,
        seed=config.seed,
        scored_size=config.image_size,
    )


def _missing_lines(inputs: SummaryInputs) -> list[str]:
    notes = [*inputs.results.missing, *inputs.notes]
    return [f"- {note}" for note in notes] if notes else ["Nothing: every trial finished."]


def render_summary(inputs: SummaryInputs) -> str:
    """The text of ``summary.md``: a title, then one section per question."""
    missing_test = missing_test_reason(inputs.info)
    sections = [
        ("What was compared", _compared_lines(inputs)),
        ("Each regime's best trial", _best_lines(inputs, missing_test)),
        ("Paired comparisons between regimes", _comparison_lines(inputs, missing_test)),
        ("Repeated seeds", _repeat_lines(inputs)),
        ("Beside the reference study", _reference_lines()),
        ("Learning curves", _curve_lines(inputs)),
        ("Grad-CAM", _gradcam_lines(inputs)),
        ("Missing or incomplete", _missing_lines(inputs)),
    ]
    lines = [f"# Xception transfer-learning study: `{inputs.results.name}`"]
    for heading, body in sections:
        lines += ["", f"## {heading}", "", *body]
    return "\n".join(lines) + "\n"
