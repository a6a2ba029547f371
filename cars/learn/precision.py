"""The numeric precision a model runs in: bf16 autocast on GPUs, full precision on CPUs.

One place decides it, so that training, precise BN, evaluation, cached features
and prediction all run a model in the precision its checkpoints and feature
caches were made in (a feature cache's key names the precision).
"""

from __future__ import annotations

import contextlib

import torch


def amp_dtype_for(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``device``: bf16 on CUDA, ``None`` (fp32) elsewhere.

    bf16 keeps fp32's exponent range, so it needs no loss scaling; on a CPU,
    autocast to bf16 is slower than fp32 on most processors.
    """
    return torch.bfloat16 if torch.device(device).type == "cuda" else None


def autocast(
    device: torch.device | str, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``amp_dtype`` on ``device``'s type, or nothing when it is ``None``.

    Only bf16 is accepted: float16 would need a ``GradScaler`` against gradient
    underflow, which the engine does not run.
    """
    if amp_dtype is None:
        return contextlib.nullcontext()
    if amp_dtype != torch.bfloat16:
        raise ValueError(
            f"amp_dtype={amp_dtype} is not supported: use torch.bfloat16 (float16 would need "
            "loss scaling) or None for full precision"
        )
    return torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype)
