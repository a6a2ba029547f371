"""The training loop of a run's every worker: train, evaluate, report, checkpoint.

The epoch itself lives in :mod:`cars.learn.engine` and knows nothing of Ray; this
module shards the data, builds the model, optimizer and loaders, resumes from the
session's checkpoint, and reports each epoch with a checkpoint. Where it runs is
its :class:`~cars.cluster.session.TrainSession`'s business: a Ray Train worker
(:func:`cars.cluster.train.train_fn_per_worker`) or a one-worker trial's own
process (:func:`cars.cluster.trial.train_driver_fn`). Only those processes
import it: it loads torch, timm and the data pipeline.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.utils import unwrap_model
from torch.utils.data import DataLoader, Dataset, Subset

from cars.cluster.devices import choose_device
from cars.cluster.session import TrainSession
from cars.config import METRIC, TrainConfig, selection_scores
from cars.data import (
    CarsDataset,
    DatasetInfo,
    create_input_normalizer,
    create_random_erasing,
    create_transform_for,
    read_dataset_info,
)
from cars.data.normalize import InputNormalizer
from cars.learn.checkpoint import save_checkpoint
from cars.learn.compiled import compile_model
from cars.learn.device import configure_device, loader_options, resolve_loader_workers
from cars.learn.engine import evaluate, train_one_epoch, update_batchnorm_statistics
from cars.learn.features import (
    FeatureCache,
    feature_head,
    load_or_compute_features,
    uses_feature_cache,
)
from cars.learn.history import write_history
from cars.learn.model import build_model, count_parameters
from cars.learn.optim import create_loss, create_mixup
from cars.learn.placement import Worker
from cars.learn.seeds import EpochSampler, SeededSamples, seed_epoch
from cars.learn.training_state import TrainingState, create_training_state

# An empty val split (every class too small to hold an image out) has no score:
# NaN, which Tune, ASHA and Train's checkpoint ranking treat as missing, and the
# report shows as missing.
NO_VAL: dict[str, float] = {"loss": math.nan, "acc": math.nan, "top5": math.nan, "images": 0}


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


def create_train_loader(train_set: Dataset, config: TrainConfig, worker: Worker) -> DataLoader:
    """This rank's training loader: its shard of the epoch's order, each image on its own stream.

    On one worker as on several, the ranks share one ``DistributedSampler``
    permutation of the run's seed and the epoch (the sampler Ray's
    ``prepare_data_loader`` would add ignores the seed). Call
    :func:`cars.learn.seeds.seed_epoch` with ``loader.sampler`` before each
    epoch: a resumed run then draws what the interrupted run would have drawn.
    """
    return DataLoader(
        SeededSamples(train_set),
        batch_size=config.batch_size_per_worker,
        sampler=EpochSampler(
            train_set, worker.world_size, worker.rank, shuffle=True, seed=config.seed
        ),
        drop_last=len(train_set) >= config.batch_size,
        # The loader draws its workers' base seed from this generator, not from the
        # process's stream, which then stays the epoch's alone.
        generator=torch.Generator().manual_seed(config.seed + worker.rank),
        **_loader_options(worker),
    )


def _loader_options(worker: Worker) -> dict[str, Any]:
    return loader_options(worker.loader_workers, worker.pin_memory)


def _create_loaders(
    config: TrainConfig, train_set: Dataset, val_set: Dataset, worker: Worker
) -> tuple[DataLoader, DataLoader]:
    """This rank's training loader (see :func:`create_train_loader`) and its val shard.

    Images and cached features go through the same loaders, so a run on features
    sees the same batches in the same order as it would on images.
    """
    train_loader = create_train_loader(train_set, config, worker)
    # Validation shards without padding (a DistributedSampler would repeat images
    # to even out the shards); the engine all-reduces the sums, so every image
    # counts exactly once.
    val_shard = Subset(val_set, list(range(worker.rank, len(val_set), worker.world_size)))
    val_loader = DataLoader(
        val_shard, batch_size=config.batch_size_per_worker, **_loader_options(worker)
    )
    return train_loader, val_loader


def _print_uncropped(train_set: CarsDataset, val_set: CarsDataset) -> None:
    if train_set.uncropped + val_set.uncropped:
        print(
            f"--bbox-crop: {train_set.uncropped} of {len(train_set)} train and "
            f"{val_set.uncropped} of {len(val_set)} val images have no known box; "
            "they are used whole",
            flush=True,
        )


def format_epoch(metrics: Mapping[str, Any], epochs: int) -> str:
    """One line of an epoch's results, as the jobs print them."""
    return (
        f"epoch {metrics['epoch']}/{epochs}  "
        f"train loss {metrics['train_loss']:.3f} acc {metrics['train_acc']:.3f} | "
        f"val loss {metrics['val_loss']:.3f} acc {metrics[METRIC]:.3f} "
        f"top5 {metrics['val_top5']:.3f} | lr {metrics['lr']:.2e} | "
        f"{metrics['epoch_seconds']:.1f} s, {metrics['images_per_second']:.0f} img/s"
    )


@dataclass
class WorkerRun:
    """A worker's run, ready for its epochs.

    ``trained`` is what the loop feeds its batches to (DDP-wrapped): the whole
    model on images, or only its head on cached features. ``model`` is always
    the whole model, whose head is the trained one: checkpoints hold it.
    """

    config: TrainConfig
    worker: Worker
    info: DatasetInfo
    model: torch.nn.Module
    trained: torch.nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    state: TrainingState
    loss_fn: torch.nn.Module
    mixup_fn: Any
    on_features: bool
    parameters: tuple[int, int]
    train_inputs: InputNormalizer


def run_worker(loop_config: dict[str, Any], session: TrainSession) -> None:
    """Train a run of ``loop_config`` where ``session`` places it: every epoch reported.

    Args:
        loop_config: ``TrainConfig.to_dict()``; rebuilt and validated here.
        session: where this worker runs, how it resumes and reports.
    """
    config = TrainConfig.from_dict(loop_config)
    worker = session.worker
    configure_device(worker.device, config.cpus_per_worker)
    torch.manual_seed(config.seed)
    run = _create_run(config, session)
    for epoch in range(run.state.start_epoch, config.epochs + 1):
        metrics = _run_epoch(run, epoch)
        run.state.history.append(metrics)
        metrics.update(selection_scores(run.state.history))
        if worker.rank == 0:
            print(format_epoch(metrics, config.epochs), flush=True)
        _report(run, metrics, epoch, session)


def _create_run(config: TrainConfig, session: TrainSession) -> WorkerRun:
    """Model, loaders and optimizer state of the run, resumed from the session's checkpoint."""
    worker = session.worker
    info = read_dataset_info(config.data)
    model = _build_model(config, info)
    parameters = count_parameters(model)
    # The model goes to its device before the optimizer state is loaded (see
    # create_training_state). Channels-last speeds up the convolutions both on
    # GPUs and in oneDNN on CPUs (Xception's separable convolutions train ~15 %
    # faster on one CPU thread).
    model = model.to(worker.device, memory_format=torch.channels_last)
    on_features = uses_feature_cache(config)
    train_loader, val_loader = _create_run_loaders(config, worker, model, on_features)
    with session.checkpoint_to_resume() as directory:
        state = create_training_state(model, config, len(train_loader), directory)
    trained = session.prepare_model(feature_head(model) if on_features else model)
    return WorkerRun(
        config=config,
        worker=worker,
        info=info,
        model=model,
        trained=compile_model(trained, enabled=config.compile),
        train_loader=session.prepare_train_loader(train_loader),
        val_loader=val_loader,
        state=state,
        loss_fn=create_loss(config, info.num_classes),
        mixup_fn=create_mixup(config, info.num_classes),
        on_features=on_features,
        parameters=parameters,
        # The policy's random erasing runs on the device, after normalisation, on
        # training batches (precise BN's included); validation sees none.
        train_inputs=create_input_normalizer(
            model, erasing=create_random_erasing(config.augment, worker.device)
        ),
    )


def _build_model(config: TrainConfig, info: DatasetInfo) -> torch.nn.Module:
    return build_model(
        config.regime,
        info.num_classes,
        config.trainable_blocks,
        config.weights,
        class_names=info.class_names,
    )


def _create_run_loaders(
    config: TrainConfig, worker: Worker, model: torch.nn.Module, on_features: bool
) -> tuple[DataLoader, DataLoader]:
    """The run's loaders: of images, or of the backbone's features of the same images."""
    train_set, val_set = create_datasets(config)
    if worker.rank == 0:
        _print_uncropped(train_set, val_set)
    if not on_features:
        return _create_loaders(config, train_set, val_set, worker)
    cache = _load_features(config, worker, model, train_set, val_set)
    if worker.rank == 0:
        print(f"frozen backbone: training the head on cached features; {cache.describe()}")
    # The features sit in memory: loader processes would only copy them.
    return _create_loaders(
        config,
        cache.splits["train"].to_dataset(),
        cache.splits["val"].to_dataset(),
        replace(worker, loader_workers=0),
    )


def _load_features(
    config: TrainConfig,
    worker: Worker,
    model: torch.nn.Module,
    train_set: CarsDataset,
    val_set: CarsDataset,
) -> FeatureCache:
    return load_or_compute_features(
        model,
        {"train": train_set, "val": val_set},
        store=config.feature_store,
        batch_size=config.batch_size_per_worker,
        worker=worker,
    )


def prepare_features(loop_config: dict[str, Any]) -> str:
    """Compute and store the features a frozen run of ``loop_config`` trains on, as a worker would.

    For a sweep's Ray task, outside Ray Train, on one worker's resources: its
    trials then read what it stored. Returns the line that says what was done.
    """
    config = TrainConfig.from_dict(loop_config)
    device = choose_device(config.use_gpu, in_train_worker=False).device
    worker = Worker.on(device, loader_workers=resolve_loader_workers(config))
    configure_device(worker.device, config.cpus_per_worker)
    model = _build_model(config, read_dataset_info(config.data))
    model = model.to(worker.device, memory_format=torch.channels_last)
    train_set, val_set = create_datasets(config)
    return _load_features(config, worker, model, train_set, val_set).describe()


def _run_epoch(run: WorkerRun, epoch: int) -> dict[str, Any]:
    """Train one epoch, refresh the BatchNorm statistics, validate: the epoch's metrics."""
    config, worker = run.config, run.worker
    seed_epoch(run.train_loader.sampler, config.seed, worker.rank, epoch)
    # Features are rows, not images: no memory format to choose.
    common = worker.engine_options(channels_last=not run.on_features)
    # Wall-clock time, comparable across processes: it places the epoch on the
    # timeline of the trial (benchmarks/bench_trial_overhead.py).
    started_at = time.time()
    started = time.perf_counter()
    train = train_one_epoch(
        run.trained,
        run.train_loader,
        run.state.optimizer,
        loss_fn=run.loss_fn,
        scheduler=run.state.scheduler,
        mixup_fn=run.mixup_fn,
        normalizer=run.train_inputs,
        **common,
    )
    evaluating = time.perf_counter()
    if not run.on_features:
        # Recomputed from training batches, as pycls and detectron2 do: eval mode should
        # normalise with the statistics of the activations the weights were trained on.
        # On features there is none to recompute: every BatchNorm is frozen.
        update_batchnorm_statistics(
            unwrap_model(run.trained),
            run.train_loader,
            num_batches=config.precise_bn_batches(len(run.train_loader)),
            normalizer=run.train_inputs,
            **common,
        )
    has_val = run.info.counts.get("val", 0) > 0
    val = evaluate(unwrap_model(run.trained), run.val_loader, **common) if has_val else NO_VAL
    trainable_params, total_params = run.parameters
    return {
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
        "eval_seconds": time.perf_counter() - evaluating,
        "epoch_started_at": started_at,
        "images_per_second": train["images_per_second"],
        "train_images": train["images"],
        "val_images": val["images"],
        "trainable_params": trainable_params,
        "total_params": total_params,
        "world_size": worker.world_size,
    }


def _report(run: WorkerRun, metrics: dict[str, Any], epoch: int, session: TrainSession) -> None:
    """Report from every rank (a barrier in a worker group); only rank 0 writes the checkpoint."""
    with tempfile.TemporaryDirectory() as directory:
        written = None
        if run.worker.rank == 0:
            save_checkpoint(
                directory,
                model=unwrap_model(run.model),
                optimizer=run.state.optimizer,
                scheduler=run.state.scheduler,
                epoch=epoch,
                config=run.config.to_dict(),
                class_names=list(run.info.class_names),
                metrics=metrics,
            )
            write_history(directory, run.state.history)
            written = directory
        session.report(metrics, written, epoch)
