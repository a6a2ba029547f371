"""A real sweep of 4 trials x 2 workers on a 2-CPU Ray, and the report written from it.

Both are the session's (``smoke_sweep`` and ``smoke_report``), read by test_predict too."""

from __future__ import annotations

import io
import itertools
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from PIL import Image

from cars.cluster.resources import TrialResources
from cars.cluster.sweep import SweepOutcome, create_base_config, prepare_shared_features
from cars.cluster.trial import trial_train_config
from cars.cluster.worker import prepare_features
from cars.config import RANDOM_INIT
from cars.learn.checkpoint import load_checkpoint
from cars.learn.model import build_model
from cars.report import write_report
from cars.report.results import EPOCH_COLUMNS, TRIAL_COLUMNS, best_epoch, rank_trials
from cars.runs import SWEEP_CONFIG_FILE
from cars.sweep_config import create_sweep_config

pytestmark = pytest.mark.slow


@pytest.fixture
def sweep(smoke_sweep: SweepOutcome) -> tuple[str, ray.tune.ResultGrid]:
    """The session's smoke sweep (tests/integration/conftest.py): 4 trials x 2 workers."""
    return smoke_sweep.path, smoke_sweep.results


@pytest.fixture
def report(smoke_report: Path) -> Path:
    return smoke_report


def test_every_trial_runs_to_completion_without_leaking_resources(
    sweep: tuple[str, ray.tune.ResultGrid],
) -> None:
    path, results = sweep
    assert len(results) == 4
    assert results.num_errors == 0
    for result in results:
        frame = result.metrics_dataframe
        assert frame["world_size"].eq(2).all()
        assert 1 <= frame["epoch"].max() <= 2
    # Each trial's Train run lives beside Tune's state under a name from its trial id.
    for result in results:
        assert (
            Path(path) / f"train-{result.config and Path(result.path).name.split('_', 1)[1]}"
        ).exists()
    assert (Path(path) / SWEEP_CONFIG_FILE).exists()
    # Every worker group's placement group was released: the CPUs are free again.
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(2)


def test_a_local_instance_runs_no_preemption_watcher(
    sweep: tuple[str, ray.tune.ResultGrid],
) -> None:
    from ray.util.state import list_actors
    from state import connected_cluster

    actors = list_actors(address=connected_cluster(), limit=1000, raise_on_missing_output=False)
    classes = {actor.class_name for actor in actors}
    assert "TrainController" in classes  # the listing does see the sweep's Train runs
    assert "PreemptionWatcher" not in classes


def test_trials_never_overlap_when_one_fits(sweep: tuple[str, ray.tune.ResultGrid]) -> None:
    _, results = sweep
    spans = sorted(
        (last["timestamp"] - last["time_total_s"], last["timestamp"])
        for last in (r.metrics_dataframe.iloc[-1] for r in results)
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 2, "two 2-worker trials ran at once on 2 CPUs"


def test_each_regime_gets_its_own_trials_and_draws(sweep: tuple[str, ray.tune.ResultGrid]) -> None:
    _, results = sweep
    configs = [result.config for result in results]
    assert sorted(c["regime"] for c in configs) == ["finetune", "finetune", "frozen", "frozen"]
    for config in configs:
        low, high = {"frozen": (3e-3, 1e-2), "finetune": (1e-3, 3e-3)}[config["regime"]]
        assert low <= config["lr"] <= high
        if config["regime"] == "finetune":
            assert config["trainable_blocks"] in (1, 2)
        else:
            assert config["trainable_blocks"] is None
    assert len({c["seed"] for c in configs}) == 4


def test_frozen_trials_without_augmentation_train_on_features_in_the_sweep(
    sweep: tuple[str, ray.tune.ResultGrid],
) -> None:
    path, results = sweep
    on_features = [
        r for r in results if r.config["regime"] == "frozen" and r.config["augment"] == "none"
    ]
    assert on_features, "the sweep's seed should draw a frozen trial without augmentation"
    # Without pretrained weights each trial's backbone is its own: one cache per trial.
    manifests = sorted(Path(path, "features").glob("*/manifest.json"))
    assert len(manifests) == len(on_features)
    assert all(r.metrics["epoch"] == 2 and r.metrics["val_images"] == 12 for r in on_features)


def test_frozen_trials_started_side_by_side_read_the_features_one_task_computed(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "backbone.pth"
    torch.save(build_model("scratch", 4).state_dict(), weights)
    config = create_sweep_config(
        "smoke",
        "side-by-side",
        data=str(prepared_set),
        storage=str(tmp_path),
        weights=str(weights),
        regimes=("frozen", "finetune"),
        num_samples=2,
        image_size=32,
    )
    resources = TrialResources(
        num_workers=2, cpus_per_worker=1.0, use_gpu=False, max_concurrent_trials=2
    )
    prepare_shared_features(config, resources)

    (manifest,) = (tmp_path / "side-by-side" / "features").glob("*/manifest.json")
    # Any frozen trial without augmentation, whatever its seed and rate, finds them.
    draws = {"regime": "frozen", "augment": "none", "seed": 7, "lr": 5e-3, "trainable_blocks": None}
    trial = trial_train_config(draws, create_base_config(config, resources))
    line = prepare_features(trial.to_dict())
    assert line.startswith(f"feature cache {manifest.parent.name}: read features")
    # One trial at a time, the first frozen trial computes them itself: no task.
    alone = config.replace(name="alone")
    prepare_shared_features(alone, replace(resources, max_concurrent_trials=1))
    assert not (tmp_path / "alone").exists()
    # Nor with a single frozen trial, which computes them as it starts.
    single = config.replace(name="single", num_samples=1)
    prepare_shared_features(single, resources)
    assert not (tmp_path / "single").exists()


def test_report_has_every_file(report: Path) -> None:
    expected = [
        "summary.md",
        "trials.parquet",
        "epochs.parquet",
        "regimes.parquet",
        "curves.png",
        "gradcam/gradcam.parquet",
        "gradcam/regimes.png",
        "gradcam/measures.png",
        "best/model.safetensors",
        "best/config.json",
    ]
    for name in expected:
        assert (report / name).is_file(), name
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")], "staging left"


def test_report_tables_match_the_sweep(
    report: Path, sweep: tuple[str, ray.tune.ResultGrid]
) -> None:
    _, results = sweep
    trials = pd.read_parquet(report / "trials.parquet")
    assert list(trials.columns) == list(TRIAL_COLUMNS)
    assert len(trials) == 4
    assert set(trials["status"]) == {"finished"}
    assert trials["trainable_params"].gt(0).all()
    epochs = pd.read_parquet(report / "epochs.parquet")
    assert list(epochs.columns) == ["trial_id", "regime", *EPOCH_COLUMNS]
    assert len(epochs) == sum(len(r.metrics_dataframe) for r in results)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert (trials.set_index("trial_id")["epochs_run"] == epochs.groupby("trial_id").size()).all()
    # A trial ASHA stopped ran fewer epochs than the maximum, and says so.
    assert (trials["stopped_early"] == (trials["epochs_run"] < trials["max_epochs"])).all()

    regimes = pd.read_parquet(report / "regimes.parquet")
    assert list(regimes["regime"]) == ["frozen", "finetune"]
    assert regimes["best_overall"].sum() == 1
    assert regimes["test_images"].eq(16).all()
    assert regimes["test_acc"].between(0, 1).all()
    assert regimes["reference_best_val_acc"].notna().all()
    for _, row in regimes.iterrows():
        group = trials[trials["regime"] == row["regime"]]
        assert row["best_val_acc"] == group["best_val_acc"].max()
    # One "best": a trial's best epoch is the checkpoint scored, its loss is that epoch's,
    # the overall best ranks first, and Tune ranks trials the same way.
    for _, trial in trials.iterrows():
        curve = epochs[epochs["trial_id"] == trial["trial_id"]].reset_index(drop=True)
        chosen = best_epoch(curve)
        assert chosen is not None and int(chosen["epoch"]) == trial["best_epoch"]
        assert chosen["val_loss"] == trial["best_val_loss"]
        assert load_checkpoint(trial["checkpoint"])["epoch"] == trial["best_epoch"]
    best = regimes.loc[regimes["best_overall"], "trial_id"].iloc[0]
    assert best == rank_trials(trials)["trial_id"].iloc[0]
    assert results.get_best_result().metrics["trial_id"] == best

    cams = pd.read_parquet(report / "gradcam" / "gradcam.parquet")
    assert len(cams) == 3 * 4  # two regimes and the untrained baseline x the smoke's 4 images
    assert set(cams["trial_id"].dropna()) == set(regimes["trial_id"])
    assert cams.groupby("model")["test_index"].apply(tuple).nunique() == 1
    assert cams["box_area_share"].between(0, 1).all()
    baseline = cams[cams["baseline"]]
    assert len(baseline) == 4 and set(baseline["model"]) == {RANDOM_INIT}
    assert (
        baseline["trial_id"].isna().all()
        and not cams.loc[~cams["baseline"], "trial_id"].isna().any()
    )
    comparisons = pd.read_parquet(report / "comparisons.parquet")
    against = comparisons[(comparisons["measure"] == "energy_ratio")]
    against = against[(against["model_a"] == RANDOM_INIT) | (against["model_b"] == RANDOM_INIT)]
    assert len(against) == 2  # each regime against the untrained network


def test_summary_embeds_its_figures_and_every_one_exists(report: Path) -> None:
    text = (report / "summary.md").read_text()
    embedded = re.findall(r"^!\[[^\]]+\]\(([^)]+)\)$", text, flags=re.MULTILINE)
    assert embedded == ["curves.png", "gradcam/regimes.png", "gradcam/measures.png"]
    linked = re.findall(r"\]\((gradcam/[^)]+\.png)\)", text)
    assert f"gradcam/{RANDOM_INIT}.png" in linked
    for path in {*embedded, *linked}:
        assert (report / path).is_file(), path
    assert "than the untrained network's" in text or "untrained network's CAM is detectable" in text


def test_report_figures_are_real_images(report: Path) -> None:
    pngs = sorted(report.rglob("*.png"))
    assert len(pngs) >= 5  # curves, a grid per model, the comparison, the measures
    for png in pngs:
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32)
        assert image.width >= 400 and image.height >= 300, png
        assert pixels.std() > 10, f"{png} looks blank"


def test_best_weights_load_for_a_new_run(report: Path) -> None:
    regimes = pd.read_parquet(report / "regimes.parquet")
    best = regimes[regimes["best_overall"]].iloc[0]
    model = build_model("finetune", 4, 1, str(report / "best"))
    assert model.fc.out_features == 4
    assert best["checkpoint"]


def test_rerunning_the_report_writes_the_same_files(
    report: Path, sweep: tuple[str, ray.tune.ResultGrid]
) -> None:
    def read(folder: Path) -> dict[str, bytes]:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return {str(p.relative_to(folder)): p.read_bytes() for p in files}

    before = read(report)
    path, _ = sweep
    # As after a trial that held one CPU in this process: the threads a float sum is
    # split over round its last bits, and the report must not depend on them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        again = Path(write_report(path, str(report.parent)).path)
    finally:
        torch.set_num_threads(threads)
    assert again == report
    after = read(report)
    assert after.keys() == before.keys()
    for name, content in after.items():
        if not name.endswith(".png"):
            assert content == before[name], f"{name} changed"
            continue
        # Figures may differ by float rounding in a CAM's last bits, which can move
        # a handful of pixels to the next colour; nothing visible may change.
        old, new = (
            np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), float)
            for b in (before[name], content)
        )
        assert old.shape == new.shape, name
        changed = np.abs(old - new).max(axis=2) > 0
        assert changed.mean() < 1e-3, f"{name}: {changed.mean():.2%} of its pixels changed"
