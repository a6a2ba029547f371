"""The report's claims with their uncertainty: per-image predictions, paired comparisons,
repeated seeds, and how ``summary.md`` states them."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from test_report_parts import _info, _inputs, _section, _trial, _trials

from cars.cluster.confirm import CONFIRMS, WinnerValue, draw_confirm_seeds, select_winners
from cars.config import RANDOM_INIT
from cars.learn.gradcam import measure_cams
from cars.report.cam_view import PHOTOS
from cars.report.cams import pointing_tolerance
from cars.report.comparisons import (
    ComparedRegime,
    compare_accuracies,
    compare_cam_ratios,
    describe_comparison,
)
from cars.report.predictions import PREDICTION_COLUMNS, ScoredModel, build_predictions
from cars.report.repeats import match_repeats, render_repeats, summarise_repeats
from cars.report.results import select_regime_bests
from cars.report.summary import SummaryInputs, render_summary
from cars.stats import paired_bootstrap_interval, wilson_interval
from cars.sweep_config import create_sweep_config


def _one_hot(predicted: np.ndarray, classes: int = 3) -> np.ndarray:
    probabilities = np.full((len(predicted), classes), 0.1)
    probabilities[np.arange(len(predicted)), predicted] = 0.8
    return probabilities


def _model(name: str, regime: str, correct: np.ndarray, labels: np.ndarray) -> ScoredModel:
    """A model whose answer is the true label where ``correct``, another class elsewhere."""
    predicted = np.where(correct, labels, (labels + 1) % 3)
    return ScoredModel(name, name.split("-")[1], regime, "sweep", _one_hot(predicted), labels)


def _compared(models: Iterable[str]) -> list[ComparedRegime]:
    """Models named ``<regime>-<trial>``, as the comparisons take them."""
    return [ComparedRegime(m.split("-")[0], m) for m in models]


def _predictions(outcomes: dict[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    models = [_model(n, n.split("-")[0], c, labels) for n, c in outcomes.items()]
    return build_predictions(models, [f"img{i}.jpg" for i in range(len(labels))])


# --- predictions.parquet -----------------------------------------------------------------


def test_predictions_keep_each_models_answer_on_each_image() -> None:
    labels = np.array([0, 1, 2, -1])
    correct = np.array([True, False, True, False])
    table = _predictions({"frozen-f1": correct}, labels)
    assert tuple(table.columns) == PREDICTION_COLUMNS
    assert list(table["image"]) == [0, 1, 2, 3]
    assert list(table["source_file"]) == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]
    assert list(table["pred_label"][:3]) == [0, 2, 2]
    assert table["true_probability"][:3].tolist() == pytest.approx([0.8, 0.1, 0.8])
    # An image of unknown label has an answer but no correctness and no true class.
    assert math.isnan(table["true_probability"][3])
    assert table["correct"].isna().tolist() == [False, False, False, True]
    assert table["correct"][:3].tolist() == [True, False, True]


# --- paired comparisons --------------------------------------------------------------


def _known_table() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """finetune right and frozen wrong on 30 images, the reverse on 5, 60 agree."""
    finetune = np.array([1] * 30 + [0] * 5 + [1] * 40 + [0] * 20, bool)
    frozen = np.array([0] * 30 + [1] * 5 + [1] * 40 + [0] * 20, bool)
    labels = np.arange(len(finetune)) % 3
    outcomes = {"frozen-f1": frozen, "finetune-t1": finetune}
    return _predictions(outcomes, labels), finetune, frozen


def test_accuracy_comparison_on_a_known_mcnemar_table() -> None:
    predictions, finetune, frozen = _known_table()
    table = compare_accuracies(predictions, _compared(["frozen-f1", "finetune-t1"]))
    assert len(table) == 1
    row = table.iloc[0]
    # The better model comes first, so the difference is positive.
    assert (row["regime_a"], row["regime_b"]) == ("finetune", "frozen")
    assert (row["only_a"], row["only_b"], row["images"]) == (30, 5, 95)
    assert row["value_a"] == pytest.approx(70 / 95)
    assert row["difference"] == pytest.approx(25 / 95)
    assert row["p_value"] == pytest.approx(scipy.stats.binomtest(5, 35, 0.5).pvalue)
    expected = paired_bootstrap_interval(finetune, frozen)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high))
    sentence = describe_comparison(row)
    assert sentence.startswith("finetune beats frozen by 26.3 points, 95 % CI ")
    assert f"McNemar p = {row['p_value']:.1e} on 95 images." in sentence


def test_a_difference_whose_interval_covers_zero_is_not_detectable() -> None:
    labels = np.arange(40) % 3
    a = np.array([1, 0] * 20, bool)
    b = np.array([0, 1] * 20, bool)
    b[1] = False  # a is one image ahead
    table = compare_accuracies(_predictions({"scratch-s1": a, "frozen-f1": b}, labels), [])
    assert table.empty  # no model asked for, nothing compared
    names = ["scratch-s1", "frozen-f1"]
    row = compare_accuracies(
        _predictions({"scratch-s1": a, "frozen-f1": b}, labels), _compared(names)
    )
    sentence = describe_comparison(row.iloc[0])
    assert sentence.startswith("scratch vs frozen (test accuracy): no detectable difference")
    assert "scratch ahead by 2.5 points" in sentence
    assert " to " in sentence  # a negative lower bound is not written with a dash


def test_comparisons_of_all_correct_models_find_no_difference() -> None:
    labels = np.arange(10) % 3
    correct = np.ones(10, bool)
    outcomes = {"frozen-f1": correct, "finetune-t1": correct}
    row = compare_accuracies(_predictions(outcomes, labels), _compared(outcomes)).iloc[0]
    assert (row["difference"], row["ci_low"], row["ci_high"], row["p_value"]) == (0, 0, 0, 1)
    sentence = describe_comparison(row)
    assert "no detectable difference (the same test accuracy, 95 % CI 0.0-0.0," in sentence
    assert sentence.endswith("McNemar p = 1.00 on 10 images).")


def test_comparisons_without_a_labelled_test_image_are_null() -> None:
    labels = np.full(4, -1)
    outcomes = {"frozen-f1": np.ones(4, bool), "finetune-t1": np.ones(4, bool)}
    row = compare_accuracies(_predictions(outcomes, labels), _compared(outcomes)).iloc[0]
    assert row["images"] == 0
    assert math.isnan(row["difference"]) and math.isnan(row["p_value"])
    assert "not compared" in describe_comparison(row)
    empty = compare_accuracies(build_predictions([], []), _compared(["frozen-f1"]))
    assert empty.empty


def test_one_model_has_nothing_to_compare_with() -> None:
    labels = np.arange(6) % 3
    predictions = _predictions({"finetune-t1": np.ones(6, bool)}, labels)
    assert compare_accuracies(predictions, _compared(["finetune-t1"])).empty


def test_three_regimes_give_three_pairs() -> None:
    labels = np.arange(30) % 3
    rng = np.random.default_rng(0)
    outcomes = {f"{r}-x{i}": rng.random(30) < 0.7 for i, r in enumerate(["scratch", "frozen"])}
    outcomes["finetune-x2"] = rng.random(30) < 0.7
    table = compare_accuracies(_predictions(outcomes, labels), _compared(outcomes))
    assert len(table) == 3
    assert (table["value_a"] >= table["value_b"]).all()


def test_cam_ratio_comparison_is_a_paired_wilcoxon_test() -> None:
    ratios = {
        "finetune-t1": [2.0, 2.5, 3.1, 1.8, 2.2, 2.9],
        "frozen-f1": [1.1, 1.4, 2.0, 1.0, 1.3, 1.2],
    }
    rows = [
        {"model": m, "regime": m.split("-")[0], "test_index": i, "energy_ratio": r}
        for m, values in ratios.items()
        for i, r in enumerate(values)
    ]
    rows[0]["energy_ratio"] = np.nan  # an all-zero CAM: its image leaves the pair
    table = compare_cam_ratios(pd.DataFrame(rows), _compared(ratios))
    row = table.iloc[0]
    assert (row["regime_a"], row["regime_b"], row["images"]) == ("finetune", "frozen", 5)
    a, b = np.array(ratios["finetune-t1"][1:]), np.array(ratios["frozen-f1"][1:])
    assert row["p_value"] == pytest.approx(scipy.stats.wilcoxon(a - b).pvalue)
    assert row["difference"] == pytest.approx((a - b).mean())
    assert row["test"] == "Wilcoxon signed-rank"
    sentence = describe_comparison(row)
    assert sentence.startswith("finetune has a higher ratio than frozen by 1.")
    assert "Wilcoxon p = 0.062 on 5 images" in sentence


# --- repeated seeds --------------------------------------------------------------------


def _regimes() -> pd.DataFrame:
    trials = _trials(
        _trial("f1", "frozen", 0.75, 0.6, "/c/f1", lr=5e-3, augment="none"),
        _trial("t1", "finetune", 0.875, 0.4, "/c/t1", lr=2e-3, trainable_blocks=2),
    )
    return select_regime_bests(trials).assign(test_acc=[0.7, 0.85])


def _repeats() -> pd.DataFrame:
    rows = [
        _trial("c1", "finetune", 0.80, 0.5, "/c/c1", lr=2e-3, trainable_blocks=2, seed=11),
        _trial("c2", "finetune", 0.90, 0.5, "/c/c2", lr=2e-3, trainable_blocks=2, seed=12),
        _trial("c3", "frozen", 0.70, 0.5, "/c/c3", lr=5e-3, augment="none", seed=11),
        _trial("c4", "frozen", None, None, None, lr=5e-3, augment="none", seed=12),
        _trial("c5", "frozen", 0.60, 0.5, "/c/c5", lr=9e-3, augment="none", seed=13),
    ]
    return _trials(*rows).assign(test_acc=[0.8, 0.9, 0.65, np.nan, 0.5])


def test_repeats_of_another_configuration_are_left_out_and_named() -> None:
    runs, notes = match_repeats(_repeats(), _regimes())
    assert list(runs["trial_id"]) == ["c1", "c2", "c3", "c4"]
    assert len(notes) == 1 and "c5" in notes[0] and "no longer its regime's best" in notes[0]


def test_repeats_give_mean_and_sample_deviation_per_regime() -> None:
    runs, _ = match_repeats(_repeats(), _regimes())
    regimes = summarise_repeats(runs, _regimes())
    finetune = regimes.set_index("regime").loc["finetune"]
    assert finetune["confirm_runs"] == 2
    assert finetune["confirm_val_acc_mean"] == pytest.approx(0.85)
    assert finetune["confirm_val_acc_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert finetune["confirm_test_acc_mean"] == pytest.approx(0.85)
    frozen = regimes.set_index("regime").loc["frozen"]
    assert frozen["confirm_runs"] == 1  # c4 has no checkpoint
    assert math.isnan(frozen["confirm_test_acc_std"])
    lines = "\n".join(render_repeats(regimes, 2))
    assert "| finetune | 2 | 87.5% | 85.0 ± 7.1% | 85.0% | 85.0 ± 7.1% |" in lines
    assert "| frozen | 1 | 75.0% | 70.0% | 70.0% | 65.0% |" in lines


def test_confirm_seeds_are_fresh_and_reproducible() -> None:
    sweep = create_sweep_config("smoke", "s", confirm=3)
    seeds = draw_confirm_seeds(sweep, taken=set())
    assert len(set(seeds)) == 3
    assert draw_confirm_seeds(sweep, taken=set()) == seeds
    assert not set(draw_confirm_seeds(sweep, taken={seeds[0]})) & {seeds[0]}
    assert draw_confirm_seeds(sweep.replace(seed=1), taken=set()) != seeds


def test_confirm_repeats_each_regimes_best_configuration() -> None:
    trials = _trials(
        _trial("f1", "frozen", 0.75, 0.6, "/c/f1", lr=5e-3, augment="none"),
        _trial("f2", "frozen", 0.70, 0.6, "/c/f2", lr=8e-3),
        _trial("t1", "finetune", 0.875, 0.4, "/c/t1", lr=2e-3, trainable_blocks=4),
    )
    winners = select_winners(trials)
    assert winners == {
        "frozen": {"lr": 5e-3, "trainable_blocks": None, "augment": "none", CONFIRMS: "f1"},
        "finetune": {"lr": 2e-3, "trainable_blocks": 4, "augment": "basic", CONFIRMS: "t1"},
    }
    assert WinnerValue(winners, "trainable_blocks")({"regime": "finetune", "seed": 3}) == 4
    assert select_winners(trials.iloc[0:0]) == {}


# --- summary.md ------------------------------------------------------------------------


def _scored_inputs(**changes: object) -> SummaryInputs:
    inputs = _inputs()
    labels = np.arange(80) % 3
    rng = np.random.default_rng(3)
    outcomes = {
        "scratch-s1": rng.random(80) < 0.4,
        "frozen-f1": rng.random(80) < 0.75,
        "finetune-t1": rng.random(80) < 0.9,
    }
    predictions = _predictions(outcomes, labels)
    regimes = inputs.regimes
    for name in ("test_acc", "test_top5"):
        intervals = [wilson_interval(round(v * 80), 80) for v in regimes[name]]
        regimes = regimes.assign(
            **{
                f"{name}_low": [i.low for i in intervals],
                f"{name}_high": [i.high for i in intervals],
            }
        )
    values = {
        "regimes": regimes.assign(test_images=80),
        "comparisons": compare_accuracies(predictions, _compared(outcomes)),
        **changes,
    }
    return SummaryInputs(**{**inputs.__dict__, **values})


def test_summary_gives_test_scores_with_wilson_intervals_and_image_counts() -> None:
    best = _section(render_summary(_scored_inputs()), "Each regime's best trial")
    rows = {line.split("|")[1].strip(): line for line in best.splitlines() if line.count("|") > 5}
    low, high = wilson_interval(72, 80).low, wilson_interval(72, 80).high
    assert f"| 90.0% [{100 * low:.1f}-{100 * high:.1f}] |" in rows["finetune"]
    assert "| 80 |" in rows["finetune"]
    assert "test acc [95 % CI]" in best


def test_summary_states_each_comparison_in_one_sentence() -> None:
    inputs = _scored_inputs()
    section = _section(render_summary(inputs), "Paired comparisons between regimes")
    assert "McNemar's exact test" in section and "paired bootstrap" in section
    sentences = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(sentences) == 3
    for (_, row), sentence in zip(inputs.comparisons.iterrows(), sentences, strict=True):
        assert sentence == f"- {describe_comparison(row)}"
        assert "on 80 images" in sentence
    assert any(s.startswith("- finetune beats scratch by ") for s in sentences)


def test_summary_of_one_regime_has_nothing_to_compare() -> None:
    inputs = _scored_inputs()
    one = _scored_inputs(regimes=inputs.regimes.iloc[2:], comparisons=inputs.comparisons.iloc[0:0])
    section = _section(render_summary(one), "Paired comparisons between regimes")
    assert "Only one regime (finetune) was scored: nothing to compare." in section


def test_summary_without_test_labels_compares_nothing() -> None:
    section = _section(
        render_summary(_scored_inputs(info=_info(unlabelled_test=12))),
        "Paired comparisons between regimes",
    )
    assert "labels are unknown" in section
    assert "beats" not in section


def test_summary_says_whether_seeds_were_repeated() -> None:
    off = _section(render_summary(_scored_inputs()), "Repeated seeds")
    assert "one training run (one seed)" in off and "--confirm K" in off
    pending = _section(render_summary(_scored_inputs(confirm_seeds=2)), "Repeated seeds")
    assert "has not run" in pending
    regimes = _scored_inputs().regimes.assign(
        confirm_runs=2,
        confirm_val_acc_mean=0.8,
        confirm_val_acc_std=0.05,
        confirm_test_acc_mean=0.78,
        confirm_test_acc_std=0.02,
    )
    done = render_summary(_scored_inputs(confirm_seeds=2, regimes=regimes))
    assert "| finetune | 2 | 87.5% | 80.0 ± 5.0% | 90.0% | 78.0 ± 2.0% |" in _section(
        done, "Repeated seeds"
    )


def test_summary_of_an_empty_test_split_says_why_nothing_is_compared() -> None:
    inputs = _scored_inputs()
    regimes = inputs.regimes.assign(
        test_acc=np.nan, test_acc_low=np.nan, test_acc_high=np.nan, test_images=0
    )
    text = render_summary(_scored_inputs(regimes=regimes))
    section = _section(text, "Paired comparisons between regimes")
    assert "The test split has no labelled image: no test outcomes to compare." in section
    assert "| n/a |" in _section(text, "Each regime's best trial")


# --- Grad-CAM against the untrained network --------------------------------------------


def _cam_rows(model: str, regime: str, cams: np.ndarray, boxes: np.ndarray) -> pd.DataFrame:
    """``gradcam.parquet`` rows of ``cams`` measured against ``boxes``, as the report writes."""
    measures = measure_cams(cams, boxes, tolerance=pointing_tolerance(96))
    return measures.assign(
        model=model,
        regime=regime,
        baseline=regime == RANDOM_INIT,
        test_index=np.arange(len(cams)),
        drawn=np.arange(len(cams)) < 4,
        box_known=True,
        correct=True,
        tolerance_px=pointing_tolerance(96),
        view=PHOTOS,
        input_size=96,
        map_height=3,
        map_width=3,
    )


def _constructed_cams() -> pd.DataFrame:
    """finetune's CAM inside each box, frozen's on the background, scratch's and the
    untrained network's spread over the whole image."""
    rng = np.random.default_rng(7)
    count, size = 12, 96
    rows, cols = np.mgrid[:size, :size]
    boxes = np.empty((count, 4))
    inside, outside = np.empty((2, count, size, size))
    for i in range(count):
        x1, y1 = rng.integers(4, 50, 2)
        boxes[i] = (x1, y1, x1 + rng.integers(24, 40), y1 + rng.integers(18, 30))
        cx, cy = (boxes[i, 0] + boxes[i, 2]) / 2, (boxes[i, 1] + boxes[i, 3]) / 2
        inside[i] = np.exp(-((cols - cx) ** 2 + (rows - cy) ** 2) / (2 * 5.0**2))
        far = (cx + 48) % size, (cy + 48) % size
        outside[i] = np.exp(-((cols - far[0]) ** 2 + (rows - far[1]) ** 2) / (2 * 5.0**2))

    def spread() -> np.ndarray:
        return 0.5 + 0.5 * rng.uniform(size=(count, size, size))

    return pd.concat(
        [
            _cam_rows("scratch-s1", "scratch", spread(), boxes),
            _cam_rows("frozen-f1", "frozen", outside, boxes),
            _cam_rows("finetune-t1", "finetune", inside, boxes),
            _cam_rows(RANDOM_INIT, RANDOM_INIT, spread(), boxes),
        ],
        ignore_index=True,
    )


def _regimes_of(gradcam: pd.DataFrame) -> list[ComparedRegime]:
    """The regimes whose models ``gradcam`` explains (the baseline joins them by itself)."""
    models = gradcam[gradcam["model"] != RANDOM_INIT].drop_duplicates("model")
    return [ComparedRegime(row.regime, row.model) for row in models.itertuples()]


def test_summary_says_which_regimes_cam_concentrates_on_the_car_more_than_random() -> None:
    gradcam = _constructed_cams()
    comparisons = compare_cam_ratios(gradcam, _regimes_of(gradcam))
    inputs = _scored_inputs(gradcam=gradcam, comparisons=comparisons)
    section = _section(render_summary(inputs), "Grad-CAM")
    verdicts = {
        line.split("`")[1]: line for line in section.splitlines() if line.startswith("- **")
    }
    assert set(verdicts) == {"scratch-s1", "frozen-f1", "finetune-t1"}
    assert (
        "its CAM concentrates on the car more than the untrained network's does"
        in verdicts["finetune-t1"]
    )
    assert "less than the untrained network's" in verdicts["frozen-f1"]
    assert "no difference from the untrained network's CAM is detectable" in verdicts["scratch-s1"]
    assert verdicts["finetune-t1"].startswith("- **finetune** (`finetune-t1`): ")
    assert "on 12 images" in verdicts["finetune-t1"]
    # The regimes' own pairs are listed apart from the comparisons with the baseline.
    pairs = section.split("Energy-in-box ratios of the regimes compared", 1)[1]
    assert "finetune has a higher ratio than frozen" in pairs
    assert RANDOM_INIT not in pairs.split("\n\n")[1]
    table = [line for line in section.splitlines() if line.startswith(f"| {RANDOM_INIT} |")]
    assert len(table) == 1 and "| 12 |" in table[0]
    assert "whole test photos, at 96 px" in section and "a 3 × 3 map" in section
    assert "Measured on all 12 test images (the 4 drawn and 8 more at random)." in section


def test_cam_ratio_pairs_are_ordered_by_the_images_both_have_a_ratio_for() -> None:
    # finetune has the higher mean over its own images, frozen over the two they share.
    ratios = {"finetune-t1": [6.0, 1.0, 1.2], "frozen-f1": [np.nan, 2.0, 2.4]}
    rows = [
        {"model": m, "regime": m.split("-")[0], "test_index": i, "energy_ratio": r}
        for m, values in ratios.items()
        for i, r in enumerate(values)
    ]
    gradcam = pd.DataFrame(rows)
    row = compare_cam_ratios(gradcam, _regimes_of(gradcam)).iloc[0]
    assert (row["regime_a"], row["images"]) == ("frozen", 2)
    assert row["difference"] == pytest.approx(1.1)
    assert describe_comparison(row).startswith("frozen has a higher ratio than finetune by 1.10")
