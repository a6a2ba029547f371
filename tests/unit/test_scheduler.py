"""ASHA runs inside each regime: a slow regime is never stopped by a fast one."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from cars.cluster.scheduler import RegimeASHAScheduler


def _trial(trial_id: str, regime: str) -> Trial:
    return Trial("train_driver_fn", config={"regime": regime}, trial_id=trial_id, stub=True)


def _scheduler() -> RegimeASHAScheduler:
    scheduler = RegimeASHAScheduler(max_t=4, grace_period=1, reduction_factor=2)
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def test_a_poor_regime_is_not_stopped_by_a_better_one() -> None:
    scheduler = _scheduler()
    fast = [_trial(f"f{i}", "finetune") for i in range(3)]
    slow = _trial("s0", "scratch")
    for trial in [*fast, slow]:
        scheduler.on_trial_add(None, trial)
    for i, trial in enumerate(fast):
        scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": 0.8 + i / 100})
    decision = scheduler.on_trial_result(None, slow, {"epoch": 1, "val_acc": 0.05})
    assert decision == TrialScheduler.CONTINUE


def test_a_hopeless_trial_is_stopped_within_its_regime() -> None:
    scheduler = _scheduler()
    trials = [_trial(f"t{i}", "finetune") for i in range(4)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    for i, trial in enumerate(trials[:3]):
        assert scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": 0.5 + i / 10}) == (
            TrialScheduler.CONTINUE
        )
    assert scheduler.on_trial_result(None, trials[3], {"epoch": 1, "val_acc": 0.1}) == (
        TrialScheduler.STOP
    )


def test_trials_stop_at_the_last_epoch_and_complete_cleanly() -> None:
    scheduler = _scheduler()
    trial = _trial("t0", "frozen")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, {"epoch": 4, "val_acc": 0.5}) == (
        TrialScheduler.STOP
    )
    scheduler.on_trial_complete(None, trial, {"epoch": 4, "val_acc": 0.5})
    scheduler.on_trial_remove(None, trial)
    assert "frozen" in scheduler.debug_string()
