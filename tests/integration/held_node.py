"""Test-only: a node whose training workers stop before an epoch, until the node is lost.

A test that loses a node mid-run must lose it while the run is there: a small run
may otherwise finish all its epochs between the checkpoint the test waits for and
the node's removal. The hook :func:`hold_on_node` returns runs in every worker
process of the test's job (Ray's ``worker_process_setup_hook``); in processes on
the named node, the training loop waits before epoch ``epoch`` until the process
dies with its node. Everywhere else, and before that epoch, it trains as it is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import ray.cloudpickle
from simulated_gpus import after_import

# How long a held process waits for its node to be lost before it fails the run.
HOLD_LIMIT_S = 300


def hold_on_node(node_id: str, epoch: int) -> Callable[[], None]:
    """The hook that holds the training of node ``node_id``'s workers before ``epoch``."""

    def install() -> None:
        if ray.get_runtime_context().get_node_id() == node_id:
            after_import("cars.cluster.worker", lambda loop: _hold_before(loop, epoch))

    return install


def _hold_before(loop: ModuleType, held: int) -> None:
    run_epoch = loop._run_epoch

    def held_run_epoch(run: Any, epoch: int) -> dict[str, Any]:
        if epoch >= held:
            time.sleep(HOLD_LIMIT_S)
            raise RuntimeError(
                f"epoch {epoch} was held {HOLD_LIMIT_S} s on a node the test never removed"
            )
        return run_epoch(run, epoch)

    loop._run_epoch = held_run_epoch


# The workers cannot import this module (the tests folder is not a package on
# their path), so the hook travels to them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
