"""The devices a test runs on: the CPU always, and CUDA where there is one.

CUDA tests carry the ``cuda`` marker, so that ``benchmarks/gpu_check.py`` runs
exactly them on a GPU machine (``pytest -m cuda``); here they are skipped, and
their CPU twins run.
"""

from __future__ import annotations

import pytest
import torch

NEEDS_CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
