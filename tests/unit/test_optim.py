"""Optimizer groups per regime, the warmup-cosine schedule (and its resumption), loss and mixup."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from devices import NEEDS_CUDA
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from cars.config import TrainConfig
from cars.learn.model import build_model, count_parameters
from cars.learn.optim import (
    create_loss,
    create_mixup,
    create_optimizer,
    create_scheduler,
    run_lr,
    scale_lr,
)


@pytest.fixture(scope="module")
def finetune_model() -> nn.Module:
    return build_model("finetune", 196, 2)


def _groups(optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {group["name"]: group for group in optimizer.param_groups}


def _names_in(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_scratch_trains_everything_at_one_lr_without_decay_on_biases_and_norms() -> None:
    model = build_model("scratch", 196)
    config = TrainConfig(data="d", regime="scratch", lr=0.02, weight_decay=0.05)
    groups = _groups(create_optimizer(model, config))
    assert list(groups) == ["head", "head_no_decay", "backbone", "backbone_no_decay"]
    assert {g["lr"] for g in groups.values()} == {0.02}
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == 21_208_556
    assert _names_in(model, groups["head"]) == {"fc.weight"}
    assert _names_in(model, groups["head_no_decay"]) == {"fc.bias"}
    no_decay = _names_in(model, groups["backbone_no_decay"])
    assert {"bn1.weight", "bn1.bias", "bn4.weight", "block5.rep.2.bias"} <= no_decay
    assert all(not name.endswith("conv1.weight") for name in no_decay)
    assert "block5.rep.1.pointwise.weight" in _names_in(model, groups["backbone"])
    assert groups["backbone"]["weight_decay"] == 0.05
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0


def test_pretrained_blocks_learn_slower_than_the_new_head(finetune_model: nn.Module) -> None:
    config = TrainConfig(
        data="d", regime="finetune", trainable_blocks=2, weights="imagenet", lr=1e-3
    )
    optimizer = create_optimizer(finetune_model, config)
    groups = _groups(optimizer)
    assert groups["head"]["lr"] == groups["head_no_decay"]["lr"] == 1e-3
    assert groups["backbone"]["lr"] == groups["backbone_no_decay"]["lr"] == pytest.approx(1e-4)
    # Only trainable parameters, and only the last two blocks besides the head.
    in_optimizer = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert in_optimizer == count_parameters(finetune_model)[0]
    backbone = _names_in(finetune_model, groups["backbone"])
    assert all(name.startswith(("block12.", "conv3.", "conv4.")) for name in backbone)


def test_random_backbone_learns_at_the_head_lr(finetune_model: nn.Module) -> None:
    config = TrainConfig(data="d", regime="finetune", trainable_blocks=2, lr=1e-3)
    assert {g["lr"] for g in create_optimizer(finetune_model, config).param_groups} == {1e-3}


def test_frozen_optimizes_the_head_only() -> None:
    model = build_model("frozen", 196)
    config = TrainConfig(data="d", regime="frozen", weights="imagenet")
    groups = _groups(create_optimizer(model, config))
    assert list(groups) == ["head", "head_no_decay"]


def test_sgd_option_uses_nesterov_momentum(finetune_model: nn.Module) -> None:
    config = TrainConfig(
        data="d", regime="finetune", trainable_blocks=2, optimizer="sgd", momentum=0.8
    )
    optimizer = create_optimizer(finetune_model, config)
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.8 for g in optimizer.param_groups)
    assert isinstance(
        create_optimizer(finetune_model, config.replace(optimizer="adamw")), torch.optim.AdamW
    )


def _tiny_optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        [
            {"name": "head", "params": [nn.Parameter(torch.zeros(2))], "lr": 1.0},
            {"name": "backbone", "params": [nn.Parameter(torch.zeros(2))], "lr": 0.1},
        ]
    )


def _run(optimizer, scheduler, steps: int) -> list[list[float]]:
    """The learning rates each batch trains with, stepping like the engine does."""
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_schedule_warms_up_then_decays_to_the_minimum_per_group() -> None:
    config = TrainConfig(data="d", epochs=4, warmup_epochs=1, min_lr_ratio=0.01)
    optimizer = _tiny_optimizer()
    lrs = _run(optimizer, create_scheduler(optimizer, config, steps_per_epoch=5), 20)
    head = [lr[0] for lr in lrs]
    assert head[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(head[4:]))
    assert head[4] > head[12] > head[19]
    assert head[-1] == pytest.approx(0.01)
    assert [lr[1] for lr in lrs] == pytest.approx([lr / 10 for lr in head])


def test_schedule_without_warmup_starts_at_the_base_lr() -> None:
    config = TrainConfig(data="d", epochs=2, warmup_epochs=0)
    optimizer = _tiny_optimizer()
    lrs = _run(optimizer, create_scheduler(optimizer, config, steps_per_epoch=3), 6)
    assert lrs[0] == pytest.approx([1.0, 0.1])
    assert lrs[-1] == pytest.approx([0.01, 0.001])


def test_resumed_schedule_continues_exactly_where_it_stopped() -> None:
    config = TrainConfig(data="d", epochs=5, warmup_epochs=1.5)
    steps = 4
    optimizer = _tiny_optimizer()
    uninterrupted = _run(optimizer, create_scheduler(optimizer, config, steps), 5 * steps)

    optimizer = _tiny_optimizer()
    scheduler = create_scheduler(optimizer, config, steps)
    first = _run(optimizer, scheduler, 2 * steps)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    optimizer = _tiny_optimizer()
    scheduler = create_scheduler(optimizer, config, steps)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert first + _run(optimizer, scheduler, 3 * steps) == uninterrupted


def test_schedule_needs_at_least_one_step() -> None:
    with pytest.raises(ValueError, match="steps_per_epoch=0"):
        create_scheduler(_tiny_optimizer(), TrainConfig(data="d"), 0)


def test_loss_smooths_labels_without_mixup() -> None:
    config = TrainConfig(data="d", label_smoothing=0.2)
    loss_fn = create_loss(config, 4)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    assert torch.allclose(loss_fn(logits, labels), expected)
    assert create_mixup(config, 4) is None


def test_mixup_gives_soft_targets_and_a_soft_target_loss() -> None:
    config = TrainConfig(data="d", mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    mixup = create_mixup(config, 4)
    assert isinstance(mixup, Mixup)
    assert isinstance(create_loss(config, 4), SoftTargetCrossEntropy)
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    _, targets = mixup(images, labels)
    assert targets.shape == (4, 4)
    assert torch.allclose(targets.sum(dim=1), torch.ones(4))
    assert bool((targets > 0).all())  # smoothing gives every class some mass


@pytest.mark.parametrize(
    ("optimizer", "batch_size", "expected"),
    [
        ("sgd", 256, 4e-3),  # linear: four times the batch, four times the rate
        ("sgd", 32, 0.5e-3),
        ("adamw", 256, 2e-3),  # square root: four times the batch, twice the rate
        ("adamw", 16, 0.5e-3),
        ("adamw", 64, 1e-3),
    ],
)
def test_rates_follow_the_batch_by_each_optimizer_s_rule(
    optimizer: str, batch_size: int, expected: float
) -> None:
    assert scale_lr(1e-3, batch_size, 64, optimizer) == pytest.approx(expected)
    assert scale_lr(1e-3, batch_size, None, optimizer) == 1e-3  # no reference: as given


def test_a_run_s_rate_follows_its_whole_global_batch(finetune_model: nn.Module) -> None:
    # 250 images over 4 workers is 62 per worker: 248 images per step in all.
    config = TrainConfig(
        data="d", lr=1e-3, lr_batch_size=62, batch_size=250, num_workers=4, weights="w",
        optimizer="sgd",
    )  # fmt: skip
    assert run_lr(config) == pytest.approx(4e-3)
    groups = _groups(create_optimizer(finetune_model, config))
    assert groups["head"]["lr"] == pytest.approx(4e-3)
    assert groups["backbone"]["lr"] == pytest.approx(4e-3 * config.backbone_lr_mult)
    unscaled = _groups(create_optimizer(finetune_model, config.replace(lr_batch_size=None)))
    assert unscaled["head"]["lr"] == 1e-3


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_optimizer_steps_are_fused_only_where_asked_or_on_a_gpu(optimizer: str) -> None:
    model = build_model("frozen", 4)
    config = TrainConfig(data="d", regime="frozen", optimizer=optimizer)
    assert not create_optimizer(model, config).defaults["fused"]  # CPU: torch's default
    fused = create_optimizer(model, config, fused=True)
    assert fused.defaults["fused"]
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = model.fc.weight.detach().clone()
    fused.step()
    assert not torch.equal(model.fc.weight, before)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NEEDS_CUDA)])
def test_a_model_on_the_gpu_gets_fused_optimizer_steps(device: str) -> None:
    model = build_model("finetune", 4, 2).to(device)
    config = TrainConfig(data="d", trainable_blocks=2, weights="w")
    assert create_optimizer(model, config).defaults["fused"]
    assert not create_optimizer(model, config, fused=False).defaults["fused"]
