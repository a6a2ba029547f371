"""``torch.compile`` of a model, with the eager model to fall back on when compiling fails.

``torch.compile`` compiles at the first call, not when it is asked: a machine
without a C compiler, an operator the backend cannot lower, or a Triton too old
for the GPU fails the first training step, hours into a sweep. A compiled run is
only a faster run, so :class:`CompiledModule` catches a failure of that first
call, says why once, and runs the same module eagerly from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


class CompiledModule(nn.Module):
    """``module`` run through ``torch.compile``, or eagerly once its compilation has failed.

    The wrapped module is ``.module``, as in DDP, so ``timm.utils.unwrap_model``,
    checkpoints and state dicts see the plain model. Only the first call falls
    back: a failure after a successful compilation (a recompilation for a new
    input shape, or a failure in the backward pass, which compiles at the first
    ``backward()``) is raised as it is. Out-of-memory errors are raised too: the
    eager model would run out of memory as well.

    Args:
        module: the model (possibly DDP-wrapped) to compile.
        backend: ``torch.compile``'s backend (``"inductor"``; ``"aot_eager"`` traces
            without generating kernels).
        mode: ``torch.compile``'s mode (``None``, ``"max-autotune"``, ...).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        backend: str | Callable[..., Any] = "inductor",
        mode: str | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        # Kept out of the registered submodules: it wraps ``module`` itself, whose
        # parameters and state dict entries must appear once, under ``module.``.
        self.__dict__["_compiled"] = torch.compile(module, backend=backend, mode=mode)
        self.compiled: bool | None = None  # unknown until the first call
        self.failure: str | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The compiled module's output; the eager module's once compiling has failed."""
        if self.compiled is False:
            return self.module(*args, **kwargs)
        if self.compiled:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # any failure of the compiler stack
            self.compiled = False
            self.failure = _describe(error)
            logger.warning("torch.compile failed (%s); training continues uncompiled", self.failure)
            return self.module(*args, **kwargs)
        self.compiled = True
        return out


def _describe(error: BaseException) -> str:
    """The error in one line: its type and its message's first two lines (dynamo puts the
    backend's own error on the second)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines[:2])}"[:300]


def compile_model(
    module: nn.Module, *, enabled: bool = True, backend: str | Callable[..., Any] = "inductor"
) -> nn.Module:
    """``module`` wrapped in a :class:`CompiledModule` when ``enabled``, else ``module`` itself.

    Compile after wrapping for DDP and after building the optimizer, so that the
    optimizer holds the plain parameters and DDP's hooks are traced.
    """
    return CompiledModule(module, backend=backend) if enabled else module
