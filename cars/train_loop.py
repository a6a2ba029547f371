"""The training loop each Ray Train worker runs.

The loop itself lives in :mod:`cars.engine` and knows nothing of Ray; this
module shards the data, wraps the model for DDP, reports each epoch's metrics
with a checkpoint, and resumes from ``ray.train.get_checkpoint()`` after a
restart. Only the workers import it (see :func:`cars.train.train_fn_per_worker`).
"""

from __future__ import annotations

import importlib
import logging
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader, Subset

from cars.checkpoint import save_checkpoint
from cars.config import METRIC, TrainConfig
from cars.data import (
    CarsDataset,
    create_input_normalizer,
    create_random_erasing,
    create_transform_for,
    read_dataset_info,
)
from cars.engine import evaluate, train_one_epoch, update_batchnorm_statistics
from cars.history import write_history
from cars.model import build_model, count_parameters
from cars.optim import create_loss, create_mixup
from cars.training_state import create_training_state

# An empty val split (every class too small to hold an image out) has no score:
# NaN, which Tune, ASHA and Train's checkpoint ranking treat as missing, and the
# report shows as missing.
NO_VAL: dict[str, float] = {"loss": math.nan, "acc": math.nan, "top5": math.nan, "images": 0}


def resolve_loader_workers(config: TrainConfig) -> int:
    """DataLoader worker processes per training worker.

    On a GPU the decoding must keep up with the device, so every spare CPU of the
    worker's reservation decodes; on a CPU the training itself needs the cores.
    """
    if config.loader_workers is not None:
        return config.loader_workers
    if config.use_gpu:
        return max(2, int(config.cpus_per_worker) - 1)
    return 0


def create_datasets(config: TrainConfig) -> tuple[CarsDataset, CarsDataset]:
    """The run's training set (with its augmentation) and validation set (deterministic)."""
    crop = {"bbox_crop": config.bbox_crop, "bbox_margin": config.bbox_margin}
    train_set = CarsDataset(
        config.data,
        "train",
        create_transform_for(config.augment, config.image_size, is_training=True),
        **crop,
    )
    val_set = CarsDataset(
        config.data,
        "val",
        create_transform_for("none", config.image_size, is_training=False),
        **crop,
    )
    return train_set, val_set


def _create_loaders(
    config: TrainConfig, rank: int, world_size: int, pin_memory: bool
) -> tuple[DataLoader, DataLoader]:
    """The training loader (sharded by Ray's DistributedSampler) and this rank's val shard."""
    train_set, val_set = create_datasets(config)
    if rank == 0 and train_set.uncropped + val_set.uncropped:
        print(
            f"--bbox-crop: {train_set.uncropped} of {len(train_set)} train and "
            f"{val_set.uncropped} of {len(val_set)} val images have no known box; "
            "they are used whole",
            flush=True,
        )
    workers = resolve_loader_workers(config)
    common: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": workers > 0,
    }
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size_per_worker,
        shuffle=True,
        drop_last=len(train_set) >= config.batch_size,
        generator=generator,
        **common,
    )
    # Validation shards without padding (a DistributedSampler would repeat images
    # to even out the shards); the engine all-reduces the sums, so every image
    # counts exactly once.
    val_shard = Subset(val_set, list(range(rank, len(val_set), world_size)))
    val_loader = DataLoader(val_shard, batch_size=config.batch_size_per_worker, **common)
    return ray.train.torch.prepare_data_loader(train_loader), val_loader


def _quiet_report_echo() -> None:
    """Stop Ray Train echoing every report (metrics and checkpoint) at INFO.

    Ray 2.60 logs each ``ray.train.report`` under a logger named by its file
    path, which ``LoggingConfig(log_level=...)`` does not reach; rank 0's epoch
    line already says what was reported.
    """
    try:
        module = importlib.import_module("ray.train.v2._internal.execution.context")
    except ImportError:
        return
    logging.getLogger(module.__file__).setLevel(logging.WARNING)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def format_epoch(metrics: Mapping[str, Any], epochs: int) -> str:
    """One line of an epoch's results, as the jobs print them."""
    return (
        f"epoch {metrics['epoch']}/{epochs}  "
        f"train loss {metrics['train_loss']:.3f} acc {metrics['train_acc']:.3f} | "
        f"val loss {metrics['val_loss']:.3f} acc {metrics[METRIC]:.3f} "
        f"top5 {metrics['val_top5']:.3f} | lr {metrics['lr']:.2e} | "
        f"{metrics['epoch_seconds']:.1f} s, {metrics['images_per_second']:.0f} img/s"
    )


def run_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train loop run by every worker: train, evaluate, report, checkpoint.

    Args:
        loop_config: ``TrainConfig.to_dict()``; rebuilt and validated here.
    """
    config = TrainConfig.from_dict(loop_config)
    _quiet_report_echo()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    on_cuda = device.type == "cuda"
    if not on_cuda:
        torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed)

    info = read_dataset_info(config.data)
    model = build_model(
        config.regime,
        info.num_classes,
        config.trainable_blocks,
        config.weights,
        class_names=info.class_names,
    )
    trainable_params, total_params = count_parameters(model)

    train_loader, val_loader = _create_loaders(config, rank, world_size, on_cuda)
    has_val = info.counts.get("val", 0) > 0
    loss_fn = create_loss(config, info.num_classes)
    mixup_fn = create_mixup(config, info.num_classes)

    # The model goes to its device before the optimizer state is loaded (see
    # create_training_state). Channels-last speeds up the convolutions both on
    # GPUs and in oneDNN on CPUs (Xception's separable convolutions train ~15 %
    # faster on one CPU thread).
    model = model.to(device, memory_format=torch.channels_last)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        state = create_training_state(model, config, len(train_loader))
    else:
        with checkpoint.as_directory() as directory:
            state = create_training_state(model, config, len(train_loader), directory)
    optimizer, scheduler, history = state.optimizer, state.scheduler, state.history
    model = ray.train.torch.prepare_model(model)
    if config.compile:
        model = torch.compile(model)
    amp_dtype = torch.bfloat16 if on_cuda else None
    # The policy's random erasing runs on the device, after normalisation, on training
    # batches (precise BN's included: they are training batches); validation sees none.
    train_inputs = create_input_normalizer(
        model, erasing=create_random_erasing(config.augment, device)
    )

    for epoch in range(state.start_epoch, config.epochs + 1):
        if world_size > 1:
            train_loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        train = train_one_epoch(
            model,
            train_loader,
            optimizer,
            loss_fn=loss_fn,
            scheduler=scheduler,
            device=device,
            amp_dtype=amp_dtype,
            mixup_fn=mixup_fn,
            channels_last=True,
            normalizer=train_inputs,
        )
        # Recomputed from training batches, as pycls and detectron2 do: eval mode should
        # normalise with the statistics of the activations the weights were trained on.
        update_batchnorm_statistics(
            _unwrap(model),
            train_loader,
            num_batches=config.precise_bn_batches(len(train_loader)),
            device=device,
            amp_dtype=amp_dtype,
            channels_last=True,
            normalizer=train_inputs,
        )
        val = (
            evaluate(
                _unwrap(model), val_loader, device=device, amp_dtype=amp_dtype, channels_last=True
            )
            if has_val
            else NO_VAL
        )
        metrics = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_acc": train["acc"],
            "train_top5": train["top5"],
            "val_loss": val["loss"],
            METRIC: val["acc"],
            "val_top5": val["top5"],
            "lr": train["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "train_seconds": train["seconds"],
            "images_per_second": train["images_per_second"],
            "train_images": train["images"],
            "val_images": val["images"],
            "trainable_params": trainable_params,
            "total_params": total_params,
            "world_size": world_size,
        }
        history.append(metrics)
        if rank == 0:
            print(format_epoch(metrics, config.epochs), flush=True)
        _report(
            metrics,
            history=history,
            rank=rank,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            epoch=epoch,
            config=config,
            class_names=info.class_names,
        )


def _report(
    metrics: dict[str, Any],
    *,
    history: list[dict[str, Any]],
    rank: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    config: TrainConfig,
    class_names: Sequence[str],
) -> None:
    """Report from every rank (a barrier); only rank 0 writes the checkpoint."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            save_checkpoint(
                directory,
                model=_unwrap(getattr(model, "_orig_mod", model)),
                optimizer=optimizer,
                scheduler=scheduler,
                epoch=epoch,
                config=config.to_dict(),
                class_names=list(class_names),
                metrics=metrics,
            )
            write_history(directory, history)
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch-{epoch:04d}")
