"""One epoch of training, and one pass of evaluation, in plain PyTorch.

The engine knows no Ray: it takes a model, a loader of ``(images, labels)``
batches and an optimizer and returns plain floats. Under ``torch.distributed``
(as Ray Train sets it up) the sums behind the metrics are all-reduced, so
every rank returns the numbers of the whole data set.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

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
    max_grad_norm: float | None = None,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``, stepping ``scheduler`` after every batch.

    With ``mixup_fn`` the loss is taken against the mixed soft targets, while
    ``acc`` and ``top5`` compare the predictions with the original hard labels.
    A channels-last run expects the model already converted by the caller.

    Returns:
        ``loss`` (mean per image), ``acc``, ``top5``, ``images``, ``seconds``,
        ``images_per_second`` and ``lr`` (the head group's learning rate at the end).
    """
    device = torch.device(device)
    model.train()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    started = time.perf_counter()
    for batch in loader:
        images, labels = _to_device(batch, device, channels_last)
        targets = labels
        if mixup_fn is not None:
            if len(images) % 2:
                raise ValueError(
                    f"mixup/cutmix needs an even batch, got {len(images)} images: use an even "
                    "batch size and drop_last=True for the training loader"
                )
            images, targets = mixup_fn(images, labels)
        with _autocast(device, amp_dtype):
            logits = model(images)
            loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        totals += _batch_sums(logits.detach(), labels, loss.detach())
    metrics = _finish(totals, started)
    metrics["lr"] = float(_head_group(optimizer)["lr"])
    return metrics


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Score ``model`` on ``loader`` in eval mode.

    The loss is plain cross entropy (no label smoothing), so it compares across
    runs with different training losses.

    Returns:
        ``loss``, ``acc``, ``top5``, ``images``, ``seconds`` and ``images_per_second``.
    """
    device = torch.device(device)
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    started = time.perf_counter()
    for batch in loader:
        images, labels = _to_device(batch, device, channels_last)
        with _autocast(device, amp_dtype):
            logits = model(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        totals += _batch_sums(logits, labels, loss)
    return _finish(totals, started)


def _to_device(batch: Any, device: torch.device, channels_last: bool) -> Batch:
    images, labels = batch[0], batch[1]
    if bool((labels < 0).any()):
        raise ValueError(
            "a batch holds labels below 0 (test images of unknown class are stored with "
            "label -1); only labelled images can be trained on or scored"
        )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    images = images.to(device, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True)


def _autocast(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if amp_dtype is None:
        return contextlib.nullcontext()
    if amp_dtype != torch.bfloat16:
        raise ValueError(
            f"amp_dtype={amp_dtype} is not supported: use torch.bfloat16 (float16 would need "
            "loss scaling) or None for full precision"
        )
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _batch_sums(logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Loss sum, top-1 hits, top-k hits and image count of one batch (k = min(5, classes))."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top == labels[:, None]
    count = labels.shape[0]
    return torch.stack(
        [
            loss.double() * count,
            hits[:, 0].sum().double(),
            hits.any(dim=1).sum().double(),
            torch.tensor(count, dtype=torch.float64, device=logits.device),
        ]
    )


def _finish(totals: torch.Tensor, started: float) -> dict[str, float]:
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
