"""The jobs' command lines: what a user types becomes the typed job they meant, or exit 2.

Paths resolve against the project root (jobs under ``ray job submit`` start in
whatever directory the head was started from), URIs stay as they are, presets
give defaults that options override, and a bad value names its field on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cars.cli import (
    create_train_parser,
    exit_on_user_error,
    parse_predict_args,
    parse_report_args,
    parse_sweep_args,
    parse_train_args,
)
from cars.config import REGIMES, TrainConfig
from cars.data import DataError
from cars.paths import FEATURES_DIR, PROJECT_ROOT, REPORTS_DIR, RUNS_DIR
from cars.prediction.config import PredictConfig
from cars.sweep_config import PRESETS, create_sweep_config


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test from a directory that is not the project root."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _exit_status(
    capsys: pytest.CaptureFixture[str], parse: Callable[[Sequence[str]], Any], argv: list[str]
) -> tuple[int | str | None, str]:
    """Parse as a job does (inside ``exit_on_user_error``); the exit status and stderr."""
    with pytest.raises(SystemExit) as exited, exit_on_user_error():
        parse(argv)
    return exited.value.code, capsys.readouterr().err


# --- paths ---------------------------------------------------------------------------


def test_train_paths_resolve_against_the_project_not_the_cwd(elsewhere: Path) -> None:
    job = parse_train_args(["--data", "data/cars", "--storage", "my-runs"])
    assert job.config.data == str(PROJECT_ROOT / "data" / "cars")
    assert job.storage == str(PROJECT_ROOT / "my-runs")
    assert not job.config.data.startswith(str(elsewhere))


def test_train_defaults_store_under_the_projects_runs_folder() -> None:
    job = parse_train_args(["--data", "/abs/set"])
    assert job.config.data == "/abs/set"
    assert job.storage == str(RUNS_DIR)
    assert job.name.startswith("train-finetune-")


def test_uris_are_kept_as_given() -> None:
    train = parse_train_args(["--data", "s3://bucket/cars/data", "--storage", "s3://bucket/runs"])
    assert train.config.data == "s3://bucket/cars/data"
    assert train.storage == "s3://bucket/runs"
    sweep = parse_sweep_args(["--data", "s3://b/data", "--storage", "s3://b/runs", "--name", "n"])
    assert sweep.storage == "s3://b/runs"
    assert sweep.sweep is not None
    assert sweep.sweep.data == "s3://b/data"
    assert sweep.sweep.storage == "s3://b/runs"
    report = parse_report_args(["--sweep", "s3://b/runs/n", "--reports", "file:///srv/reports"])
    assert report.sweep == "s3://b/runs/n"
    assert report.reports == "file:///srv/reports"


def test_sweep_and_report_paths_resolve_against_the_project(elsewhere: Path) -> None:
    sweep = parse_sweep_args(["--data", "data/x", "--storage", "runs2", "--reports", "rep"])
    assert sweep.storage == str(PROJECT_ROOT / "runs2")
    assert sweep.reports == str(PROJECT_ROOT / "rep")
    assert sweep.sweep is not None
    assert sweep.sweep.data == str(PROJECT_ROOT / "data" / "x")
    report = parse_report_args(["--sweep", "runs/demo-1"])
    assert report.sweep == str(PROJECT_ROOT / "runs" / "demo-1")
    assert report.reports == str(REPORTS_DIR)
    assert report.gradcam_images is None
    assert str(elsewhere) not in sweep.storage + sweep.reports + report.sweep


def test_report_takes_its_gradcam_image_counts() -> None:
    assert parse_report_args(["--sweep", "/s", "--gradcam-images", "3"]).gradcam_images == 3
    job = parse_report_args(["--sweep", "/s", "--gradcam-measured", "30"])
    assert (job.gradcam_images, job.gradcam_measured) == (None, 30)


# --- weights -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("none", None), ("None", None)])
def test_train_weights_none_means_random_init(value: str, expected: str | None) -> None:
    job = parse_train_args(["--data", "/d", "--weights", value])
    assert job.config.weights is expected
    assert not job.config.pretrained


def test_train_weights_imagenet_and_paths(elsewhere: Path) -> None:
    assert parse_train_args(["--data", "/d", "--weights", "ImageNet"]).config.weights == "imagenet"
    job = parse_train_args(["--data", "/d", "--weights", "reports/demo/best"])
    assert job.config.weights == str(PROJECT_ROOT / "reports" / "demo" / "best")
    absolute = parse_train_args(["--data", "/d", "--weights", "/w/source.pth"])
    assert absolute.config.weights == "/w/source.pth"


def test_sweep_weights_override_the_preset() -> None:
    full = parse_sweep_args(["--preset", "full", "--data", "/d", "--name", "f"])
    assert full.sweep is not None
    assert full.sweep.weights == "imagenet"
    local = parse_sweep_args(["--preset", "full", "--data", "/d", "--weights", "w/x.pth"])
    assert local.sweep is not None
    assert local.sweep.weights == str(PROJECT_ROOT / "w" / "x.pth")


def test_sweep_weights_none_is_not_silently_replaced_by_the_presets_imagenet() -> None:
    job = parse_sweep_args(["--preset", "full", "--data", "/d", "--weights", "none"])
    assert job.sweep is not None
    assert job.sweep.weights is None


# --- presets and overrides -----------------------------------------------------------


@pytest.mark.parametrize("preset", ["smoke", "demo"])
def test_sweep_presets_give_their_defaults(preset: str) -> None:
    job = parse_sweep_args(["--preset", preset, "--name", "p"])
    assert not job.resume
    assert job.report
    assert job.name == "p"
    sweep = job.sweep
    assert sweep is not None
    values = PRESETS[preset]
    assert sweep.preset == preset
    assert sweep.data is None  # the demo generates its own data
    assert sweep.epochs == values["epochs"]
    assert sweep.image_size == values["image_size"]
    assert sweep.num_samples == values["num_samples"]
    assert sweep.finetune_blocks == tuple(values["finetune_blocks"])
    assert sweep.lr_ranges == values["lr_ranges"]
    assert sweep.regimes == REGIMES


@pytest.mark.parametrize(("preset", "seeds"), [("smoke", 0), ("demo", 0), ("full", 3)])
def test_confirm_defaults_to_the_presets_and_the_option_overrides_it(
    preset: str, seeds: int
) -> None:
    data = ["--data", "/data/cars"] if preset == "full" else []
    job = parse_sweep_args(["--preset", preset, *data])
    assert job.sweep is not None and job.sweep.confirm == seeds
    job = parse_sweep_args(["--preset", preset, *data, "--confirm", "2"])
    assert job.sweep is not None and job.sweep.confirm == 2
    job = parse_sweep_args(["--preset", preset, *data, "--confirm", "0"])
    assert job.sweep is not None and job.sweep.confirm == 0


def test_sweep_default_preset_is_demo_with_a_timestamped_name() -> None:
    job = parse_sweep_args([])
    assert job.sweep is not None
    assert job.sweep.preset == "demo"
    assert job.name is not None
    assert job.name.startswith("demo-")
    assert job.sweep.name == job.name
    assert job.storage == str(RUNS_DIR)
    assert job.reports == str(REPORTS_DIR)


def test_sweep_options_override_the_preset() -> None:
    job = parse_sweep_args(
        [
            "--preset",
            "smoke",
            "--regimes",
            "frozen",
            "finetune",
            "--num-samples",
            "3",
            "--finetune-blocks",
            "2",
            "8",
            "--augments",
            "strong",
            "--epochs",
            "5",
            "--batch-size",
            "8",
            "--image-size",
            "96",
            "--bbox-crop",
            "--grace-period",
            "2",
            "--seed",
            "7",
            "--cpu",
            "--num-workers",
            "1",
            "--gradcam-images",
            "2",
            "--gradcam-measured",
            "20",
            "--precise-bn-samples",
            "64",
            "--no-report",
        ]
    )
    sweep = job.sweep
    assert sweep is not None
    assert not job.report
    assert sweep.regimes == ("frozen", "finetune")
    assert sweep.num_samples == 3
    assert sweep.num_trials == 6
    assert sweep.finetune_blocks == (2, 8)
    assert sweep.augments == ("strong",)
    assert (sweep.epochs, sweep.batch_size, sweep.image_size) == (5, 8, 96)
    assert sweep.bbox_crop
    assert (sweep.grace_period, sweep.seed, sweep.gradcam_images) == (2, 7, 2)
    assert sweep.gradcam_measured == 20
    assert sweep.use_gpu is False
    assert sweep.num_workers == 1
    assert sweep.precise_bn_samples == 64
    assert sweep.create_train_config("/d", "frozen", 1e-3, "none").precise_bn_samples == 64


def test_bbox_crop_follows_the_preset_unless_told() -> None:
    def crop(*argv: str) -> bool:
        sweep = parse_sweep_args(list(argv)).sweep
        assert sweep is not None
        return sweep.bbox_crop

    assert crop("--preset", "demo") and not crop("--preset", "demo", "--no-bbox-crop")
    assert not crop("--preset", "full", "--data", "/d")
    assert crop("--preset", "full", "--data", "/d", "--bbox-crop")


def test_full_preset_trains_on_gpus_unless_told_cpu() -> None:
    gpu = parse_sweep_args(["--preset", "full", "--data", "/d"])
    cpu = parse_sweep_args(["--preset", "full", "--data", "/d", "--cpu"])
    assert gpu.sweep is not None
    assert cpu.sweep is not None
    assert gpu.sweep.use_gpu
    assert not cpu.sweep.use_gpu


def test_lr_range_is_repeatable_and_keeps_other_regimes_preset_range() -> None:
    job = parse_sweep_args(
        [
            "--preset",
            "demo",
            "--lr-range",
            "frozen",
            "1e-3",
            "2e-3",
            "--lr-range",
            "scratch",
            "5e-4",
            "6e-4",
        ]
    )
    assert job.sweep is not None
    ranges = job.sweep.lr_ranges
    assert ranges["frozen"] == (1e-3, 2e-3)
    assert ranges["scratch"] == (5e-4, 6e-4)
    assert ranges["finetune"] == PRESETS["demo"]["lr_ranges"]["finetune"]
    # the preset itself is not changed for later sweeps
    assert PRESETS["demo"]["lr_ranges"]["frozen"] != (1e-3, 2e-3)


def test_resume_builds_no_sweep_and_needs_no_data() -> None:
    job = parse_sweep_args(["--resume", "--name", "demo-1", "--preset", "full"])
    assert job.resume
    assert job.sweep is None
    assert job.name == "demo-1"
    newest = parse_sweep_args(["--resume"])
    assert newest.resume
    assert newest.name is None
    assert newest.sweep is None


def test_train_options_reach_the_config() -> None:
    job = parse_train_args(
        [
            "--data",
            "/d",
            "--regime",
            "finetune",
            "--trainable-blocks",
            "4",
            "--lr",
            "0.01",
            "--augment",
            "strong",
            "--epochs",
            "3",
            "--image-size",
            "64",
            "--name",
            "mine",
            "--gpu",
            "--num-workers",
            "2",
            "--batch-size",
            "8",
            "--precise-bn-samples",
            "256",
        ]
    )
    config = job.config
    assert job.name == "mine"
    assert config.precise_bn_samples == 256
    assert config.trainable_blocks == 4
    assert config.lr == 0.01
    assert config.augment == "strong"
    assert (config.epochs, config.image_size) == (3, 64)
    assert config.use_gpu
    assert config.num_workers == 2
    assert config.batch_size_per_worker == 4


def test_the_feature_cache_is_on_by_default_and_the_flag_turns_it_off() -> None:
    train = parse_train_args(["--data", "/d", "--storage", "s3://b/runs"])
    assert train.config.feature_cache
    # Single runs of one storage share their caches, keyed by what the features depend on.
    assert train.config.feature_store == "s3://b/runs/features"
    assert not parse_train_args(["--data", "/d", "--no-feature-cache"]).config.feature_cache

    sweep = parse_sweep_args(["--preset", "smoke", "--name", "n"]).sweep
    assert sweep is not None
    assert sweep.feature_cache
    assert sweep.create_train_config("/d", "frozen", 1e-3, "none").feature_cache
    off = parse_sweep_args(["--preset", "smoke", "--name", "n", "--no-feature-cache"]).sweep
    assert off is not None
    assert not off.create_train_config("/d", "frozen", 1e-3, "none").feature_cache


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--data", "/d", "--regime", "linear"], "--regime"),
        (["--data", "/d", "--augment", "heavy"], "--augment"),
        (["--data", "/d", "--epochs", "two"], "--epochs"),
        (["--regime", "frozen"], "--data"),
        (["--data", "/d", "--gpu", "--cpu"], "--cpu"),
    ],
)
def test_train_argparse_errors_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    status, err = _exit_status(capsys, parse_train_args, argv)
    assert status == 2
    assert field in err


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--data", "/d", "--lr", "0"], "lr="),
        (["--data", "/d", "--trainable-blocks", "15"], "trainable_blocks="),
        (["--data", "/d", "--regime", "scratch", "--weights", "imagenet"], "weights="),
        (["--data", "/d", "--batch-size", "1", "--num-workers", "2"], "batch_size="),
        (["--data", "/d", "--image-size", "16"], "image_size="),
        (["--data", "/d", "--loader-workers", "-1"], "loader_workers="),
        (["--data", "/d", "--precise-bn-samples", "-1"], "precise_bn_samples="),
    ],
)
def test_train_config_errors_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    status, err = _exit_status(capsys, parse_train_args, argv)
    assert status == 2
    assert err.startswith(f"error: {field}")
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--num-workers", "--cpus-per-worker"])
def test_train_zero_workers_or_cpus_is_an_error(
    capsys: pytest.CaptureFixture[str], option: str
) -> None:
    status, err = _exit_status(capsys, parse_train_args, ["--data", "/d", option, "0"])
    assert status == 2
    assert option.removeprefix("--").replace("-", "_") in err


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--epochs", "0"], "epochs="),
        (["--num-samples", "0"], "num_samples="),
        (["--finetune-blocks", "0"], "finetune_blocks="),
        (["--lr-range", "frozen", "1e-2", "1e-3"], "lr_ranges['frozen']="),
        (["--num-workers", "0"], "num_workers="),
        (["--name", "a/b"], "name="),
        (["--confirm", "-1"], "confirm="),
    ],
)
def test_sweep_config_errors_exit_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    status, err = _exit_status(capsys, parse_sweep_args, ["--preset", "smoke", *argv])
    assert status == 2
    assert err.startswith(f"error: {field}")


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--preset", "huge"], "--preset"),
        (["--regimes", "linear"], "--regimes"),
        (["--lr-range", "linear", "1e-3", "1e-2"], "--lr-range"),
        (["--lr-range", "frozen", "1e-3"], "--lr-range"),
    ],
)
def test_sweep_argparse_errors_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    status, err = _exit_status(capsys, parse_sweep_args, argv)
    assert status == 2
    assert field in err


def test_sweep_lr_range_that_is_not_a_number_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _exit_status(capsys, parse_sweep_args, ["--lr-range", "frozen", "abc", "1e-2"])
    assert status == 2
    assert "--lr-range" in err


def test_full_preset_without_data_tells_to_pass_data(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _exit_status(capsys, parse_sweep_args, ["--preset", "full"])
    assert status == 2
    assert err.startswith("error: ")
    assert "pass --data" in err
    assert "jobs/prepare.py" in err
    assert len(err.strip().splitlines()) == 1


def test_report_without_sweep_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _exit_status(capsys, parse_report_args, [])
    assert status == 2
    assert "--sweep" in err


def test_exit_on_user_error_prints_one_line_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited, exit_on_user_error():
        raise DataError("prepared data set /nowhere does not exist")
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: prepared data set /nowhere does not exist\n"


def test_exit_on_user_error_lets_programming_errors_through() -> None:
    with pytest.raises(KeyError), exit_on_user_error():
        raise KeyError("a bug, not a user error")


def test_exit_on_user_error_is_silent_without_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with exit_on_user_error():
        job = parse_report_args(["--sweep", "/s"])
    assert job.sweep == "/s"
    assert capsys.readouterr().err == ""


# --- defaults: the config dataclasses hold them, the command lines take them ----------


def test_train_defaults_are_the_configs() -> None:
    # The feature store is not a default: it lies in the run's --storage.
    store = str(RUNS_DIR / FEATURES_DIR)
    assert parse_train_args(["--data", "/d"]).config == TrainConfig(data="/d", feature_store=store)


def test_every_train_option_named_after_a_field_reaches_it() -> None:
    parser = create_train_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings}
    fields = set(TrainConfig(data="/d").to_dict())
    for dest in sorted(set(options) & fields - {"data", "weights", "use_gpu"}):
        action = options[dest]
        default = getattr(TrainConfig(data="/d"), dest)
        if action.nargs == 0:  # a switch: it turns its field's default around
            argv = [action.option_strings[0]]
            expected: Any = not default
        elif action.choices:
            expected = next(c for c in action.choices if c != default)
            argv = [action.option_strings[0], str(expected)]
        else:  # another valid value: half a float, two more than an integer
            expected = (default / 2 or 0.5) if isinstance(default, float) else (default or 0) + 2
            argv = [action.option_strings[0], str(expected)]
        config = parse_train_args(["--data", "/d", "--regime", "finetune", *argv]).config
        assert getattr(config, dest) == expected, dest


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sweep_defaults_are_the_presets_then_the_configs(preset: str) -> None:
    job = parse_sweep_args(["--preset", preset, "--data", "/d", "--name", "n"])
    assert job.sweep == create_sweep_config(preset, "n", data="/d", storage=str(RUNS_DIR))
    # One default for restarts after a failure, whichever way a run starts.
    assert job.sweep.max_failures == TrainConfig(data="/d").max_failures
    trial = job.sweep.create_train_config("/d", "frozen", 1e-3, "none")
    assert trial.max_failures == parse_train_args(["--data", "/d"]).config.max_failures


def test_predict_defaults_are_the_configs() -> None:
    config = parse_predict_args(["--model", "/m", "--images", "/i", "--out", "/o"])
    assert config == PredictConfig(model="/m", images="/i", out="/o")


def test_compiling_and_the_rates_batch_reach_trials_and_runs() -> None:
    sweep = parse_sweep_args(
        ["--preset", "full", "--data", "/d", "--compile", "--lr-batch-size", "32"]
    ).sweep
    assert sweep is not None and sweep.compile and sweep.lr_batch_size == 32
    trial = sweep.create_train_config("/d", "finetune", 1e-3, "basic")
    assert trial.compile and trial.lr_batch_size == 32
    preset = parse_sweep_args(["--preset", "full", "--data", "/d"]).sweep
    assert preset is not None and not preset.compile and preset.lr_batch_size == 64
    train = parse_train_args(["--data", "/d", "--compile", "--lr-batch-size", "16"]).config
    assert train.compile and train.lr_batch_size == 16
    assert parse_train_args(["--data", "/d"]).config.lr_batch_size is None
