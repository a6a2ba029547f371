"""The report's parts that need no Ray: choosing each regime's best trial, scoring
probabilities, choosing Grad-CAM images, ``summary.md``'s text and the weights' description.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from cars.config import BEST_SCORE, SCORE, TrainConfig, selection_scores
from cars.data import DatasetInfo
from cars.learn.checkpoint import save_checkpoint
from cars.learn.checkpoint_files import CHECKPOINT_FILE
from cars.learn.gradcam import POINTING_TOLERANCE
from cars.learn.history import write_history
from cars.learn.model import build_model, head_parameters
from cars.report.cam_view import INPUTS
from cars.report.cams import pointing_tolerance, select_images
from cars.report.results import (
    EPOCH_COLUMNS,
    TRIAL_COLUMNS,
    SweepResults,
    TrainRunState,
    best_epoch,
    rank_trials,
    read_train_run,
    select_regime_bests,
)
from cars.report.scoring import score_probabilities
from cars.report.summary import SummaryInputs, render_summary
from cars.report.writer import describe_weights
from cars.runs import persist_checkpoint, prune_checkpoints, read_run
from cars.study import summarize_best_trials
from cars.sweep_config import create_sweep_config

# --- select_regime_bests -------------------------------------------------------------


def _trial(
    trial_id: str,
    regime: str,
    best_val_acc: float | None,
    best_val_loss: float | None,
    checkpoint: str | None,
    **values: Any,
) -> dict[str, Any]:
    """One row of ``trials.parquet``, as ``read_sweep_results`` writes it."""
    has_results = best_val_acc is not None
    row: dict[str, Any] = dict.fromkeys(TRIAL_COLUMNS)
    row.update(
        trial_id=trial_id,
        regime=regime,
        seed=0,
        lr=1e-3,
        trainable_blocks={"scratch": 14, "frozen": 0}.get(regime, 2),
        augment="basic",
        status="finished" if has_results else "not started",
        stopped_early=False,
        epochs_run=4 if has_results else 0,
        max_epochs=4,
        best_epoch=3 if has_results else None,
        best_val_acc=best_val_acc,
        best_val_loss=best_val_loss,
        best_val_top5=1.0 if has_results else None,
        last_val_acc=best_val_acc,
        last_val_loss=best_val_loss,
        last_train_acc=0.9 if has_results else None,
        last_train_loss=0.3 if has_results else None,
        trainable_params=401_604 if has_results else None,
        total_params=21_208_556 if has_results else None,
        seconds_per_epoch=12.5 if has_results else None,
        images_per_second=40.0 if has_results else None,
        checkpoint=checkpoint,
        train_run=f"/runs/s/train-{trial_id}",
    )
    row.update(values)
    return row


def _trials(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows)).reindex(columns=list(TRIAL_COLUMNS))


def test_regime_bests_one_per_regime_in_regime_order() -> None:
    trials = _trials(
        _trial("t1", "finetune", 0.70, 0.9, "/c/t1"),
        _trial("t2", "frozen", 0.40, 1.2, "/c/t2"),
        _trial("t3", "scratch", 0.50, 1.0, "/c/t3"),
        _trial("t4", "finetune", 0.60, 0.5, "/c/t4"),
    )
    bests = select_regime_bests(trials)
    assert list(bests["regime"]) == ["scratch", "frozen", "finetune"]
    assert list(bests["trial_id"]) == ["t3", "t2", "t1"]
    assert list(bests.index) == [0, 1, 2]


def test_regime_best_ties_go_to_the_lower_val_loss_then_the_earlier_trial() -> None:
    trials = _trials(
        _trial("a", "scratch", 0.5, 1.0, "/c/a"),
        _trial("b", "scratch", 0.5, 0.8, "/c/b"),
        _trial("d", "frozen", 0.4, 0.7, "/c/d"),
        _trial("c", "frozen", 0.4, 0.7, "/c/c"),
    )
    bests = select_regime_bests(trials).set_index("regime")["trial_id"]
    assert bests["scratch"] == "b"
    assert bests["frozen"] == "c"


def test_regime_bests_skip_trials_without_checkpoint_or_results() -> None:
    trials = _trials(
        _trial("t1", "frozen", 0.9, 0.5, None),  # best, but its Train run left no checkpoint
        _trial("t2", "frozen", 0.4, 1.2, "/c/t2"),
        _trial("t3", "finetune", None, None, "/c/t3"),  # never reported an epoch
        _trial("t4", "finetune", 0.3, 1.5, "/c/t4"),
        _trial("t5", "scratch", None, None, None),
    )
    bests = select_regime_bests(trials)
    assert list(bests["trial_id"]) == ["t2", "t4"]
    assert "scratch" not in set(bests["regime"])


def test_regime_bests_of_a_sweep_with_nothing_scored_is_empty() -> None:
    trials = _trials(
        _trial("t1", "frozen", 0.9, 0.5, None), _trial("t2", "scratch", None, None, None)
    )
    assert select_regime_bests(trials).empty


def _curve(*epochs: tuple[float, float]) -> pd.DataFrame:
    """A learning curve of (val_acc, val_loss) per epoch, from epoch 1."""
    rows = [{"epoch": i, "val_acc": a, "val_loss": loss} for i, (a, loss) in enumerate(epochs, 1)]
    return pd.DataFrame(rows).reindex(columns=list(EPOCH_COLUMNS))


def test_the_best_epoch_ties_to_the_lower_loss_then_the_later_epoch() -> None:
    curve = _curve((0.5, 1.0), (0.75, 0.9), (0.75, 0.6), (0.5, 0.1), (0.75, 0.6), (0.25, 2.0))
    best = best_epoch(curve)
    assert best is not None and int(best["epoch"]) == 5
    assert float(best["val_loss"]) == 0.6
    assert best_epoch(_curve((float("nan"), float("nan")))) is None
    assert best_epoch(_curve()) is None


def test_the_checkpoint_kept_and_chosen_is_the_best_epochs(tmp_path: Path) -> None:
    curve = _curve((0.5, 1.0), (0.75, 0.9), (0.75, 0.6), (0.75, 0.6), (0.5, 0.1))
    history = [
        {**row, **selection_scores(curve.iloc[: i + 1].to_dict("records"))}
        for i, row in enumerate(curve.to_dict("records"))
    ]
    run = str(tmp_path / "train-0")
    for epoch in range(1, len(history) + 1):
        local = tmp_path / "local" / str(epoch)
        write_history(local, history[:epoch])
        (local / CHECKPOINT_FILE).write_bytes(b"weights of epoch %d" % epoch)
        persist_checkpoint(local, run, epoch)
        # Ray Train's CheckpointConfig(num_to_keep=2, SCORE): the highest, the later of equals.
        prune_checkpoints(read_run(run), 2)
    kept = read_run(run).checkpoints
    assert [c.epoch for c in kept] == [3, 4, 5]  # and the latest, to resume from
    chosen = read_run(run).best
    assert chosen is not None and chosen.epoch == int(best_epoch(curve)["epoch"]) == 4
    assert chosen.location.endswith("epoch-0004")
    assert read_train_run(run).best_checkpoint == chosen.location
    assert history[-1][BEST_SCORE] == history[3][SCORE]


def test_trials_rank_by_their_best_epoch_as_epochs_do() -> None:
    trials = _trials(
        _trial("t1", "frozen", 0.5, 0.9, "/c/t1"),
        _trial("t2", "frozen", 0.5, 0.7, "/c/t2"),
        _trial("t3", "scratch", 0.5, 0.7, "/c/t3"),
        _trial("t4", "finetune", 0.4, 0.1, "/c/t4"),
        _trial("t5", "finetune", None, None, "/c/t5"),
    )
    assert list(rank_trials(trials)["trial_id"]) == ["t2", "t3", "t1", "t4"]
    assert rank_trials(trials.iloc[0:0]).empty


def test_the_printed_summary_names_the_trials_the_report_scores() -> None:
    trials = _trials(
        _trial("a", "scratch", 0.5, 1.0, "/c/a", lr=2e-3, seed=7),
        _trial("b", "scratch", 0.5, 0.8, "/c/b", lr=1e-3, seed=8),
        _trial("c", "frozen", 0.9, 0.5, None),  # no checkpoint: the report cannot score it
        _trial("d", "frozen", 0.4, 0.7, "/c/d"),
    )
    lines = summarize_best_trials(trials).splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:4] == ["scratch", "best", "val_acc", "0.5000"]
    assert "(epoch 3)" in lines[0] and "seed=8" in lines[0] and "lr=0.001" in lines[0]
    assert lines[1].split()[:4] == ["frozen", "best", "val_acc", "0.4000"]
    assert summarize_best_trials(trials.iloc[0:0]) == "no trial reported a val_acc"


# --- score_probabilities -------------------------------------------------------------


def test_scores_of_hand_made_probabilities() -> None:
    probabilities = np.array(
        [
            [0.50, 0.10, 0.10, 0.10, 0.10, 0.10],  # label 0: top-1
            [0.05, 0.30, 0.25, 0.20, 0.15, 0.05],  # label 4: 4th, inside the top 5
            [0.30, 0.25, 0.20, 0.15, 0.09, 0.01],  # label 5: last, outside the top 5
            [0.00, 0.00, 0.00, 0.00, 0.00, 1.00],  # unknown label: not scored
        ]
    )
    labels = np.array([0, 4, 5, -1])
    loss, top1, top5 = score_probabilities(probabilities, labels)
    assert loss == pytest.approx(-(math.log(0.5) + math.log(0.15) + math.log(0.01)) / 3)
    assert top1 == pytest.approx(1 / 3)
    assert top5 == pytest.approx(2 / 3)


def test_scores_with_fewer_than_five_classes() -> None:
    probabilities = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    loss, top1, top5 = score_probabilities(probabilities, np.array([1, 2, 2]))
    assert top1 == pytest.approx(2 / 3)
    assert top5 == 1.0  # every class is in the top 5 of 3
    assert loss == pytest.approx(-(math.log(0.7) + math.log(0.1) + math.log(0.8)) / 3)


def test_a_zero_probability_for_the_true_class_gives_a_finite_loss() -> None:
    loss, top1, _ = score_probabilities(np.array([[1.0, 0.0]]), np.array([1]))
    assert math.isfinite(loss)
    assert loss > 20
    assert top1 == 0.0


def test_no_known_label_gives_nan_scores() -> None:
    probabilities = np.full((4, 6), 1 / 6)
    scores = score_probabilities(probabilities, np.full(4, -1))
    assert all(math.isnan(s) for s in scores)


# --- select_images and pointing_tolerance --------------------------------------------


def _answers(right: int, wrong: int, unknown: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels: ``right`` correct, ``wrong`` mistaken, ``unknown`` unlabelled."""
    labels = np.array([1] * (right + wrong) + [-1] * unknown)
    predictions = np.array([1] * right + [2] * wrong + [1] * unknown)
    return predictions, labels


def _split(indices: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    right = int((predictions[indices] == labels[indices]).sum())
    return right, len(indices) - right


@pytest.mark.parametrize(("count", "expected"), [(4, (2, 2)), (5, (3, 2)), (1, (1, 0))])
def test_images_are_half_right_half_wrong_when_possible(
    count: int, expected: tuple[int, int]
) -> None:
    predictions, labels = _answers(right=10, wrong=10, unknown=5)
    chosen = select_images(predictions, labels, count, seed=0)
    assert len(chosen) == count
    assert len(set(chosen.tolist())) == count
    assert (labels[chosen] >= 0).all()
    assert _split(chosen, predictions, labels) == expected


def test_too_few_wrong_images_are_filled_with_right_ones() -> None:
    predictions, labels = _answers(right=10, wrong=1)
    chosen = select_images(predictions, labels, 6, seed=0)
    assert _split(chosen, predictions, labels) == (5, 1)
    assert len(set(chosen.tolist())) == 6


def test_too_few_right_images_are_filled_with_wrong_ones() -> None:
    predictions, labels = _answers(right=1, wrong=10)
    chosen = select_images(predictions, labels, 6, seed=0)
    assert _split(chosen, predictions, labels) == (1, 5)


def test_more_images_asked_than_labelled_gives_each_labelled_image_once() -> None:
    predictions, labels = _answers(right=2, wrong=1, unknown=4)
    chosen = select_images(predictions, labels, 10, seed=0)
    assert sorted(chosen.tolist()) == [0, 1, 2]


def test_without_any_known_label_any_images_are_picked() -> None:
    predictions, labels = _answers(right=0, wrong=0, unknown=9)
    chosen = select_images(predictions, labels, 4, seed=0)
    assert len(chosen) == 4
    assert len(set(chosen.tolist())) == 4
    assert all(0 <= i < 9 for i in chosen)
    assert len(select_images(predictions, labels, 20, seed=0)) == 9


def test_image_choice_is_deterministic_by_seed() -> None:
    predictions, labels = _answers(right=30, wrong=30)
    first = select_images(predictions, labels, 6, seed=3)
    assert np.array_equal(first, select_images(predictions, labels, 6, seed=3))
    others = [select_images(predictions, labels, 6, seed=s) for s in range(4, 8)]
    assert any(not np.array_equal(first, other) for other in others)


def test_pointing_tolerance_scales_with_the_input() -> None:
    assert pointing_tolerance(299) == pytest.approx(POINTING_TOLERANCE)
    assert pointing_tolerance(64) == pytest.approx(POINTING_TOLERANCE * 64 / 299)
    assert pointing_tolerance(598) == pytest.approx(2 * POINTING_TOLERANCE)


# --- render_summary ------------------------------------------------------------------


def _info(*, unlabelled_test: int = 0) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic-cars",
        layout="devkit",
        source="/src/cars",
        class_names=("coupe", "sedan", "van"),
        counts={"train": 27, "val": 9, "test": 12},
        class_counts={"train": (9, 9, 9), "val": (3, 3, 3), "test": (4, 4, 4)},
        unlabelled_test=unlabelled_test,
        max_side=512,
        val_fraction=0.25,
        seed=0,
        bbox_convention="pixel corners",
    )


def _results(missing: list[str] | None = None) -> SweepResults:
    trials = _trials(
        _trial("s1", "scratch", 0.50, 1.0, "/c/s1", trainable_params=21_208_556),
        _trial("f1", "frozen", 0.75, 0.6, "/c/f1", trainable_params=401_604),
        _trial("t1", "finetune", 0.875, 0.4, "/c/t1", trainable_params=5_150_404),
        _trial("t2", "finetune", None, None, None, status="errored"),
    )
    epochs = pd.DataFrame(
        [
            {"trial_id": "s1", "regime": "scratch", **dict.fromkeys(EPOCH_COLUMNS, 0.5)},
        ]
    ).astype({"epoch": int})
    return SweepResults(
        path="/runs/s",
        name="s",
        config=create_sweep_config("demo", "s", data="/x"),
        trials=trials,
        epochs=epochs,
        missing=missing or [],
    )


def _inputs(
    *,
    results: SweepResults | None = None,
    info: DatasetInfo | None = None,
    gradcam: pd.DataFrame | None = None,
    notes: tuple[str, ...] = (),
    figures: tuple[str, ...] = (),
) -> SummaryInputs:
    results = results or _results()
    regimes = select_regime_bests(results.trials).assign(
        test_loss=[1.1, 0.7, 0.45], test_acc=[0.5, 0.75, 0.9], test_top5=[1.0, 1.0, 1.0]
    )
    return SummaryInputs(
        results=results,
        info=info or _info(),
        weights="a `frozen` model of this project",
        regimes=regimes,
        best_trial="t1",
        gradcam=gradcam,
        notes=notes,
        figures=figures,
    )


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of ``text``."""
    body = text.split(f"## {heading}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def test_summary_shows_test_scores_as_percentages() -> None:
    text = render_summary(_inputs())
    assert text.startswith("# Xception transfer-learning study: `s`\n")
    best = _section(text, "Each regime's best trial")
    rows = {line.split("|")[1].strip(): line for line in best.splitlines() if line.count("|") > 5}
    assert set(rows) >= {"scratch", "frozen", "finetune"}
    assert "| 90.0% | 100.0% |" in rows["finetune"]
    assert "| 75.0% | 100.0% |" in rows["frozen"]
    assert "87.5% (" in rows["finetune"]  # best val acc (epoch)
    assert "5,150,404" in rows["finetune"]
    assert "2 blocks" in rows["finetune"]
    assert "unknown labels" not in text
    assert "**Best overall: trial t1 (finetune" in best
    assert "a `frozen` model of this project" in _section(text, "What was compared")


def test_summary_prints_best_epochs_as_integers_when_a_trial_has_no_epochs() -> None:
    text = render_summary(_inputs())  # trial t2 errored before its first epoch
    best = _section(text, "Each regime's best trial")
    assert "87.5% (3) |" in best
    assert "(87.5% at epoch 3;" in best


def test_summary_marks_the_reference_studys_keras_figures() -> None:
    text = render_summary(_inputs())
    reference = _section(text, "Beside the reference study")
    assert "Keras on the real Stanford Cars" in reference
    for figure in ("21,208,556", "401,604", "5,150,404", "58.9% (28)", "41.3% (29)", "57.0% (24)"):
        assert figure in reference, figure
    # The reference's accuracies are not presented as this sweep's results.
    assert "58.9%" not in _section(text, "Each regime's best trial")


def test_summary_says_no_test_score_without_test_labels() -> None:
    text = render_summary(_inputs(info=_info(unlabelled_test=12)))
    best = _section(text, "Each regime's best trial")
    assert "unknown labels" in best
    assert "no test score could be computed" in best
    assert "90.0%" not in best


def test_summary_lists_what_is_missing() -> None:
    results = _results(missing=["trial t2 (finetune) is errored"])
    text = render_summary(_inputs(results=results, notes=("regime scratch was not scored",)))
    missing = _section(text, "Missing or incomplete")
    assert "- trial t2 (finetune) is errored" in missing
    assert "- regime scratch was not scored" in missing
    assert "Nothing: every trial finished." not in missing
    assert "1 errored" in _section(text, "What was compared")


def test_summary_of_a_complete_sweep_says_nothing_is_missing() -> None:
    missing = _section(render_summary(_inputs()), "Missing or incomplete")
    assert "Nothing: every trial finished." in missing


def test_summary_without_scored_trials_says_so() -> None:
    inputs = _inputs()
    empty = SummaryInputs(
        results=inputs.results,
        info=inputs.info,
        weights=inputs.weights,
        regimes=inputs.regimes.iloc[0:0],
        best_trial=None,
        gradcam=None,
        notes=(),
    )
    text = render_summary(empty)
    assert "No trial has a checkpoint yet" in _section(text, "Each regime's best trial")
    assert "No Grad-CAM" in _section(text, "Grad-CAM")


def _gradcam() -> pd.DataFrame:
    rows = []
    for model, regime, energies, hits in (
        ("finetune-t1", "finetune", (0.6, 0.8), (True, True)),
        ("frozen-f1", "frozen", (0.2, 0.4), (False, True)),
    ):
        for index, (energy, hit) in enumerate(zip(energies, hits, strict=True)):
            rows.append(
                {
                    "model": model,
                    "regime": regime,
                    "test_index": index,
                    "energy_inside": energy,
                    "box_area_share": 0.25,
                    "energy_ratio": energy / 0.25,
                    "pointing_hit": hit,
                    "center_hit": False,
                    "box_known": True,
                    "correct": hit,
                    "tolerance_px": pointing_tolerance(64),
                    "view": INPUTS,
                    "input_size": 64,
                    "map_height": 2,
                    "map_width": 2,
                }
            )
    return pd.DataFrame(rows)


def test_summary_has_the_gradcam_means_table() -> None:
    text = render_summary(_inputs(gradcam=_gradcam()))
    section = _section(text, "Grad-CAM")
    assert "| model | regime | images | all-zero CAMs | energy in box |" in section
    # Two images: the t interval (1 degree of freedom) is wide and cut to the measure's
    # range; 2 of 2 pointing hits have Wilson's lower bound 2 / (2 + 1.96^2) = 34.2%.
    assert (
        "| finetune-t1 | finetune | 2 | 0 | 70.0% [0.0-100.0] | 25.0% | 2.80 [0.00-7.88] "
        "| 100.0% [34.2-100.0] | 0.0% | 100.0% |"
    ) in section
    assert (
        "| frozen-f1 | frozen | 2 | 0 | 30.0% [0.0-100.0] | 25.0% | 1.20 [0.00-6.28] "
        "| 50.0% [9.5-90.5] | 0.0% | 50.0% |"
    ) in section
    # An all-zero CAM has no energy share: the means rest on the other image, and it says so.
    blank = _gradcam()
    blank.loc[0, ["energy_inside", "energy_ratio"]] = np.nan
    blank.loc[0, "pointing_hit"] = False
    row = "| finetune-t1 | finetune | 2 | 1 | 80.0% | 25.0% | 3.20 | 50.0% [9.5-90.5] |"
    assert row in _section(render_summary(_inputs(gradcam=blank)), "Grad-CAM")
    assert "Student's t" in section and "Wilson" in section
    assert f"{pointing_tolerance(64):.1f} px tolerance" in section
    assert "No Grad-CAM" not in section


def test_summary_says_when_the_boxes_leave_the_gradcam_measures_no_room() -> None:
    assert "fill the frame" not in _section(render_summary(_inputs(gradcam=_gradcam())), "Grad-CAM")
    filling = _gradcam().assign(box_area_share=0.9, center_hit=True)
    section = _section(render_summary(_inputs(gradcam=filling)), "Grad-CAM")
    assert "The boxes cover 90.0% of the inputs on average (they fill the frame" in section
    assert "energy ratio much above 1.11" in section
    assert "pointing at the centre already hits 100.0%" in section


def _embedded(text: str) -> list[str]:
    return re.findall(r"^!\[[^\]]+\]\(([^)]+)\)$", text, flags=re.MULTILINE)


def test_summary_embeds_the_figures_the_report_wrote_beside_their_text() -> None:
    figures = ("curves.png", "gradcam/finetune-t1.png", "gradcam/measures.png")
    text = render_summary(_inputs(gradcam=_gradcam(), figures=(*figures, "gradcam/regimes.png")))
    assert _embedded(text) == ["curves.png", "gradcam/regimes.png", "gradcam/measures.png"]
    assert _embedded(_section(text, "Learning curves")) == ["curves.png"]
    gradcam = _section(text, "Grad-CAM")
    assert _embedded(gradcam) == ["gradcam/regimes.png", "gradcam/measures.png"]
    # The table the measures chart draws comes first, then the chart.
    assert gradcam.index("| finetune-t1 |") < gradcam.index("(gradcam/measures.png)")
    assert "[finetune-t1](gradcam/finetune-t1.png)" in gradcam
    assert "gradcam/frozen-f1.png" not in gradcam  # not written, so not linked
    # A figure the report did not write is neither embedded nor promised.
    bare = render_summary(_inputs(gradcam=_gradcam(), figures=figures[1:]))
    assert _embedded(bare) == ["gradcam/measures.png"]
    assert "curves.png" not in bare
    assert "No learning curves" in _section(bare, "Learning curves")


def test_summary_without_gradcam_says_so() -> None:
    section = _section(render_summary(_inputs()), "Grad-CAM")
    assert "No Grad-CAM" in section
    assert "| model | regime | images |" not in section


# --- describe_weights ----------------------------------------------------------------


def test_describe_weights_none_and_imagenet() -> None:
    assert describe_weights(None).startswith("none")
    assert "random" in describe_weights(None)
    imagenet = describe_weights("imagenet")
    assert "ImageNet" in imagenet
    assert "legacy_xception" in imagenet


def test_describe_weights_of_a_project_checkpoint(tmp_path: Path) -> None:
    model = build_model("frozen", 3)
    optimizer = torch.optim.SGD(head_parameters(model), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    config = TrainConfig(data="/data/source-set", regime="frozen", epochs=4)
    save_checkpoint(
        tmp_path / "source",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=4,
        config=config.to_dict(),
        class_names=["a", "b", "c"],
        metrics={"val_acc": 0.8},
    )
    folder = str(tmp_path / "source")
    text = describe_weights(folder)
    assert "a `frozen` model of this project" in text
    assert "trained for 4 epochs" in text
    assert "`/data/source-set`" in text
    assert "3 classes" in text
    assert "val acc 0.800" in text
    assert text.endswith(f"`{folder}`")


def test_describe_weights_of_an_unreadable_path_names_the_path(tmp_path: Path) -> None:
    path = str(tmp_path / "weights.safetensors")
    assert describe_weights(path) == f"`{path}`"


def test_a_train_run_stopped_before_its_first_report_reads_as_empty(tmp_path: Path) -> None:
    # A sweep killed while a trial starts leaves the run's folder without a checkpoint.
    started = tmp_path / "train-00000"
    started.mkdir()
    assert read_run(str(started)).latest is None
    assert read_run(str(tmp_path / "train-never-started")).latest is None
    assert read_train_run(str(started)) == TrainRunState(None, {}, [])


def test_summary_says_how_rates_were_scaled_to_the_trials_batch() -> None:
    plain = _section(render_summary(_inputs()), "What was compared")
    assert "scaling" not in plain
    results = _results()
    scaled = dataclasses.replace(
        results, config=results.config.replace(batch_size=32, lr_batch_size=8)
    )
    text = _section(render_summary(_inputs(results=scaled)), "What was compared")
    expected = "for global batches of 8, trained at 2.00 times that (sqrt scaling to batches of 32)"
    assert expected in text
