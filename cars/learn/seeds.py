"""Where a training run's random numbers come from: its seed, the rank and the epoch.

A run resumed from its epoch-k checkpoint is meant to be the run that was
interrupted: epoch k+1 shuffles, augments, mixes and recomputes its BatchNorm
statistics as an uninterrupted run of the same seed does. Generators that carry
on from one epoch to the next cannot give that (a resumed process starts them
afresh), so nothing random carries over an epoch's end:

- the data order is ``DistributedSampler``'s permutation of (seed, epoch), on one
  worker as on several;
- the training process's generators (Python, NumPy, torch on every device) restart
  every epoch from (seed, rank, epoch): what it draws (augmentation of the images
  it decodes itself, mixup, random erasing on the device, dropout) follows in a
  fixed order from there;
- a DataLoader worker process transforms each image on a stream seeded by (seed,
  epoch, index): PyTorch seeds a persistent worker once, when it starts, and which
  worker takes which batch is PyTorch's affair.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

# Kept apart, so that no image's stream is a process's.
_PROCESS_STREAM = 0
_SAMPLE_STREAM = 1


def derive_seed(*keys: int) -> int:
    """A 32-bit seed for a tuple of integers (NumPy's ``SeedSequence``), unlike its neighbours'.

    Plain sums (``seed + rank + epoch``) would give run 0's epoch 2 the stream of
    run 1's epoch 1.
    """
    return int(np.random.SeedSequence(_entropy(keys)).generate_state(1)[0])


def _entropy(keys: tuple[int, ...]) -> list[int]:
    return [int(k) % 2**64 for k in keys]


def seed_epoch(sampler: DistributedSampler, seed: int, rank: int, epoch: int) -> None:
    """Set up an epoch's randomness: ``sampler``'s order, and this process's generators.

    Call it before the epoch's first batch: Python's ``random``, NumPy's global
    generator and torch's (on every device) restart from (seed, rank, epoch).
    Not ``ray.train.torch.enable_reproducibility``: that forces deterministic
    kernels, turns ``cudnn.benchmark`` off (slower GPU training) and seeds every
    rank alike.
    """
    sampler.set_epoch(epoch)
    value = derive_seed(seed, _PROCESS_STREAM, rank, epoch)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class EpochSampler(DistributedSampler):
    """A rank's share of the epoch's permutation, each index with the seed of its image.

    The order is ``DistributedSampler``'s (so Ray's ``prepare_data_loader`` adds
    no sampler of its own); the keys are ``(index, seed)`` pairs for
    :class:`SeededSamples`. Call :func:`seed_epoch` before each epoch.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        # One draw for the whole set, indexed by image: a seed per image costs a
        # SeedSequence each, tens of microseconds in the process that feeds the GPU.
        seeds = np.random.SeedSequence(
            _entropy((self.seed, _SAMPLE_STREAM, self.epoch))
        ).generate_state(len(self.dataset))  # type: ignore[arg-type]
        for index in super().__iter__():
            yield index, int(seeds[index])


class SeededSamples(Dataset):
    """The items of ``dataset``, keyed by :class:`EpochSampler`'s ``(index, seed)`` pairs.

    In a DataLoader worker process, ``seed`` reseeds Python's ``random``, NumPy's
    global generator and torch's CPU generator before the item is made (nothing
    else draws there). In the training process the item draws on the epoch's
    stream (:func:`seed_epoch`), in the order the batches come.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        assert isinstance(self.dataset, Sized)
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if get_worker_info() is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.default_generator.manual_seed(seed)
        return self.dataset[index]
