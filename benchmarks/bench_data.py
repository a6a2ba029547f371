"""The loader's CPU cost per image: the uint8 path against the former float path, on the
same JPEGs, per policy, at 299 px by default; and the JPEG decoders side by side.

    python benchmarks/bench_data.py                  # writes ~600x400 synthetic photos
    python benchmarks/bench_data.py --data SET [--images 300] [--image-size 299]

The former path is timm's ``create_transform`` on a PIL decode: resize on PIL,
``ToTensor`` and ``Normalize`` on the CPU (kept here only, to compare). The new
one is ``cars.data.decoding.decode_input`` with ``create_transform_for``: Pillow
``draft`` where the size allows, uint8 tensors out; normalising (and ``strong``'s
random erasing) moves to the device, and is timed on this CPU separately for the
case where the device is the CPU. One process and one torch thread, timed in the
process's CPU seconds (``time.process_time``), so the figures are images per second
per core and what other processes do to the wall clock falls outside them; each is
the best of ``--repeats``.

The decoder table times a full-scale JPEG decode to a uint8 3 x H x W tensor, alone
and followed by the ``none`` and the ``basic`` transform (what the loader does per
image at this size), for the loader's decoder (simplejpeg), the one it replaced
(torchvision's ``decode_jpeg``, deprecated since torchvision 0.29), Pillow, and
TorchCodec where it is installed (``pip install torchcodec``); and whether each gives
Pillow's pixels.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import RandAugment

from cars.data import (
    CarsDataset,
    SyntheticCars,
    create_random_erasing,
    create_transform_for,
    normalize_on_device,
    prepare_dataset,
    write_synthetic_cars,
)
from cars.data.decoding import decode_input, decode_jpeg_rgb
from cars.data.transforms import PRETRAINED_CFG, TRAIN_SCALE, repair_posterize
from cars.paths import resolve_path

POLICIES = ("none", "basic", "strong")
DECODER_POLICIES = ("none", "basic")
FORMER_DECODER = "torchvision.io (former)"
NORMALIZE_BATCH = 64


def create_former_transform(augment: str, image_size: int) -> Callable[[Image.Image], object]:
    """The float path the uint8 one replaced (timm's ``create_transform``, as it was called)."""
    common = {
        "interpolation": PRETRAINED_CFG.interpolation,
        "mean": PRETRAINED_CFG.mean,
        "std": PRETRAINED_CFG.std,
    }
    if augment == "none":
        return create_transform(
            image_size,
            is_training=False,
            crop_pct=PRETRAINED_CFG.crop_pct,
            crop_mode=PRETRAINED_CFG.crop_mode,
            **common,
        )
    strong = augment == "strong"
    transform = create_transform(
        image_size,
        is_training=True,
        scale=TRAIN_SCALE,
        hflip=0.5,
        color_jitter=None,
        auto_augment="rand-m9-mstd0.5-inc1" if strong else None,
        re_prob=0.25 if strong else 0.0,
        re_mode="pixel",
        **common,
    )
    for step in transform.transforms:  # Pillow 13 refuses timm's 0-bit posterize otherwise
        if isinstance(step, RandAugment):
            repair_posterize(step)
    return transform


def _decode_pil(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _decode_pil_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(_decode_pil(data)).copy()).permute(2, 0, 1)


Decoder = Callable[[bytes], torch.Tensor]


def create_decoders() -> dict[str, Decoder | str]:
    """Each candidate's full-scale JPEG decode to a uint8 3 x H x W tensor, or why it is absent."""
    decoders: dict[str, Decoder | str] = {
        "simplejpeg (the loader's)": decode_jpeg_rgb,
        "Pillow": _decode_pil_tensor,
    }
    try:
        # Deprecated since torchvision 0.29 and to be removed: measured while it exists,
        # its warning silenced here only (it still fires on every call, as it did).
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as torchvision_decode_jpeg

        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")

        def torchvision_decode(data: bytes) -> torch.Tensor:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return torchvision_decode_jpeg(encoded, mode=ImageReadMode.RGB)

        decoders[FORMER_DECODER] = torchvision_decode
    except ImportError as err:
        decoders[FORMER_DECODER] = f"not available ({err})"
    try:
        from torchcodec.decoders import decode_jpeg as torchcodec_decode_jpeg

        decoders["torchcodec"] = lambda data: torchcodec_decode_jpeg(data, mode="RGB")
    except ImportError:
        decoders["torchcodec"] = "not installed (pip install torchcodec)"
    return decoders


def measure_decoders(
    decoders: dict[str, Decoder], images: list[bytes], image_size: int, repeats: int
) -> dict[str, dict]:
    """Images/s per core of each decoder, alone and before each transform; Pillow's pixels?"""
    steps: dict[str, Callable[[torch.Tensor], object]] = {
        "decode": lambda pixels: pixels,
        **{
            p: create_transform_for(p, image_size, is_training=p != "none")
            for p in DECODER_POLICIES
        },
    }
    rows: dict[str, dict] = {
        name: {"same_pixels": True, **dict.fromkeys(steps, 0.0)} for name in decoders
    }
    for data in images:
        expected = _decode_pil_tensor(data)
        for name, decode in decoders.items():
            rows[name]["same_pixels"] &= torch.equal(decode(data), expected)
    count = len(images)
    # Interleaved, so that load from other processes falls on every decoder alike.
    for _ in range(repeats):
        for step_name, step in steps.items():
            for name, decode in decoders.items():
                torch.manual_seed(0)  # the same random crops for every decoder
                rate = _rate(count, lambda i, d=decode, f=step: f(d(images[i])), 1)
                rows[name][step_name] = max(rows[name][step_name], rate)
    return rows


def print_decoders(images: list[bytes], image_size: int, repeats: int) -> dict[str, dict]:
    """Print the decoder table; return its rows."""
    candidates = create_decoders()
    decoders = {name: d for name, d in candidates.items() if not isinstance(d, str)}
    rows = measure_decoders(decoders, images, image_size, repeats)
    former = rows.get(FORMER_DECODER)
    print("\nfull-scale JPEG decoders, images per second per core: decoding alone, then")
    print(f"with the {image_size} px transform of each policy (ratio: to the former decoder's)")
    header = "".join(f"{'+ ' + p:>10}{'ratio':>7}" for p in DECODER_POLICIES)
    print(f"{'decoder':<28}{'decode':>9}{header}  Pillow's pixels")
    for name, row in rows.items():
        line = f"{name:<28}{row['decode']:>9.1f}"
        for policy in DECODER_POLICIES:
            ratio = f"{row[policy] / former[policy]:>6.2f}x" if former else " " * 7
            line += f"{row[policy]:>10.1f}{ratio}"
        print(f"{line}  {'same' if row['same_pixels'] else 'DIFFERENT'}")
    for name, why in candidates.items():
        if isinstance(why, str):
            print(f"{name:<28}{why}")
    return rows


def _rate(count: int, load: Callable[[int], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for i in range(count):
            load(i)
        best = min(best, time.process_time() - start)
    return count / best


def measure_normalize(image_size: int, augment: str, repeats: int) -> float:
    """Images per second of the device step when the device is this CPU (batches of 64)."""
    batch = torch.randint(0, 256, (NORMALIZE_BATCH, 3, image_size, image_size), dtype=torch.uint8)
    erasing = create_random_erasing(augment, "cpu")
    mean, std = PRETRAINED_CFG.mean, PRETRAINED_CFG.std

    def step(_: int) -> object:
        return normalize_on_device(batch, "cpu", mean=mean, std=std, erasing=erasing)

    return NORMALIZE_BATCH * _rate(4, step, repeats)  # batches/s to images/s


def measure_policy(
    images: list[bytes], augment: str, image_size: int, repeats: int
) -> dict[str, float]:
    """Former and new images/s per core of one policy, and the device step on a CPU."""
    former = create_former_transform(augment, image_size)
    new = create_transform_for(augment, image_size, is_training=augment != "none")
    count = len(images)
    former_rate = new_rate = 0.0
    # Interleaved, so that load from other processes falls on both paths alike.
    for _ in range(repeats):
        former_rate = max(former_rate, _rate(count, lambda i: former(_decode_pil(images[i])), 1))
        new_rate = max(new_rate, _rate(count, lambda i: decode_input(images[i], new), 1))
    return {
        "former": former_rate,
        "new": new_rate,
        "normalize": measure_normalize(image_size, augment, repeats),
    }


def run_benchmark(data: str, images: int, image_size: int, repeats: int) -> dict[str, dict]:
    """Print the table for the first ``images`` training images of ``data``; return its rows."""
    dataset = CarsDataset(data, "train")
    count = min(images, len(dataset))
    encoded = [dataset._image_bytes(i) for i in range(count)]
    sizes = dataset.sizes[:count]
    print(
        f"{count} JPEGs, median {int(sorted(sizes[:, 0])[count // 2])} x "
        f"{int(sorted(sizes[:, 1])[count // 2])} px, {image_size} px input, 1 thread, "
        f"best of {repeats}; images per second per core"
    )
    print(
        f"{'policy':<8}{'former':>10}{'uint8':>10}{'ratio':>8}"
        f"{'device step on CPU':>20}{'uint8 + CPU step':>18}{'ratio':>8}"
    )
    rows = {}
    for augment in POLICIES:
        row = measure_policy(encoded, augment, image_size, repeats)
        both = 1.0 / (1.0 / row["new"] + 1.0 / row["normalize"])
        print(
            f"{augment:<8}{row['former']:>10.1f}{row['new']:>10.1f}"
            f"{row['new'] / row['former']:>7.2f}x{row['normalize']:>20.1f}"
            f"{both:>18.1f}{both / row['former']:>7.2f}x"
        )
        rows[augment] = row
    rows["decoders"] = print_decoders(encoded, image_size, repeats)
    return rows


def main() -> None:
    """Parse the options, write photos if no data is given, and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a prepared set; by default one is generated")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        if args.data is None:
            source = write_synthetic_cars(
                Path(tmp) / "source",
                SyntheticCars(
                    4,
                    train_per_class=-(-args.images // 4),
                    test_per_class=0,
                    widths=(560, 660),  # Stanford Cars' photos are mostly about 600 x 400
                ),
            )
            data = str(Path(tmp) / "prepared")
            # Stored as written (no downscale to the default 512 px), as a user's copy may be.
            prepare_dataset(source, data, val_fraction=0.0, max_side=1024, progress=False)
        else:
            data = resolve_path(args.data)
        run_benchmark(data, args.images, args.image_size, args.repeats)


if __name__ == "__main__":
    main()
