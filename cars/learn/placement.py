"""Where a training process runs: its place among a run's processes, its device, how it feeds it.

One description travels from the Ray layer (a Ray Train worker, a trial's own
process, a Ray task) into the Ray-free core (the feature cache, the loaders),
instead of the same handful of keyword arguments passed along at every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import torch

from cars.learn.precision import amp_dtype_for

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Worker:
    """One training process of a run.

    Attributes:
        device: where its model and batches live.
        rank: its place among the run's ``world_size`` processes (rank 0 writes).
        world_size: how many processes train the run (data-parallel).
        loader_workers: DataLoader processes that decode its images.
        amp_dtype: its autocast precision; ``None`` trains in full precision.
    """

    device: torch.device = field(default=CPU)
    rank: int = 0
    world_size: int = 1
    loader_workers: int = 0
    amp_dtype: torch.dtype | None = None

    @classmethod
    def on(cls, device: torch.device | str, **fields: Any) -> Self:
        """A worker on ``device`` at the study's precision: bf16 autocast on a GPU, else full."""
        device = torch.device(device)
        fields.setdefault("amp_dtype", amp_dtype_for(device))
        return cls(device=device, **fields)

    @property
    def on_cuda(self) -> bool:
        """Whether it trains on a GPU."""
        return self.device.type == "cuda"

    @property
    def pin_memory(self) -> bool:
        """Whether its loaders pin host memory (only worth it for a GPU)."""
        return self.on_cuda

    def engine_options(self, *, channels_last: bool) -> dict[str, Any]:
        """The device and precision arguments of :mod:`cars.learn.engine`'s functions."""
        return {"device": self.device, "amp_dtype": self.amp_dtype, "channels_last": channels_last}
