"""Trial reservations fit the cluster, and concurrency follows from them."""

from __future__ import annotations

import dataclasses

import pytest

from cars.cluster.resources import ResourceError, plan_trial_resources

AUTOSCALER_WAIT = "trials wait for the autoscaler to add GPU nodes"


def test_two_workers_on_two_cpus_run_one_trial_at_a_time() -> None:
    plan = plan_trial_resources({"CPU": 2}, num_workers=2, cpus_per_worker=1, use_gpu=False)
    assert plan.num_workers * plan.cpus_per_worker <= 2
    assert plan.max_concurrent_trials == 1


def test_one_worker_trials_share_two_cpus() -> None:
    plan = plan_trial_resources({"CPU": 2}, num_workers=1, cpus_per_worker=1, use_gpu=False)
    assert plan.cpus_per_worker == 1
    assert plan.max_concurrent_trials == 2


def test_workers_shrink_to_fit_a_small_machine() -> None:
    plan = plan_trial_resources({"CPU": 2}, num_workers=3, cpus_per_worker=2, use_gpu=False)
    assert plan.cpus_per_worker == pytest.approx(0.66)
    assert plan.num_workers * plan.cpus_per_worker <= 2
    plan = plan_trial_resources({"CPU": 5}, num_workers=2, cpus_per_worker=4, use_gpu=False)
    assert plan.cpus_per_worker == 2


def test_gpu_trials_are_limited_by_gpus_and_cpus(caplog: pytest.LogCaptureFixture) -> None:
    cluster = {"CPU": 96, "GPU": 8}
    plan = plan_trial_resources(cluster, num_workers=2, cpus_per_worker=8, use_gpu=True)
    assert plan.max_concurrent_trials == 4 and AUTOSCALER_WAIT not in caplog.text
    plan = plan_trial_resources(cluster, num_workers=2, cpus_per_worker=32, use_gpu=True)
    assert plan.max_concurrent_trials == 1


def test_gpu_cluster_still_scaling_up_runs_one_trial_unless_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = plan_trial_resources({"CPU": 8}, num_workers=2, cpus_per_worker=8, use_gpu=True)
    assert AUTOSCALER_WAIT in caplog.text  # the user learns why nothing runs yet
    assert plan.max_concurrent_trials == 1
    plan = plan_trial_resources(
        {"CPU": 8}, num_workers=2, cpus_per_worker=8, use_gpu=True, max_concurrent_trials=4
    )
    assert plan.max_concurrent_trials == 4


def test_impossible_cpu_plans_fail_with_a_fix() -> None:
    with pytest.raises(ResourceError, match="lower --num-workers"):
        plan_trial_resources({"CPU": 0.5}, num_workers=200, cpus_per_worker=1, use_gpu=False)
    with pytest.raises(ResourceError, match="at least 1"):
        plan_trial_resources(
            {"CPU": 2}, num_workers=1, cpus_per_worker=1, use_gpu=False, max_concurrent_trials=0
        )


def test_cpu_reservations_are_whole_above_one() -> None:
    plan = plan_trial_resources({"CPU": 3}, num_workers=2, cpus_per_worker=1.5, use_gpu=False)
    assert plan.cpus_per_worker == 1


def test_one_worker_trials_train_in_their_own_process_which_holds_the_worker() -> None:
    plan = plan_trial_resources(
        {"CPU": 4, "GPU": 2}, num_workers=1, cpus_per_worker=2, use_gpu=True
    )
    assert plan.local_mode
    assert plan.trial_reservation() == {"CPU": 2, "GPU": 1}
    assert plan.max_concurrent_trials == 2
    cpu_plan = plan_trial_resources({"CPU": 2}, num_workers=1, cpus_per_worker=1, use_gpu=False)
    assert cpu_plan.trial_reservation() == {"CPU": 1}


def test_worker_groups_leave_the_trial_a_driver_that_reserves_no_cpu() -> None:
    plan = plan_trial_resources({"CPU": 2}, num_workers=2, cpus_per_worker=1, use_gpu=False)
    assert not plan.local_mode
    assert plan.trial_reservation()["CPU"] == 0
    # A one-worker trial kept in a worker group (as benchmarks/bench_trial_overhead.py runs it).
    one = plan_trial_resources({"CPU": 2}, num_workers=1, cpus_per_worker=1, use_gpu=False)
    kept = dataclasses.replace(one, local_mode=False)
    assert not kept.local_mode and kept.trial_reservation()["CPU"] == 0
    with pytest.raises(ResourceError, match="one worker"):
        dataclasses.replace(plan, local_mode=True)
