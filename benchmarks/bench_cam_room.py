"""How much room the report's Grad-CAM measures have on a data set's test images.

For every test image with a known box, as the trials are scored on it and as the
report's Grad-CAMs explain it (:mod:`cars.report.cam_view`), it prints the mean
share of the input the box covers (what a uniform CAM scores in the energy
measure), the hit rate of the pointing game's centre baseline, and the size of
the ``act4`` map the CAMs are taken from. The measures can tell a CAM on the car
from one spread over the input only where the box leaves room and the centre
misses often.

    python benchmarks/bench_cam_room.py                  # the demo preset's data, seed 0
    python benchmarks/bench_cam_room.py --seed 2
    python benchmarks/bench_cam_room.py --data DIR --image-size 64 --bbox-crop
"""

from __future__ import annotations

import argparse

import numpy as np
import timm
import torch

from cars.config import TrainConfig
from cars.data import CarsDataset
from cars.demo import prepare_demo_data
from cars.learn.gradcam import box_area_share, center_hit
from cars.learn.model import ARCHITECTURE
from cars.report.cam_view import CamView, choose_cam_view
from cars.report.cams import pointing_tolerance
from cars.report.scoring import create_eval_dataset
from cars.sweep_config import create_sweep_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a prepared set (default: the demo preset's target set)")
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed (without --data)")
    parser.add_argument("--image-size", type=int, help="the trials' input size (default: demo's)")
    parser.add_argument(
        "--bbox-crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the trials crop to the boxes (default: the demo's choice)",
    )
    return parser.parse_args(argv)


def map_size(image_size: int) -> tuple[int, int]:
    """The (height, width) of ``act4`` for a square input of ``image_size``."""
    model = timm.create_model(ARCHITECTURE, num_classes=2).eval()
    shapes: list[torch.Size] = []
    model.act4.register_forward_hook(lambda _m, _i, output: shapes.append(output.shape))
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    return int(shapes[0][-2]), int(shapes[0][-1])


def measure_room(dataset: CarsDataset, view: CamView) -> tuple[float, float, int]:
    """Mean box share and centre-baseline hit rate over the images with a known box."""
    size, tolerance = view.image_size, pointing_tolerance(view.image_size)
    shares, hits = [], []
    for index in np.flatnonzero(dataset.has_box):
        box = view.input_box(dataset, int(index))
        shares.append(box_area_share((size, size), box))
        hits.append(center_hit((size, size), box, tolerance))
    return float(np.mean(shares)), float(np.mean(hits)), len(shares)


def main(argv: list[str] | None = None) -> None:
    """Print the room of the scored inputs and of the images the report explains."""
    args = parse_args(argv)
    demo = create_sweep_config("demo", "room", seed=args.seed)
    data = args.data
    if data is None:
        assert demo.demo is not None
        data, _ = prepare_demo_data(demo.demo, args.seed)
    config = TrainConfig(
        data=data,
        regime="frozen",
        image_size=args.image_size or demo.image_size,
        bbox_crop=demo.bbox_crop if args.bbox_crop is None else args.bbox_crop,
    )
    print(f"data: {data}")
    scored = create_eval_dataset(config)
    views = {
        "scored inputs": CamView.of_inputs(config),
        "Grad-CAM": choose_cam_view(config, scored),
    }
    print("images                what             size  box share  centre baseline  act4 map")
    for name, view in views.items():
        share, centre, count = measure_room(view.create_dataset(data), view)
        height, width = map_size(view.image_size)
        print(
            f"{name:<14} {count:>6}  {view.kind:<15} {view.image_size:>4} px  {100 * share:6.1f} %"
            f"  {100 * centre:12.1f} %   {height} x {width}"
        )


if __name__ == "__main__":
    main()
