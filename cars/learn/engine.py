"""One epoch of training, precise BatchNorm statistics, and one pass of evaluation.

The engine knows no Ray: it takes a model, a loader of ``(images, labels)``
batches and an optimizer and returns plain floats. Images arrive as uint8 pixels
and are normalised on the device (:mod:`cars.data.normalize`), with the model's
own mean and std unless a ``normalizer`` says otherwise. Under ``torch.distributed``
(as Ray Train sets it up) the sums behind the metrics, and the recomputed
BatchNorm statistics, are all-reduced, so every rank returns the numbers of the
whole data set and holds the same model.

No step waits for the device: the loss, hit and image sums accumulate in a
tensor on the device and are read once, at the end of the pass, so the host
queues the next batch's copy and kernels while the device still runs the last.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cars.data.normalize import InputNormalizer, create_input_normalizer
from cars.learn.precision import autocast

Batch = tuple[torch.Tensor, torch.Tensor]


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    mixup_fn: Callable[[torch.Tensor, torch.Tensor], Batch] | None = None,
    channels_last: bool = False,
    normalizer: InputNormalizer | None = None,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``, stepping ``scheduler`` after every batch.

    With ``mixup_fn`` the loss is taken against the mixed soft targets, while
    ``acc`` and ``top5`` compare the predictions with the original hard labels.
    A channels-last run expects the model already converted by the caller.
    ``normalizer`` turns the loader's images into the model's input on the device
    (by default from the model's pretrained config; pass one with the policy's
    random erasing for training).

    Returns:
        ``loss`` (mean per image), ``acc``, ``top5``, ``images``, ``seconds``,
        ``images_per_second`` and ``lr`` (the head group's learning rate at the end).
    """
    device = torch.device(device)
    normalizer = normalizer or create_input_normalizer(model)
    model.train()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    started = time.perf_counter()
    for batch in loader:
        images, labels = _to_device(batch, device, channels_last, normalizer)
        targets = labels
        if mixup_fn is not None:
            if len(images) % 2:
                raise ValueError(
                    f"mixup/cutmix needs an even batch, got {len(images)} images: use an even "
                    "batch size and drop_last=True for the training loader"
                )
            images, targets = mixup_fn(images, labels)
        with autocast(device, amp_dtype):
            logits = model(images)
            loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        totals += _batch_sums(logits.detach(), labels, loss.detach())
    metrics = _finish(totals, started)
    metrics["lr"] = float(_head_group(optimizer)["lr"])
    return metrics


@torch.no_grad()
def update_batchnorm_statistics(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    num_batches: int,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    normalizer: InputNormalizer | None = None,
) -> dict[str, float]:
    """Recompute the running statistics of the trainable BatchNorm layers ("precise BN").

    During a short run the running averages trail the weights that moved under
    them, and eval mode would score a network that never existed. This follows
    ``torch.optim.swa_utils.update_bn`` (reset, then a cumulative average with
    ``momentum=None`` over the first ``num_batches`` batches, in train mode,
    without gradients), as pycls and detectron2 do after training, except that
    it touches only the layers that ``model.train()`` puts in training:
    ``update_bn`` would also reset the frozen ones, which stay in eval mode and
    must keep the statistics they were loaded with. Under ``torch.distributed``
    every rank must pass the same ``num_batches``; the statistics are averaged
    over the ranks, so all of them hold the same model.

    Returns:
        ``batches`` (per rank), ``images`` (over all ranks) and ``seconds``;
        zeros when the model has no trainable BatchNorm layer.
    """
    device = torch.device(device)
    normalizer = normalizer or create_input_normalizer(model)
    started = time.perf_counter()
    was_training = model.training
    model.train()
    layers = [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    if not layers or num_batches < 1:
        model.train(was_training)
        return {"batches": 0, "images": 0, "seconds": 0.0}
    momenta = {layer: layer.momentum for layer in layers}
    batches, images_seen = 0, torch.zeros((), dtype=torch.float64, device=device)
    try:
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        for batch in itertools.islice(loader, num_batches):
            images, _ = _to_device(batch, device, channels_last, normalizer)
            with autocast(device, amp_dtype):
                model(images)
            batches += 1
            images_seen += len(images)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        model.train(was_training)
    if batches == 0:
        raise ValueError(
            "the loader yielded no batch to recompute the BatchNorm statistics from; check "
            "the training split and batch size"
        )
    if dist.is_available() and dist.is_initialized():
        _average_over_ranks(layers)
        dist.all_reduce(images_seen)
    return {
        "batches": batches,
        "images": int(images_seen),
        "seconds": time.perf_counter() - started,
    }


def _average_over_ranks(layers: list[_BatchNorm]) -> None:
    """Replace each layer's running mean and variance by their mean over the ranks.

    Every rank averaged the same number of equal batches, so the mean of the
    ranks' averages is the average over all their batches.
    """
    buffers = [b for layer in layers for b in (layer.running_mean, layer.running_var)]
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for buffer in buffers:
        size = buffer.numel()
        buffer.copy_(flat[offset : offset + size].view_as(buffer))
        offset += size


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    normalizer: InputNormalizer | None = None,
) -> dict[str, float]:
    """Score ``model`` on ``loader`` in eval mode.

    The loss is plain cross entropy (no label smoothing), so it compares across
    runs with different training losses.

    Returns:
        ``loss``, ``acc``, ``top5``, ``images``, ``seconds`` and ``images_per_second``.
    """
    device = torch.device(device)
    normalizer = normalizer or create_input_normalizer(model)
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    started = time.perf_counter()
    for batch in loader:
        images, labels = _to_device(batch, device, channels_last, normalizer)
        with autocast(device, amp_dtype):
            logits = model(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        totals += _batch_sums(logits, labels, loss)
    return _finish(totals, started)


def _to_device(
    batch: Any, device: torch.device, channels_last: bool, normalizer: InputNormalizer
) -> Batch:
    """A batch's model input and labels on ``device``.

    Labels are checked while still on the host, as loaders deliver them; labels
    a caller already placed on an accelerator are its to check, since reading
    them back would make every step wait for the device.
    """
    images, labels = batch[0], batch[1]
    if labels.device.type == "cpu" and bool((labels < 0).any()):
        raise ValueError(
            "a batch holds labels below 0 (test images of unknown class are stored with "
            "label -1); only labelled images can be trained on or scored"
        )
    return normalizer(images, device, channels_last), labels.to(device, non_blocking=True)


def topk_hits(
    scores: torch.Tensor, labels: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, whether its label is the top-scoring class, and whether it is among the top k.

    ``k`` is capped at the number of classes. Hits, not timm's ``accuracy``:
    that returns float percentages, and the engine all-reduces exact counts.
    """
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return hits[:, 0], hits.any(dim=1)


def _batch_sums(logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Loss sum, top-1 hits, top-5 hits and image count of one batch."""
    top1, top5 = topk_hits(logits, labels)
    count = labels.shape[0]
    return torch.stack(
        [
            loss.double() * count,
            top1.sum().double(),
            top5.sum().double(),
            # Filled on the device: torch.tensor(count, device=...) would copy from the
            # host and wait for the device at every step.
            torch.full((), count, dtype=torch.float64, device=logits.device),
        ]
    )


def _finish(totals: torch.Tensor, started: float) -> dict[str, float]:
    """The pass's metrics from its sums, summed over the ranks: the one read from the device."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    loss_sum, top1, top5, count = totals.tolist()
    seconds = time.perf_counter() - started
    if count == 0:
        raise ValueError("the loader yielded no images; check the data set split and batch size")
    return {
        "loss": loss_sum / count,
        "acc": top1 / count,
        "top5": top5 / count,
        "images": int(count),
        "seconds": seconds,
        "images_per_second": count / seconds,
    }


def _head_group(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    # create_optimizer names its groups; any other optimizer reports its first group.
    for group in optimizer.param_groups:
        if group.get("name") == "head":
            return group
    return optimizer.param_groups[0]
