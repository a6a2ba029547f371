"""ASHA early stopping within each regime.

One ASHA over all trials would compare a ``scratch`` trial at epoch 2 with a
``finetune`` trial at epoch 2 and stop every ``scratch`` trial, so the study
would report a from-scratch network that never got to train. Here each regime
has its own ASHA: a trial is stopped only when it is hopeless *among its own
regime's trials*, and every regime's best trial runs to the end.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler


def trial_regime(config: dict[str, Any]) -> str:
    """The regime a trial's config belongs to."""
    return str(config["regime"])


class RegimeASHAScheduler(FIFOScheduler):
    """Asynchronous successive halving, run separately for each regime.

    Args:
        time_attr: the progress measure; ``epoch`` (reported by the trainer)
            rather than Tune's ``training_iteration``, which restarts at 1 when a
            sweep is restored while Train resumes mid-run.
        max_t: the number of epochs a trial runs at most.
        grace_period: epochs every trial runs before it can be stopped.
        reduction_factor: the halving rate.
    """

    def __init__(
        self,
        *,
        time_attr: str = "epoch",
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__()
        self._options = {
            "time_attr": time_attr,
            "max_t": max_t,
            "grace_period": min(grace_period, max_t),
            "reduction_factor": reduction_factor,
        }
        self._metric = metric
        self._mode = mode
        self._by_regime: dict[str, AsyncHyperBandScheduler] = {}
        self._regime_of: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take the metric and mode from ``TuneConfig`` unless given here.

        Given here, they stay: the sweep ranks trials by their best epoch so far,
        while ASHA's rungs compare each trial's current epoch.
        """
        if self._metric is None:
            self._metric, self._mode = metric, mode
        return True

    def _scheduler_for(self, trial: Trial) -> AsyncHyperBandScheduler:
        regime = self._regime_of.get(trial.trial_id) or trial_regime(trial.config)
        self._regime_of[trial.trial_id] = regime
        if regime not in self._by_regime:
            self._by_regime[regime] = AsyncHyperBandScheduler(
                metric=self._metric, mode=self._mode, **self._options
            )
        return self._by_regime[regime]

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._scheduler_for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self._scheduler_for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        scheduler = self._scheduler_for(trial)
        if trial.trial_id in scheduler._trial_info:
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        scheduler = self._scheduler_for(trial)
        if trial.trial_id in scheduler._trial_info:
            scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        lines = ["ASHA per regime:"]
        for regime, scheduler in sorted(self._by_regime.items()):
            lines.append(f"[{regime}] {scheduler.debug_string()}")
        return "\n".join(lines)
