"""Seeds that do what they say: the run's seed and the epoch order the data, each rank
augments on its own stream, an epoch draws the same whatever ran before it (so a resumed run
is the interrupted run), and a sweep draws learning rates apart from the seeds that
initialise trials.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from ray.tune.search.variant_generator import generate_variants
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cars.cluster.sweep import SAMPLE_SEED, DepthSampler, LearningRateSampler, create_param_space
from cars.cluster.worker import create_train_loader
from cars.config import TrainConfig
from cars.data import create_transform_for
from cars.learn.placement import Worker
from cars.learn.seeds import derive_seed, seed_epoch
from cars.sweep_config import create_sweep_config


class Photos(Dataset):
    """A few random photos through a random training transform, labelled by their index."""

    def __init__(self, size: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.photos = [
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(size)
        ]
        self.transform = create_transform_for("strong", 32, is_training=True)

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.photos[index]), index


def _config(seed: int = 0, loader_workers: int = 0, num_workers: int = 2) -> TrainConfig:
    return TrainConfig(
        data="d",
        seed=seed,
        batch_size=4 * num_workers,
        num_workers=num_workers,
        loader_workers=loader_workers,
    )


def _order(seed: int, rank: int, epoch: int = 1, world_size: int = 2) -> list[int]:
    loader = create_train_loader(
        range(40),  # type: ignore[arg-type]
        _config(seed, num_workers=world_size),
        Worker(rank=rank, world_size=world_size),
    )
    assert isinstance(loader.sampler, DistributedSampler)
    seed_epoch(loader.sampler, seed, rank, epoch)
    return [int(i) for batch in loader for i in batch]


def test_the_seed_changes_the_data_order_of_every_rank_reproducibly() -> None:
    assert _order(0, rank=0) == _order(0, rank=0)
    assert _order(0, rank=0) != _order(1, rank=0)
    assert _order(0, rank=1) != _order(1, rank=1)
    # The ranks share one permutation: their shards are disjoint and cover the set.
    assert sorted(_order(5, rank=0) + _order(5, rank=1)) == list(range(40))
    assert _order(5, rank=0, epoch=1) != _order(5, rank=0, epoch=2)


def test_a_single_worker_run_is_ordered_by_its_seed_and_epoch() -> None:
    assert _order(0, 0, world_size=1) == _order(0, 0, world_size=1)
    assert _order(0, 0, world_size=1) != _order(1, 0, world_size=1)
    assert _order(0, 0, epoch=1, world_size=1) != _order(0, 0, epoch=2, world_size=1)
    assert sorted(_order(0, 0, world_size=1)) == list(range(40))


def _epoch_batches(
    loader: DataLoader, seed: int, rank: int, epoch: int
) -> list[tuple[torch.Tensor, ...]]:
    """An epoch as the worker loop draws it: training, then precise BN's pass over the loader."""
    seed_epoch(loader.sampler, seed, rank, epoch)  # type: ignore[arg-type]
    batches = [tuple(batch) for batch in loader]
    # What the training process draws between batches (mixup, random erasing).
    batches.append(
        (torch.rand(3), torch.from_numpy(np.random.rand(3)), torch.tensor(random.random()))
    )
    return [*batches, *(tuple(batch) for batch in loader)]


def _same(first: list[tuple[torch.Tensor, ...]], second: list[tuple[torch.Tensor, ...]]) -> bool:
    return len(first) == len(second) and all(
        len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(first, second, strict=True)
    )


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("loader_workers", [0, 1])
def test_an_epoch_draws_the_same_whatever_ran_before_it(
    loader_workers: int, world_size: int
) -> None:
    """A resumed run's first epoch is the interrupted run's: order, augmentation, draws."""
    config = _config(seed=3, loader_workers=loader_workers, num_workers=world_size)
    rank = world_size - 1
    uninterrupted = create_train_loader(Photos(), config, Worker(rank=rank, world_size=world_size))
    epochs = [_epoch_batches(uninterrupted, 3, rank, epoch) for epoch in (1, 2, 3)]

    # A new process: generators wherever they happen to be, loader workers started afresh.
    random.seed(12)
    np.random.seed(34)
    torch.manual_seed(56)
    resumed = create_train_loader(Photos(), config, Worker(rank=rank, world_size=world_size))
    assert _same(_epoch_batches(resumed, 3, rank, 3), epochs[2])
    # Each epoch draws anew.
    assert not _same(epochs[1], epochs[2])
    assert not torch.equal(epochs[1][0][1], epochs[2][0][1])  # another order


@pytest.mark.parametrize("loader_workers", [0, 1])
def test_ranks_augment_differently_and_reproducibly(loader_workers: int) -> None:
    def first_batch(rank: int) -> torch.Tensor:
        config = _config(seed=3, loader_workers=loader_workers)
        worker = Worker(rank=rank, world_size=2, loader_workers=loader_workers)
        loader = create_train_loader(OnePhoto(), config, worker)
        seed_epoch(loader.sampler, config.seed, rank, 1)  # type: ignore[arg-type]
        return next(iter(loader))[0]

    rank0, rank1 = first_batch(0), first_batch(1)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(rank0, first_batch(0))


class OnePhoto(Photos):
    """The same photo again and again: any difference between two batches is augmentation."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.photos[0]), 0


def test_seeds_of_neighbouring_keys_differ() -> None:
    # Sums would collide: run 0's epoch 2 is not run 1's epoch 1, nor rank 1's epoch 1.
    seeds = {
        derive_seed(seed, rank, epoch)
        for seed in range(3)
        for rank in range(3)
        for epoch in range(3)
    }
    assert len(seeds) == 27


def test_learning_rate_and_initialisation_seed_do_not_determine_each_other() -> None:
    lr = LearningRateSampler({"finetune": (1e-4, 1e-1)})
    depth = DepthSampler((1, 2, 4, 8, 14))
    trial = {"regime": "finetune", "seed": 1, SAMPLE_SEED: 2}
    # Another initialisation seed leaves the draws as they were; another draw seed moves them.
    assert lr({**trial, "seed": 7}) == lr(trial)
    assert depth({**trial, "seed": 7}) == depth(trial)
    assert len({lr({**trial, SAMPLE_SEED: s}) for s in range(20)}) == 20


def test_a_sweep_draws_the_same_trials_from_the_same_seed() -> None:
    sweep = create_sweep_config("smoke", "s")

    def trials(seed: int) -> list[tuple]:
        space = create_param_space(sweep)
        rng = np.random.RandomState(seed)
        return [
            (c["regime"], c["seed"], c[SAMPLE_SEED], c["lr"], c["trainable_blocks"])
            for _ in range(4)
            for _, c in generate_variants(space, random_state=rng)
        ]

    first = trials(0)
    assert first == trials(0)
    assert first != trials(1)
    # Within the sweep, each trial's initialisation seed and draw seed are separate draws.
    assert all(seed != sample for _, seed, sample, _, _ in first)
