"""The typed request of a batch-prediction run (light: the command line imports it)."""

from __future__ import annotations

from dataclasses import dataclass

from cars.config import ConfigError


@dataclass(frozen=True)
class PredictConfig:
    """One batch-prediction run, as ``jobs/predict.py`` takes it."""

    model: str
    images: str
    out: str
    split: str | None = None
    use_gpu: bool = False
    batch_size: int = 32
    cpus_per_actor: float = 1.0
    gradcam: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} is not valid: at least 1")
        if self.cpus_per_actor <= 0:
            raise ConfigError(f"cpus_per_actor={self.cpus_per_actor} is not valid: above 0")
        if self.gradcam < 0:
            raise ConfigError(f"gradcam={self.gradcam} is not valid: 0 or more images")
