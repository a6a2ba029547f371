"""The Ray-free engine: exact metrics, per-batch scheduling, mixup against hard labels,
bf16 autocast, metrics summed over distributed ranks, and a real Xception that learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cars.config import TrainConfig
from cars.engine import evaluate, train_one_epoch
from cars.model import build_model
from cars.optim import create_loss, create_mixup, create_optimizer, create_scheduler

METRIC_KEYS = {"loss", "acc", "top5", "images", "seconds", "images_per_second"}


def _tiny_net(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def _images(n: int, num_classes: int, size: int = 16) -> TensorDataset:
    torch.manual_seed(1)
    return TensorDataset(torch.randn(n, 3, size, size), torch.arange(n) % num_classes)


def _ranked_logits(ranks: list[int], labels: list[int], num_classes: int) -> torch.Tensor:
    """Logits in which each label sits at the given rank (0 = the top prediction)."""
    rows = []
    for rank, label in zip(ranks, labels, strict=True):
        others = [c for c in range(num_classes) if c != label]
        order = [*others[:rank], label, *others[rank:]]
        row = torch.empty(num_classes)
        row[order] = torch.linspace(3.0, -3.0, num_classes)
        rows.append(row)
    return torch.stack(rows)


def test_evaluate_gives_exact_loss_top1_and_top5() -> None:
    labels = [0, 1, 2, 3, 4, 5]
    ranks = [0, 0, 1, 3, 5, 6]  # top-1 hits 2 of 6, top-5 hits 4 of 6
    logits = _ranked_logits(ranks, labels, num_classes=7)
    targets = torch.tensor(labels)
    loader = DataLoader(TensorDataset(logits, targets), batch_size=4)  # batches of 4 and 2
    metrics = evaluate(nn.Identity(), loader, device="cpu")
    assert set(metrics) == METRIC_KEYS
    assert metrics["images"] == 6
    assert metrics["acc"] == pytest.approx(2 / 6)
    assert metrics["top5"] == pytest.approx(4 / 6)
    assert metrics["loss"] == pytest.approx(nn.functional.cross_entropy(logits, targets).item())
    assert metrics["images_per_second"] == pytest.approx(6 / metrics["seconds"])


def test_top5_with_fewer_than_five_classes_is_top_all() -> None:
    logits = _ranked_logits([2, 1, 0], [0, 1, 2], num_classes=3)
    loader = DataLoader(TensorDataset(logits, torch.tensor([0, 1, 2])), batch_size=3)
    metrics = evaluate(nn.Identity(), loader, device="cpu")
    assert metrics["top5"] == 1.0
    assert metrics["acc"] == pytest.approx(1 / 3)


def test_train_one_epoch_steps_the_schedule_per_batch_and_reports_the_head_lr() -> None:
    model = _tiny_net(3)
    head, body = list(model[-1].parameters()), list(model[:-1].parameters())
    optimizer = torch.optim.SGD(
        [{"name": "backbone", "params": body, "lr": 0.01}, {"name": "head", "params": head}],
        lr=0.1,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    loader = DataLoader(_images(10, 3), batch_size=4)  # 3 batches
    metrics = train_one_epoch(
        model, loader, optimizer, loss_fn=nn.CrossEntropyLoss(), scheduler=scheduler, device="cpu"
    )
    assert set(metrics) == {*METRIC_KEYS, "lr"}
    assert metrics["images"] == 10
    assert scheduler.last_epoch == 3
    assert metrics["lr"] == pytest.approx(0.1 / 4)
    assert 0 <= metrics["acc"] <= metrics["top5"] == 1.0
    assert model.training


def test_mixup_accuracy_is_measured_against_the_hard_labels() -> None:
    model = _tiny_net(4)
    seen: list[torch.Tensor] = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    dataset = _images(8, 4)
    config = TrainConfig(data="d", mixup=0.4, cutmix=1.0)
    metrics = train_one_epoch(
        model,
        DataLoader(dataset, batch_size=4),
        torch.optim.SGD(model.parameters(), lr=0.0),  # outputs stay those recorded
        loss_fn=create_loss(config, 4),
        mixup_fn=create_mixup(config, 4),
        device="cpu",
    )
    hits = (torch.cat(seen).argmax(dim=1) == dataset.tensors[1]).sum().item()
    assert metrics["acc"] == pytest.approx(hits / 8)
    assert metrics["images"] == 8


def test_mixup_refuses_an_odd_batch_with_the_fix() -> None:
    config = TrainConfig(data="d", mixup=0.2)
    with pytest.raises(ValueError, match="drop_last=True"):
        train_one_epoch(
            _tiny_net(3),
            DataLoader(_images(3, 3), batch_size=3),
            torch.optim.SGD(_tiny_net(3).parameters(), lr=0.1),
            loss_fn=create_loss(config, 3),
            mixup_fn=create_mixup(config, 3),
            device="cpu",
        )


def test_gradient_clipping_bounds_the_update() -> None:
    def update_norm(max_grad_norm: float | None) -> float:
        model = _tiny_net(3)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_one_epoch(
            model,
            DataLoader(_images(4, 3), batch_size=4),
            torch.optim.SGD(model.parameters(), lr=1.0),
            loss_fn=nn.CrossEntropyLoss(),
            device="cpu",
            max_grad_norm=max_grad_norm,
        )
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return (after - before).norm().item()

    assert update_norm(1e-3) == pytest.approx(1e-3, rel=1e-3)
    assert update_norm(None) > 1e-2


def test_bf16_autocast_and_channels_last_run_on_cpu() -> None:
    model = _tiny_net(3).to(memory_format=torch.channels_last)
    formats: list[bool] = []
    model.register_forward_pre_hook(
        lambda _m, args: formats.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    loader = DataLoader(_images(8, 3), batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters())
    kwargs = {"device": "cpu", "amp_dtype": torch.bfloat16, "channels_last": True}
    trained = train_one_epoch(model, loader, optimizer, loss_fn=nn.CrossEntropyLoss(), **kwargs)
    scored = evaluate(model, loader, **kwargs)
    assert all(formats) and len(formats) == 4
    assert torch.isfinite(torch.tensor([trained["loss"], scored["loss"]])).all()
    with pytest.raises(ValueError, match=r"use torch\.bfloat16"):
        evaluate(model, loader, device="cpu", amp_dtype=torch.float16)


def test_unlabelled_images_and_empty_loaders_are_refused() -> None:
    unlabelled = TensorDataset(torch.randn(2, 3, 8, 8), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="label -1"):
        evaluate(_tiny_net(3), DataLoader(unlabelled, batch_size=2), device="cpu")
    with pytest.raises(ValueError, match="no images"):
        evaluate(_tiny_net(3), [], device="cpu")


def test_xception_learns_a_tiny_task() -> None:
    torch.manual_seed(0)
    num_classes = 4
    labels = torch.arange(16) % num_classes
    images = torch.randn(16, 3, 64, 64) * 0.5
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 2)  # each class lights up its own quadrant
        image[:, row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32] += 1.5
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True)
    config = TrainConfig(
        data="d", regime="scratch", epochs=3, warmup_epochs=0, weight_decay=0.0, label_smoothing=0
    )
    model = build_model("scratch", num_classes)
    optimizer = create_optimizer(model, config)
    scheduler = create_scheduler(optimizer, config, len(loader))
    epochs = [
        train_one_epoch(
            model,
            loader,
            optimizer,
            loss_fn=create_loss(config, num_classes),
            scheduler=scheduler,
            device="cpu",
        )
        for _ in range(config.epochs)
    ]
    assert epochs[-1]["loss"] < 0.5 * epochs[0]["loss"]
    assert epochs[-1]["acc"] > epochs[0]["acc"]
    assert epochs[-1]["acc"] >= 0.75
    assert epochs[-1]["lr"] == pytest.approx(config.lr * config.min_lr_ratio)


def _distributed_worker(rank: int, world_size: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        dataset = _images(10, 3)
        # Unequal shards (6 and 4 images), so only summing, not averaging, comes out right.
        shard = torch.utils.data.Subset(dataset, range(6) if rank == 0 else range(6, 10))
        model = _tiny_net(3)
        scored = evaluate(model, DataLoader(shard, batch_size=4), device="cpu")
        trained = train_one_epoch(
            model,
            DataLoader(shard, batch_size=2),
            torch.optim.SGD(model.parameters(), lr=0.0),
            loss_fn=nn.CrossEntropyLoss(),
            device="cpu",
        )
        Path(out, f"rank{rank}.json").write_text(json.dumps({"eval": scored, "train": trained}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_returns_the_metrics_of_all_ranks(tmp_path: Path) -> None:
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    single = evaluate(_tiny_net(3), DataLoader(_images(10, 3), batch_size=4), device="cpu")
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for key in ("loss", "acc", "top5"):
            assert result["eval"][key] == pytest.approx(single[key], rel=1e-6), key
        assert result["eval"]["images"] == result["train"]["images"] == 10
