"""Images per second of batch prediction: the Ray Data job (jobs/predict.py) against a
plain single-process PyTorch loop over the same image files, and their ratio.

    python benchmarks/bench_predict.py                       # synthetic photos, a fresh model
    python benchmarks/bench_predict.py --model reports/<name>/best --images DIR

Both read the JPEG files, decode, transform and classify every image. The loop
runs in one process with torch's default threads; the job runs on the Ray
instance it starts or joins, on as many actors as the cluster holds. Ray's own
start-up is not counted; the actors' start-up (loading the model) is.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cars.cluster.runtime import init_ray
from cars.data import SyntheticCars, write_synthetic_cars
from cars.data.decoding import decode_input
from cars.learn.checkpoint import save_best_weights
from cars.learn.classifier import load_classifier
from cars.learn.device import configure_device
from cars.learn.model import build_model
from cars.paths import resolve_path
from cars.prediction.config import PredictConfig
from cars.prediction.inputs import IMAGE_EXTENSIONS
from cars.prediction.job import run_prediction


def plain_loop_rate(model: str, files: list[Path], batch_size: int, device: str) -> float:
    """Images per second of a single-process loop: decode, transform, classify in batches."""
    classifier = load_classifier(model).to(configure_device(device))
    transform = classifier.create_transform()
    start = time.perf_counter()
    for i in range(0, len(files), batch_size):
        inputs = [decode_input(path.read_bytes(), transform) for path in files[i : i + batch_size]]
        probs = classifier.predict_probabilities(torch.stack(inputs), device)
        probs.topk(min(5, probs.shape[1]), dim=1)[0].cpu()
    return len(files) / (time.perf_counter() - start)


def ray_data_rate(config: PredictConfig, count: int) -> tuple[float, int]:
    """Images per second of the Ray Data job, and its actor count."""
    init_ray()
    start = time.perf_counter()
    outcome = run_prediction(config)
    elapsed = time.perf_counter() - start
    if outcome.images != count:
        raise RuntimeError(f"the job classified {outcome.images} of {count} images")
    return count / elapsed, outcome.actors


def main() -> None:
    """Print both rates and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: a fresh legacy_xception)")
    parser.add_argument("--images", help="folder of images (default: synthetic photos)")
    parser.add_argument("--count", type=int, default=320, help="synthetic photos to draw")
    parser.add_argument("--image-size", type=int, default=128, help="input of the fresh model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument("--gpu", action="store_true", help="GPU actors, and the loop on a GPU")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.images:
            images = Path(resolve_path(args.images))
        else:
            per_class = max(1, args.count // 4)
            raw = write_synthetic_cars(
                work / "raw", SyntheticCars(4, train_per_class=per_class, test_per_class=1)
            )
            images = raw / "cars_train"
        model = args.model and resolve_path(args.model)
        if model is None:
            fresh = build_model("scratch", 4)
            names = [f"class {i}" for i in range(4)]
            model = str(save_best_weights(work / "best", fresh, {"image_size": args.image_size},
                                          names))  # fmt: skip
        files = sorted(
            p for p in images.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS
        )
        print(f"{len(files)} images under {images}, model {model}")
        loop = plain_loop_rate(model, files, args.batch_size, "cuda" if args.gpu else "cpu")
        print(f"plain PyTorch loop, one process, {torch.get_num_threads()} threads: "
              f"{loop:.1f} images/s")  # fmt: skip
        config = PredictConfig(
            model=model,
            images=str(images),
            out=str(work / "predicted"),
            use_gpu=args.gpu,
            batch_size=args.batch_size,
            cpus_per_actor=args.cpus_per_actor,
        )
        job, actors = ray_data_rate(config, len(files))
        print(f"Ray Data job, {actors} {'GPU' if args.gpu else 'CPU'} actor(s): {job:.1f} images/s")
        print(f"ratio (Ray Data job / plain loop): {job / loop:.2f}")


if __name__ == "__main__":
    main()
