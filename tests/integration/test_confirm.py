"""The smoke sweep with ``--confirm 2``: each regime's winner retrained with two fresh seeds,
and a report whose every test score and comparison carries its uncertainty.

One trial per regime: how a regime's best trial is chosen among several is tested on the
session's smoke sweep (test_sweep.py); here, what follows the choice.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from faults import TRAIN_SNAPSHOT_FILE
from ray.tune import ExperimentAnalysis

from cars.cli import parse_sweep_args
from cars.cluster.confirm import run_confirm
from cars.config import RANDOM_INIT
from cars.report.comparisons import describe_comparison
from cars.report.predictions import PREDICTION_COLUMNS
from cars.study import StudyOutcome, run_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(
    ray_cluster: None, prepared_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> StudyOutcome:
    root = tmp_path_factory.mktemp("confirm")
    job = parse_sweep_args(
        [
            "--preset", "smoke", "--data", str(prepared_set), "--weights", "none",
            "--regimes", "frozen", "finetune", "--num-samples", "1", "--num-workers", "1",
            "--confirm", "2",
            "--name", "confirmed", "--storage", str(root / "runs"),
            "--reports", str(root / "reports"),
        ]
    )  # fmt: skip
    return run_study(job)


@pytest.fixture(scope="module")
def report(study: StudyOutcome) -> Path:
    assert study.report_path is not None
    return Path(study.report_path)


def _confirm_trials(study: StudyOutcome) -> pd.DataFrame:
    analysis = ExperimentAnalysis(str(Path(study.sweep_path) / "confirm"))
    return pd.DataFrame(
        [{"trial_id": t.trial_id, "status": t.status, **t.config} for t in analysis.trials]
    )


def test_each_regimes_winner_is_retrained_with_two_fresh_seeds(
    study: StudyOutcome, report: Path
) -> None:
    confirm = _confirm_trials(study)
    trials = pd.read_parquet(report / "trials.parquet")
    regimes = pd.read_parquet(report / "regimes.parquet").set_index("regime")
    assert sorted(confirm["regime"]) == ["finetune", "finetune", "frozen", "frozen"]
    assert set(confirm["status"]) == {"TERMINATED"}
    for regime, best in regimes.iterrows():  # the job's printed summary names the same
        line = f"{regime:<9} best val_acc {best['best_val_acc']:.4f} (epoch {best['best_epoch']})"
        assert line in study.summary
    for regime, runs in confirm.groupby("regime"):
        best = regimes.loc[regime]
        assert set(runs["confirms"]) == {best["trial_id"]}
        assert runs["lr"].eq(best["lr"]).all()
        assert runs["augment"].eq(best["augment"]).all()
        if regime == "finetune":
            assert runs["trainable_blocks"].eq(best["trainable_blocks"]).all()
    seeds = set(confirm["seed"])
    assert len(seeds) == 2  # the same two seeds for each regime
    assert not seeds & set(trials["seed"])
    # Confirmation runs are measured, not searched: each runs every epoch.
    table = pd.read_parquet(report / "confirm.parquet")
    assert len(table) == 4 and table["checkpoint"].notna().all()
    assert table["epochs_run"].eq(2).all()


def test_regimes_carry_intervals_and_the_spread_across_seeds(report: Path) -> None:
    regimes = pd.read_parquet(report / "regimes.parquet")
    confirm = pd.read_parquet(report / "confirm.parquet")
    assert regimes["test_images"].eq(16).all()
    for name in ("test_acc", "test_top5"):
        assert (regimes[f"{name}_low"] <= regimes[name]).all()
        assert (regimes[name] <= regimes[f"{name}_high"]).all()
        assert (regimes[f"{name}_high"] - regimes[f"{name}_low"]).gt(0.05).all()  # 16 images
    for _, row in regimes.iterrows():
        runs = confirm[confirm["regime"] == row["regime"]]
        assert row["confirm_runs"] == 2
        assert row["confirm_val_acc_mean"] == pytest.approx(runs["best_val_acc"].mean())
        assert row["confirm_test_acc_mean"] == pytest.approx(runs["test_acc"].mean())
        assert row["confirm_test_acc_std"] == pytest.approx(runs["test_acc"].std(ddof=1))


def test_predictions_let_anyone_redo_the_comparison(report: Path) -> None:
    predictions = pd.read_parquet(report / "predictions.parquet")
    regimes = pd.read_parquet(report / "regimes.parquet")
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert predictions.groupby("model").size().eq(16).all()
    assert predictions.groupby("stage")["model"].nunique().to_dict() == {"sweep": 2, "confirm": 4}
    sweep = predictions[predictions["stage"] == "sweep"]
    accuracy = sweep.groupby("regime")["correct"].mean()
    for _, row in regimes.iterrows():
        assert accuracy[row["regime"]] == pytest.approx(row["test_acc"])

    comparisons = pd.read_parquet(report / "comparisons.parquet")
    # The two regimes on both measures, and each regime's CAMs against the untrained network's.
    assert sorted(comparisons["measure"]) == ["energy_ratio"] * 3 + ["test_acc"]
    row = comparisons[comparisons["measure"] == "test_acc"].iloc[0]
    wide = sweep.pivot(index="image", columns="regime", values="correct").astype(bool)
    a, b = wide[row["regime_a"]].to_numpy(), wide[row["regime_b"]].to_numpy()
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (row["only_a"], row["only_b"], row["images"]) == (only_a, only_b, 16)
    expected = scipy.stats.binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    assert row["p_value"] == pytest.approx(expected)
    assert row["difference"] == pytest.approx(a.mean() - b.mean())
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]


def test_summary_states_each_claim_with_its_uncertainty(report: Path) -> None:
    summary = (report / "summary.md").read_text()
    comparisons = pd.read_parquet(report / "comparisons.parquet")
    for _, row in comparisons.iterrows():
        sentence = describe_comparison(row)
        # A regime against the untrained network ends that regime's verdict line.
        against_random = RANDOM_INIT in (row["regime_a"], row["regime_b"])
        assert (sentence if against_random else f"- {sentence}") in summary
        detectable = not row["ci_low"] <= 0 <= row["ci_high"]
        assert ("no detectable difference" not in sentence) == detectable
    accuracy = comparisons[comparisons["measure"] == "test_acc"].iloc[0]
    assert re.search(
        r"(beats \w+ by \d+\.\d points|no detectable difference).*95 % CI .*McNemar p .* on "
        r"16 images\)?\.$",
        describe_comparison(accuracy),
    )
    assert "Wilson" in summary and "paired bootstrap" in summary
    assert re.search(r"\| \d+\.\d% \[\d+\.\d-\d+\.\d\] \|", summary)  # a test score's interval
    seeds = summary.split("## Repeated seeds\n", 1)[1].split("\n## ", 1)[0]
    for regime in ("frozen", "finetune"):
        line = next(x for x in seeds.splitlines() if x.startswith(f"| {regime} | 2 |"))
        assert line.count("±") == 2


def test_the_confirmation_is_recorded_so_resume_continues_it(study: StudyOutcome) -> None:
    before = _confirm_trials(study)
    checkpoints = sorted((Path(study.sweep_path) / "confirm").glob("train-*/epoch-*/*"))
    assert len(checkpoints) >= 2 * 4  # a checkpoint file and its history, per run at least
    # One trial path: confirmation runs of one worker train in the trial's own process,
    # as the sweep's do, never in a Ray Train worker group (which leaves its snapshot).
    runs = sorted(Path(study.sweep_path).glob("**/train-*"))
    assert len(runs) == 2 + 4
    assert not [r for r in runs if (r / TRAIN_SNAPSHOT_FILE).exists()]
    stamps = [p.stat().st_mtime for p in checkpoints]
    results = run_confirm(study.sweep_path)  # what --resume does after the sweep
    assert results is not None and len(results) == 4 and results.num_errors == 0
    after = _confirm_trials(study)
    assert sorted(after["trial_id"]) == sorted(before["trial_id"])
    assert [p.stat().st_mtime for p in checkpoints] == stamps  # nothing retrained
    seeds = [frame.sort_values("trial_id")["seed"].to_numpy() for frame in (before, after)]
    assert np.array_equal(*seeds)
