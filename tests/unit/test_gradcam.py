"""Grad-CAM measures on maps with known answers, and CAMs computed on real models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import timm
import torch
from timm.utils import unwrap_model
from torch import nn

from cars.learn.gradcam import (
    box_area_share,
    center_hit,
    compute_cams,
    energy_inside_box,
    measure_cams,
    pointing_game_hit,
)

# ---------------------------------------------------------------- measures


def test_uniform_map_scores_exactly_the_box_area_share() -> None:
    cam = np.full((40, 60), 0.3)
    for box in [(10, 5, 30, 25), (0.5, 1.25, 17.75, 33.5), (-5, -5, 80, 12)]:
        assert energy_inside_box(cam, box) == pytest.approx(box_area_share(cam.shape, box), 1e-12)
    assert box_area_share((40, 60), (10, 5, 30, 25)) == pytest.approx(20 * 20 / (40 * 60))


def test_energy_all_inside_all_outside_and_half() -> None:
    cam = np.zeros((20, 20))
    cam[5:10, 5:10] = 2.0
    assert energy_inside_box(cam, (5, 5, 10, 10)) == 1.0
    assert energy_inside_box(cam, (10, 10, 20, 20)) == 0.0
    # The box covers the left half of the hot square.
    assert energy_inside_box(cam, (0, 0, 7.5, 20)) == pytest.approx(0.5)
    assert energy_inside_box(cam, (0, 0, 7, 20)) == pytest.approx(2 / 5)


def test_partial_pixels_count_by_the_fraction_covered() -> None:
    cam = np.array([[1.0, 3.0]])
    # Half of each pixel: 0.5 * 1 + 0.5 * 3 out of 4.
    assert energy_inside_box(cam, (0.5, 0, 1.5, 1)) == pytest.approx(0.5)
    assert energy_inside_box(cam, (1.75, 0, 2, 1)) == pytest.approx(0.25 * 3 / 4)
    assert box_area_share((1, 2), (0.5, 0, 1.5, 1)) == pytest.approx(0.5)


def test_boxes_partly_outside_the_map_are_clipped() -> None:
    cam = np.ones((4, 4))
    assert box_area_share(cam.shape, (-5, -5, 2, 2)) == pytest.approx(4 / 16)
    assert energy_inside_box(cam, (-5, -5, 2, 2)) == pytest.approx(4 / 16)
    assert box_area_share(cam.shape, (-1, -1, 9, 9)) == 1.0


def test_rows_and_columns_are_not_swapped() -> None:
    # Energy in the top-right corner: x (columns) is large, y (rows) small.
    cam = np.zeros((30, 30))
    cam[0:2, 25:30] = 1.0
    assert energy_inside_box(cam, (25, 0, 30, 2)) == 1.0
    assert energy_inside_box(cam, (0, 25, 2, 30)) == 0.0
    assert pointing_game_hit(cam, (25, 0, 30, 2), tolerance=0)
    assert not pointing_game_hit(cam, (0, 25, 2, 30), tolerance=0)


def test_all_zero_cam_has_no_energy_share() -> None:
    cam = np.zeros((8, 8))
    assert math.isnan(energy_inside_box(cam, (0, 0, 4, 4)))
    # An all-zero map points nowhere, not even at a box covering it all.
    assert not pointing_game_hit(cam, (0, 0, 8, 8), tolerance=0)
    # A flat non-zero map points at its centre.
    flat = np.ones((8, 8))
    assert pointing_game_hit(flat, (3.5, 3.5, 4.5, 4.5), tolerance=0)
    assert not pointing_game_hit(flat, (0, 0, 3, 3), tolerance=0)


@pytest.mark.parametrize(
    ("box", "fix"),
    [
        ((5, 5, 5, 9), "x2 must exceed x1"),
        ((5, 9, 8, 2), "y2 exceed y1"),
        ((1, 2, 3), "four finite numbers"),
        ((0, 0, math.nan, 4), "four finite numbers"),
        ((50, 50, 60, 60), "entirely outside"),
    ],
)
def test_bad_boxes_get_a_clear_error(box: tuple[float, ...], fix: str) -> None:
    cam = np.ones((10, 10))
    with pytest.raises(ValueError, match=fix):
        energy_inside_box(cam, box)
    with pytest.raises(ValueError, match=fix):
        box_area_share(cam.shape, box)
    with pytest.raises(ValueError, match=fix):
        pointing_game_hit(cam, box)


def test_bad_cams_get_a_clear_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        energy_inside_box(np.full((4, 4), -1.0), (0, 0, 2, 2))
    with pytest.raises(ValueError, match="2-D"):
        energy_inside_box(np.ones((1, 4, 4)), (0, 0, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        pointing_game_hit(np.full((4, 4), np.nan), (0, 0, 2, 2))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game_hit(np.ones((4, 4)), (0, 0, 2, 2), tolerance=-1)


def _peak(shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    cam = np.zeros(shape)
    cam[row, col] = 1.0
    return cam


def test_pointing_game_tolerance_in_input_pixels() -> None:
    box = (20, 20, 40, 40)  # pixels 20..39
    assert pointing_game_hit(_peak((100, 100), 30, 30), box, tolerance=0)
    # Pixel 54 is 15 pixels right of the box's last column 39; pixel 55 is 16.
    assert pointing_game_hit(_peak((100, 100), 30, 54), box)
    assert not pointing_game_hit(_peak((100, 100), 30, 55), box)
    assert pointing_game_hit(_peak((100, 100), 5, 30), box)
    assert not pointing_game_hit(_peak((100, 100), 4, 30), box)
    assert not pointing_game_hit(_peak((100, 100), 30, 40), box, tolerance=0)
    # Diagonally off a corner by 12 px in x and y is 17 px away: a miss.
    assert not pointing_game_hit(_peak((100, 100), 51, 51), box)
    assert pointing_game_hit(_peak((100, 100), 48, 48), box)


def test_pointing_game_points_at_the_centre_of_a_plateau() -> None:
    # A 2 x 2 grid upsampled to 64 px puts its maximum on a 16 x 16 corner
    # plateau; the game points at the plateau's centre (24, 24), not its edge.
    cam = np.zeros((64, 64))
    cam[16:32, 16:32] = 1.0
    cam[0:16, :] = 0.5
    assert pointing_game_hit(cam, (23, 23, 25, 25), tolerance=0)
    assert not pointing_game_hit(cam, (0, 0, 20, 20), tolerance=0)
    assert not pointing_game_hit(cam, (0, 0, 20, 20), tolerance=5.6)
    assert pointing_game_hit(cam, (0, 0, 20, 20), tolerance=5.7)
    # Values a millionth below the maximum belong to the plateau.
    cam[16:32, 32:48] = 1.0 - 1e-7
    assert pointing_game_hit(cam, (31, 23, 33, 25), tolerance=0)


def test_pointing_game_picks_the_largest_plateau_then_the_first() -> None:
    box = (0, 0, 10, 10)
    cam = _peak((50, 50), 40, 40)
    cam[4:7, 4:7] = 1.0
    assert pointing_game_hit(cam, box, tolerance=0)
    # Two single-pixel maxima: the first in reading order, as argmax picks.
    cam = _peak((50, 50), 5, 5)
    cam[40, 40] = 1.0
    assert pointing_game_hit(cam, box, tolerance=0)
    assert not pointing_game_hit(cam, (35, 35, 45, 45), tolerance=0)
    cam[5, 5] = 0.999
    assert pointing_game_hit(cam, (35, 35, 45, 45), tolerance=0)


def test_center_baseline() -> None:
    assert center_hit((100, 100), (40, 40, 60, 60), tolerance=0)
    assert not center_hit((100, 100), (0, 0, 20, 20), tolerance=15)
    assert center_hit((100, 100), (0, 0, 40, 40), tolerance=15)


def test_measure_cams_records() -> None:
    cams = np.zeros((3, 32, 32), dtype=np.float32)
    cams[0, 0:8, 0:8] = 1.0  # inside its box
    cams[1, 24:32, 24:32] = 1.0  # outside its box
    boxes = np.array([[0, 0, 16, 16], [0, 0, 16, 16], [0, 0, 8, 8]])
    frame = measure_cams(cams, boxes)
    assert list(frame.columns) == [
        "energy_inside",
        "box_area_share",
        "energy_ratio",
        "pointing_hit",
        "center_hit",
    ]
    assert frame["energy_inside"].iloc[0] == 1.0
    assert frame["energy_ratio"].iloc[0] == pytest.approx(4.0)
    assert frame["energy_inside"].iloc[1] == 0.0
    assert math.isnan(frame["energy_inside"].iloc[2])
    assert frame["pointing_hit"].tolist() == [True, False, False]
    assert frame["center_hit"].tolist() == [True, True, True]
    assert frame["pointing_hit"].dtype == bool
    with pytest.raises(ValueError, match="N x 4"):
        measure_cams(cams, boxes[:2])


# ------------------------------------------------------------ computation


class RegionProbe(nn.Module):
    """Class k's evidence is input channel k: its CAM must light up where channel k is bright.

    The layers before ``act4`` have no trainable parameter, like a frozen backbone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 3
        self.features = nn.Conv2d(3, 3, 1, bias=False)
        self.pool = nn.AvgPool2d(4)
        self.act4 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])
            self.fc.weight.copy_(torch.eye(3))
        self.features.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act4(self.pool(self.features(x))).mean(dim=(2, 3)))


# Height 32, width 48: a transposed map would not even have the right shape,
# and a flipped one would light up the wrong corner.
TOP_RIGHT = (32, 0, 48, 12)
BOTTOM_LEFT = (0, 20, 16, 32)


def _probe_input() -> torch.Tensor:
    x = torch.zeros(1, 3, 32, 48)
    x[0, 0, 0:12, 32:48] = 3.0  # class 0: top right, the strongest evidence
    x[0, 1, 20:32, 0:16] = 1.0  # class 1: bottom left
    x[0, 2] = 0.1
    return x


def test_cam_lights_up_the_target_classes_region() -> None:
    probe = RegionProbe()
    x = _probe_input()
    result = compute_cams(probe, x.repeat(2, 1, 1, 1), targets=[0, 1])
    assert result.cams.shape == (2, 32, 48)
    assert result.cams.dtype == np.float32
    assert result.cams.min() >= 0 and result.cams.max() == pytest.approx(1.0)
    for cam, box, other in [
        (result.cams[0], TOP_RIGHT, BOTTOM_LEFT),
        (result.cams[1], BOTTOM_LEFT, TOP_RIGHT),
    ]:
        assert energy_inside_box(cam, box) > 0.8
        assert energy_inside_box(cam, other) < 0.05
        assert pointing_game_hit(cam, box, tolerance=0)
    np.testing.assert_array_equal(result.targets, [0, 1])


def test_default_targets_are_the_predictions() -> None:
    probe = RegionProbe()
    result = compute_cams(probe, _probe_input())
    assert result.targets.tolist() == result.predictions.tolist() == [0]
    assert energy_inside_box(result.cams[0], TOP_RIGHT) > 0.8
    expected = torch.softmax(probe(_probe_input()), dim=1).detach().numpy()
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)
    assert result.confidences[0] == pytest.approx(expected.max(), rel=1e-5)


def test_a_none_target_explains_that_images_prediction() -> None:
    probe = RegionProbe()
    x = _probe_input().repeat(2, 1, 1, 1)
    x[1, 1, 20:32, 0:16] = 9.0  # image 1's strongest evidence is class 1's
    mixed = compute_cams(probe, x, targets=[2, None])
    assert mixed.predictions.tolist() == [0, 1]
    assert mixed.targets.tolist() == [2, 1]
    np.testing.assert_allclose(mixed.cams[1], compute_cams(probe, x[1:]).cams[0], atol=1e-6)
    assert energy_inside_box(mixed.cams[1], BOTTOM_LEFT) > 0.8


def test_leaves_the_model_as_it_was() -> None:
    probe = RegionProbe()
    probe.train()
    probe.fc.weight.grad = torch.full_like(probe.fc.weight, 7.0)
    x = _probe_input()
    with torch.no_grad():  # as from an evaluation loop
        compute_cams(probe, x)
    assert probe.training
    assert probe.act4.inplace
    assert torch.equal(probe.fc.weight.grad, torch.full_like(probe.fc.weight, 7.0))
    assert x.grad is None and not x.requires_grad
    for module in probe.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
        assert not module._backward_hooks
    probe.eval()
    compute_cams(probe, x)
    assert not probe.training


def test_works_inside_inference_mode() -> None:
    probe = RegionProbe()
    with torch.inference_mode():  # inputs made here cannot normally enter autograd
        x = _probe_input()
        result = compute_cams(probe, x, targets=[1])
    assert energy_inside_box(result.cams[0], BOTTOM_LEFT) > 0.8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_gives_the_cpu_maps() -> None:
    on_cpu = compute_cams(RegionProbe(), _probe_input(), targets=[0])
    on_gpu = compute_cams(RegionProbe().cuda(), _probe_input(), targets=[0])
    np.testing.assert_allclose(on_gpu.cams, on_cpu.cams, atol=1e-5)
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, rtol=1e-5)


def test_wrapped_models_are_unwrapped() -> None:
    probe = RegionProbe()
    wrapped = nn.DataParallel(probe)  # same .module convention as DDP
    assert unwrap_model(wrapped) is probe
    assert unwrap_model(torch.compile(wrapped)) is probe  # torch.compile's _orig_mod too
    result = compute_cams(wrapped, _probe_input(), targets=[1])
    assert energy_inside_box(result.cams[0], BOTTOM_LEFT) > 0.8


def test_bad_targets_and_inputs_get_a_clear_error() -> None:
    probe = RegionProbe()
    with pytest.raises(ValueError, match="one class each"):
        compute_cams(probe, _probe_input(), targets=[0, 1])
    with pytest.raises(ValueError, match="not a class index"):
        compute_cams(probe, _probe_input(), targets=[3])
    with pytest.raises(ValueError, match="float N x C x H x W"):
        compute_cams(probe, torch.zeros(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="need the model's mean and std"):
        compute_cams(probe, torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no act4"):
        compute_cams(nn.Sequential(nn.Conv2d(3, 3, 1)), _probe_input())


@pytest.fixture(scope="module")
def xception() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("legacy_xception", num_classes=5)


def _manual_grad_cam(model: nn.Module, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    """Grad-CAM written out from the paper, without pytorch-grad-cam."""
    model.eval()
    features = model.forward_features(x)
    logits = model.forward_head(features)
    score = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()
    (grads,) = torch.autograd.grad(score, features)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    low = cam.amin(dim=(2, 3), keepdim=True)
    cam = (cam - low) / (cam.amax(dim=(2, 3), keepdim=True) - low)
    cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].numpy()


def test_real_xception_matches_grad_cam_by_hand(xception: nn.Module) -> None:
    model = copy.deepcopy(xception)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    result = compute_cams(model, x, targets=[0, 1])
    assert result.cams.shape == (2, 64, 64)
    assert result.probabilities.shape == (2, 5)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    expected = _manual_grad_cam(model, x, [0, 1])
    assert expected.max() > 0.99  # a real map, not an all-zero one
    np.testing.assert_allclose(result.cams, expected, atol=1e-4)


def test_real_xception_frozen_backbone_is_deterministic(xception: nn.Module) -> None:
    model = copy.deepcopy(xception)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("fc."))
    model.train()
    running_mean = model.bn4.running_mean.clone()
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    first = compute_cams(model, x.repeat(2, 1, 1, 1), targets=[0, 1])
    second = compute_cams(model, x.repeat(2, 1, 1, 1), targets=[0, 1])
    np.testing.assert_array_equal(first.cams, second.cams)
    assert first.cams.max() == pytest.approx(1.0)
    # Different classes are explained by different evidence.
    assert np.abs(first.cams[0] - first.cams[1]).max() > 0.1
    assert model.training and model.act4.inplace
    assert not model.act4._forward_hooks and not model.act4._backward_hooks
    # The CAM's forward ran in eval mode: BatchNorm statistics are untouched.
    assert torch.equal(model.bn4.running_mean, running_mean)


def test_the_backward_pass_stops_at_act4_and_the_map_size_is_kept(xception: nn.Module) -> None:
    model = copy.deepcopy(xception)
    reached = []
    model.conv1.register_full_backward_hook(lambda *_: reached.append("conv1"))
    model.block12.register_full_backward_hook(lambda *_: reached.append("block12"))
    torch.manual_seed(2)
    x = torch.randn(2, 3, 128, 96)
    result = compute_cams(model, x, targets=[0, 1])
    # Grad-CAM needs the score's gradient at act4 only: nothing before it is differentiated.
    assert reached == []
    assert result.map_size == (4, 3)  # (height, width)
    assert result.cams.shape == (2, 128, 96) and result.cams.max() > 0.99
