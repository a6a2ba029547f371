"""A loaded classifier predicts on any device, in the precision of that device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from devices import DEVICES

from cars.learn.checkpoint import save_best_weights
from cars.learn.classifier import Classifier, load_classifier
from cars.learn.model import build_model

CLASSES = ["coupe", "sedan", "van"]


@pytest.fixture(scope="module")
def best(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    model = build_model("scratch", len(CLASSES)).eval()
    folder = tmp_path_factory.mktemp("report") / "best"
    return save_best_weights(folder, model, {"image_size": 40, "regime": "scratch"}, CLASSES)


def _pixels(classifier: Classifier) -> torch.Tensor:
    size = classifier.image_size
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8, generator=generator)


def test_cpu_probabilities_are_the_model_s_softmax(best: Path) -> None:
    classifier = load_classifier(best).to("cpu")
    pixels = _pixels(classifier)
    with torch.inference_mode():
        logits = classifier.model(classifier.create_normalizer()(pixels, "cpu"))
    probabilities = classifier.predict_probabilities(pixels, "cpu")
    assert probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities, torch.softmax(logits, dim=1), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_gives_the_cpu_s_probabilities(best: Path, device: str) -> None:
    """On a GPU the model runs in bf16 and channels-last: close to the CPU, not equal."""
    reference = load_classifier(best).predict_probabilities(_pixels(load_classifier(best)), "cpu")
    classifier = load_classifier(best).to(device)
    if device == "cuda":
        weight = next(classifier.model.parameters())
        assert weight.is_cuda and weight.is_contiguous(memory_format=torch.channels_last)
    probabilities = classifier.predict_probabilities(_pixels(classifier), device)
    assert probabilities.device.type == device
    torch.testing.assert_close(probabilities.cpu(), reference, rtol=0, atol=2e-2)
    torch.testing.assert_close(probabilities.sum(dim=1).cpu(), torch.ones(4))
