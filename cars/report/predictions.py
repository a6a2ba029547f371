"""Per-image answers of the scored models on the test split (``predictions.parquet``).

Every scored model (each regime's best, each confirmation run) answers every
test image; the paired comparisons and anyone redoing the analysis read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = (
    "image",
    "source_file",
    "model",
    "trial_id",
    "regime",
    "stage",
    "true_label",
    "pred_label",
    "true_probability",
    "correct",
)


def model_name(regime: str, trial_id: str) -> str:
    """How the report names a trial's model: ``<regime>-<trial id>``."""
    return f"{regime}-{trial_id}"


@dataclass(frozen=True)
class ScoredModel:
    """One scored model's identity and its softmax probabilities on the test split."""

    model: str
    trial_id: str
    regime: str
    stage: str
    probabilities: np.ndarray
    labels: np.ndarray


def build_predictions(models: Sequence[ScoredModel], source_files: Sequence[str]) -> pd.DataFrame:
    """One row per test image and model (``predictions.parquet``).

    ``true_probability`` and ``correct`` are null where the image's label is unknown.
    """
    frames = []
    for scored in models:
        labels = np.asarray(scored.labels, dtype=np.int64)
        known = labels >= 0
        predicted = scored.probabilities.argmax(axis=1) if len(labels) else labels
        rows = np.arange(len(labels))
        true_probability = np.full(len(labels), np.nan)
        true_probability[known] = scored.probabilities[rows[known], labels[known]]
        correct = pd.Series(predicted == labels, dtype="boolean")
        correct[~known] = pd.NA
        frames.append(
            pd.DataFrame(
                {
                    "image": rows,
                    "source_file": list(source_files),
                    "model": scored.model,
                    "trial_id": scored.trial_id,
                    "regime": scored.regime,
                    "stage": scored.stage,
                    "true_label": labels,
                    "pred_label": predicted.astype(np.int64),
                    "true_probability": true_probability,
                    "correct": correct,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    return pd.concat(frames, ignore_index=True).reindex(columns=list(PREDICTION_COLUMNS))
