"""Ray's state API asked about the cluster this process is connected to; waits on state.

Without an address the state API reads the cluster ``ray start`` last recorded on
this machine (``/tmp/ray/ray_current_cluster``), which may be another instance
(a test's ``Cluster``, a job's head) or one that is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ray


def connected_cluster() -> str:
    """The GCS address of the cluster this process joined, for the state API's ``address``."""
    return ray.get_runtime_context().gcs_address


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail loudly, naming ``what``, after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
