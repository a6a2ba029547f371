"""Seeds that do what they say: the run's seed orders the data, each rank augments on its
own stream, and a sweep draws learning rates apart from the seeds that initialise trials.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from ray.tune.search.variant_generator import generate_variants
from torch.utils.data import Dataset, DistributedSampler

from cars.cluster.sweep import SAMPLE_SEED, DepthSampler, LearningRateSampler, create_param_space
from cars.cluster.worker import create_train_loader
from cars.config import TrainConfig
from cars.data import create_transform_for
from cars.learn.placement import Worker
from cars.sweep_config import create_sweep_config


class OnePhoto(Dataset):
    """The same photo ``size`` times through a random training transform: any difference
    between two loaders' batches is augmentation."""

    def __init__(self, size: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        self.transform = create_transform_for("basic", 32, is_training=True)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.photo), 0


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
    if world_size > 1:
        assert isinstance(loader.sampler, DistributedSampler)
        loader.sampler.set_epoch(epoch)
    return [int(i) for batch in loader for i in batch]


def test_the_seed_changes_the_data_order_of_every_rank_reproducibly() -> None:
    assert _order(0, rank=0) == _order(0, rank=0)
    assert _order(0, rank=0) != _order(1, rank=0)
    assert _order(0, rank=1) != _order(1, rank=1)
    # The ranks share one permutation: their shards are disjoint and cover the set.
    assert sorted(_order(5, rank=0) + _order(5, rank=1)) == list(range(40))
    assert _order(5, rank=0, epoch=1) != _order(5, rank=0, epoch=2)


def test_a_single_worker_run_is_ordered_by_its_seed() -> None:
    assert _order(0, 0, world_size=1) == _order(0, 0, world_size=1)
    assert _order(0, 0, world_size=1) != _order(1, 0, world_size=1)


@pytest.mark.parametrize("loader_workers", [0, 1])
def test_ranks_augment_differently_and_reproducibly(loader_workers: int) -> None:
    def first_batch(rank: int) -> torch.Tensor:
        # Every rank starts from the same state, as every rank seeds initialisation alike.
        random.seed(100)
        torch.manual_seed(100)
        config = _config(seed=3, loader_workers=loader_workers)
        worker = Worker(rank=rank, world_size=2, loader_workers=loader_workers)
        return next(iter(create_train_loader(OnePhoto(), config, worker)))[0]

    rank0, rank1 = first_batch(0), first_batch(1)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(rank0, first_batch(0))


def test_python_random_is_seeded_for_timm_crops() -> None:
    # timm's random-resized crop draws its scale and ratio from Python's random.
    def crop() -> torch.Tensor:
        random.seed(int(torch.randint(0, 1000, ()).item()))
        create_train_loader(OnePhoto(), _config(seed=9), Worker(world_size=2))
        return torch.tensor([random.random() for _ in range(4)])

    assert torch.equal(crop(), crop())


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
