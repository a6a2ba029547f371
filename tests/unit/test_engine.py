"""The Ray-free engine: exact metrics, per-batch scheduling, mixup against hard labels,
bf16 autocast, metrics summed over distributed ranks, a real Xception that learns, and
precise BatchNorm statistics (trainable layers only, the same on every rank)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from devices import DEVICES
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, TensorDataset

from cars.config import TrainConfig
from cars.learn.engine import evaluate, topk_hits, train_one_epoch, update_batchnorm_statistics
from cars.learn.model import EvalBatchNorm2d, build_model
from cars.learn.optim import create_loss, create_mixup, create_optimizer, create_scheduler

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


def test_top_k_hits_cap_k_at_the_class_count() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    top1, top5 = topk_hits(scores, torch.tensor([1, 2, 0]))
    assert top1.tolist() == [True, False, False]
    assert top5.tolist() == [True, True, True]  # 3 classes: every label is in the "top 5"
    _, top2 = topk_hits(scores, torch.tensor([1, 2, 0]), k=2)
    assert top2.tolist() == [True, False, False]


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
    # At 32 px act4 is a single cell, and the network still tells the four quadrants
    # apart within two epochs (on every seed tried).
    images = torch.randn(16, 3, 32, 32) * 0.5
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 2)  # each class lights up its own quadrant
        image[:, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] += 1.5
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True)
    config = TrainConfig(
        data="d", regime="scratch", epochs=2, warmup_epochs=0, weight_decay=0.0, label_smoothing=0
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


def _bn_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _half_frozen_net() -> nn.Sequential:
    """A conv, a frozen BatchNorm with loaded statistics, a conv and a trainable BatchNorm."""
    torch.manual_seed(0)
    frozen = EvalBatchNorm2d(4)
    frozen.running_mean.uniform_(-1, 1)
    frozen.running_var.uniform_(0.5, 2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        frozen,
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    ).eval()


def test_precise_statistics_average_the_batches_and_spare_frozen_layers() -> None:
    model = _half_frozen_net()
    frozen_before = {k: v.clone() for k, v in model[1].state_dict().items()}
    inputs: list[torch.Tensor] = []
    model[4].register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach()))
    loader = DataLoader(_images(12, 3), batch_size=4)

    result = update_batchnorm_statistics(model, loader, num_batches=2, device="cpu")

    assert (result["batches"], result["images"]) == (2, 8)  # the third batch is not read
    for key, value in model[1].state_dict().items():
        assert torch.equal(value, frozen_before[key]), f"frozen {key} changed"
    # The trainable layer holds the mean over the two batches of each batch's mean and
    # (unbiased) variance, whatever it held before, and keeps its momentum.
    expected_mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(dim=0)
    expected_var = torch.stack([x.var(dim=(0, 2, 3)) for x in inputs]).mean(dim=0)
    assert len(inputs) == 2
    assert model[4].running_mean == pytest.approx(expected_mean, abs=1e-6)
    assert model[4].running_var == pytest.approx(expected_var, rel=1e-5)
    assert model[4].momentum == 0.1
    assert not model.training  # the mode it was in


def test_precise_statistics_skip_a_model_without_trainable_batchnorm() -> None:
    model = _half_frozen_net()
    model[4] = EvalBatchNorm2d(6)
    before = _bn_statistics(model)

    class Unread:
        def __iter__(self) -> None:
            raise AssertionError("a model with only frozen BatchNorm layers read the loader")

    result = update_batchnorm_statistics(model, Unread(), num_batches=4, device="cpu")
    assert result["batches"] == result["images"] == 0
    assert all(torch.equal(v, before[k]) for k, v in _bn_statistics(model).items())


def test_precise_statistics_refuse_an_empty_loader() -> None:
    with pytest.raises(ValueError, match="no batch"):
        update_batchnorm_statistics(_tiny_net(3), [], num_batches=2, device="cpu")


def _quadrant_images(n: int, size: int, seed: int) -> TensorDataset:
    """Noise images in which each of 4 classes lights up its own quadrant."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.randn(n, 3, size, size, generator=generator) * 0.5
    half = size // 2
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 2)
        image[:, row * half : (row + 1) * half, col * half : (col + 1) * half] += 1.5
    return TensorDataset(images, labels)


# Two of the 32 validation images: the precise statistics come from other batches of the
# same training images as the reference's, so their means and variances differ a little.
ACC_TOLERANCE = 2 / 32


@pytest.mark.slow
def test_eval_mode_scores_the_trained_weights_after_a_short_scratch_run() -> None:
    """One epoch of 6 steps from scratch, ended as the Ray Train loop ends it: in eval mode
    the weights must score what they score with statistics of their own activations."""
    torch.manual_seed(0)
    train_set, val_set = _quadrant_images(48, 32, seed=1), _quadrant_images(32, 32, seed=2)
    config = TrainConfig(
        data="d", regime="scratch", epochs=1, batch_size=8, image_size=32, label_smoothing=0
    )
    loader = DataLoader(
        train_set, batch_size=8, shuffle=True, drop_last=True, generator=torch.Generator()
    )
    val_loader = DataLoader(val_set, batch_size=16)
    model = build_model("scratch", 4)
    optimizer = create_optimizer(model, config)
    train_one_epoch(
        model,
        loader,
        optimizer,
        loss_fn=create_loss(config, 4),
        scheduler=create_scheduler(optimizer, config, len(loader)),
        device="cpu",
    )
    update_batchnorm_statistics(
        model, loader, num_batches=config.precise_bn_batches(len(loader)), device="cpu"
    )
    scored = evaluate(model, val_loader, device="cpu")

    # The reference: the same weights with statistics recomputed by PyTorch's own
    # primitive over the whole training set (scratch trains every BatchNorm layer).
    reference = copy.deepcopy(model)
    update_bn(DataLoader(train_set, batch_size=8, shuffle=True), reference)
    expected = evaluate(reference, val_loader, device="cpu")
    assert expected["acc"] >= 0.75, "the weights did not learn the task; nothing to compare"
    assert scored["acc"] == pytest.approx(expected["acc"], abs=ACC_TOLERANCE)
    assert scored["loss"] == pytest.approx(expected["loss"], abs=0.1)


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
        # Two batches of 2 per rank: images 0-3 on rank 0, 6-9 on rank 1.
        fresh = _tiny_net(3)
        update_batchnorm_statistics(
            fresh, DataLoader(shard, batch_size=2), num_batches=2, device="cpu"
        )
        statistics = {k: v.tolist() for k, v in _bn_statistics(fresh).items()}
        Path(out, f"rank{rank}.json").write_text(
            json.dumps({"eval": scored, "train": trained, "bn": statistics})
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each of 2 gloo ranks measured and recomputed, from one spawn."""
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_distributed_worker, args=(2, str(out / "store"), str(out)), nprocs=2)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_every_rank_returns_the_metrics_of_all_ranks(rank_results: list[dict]) -> None:
    single = evaluate(_tiny_net(3), DataLoader(_images(10, 3), batch_size=4), device="cpu")
    for result in rank_results:
        for key in ("loss", "acc", "top5"):
            assert result["eval"][key] == pytest.approx(single[key], rel=1e-6), key
        assert result["eval"]["images"] == result["train"]["images"] == 10


@pytest.mark.slow
def test_every_rank_holds_the_batchnorm_statistics_of_all_ranks(rank_results: list[dict]) -> None:
    ranks = [result["bn"] for result in rank_results]
    assert ranks[0] == ranks[1]  # identical, not merely close
    # One process over the same four batches gives the same averages.
    single = _tiny_net(3)
    dataset = _images(10, 3)
    batches = [dataset[i : i + 2] for i in (0, 2, 6, 8)]
    update_batchnorm_statistics(single, batches, num_batches=4, device="cpu")
    for key, value in _bn_statistics(single).items():
        assert torch.tensor(ranks[0][key]) == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("device", DEVICES)
def test_training_metrics_are_the_sums_of_every_step(device: str) -> None:
    """The sums kept on the device through the epoch give what each step's own figures give."""
    model = _tiny_net(5).to(device)
    seen: list[torch.Tensor] = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().float().cpu()))
    dataset = _images(11, 5)
    metrics = train_one_epoch(
        model,
        DataLoader(dataset, batch_size=4),  # batches of 4, 4 and 3
        torch.optim.SGD(model.parameters(), lr=0.0),  # the recorded outputs stay the model's
        loss_fn=nn.CrossEntropyLoss(),
        device=device,
    )
    labels = dataset.tensors[1]
    per_step = [(logits, labels[i * 4 : i * 4 + len(logits)]) for i, logits in enumerate(seen)]
    loss = sum(nn.functional.cross_entropy(x, y).item() * len(y) for x, y in per_step) / 11
    top1 = sum(int(topk_hits(x, y)[0].sum()) for x, y in per_step)
    top5 = sum(int(topk_hits(x, y)[1].sum()) for x, y in per_step)
    assert len(seen) == 3 and metrics["images"] == 11
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert (metrics["acc"], metrics["top5"]) == (top1 / 11, top5 / 11)


def _unsynced(batches: list) -> Iterator:
    """``batches``, with every CUDA call that makes the host wait for the device an error
    while the engine works on them; allowed again once they are used up."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield from batches
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_step_waits_for_the_device() -> None:
    """Training, precise BN and evaluation read nothing back from the GPU until a pass ends."""
    device = torch.device("cuda")
    config = TrainConfig(data="d", regime="scratch", epochs=2, batch_size=4, image_size=32)
    model = build_model("scratch", 4).to(device, memory_format=torch.channels_last)
    optimizer = create_optimizer(model, config)
    assert optimizer.defaults["fused"]
    generator = torch.Generator().manual_seed(0)
    # As a pinned loader hands them over: uint8 images and labels in page-locked host memory.
    batches = [
        (
            torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=generator),
            torch.randint(0, 4, (4,), generator=generator),
        )
        for _ in range(3)
    ]
    batches = [(images.pin_memory(), labels.pin_memory()) for images, labels in batches]
    kwargs = {"device": device, "amp_dtype": torch.bfloat16, "channels_last": True}
    train = {
        "loss_fn": create_loss(config, 4),
        "scheduler": create_scheduler(optimizer, config, len(batches)),
        **kwargs,
    }
    train_one_epoch(model, batches, optimizer, **train)  # cuDNN's kernel search, first
    metrics = train_one_epoch(model, _unsynced(batches), optimizer, **train)
    # One batch more than there are, so that the loader is used up before the pass ends.
    update_batchnorm_statistics(model, _unsynced(batches), num_batches=4, **kwargs)
    scored = evaluate(model, _unsynced(batches), **kwargs)
    assert metrics["images"] == scored["images"] == 12
    assert math.isfinite(metrics["loss"]) and math.isfinite(scored["loss"])
