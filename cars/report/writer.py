"""Writing ``reports/<sweep name>/`` from a sweep's storage.

The whole folder is built next to its destination and renamed into place, so a
reader never sees half a report, and an older report stays until the new one is
complete. Rerunning the report on the same sweep writes the same tables and summary,
and figures that differ at most in pixels that float rounding moves to the next colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cars.config import METRIC, ConfigError, TrainConfig
from cars.data import read_dataset_info
from cars.data.staging import staged_folder
from cars.figures import plot_learning_curves
from cars.learn.checkpoint import load_checkpoint, save_best_weights
from cars.learn.device import starting_threads
from cars.report.cam_models import load_cam_models
from cars.report.cam_view import choose_cam_view
from cars.report.cams import add_measured_images, select_images, write_gradcam
from cars.report.comparisons import ComparedRegime, compare_regimes, compared_regimes
from cars.report.gaps import describe_data_gaps
from cars.report.predictions import ScoredModel, build_predictions, model_name
from cars.report.repeats import read_confirm_runs, summarise_repeats
from cars.report.results import (
    SweepResults,
    rank_trials,
    read_sweep_results,
    select_regime_bests,
)
from cars.report.scoring import (
    TestScore,
    create_eval_dataset,
    score_checkpoints,
)
from cars.report.summary import CURVES_FIGURE, REFERENCE, SummaryInputs, render_summary
from cars.stats import wilson_interval
from cars.storage import write_bytes


@dataclass(frozen=True)
class ReportOutcome:
    """Where the report went, and what it could not include."""

    path: str
    missing: list[str]


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a table as Parquet through a temporary name."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    write_bytes(path, sink.getvalue().to_pybytes())


def describe_weights(weights: str | None) -> str:
    """Where the pretrained weights came from, in words a reader can check."""
    if weights is None:
        return "none (every regime from random weights)"
    if weights == "imagenet":
        return "timm's ImageNet-1k `legacy_xception` weights (`tf_in1k`)"
    try:
        state = load_checkpoint(weights)
    except Exception:
        return f"`{weights}`"
    config, metrics = state.get("config", {}), state.get("metrics", {})
    return (
        f"a `{config.get('regime', '?')}` model of this project trained for "
        f"{state.get('epoch', '?')} epochs on `{config.get('data', '?')}` "
        f"({len(state.get('class_names', []))} classes disjoint from the study's, "
        f"val acc {metrics.get('val_acc', float('nan')):.3f}), standing in for ImageNet: "
        f"`{weights}`"
    )


def _trial_configs(trials: pd.DataFrame) -> list[TrainConfig]:
    """Each chosen trial's config, as its checkpoint recorded it."""
    return [TrainConfig.from_dict(load_checkpoint(path)["config"]) for path in trials["checkpoint"]]


TEST_COLUMNS = (
    "test_loss",
    "test_acc",
    "test_acc_low",
    "test_acc_high",
    "test_top5",
    "test_top5_low",
    "test_top5_high",
    "test_images",
)


def _score_table(scores: list[TestScore], index: pd.Index) -> pd.DataFrame:
    """One row of test scores per model, in ``TEST_COLUMNS``."""
    rows = [_score_columns(s) for s in scores]
    return pd.DataFrame(rows, index=index, columns=list(TEST_COLUMNS))


def _score_columns(score: TestScore) -> dict[str, float | int]:
    """A test score with Wilson's 95 % intervals and the labelled images they rest on."""
    images = int((score.labels >= 0).sum())
    columns: dict[str, float | int] = {"test_loss": score.loss}
    for name, value in (("test_acc", score.acc), ("test_top5", score.top5)):
        interval = wilson_interval(round(value * images) if images else 0, images)
        columns.update({name: value, f"{name}_low": interval.low, f"{name}_high": interval.high})
    columns["test_images"] = images
    return columns


def _with_scores(regimes: pd.DataFrame, scores: list[TestScore]) -> pd.DataFrame:
    regimes = pd.concat([regimes, _score_table(scores, regimes.index)], axis=1)
    reference = REFERENCE.set_index("regime").add_prefix("reference_")
    return regimes.join(reference, on="regime")


@dataclass(frozen=True)
class ScoredModels:
    """The regimes' best trials with their test scores, and every scored model's answers."""

    regimes: pd.DataFrame
    scores: list[TestScore]
    predictions: pd.DataFrame
    repeats: pd.DataFrame | None


def _score_models(
    results: SweepResults, regimes: pd.DataFrame, configs: list[TrainConfig], notes: list[str]
) -> ScoredModels:
    """Score each regime's best trial, and each confirmation run, once on the test split."""
    repeats = read_confirm_runs(results, regimes, notes)
    scorable = repeats[repeats["checkpoint"].notna()] if repeats is not None else regimes.iloc[0:0]
    repeat_configs = _trial_configs(scorable)
    jobs: list[tuple[str, dict[str, Any]]] = [
        (path, c.to_dict())
        for path, c in zip(
            [*regimes["checkpoint"], *scorable["checkpoint"]],
            [*configs, *repeat_configs],
            strict=True,
        )
    ]
    all_scores = score_checkpoints(jobs, use_gpu=results.config.use_gpu)
    scores, repeat_scores = all_scores[: len(regimes)], all_scores[len(regimes) :]
    regimes = _with_scores(regimes, scores)
    models = [
        ScoredModel(model_name(row.regime, row.trial_id), row.trial_id, row.regime, "sweep", *score)
        for row, score in zip(regimes.itertuples(), _answers(scores), strict=True)
    ]
    if repeats is not None:
        repeats = pd.concat([repeats, _score_table(repeat_scores, scorable.index)], axis=1)
        models += [
            ScoredModel(
                model_name(row.regime, row.trial_id), row.trial_id, row.regime, "confirm", *score
            )
            for row, score in zip(scorable.itertuples(), _answers(repeat_scores), strict=True)
        ]
        regimes = summarise_repeats(repeats, regimes)
    predictions = build_predictions(models, create_eval_dataset(configs[0]).source_files)
    return ScoredModels(regimes, scores, predictions, repeats)


def _answers(scores: list[TestScore]) -> list[tuple[Any, Any]]:
    return [(s.probabilities, s.labels) for s in scores]


def _curve_labels(results: SweepResults) -> pd.DataFrame:
    """The learning-curve table with a short config label per trial."""
    labels = {
        row.trial_id: f"{row.regime}, lr {row.lr:.1e}, {row.augment}"
        + (f", {int(row.trainable_blocks)} blocks" if row.regime == "finetune" else "")
        for row in results.trials.itertuples()
    }
    return results.epochs.assign(label=results.epochs["trial_id"].map(labels))


def _write_gradcam_section(
    stage: Path,
    regimes: pd.DataFrame,
    *,
    configs: list[TrainConfig],
    scores: list[TestScore],
    best_index: int,
    class_names: list[str],
    count: int,
    measured: int,
    seed: int,
) -> pd.DataFrame | None:
    """Grad-CAM figures and measures (None without test images), and ``best/``."""
    models = load_cam_models(regimes, configs, class_names, best_index=best_index, seed=seed)
    best_config, best_score = configs[best_index], scores[best_index]
    drawn = select_images(best_score.predictions, best_score.labels, count, seed)
    table = None
    if len(drawn):
        view = choose_cam_view(best_config, create_eval_dataset(best_config))
        folder = stage / "gradcam"
        table = write_gradcam(
            models,
            view.create_dataset(best_config.data),
            indices=add_measured_images(drawn, len(best_score.labels), measured, seed),
            drawn=drawn,
            view=view,
            class_names=class_names,
            out=folder,
        )
        write_parquet(table, folder / "gradcam.parquet")
    best = models[best_index]
    save_best_weights(stage / "best", best.model, configs[best_index].to_dict(), class_names)
    return table


def _write_runs(stage: Path, results: SweepResults, notes: list[str]) -> None:
    """What the trials reported: ``trials.parquet``, ``epochs.parquet`` and the curves."""
    write_parquet(results.trials, stage / "trials.parquet")
    write_parquet(results.epochs, stage / "epochs.parquet")
    if len(results.epochs) and results.epochs[METRIC].notna().any():
        plot_learning_curves(
            _curve_labels(results), stage / CURVES_FIGURE, title=f"Sweep {results.name}"
        )
    elif len(results.epochs):
        notes.append(f"no trial reported a {METRIC}: no learning curves")
    else:
        notes.append("no trial reported an epoch: no learning curves")


@dataclass(frozen=True)
class ReportFindings:
    """What scoring and explaining the regimes' best trials found."""

    regimes: pd.DataFrame
    best_trial: str | None
    gradcam: pd.DataFrame | None
    predictions: pd.DataFrame
    comparisons: pd.DataFrame


def _score_and_explain(
    stage: Path,
    results: SweepResults,
    regimes: pd.DataFrame,
    compared: list[ComparedRegime],
    *,
    class_names: list[str],
    notes: list[str],
    gradcam_images: int,
    gradcam_measured: int,
) -> ReportFindings:
    """Score each regime's best trial on the test split, compare them, and explain them."""
    predictions = build_predictions([], [])
    if not len(regimes):
        comparisons = compare_regimes(predictions, None, compared)
        return ReportFindings(regimes, None, None, predictions, comparisons)
    configs = _trial_configs(regimes)
    scored = _score_models(results, regimes, configs, notes)
    regimes, scores, predictions = scored.regimes, scored.scores, scored.predictions
    if scored.repeats is not None:
        write_parquet(scored.repeats, stage / "confirm.parquet")
    best_trial = str(rank_trials(regimes)["trial_id"].iloc[0])
    best_index = int(np.flatnonzero(regimes["trial_id"] == best_trial)[0])
    regimes = regimes.assign(best_overall=regimes["trial_id"] == best_trial)
    gradcam = _write_gradcam_section(
        stage,
        regimes,
        configs=configs,
        scores=scores,
        best_index=best_index,
        class_names=class_names,
        count=gradcam_images,
        measured=gradcam_measured,
        seed=results.config.seed,
    )
    comparisons = compare_regimes(predictions, gradcam, compared)
    return ReportFindings(regimes, best_trial, gradcam, predictions, comparisons)


def _compared_regimes(
    results: SweepResults, regimes: pd.DataFrame, val_images: int, notes: list[str]
) -> list[ComparedRegime]:
    """Every swept regime for the comparisons; a note for each without a trial to score."""
    unscored = (
        "no trial with a checkpoint" if val_images else "no val images to choose its best trial"
    )
    compared = compared_regimes(results.config.regimes, regimes, unscored)
    if val_images:
        notes += [f"regime {r.regime} has {unscored}: not scored" for r in compared if not r.model]
    return compared


def _written_figures(stage: Path) -> tuple[str, ...]:
    """The figures in the report's folder, relative to it: what the summary may embed."""
    return tuple(sorted(path.relative_to(stage).as_posix() for path in stage.rglob("*.png")))


def write_report(
    sweep_path: str,
    reports_dir: str,
    gradcam_images: int | None = None,
    gradcam_measured: int | None = None,
) -> ReportOutcome:
    """Write ``<reports_dir>/<sweep name>/`` for the sweep at ``sweep_path``.

    A sweep that was interrupted still gets a report of what it has, and the
    report lists what is missing. ``gradcam_images`` and ``gradcam_measured``
    replace the sweep's own settings.
    """
    results = read_sweep_results(sweep_path)
    return write_results_report(results, reports_dir, gradcam_images, gradcam_measured)


def write_results_report(
    results: SweepResults,
    reports_dir: str,
    gradcam_images: int | None = None,
    gradcam_measured: int | None = None,
) -> ReportOutcome:
    """Write ``<reports_dir>/<results.name>/`` from a sweep's results, as read from its storage."""
    config = results.config
    if config.data is None:
        raise ConfigError(f"the sweep at {results.path} names no data set: it never started")
    info = read_dataset_info(config.data)
    notes = describe_data_gaps(info)
    regimes = select_regime_bests(results.trials)
    compared = _compared_regimes(results, regimes, info.counts.get("val", 0), notes)
    target = Path(reports_dir) / results.name
    # Writing the report again writes the same bytes: its scores and CAMs are
    # computed on the threads a fresh process has, whatever this one ran before.
    with staged_folder(target, replace=True) as stage, starting_threads():
        _write_runs(stage, results, notes)
        found = _score_and_explain(
            stage,
            results,
            regimes,
            compared,
            class_names=list(info.class_names),
            notes=notes,
            gradcam_images=gradcam_images or config.gradcam_images,
            gradcam_measured=gradcam_measured or config.gradcam_measured,
        )
        write_parquet(found.predictions, stage / "predictions.parquet")
        comparisons = found.comparisons
        write_parquet(comparisons, stage / "comparisons.parquet")
        write_parquet(found.regimes, stage / "regimes.parquet")
        summary = render_summary(
            SummaryInputs(
                results=results,
                info=info,
                weights=describe_weights(config.weights),
                regimes=found.regimes,
                best_trial=found.best_trial,
                gradcam=found.gradcam,
                notes=notes,
                comparisons=comparisons,
                confirm_seeds=config.confirm,
                figures=_written_figures(stage),
            )
        )
        write_bytes(stage / "summary.md", summary.encode())
    return ReportOutcome(path=str(target), missing=[*results.missing, *notes])
