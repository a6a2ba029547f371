"""The models the report's Grad-CAMs explain: each regime's best trial, and a random baseline.

Saliency methods can draw car-shaped maps from a network that learned nothing
(the model-randomisation check of Adebayo et al., "Sanity checks for saliency
maps", 2018), so every regime's CAM is measured beside the CAM of the same
architecture at a random initialisation: the weights a ``scratch`` trial of the
sweep's seed starts from, which no training has touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from cars.config import RANDOM_INIT, TrainConfig
from cars.learn.model import build_model
from cars.report.predictions import model_name
from cars.report.scoring import load_trial_model


@dataclass(frozen=True)
class CamModel:
    """One model of the Grad-CAM figures: a regime's best trial, or the random baseline."""

    name: str
    trial_id: str | None
    regime: str
    best_overall: bool
    model: torch.nn.Module

    @property
    def baseline(self) -> bool:
        """Whether this is the untrained baseline rather than a regime's model."""
        return self.regime == RANDOM_INIT


def build_random_model(num_classes: int, seed: int) -> torch.nn.Module:
    """``legacy_xception`` as a ``scratch`` trial seeded with ``seed`` starts, in eval mode.

    A trial seeds torch with its seed before it builds its model; the same is
    done here without touching the caller's random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model("scratch", num_classes)
    return model.eval()


def load_cam_models(
    regimes: pd.DataFrame,
    configs: list[TrainConfig],
    class_names: list[str],
    *,
    best_index: int,
    seed: int,
) -> list[CamModel]:
    """Each regime's best trial with its scored weights, then the random baseline."""
    models = [
        CamModel(
            name=model_name(row.regime, row.trial_id),
            trial_id=row.trial_id,
            regime=row.regime,
            best_overall=i == best_index,
            model=load_trial_model(row.checkpoint, configs[i], class_names),
        )
        for i, row in enumerate(regimes.itertuples())
    ]
    baseline = build_random_model(len(class_names), seed)
    return [*models, CamModel(RANDOM_INIT, None, RANDOM_INIT, False, baseline)]
