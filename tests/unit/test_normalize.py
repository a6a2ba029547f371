"""The device step: uint8 pixels to the model's normalised input, in one helper for every
caller (the engine, Grad-CAM, scoring, prediction)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from devices import DEVICES
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms

from cars.data import create_input_normalizer, create_random_erasing, normalize_on_device
from cars.learn.engine import evaluate

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pixels(n: int = 4, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def test_uint8_in_gives_what_to_tensor_and_normalize_gave() -> None:
    pixels = _pixels()
    former = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    expected = torch.stack([former(Image.fromarray(p.permute(1, 2, 0).numpy())) for p in pixels])
    out = normalize_on_device(pixels, "cpu", mean=MEAN, std=STD)
    assert out.dtype == torch.float32 and out.shape == pixels.shape
    assert torch.allclose(out, expected, atol=1e-6)
    single = normalize_on_device(pixels[0], "cpu", mean=MEAN, std=STD)
    assert torch.allclose(single, expected[0], atol=1e-6)


def test_channels_last_and_already_normalised_floats() -> None:
    out = normalize_on_device(_pixels(), "cpu", mean=MEAN, std=STD, channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    floats = torch.randn(2, 3, 8, 8)
    assert torch.equal(normalize_on_device(floats, "cpu", mean=MEAN, std=STD), floats)
    with pytest.raises(ValueError, match="uint8 pixels"):
        normalize_on_device(floats.to(torch.int32), "cpu", mean=MEAN, std=STD)


def test_random_erasing_runs_after_normalising() -> None:
    torch.manual_seed(0)
    erasing = create_random_erasing("strong", "cpu")
    erasing.probability = 1.0  # every image, to see it
    white = torch.full((8, 3, 32, 32), 255, dtype=torch.uint8)
    out = normalize_on_device(white, "cpu", mean=(0.5,) * 3, std=(0.5,) * 3, erasing=erasing)
    # Normalised white is 1.0; erased pixels are standard normal draws, mostly far from it.
    erased = (out != 1.0).float().mean(dim=(1, 2, 3))
    assert bool((erased > 0).all())
    assert float(out[out != 1.0].std()) == pytest.approx(1.0, abs=0.15)


def test_the_normaliser_takes_the_model_s_pretrained_config() -> None:
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=3)
    normalizer = create_input_normalizer(model)
    assert normalizer.mean == tuple(model.pretrained_cfg["mean"]) == (0.5, 0.5, 0.5)
    wrapped = nn.Sequential()
    wrapped.module = model  # as DDP holds it
    assert create_input_normalizer(wrapped).std == (0.5, 0.5, 0.5)
    from_config = create_input_normalizer({"mean": MEAN, "std": STD})
    assert from_config.mean == MEAN and from_config.std == STD
    with pytest.raises(ValueError, match="mean and std"):
        create_input_normalizer(nn.Identity())(_pixels(), "cpu")


def test_the_engine_scores_uint8_batches_as_it_scored_normalised_ones() -> None:
    torch.manual_seed(0)
    # A small timm model with ImageNet's mean and std, so the default is the model's own.
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    pixels, labels = _pixels(6, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    floats = normalize_on_device(pixels, "cpu", mean=MEAN, std=STD)
    from_uint8 = evaluate(
        model, DataLoader(TensorDataset(pixels, labels), batch_size=3), device="cpu"
    )
    from_floats = evaluate(
        model, DataLoader(TensorDataset(floats, labels), batch_size=3), device="cpu"
    )
    assert from_uint8["loss"] == pytest.approx(from_floats["loss"], rel=1e-6)
    assert from_uint8["acc"] == from_floats["acc"]
    assert np.isfinite(from_uint8["loss"])


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_normalises_as_the_cpu_did(device: str) -> None:
    pixels = _pixels(3, 12)
    expected = ((pixels.float() / 255) - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(
        3, 1, 1
    )
    for _ in range(2):  # the second batch takes the statistics kept on the device
        out = normalize_on_device(pixels, device, mean=MEAN, std=STD, channels_last=True)
        assert out.device.type == device and out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out.cpu(), expected, atol=1e-6, rtol=0)


def test_statistics_first_made_in_inference_mode_serve_training() -> None:
    """Evaluation often normalises first; training must still build its graph afterwards."""
    mean, std = (0.3, 0.2, 0.1), (0.6, 0.7, 0.8)  # values no other test keeps
    with torch.inference_mode():
        normalize_on_device(_pixels(), "cpu", mean=mean, std=std)
    conv = nn.Conv2d(3, 2, 3)
    inputs = normalize_on_device(_pixels(), "cpu", mean=mean, std=std).requires_grad_()
    conv(inputs * 2).sum().backward()
    assert inputs.grad is not None and conv.weight.grad is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_normalising_on_the_gpu_copies_nothing_back_after_the_first_batch() -> None:
    pinned = _pixels().pin_memory()
    normalize_on_device(pinned, "cuda", mean=MEAN, std=STD)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = normalize_on_device(pinned, "cuda", mean=MEAN, std=STD, channels_last=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(out.cpu(), normalize_on_device(_pixels(), "cpu", mean=MEAN, std=STD))
