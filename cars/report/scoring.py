"""Scoring a trial's best checkpoint once on the test split.

On a GPU cluster the scoring runs as a Ray task on a GPU worker of the cluster
the job has joined (:func:`cars.study.run_report_job`); on a CPU it runs in the
report's own process, without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cars.config import TrainConfig
from cars.data import (
    CarsDataset,
    create_input_normalizer,
    create_transform_for,
    read_dataset_info,
)
from cars.learn.engine import topk_hits
from cars.learn.model import build_model
from cars.learn.weights import load_weights


@dataclass(frozen=True)
class TestScore:
    """A model's answers on the test split, and its scores where labels are known."""

    probabilities: np.ndarray
    labels: np.ndarray
    loss: float
    acc: float
    top5: float

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each test image."""
        return self.probabilities.argmax(axis=1)


def load_trial_model(
    checkpoint: str, config: TrainConfig, class_names: list[str]
) -> torch.nn.Module:
    """A trial's model with the weights of one of its checkpoints, in eval mode.

    The model is built as the trial built it (frozen blocks included, since
    Grad-CAM must meet the same network), then takes the checkpoint's weights.
    """
    if config.regime == "scratch":
        model = build_model(config.regime, len(class_names))
        load_weights(model, checkpoint, class_names=class_names)
    else:
        model = build_model(
            config.regime,
            len(class_names),
            config.trainable_blocks,
            checkpoint,
            class_names=class_names,
        )
    return model.eval()


def create_eval_dataset(config: TrainConfig, split: str = "test") -> CarsDataset:
    """A split of the trial's data set, through the deterministic eval transform."""
    return CarsDataset(
        config.data,
        split,
        create_transform_for("none", config.image_size, is_training=False),
        bbox_crop=config.bbox_crop,
        bbox_margin=config.bbox_margin,
    )


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: CarsDataset, device: torch.device) -> np.ndarray:
    """Softmax probabilities for every image of ``dataset``, in order (none for an empty set)."""
    if len(dataset) == 0:
        return np.zeros((0, model.num_classes), dtype=np.float32)
    model = model.to(device)
    normalizer = create_input_normalizer(model)
    loader = DataLoader(dataset, batch_size=64, num_workers=0)
    chunks = [
        torch.softmax(model(normalizer(images, device)).float(), dim=1).cpu()
        for images, _ in loader
    ]
    return torch.cat(chunks).numpy()


def score_probabilities(
    probabilities: np.ndarray, labels: np.ndarray
) -> tuple[float, float, float]:
    """Cross-entropy loss, top-1 and top-5 accuracy; NaN when no label is known (or no image)."""
    known = labels >= 0
    if not known.any():
        return float("nan"), float("nan"), float("nan")
    probs, truth = probabilities[known], labels[known]
    loss = float(-np.log(np.clip(probs[np.arange(len(truth)), truth], 1e-12, None)).mean())
    top1, top5 = topk_hits(torch.from_numpy(probs), torch.from_numpy(truth))
    return loss, top1.double().mean().item(), top5.double().mean().item()


def score_checkpoint(checkpoint: str, config: dict[str, Any]) -> TestScore:
    """Score a checkpoint on its data set's test split, on a GPU when one is assigned."""
    train_config = TrainConfig.from_dict(config)
    info = read_dataset_info(train_config.data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_trial_model(checkpoint, train_config, list(info.class_names))
    dataset = create_eval_dataset(train_config)
    probabilities = predict(model, dataset, device)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    loss, acc, top5 = score_probabilities(probabilities, labels)
    return TestScore(probabilities=probabilities, labels=labels, loss=loss, acc=acc, top5=top5)


def score_checkpoints(jobs: list[tuple[str, dict[str, Any]]], use_gpu: bool) -> list[TestScore]:
    """Score several checkpoints: one GPU task each on a GPU cluster, else here, in turn."""
    if not use_gpu:
        return [score_checkpoint(checkpoint, config) for checkpoint, config in jobs]
    import ray

    if not ray.is_initialized():
        raise RuntimeError(
            "a GPU sweep's checkpoints are scored as Ray tasks on the cluster's GPUs: "
            "join the cluster first (cars.cluster.runtime.init_ray)"
        )
    task = ray.remote(num_gpus=1, num_cpus=4)(score_checkpoint)
    return ray.get([task.remote(checkpoint, config) for checkpoint, config in jobs])
