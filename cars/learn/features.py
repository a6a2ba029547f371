"""The frozen regime on cached features: the backbone runs once, the head trains many times.

With every block frozen (its BatchNorm layers in eval mode) and no augmentation,
each epoch pushes the same images through the same fixed backbone to get the
same pooled 2,048 features; only the head (``fc``, 2048 x classes + classes
parameters) learns. The linear-probe protocol computes those features once:
:func:`load_or_compute_features` does, for the ``train`` and ``val`` splits, and
keeps them in a store (a folder or URI) under a key derived from everything that
determines them: the backbone's weights (a digest of their values, whatever file
or name they came from), the input transform (image size, resize and crop, as
torchvision prints it), the box crop, the precision, and the data set's files.
Every trial of a sweep with the same key reads them instead of computing them.

A cache is complete only once its manifest exists: the split files are written
first (locally through a temporary name and a rename; an object store's upload
appears whole or not at all) and the manifest last, so a computation killed
half-way leaves files that no reader takes for a cache.

Ray-free: the Ray Train loop (:mod:`cars.cluster.worker`), the benchmarks and the
tests call the same functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import safetensors.torch
import torch
import torch.distributed as dist
from timm.utils import unwrap_model
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from cars.config import TrainConfig
from cars.data.info import DATASET_FILE, split_file
from cars.data.normalize import create_input_normalizer
from cars.learn.model import HEAD
from cars.learn.placement import Worker
from cars.learn.precision import autocast
from cars.paths import is_uri
from cars.storage import exists, join_path, read_bytes, read_text, write_bytes, write_text

MANIFEST_FILE = "manifest.json"
FEATURE_SPLITS = ("train", "val")
# Changes whenever the stored layout or what the features mean changes.
FORMAT = "cars-features-v1"
# A single process on the CPU in full precision.
WORKER = Worker()


def uses_feature_cache(config: TrainConfig) -> bool:
    """Whether a run trains its head on cached backbone features.

    Only when the backbone is entirely frozen and every epoch sees the same
    inputs: no augmentation (the training transform of ``none`` is the
    evaluation transform) and no mixup or cutmix, which mix images, not features.
    """
    return (
        config.feature_cache
        and config.trainable_blocks == 0
        and config.augment == "none"
        and config.mixup == 0
        and config.cutmix == 0
    )


@dataclass(frozen=True)
class SplitFeatures:
    """The pooled backbone features of one split (float32, ``images x dim``) and their labels."""

    features: torch.Tensor
    labels: torch.Tensor

    def to_dataset(self) -> TensorDataset:
        """A dataset of ``(features, label)`` items, as image datasets yield ``(image, label)``."""
        return TensorDataset(self.features, self.labels)


@dataclass(frozen=True)
class FeatureCache:
    """The features of a run's splits, and where they came from."""

    splits: Mapping[str, SplitFeatures]
    key: str
    location: str | None  # the cache's folder; None when kept in memory only
    computed: bool  # computed by this run (else read from the store)
    seconds: float

    def describe(self) -> str:
        """One line for the run's log."""
        counts = ", ".join(f"{len(s.labels)} {name}" for name, s in self.splits.items())
        how = "computed" if self.computed else "read"
        where = f" at {self.location}" if self.location else " (kept in memory)"
        return (
            f"feature cache {self.key}: {how} features of {counts} images{where} "
            f"in {self.seconds:.1f} s"
        )


def feature_head(model: nn.Module) -> nn.Module:
    """The classifier that maps pooled backbone features to logits (``fc``)."""
    inner = unwrap_model(model)
    if getattr(inner, "drop_rate", 0.0):
        raise ValueError(
            "the model applies dropout between pooling and its head; cached features would "
            "skip it. Turn the feature cache off (--no-feature-cache) for this model."
        )
    return inner.get_submodule(HEAD)


def backbone_digest(model: nn.Module) -> str:
    """A digest of every weight and statistic outside the head: the backbone's identity."""
    digest = hashlib.sha256()
    for name, tensor in unwrap_model(model).state_dict().items():
        if name.split(".", 1)[0] == HEAD:
            continue
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _data_identity(path: str) -> dict[str, Any]:
    """The data set's location, ``dataset.json`` and the sizes and times of its split files."""
    files = {}
    for split in FEATURE_SPLITS:
        file = join_path(path, split_file(split))
        if is_uri(file):
            filesystem, fs_path = pyarrow.fs.FileSystem.from_uri(file)
            info = filesystem.get_file_info(fs_path)
            files[split] = [info.size, info.mtime_ns]
        else:
            stat = Path(file).stat()
            files[split] = [stat.st_size, stat.st_mtime_ns]
    described = hashlib.sha256(read_text(join_path(path, DATASET_FILE)).encode()).hexdigest()
    return {"path": path, "dataset_json": described, "files": files}


def feature_identity(
    model: nn.Module,
    datasets: Mapping[str, Any],
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Everything that determines the features of ``datasets`` (``CarsDataset`` by split)."""
    first = next(iter(datasets.values()))
    transforms = {name: repr(d.transform) for name, d in datasets.items()}
    return {
        "format": FORMAT,
        "backbone": backbone_digest(model),
        "transforms": transforms,
        "bbox_crop": bool(first.bbox_crop),
        "bbox_margin": float(first.bbox_margin) if first.bbox_crop else None,
        "precision": "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "data": _data_identity(first.path),
    }


def feature_key(identity: Mapping[str, Any]) -> str:
    """The cache's folder name: a short digest of its identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


@torch.inference_mode()
def _pool_shard(
    model: nn.Module, dataset: Dataset, *, batch_size: int, worker: Worker
) -> torch.Tensor:
    inner = unwrap_model(model)
    was_training = inner.training
    inner.eval()
    shard = Subset(dataset, range(worker.rank, len(dataset), worker.world_size))
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        num_workers=worker.loader_workers,
        pin_memory=worker.pin_memory,
    )
    chunks = [torch.empty(0, inner.num_features, device=worker.device)]
    normalizer = create_input_normalizer(inner)
    try:
        for batch, _ in loader:
            images = normalizer(batch, worker.device, True)
            with autocast(worker.device, worker.amp_dtype):
                pooled = inner.forward_head(inner.forward_features(images), pre_logits=True)
            chunks.append(pooled.float())
    finally:
        inner.train(was_training)
    return torch.cat(chunks).clone()


def _gather_shards(local: torch.Tensor, total: int, world_size: int) -> torch.Tensor:
    """Every rank's shard (rows ``rank::world_size``) put back in the data set's order."""
    if world_size == 1:
        return local
    per_rank = math.ceil(total / world_size)
    padded = local.new_zeros(per_rank, local.shape[1])
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    gathered = local.new_empty(total, local.shape[1])
    for rank, part in enumerate(parts):
        gathered[rank::world_size] = part[: len(range(rank, total, world_size))]
    return gathered


def compute_features(
    model: nn.Module, dataset: Any, *, batch_size: int, worker: Worker = WORKER
) -> SplitFeatures:
    """The pooled features (``forward_head(forward_features(x), pre_logits=True)``) of a split.

    The model runs in eval mode, as the frozen regime's backbone always does.
    Under ``torch.distributed`` each of the ``worker.world_size`` ranks computes
    every ``world_size``-th image and all ranks receive the whole split.

    Args:
        dataset: a ``CarsDataset`` whose transform is the evaluation transform.
        worker: this process: its device, precision, loader processes and rank.
    """
    local = _pool_shard(model, dataset, batch_size=batch_size, worker=worker)
    features = _gather_shards(local, len(dataset), worker.world_size)
    return SplitFeatures(features.cpu(), torch.as_tensor(dataset.labels, dtype=torch.int64))


def write_feature_cache(
    folder: str, identity: Mapping[str, Any], splits: Mapping[str, SplitFeatures]
) -> None:
    """Store the features of each split in ``folder``, then the manifest that completes it."""
    for name, split in splits.items():
        data = safetensors.torch.save(
            {"features": split.features.contiguous(), "labels": split.labels.contiguous()}
        )
        write_bytes(join_path(folder, f"{name}.safetensors"), data)
    manifest = {
        "identity": dict(identity),
        "splits": {name: len(split.labels) for name, split in splits.items()},
        "feature_dim": next(iter(splits.values())).features.shape[1],
    }
    write_text(join_path(folder, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True))


def read_feature_cache(
    folder: str, identity: Mapping[str, Any], labels: Mapping[str, torch.Tensor]
) -> dict[str, SplitFeatures] | None:
    """The stored features of ``folder`` if it holds a complete cache of ``identity``.

    Returns ``None`` when there is no manifest (nothing stored, or a computation
    that never finished) or when what is stored does not match: another
    identity, or other labels than the splits' ``labels``.
    """
    manifest_path = join_path(folder, MANIFEST_FILE)
    if not exists(manifest_path):
        return None
    manifest = json.loads(read_text(manifest_path))
    if manifest.get("identity") != json.loads(json.dumps(dict(identity))):
        return None
    splits = {}
    for name, expected in labels.items():
        stored = safetensors.torch.load(read_bytes(join_path(folder, f"{name}.safetensors")))
        if not torch.equal(stored["labels"], expected):
            return None
        splits[name] = SplitFeatures(stored["features"], stored["labels"])
    return splits


def _agree(flag: bool, worker: Worker) -> bool:
    """Rank 0's ``flag`` on every rank, so that all of them take the same path."""
    if worker.world_size == 1:
        return flag
    value = torch.tensor([int(flag)], device=worker.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def load_or_compute_features(
    model: nn.Module,
    datasets: Mapping[str, Any],
    *,
    store: str | None,
    batch_size: int,
    worker: Worker = WORKER,
) -> FeatureCache:
    """The features of each split of ``datasets``: read from ``store``, or computed and stored.

    Under ``torch.distributed`` every rank must call it: rank 0 decides whether
    the store holds them, the ranks then read them, or compute a shard each and
    share it; rank 0 writes what was computed.

    Args:
        datasets: ``CarsDataset`` by split name, with the evaluation transform.
        store: the folder or URI holding caches (one sub-folder per key);
            ``None`` keeps the features in memory only.
        worker: this process: its device, precision, loader processes and rank.
    """
    started = time.perf_counter()
    identity = feature_identity(model, datasets, worker.amp_dtype)
    key = feature_key(identity)
    folder = None if store is None else join_path(store, key)
    labels = {name: torch.as_tensor(d.labels, dtype=torch.int64) for name, d in datasets.items()}
    splits = None
    if folder is not None and worker.rank == 0:
        splits = read_feature_cache(folder, identity, labels)
    if folder is not None and _agree(splits is not None, worker):
        if splits is None:
            splits = read_feature_cache(folder, identity, labels)
        if splits is None:
            raise RuntimeError(f"the feature cache at {folder} changed while it was being read")
        return FeatureCache(splits, key, folder, False, time.perf_counter() - started)
    splits = {
        name: compute_features(model, dataset, batch_size=batch_size, worker=worker)
        for name, dataset in datasets.items()
    }
    if folder is not None and worker.rank == 0:
        write_feature_cache(folder, identity, splits)
    return FeatureCache(splits, key, folder, True, time.perf_counter() - started)
