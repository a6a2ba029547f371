"""Batch prediction as a Ray Data job: read, decode, classify on an actor pool, write Parquet.

``<out>/predictions/`` holds the Parquet files (one row per image: path, top-5
classes and probabilities, the true class and whether it was right when the
input has labels, and an error for a file that could not be decoded),
``<out>/summary.json`` the counts and the accuracy, and ``<out>/gradcam/`` the
optional Grad-CAM overlays. A local ``out`` is written next to its place and
renamed into it when complete.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import ray
import ray.data

from cars.cluster.resources import ResourceError
from cars.cluster.runtime import init_ray
from cars.data.staging import staged_folder
from cars.learn.checkpoint import WeightsError
from cars.learn.classifier import Classifier, load_classifier
from cars.paths import is_uri, resolve_path
from cars.prediction.cams import supports_gradcam, write_prediction_cams
from cars.prediction.config import PredictConfig
from cars.prediction.inputs import ImageSource, read_image_source, resolve_image_source
from cars.prediction.stages import BatchClassifier, classifier_input, decode_batch
from cars.storage import atomic_path, join_path, write_text

logger = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
GRADCAM_DIR = "gradcam"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class PredictionOutcome:
    """What the run wrote and how it did."""

    out: str
    images: int
    errors: int
    labelled: int
    correct: int
    accuracy: float | None
    actors: int

    def summary(self) -> str:
        """Counts and accuracy in one paragraph."""
        lines = [f"{self.images} images classified, {self.errors} unreadable"]
        if self.accuracy is not None:
            lines.append(f"accuracy {self.accuracy:.4f} ({self.correct} of {self.labelled})")
        return "\n".join(lines)


def plan_actor_pool(resources: Mapping[str, float], *, use_gpu: bool, cpus_per_actor: float) -> int:
    """How many model actors the cluster holds: one per GPU, or per ``cpus_per_actor`` CPUs.

    On CPUs one CPU stays free for the reading tasks; without it the pool would
    starve its own input.
    """
    if use_gpu:
        gpus = int(resources.get("GPU", 0))
        if gpus < 1:
            raise ResourceError("--gpu was given but the cluster has no GPU; drop --gpu")
        return gpus
    cpus = float(resources.get("CPU", 0))
    if cpus < cpus_per_actor:
        raise ResourceError(
            f"an actor needs {cpus_per_actor:g} CPUs but the cluster has {cpus:g}; "
            "lower --cpus-per-actor"
        )
    return max(1, math.floor((cpus - 1) / cpus_per_actor))


def classify(
    source: ImageSource, config: PredictConfig, classifier: Classifier, actors: int
) -> ray.data.Dataset:
    """The lazy pipeline: read, decode, classify on an autoscaling actor pool."""
    decoded = read_image_source(source).map_batches(
        decode_batch,
        fn_kwargs={"model_input": classifier_input(classifier)},
        batch_size=config.batch_size,
    )
    return decoded.map_batches(
        BatchClassifier,
        fn_constructor_kwargs={
            "model": config.model,
            "use_gpu": config.use_gpu,
            "threads": max(1, math.floor(config.cpus_per_actor)),
            "true_class_names": source.class_names,
        },
        batch_size=config.batch_size,
        num_gpus=1 if config.use_gpu else 0,
        num_cpus=1 if config.use_gpu else config.cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
    )


def run_prediction(config: PredictConfig) -> PredictionOutcome:
    """Classify every image of ``config.images`` and write ``config.out``."""
    model = resolve_path(config.model)
    config = PredictConfig(**{**asdict(config), "model": model})
    classifier = load_classifier(model)  # a clear error before any Ray work
    source = resolve_image_source(config.images, config.split)
    if config.gradcam and not supports_gradcam(classifier):
        raise WeightsError(
            f"--gradcam draws on legacy_xception's act4 layer, which {model} lacks; "
            "drop --gradcam for this model"
        )
    _warn_about_other_classes(source, classifier)
    init_ray()
    actors = plan_actor_pool(
        ray.cluster_resources(), use_gpu=config.use_gpu, cpus_per_actor=config.cpus_per_actor
    )
    print(
        f"Classifying {source.describe()} with {model} on up to {actors} "
        f"{'GPU' if config.use_gpu else 'CPU'} actor(s)",
        flush=True,
    )
    predicted = classify(source, config, classifier, actors).materialize()
    with _output_folder(resolve_path(config.out)) as out:
        predicted.write_parquet(join_path(out, PREDICTIONS_DIR))
        outcome = _summarize(predicted, config.out, actors)
        payload = {"model": model, "source": source.path, "split": source.split}
        payload |= asdict(outcome)
        write_text(join_path(out, SUMMARY_FILE), json.dumps(payload, indent=2) + "\n")
        if config.gradcam:
            _write_cams(classifier, source, config.gradcam, out)
    return outcome


def _warn_about_other_classes(source: ImageSource, classifier: Classifier) -> None:
    if source.class_names is not None and list(source.class_names) != classifier.class_names:
        logger.warning(
            "the data set's classes differ from the model's: a prediction counts as right "
            "only when its class name equals the true one"
        )


def _summarize(predicted: ray.data.Dataset, out: str, actors: int) -> PredictionOutcome:
    columns = [c for c in ("error", "label", "correct") if c in predicted.schema().names]
    table = predicted.select_columns(columns).to_pandas()
    errors = int(table["error"].notna().sum())
    labelled = correct = 0
    if "correct" in table:
        scored = table["correct"].notna()
        labelled, correct = int(scored.sum()), int(table.loc[scored, "correct"].astype(bool).sum())
    return PredictionOutcome(
        out=resolve_path(out),
        images=len(table),
        errors=errors,
        labelled=labelled,
        correct=correct,
        accuracy=correct / labelled if labelled else None,
        actors=actors,
    )


def _write_cams(classifier: Classifier, source: ImageSource, count: int, out: str) -> None:
    rows = read_image_source(source)
    with atomic_path(join_path(out, GRADCAM_DIR)) as folder:
        write_prediction_cams(classifier, rows, count, folder, source.class_names)


@contextmanager
def _output_folder(out: str) -> Iterator[str]:
    """A local ``out`` is staged and renamed into place; a URI is written in place."""
    if is_uri(out):
        yield out
        return
    with staged_folder(out) as stage:
        yield str(stage)
