"""The report on every degenerate prepared set the tests can make: no test images,
unlabelled test images, no val images, a class without a val image, and boxes that
are unknown; its parts, and the whole report with one, two and three regimes (and a
regime without a checkpoint). Real prepared sets, real model checkpoints, no Ray."""

from __future__ import annotations

import io
import itertools
import math
from contextlib import redirect_stderr
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from copy_files import write_class_folders
from stanford_files import record, write_devkit

from cars.cli import ReportError, exit_on_user_error
from cars.config import RANDOM_INIT, TrainConfig
from cars.data import (
    CarsDataset,
    DatasetInfo,
    create_transform_for,
    expand_box,
    prepare_dataset,
    read_dataset_info,
)
from cars.learn.checkpoint import save_checkpoint
from cars.learn.model import build_model, head_parameters
from cars.report.cam_view import CamView
from cars.report.cams import CamModel, select_images, write_gradcam
from cars.report.gaps import describe_boxes, describe_data_gaps
from cars.report.results import SweepResults, _trial_row, read_train_run
from cars.report.scoring import load_trial_model, score_checkpoint
from cars.report.summary import SummaryInputs, render_summary
from cars.report.writer import write_parquet, write_results_report
from cars.sweep_config import create_sweep_config

CLASSES = ["Coupe", "Van"]
TRAIN = [record(f"{i:05d}.jpg", (11, 6, 60, 50), 1 + i % 2) for i in range(8)]
TEST = [record(f"t{i:04d}.jpg", (5, 5, 40, 30), 1 + i % 2) for i in range(4)]


def _no_test(root: Path) -> Path:
    write_devkit(root, CLASSES, TRAIN, TEST)
    for image in (root / "cars_test").glob("*.jpg"):
        image.unlink()  # a user with only cars_train/
    return root


def _unlabelled_test(root: Path) -> Path:
    return write_devkit(root, CLASSES, TRAIN, TEST, test_labels=None)


def _no_val(root: Path) -> Path:
    # One training image per class: none can be held out.
    return write_devkit(root, CLASSES, TRAIN[:2], TEST)


def _class_without_val(root: Path) -> Path:
    return write_devkit(root, CLASSES, [*TRAIN[::2], TRAIN[1]], TEST)  # Van: one image


def _resized(root: Path) -> Path:
    # The devkit's boxes on images a quarter of their size: every box is unknown.
    sizes = {str(r["fname"]): (20, 15) for r in [*TRAIN, *TEST]}
    return write_devkit(root, CLASSES, TRAIN, TEST, image_sizes=sizes)


def _no_boxes(root: Path) -> Path:
    # Another data set in class folders, without annotation files: no box at all.
    return write_class_folders(
        root, CLASSES, TRAIN, TEST, wrap=(), names_file=False, annotations=False
    )


SETS = {
    "no_boxes": _no_boxes,
    "no_test": _no_test,
    "unlabelled_test": _unlabelled_test,
    "no_val": _no_val,
    "class_without_val": _class_without_val,
    "resized": _resized,
}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each degenerate set, prepared with a quarter of each class held out."""
    root = tmp_path_factory.mktemp("degenerate")
    out = {}
    for name, write in SETS.items():
        source = write(root / name / "cars")
        out[name] = root / name / "set"
        prepare_dataset(source, out[name], val_fraction=0.25, progress=False, name=name)
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A frozen two-class model of this project, as a trial's checkpoint."""
    torch.manual_seed(0)
    model = build_model("frozen", 2)
    optimizer = torch.optim.SGD(head_parameters(model), lr=0.01)
    folder = tmp_path_factory.mktemp("trial") / "checkpoint"
    save_checkpoint(
        folder,
        model=model,
        optimizer=optimizer,
        scheduler=None,
        epoch=1,
        config=TrainConfig(data="unused", regime="frozen", image_size=32).to_dict(),
        class_names=CLASSES,
        metrics={"val_acc": 0.5},
    )
    return str(folder)


def _config(data: Path) -> TrainConfig:
    return TrainConfig(data=str(data), regime="frozen", image_size=32, epochs=1)


def _read(path: Path) -> DatasetInfo:
    return read_dataset_info(str(path))


# --- what each set lacks, in words ---------------------------------------------------


def test_each_gap_is_named_once_with_what_it_prevents(sets: dict[str, Path]) -> None:
    notes = {name: describe_data_gaps(_read(path)) for name, path in sets.items()}
    [no_test] = notes["no_test"]
    assert no_test.startswith("the test split is empty") and "no test score" in no_test
    [unlabelled] = notes["unlabelled_test"]
    assert "labels are unknown" in unlabelled and "no test score" in unlabelled
    [no_val] = notes["no_val"]
    assert "the val split is empty" in no_val and "no best trial could be chosen" in no_val
    [no_class] = notes["class_without_val"]
    assert no_class.startswith("1 of 2 classes have no val image (Van)")
    [boxes] = notes["resized"]
    assert boxes.startswith("4 of 4 test images have no known box")
    info = _read(sets["resized"])
    [bullet] = describe_boxes(info, bbox_crop=True)
    assert "unknown for 12 images (train 6, val 2, test 4)" in bullet
    assert "look resized or cropped from the originals" in bullet
    assert "`--bbox-crop` used those images whole" in bullet
    assert describe_boxes(_read(sets["no_val"]), bbox_crop=True) == []


# --- scoring on test -----------------------------------------------------------------


def test_scoring_an_empty_test_split_gives_nulls_not_numbers(
    sets: dict[str, Path], checkpoint: str, tmp_path: Path
) -> None:
    score = score_checkpoint(checkpoint, _config(sets["no_test"]).to_dict())
    assert score.probabilities.shape == (0, 2) and len(score.labels) == 0
    assert all(math.isnan(v) for v in (score.loss, score.acc, score.top5))
    assert len(select_images(score.predictions, score.labels, 4, seed=0)) == 0
    frame = pd.DataFrame({"regime": ["frozen"], "test_acc": [score.acc], "test_images": [0]})
    write_parquet(frame, tmp_path / "regimes.parquet")
    column = pq.read_table(tmp_path / "regimes.parquet")["test_acc"]
    assert column.null_count == 1  # a null, not NaN or a made-up number


def test_scoring_unlabelled_test_images_predicts_but_scores_nothing(
    sets: dict[str, Path], checkpoint: str
) -> None:
    score = score_checkpoint(checkpoint, _config(sets["unlabelled_test"]).to_dict())
    assert score.probabilities.shape == (4, 2)
    assert np.allclose(score.probabilities.sum(axis=1), 1, atol=1e-5)
    assert (score.labels == -1).all() and math.isnan(score.acc)


# --- Grad-CAM on unknown boxes -------------------------------------------------------


def _cam_models(checkpoint: str) -> list[CamModel]:
    model = load_trial_model(checkpoint, _config(Path("unused")), CLASSES)
    return [CamModel("frozen-t1", "t1", "frozen", True, model)]


def test_gradcam_on_unknown_boxes_draws_them_without_measuring(
    sets: dict[str, Path], checkpoint: str, tmp_path: Path
) -> None:
    config = _config(sets["resized"])
    dataset = CarsDataset(sets["resized"], "test", _eval_transform())
    table = write_gradcam(
        _cam_models(checkpoint),
        dataset,
        indices=np.arange(4),
        view=CamView.of_inputs(config),
        class_names=CLASSES,
        out=tmp_path,
    )
    assert len(table) == 4 and not table["box_known"].any()
    measures = ["energy_inside", "box_area_share", "energy_ratio", "pointing_hit", "center_hit"]
    assert table[measures].isna().all(axis=None)
    assert table[["box_x1", "box_y1", "box_x2", "box_y2"]].isna().all(axis=None)
    assert (tmp_path / "frozen-t1.png").is_file() and (tmp_path / "regimes.png").is_file()
    assert not (tmp_path / "measures.png").exists()  # nothing measured, no chart of it
    write_parquet(table, tmp_path / "gradcam.parquet")
    assert pd.read_parquet(tmp_path / "gradcam.parquet")["energy_inside"].isna().all()


def test_gradcam_measures_only_the_images_whose_box_is_known(
    sets: dict[str, Path], checkpoint: str, tmp_path: Path
) -> None:
    config = _config(sets["unlabelled_test"])
    dataset = CarsDataset(sets["unlabelled_test"], "test", _eval_transform())
    dataset.has_box[1] = False  # as if this image's box had been unknown
    table = write_gradcam(
        _cam_models(checkpoint),
        dataset,
        indices=np.arange(4),
        view=CamView.of_inputs(config),
        class_names=CLASSES,
        out=tmp_path,
    )
    assert table["box_known"].tolist() == [True, False, True, True]
    assert table.loc[[0, 2, 3], "box_area_share"].notna().all()
    assert table.loc[1, ["energy_inside", "box_area_share", "pointing_hit"]].isna().all()
    assert (tmp_path / "measures.png").is_file()
    text = render_summary(_summary_inputs(_read(sets["unlabelled_test"]), gradcam=table))
    section = text.split("## Grad-CAM\n", 1)[1].split("\n## ", 1)[0]
    assert "Measured on 3 of the 4 images drawn; the other 1 have no known box" in section
    assert "| frozen-t1 | frozen | 3 |" in section


def test_a_set_without_boxes_says_the_gradcam_measures_cannot_be_computed(
    sets: dict[str, Path], checkpoint: str, tmp_path: Path
) -> None:
    info = _read(sets["no_boxes"])
    assert not info.has_boxes and info.class_names == tuple(CLASSES)
    [gap] = describe_data_gaps(info)
    assert gap == (
        "the data set has no bounding boxes (its class_folders copy has none): the Grad-CAM "
        "measures (energy inside the box, pointing game) cannot be computed"
    )
    dataset = CarsDataset(sets["no_boxes"], "test", _eval_transform())
    table = write_gradcam(
        _cam_models(checkpoint),
        dataset,
        indices=np.arange(4),
        view=CamView.of_inputs(_config(sets["no_boxes"])),
        class_names=CLASSES,
        out=tmp_path,
    )
    assert not table["box_known"].any() and table["energy_inside"].isna().all()
    text = render_summary(_summary_inputs(info, gradcam=table))
    section = text.split("## Grad-CAM\n", 1)[1].split("\n## ", 1)[0]
    assert (
        "None of the 4 images drawn has a known box (the data set stores their boxes as "
        "unknown): the Grad-CAM measures (energy inside the box, pointing game) cannot be "
        "computed, and the CAMs are drawn without boxes."
    ) in section
    assert "| frozen-t1 |" not in section  # no table of measures made of nothing
    compared = text.split("## What was compared\n", 1)[1].split("\n## ", 1)[0]
    assert "- Data set: **no_boxes** (2 classes; train 6, val 2, test 4 images)" in compared
    assert (
        "- Classes: the data set's own 2 (from class folder names, in sorted order), "
        "not Stanford Cars' 196"
    ) in compared
    assert "- Bounding boxes: none (the class_folders copy has none): " in compared
    assert "used the images whole; the Grad-CAM measures cannot be computed." in compared
    assert f"- {gap}" in text.split("## Missing or incomplete", 1)[1]


def _eval_transform():
    return create_transform_for("none", 32, is_training=False)


# --- the training set's unknown boxes ------------------------------------------------


def test_bbox_crop_uses_an_image_without_a_known_box_whole(sets: dict[str, Path]) -> None:
    plain = CarsDataset(sets["resized"], "train")
    cropped = CarsDataset(sets["resized"], "train", bbox_crop=True)
    assert not plain.has_box.any() and plain.box(0) is None
    assert plain.uncropped == 0 and cropped.uncropped == len(cropped) == 6
    assert cropped[0][0].size == plain[0][0].size == (20, 15)
    known = CarsDataset(sets["no_val"], "train", bbox_crop=True)
    x1, y1, x2, y2 = expand_box(known.box(0), 80, 60, known.bbox_margin)
    assert known.uncropped == 0 and known[0][0].size == (x2 - x1, y2 - y1) != (80, 60)


# --- summary.md ----------------------------------------------------------------------


def _summary_inputs(
    info: DatasetInfo, gradcam: pd.DataFrame | None = None, scored: bool = True
) -> SummaryInputs:
    from test_report_parts import _results

    results = _results()
    regimes = results.trials.dropna(subset=["best_val_acc"]).iloc[:1]
    if not scored:
        regimes = regimes.iloc[0:0]
    nan = float("nan")
    regimes = regimes.assign(test_loss=nan, test_acc=nan, test_top5=nan)
    return SummaryInputs(
        results=results,
        info=info,
        weights="none",
        regimes=regimes,
        best_trial=None,
        gradcam=gradcam,
        notes=describe_data_gaps(info),
    )


def test_summary_of_a_set_without_test_images(sets: dict[str, Path]) -> None:
    text = render_summary(_summary_inputs(_read(sets["no_test"])))
    assert "| no test images | no test images |" in text
    assert "The test split is empty (the source has no test images)" in text
    assert "No Grad-CAM: the test split has no images." in text
    assert "- the test split is empty" in text.split("## Missing or incomplete", 1)[1]


def test_summary_of_a_set_without_val_images(sets: dict[str, Path]) -> None:
    text = render_summary(_summary_inputs(_read(sets["no_val"]), scored=False))
    assert "No trial has a validation score (the val split is empty)" in text
    assert "No trial has a checkpoint yet" not in text
    assert "- the val split is empty" in text


# --- reading a trial whose val split was empty ---------------------------------------


def test_a_trial_without_validation_scores_has_null_best_metrics() -> None:
    curve = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [1.0, 0.8],
            "train_acc": [0.4, 0.6],
            "val_loss": [math.nan] * 2,
            "val_acc": [math.nan] * 2,
            "val_top5": [math.nan] * 2,
            "epoch_seconds": [3.0, 3.0],
            "images_per_second": [10.0, 10.0],
        }
    )
    trial = SimpleNamespace(trial_id="t1", status="TERMINATED", config={"regime": "frozen"})
    run = read_train_run("/nowhere/train-t1")
    row = _trial_row(trial, curve, run, create_sweep_config("smoke", "s", data="/x", epochs=2))
    assert row["status"] == "finished" and row["epochs_run"] == 2
    assert "best_val_acc" not in row and "best_epoch" not in row
    assert math.isnan(row["last_val_acc"]) and row["last_train_loss"] == 0.8


# --- a failed report step ------------------------------------------------------------


def test_a_failed_report_names_the_cause_the_results_and_the_command(tmp_path: Path) -> None:
    from cars.study import _write_report

    outcome = SimpleNamespace(path=str(tmp_path / "runs" / "s"))
    job = SimpleNamespace(reports=str(tmp_path / "my reports"))
    with pytest.raises(ReportError) as raised:
        _write_report(outcome, job)
    message = str(raised.value)
    assert message.startswith("the report step failed: ")
    assert f"The sweep's results are intact at {tmp_path / 'runs' / 's'}." in message
    expected = (
        f"python jobs/report.py --sweep {tmp_path / 'runs' / 's'} "
        f"--reports '{tmp_path / 'my reports'}'"
    )
    assert message.endswith(f"\n  {expected}")

    for argv, traceback_shown in (([], False), (["--debug"], True)):
        stderr = io.StringIO()
        with (
            redirect_stderr(stderr),
            pytest.raises(SystemExit) as exited,
            exit_on_user_error(argv),
        ):
            raise raised.value
        assert exited.value.code == 1
        assert ("Traceback" in stderr.getvalue()) == traceback_shown
        assert stderr.getvalue().splitlines()[-1] == f"  {expected}"


# --- the whole report, with one, two and three regimes -------------------------------

REGIME_SETS = [("frozen",), ("scratch", "frozen"), ("scratch", "frozen", "finetune")]
# The report draws two of the four test images and measures all four: its figures cost
# more than its models, and what these tests check is in its tables and summary.
DRAWN = 2
NUMBERS = ["value_a", "value_b", "difference", "ci_low", "ci_high", "p_value", "only_a", "only_b"]


@pytest.fixture(scope="module")
def regime_checkpoints(
    sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], str]:
    """Per set with test images and regime, a trial's checkpoint of its own model on that set."""
    folder = tmp_path_factory.mktemp("trials")
    # The backbone, whatever the tests before this fixture drew from torch's generator.
    torch.manual_seed(0)
    model = build_model("frozen", 2)
    optimizer = torch.optim.SGD(head_parameters(model), lr=0.01)
    checkpoints = {}
    for name in ("no_test", "unlabelled_test", "resized"):
        for seed, regime in enumerate(("scratch", "frozen", "finetune")):
            torch.manual_seed(seed)  # each regime's model answers differently
            model.reset_classifier(2)
            # 64 px: at 32 px act4 is a single pixel and every CAM is flat.
            config = TrainConfig(data=str(sets[name]), regime=regime, image_size=64, epochs=1)
            checkpoints[name, regime] = str(
                save_checkpoint(
                    folder / f"{name}-{regime}",
                    model=model,
                    optimizer=optimizer,
                    scheduler=None,
                    epoch=1,
                    config=config.to_dict(),
                    class_names=CLASSES,
                    metrics={"val_acc": 0.5},
                ).parent
            )
    return checkpoints


def _sweep_results(
    data: Path, regimes: tuple[str, ...], checkpoints: dict[str, str | None]
) -> SweepResults:
    """A finished sweep of one trial per regime, as ``read_sweep_results`` reads it.

    A regime whose checkpoint is None has no val score (an empty val split), or
    errored before its first checkpoint where the set has val images.
    """
    from test_report_parts import _trial, _trials

    has_val = read_dataset_info(str(data)).counts["val"] > 0
    rows, epochs = [], []
    for i, regime in enumerate(regimes):
        checkpoint = checkpoints.get(regime)
        scored = has_val and checkpoint is not None
        val_acc = 0.5 + 0.1 * i if scored else None
        status = "finished" if scored or not has_val else "errored"
        rows.append(
            _trial(
                f"t{i}", regime, val_acc, 0.7 if scored else None, checkpoint if scored else None
            )
            | {"status": status, "epochs_run": 1, "max_epochs": 1}
        )
        epochs.append(
            {"trial_id": f"t{i}", "regime": regime, "epoch": 1, "train_loss": 0.9,
             "train_acc": 0.5, "train_top5": 1.0, "val_loss": 0.7 if scored else math.nan,
             "val_acc": val_acc if scored else math.nan, "val_top5": math.nan, "lr": 1e-3,
             "epoch_seconds": 2.0, "images_per_second": 4.0}
        )  # fmt: skip
    name = f"{data.parent.name}-{len(regimes)}"
    return SweepResults(
        path=f"/runs/{name}",
        name=name,
        config=create_sweep_config(
            "smoke",
            name,
            data=str(data),
            regimes=regimes,
            weights="none",
            image_size=64,
            gradcam_images=DRAWN,
            gradcam_measured=4,
        ),
        trials=_trials(*rows),
        epochs=pd.DataFrame(epochs),
    )


def _report(results: SweepResults, reports: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame, str]:
    """Write the report; its folder, comparisons (as Parquet reads them back), regimes, summary."""
    outcome = write_results_report(results, str(reports))
    folder = Path(outcome.path)
    return (
        folder,
        pd.read_parquet(folder / "comparisons.parquet"),
        pd.read_parquet(folder / "regimes.parquet"),
        (folder / "summary.md").read_text(),
    )


def _pairs(regimes: tuple[str, ...]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for p in itertools.combinations(regimes, 2)}  # type: ignore[misc]


def _assert_uncompared(comparisons: pd.DataFrame, path: Path, reasons: dict[str, str]) -> None:
    """Every pair has a row per measure, with nulls for numbers and the reason given."""
    for measure, reason in reasons.items():
        rows = comparisons[comparisons["measure"] == measure]
        assert rows["not_compared"].tolist() == [reason] * len(rows), measure
        assert rows["images"].eq(0).all()
    table = pq.read_table(path)
    for column in NUMBERS:  # nulls in the file, not NaN or a made-up count
        assert table[column].null_count == table.num_rows, column


def _comparison_section(summary: str) -> str:
    return summary.split("## Paired comparisons between regimes\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("regimes", REGIME_SETS, ids=len)
def test_the_report_of_a_set_without_test_images(
    sets: dict[str, Path],
    regime_checkpoints: dict[tuple[str, str], str],
    regimes: tuple[str, ...],
    tmp_path: Path,
) -> None:
    checkpoints = {r: regime_checkpoints["no_test", r] for r in regimes}
    results = _sweep_results(sets["no_test"], regimes, checkpoints)
    folder, comparisons, scored, summary = _report(results, tmp_path)

    assert scored["regime"].tolist() == list(regimes)
    assert scored[["test_acc", "test_top5", "test_loss"]].isna().all(axis=None)
    assert scored["test_images"].eq(0).all()
    assert len(pd.read_parquet(folder / "predictions.parquet")) == 0
    assert not (folder / "gradcam").exists() and (folder / "best").is_dir()
    pairs = _pairs(regimes)
    assert len(comparisons) == 2 * len(pairs)
    assert {tuple(sorted(p)) for p in comparisons[["regime_a", "regime_b"]].to_numpy()} == pairs
    _assert_uncompared(
        comparisons,
        folder / "comparisons.parquet",
        {"test_acc": "no test images", "energy_ratio": "no Grad-CAM was drawn (no test images)"},
    )
    section = _comparison_section(summary)
    if len(regimes) == 1:
        assert "Only one regime (frozen) was scored: nothing to compare." in section
    else:
        assert "The test split has no labelled image: no test outcomes to compare." in section
        bullets = [line for line in section.splitlines() if line.startswith("- ")]
        assert len(bullets) == len(pairs)
        assert all(b.endswith("(test accuracy): not compared, no test images.") for b in bullets)
    assert "No Grad-CAM: the test split has no images." in summary


@pytest.mark.parametrize("regimes", REGIME_SETS, ids=len)
def test_the_report_of_a_set_with_unlabelled_test_images(
    sets: dict[str, Path],
    regime_checkpoints: dict[tuple[str, str], str],
    regimes: tuple[str, ...],
    tmp_path: Path,
) -> None:
    checkpoints = {r: regime_checkpoints["unlabelled_test", r] for r in regimes}
    results = _sweep_results(sets["unlabelled_test"], regimes, checkpoints)
    folder, comparisons, scored, summary = _report(results, tmp_path)

    assert scored[["test_acc", "test_top5", "test_loss"]].isna().all(axis=None)
    predictions = pd.read_parquet(folder / "predictions.parquet")
    assert len(predictions) == 4 * len(regimes) and predictions["correct"].isna().all()
    # Grad-CAM needs no label: every model is drawn and measured on the same images.
    gradcam = pd.read_parquet(folder / "gradcam" / "gradcam.parquet")
    assert gradcam.groupby("regime")["test_index"].apply(tuple).nunique() == 1
    assert set(gradcam["regime"]) == {*regimes, RANDOM_INIT}
    assert gradcam.groupby("regime")["drawn"].sum().eq(DRAWN).all()
    pairs = _pairs(regimes)
    accuracy = comparisons[comparisons["measure"] == "test_acc"]
    assert len(accuracy) == len(pairs)
    assert accuracy["not_compared"].eq("no test image has a known label").all()
    assert accuracy[["difference", "p_value", "only_a", "only_b"]].isna().all(axis=None)
    # The CAM ratios are compared on the images drawn, where both models have one (a
    # random network's CAM can be all zero: no ratio, and the row says so).
    # Each pair of regimes, and each regime against the untrained baseline.
    ratios = comparisons[comparisons["measure"] == "energy_ratio"]
    assert len(ratios) == len(pairs) + len(regimes)
    compared = ratios["not_compared"].isna()
    assert compared.sum() >= min(1, len(pairs))
    assert ratios.loc[compared, "images"].eq(4).all()
    assert ratios.loc[compared, "p_value"].notna().all()
    assert ratios.loc[~compared, "not_compared"].str.startswith("no image has an energy-in").all()
    assert ratios.loc[~compared, ["difference", "p_value"]].isna().all(axis=None)
    section = _comparison_section(summary)
    if len(regimes) > 1:
        assert "The test split's labels are unknown" in section
        bullets = [line for line in section.splitlines() if line.startswith("- ")]
        assert len(bullets) == len(pairs)
        assert all(b.endswith("not compared, no test image has a known label.") for b in bullets)
        grad_cam = summary.split("## Grad-CAM\n", 1)[1]
        against_random = grad_cam.split("Energy-in-box ratios of the regimes compared", 1)
        assert against_random[0].count(f"with `{RANDOM_INIT}`") + against_random[0].count(
            "untrained network's"
        ) == len(regimes)
        between = against_random[1].split("\n\n")[1]
        assert between.count("(Grad-CAM energy-in-box ratio)") + between.count(
            "has a higher ratio than"
        ) == len(pairs)


@pytest.mark.parametrize("regimes", REGIME_SETS, ids=len)
def test_the_report_of_a_set_without_val_images(
    sets: dict[str, Path], regimes: tuple[str, ...], tmp_path: Path
) -> None:
    results = _sweep_results(sets["no_val"], regimes, {})
    folder, comparisons, scored, summary = _report(results, tmp_path)

    assert scored.empty and not (folder / "best").exists()
    pairs = _pairs(regimes)
    assert len(comparisons) == 2 * len(pairs)
    if pairs:
        # Each pair names the first of its regimes that has no model.
        reasons = [
            f"{regime} has no scored model (no val images to choose its best trial)"
            for regime in comparisons["regime_a"]
        ]
        assert comparisons["not_compared"].tolist() == reasons
        _assert_uncompared(comparisons, folder / "comparisons.parquet", {})
        assert comparisons[["model_a", "model_b"]].isna().all(axis=None)
        section = _comparison_section(summary)
        assert "No pair of regimes could be compared:" in section
        assert section.count("not compared, ") == len(pairs)
    else:
        assert "No regime was scored: nothing to compare." in summary
    assert "No trial has a validation score (the val split is empty)" in summary


def test_the_report_of_a_sweep_where_one_regime_has_no_checkpoint(
    sets: dict[str, Path], regime_checkpoints: dict[tuple[str, str], str], tmp_path: Path
) -> None:
    # finetune errored before its first checkpoint; the set's boxes are all unknown.
    regimes = ("scratch", "frozen", "finetune")
    checkpoints = {r: regime_checkpoints["resized", r] for r in regimes[:2]}
    results = _sweep_results(sets["resized"], regimes, checkpoints)
    _, comparisons, scored, summary = _report(results, tmp_path)

    assert scored["regime"].tolist() == ["scratch", "frozen"]
    assert scored["test_images"].eq(4).all() and scored["test_acc"].notna().all()
    accuracy = comparisons[comparisons["measure"] == "test_acc"].set_index(["regime_a", "regime_b"])
    compared = accuracy[accuracy["not_compared"].isna()]
    assert len(compared) == 1 and compared["images"].tolist() == [4]
    assert compared[["difference", "p_value", "only_a", "only_b"]].notna().all(axis=None)
    missing = accuracy[accuracy["not_compared"].notna()]
    assert len(missing) == 2
    assert (
        missing["not_compared"]
        .eq("finetune has no scored model (no trial with a checkpoint)")
        .all()
    )
    ratios = comparisons[comparisons["measure"] == "energy_ratio"]
    assert len(ratios) == 3 + 3 and ratios["p_value"].isna().all()  # and against the baseline
    assert "no image has an energy-in-box ratio for both" in " ".join(ratios["not_compared"])
    section = _comparison_section(summary)
    assert "McNemar's exact test" in section
    assert section.count("not compared, finetune has no scored model") == 2
    assert "- regime finetune has no trial with a checkpoint: not scored" in summary
